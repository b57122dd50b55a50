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
    /// Appends `<seq> <pid>` for each event to `output`, and before
    /// recording an event panics with probability `panic_probability`, so
    /// that the event is delivered again after the restart. The pid tells
    /// the soak test which process (node or plugin child) recorded a line.
    Flaky {
        panic_probability: f64,
        output: String,
    },
    /// Says it is ready, then never reads its queue.
    NeverRead,
    /// Says it is ready after `ready_after_ms`, then reads its queue.
    SlowStart { ready_after_ms: u64 },
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
        Config::Flaky {
            panic_probability,
            output,
        } => record_flakily(&ctx, &events, panic_probability, &output),
        Config::NeverRead => {
            ctx.ready();
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        Config::SlowStart { ready_after_ms } => {
            std::thread::sleep(Duration::from_millis(ready_after_ms));
            ctx.ready();
            for _event in &events {}
            Ok(())
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

/// The `flaky` mode: records every event, panicking now and then before one.
fn record_flakily(
    ctx: &Context,
    events: &Events,
    panic_probability: f64,
    output: &str,
) -> Result<(), String> {
    if !(0.0..=1.0).contains(&panic_probability) {
        return Err(format!(
            "panic_probability = {panic_probability} is out of range: it must be from 0 to 1"
        ));
    }
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(output)
        .map_err(|e| format!("cannot open {output}: {e}"))?;
    ctx.ready();
    let pid = std::process::id();
    for event in events {
        if fastrand::f64() < panic_probability {
            ctx.warn(format_args!("panicking at event {}", event.seq));
            panic!("deliberate panic (flaky mode)");
        }
        // One write(2) per line on an O_APPEND file: after a kill -9 a
        // line is there whole or not at all.
        out.write_all(format!("{} {pid}\n", event.seq).as_bytes())
            .map_err(|e| format!("cannot write {output}: {e}"))?;
    }
    Ok(())
}

export_plugin! {
    name: "misbehaving",
    event_types: BLOCK_VALID | BLOCK_INVALID,
    run: run,
}
