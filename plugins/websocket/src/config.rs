//! The plugin's `[plugins.config]` table.
//!
//! Every key has a default, so an empty table serves the streams on
//! `127.0.0.1:9985` the way BigchainDB and Planetmint do. Unknown keys are
//! errors: a misspelt limit must not silently fall back to its default.
//! Every number has a range (see [`Config::validate`] and
//! docs/stream-queries.md): nothing configurable can make the plugin
//! panic, overflow a deadline or allocate absurdly at start.

use std::fmt::{self, Display};
use std::path::{Path, PathBuf};
use std::time::Duration;

use eventhost_plugin_api::{ConfigProblem, PluginConfig};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use stream_query::Limits;

// No `Debug`: the table holds secrets (`tokens`), which must never reach a log.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on. Port 0 picks a free port (logged and advertised).
    pub bind: String,
    /// Base URL the streams are advertised under; default `ws://localhost:<port>`
    /// (`wss://` with TLS).
    pub advertised_url: Option<String>,
    /// Messages a client may fall behind before it is closed as too slow.
    pub client_queue_capacity: usize,
    /// The kernel's send buffer per client (SO_SNDBUF): what a stalled client
    /// holds in the kernel besides its queue. 0 leaves it to the kernel's
    /// autotuning (up to 4 MiB per client on Linux).
    pub send_buffer_bytes: usize,
    /// How often the server pings each client; 0 turns keep-alive pings off.
    pub ping_interval_ms: u64,
    /// How long a client has to answer a ping with a pong.
    pub pong_timeout_ms: u64,
    /// TCP keepalive: idle time before the first probe, and between probes.
    pub tcp_keepalive_ms: u64,
    /// Largest message (and frame) a client may send; larger ones close it.
    pub max_message_bytes: usize,
    /// Largest upgrade request (request line and headers); larger ones get 414 or 431.
    pub max_request_bytes: usize,
    /// How long a new connection may take to complete its HTTP upgrade.
    pub handshake_timeout_ms: u64,
    /// How long to try to deliver a close frame before dropping the socket.
    pub close_timeout_ms: u64,
    /// Connected clients at most; more are refused with 503 at the upgrade.
    pub max_clients: usize,
    /// Streams at once from one address without a token (authentication off).
    pub max_connections_per_address: usize,
    /// Bounds on one `?q=` query.
    pub query_max_bytes: usize,
    pub query_max_terms: usize,
    pub query_max_depth: usize,
    /// Distinct queries the server evaluates at once, over all clients.
    pub max_distinct_queries: usize,
    /// What the replays of every resuming client may hold in memory at once.
    pub replay_memory_bytes: u64,
    /// A resuming client that takes no batch in this long is closed.
    pub replay_stall_timeout_ms: u64,
    /// Bearer tokens a client must present one of (see `auth`): strings, or
    /// tables that name a token and give it limits; none: no authentication.
    pub tokens: Vec<TokenSetting>,
    /// A file of more tokens, one per line, so that secrets stay out of config.toml.
    pub tokens_file: Option<PathBuf>,
    /// PEM certificate chain (the server's first) and private key: with
    /// both, the port speaks TLS only (wss://); see `tls`.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// The scabbard state-delta stream is at `/scabbard/{circuit_id}/{service_id}/ws/subscribe`.
    pub circuit_id: String,
    pub service_id: String,
}

/// One entry of `tokens`: a string, or a table.
pub enum TokenSetting {
    /// A bare token: no name (counted as `unnamed`), no limits of its own.
    Plain(String),
    Named(NamedToken),
}

