//! The plugin's `[plugins.config]` table, checked once at start so that a
//! mistake is reported then, by name, rather than found while publishing.
//! Every key, its default and its range is in docs/scaling-out.md.

use std::time::Duration;

use async_nats::ServerAddr;
use eventhost_plugin_api::{ConfigProblem, PluginConfig};
use nats_common::{CredentialKeys, Credentials, Format, Subjects, servers, subject};
use serde::Deserialize;

use crate::stream::{Retention, Storage, StreamSettings};

/// The table as written; every key has a default.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// NATS server URLs (`nats://host:port`); the plugin connects to one
    /// of them, trying the next when one fails.
    pub servers: Vec<String>,
    /// The environment variable holding the servers instead (comma-separated).
    pub servers_env: Option<String>,
    pub auth: CredentialKeys,
    pub stream: String,
    pub subject_prefix: String,
    pub format: Format,
    /// Used when the plugin creates the stream; an existing stream is used
    /// as it is.
    pub replicas: usize,
    pub retention: Retention,
    pub storage: Storage,
    /// 0: no limit.
    pub max_age_s: u64,
    /// 0: no limit.
    pub max_bytes: u64,
    /// How long the stream remembers message ids to drop repeats.
    pub duplicate_window_s: u64,
    /// How long to wait for the stream's acknowledgement of a message.
    pub ack_timeout_ms: u64,
    pub max_unconfirmed_events: usize,
    pub reconnect_initial_ms: u64,
    pub reconnect_max_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            servers: vec![servers::DEFAULT.to_owned()],
            servers_env: None,
            auth: CredentialKeys::default(),
            stream: "EVENTHOST".to_owned(),
            subject_prefix: "eventhost".to_owned(),
            format: Format::Block,
            replicas: 1,
            retention: Retention::Limits,
            storage: Storage::File,
            max_age_s: 0,
            max_bytes: 0,
            duplicate_window_s: 120,
            ack_timeout_ms: 5_000,
            max_unconfirmed_events: 256,
            reconnect_initial_ms: 500,
            reconnect_max_ms: 30_000,
        }
    }
}

/// The most replicas JetStream keeps of a stream.
const MAX_REPLICAS: usize = 5;

/// Longest duration accepted for ages and windows: JetStream counts them in
/// nanoseconds in a signed 64-bit integer; 100 years is plenty.
const MAX_SECONDS: u64 = 100 * 365 * 24 * 3600;

/// A checked configuration: what the link needs.
#[derive(Clone)]
pub struct Settings {
    pub servers: Vec<ServerAddr>,
    pub credentials: Credentials,
    pub stream: StreamSettings,
    pub subjects: Subjects,
    pub format: Format,
    pub ack_timeout: Duration,
}

