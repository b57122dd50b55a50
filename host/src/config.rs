//! `config.toml`: what the operator writes, checked before anything starts.
//!
//! Relative paths are resolved against the directory of the configuration
//! file, so a configuration means the same thing wherever the host is started.

use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use eventhost_plugin_api::{EventType, EventTypes, Isolation};
use serde::Deserialize;

use crate::sources::upstream::config::RawUpstream;
pub use crate::sources::upstream::config::UpstreamConfig;

/// The whole configuration file.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub source: PathBuf,
    pub host: HostConfig,
    pub api: ApiConfig,
    pub ledger: LedgerConfig,
    /// The `[source]` table: `None` for a ledger node (`kind = "ledger"`,
    /// the default), else the stream an edge node follows (`kind = "nats"`).
    pub upstream: Option<UpstreamConfig>,
    pub admin: AdminConfig,
    pub plugins: Vec<PluginEntry>,
    /// The file's text, to point errors found later (a plugin's own table)
    /// at their line and column.
    pub text: String,
}

/// The `[admin]` table: the admin API's listener (plugins loaded,
/// reloaded, paused at run time; the dashboard).
#[derive(Debug, Clone, PartialEq)]
pub struct AdminConfig {
    /// Address to listen on; `off` for no admin listener.
    pub bind: String,
    /// Bearer tokens, one of which every request must present; required
    /// whenever `bind` is not a loopback address.
    pub tokens: Vec<Secret>,
}

/// A secret setting: its value is never printed (`Debug` shows `***`).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawAdmin {
    bind: String,
    tokens: Vec<String>,
    tokens_file: Option<PathBuf>,
}

impl Default for RawAdmin {
    fn default() -> Self {
        RawAdmin {
            bind: "127.0.0.1:9986".into(),
            tokens: Vec::new(),
            tokens_file: None,
        }
    }
}

/// What the runtime does when a plugin fails (`on_failure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnFailure {
    /// Restart it with backoff, give up after too many failures (default).
    Restart,
    /// Leave it failed; the node runs on.
    Disable,
    /// Stop the node (exit status 3): for plugins whose output must be
    /// complete, such as an audit trail.
    StopNode,
}

/// What the runtime does with an event a plugin failed on
/// `max_event_failures` times in a row (`poison`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Poison {
    /// Stop the plugin and report the event (default).
    Halt,
    /// Record the event in the plugin's dead-letter file, move past it.
    Skip,
}

/// The `[api]` table: the HTTP transaction API and the limits that keep it
/// safe to face clients (docs/api-limits.md describes each one).
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Address to listen on.
    pub bind: String,
    /// Largest request body accepted (413 beyond it).
    pub max_body_bytes: usize,
    /// Memory all request bodies being read may hold together.
    pub body_memory_bytes: usize,
    /// Largest request head (request line and headers); 431 beyond it.
    pub max_header_bytes: usize,
    /// From a request's first byte to its last header.
    pub header_read_timeout: Duration,
    /// From a request's last header to the last byte of its body.
    pub body_read_timeout: Duration,
    /// How long a connection may wait for a client that neither sends a
    /// request nor reads the response.
    pub idle_timeout: Duration,
    /// How long stopping waits for requests in progress.
    pub shutdown_timeout: Duration,
    /// Open connections at most; `None`: sized from the open-file limit.
    pub max_connections: Option<usize>,
    /// Origins allowed by CORS on the transaction API: `["*"]` any, `[]` none.
    pub cors_origins: Vec<String>,
    /// Most results a text search returns (its `limit`, and what `limit=0` means).
    pub max_search_results: usize,
    /// Most index entries one text search reads.
    pub max_search_scan: usize,
    /// Heavy queries (searches, a key's outputs, an asset's history) run at
    /// once; `None`: half the CPUs, at least one.
    pub heavy_query_threads: Option<usize>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        RawApi::default()
            .check()
            .expect("the default [api] table is valid")
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawApi {
    bind: String,
    max_body_bytes: u64,
    body_memory_bytes: u64,
    max_header_bytes: u64,
    header_read_timeout_ms: u64,
    body_read_timeout_ms: u64,
    idle_timeout_ms: u64,
    shutdown_timeout_ms: u64,
    max_connections: Option<u64>,
    cors_origins: Vec<String>,
    max_search_results: u64,
    max_search_scan: u64,
    heavy_query_threads: Option<u64>,
}

