//! Dead letters: events a plugin kept failing on (`poison = "skip"`),
//! recorded under the data directory (`dead-letter/<plugin>.jsonl`) so
//! that an operator can look at them and re-drive them.
//!
//! Each line is the event in the JSON form `eventhost replay` reads, with
//! one more key, `dead_letter`, saying which plugin failed on it, why, and
//! when; `replay` ignores that key, so `eventhost replay
//! data/dead-letter/<plugin>.jsonl` (with a configuration that loads the
//! plugin) re-drives them.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use eventhost_plugin_api::Event;
use serde_json::{Value, json};

/// The key dead-letter lines add to an event's JSON.
pub const DEAD_LETTER_KEY: &str = "dead_letter";

/// The dead-letter files of a data directory.
#[derive(Clone)]
pub struct DeadLetters {
    dir: PathBuf,
}

impl DeadLetters {
    pub fn new(data_dir: &Path) -> DeadLetters {
        DeadLetters {
            dir: data_dir.join("dead-letter"),
        }
    }

    /// The plugin's file.
    pub fn file(&self, plugin: &str) -> PathBuf {
        self.dir.join(format!("{plugin}.jsonl"))
    }

    /// Appends `event` and why `plugin` failed on it, durably.
    pub fn record(&self, plugin: &str, event: &Event, error: &str) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let mut line: Value =
            serde_json::from_str(&event.to_json()).map_err(std::io::Error::other)?;
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        line[DEAD_LETTER_KEY] = json!({"plugin": plugin, "error": error, "at_ms": at_ms});
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.file(plugin))?;
        writeln!(file, "{line}")?;
        file.sync_data()
    }

    /// Every dead letter of `plugin`, oldest first (none if it has none).
    pub fn list(&self, plugin: &str) -> std::io::Result<Vec<Value>> {
        match std::fs::read_to_string(self.file(plugin)) {
            Ok(text) => Ok(text
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }
}
