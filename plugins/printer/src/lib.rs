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

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
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

/// Cuts a last line without its newline off `file`, and says how many
/// bytes it had. A run killed mid-write leaves one; its event was not
/// acknowledged and comes again, and a line appended to the fragment would
/// make both one unreadable line (the soak test found a whole event lost to
/// a reader that way).
fn drop_torn_line(file: &mut File) -> io::Result<u64> {
    const CHUNK: u64 = 64 * 1024;
    let len = file.metadata()?.len();
    let mut end = len;
    let mut chunk = Vec::new();
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        chunk.resize((end - start) as usize, 0);
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut chunk)?;
        if let Some(newline) = chunk.iter().rposition(|&b| b == b'\n') {
            end = start + newline as u64 + 1;
            break;
        }
        end = start;
    }
    if end < len {
        file.set_len(end)?;
    }
    Ok(len - end)
}

/// How long written lines may wait in the buffer under constant load.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

fn run(ctx: Context, events: Events) -> Result<(), String> {
    let config: Config = ctx.config()?;
    let mut out: Box<dyn Write> = match config.output.as_deref() {
        None | Some("stdout") => Box::new(io::stdout()),
        Some(path) => {
            let mut file = OpenOptions::new()
                .create(true)
                .append(true)
                .read(true)
                .open(path)
                .map_err(|e| format!("cannot open output file {path}: {e}"))?;
            let torn = drop_torn_line(&mut file)
                .map_err(|e| format!("cannot read the end of output file {path}: {e}"))?;
            if torn > 0 {
                ctx.warn(format_args!(
                    "dropped the torn last line of {path} ({torn} bytes, written when a run was killed); its event comes again"
                ));
            }
            Box::new(BufWriter::new(file))
        }
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

/// `check-config` (and a reload) checks a table before the plugin runs.
impl PluginConfig for Config {}

export_plugin! {
    name: "printer",
    event_types: BLOCK_VALID | BLOCK_INVALID,
    run: run,
    config: Config,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after_drop(content: &[u8]) -> (Vec<u8>, u64) {
        let path = std::env::temp_dir().join(format!(
            "printer-torn-{}-{}",
            std::process::id(),
            content.len()
        ));
        std::fs::write(&path, content).unwrap();
        let mut file = OpenOptions::new()
            .append(true)
            .read(true)
            .open(&path)
            .unwrap();
        let dropped = drop_torn_line(&mut file).unwrap();
        file.write_all(b"next\n").unwrap();
        let kept = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        (kept, dropped)
    }

    #[test]
    fn a_torn_last_line_is_cut_before_the_next_line_is_appended() {
        assert_eq!(after_drop(b""), (b"next\n".to_vec(), 0));
        assert_eq!(after_drop(b"a\nb\n"), (b"a\nb\nnext\n".to_vec(), 0));
        assert_eq!(after_drop(b"a\nb\n{\"torn"), (b"a\nb\nnext\n".to_vec(), 6));
        assert_eq!(after_drop(b"{\"torn"), (b"next\n".to_vec(), 6));
        // A fragment longer than one chunk read from the end.
        let mut long = b"a\n".to_vec();
        long.extend(vec![b'x'; 200_000]);
        assert_eq!(after_drop(&long), (b"a\nnext\n".to_vec(), 200_000));
    }
}