impl Default for RawApi {
    fn default() -> Self {
        RawApi {
            bind: "127.0.0.1:9984".into(),
            max_body_bytes: 1 << 20,
            body_memory_bytes: 64 << 20,
            max_header_bytes: 16 << 10,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            idle_timeout_ms: 60_000,
            shutdown_timeout_ms: 2_000,
            max_connections: None,
            cors_origins: vec!["*".into()],
            max_search_results: 1_000,
            max_search_scan: 100_000,
            heavy_query_threads: None,
        }
    }
}

impl RawApi {
    fn check(self) -> Result<ApiConfig, String> {
        const KIB: u64 = 1 << 10;
        const MIB: u64 = 1 << 20;
        // Every range below fits in a usize of 32 bits or more.
        let size = |name: &str, value: u64, range| bounded(name, value, range).map(|v| v as usize);
        let max_body_bytes = size("[api] max_body_bytes", self.max_body_bytes, KIB..=64 * MIB)?;
        let body_memory_bytes = size(
            "[api] body_memory_bytes",
            self.body_memory_bytes,
            max_body_bytes as u64..=16 * 1024 * MIB,
        )
        .map_err(|e| {
            format!("{e} (at least max_body_bytes, so that a largest body can be read)")
        })?;
        for origin in &self.cors_origins {
            let valid = origin == "*"
                || (origin.starts_with("http://") || origin.starts_with("https://"))
                    && origin.bytes().all(|b| b.is_ascii_graphic());
            if !valid {
                return Err(format!(
                    "[api] cors_origins: `{origin}` is not an origin; write \"*\" or origins like \"https://wallet.example.com\""
                ));
            }
        }
        if self.cors_origins.len() > 1 && self.cors_origins.iter().any(|o| o == "*") {
            return Err("[api] cors_origins: \"*\" allows every origin, so list it alone".into());
        }
        Ok(ApiConfig {
            bind: self.bind,
            max_body_bytes,
            body_memory_bytes,
            max_header_bytes: size(
                "[api] max_header_bytes",
                self.max_header_bytes,
                8 * KIB..=MIB,
            )?,
            header_read_timeout: millis(
                "[api] header_read_timeout_ms",
                self.header_read_timeout_ms,
                100..=600_000,
            )?,
            body_read_timeout: millis(
                "[api] body_read_timeout_ms",
                self.body_read_timeout_ms,
                100..=600_000,
            )?,
            idle_timeout: millis("[api] idle_timeout_ms", self.idle_timeout_ms, 100..=HOUR)?,
            shutdown_timeout: millis(
                "[api] shutdown_timeout_ms",
                self.shutdown_timeout_ms,
                0..=60_000,
            )?,
            max_connections: self
                .max_connections
                .map(|n| size("[api] max_connections", n, 1..=1_000_000))
                .transpose()?,
            cors_origins: self.cors_origins,
            max_search_results: size(
                "[api] max_search_results",
                self.max_search_results,
                1..=100_000,
            )?,
            max_search_scan: size(
                "[api] max_search_scan",
                self.max_search_scan,
                1_000..=100_000_000,
            )?,
            heavy_query_threads: self
                .heavy_query_threads
                .map(|n| size("[api] heavy_query_threads", n, 1..=256))
                .transpose()?,
        })
    }
}

