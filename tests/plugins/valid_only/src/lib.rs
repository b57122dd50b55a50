//! Subscribes to BLOCK_VALID only and appends each event's JSON to `output`.

use std::io::Write;

use eventhost_plugin_api::prelude::*;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    output: String,
}

fn run(ctx: Context, events: Events) -> Result<(), String> {
    let config: Config = ctx.config()?;
    let mut out = std::fs::File::create(&config.output).map_err(|e| e.to_string())?;
    ctx.ready();
    for event in &events {
        writeln!(out, "{}", event.to_json()).map_err(|e| e.to_string())?;
    }
    Ok(())
}

export_plugin! {
    name: "valid-only",
    event_types: BLOCK_VALID,
    run: run,
}
