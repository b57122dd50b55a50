//! The plugin's `[plugins.config]` table, checked once at start so that a
//! mistake is reported then, by name, rather than found while publishing.

use lapin::ExchangeKind;
use lapin::types::ShortString;
use plugin_support::transaction::MAX_OPERATION_LEN;
use serde::Deserialize;

pub use plugin_support::Format;

use crate::broker_url::BrokerUrl;

/// The table as written; every key has a default.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The broker, e.g. `amqp://user:password@host:5672/vhost?heartbeat=10`.
    pub url: Option<String>,
    /// The environment variable that holds the broker URL instead of `url`.
    pub url_env: Option<String>,
    pub exchange: String,
    pub exchange_type: ExchangeType,
    pub format: Format,
    pub routing_keys: RoutingKeys,
    /// Events received but not yet confirmed by the broker; receiving
    /// pauses while this many are outstanding.
    pub max_unconfirmed_events: usize,
    pub reconnect_initial_ms: u64,
    pub reconnect_max_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            url: None,
            url_env: None,
            exchange: "eventhost".to_owned(),
            exchange_type: ExchangeType::Topic,
            format: Format::Block,
            routing_keys: RoutingKeys::default(),
            max_unconfirmed_events: 256,
            reconnect_initial_ms: 500,
            reconnect_max_ms: 30_000,
        }
    }
}

#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ExchangeType {
    Direct,
    Fanout,
    Topic,
    Headers,
}

impl ExchangeType {
    /// The name as configured (and as the broker calls it).
    pub fn name(self) -> &'static str {
        match self {
            ExchangeType::Direct => "direct",
            ExchangeType::Fanout => "fanout",
            ExchangeType::Topic => "topic",
            ExchangeType::Headers => "headers",
        }
    }

    pub fn kind(self) -> ExchangeKind {
        match self {
            ExchangeType::Direct => ExchangeKind::Direct,
            ExchangeType::Fanout => ExchangeKind::Fanout,
            ExchangeType::Topic => ExchangeKind::Topic,
            ExchangeType::Headers => ExchangeKind::Headers,
        }
    }
}

/// The routing key of each kind of message.
#[derive(Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingKeys {
    pub block_valid: String,
    pub block_invalid: String,
    /// For transaction messages; `{operation}` becomes `create` or `transfer`.
    pub transaction: String,
}

impl Default for RoutingKeys {
    fn default() -> Self {
        RoutingKeys {
            block_valid: "block.valid".to_owned(),
            block_invalid: "block.invalid".to_owned(),
            transaction: "tx.{operation}".to_owned(),
        }
    }
}

/// A checked configuration: what the link needs.
pub struct Settings {
    pub broker: BrokerUrl,
    pub exchange: ShortString,
    pub exchange_type: ExchangeType,
    pub format: Format,
    pub routing_keys: RoutingKeys,
}

/// The placeholder in `routing_keys.transaction`.
pub const OPERATION: &str = "{operation}";

impl Config {
    /// Checks every setting; `env` looks up environment variables. Returns
    /// the link's settings and the publishing core's.
    pub fn check(
        self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<(Settings, plugin_support::Settings), String> {
        let broker = BrokerUrl::resolve(self.url.as_deref(), self.url_env.as_deref(), env)?;
        if self.exchange.is_empty() {
            return Err("`exchange` must not be empty".to_owned());
        }
        let exchange = short_string("exchange", &self.exchange, 0)?;
        let keys = &self.routing_keys;
        short_string("routing_keys.block_valid", &keys.block_valid, 0)?;
        short_string("routing_keys.block_invalid", &keys.block_invalid, 0)?;
        let operations = keys.transaction.matches(OPERATION).count();
        short_string(
            "routing_keys.transaction",
            &keys.transaction,
            operations * MAX_OPERATION_LEN,
        )?;
        let bridge = plugin_support::Settings::check(
            self.max_unconfirmed_events,
            self.reconnect_initial_ms,
            self.reconnect_max_ms,
            "amqp",
        )?;
        let settings = Settings {
            broker,
            exchange,
            exchange_type: self.exchange_type,
            format: self.format,
            routing_keys: self.routing_keys,
        };
        Ok((settings, bridge))
    }
}

/// AMQP names and keys are at most 255 bytes (`room` of them kept for expansion).
fn short_string(key: &str, value: &str, room: usize) -> Result<ShortString, String> {
    if value.len() + room > 255 {
        return Err(format!(
            "`{key}` is {} bytes long; AMQP allows at most {}",
            value.len(),
            255 - room
        ));
    }
    Ok(ShortString::from(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    fn check(toml_json: serde_json::Value) -> Result<(Settings, plugin_support::Settings), String> {
        let config: Config = serde_json::from_value(toml_json).map_err(|e| e.to_string())?;
        config.check(|_| None)
    }

    #[test]
    fn an_empty_table_gives_the_documented_defaults() {
        let (s, bridge) = check(serde_json::json!({})).unwrap();
        assert_eq!(s.exchange.as_str(), "eventhost");
        assert_eq!(s.exchange_type, ExchangeType::Topic);
        assert_eq!(s.format, Format::Block);
        assert_eq!(s.routing_keys, RoutingKeys::default());
        assert_eq!(bridge.max_unconfirmed_events, 256);
        assert_eq!(bridge.reconnect_initial, Duration::from_millis(500));
        assert_eq!(bridge.reconnect_max, Duration::from_secs(30));
    }

    #[test]
    fn names_the_setting_that_is_wrong() {
        let cases = [
            (serde_json::json!({"exchnage": "x"}), "exchnage"),
            (serde_json::json!({"format": "xml"}), "xml"),
            (serde_json::json!({"exchange_type": "fan"}), "fan"),
            (serde_json::json!({"routing_keys": {"tx": "a"}}), "tx"),
            (serde_json::json!({"exchange": ""}), "`exchange`"),
            (
                serde_json::json!({"exchange": "x".repeat(300)}),
                "`exchange`",
            ),
            (
                serde_json::json!({"routing_keys": {"block_valid": "b".repeat(256)}}),
                "routing_keys.block_valid",
            ),
            (
                // Fits as written, not once `{operation}` is expanded.
                serde_json::json!({"routing_keys": {"transaction": format!("{}{{operation}}", "t".repeat(230))}}),
                "routing_keys.transaction",
            ),
            (
                serde_json::json!({"max_unconfirmed_events": 0}),
                "max_unconfirmed_events",
            ),
            (
                serde_json::json!({"reconnect_initial_ms": 5000, "reconnect_max_ms": 100}),
                "reconnect_initial_ms",
            ),
            (serde_json::json!({"url": "amqps://h/"}), "TLS"),
        ];
        for (table, expected) in cases {
            let err = check(table.clone()).err().unwrap();
            assert!(err.contains(expected), "{table}: {err}");
        }
    }
}
