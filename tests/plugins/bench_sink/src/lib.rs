//! The benchmarks' plugin: receives every event and counts it, doing as
//! little else as possible, so that what a benchmark measures is the host's
//! cost of delivering events rather than the plugin's work.
//!
//! With `stamps` set it also appends one line per event to that file, so the
//! commit benchmark can see when each block reached a plugin:
//!
//! ```text
//! <wall clock, ns since the Unix epoch> <seq> <BLOCK_VALID|BLOCK_INVALID> <transactions> [<id>,<id>,…]
//! ```
//!
//! The ids are written only with `ids = true`: finding them means parsing
//! every transaction, which would take CPU from the host under full load.
//!
//! With `summary` set instead it writes, once its queue closes, one line to
//! that file: `<events> <first> <last>`, how many events it received and
//! when it received the first and the last (ns since the Unix epoch); the
//! form of the Python counter of benchmark row 8, which it is compared with.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use eventhost_plugin_api::prelude::*;

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Config {
    stamps: Option<String>,
    ids: bool,
    summary: Option<String>,
}

/// The one field of a transaction the stamps need; serde skips the rest.
#[derive(serde::Deserialize)]
struct Id {
    id: String,
}

/// Stamps are flushed when the queue is idle this long, so a waiting
/// reader sees them without a write per event under load.
const IDLE_FLUSH: Duration = Duration::from_millis(2);

fn run(ctx: Context, events: Events) -> Result<(), String> {
    let config: Config = ctx.config()?;
    let count = match (&config.stamps, &config.summary) {
        (None, None) => {
            ctx.ready();
            (&events).count()
        }
        (Some(path), None) => {
            let out = File::create(path).map_err(|e| format!("cannot create {path}: {e}"))?;
            ctx.ready();
            stamp(&events, BufWriter::new(out), config.ids).map_err(|e| e.to_string())?
        }
        (None, Some(path)) => {
            ctx.ready();
            summarize(&events, path)?
        }
        (Some(_), Some(_)) => return Err("set `stamps` or `summary`, not both".into()),
    };
    ctx.info(format_args!("received {count} events"));
    Ok(())
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Receives every event, noting when the first and the last came; writes
/// the summary line once the queue closes and returns how many.
fn summarize(events: &Events, path: &str) -> Result<usize, String> {
    let (mut count, mut first, mut last) = (0, 0, 0);
    for _ in events {
        last = now_ns();
        if count == 0 {
            first = last;
        }
        count += 1;
    }
    std::fs::write(path, format!("{count} {first} {last}\n"))
        .map_err(|e| format!("cannot write {path}: {e}"))?;
    Ok(count)
}

/// Receives every event, appending its stamp line; returns how many.
fn stamp(events: &Events, mut out: BufWriter<File>, ids: bool) -> std::io::Result<usize> {
    let mut count = 0;
    loop {
        let event = match events.recv_timeout(IDLE_FLUSH) {
            Ok(event) => event,
            Err(RecvTimeoutError::Timeout) => {
                out.flush()?;
                continue;
            }
            Err(RecvTimeoutError::Closed) => break,
        };
        count += 1;
        let now = now_ns();
        write!(
            out,
            "{now} {} {} {}",
            event.seq,
            event.event_type,
            event.transactions.len()
        )?;
        if ids {
            let ids: Vec<String> = event
                .transactions
                .iter()
                .filter_map(|tx| serde_json::from_str::<Id>(tx).ok().map(|t| t.id))
                .collect();
            write!(out, " {}", ids.join(","))?;
        }
        writeln!(out)?;
    }
    out.flush()?;
    Ok(count)
}

export_plugin! {
    name: "bench-sink",
    event_types: BLOCK_VALID | BLOCK_INVALID,
    run: run,
}