impl<'de> Deserialize<'de> for TokenSetting {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entry;
        impl<'de> Visitor<'de> for Entry {
            type Value = TokenSetting;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a token (a string) or a table with `name` and `token` or `token_file`")
            }
            fn visit_str<E: de::Error>(self, token: &str) -> Result<TokenSetting, E> {
                Ok(TokenSetting::Plain(token.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<TokenSetting, A::Error> {
                // A table reads as a named token, with its own errors (an
                // unknown key, a missing name) rather than "matches nothing".
                NamedToken::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(TokenSetting::Named)
            }
        }
        deserializer.deserialize_any(Entry)
    }
}

/// A token with a name (the label of its metrics) and limits.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedToken {
    pub name: String,
    /// The token itself, or a file that holds it (one of the two).
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    /// Open connections at once.
    pub max_connections: Option<u64>,
    /// Distinct streams at once: a stream with a distinct query is another.
    pub max_streams: Option<u64>,
    /// Messages per second sent to all its clients together.
    pub max_messages_per_second: Option<u64>,
    /// How many events back a position (`last_seen_event`, `from_height`,
    /// `from_time`) may be.
    pub max_replay_events: Option<u64>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: "127.0.0.1:9985".into(),
            advertised_url: None,
            client_queue_capacity: 10_000,
            send_buffer_bytes: 256 * 1024,
            ping_interval_ms: 20_000,
            pong_timeout_ms: 20_000,
            tcp_keepalive_ms: 60_000,
            max_message_bytes: 64 * 1024,
            max_request_bytes: 16 * 1024,
            handshake_timeout_ms: 10_000,
            close_timeout_ms: 1_000,
            max_clients: 10_000,
            max_connections_per_address: 100,
            query_max_bytes: Limits::default().max_bytes,
            query_max_terms: Limits::default().max_terms,
            query_max_depth: Limits::default().max_depth,
            max_distinct_queries: 1_000,
            replay_memory_bytes: 64 * 1024 * 1024,
            replay_stall_timeout_ms: 30_000,
            tokens: Vec::new(),
            tokens_file: None,
            tls_cert: None,
            tls_key: None,
            circuit_id: "eventhost".into(),
            service_id: "ledger".into(),
        }
    }
}

const DAY_MS: u64 = 86_400_000;
const HOUR_MS: u64 = 3_600_000;
const MIB: u64 = 1024 * 1024;

/// `key` within `min..=max`, or the one-line error, at the key.
fn within<T: PartialOrd + Display + Copy>(
    key: &str,
    value: T,
    min: T,
    max: T,
) -> Result<(), ConfigProblem> {
    if value < min || value > max {
        return Err(ConfigProblem::at(
            key,
            format_args!("must be between {min} and {max}, not {value}"),
        ));
    }
    Ok(())
}

/// Like [`within`], where 0 also means "off".
fn off_or_within(key: &str, value: u64, min: u64, max: u64) -> Result<(), ConfigProblem> {
    if value != 0 && (value < min || value > max) {
        return Err(ConfigProblem::at(
            key,
            format_args!("must be 0 (off) or between {min} and {max}, not {value}"),
        ));
    }
    Ok(())
}

/// `check-config` and the plugin's start check the table the same way:
/// plugin-api parses it (errors name the key and never quote a string of
/// the table, so never a token), then [`Config::validate`].
impl PluginConfig for Config {
    fn check(&self) -> Result<String, ConfigProblem> {
        self.validate()?;
        let named = self
            .tokens
            .iter()
            .filter(|t| matches!(t, TokenSetting::Named(_)))
            .count();
        let auth = match (self.tokens.len(), self.tokens_file.is_some()) {
            (0, false) => "no authentication".to_owned(),
            (_, true) => format!(
                "{} tokens and a tokens_file ({named} named)",
                self.tokens.len()
            ),
            (n, false) => format!("{n} tokens ({named} named)"),
        };
        let tls = if self.tls().is_some() { "wss" } else { "ws" };
        Ok(format!("{tls} on {}, {auth}", self.bind))
    }
}