/// The `[ledger]` table: how blocks are cut.
#[derive(Debug, Clone)]
pub struct LedgerConfig {
    /// Most transactions in one block.
    pub max_block_size: usize,
    /// Least time between blocks; 0 cuts a block as soon as the previous
    /// one is written, so latency stays low and blocks grow with load.
    pub block_interval: Duration,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            max_block_size: 1000,
            block_interval: Duration::ZERO,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLedger {
    max_block_size: usize,
    block_interval_ms: u64,
}

impl Default for RawLedger {
    fn default() -> Self {
        let defaults = LedgerConfig::default();
        RawLedger {
            max_block_size: defaults.max_block_size,
            block_interval_ms: defaults.block_interval.as_millis() as u64,
        }
    }
}

/// When and how often failed plugins are restarted.
#[derive(Debug, Clone)]
pub struct RestartPolicy {
    /// Wait before the first restart; doubled after each failure.
    pub initial_backoff: Duration,
    /// The longest wait between restarts.
    pub max_backoff: Duration,
    /// A plugin that fails this many times within `window` is given up.
    pub max_failures: usize,
    pub window: Duration,
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
    pub restart: RestartPolicy,
    /// How much of the event log to keep (`[host.event_log_retention]`).
    pub retention: crate::event_log::Retention,
}

/// One `[[plugins]]` entry.
#[derive(Debug, Clone, PartialEq)]
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
    /// Where the plugin runs; `None`: where the plugin declares.
    pub isolation: Option<Isolation>,
    /// In process isolation: a plugin holding events this long without
    /// finishing any is killed and restarted.
    pub ack_timeout: Duration,
    /// What happens when the plugin fails.
    pub on_failure: OnFailure,
    /// What happens to an event the plugin keeps failing on.
    pub poison: Poison,
    /// Failures on one event before it is poison.
    pub max_event_failures: u32,
    /// The plugin's own table, handed to it as JSON.
    pub config: serde_json::Value,
    /// Its position among the `[[plugins]]` entries of the file (0-based);
    /// `None` for an entry given elsewhere (whole, to the admin API).
    pub index: Option<usize>,
}

/// A configuration that cannot be used, with what to fix.
#[derive(Debug)]
pub struct ConfigError {
    pub file: PathBuf,
    /// Line and column (from 1) of what is wrong, when known.
    pub position: Option<(usize, usize)>,
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
        if let Some((line, column)) = self.position {
            write!(f, ":{line}:{column}")?;
        }
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

/// The most events a plugin's queue may hold in memory. The queue's slots
/// are allocated up front (20,000,000 took 477 MB at start), and a plugin
/// that falls further behind catches up from the event log anyway.
pub const MAX_QUEUE_CAPACITY: usize = 1_000_000;

const HOUR: u64 = 3_600_000;
const DAY: u64 = 24 * HOUR;

/// `value` if it is in `range`, else a one-line error naming the setting
/// and its range: every numeric setting goes through here, so that none
/// can panic the node or allocate without bound.
pub(crate) fn bounded<T: PartialOrd + fmt::Display + Copy>(
    name: &str,
    value: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, String> {
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(format!(
            "{name} = {value} is out of range: it must be from {} to {}",
            range.start(),
            range.end()
        ))
    }
}

/// A duration in milliseconds, bounded as [`bounded`] does.
pub(crate) fn millis(
    name: &str,
    value: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Duration, String> {
    bounded(name, value, range).map(Duration::from_millis)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    host: RawHost,
    #[serde(default)]
    api: RawApi,
    #[serde(default)]
    ledger: RawLedger,
    source: Option<RawSource>,
    #[serde(default)]
    admin: RawAdmin,
    #[serde(default)]
    plugins: Vec<RawPlugin>,
}

/// The `[source]` table: where the node's events come from.
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum RawSource {
    /// The node's own ledger (the default).
    Ledger(NoKeys),
    /// An edge node: a ledger node's events, from a NATS JetStream stream.
    Nats(Box<RawUpstream>),
}

/// A table that takes no key (besides `kind`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoKeys {}

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
    event_log_retention: RawRetention,
}

/// `[host.event_log_retention]`: every key optional; nothing is pruned
/// unless `max_age_s` or `max_mb` is set.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawRetention {
    max_age_s: Option<u64>,
    max_mb: Option<u64>,
    check_interval_ms: Option<u64>,
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
            event_log_retention: RawRetention::default(),
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
    isolation: Option<RawIsolation>,
    #[serde(default = "ack_timeout_ms")]
    ack_timeout_ms: u64,
    #[serde(default = "restart")]
    on_failure: OnFailure,
    #[serde(default = "halt")]
    poison: Poison,
    #[serde(default = "max_event_failures")]
    max_event_failures: u32,
    #[serde(default)]
    config: toml::Table,
}

