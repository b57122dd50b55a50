//! `config.toml`: what the operator writes, checked before anything starts.
//!
//! Relative paths are resolved against the directory of the configuration
//! file, so a configuration means the same thing wherever the host is started.

use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use eventhost_plugin_api::EventTypes;
use serde::Deserialize;

/// The whole configuration file.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub source: PathBuf,
    pub host: HostConfig,
    pub api: ApiConfig,
    pub ledger: LedgerSettings,
    pub plugins: Vec<PluginEntry>,
}

/// The `[api]` table: the HTTP transaction API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Address to listen on.
    pub bind: String,
    /// Largest request body accepted (413 beyond it).
    pub max_body_bytes: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            bind: "127.0.0.1:9984".into(),
            max_body_bytes: 1024 * 1024,
        }
    }
}

/// The `[ledger]` table: how blocks are cut.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerSettings {
    /// Most transactions in one block.
    pub max_block_size: usize,
    /// Least time between blocks; 0 cuts a block as soon as the previous
    /// one is written, so latency stays low and blocks grow with load.
    pub block_interval_ms: u64,
}

impl Default for LedgerSettings {
    fn default() -> Self {
        LedgerSettings {
            max_block_size: 1000,
            block_interval_ms: 0,
        }
    }
}

/// The `[host]` table.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Where the host keeps durable state (the event log).
    pub data_dir: PathBuf,
    /// Directories searched, in order, for plugins named without a `path`.
    pub plugin_dirs: Vec<PathBuf>,
    /// How long to wait for every plugin to report ready before going on.
    pub startup_timeout: Duration,
    /// How long a stopping plugin may go without progress before it is abandoned.
    pub shutdown_timeout: Duration,
    /// Default log filter (`RUST_LOG` overrides it).
    pub log: String,
    /// Memory the store may keep of its file, in bytes.
    pub store_cache_bytes: usize,
    /// When failed plugins are restarted.
    pub restart: crate::plugin_manager::RestartPolicy,
}

/// One `[[plugins]]` entry.
#[derive(Debug, Clone)]
pub struct PluginEntry {
    /// Unique name of this plugin instance.
    pub name: String,
    /// Library name to look up in `plugin_dirs` (defaults to `name`).
    pub library: String,
    /// Explicit library file; skips the lookup.
    pub path: Option<PathBuf>,
    /// Whether a failure to load or start stops the host (default) or is only logged.
    pub required: bool,
    /// Narrows the events the plugin declares; `None` takes them all.
    pub event_types: Option<EventTypes>,
    /// Events held in memory for the plugin before it catches up from the event log.
    pub queue_capacity: usize,
    /// Where the plugin runs.
    pub isolation: Isolation,
    /// In process isolation: a plugin holding events this long without
    /// finishing any is killed and restarted.
    pub ack_timeout: Duration,
    /// The plugin's own table, handed to it as JSON.
    pub config: serde_json::Value,
}

/// Where a plugin runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// On a thread of the host: fastest; a crash takes the host down.
    Thread,
    /// In a child process: a crash takes only the plugin down.
    Process,
}

impl Isolation {
    pub fn name(self) -> &'static str {
        match self {
            Isolation::Thread => "thread",
            Isolation::Process => "process",
        }
    }
}

/// A configuration that cannot be used, with what to fix.
#[derive(Debug)]
pub struct ConfigError {
    pub file: PathBuf,
    pub message: String,
}

/// Always one line: messages quote names and values from the file, and a
/// newline or other control character in one of them would otherwise split
/// the error across lines of the log or of `check-config`'s output (or, as
/// an escape sequence, restyle the terminal). Such characters are shown the
/// way Rust escapes them (`\n`, `\u{85}`).
impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("configuration ")?;
        write_one_line(f, &self.file.display().to_string())?;
        f.write_str(": ")?;
        write_one_line(f, &self.message)
    }
}

fn write_one_line(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    for c in text.chars() {
        if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') {
            write!(f, "{}", c.escape_default())?;
        } else {
            f.write_char(c)?;
        }
    }
    Ok(())
}

impl std::error::Error for ConfigError {}

pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    host: RawHost,
    #[serde(default)]
    api: ApiConfig,
    #[serde(default)]
    ledger: LedgerSettings,
    #[serde(default)]
    plugins: Vec<RawPlugin>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawHost {
    data_dir: PathBuf,
    plugin_dirs: Vec<PathBuf>,
    startup_timeout_ms: u64,
    shutdown_timeout_ms: u64,
    log: String,
    store_cache_mb: usize,
    restart_backoff_ms: u64,
    restart_max_backoff_ms: u64,
    restart_max_failures: usize,
    restart_window_ms: u64,
}

impl Default for RawHost {
    fn default() -> Self {
        RawHost {
            data_dir: "data".into(),
            plugin_dirs: vec!["plugins".into()],
            startup_timeout_ms: 10_000,
            shutdown_timeout_ms: 2_000,
            log: "info".into(),
            store_cache_mb: crate::store::DEFAULT_CACHE_BYTES >> 20,
            restart_backoff_ms: 100,
            restart_max_backoff_ms: 30_000,
            restart_max_failures: 5,
            restart_window_ms: 60_000,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlugin {
    name: String,
    library: Option<String>,
    path: Option<PathBuf>,
    #[serde(default = "yes")]
    required: bool,
    event_types: Option<RawEventTypes>,
    queue_capacity: Option<usize>,
    #[serde(default = "thread")]
    isolation: Isolation,
    #[serde(default = "ack_timeout_ms")]
    ack_timeout_ms: u64,
    #[serde(default)]
    config: toml::Table,
}

fn yes() -> bool {
    true
}

fn thread() -> Isolation {
    Isolation::Thread
}

fn ack_timeout_ms() -> u64 {
    30_000
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawEventTypes {
    Bits(u32),
    Text(String),
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_owned(),
            message: format!("cannot read it: {e}"),
        })?;
        Config::parse(&text, path)
    }

    /// Checks configuration text as if it had been read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let fail = |message: String| ConfigError {
            file: path.to_owned(),
            message,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| fail(toml_error(&e)))?;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        // Absolute paths make every later message unambiguous.
        let base = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
        let base = base.as_path();
        let host = HostConfig {
            data_dir: base.join(&raw.host.data_dir),
            plugin_dirs: raw.host.plugin_dirs.iter().map(|d| base.join(d)).collect(),
            startup_timeout: Duration::from_millis(raw.host.startup_timeout_ms),
            shutdown_timeout: Duration::from_millis(raw.host.shutdown_timeout_ms),
            log: raw.host.log,
            store_cache_bytes: raw.host.store_cache_mb.saturating_mul(1 << 20),
            restart: crate::plugin_manager::RestartPolicy {
                initial_backoff: Duration::from_millis(raw.host.restart_backoff_ms),
                max_backoff: Duration::from_millis(raw.host.restart_max_backoff_ms),
                max_failures: raw.host.restart_max_failures.max(1),
                window: Duration::from_millis(raw.host.restart_window_ms),
            },
        };
        let mut plugins: Vec<PluginEntry> = Vec::with_capacity(raw.plugins.len());
        for (i, p) in raw.plugins.into_iter().enumerate() {
            let entry = i + 1;
            if p.name.trim().is_empty() {
                return Err(fail(format!("plugins entry #{entry}: `name` is empty")));
            }
            if let Some(first) = plugins.iter().position(|q| q.name == p.name) {
                return Err(fail(format!(
                    "plugin `{}` is configured twice (plugins entries #{} and #{entry}); give each entry a unique `name` (use `library` to load one library twice)",
                    p.name,
                    first + 1
                )));
            }
            let event_types = match p.event_types {
                None => None,
                Some(raw) => Some(
                    parse_event_types(raw)
                        .map_err(|e| fail(format!("plugin `{}`: event_types: {e}", p.name)))?,
                ),
            };
            if event_types.is_some_and(EventTypes::is_empty) {
                return Err(fail(format!(
                    "plugin `{}`: event_types is empty, so the plugin would receive nothing; remove the entry or name BLOCK_VALID and/or BLOCK_INVALID",
                    p.name
                )));
            }
            if p.queue_capacity == Some(0) {
                return Err(fail(format!(
                    "plugin `{}`: queue_capacity must be at least 1",
                    p.name
                )));
            }
            plugins.push(PluginEntry {
                library: p.library.unwrap_or_else(|| p.name.clone()),
                path: p.path.map(|f| base.join(f)),
                required: p.required,
                event_types,
                queue_capacity: p.queue_capacity.unwrap_or(DEFAULT_QUEUE_CAPACITY),
                isolation: p.isolation,
                ack_timeout: Duration::from_millis(p.ack_timeout_ms),
                config: serde_json::to_value(&p.config).map_err(|e| {
                    fail(format!(
                        "plugin `{}`: config cannot be passed on: {e}",
                        p.name
                    ))
                })?,
                name: p.name,
            });
        }
        if raw.ledger.max_block_size == 0 {
            return Err(fail("[ledger] max_block_size must be at least 1".into()));
        }
        Ok(Config {
            source: path.to_owned(),
            host,
            api: raw.api,
            ledger: raw.ledger,
            plugins,
        })
    }
}