impl Config {
    /// Checks the values serde cannot, naming the key at fault.
    pub fn validate(&self) -> Result<(), ConfigProblem> {
        let usize_max = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        // The ring of each stream is allocated whole when its first client joins.
        within(
            "client_queue_capacity",
            self.client_queue_capacity,
            1,
            1_000_000,
        )?;
        off_or_within(
            "send_buffer_bytes",
            self.send_buffer_bytes as u64,
            4096,
            64 * MIB,
        )?;
        off_or_within("ping_interval_ms", self.ping_interval_ms, 100, DAY_MS)?;
        within("pong_timeout_ms", self.pong_timeout_ms, 100, DAY_MS)?;
        // Linux takes at most 32767 s of TCP keepalive idle time.
        within("tcp_keepalive_ms", self.tcp_keepalive_ms, 1000, 32_767_000)?;
        // A control frame's payload is up to 125 bytes.
        within(
            "max_message_bytes",
            self.max_message_bytes,
            125,
            usize_max(16 * MIB),
        )?;
        within(
            "max_request_bytes",
            self.max_request_bytes,
            1024,
            usize_max(MIB),
        )?;
        within(
            "handshake_timeout_ms",
            self.handshake_timeout_ms,
            100,
            HOUR_MS,
        )?;
        within("close_timeout_ms", self.close_timeout_ms, 10, HOUR_MS)?;
        within("max_clients", self.max_clients, 1, 1_000_000)?;
        within(
            "max_connections_per_address",
            self.max_connections_per_address,
            1,
            1_000_000,
        )?;
        within("query_max_bytes", self.query_max_bytes, 16, 65_536)?;
        within("query_max_terms", self.query_max_terms, 1, 10_000)?;
        within("query_max_depth", self.query_max_depth, 1, 64)?;
        within(
            "max_distinct_queries",
            self.max_distinct_queries,
            1,
            100_000,
        )?;
        within(
            "replay_memory_bytes",
            self.replay_memory_bytes,
            MIB,
            16 * 1024 * MIB,
        )?;
        within(
            "replay_stall_timeout_ms",
            self.replay_stall_timeout_ms,
            100,
            HOUR_MS,
        )?;
        for (i, entry) in self.tokens.iter().enumerate() {
            if let TokenSetting::Named(named) = entry {
                named.validate(&format!("tokens[{i}]"))?;
            }
        }
        for (key, id) in [
            ("circuit_id", &self.circuit_id),
            ("service_id", &self.service_id),
        ] {
            if id.is_empty() || id.contains('/') {
                return Err(ConfigProblem::at(
                    key,
                    format_args!("must be non-empty and without `/`, not `{id}`"),
                ));
            }
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => {
                return Err(ConfigProblem::at(
                    "tls_cert",
                    "set without tls_key: TLS needs both",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigProblem::at(
                    "tls_key",
                    "set without tls_cert: TLS needs both",
                ));
            }
            _ => {}
        }
        if let Some(url) = &self.advertised_url
            && !(url.starts_with("ws://") || url.starts_with("wss://"))
        {
            return Err(ConfigProblem::at(
                "advertised_url",
                format_args!("must start with ws:// or wss://, not `{url}`"),
            ));
        }
        Ok(())
    }

    /// The base URL the streams are advertised under, without a trailing slash.
    pub fn base_url(&self, bound_port: u16) -> String {
        match &self.advertised_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None if self.tls().is_some() => format!("wss://localhost:{bound_port}"),
            None => format!("ws://localhost:{bound_port}"),
        }
    }

    /// The certificate and key files, if TLS is on (after [`Config::validate`]).
    pub fn tls(&self) -> Option<(&Path, &Path)> {
        Some((self.tls_cert.as_deref()?, self.tls_key.as_deref()?))
    }

    pub fn query_limits(&self) -> Limits {
        Limits {
            max_bytes: self.query_max_bytes,
            max_terms: self.query_max_terms,
            max_depth: self.query_max_depth,
        }
    }

    pub fn ping_interval(&self) -> Option<Duration> {
        (self.ping_interval_ms > 0).then(|| Duration::from_millis(self.ping_interval_ms))
    }

    pub fn pong_timeout(&self) -> Duration {
        Duration::from_millis(self.pong_timeout_ms)
    }

