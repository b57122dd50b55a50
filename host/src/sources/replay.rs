//! `eventhost replay`: publishes the events of a JSON-lines file, or of
//! standard input as lines arrive.
//!
//! Each line is an event in the form the printer plugin writes with
//! `format = "json"` (see `eventhost_plugin_api::Event::to_json`), so a
//! recording can be played back to other plugins. Sequence numbers in the
//! file are ignored: the host numbers events as it publishes them.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use eventhost_plugin_api::Event;

use crate::event_log::EventLog;
use crate::plugin_runtime::dead_letters::DEAD_LETTER_KEY;
use crate::progress::Progress;

/// Events written to the log per transaction.
const BATCH: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file} line {line}: not an event: {message}")]
    BadLine {
        file: String,
        line: usize,
        message: String,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Where events come from: a file, or standard input (`-`).
pub enum Source<'a> {
    File(&'a Path),
    Stdin,
}

impl<'a> Source<'a> {
    pub fn new(path: &'a Path) -> Source<'a> {
        if path == Path::new("-") {
            Source::Stdin
        } else {
            Source::File(path)
        }
    }

    fn name(&self) -> String {
        match self {
            Source::File(path) => path.display().to_string(),
            Source::Stdin => "standard input".into(),
        }
    }

    fn open(&self) -> Result<Box<dyn BufRead>, ReplayError> {
        Ok(match self {
            Source::File(path) => Box::new(BufReader::new(File::open(path).map_err(|source| {
                ReplayError::Io {
                    file: self.name(),
                    source,
                }
            })?)),
            Source::Stdin => Box::new(std::io::stdin().lock()),
        })
    }
}

/// Checks every line of the file, so that a bad line is reported before any
/// event is published, and returns the number of events.
pub fn check(path: &Path) -> Result<usize, ReplayError> {
    let mut count = 0;
    for_each_event(&Source::File(path), |_| {
        count += 1;
        Ok(ControlFlow::Continue(()))
    })?;
    Ok(count)
}

/// Publishes every event of `source` through `log`, at most `rate` per
/// second if given, counting them in `progress`. Events from standard
/// input are published as each line arrives. Stops early when `stop` is
/// set, and returns how many events were published.
pub fn publish(
    log: &mut EventLog,
    source: &Source,
    rate: Option<f64>,
    stop: &AtomicBool,
    progress: &mut Progress,
) -> Result<usize, ReplayError> {
    let started = Instant::now();
    let mut published = 0usize;
    let mut batch = Vec::with_capacity(BATCH);
    let batch_size = match source {
        Source::Stdin => 1,
        Source::File(_) => rate.map_or(BATCH, |r| (r as usize).clamp(1, BATCH)),
    };
    for_each_event(source, |mut event| {
        if stop.load(Ordering::Relaxed) {
            return Ok(ControlFlow::Break(()));
        }
        if event.timestamp_ms == 0 {
            event.timestamp_ms = now_ms();
        }
        batch.push(event);
        if batch.len() >= batch_size {
            let n = batch.len();
            log.commit(std::mem::take(&mut batch))?;
            published += n;
            progress.add(n as u64);
            if let Some(rate) = rate {
                let due = started + Duration::from_secs_f64(published as f64 / rate);
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
            }
        }
        Ok(ControlFlow::Continue(()))
    })?;
    if !batch.is_empty() && !stop.load(Ordering::Relaxed) {
        let n = batch.len();
        log.commit(batch)?;
        published += n;
        progress.add(n as u64);
    }
    Ok(published)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// An event line; a dead-letter line (see
/// [`crate::plugin_runtime::dead_letters`]) is its event.
fn parse_line(line: &str) -> Result<Event, String> {
    if !line.contains(DEAD_LETTER_KEY) {
        return Event::from_json(line);
    }
    let mut value: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
    if let Some(object) = value.as_object_mut() {
        object.remove(DEAD_LETTER_KEY);
    }
    Event::from_json(&value.to_string())
}

/// Calls `f` with each event of the source until it breaks.
fn for_each_event(
    source: &Source,
    mut f: impl FnMut(Event) -> Result<ControlFlow<()>, ReplayError>,
) -> Result<(), ReplayError> {
    let file = source.name();
    let io = |source| ReplayError::Io {
        file: file.clone(),
        source,
    };
    let reader = source.open()?;
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        let event = parse_line(&line).map_err(|message| ReplayError::BadLine {
            file: file.clone(),
            line: i + 1,
            message,
        })?;
        if f(event)?.is_break() {
            break;
        }
    }
    Ok(())
}