fn parse_event_types(raw: RawEventTypes) -> Result<EventTypes, String> {
    match raw {
        RawEventTypes::Bits(bits) => EventTypes::from_bits(bits).map_err(|unknown| {
            format!("{bits} has unknown bits {unknown:#x} (1 = BLOCK_VALID, 2 = BLOCK_INVALID, 3 = both)")
        }),
        RawEventTypes::Text(text) => text.parse().map_err(|e| format!("{e}")),
    }
}

/// toml's message, on one line, with the position first.
fn toml_error(e: &toml::de::Error) -> String {
    let message = e.message().trim_end_matches('\n');
    match e.span() {
        Some(span) => format!("at byte {}: {message}", span.start),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/eventhost/config.toml"))
    }

    #[test]
    fn defaults_and_relative_paths() {
        let c = parse("[[plugins]]\nname = \"printer\"\n").unwrap();
        assert_eq!(c.host.data_dir, Path::new("/etc/eventhost/data"));
        assert_eq!(c.host.store_cache_bytes, 128 << 20);
        let small = parse("[host]\nstore_cache_mb = 16\n").unwrap();
        assert_eq!(small.host.store_cache_bytes, 16 << 20);
        assert_eq!(
            c.host.plugin_dirs,
            vec![PathBuf::from("/etc/eventhost/plugins")]
        );
        let p = &c.plugins[0];
        assert_eq!(
            (p.library.as_str(), p.required, p.event_types),
            ("printer", true, None)
        );
        assert_eq!(p.config, serde_json::json!({}));
    }

    #[test]
    fn plugin_entries_carry_their_table() {
        let c = parse(
            "[[plugins]]\nname = \"a\"\npath = \"lib/liba.so\"\nevent_types = \"BLOCK_VALID\"\nrequired = false\n[plugins.config]\nformat = \"json\"\nn = 3\n",
        )
        .unwrap();
        let p = &c.plugins[0];
        assert_eq!(
            p.path.as_deref(),
            Some(Path::new("/etc/eventhost/lib/liba.so"))
        );
        assert_eq!(
            p.event_types,
            Some(eventhost_plugin_api::BLOCK_VALID.into())
        );
        assert!(!p.required);
        assert_eq!(p.config, serde_json::json!({"format": "json", "n": 3}));
    }

    #[test]
    fn event_types_as_number_or_names() {
        for (text, bits) in [("3", 3), ("\"1 | 2\"", 3), ("\"BLOCK_INVALID\"", 2)] {
            let c = parse(&format!(
                "[[plugins]]\nname = \"a\"\nevent_types = {text}\n"
            ))
            .unwrap();
            assert_eq!(c.plugins[0].event_types.unwrap().bits(), bits, "{text}");
        }
    }

    #[test]
    fn errors_name_the_problem() {
        let cases = [
            ("[host]\ncolour = 1\n", "unknown field `colour`"),
            (
                "[[plugins]]\nname = \"a\"\nrequierd = false\n",
                "unknown field `requierd`",
            ),
            (
                "[[plugins]]\nname = \"a\"\n[[plugins]]\nname = \"a\"\n",
                "configured twice",
            ),
            (
                "[[plugins]]\nname = \"a\"\nevent_types = 4\n",
                "unknown bits",
            ),
            (
                "[[plugins]]\nname = \"a\"\nevent_types = \"BLOCK_SOON\"\n",
                "BLOCK_SOON",
            ),
            (
                "[[plugins]]\nname = \"a\"\nevent_types = 0\n",
                "receive nothing",
            ),
            ("[[plugins]]\nname = \"\"\n", "`name` is empty"),
            ("[[plugins]\nname = \"a\"\n", "at byte"),
        ];
        for (text, expected) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text:?} gave {err:?}");
            assert!(err.contains("/etc/eventhost/config.toml"), "{err}");
        }
    }
}