fn restart() -> OnFailure {
    OnFailure::Restart
}

fn halt() -> Poison {
    Poison::Halt
}

fn max_event_failures() -> u32 {
    5
}

fn yes() -> bool {
    true
}

/// `isolation = "thread" | "process"`.
#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum RawIsolation {
    Thread,
    Process,
}

impl From<RawIsolation> for Isolation {
    fn from(raw: RawIsolation) -> Isolation {
        match raw {
            RawIsolation::Thread => Isolation::THREAD,
            RawIsolation::Process => Isolation::PROCESS,
        }
    }
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
            position: None,
            message: unreadable(path, &e),
        })?;
        Config::parse(&text, path)
    }

    /// Checks configuration text as if it had been read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let fail = |message: String| ConfigError {
            file: path.to_owned(),
            position: None,
            message,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError {
            file: path.to_owned(),
            position: e.span().map(|span| line_column(text, span.start)),
            message: e.message().trim_end_matches('\n').to_owned(),
        })?;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        // Absolute paths make every later message unambiguous.
        let base = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
        let base = base.as_path();
        let h = &raw.host;
        let host = HostConfig {
            data_dir: base.join(&h.data_dir),
            plugin_dirs: h.plugin_dirs.iter().map(|d| base.join(d)).collect(),
            startup_timeout: millis("[host] startup_timeout_ms", h.startup_timeout_ms, 0..=HOUR)
                .map_err(fail)?,
            shutdown_timeout: millis(
                "[host] shutdown_timeout_ms",
                h.shutdown_timeout_ms,
                0..=HOUR,
            )
            .map_err(fail)?,
            log: h.log.clone(),
            store_cache_bytes: bounded("[host] store_cache_mb", h.store_cache_mb, 1..=1 << 20)
                .map_err(fail)?
                << 20,
            restart: RestartPolicy {
                initial_backoff: millis(
                    "[host] restart_backoff_ms",
                    h.restart_backoff_ms,
                    1..=HOUR,
                )
                .map_err(fail)?,
                max_backoff: millis(
                    "[host] restart_max_backoff_ms",
                    h.restart_max_backoff_ms,
                    h.restart_backoff_ms..=DAY,
                )
                .map_err(fail)?,
                max_failures: bounded(
                    "[host] restart_max_failures",
                    h.restart_max_failures,
                    1..=1_000_000,
                )
                .map_err(fail)?,
                window: millis("[host] restart_window_ms", h.restart_window_ms, 1..=DAY)
                    .map_err(fail)?,
            },
            retention: retention(&h.event_log_retention).map_err(fail)?,
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
                    "plugin `{}`: event_types is empty, so the plugin would receive nothing; remove the entry or name some of {}",
                    p.name,
                    EventType::known()
                )));
            }
            let queue_capacity = bounded(
                &format!("plugin `{}`: queue_capacity", p.name),
                p.queue_capacity.unwrap_or(DEFAULT_QUEUE_CAPACITY),
                1..=MAX_QUEUE_CAPACITY,
            )
            .map_err(fail)?;
            let ack_timeout = millis(
                &format!("plugin `{}`: ack_timeout_ms", p.name),
                p.ack_timeout_ms,
                100..=DAY,
            )
            .map_err(fail)?;
            plugins.push(PluginEntry {
                library: p.library.unwrap_or_else(|| p.name.clone()),
                path: p.path.map(|f| base.join(f)),
                required: p.required,
                event_types,
                queue_capacity,
                on_failure: p.on_failure,
                poison: p.poison,
                max_event_failures: bounded(
                    &format!("plugin `{}`: max_event_failures", p.name),
                    p.max_event_failures,
                    1..=1000,
                )
                .map_err(fail)?,
                index: Some(i),
                isolation: p.isolation.map(Isolation::from),
                ack_timeout,
                config: serde_json::to_value(&p.config).map_err(|e| {
                    fail(format!(
                        "plugin `{}`: config cannot be passed on: {e}",
                        p.name
                    ))
                })?,
                name: p.name,
            });
        }
        let ledger = LedgerConfig {
            max_block_size: bounded(
                "[ledger] max_block_size",
                raw.ledger.max_block_size,
                1..=100_000,
            )
            .map_err(fail)?,
            block_interval: millis(
                "[ledger] block_interval_ms",
                raw.ledger.block_interval_ms,
                0..=HOUR,
            )
            .map_err(fail)?,
        };
        let admin = admin_config(raw.admin, base).map_err(fail)?;
        let upstream = match raw.source {
            None | Some(RawSource::Ledger(NoKeys {})) => None,
            Some(RawSource::Nats(raw)) => Some(
                raw.check(base, &|var| std::env::var(var).ok())
                    .map_err(|e| fail(format!("[source]: {e}")))?,
            ),
        };
        Ok(Config {
            source: path.to_owned(),
            host,
            api: raw.api.check().map_err(fail)?,
            ledger,
            upstream,
            admin,
            plugins,
            text: text.to_owned(),
        })
    }
}

