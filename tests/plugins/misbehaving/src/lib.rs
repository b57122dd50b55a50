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
    /// Like `panic`, but the process dies of SIGSEGV.
    Segfault { at: u64, output: String },
    /// Says it is ready, then never reads its queue.
    NeverRead,
    /// Reports a failure instead of starting.
    FailAtStart,
}

fn run(ctx: Context, events: Events) -> Result<(), String> {
    match ctx.config()? {
        Config::Panic { at, output } => record_until(&ctx, &events, at, &output, || {
            panic!("deliberate panic");
        }),
        Config::Segfault { at, output } => record_until(&ctx, &events, at, &output, || {
            // Rust's runtime handles SIGSEGV to detect stack overflows and,
            // for a raised signal, returns; restore the default so the
            // process dies as it would on a real invalid access.
            // SAFETY: setting a signal's disposition and raising it have no
            // memory-safety preconditions.
            unsafe {
                libc::signal(libc::SIGSEGV, libc::SIG_DFL);
                libc::raise(libc::SIGSEGV);
            }
        }),
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

/// Appends each event's sequence number to `output` and calls `crash` on
/// the `at`-th event of this run, before recording it.
fn record_until(
    ctx: &Context,
    events: &Events,
    at: u64,
    output: &str,
    crash: impl Fn(),
) -> Result<(), String> {
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(output)
        .map_err(|e| e.to_string())?;
    ctx.ready();
    for (i, event) in events.enumerate() {
        if i as u64 + 1 == at {
            ctx.warn(format_args!("crashing at event {}", event.seq));
            crash();
        }
        writeln!(out, "{}", event.seq).map_err(|e| e.to_string())?;
    }
    Ok(())
}

export_plugin! {
    name: "misbehaving",
    event_types: BLOCK_VALID | BLOCK_INVALID,
    run: run,
}