    pub fn tcp_keepalive(&self) -> Duration {
        Duration::from_millis(self.tcp_keepalive_ms)
    }

    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }

    pub fn close_timeout(&self) -> Duration {
        Duration::from_millis(self.close_timeout_ms)
    }

    pub fn replay_stall_timeout(&self) -> Duration {
        Duration::from_millis(self.replay_stall_timeout_ms)
    }
}

/// The label values the plugin's metrics reserve for clients without a
/// named token.
pub const RESERVED_NAMES: [&str; 2] = ["anonymous", "unnamed"];

impl NamedToken {
    /// Checks the entry at `at` (`tokens[2]`).
    fn validate(&self, at: &str) -> Result<(), ConfigProblem> {
        let name = &self.name;
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid || RESERVED_NAMES.contains(&name.as_str()) {
            return Err(ConfigProblem::at(
                &format!("{at}.name"),
                format_args!(
                    "a token's name must be 1 to 64 letters, digits, `_` or `-`, and not {}: not `{}`",
                    RESERVED_NAMES.join(" or "),
                    crate::filter::shorten(name)
                ),
            ));
        }
        if self.token.is_some() == self.token_file.is_some() {
            return Err(ConfigProblem::at(
                at,
                format_args!("token `{name}` needs exactly one of `token` and `token_file`"),
            ));
        }
        let key = |limit: &str| format!("{at}.{limit}");
        for (limit, value, min, max) in [
            ("max_connections", self.max_connections, 1, 1_000_000),
            ("max_streams", self.max_streams, 1, 100_000),
            (
                "max_messages_per_second",
                self.max_messages_per_second,
                1,
                1_000_000_000,
            ),
            (
                "max_replay_events",
                self.max_replay_events,
                0,
                1_000_000_000_000,
            ),
        ] {
            if let Some(value) = value {
                within(&key(limit), value, min, max)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the plugin and `check-config` make of a table.
    fn parse(json: &str) -> Result<Config, String> {
        let config: Config =
            eventhost_plugin_api::config::parse(json).map_err(|e| e.to_string())?;
        config.check().map_err(|e| e.to_string())?;
        Ok(config)
    }

    #[test]
    fn an_empty_table_serves_on_the_usual_port() {
        let config = parse("{}").unwrap();
        assert_eq!(config.bind, "127.0.0.1:9985");
        assert_eq!(config.base_url(9985), "ws://localhost:9985");
        assert_eq!(
            config.check().unwrap(),
            "ws on 127.0.0.1:9985, no authentication"
        );
    }

    #[test]
    fn names_the_key_at_fault() {
        let err = |json: &str| parse(json).err().unwrap();
        assert!(err(r#"{"ping_interval":1}"#).starts_with("unknown field `ping_interval`"));
        assert_eq!(
            err(r#"{"client_queue_capacity":0}"#),
            "`client_queue_capacity`: must be between 1 and 1000000, not 0"
        );
        assert!(err(r#"{"advertised_url":"http://x"}"#).starts_with("`advertised_url`: "));
        assert_eq!(
            err(r#"{"tls_cert":"cert.pem"}"#),
            "`tls_cert`: set without tls_key: TLS needs both"
        );
        assert_eq!(
            err(r#"{"tls_key":"key.pem"}"#),
            "`tls_key`: set without tls_cert: TLS needs both"
        );
        assert!(err(r#"{"max_message_bytes":10}"#).starts_with("`max_message_bytes`: "));
        // A type serde refuses: the key is named too.
        assert!(err(r#"{"max_clients":-1}"#).starts_with("`max_clients`: invalid "));
    }

    #[test]
    fn every_number_has_a_range() {
        for (key, bad) in [
            ("client_queue_capacity", "9223372036854775807"),
            ("client_queue_capacity", "20000000"),
            ("send_buffer_bytes", "1"),
            ("ping_interval_ms", "18446744073709551615"),
            ("pong_timeout_ms", "0"),
            ("tcp_keepalive_ms", "99999999"),
            ("max_message_bytes", "18446744073709551615"),
            ("max_request_bytes", "100"),
            ("handshake_timeout_ms", "18446744073709551615"),
            ("close_timeout_ms", "0"),
            ("max_clients", "0"),
            ("max_connections_per_address", "0"),
            ("query_max_bytes", "1000000"),
            ("query_max_terms", "0"),
            ("query_max_depth", "1000"),
            ("max_distinct_queries", "0"),
            ("replay_memory_bytes", "1"),
            ("replay_stall_timeout_ms", "18446744073709551615"),
        ] {
            let err = parse(&format!(r#"{{"{key}":{bad}}}"#)).err().unwrap();
            assert!(
                err.starts_with(&format!("`{key}`: must be ")),
                "{key}: {err}"
            );
            assert!(err.ends_with(&format!("not {bad}")), "{key}: {err}");
        }
        assert!(parse(r#"{"ping_interval_ms":0,"send_buffer_bytes":0}"#).is_ok());
    }

    #[test]
    fn named_tokens_are_checked_and_never_quoted() {
        let ok = parse(
            r#"{"tokens":["plain",{"name":"explorer","token":"t","max_connections":2,"max_streams":1,"max_messages_per_second":10,"max_replay_events":0}]}"#,
        )
        .unwrap();
        assert_eq!(ok.tokens.len(), 2);
        assert_eq!(
            ok.check().unwrap(),
            "ws on 127.0.0.1:9985, 2 tokens (1 named)"
        );
        for (json, message) in [
            (
                r#"{"name":"a b","token":"t"}"#,
                "`tokens[0].name`: a token's name must be",
            ),
            (
                r#"{"name":"anonymous","token":"t"}"#,
                "and not anonymous or unnamed",
            ),
            (
                r#"{"name":"n"}"#,
                "`tokens[0]`: token `n` needs exactly one of `token` and `token_file`",
            ),
            (
                r#"{"name":"n","token":"t","token_file":"f"}"#,
                "exactly one",
            ),
            (
                r#"{"name":"n","token":"t","max_connections":0}"#,
                "`tokens[0].max_connections`: must be between 1 and 1000000, not 0",
            ),
        ] {
            let err = parse(&format!(r#"{{"tokens":[{json}]}}"#)).err().unwrap();
            assert!(err.contains(message), "{json}: {err}");
        }
        for json in [
            r#"{"tokens":"s3cr3t"}"#,
            r#"{"tokens":["ok",["s3cr3t"]]}"#,
            r#"{"tokens":[{"name":"n","token":["s3cr3t"]}]}"#,
            r#"{"tokens":[{"name":"n","token":"s3cr3t","colour":1}]}"#,
            r#"{"tokens":[{"token":"s3cr3t"}]}"#,
            r#"{"tokens":[{"name":"n","token":{"s3cr3t":1}}]}"#,
        ] {
            let err = parse(json).err().unwrap();
            assert!(err.contains("tokens"), "{json}: {err}");
            assert!(!err.contains("s3cr3t"), "{json}: {err}");
        }
    }

    #[test]
    fn an_advertised_url_is_used_as_given() {
        let config = parse(r#"{"advertised_url":"wss://node.example/"}"#).unwrap();
        assert_eq!(config.base_url(1), "wss://node.example");
        let config =
            parse(r#"{"advertised_url":"wss://node.example:443","tls_cert":"c","tls_key":"k"}"#)
                .unwrap();
        assert_eq!(config.base_url(1), "wss://node.example:443");
    }

    #[test]
    fn tls_advertises_wss() {
        let config = parse(r#"{"tls_cert":"c.pem","tls_key":"k.pem"}"#).unwrap();
        assert_eq!(config.base_url(9985), "wss://localhost:9985");
        assert_eq!(config.tls(), Some((Path::new("c.pem"), Path::new("k.pem"))));
    }
}