/// Why a configuration file cannot be read, and, when it is missing, where
/// it was looked for and how to name another: a newcomer who runs eventhost
/// from the wrong directory sees which one it was.
fn unreadable(path: &Path, e: &std::io::Error) -> String {
    if e.kind() != std::io::ErrorKind::NotFound {
        return format!("cannot read it: {e}");
    }
    let place = match std::env::current_dir() {
        Ok(cwd) if path.is_relative() => format!(" in the working directory {}", cwd.display()),
        _ => String::new(),
    };
    format!(
        "cannot read it: there is no such file{place}; run eventhost in the directory that holds it, or name it with --config FILE (or EVENTHOST_CONFIG)"
    )
}

impl AdminConfig {
    /// Only the `[admin]` table of a configuration file, for `eventhost
    /// admin`: a file whose other tables have a mistake still names the
    /// node to ask (which then refuses the file with that mistake, and
    /// logs it). Only a file that is not TOML at all is an error here.
    pub fn load(path: &Path) -> Result<AdminConfig, ConfigError> {
        let fail = |position, message| ConfigError {
            file: path.to_owned(),
            position,
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(None, unreadable(path, &e)))?;
        let mut document: toml::Table = toml::from_str(&text).map_err(|e| {
            fail(
                e.span().map(|span| line_column(&text, span.start)),
                e.message().trim_end_matches('\n').to_owned(),
            )
        })?;
        let raw: RawAdmin = match document.remove("admin") {
            Some(table) => table
                .try_into()
                .map_err(|e: toml::de::Error| fail(None, format!("[admin]: {}", e.message())))?,
            None => RawAdmin::default(),
        };
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        admin_config(raw, dir).map_err(|message| fail(None, message))
    }
}