impl Config {
    /// Checks every setting; `env` looks up environment variables. Returns
    /// the link's settings and the publishing core's.
    pub fn check(
        self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<(Settings, plugin_support::Settings), String> {
        let servers = servers::check(self.servers, self.servers_env, &env)?;
        let credentials = Credentials::check(self.auth, &env)?;
        subject::check_stream_name(&self.stream)?;
        let subjects = Subjects::new(&self.subject_prefix, self.format)?;
        if !(1..=MAX_REPLICAS).contains(&self.replicas) {
            return Err(format!(
                "`replicas` ({}) must be 1 to {MAX_REPLICAS}",
                self.replicas
            ));
        }
        for (key, value) in [
            ("max_age_s", self.max_age_s),
            ("duplicate_window_s", self.duplicate_window_s),
        ] {
            if value > MAX_SECONDS {
                return Err(format!("`{key}` ({value}) must be at most {MAX_SECONDS}"));
            }
        }
        if self.duplicate_window_s == 0 {
            return Err(
                "`duplicate_window_s` must be at least 1: it is what drops repeats".to_owned(),
            );
        }
        if self.max_age_s != 0 && self.duplicate_window_s > self.max_age_s {
            return Err(format!(
                "`duplicate_window_s` ({}) must be at most `max_age_s` ({})",
                self.duplicate_window_s, self.max_age_s
            ));
        }
        let max_bytes = i64::try_from(self.max_bytes)
            .map_err(|_| format!("`max_bytes` must be at most {}", i64::MAX))?;
        if !(1..=600_000).contains(&self.ack_timeout_ms) {
            return Err(format!(
                "`ack_timeout_ms` ({}) must be 1 to 600000",
                self.ack_timeout_ms
            ));
        }
        let bridge = plugin_support::Settings::check(
            self.max_unconfirmed_events,
            self.reconnect_initial_ms,
            self.reconnect_max_ms,
            "nats",
        )?;
        let settings = Settings {
            servers,
            credentials,
            stream: StreamSettings {
                name: self.stream,
                subjects: vec![subjects.all()],
                replicas: self.replicas,
                retention: self.retention,
                storage: self.storage,
                max_age: Duration::from_secs(self.max_age_s),
                max_bytes: if max_bytes == 0 { -1 } else { max_bytes },
                duplicate_window: Duration::from_secs(self.duplicate_window_s),
            },
            subjects,
            format: self.format,
            ack_timeout: Duration::from_millis(self.ack_timeout_ms),
        };
        Ok((settings, bridge))
    }
}

/// What `eventhost check-config` runs: the same checks as a start, the
/// environment variables the table names included, and a one-line
/// description of what the plugin would do.
impl PluginConfig for Config {
    fn check(&self) -> Result<String, ConfigProblem> {
        let (settings, _) = self
            .clone()
            .check(|var| std::env::var(var).ok())
            .map_err(|e| ConfigProblem::at("", e))?;
        Ok(format!(
            "{} messages on {} to stream `{}`, {}",
            settings.format.name(),
            settings.subjects.all(),
            settings.stream.name,
            settings.credentials.describe()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(table: serde_json::Value) -> Result<(Settings, plugin_support::Settings), String> {
        let config: Config = serde_json::from_value(table).map_err(|e| e.to_string())?;
        config.check(|var| (var == "SERVERS").then(|| "nats://a:1, nats://b:2".to_owned()))
    }

    #[test]
    fn an_empty_table_gives_the_documented_defaults() {
        let (s, bridge) = check(serde_json::json!({})).unwrap();
        assert_eq!(s.servers.len(), 1);
        assert_eq!(s.servers[0].host(), "127.0.0.1");
        assert_eq!(s.servers[0].port(), 4222);
        assert_eq!(s.credentials.describe(), "no credentials");
        assert_eq!(s.stream.name, "EVENTHOST");
        assert_eq!(s.stream.subjects, ["eventhost.>"]);
        assert_eq!(s.stream.replicas, 1);
        assert_eq!(s.stream.retention, Retention::Limits);
        assert_eq!(s.stream.storage, Storage::File);
        assert_eq!(s.stream.max_age, Duration::ZERO);
        assert_eq!(s.stream.max_bytes, -1);
        assert_eq!(s.stream.duplicate_window, Duration::from_secs(120));
        assert_eq!(s.format, Format::Block);
        assert_eq!(s.ack_timeout, Duration::from_secs(5));
        assert_eq!(bridge.max_unconfirmed_events, 256);
        assert_eq!(bridge.reconnect_initial, Duration::from_millis(500));
        assert_eq!(bridge.reconnect_max, Duration::from_secs(30));
        assert_eq!(bridge.metrics_prefix, "nats");
    }

    #[test]
    fn servers_may_come_from_the_environment() {
        let (s, _) = check(serde_json::json!({"servers_env": "SERVERS"})).unwrap();
        let hosts: Vec<_> = s
            .servers
            .iter()
            .map(|a| (a.host().to_owned(), a.port()))
            .collect();
        assert_eq!(hosts, [("a".to_owned(), 1), ("b".to_owned(), 2)]);
    }

    #[test]
    fn names_the_setting_that_is_wrong() {
        let cases = [
            (serde_json::json!({"stream_name": "x"}), "stream_name"),
            (serde_json::json!({"format": "xml"}), "xml"),
            (serde_json::json!({"retention": "forever"}), "forever"),
            (serde_json::json!({"servers": []}), "`servers` is empty"),
            (
                serde_json::json!({"servers": ["nats://a:1", "http://b"]}),
                "server 2",
            ),
            (
                serde_json::json!({"servers": ["nats://bob:hunter2@a:4222"]}),
                "server 1 carries credentials",
            ),
            (serde_json::json!({"servers": ["tls://a:4222"]}), "tls://"),
            (
                serde_json::json!({"servers": ["nats://a:1"], "servers_env": "SERVERS"}),
                "not both",
            ),
            (
                serde_json::json!({"servers_env": "NONE"}),
                "NONE, which is not set",
            ),
            (serde_json::json!({"stream": "a.b"}), "`stream`"),
            (serde_json::json!({"stream": ""}), "`stream`"),
            (
                serde_json::json!({"subject_prefix": "a.*"}),
                "`subject_prefix`",
            ),
            (
                serde_json::json!({"subject_prefix": "a..b"}),
                "`subject_prefix`",
            ),
            (serde_json::json!({"replicas": 0}), "`replicas`"),
            (serde_json::json!({"replicas": 7}), "`replicas`"),
            (
                serde_json::json!({"duplicate_window_s": 0}),
                "`duplicate_window_s`",
            ),
            (
                serde_json::json!({"max_age_s": 60, "duplicate_window_s": 120}),
                "at most `max_age_s`",
            ),
            (serde_json::json!({"max_age_s": u64::MAX}), "`max_age_s`"),
            (serde_json::json!({"max_bytes": u64::MAX}), "`max_bytes`"),
            (serde_json::json!({"ack_timeout_ms": 0}), "`ack_timeout_ms`"),
            (
                serde_json::json!({"max_unconfirmed_events": 0}),
                "max_unconfirmed_events",
            ),
            (
                serde_json::json!({"reconnect_initial_ms": 5000, "reconnect_max_ms": 100}),
                "reconnect_initial_ms",
            ),
            (serde_json::json!({"auth": {"user": "u"}}), "`user` needs"),
        ];
        for (table, expected) in cases {
            let err = check(table.clone()).err().unwrap();
            assert!(err.contains(expected), "{table}: {err}");
            assert!(!err.contains("hunter2"), "{table}: {err}");
        }
    }
}
