//! A plugin that misbehaves in the way its config asks, to show that the host contains it.

use std::io::Write;
use std::time::Duration;

use eventhost_plugin_api::prelude::*;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case", tag = "mode")]
enum Config {
    /// Appends each event's sequence number to `output`; panics on the
    /// `at`-th event of each run, before recording it.
    Panic { at: u64, output: String },
    /// Says it is ready, then never reads its queue.
    NeverRead,
    /// Reports a failure instead of starting.
    FailAtStart,
}

fn run(ctx: Context, events: Events) -> Result<(), String> {
    match ctx.config()? {
        Config::Panic { at, output } => {
            let mut out = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(output)
                .map_err(|e| e.to_string())?;
            ctx.ready();
            for (i, event) in (&events).enumerate() {
                if i as u64 + 1 == at {
                    panic!("deliberate panic at event {}", event.seq);
                }
                writeln!(out, "{}", event.seq).map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        Config::NeverRead => {
            ctx.ready();
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        Config::FailAtStart => {
            ctx.failed("cannot reach the thing it needs");
            Err("cannot reach the thing it needs".into())
        }
    }
}

export_plugin! {
    name: "misbehaving",
    event_types: BLOCK_VALID | BLOCK_INVALID,
    run: run,
}
