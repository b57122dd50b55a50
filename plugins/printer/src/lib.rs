//! Prints each event it receives, one line per event, like BigchainDB's
//! events-plugin-example.
//!
//! ```toml
//! [[plugins]]
//! name = "printer"
//! [plugins.config]
//! format = "json"            # "text" (default) or "json": the event's JSON form
//! output = "events.jsonl"    # "stdout" (default) or a file to append to
//! ```

use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::time::{Duration, Instant};

use eventhost_plugin_api::prelude::*;
use serde::Deserialize;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Config {
    format: Format,
    output: Option<String>,
}

#[derive(Deserialize, Default, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Format {
    #[default]
    Text,
    Json,
}

/// How long written lines may wait in the buffer under constant load.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

fn run(ctx: Context, events: Events) -> Result<(), String> {
    let config: Config = ctx.config()?;
    let mut out: Box<dyn Write> = match config.output.as_deref() {
        None | Some("stdout") => Box::new(io::stdout()),
        Some(path) => Box::new(BufWriter::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("cannot open output file {path}: {e}"))?,
        )),
    };
    // An event is done once its line is flushed, not when the next one is
    // received: otherwise a crash could lose lines the host counts as done.
    events.use_explicit_acks();
    ctx.ready();
    let mut written = None;
    let mut flushed_at = Instant::now();
    let flush = |out: &mut Box<dyn Write>, written: &mut Option<u64>| -> Result<(), String> {
        out.flush()
            .map_err(|e| format!("cannot write output: {e}"))?;
        if let Some(seq) = written.take() {
            events.ack(seq);
        }
        Ok(())
    };
    loop {
        // Flush while idle, not per event, so bursts are written in one go.
        let event = match events.recv_timeout(Duration::from_millis(50)) {
            Ok(event) => event,
            Err(RecvTimeoutError::Timeout) => {
                flush(&mut out, &mut written)?;
                continue;
            }
            Err(RecvTimeoutError::Closed) => break,
        };
        let line = match config.format {
            Format::Json => event.to_json(),
            Format::Text => describe(&event),
        };
        writeln!(out, "{line}").map_err(|e| format!("cannot write output: {e}"))?;
        written = Some(event.seq);
        if flushed_at.elapsed() >= FLUSH_EVERY {
            flush(&mut out, &mut written)?;
            flushed_at = Instant::now();
        }
    }
    flush(&mut out, &mut written)
}

fn describe(event: &Event) -> String {
    let mut line = format!(
        "{} seq={} height={} hash={} transactions={}",
        event.event_type,
        event.seq,
        event.height,
        event.block_hash,
        event.transactions.len()
    );
    for r in event.rejections.iter() {
        line.push_str(&format!(" rejected[{}: {}]", r.transaction_id, r.reason));
    }
    line
}

export_plugin! {
    name: "printer",
    event_types: BLOCK_VALID | BLOCK_INVALID,
    run: run,
}