/// `[host.event_log_retention]`, its numbers in range.
fn retention(raw: &RawRetention) -> Result<crate::event_log::Retention, String> {
    const TABLE: &str = "[host.event_log_retention]";
    Ok(crate::event_log::Retention {
        max_age: raw
            .max_age_s
            .map(|s| bounded(&format!("{TABLE} max_age_s"), s, 1..=100 * 365 * 86_400))
            .transpose()?
            .map(Duration::from_secs),
        max_bytes: raw
            .max_mb
            .map(|mb| bounded(&format!("{TABLE} max_mb"), mb, 1..=1 << 30))
            .transpose()?
            .map(|mb| mb << 20),
        check_interval: millis(
            &format!("{TABLE} check_interval_ms"),
            raw.check_interval_ms.unwrap_or(10_000),
            100..=HOUR,
        )?,
    })
}

/// The `[admin]` table, its tokens read; a listener that others can reach
/// must have tokens.
fn admin_config(raw: RawAdmin, base: &Path) -> Result<AdminConfig, String> {
    let mut tokens: Vec<Secret> = raw.tokens.into_iter().map(Secret).collect();
    if let Some(file) = raw.tokens_file {
        let file = base.join(file);
        let text = std::fs::read_to_string(&file).map_err(|e| {
            format!(
                "[admin] tokens_file {}: cannot read it: {e}",
                file.display()
            )
        })?;
        tokens.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(|l| Secret(l.to_owned())),
        );
    }
    if let Some(i) = tokens.iter().position(|t| t.0.len() < 16) {
        return Err(format!(
            "[admin] token #{} is shorter than 16 characters; use a long random token",
            i + 1
        ));
    }
    if raw.bind != "off" && tokens.is_empty() && !is_loopback(&raw.bind) {
        return Err(format!(
            "[admin] bind = {:?} can be reached from other hosts, so it needs tokens (`tokens` or `tokens_file`); or bind it to 127.0.0.1",
            raw.bind
        ));
    }
    Ok(AdminConfig {
        bind: raw.bind,
        tokens,
    })
}

/// Whether a listen address is on the loopback interface only.
fn is_loopback(bind: &str) -> bool {
    match bind.parse::<std::net::SocketAddr>() {
        Ok(addr) => addr.ip().is_loopback(),
        Err(_) => bind
            .rsplit_once(':')
            .is_some_and(|(host, _)| host == "localhost"),
    }
}

fn parse_event_types(raw: RawEventTypes) -> Result<EventTypes, String> {
    match raw {
        RawEventTypes::Bits(bits) => EventTypes::from_bits(bits).map_err(|unknown| {
            format!(
                "{bits} has unknown bits {unknown:#x} (known: {})",
                EventType::known()
            )
        }),
        RawEventTypes::Text(text) => text.parse().map_err(|e| format!("{e}")),
    }
}

/// The line and column (from 1, in characters) of a byte offset of `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}

