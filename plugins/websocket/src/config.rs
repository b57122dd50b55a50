//! The plugin's `[plugins.config]` table.
//!
//! Every key has a default, so an empty table serves the streams on
//! `127.0.0.1:9985` the way BigchainDB and Planetmint do. Unknown keys are
//! errors: a misspelt limit must not silently fall back to its default.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

// No `Debug`: the table may hold secrets (`tokens`), which must never reach a log.
#[derive(Deserialize, Clone)]
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
    /// How long a new connection may take to complete its HTTP upgrade.
    pub handshake_timeout_ms: u64,
    /// How long to try to deliver a close frame before dropping the socket.
    pub close_timeout_ms: u64,
    /// Connected clients at most; more are refused with 503 at the upgrade.
    pub max_clients: usize,
    /// Bearer tokens a client must present one of (see `auth`); none: no authentication.
    pub tokens: Vec<String>,
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
            handshake_timeout_ms: 10_000,
            close_timeout_ms: 1_000,
            max_clients: 10_000,
            tokens: Vec::new(),
            tokens_file: None,
            tls_cert: None,
            tls_key: None,
            circuit_id: "eventhost".into(),
            service_id: "ledger".into(),
        }
    }
}

/// Smallest useful incoming message limit: a control frame's payload is up to 125 bytes.
const MIN_MESSAGE_BYTES: usize = 125;

impl Config {
    /// Checks the values serde cannot, naming the key at fault.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("client_queue_capacity", self.client_queue_capacity as u64),
            ("pong_timeout_ms", self.pong_timeout_ms),
            ("tcp_keepalive_ms", self.tcp_keepalive_ms),
            ("handshake_timeout_ms", self.handshake_timeout_ms),
            ("close_timeout_ms", self.close_timeout_ms),
            ("max_clients", self.max_clients as u64),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(format!("{key} must be greater than 0"));
        }
        if self.tcp_keepalive_ms < 1000 {
            return Err(format!(
                "tcp_keepalive_ms must be at least 1000 (TCP counts in seconds), not {}",
                self.tcp_keepalive_ms
            ));
        }
        if self.max_message_bytes < MIN_MESSAGE_BYTES {
            return Err(format!(
                "max_message_bytes must be at least {MIN_MESSAGE_BYTES}, not {}",
                self.max_message_bytes
            ));
        }
        for (key, id) in [
            ("circuit_id", &self.circuit_id),
            ("service_id", &self.service_id),
        ] {
            if id.is_empty() || id.contains('/') {
                return Err(format!(
                    "{key} must be non-empty and without `/`, not `{id}`"
                ));
            }
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => {
                return Err("tls_cert is set but tls_key is not: TLS needs both".into());
            }
            (None, Some(_)) => {
                return Err("tls_key is set but tls_cert is not: TLS needs both".into());
            }
            _ => {}
        }
        if let Some(url) = &self.advertised_url {
            if !(url.starts_with("ws://") || url.starts_with("wss://")) {
                return Err(format!(
                    "advertised_url must start with ws:// or wss://, not `{url}`"
                ));
            }
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

    /// Per-connection buffers. tungstenite's defaults zero-fill a 128 KiB
    /// read buffer per connection (~138 KB of RSS per idle client); clients
    /// only send control frames, so 1 KiB is plenty. The write buffer only
    /// grows while a client is being written to: 64 KiB of it cost a third
    /// less CPU per message than 16 KiB in benchmark row 4 (fewer, larger
    /// sends), for at most 64 KiB per busy client.
    pub fn websocket(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            .read_buffer_size(1024)
            .write_buffer_size(64 * 1024)
            .max_message_size(Some(self.max_message_bytes))
            .max_frame_size(Some(self.max_message_bytes))
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Config, String> {
        let config: Config = serde_json::from_str(json).map_err(|e| e.to_string())?;
        config.validate().map(|()| config)
    }

    #[test]
    fn an_empty_table_serves_on_the_usual_port() {
        let config = parse("{}").unwrap();
        assert_eq!(config.bind, "127.0.0.1:9985");
        assert_eq!(config.base_url(9985), "ws://localhost:9985");
    }

    #[test]
    fn names_the_key_at_fault() {
        assert!(
            parse(r#"{"ping_interval":1}"#)
                .err()
                .unwrap()
                .contains("ping_interval")
        );
        assert!(
            parse(r#"{"client_queue_capacity":0}"#)
                .err()
                .unwrap()
                .contains("client_queue_capacity")
        );
        assert!(
            parse(r#"{"advertised_url":"http://x"}"#)
                .err()
                .unwrap()
                .contains("advertised_url")
        );
        assert!(
            parse(r#"{"tls_cert":"cert.pem"}"#)
                .err()
                .unwrap()
                .starts_with("tls_cert is set but tls_key is not")
        );
        assert!(
            parse(r#"{"tls_key":"key.pem"}"#)
                .err()
                .unwrap()
                .starts_with("tls_key is set but tls_cert is not")
        );
        assert!(
            parse(r#"{"max_message_bytes":10}"#)
                .err()
                .unwrap()
                .contains("max_message_bytes")
        );
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