impl Config {
    /// Where, in the file, the key `path` (dotted, with `[i]` for list
    /// items, as [`eventhost_plugin_api::ConfigProblem`] names it) of the
    /// table of the plugin entry at `index` is: the line and column of its
    /// value, or of the nearest enclosing key that is in the file.
    pub fn locate_in_plugin_table(&self, index: usize, path: &str) -> Option<(usize, usize)> {
        use toml::de::{DeTable, DeValue};
        let document = DeTable::parse(&self.text).ok()?;
        let DeValue::Array(entries) = document.get_ref().get("plugins")?.get_ref() else {
            return None;
        };
        let entry = entries.get(index)?;
        let DeValue::Table(table) = entry.get_ref() else {
            return None;
        };
        let (key, mut value) = table.get_key_value("config")?;
        let mut at = key.span().start;
        for part in path.split('.').filter(|p| !p.is_empty()) {
            let (name, item) = match part.split_once('[') {
                Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<usize>().ok()),
                None => (part, None),
            };
            let DeValue::Table(table) = value.get_ref() else {
                break;
            };
            let Some((key, next)) = table.get_key_value(name) else {
                break;
            };
            at = key.span().start;
            value = next;
            if let (Some(i), DeValue::Array(items)) = (item, value.get_ref())
                && let Some(next) = items.get(i)
            {
                at = next.span().start;
                value = next;
            }
        }
        Some(line_column(&self.text, at))
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
    fn the_source_is_the_ledger_unless_the_table_says_nats() {
        assert!(parse("").unwrap().upstream.is_none());
        assert!(
            parse("[source]\nkind = \"ledger\"\n")
                .unwrap()
                .upstream
                .is_none()
        );
        let edge = parse("[source]\nkind = \"nats\"\ndurable = \"edge-1\"\n[source.auth]\ncreds_file = \"edge.creds\"\n")
            .unwrap()
            .upstream
            .unwrap();
        assert_eq!(edge.durable, "edge-1");
        // Relative to the configuration's directory, as every path of it.
        assert_eq!(
            edge.credentials(&|_| None).unwrap().describe(),
            "the creds file /etc/eventhost/edge.creds"
        );
        for (text, expected) in [
            (
                "[source]\nkind = \"ledger\"\nstream = \"S\"\n",
                "unknown field `stream`",
            ),
            ("[source]\nkind = \"kafka\"\n", "unknown variant `kafka`"),
            ("[source]\ndurable = \"e\"\n", "missing field `kind`"),
            (
                "[source]\nkind = \"nats\"\n",
                "[source]: `durable` is missing",
            ),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text:?} gave {err:?}");
        }
    }

    #[test]
    fn a_missing_file_names_the_working_directory_and_the_option() {
        let err = Config::load(Path::new("no-such-dir/config.toml"))
            .unwrap_err()
            .to_string();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            err,
            format!(
                "configuration no-such-dir/config.toml: cannot read it: there is no such file in the working directory {}; run eventhost in the directory that holds it, or name it with --config FILE (or EVENTHOST_CONFIG)",
                cwd.display()
            )
        );
        let absolute = Config::load(Path::new("/no-such-dir/config.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            absolute.ends_with("there is no such file; run eventhost in the directory that holds it, or name it with --config FILE (or EVENTHOST_CONFIG)"),
            "{absolute}"
        );
        let a_directory = Config::load(&cwd).unwrap_err().to_string();
        assert!(a_directory.contains("cannot read it: "), "{a_directory}");
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
            (
                "[[plugins]\nname = \"a\"\n",
                "config.toml:1:11: unclosed array table",
            ),
            (
                "[[plugins]]\nname = \"a\"\nqueue_capacity = 9223372036854775807\n",
                "plugin `a`: queue_capacity = 9223372036854775807 is out of range: it must be from 1 to 1000000",
            ),
            (
                "[[plugins]]\nname = \"a\"\nqueue_capacity = 0\n",
                "queue_capacity = 0 is out of range",
            ),
            (
                "[host]\nshutdown_timeout_ms = 99999999999\n",
                "[host] shutdown_timeout_ms = 99999999999 is out of range: it must be from 0 to 3600000",
            ),
            (
                "[host]\nrestart_backoff_ms = 500\nrestart_max_backoff_ms = 100\n",
                "restart_max_backoff_ms = 100 is out of range: it must be from 500",
            ),
            (
                "[host]\nstore_cache_mb = 0\n",
                "store_cache_mb = 0 is out of range",
            ),
            (
                "[ledger]\nmax_block_size = 0\n",
                "max_block_size = 0 is out of range",
            ),
            (
                "[[plugins]]\nname = \"a\"\nack_timeout_ms = 5\n",
                "ack_timeout_ms = 5 is out of range",
            ),
        ];
        for (text, expected) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text:?} gave {err:?}");
            assert!(err.contains("/etc/eventhost/config.toml"), "{err}");
        }
    }
}
