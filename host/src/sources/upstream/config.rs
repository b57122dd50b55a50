//! The `[source]` table of an edge node (`kind = "nats"`): which JetStream
//! stream it follows, as whom, and how. Checked when the configuration is
//! read, so that a mistake stops `eventhost run` (and `check-config`) with
//! one line naming the key; docs/scaling-out.md ("Edge nodes") has every
//! key and its default. The credentials are read from the environment
//! variables the table names when they are needed (`run`, `check-config`),
//! so that `eventhost events` or `verify` need no secret.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::ServerAddr;
use nats_common::{CredentialKeys, Credentials, Format, Subjects, servers, subject};
use serde::Deserialize;

use crate::config::{bounded, millis};

/// The table as written (`kind` aside); every key but `durable` has a default.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawUpstream {
    servers: Vec<String>,
    servers_env: Option<String>,
    auth: CredentialKeys,
    stream: String,
    subject_prefix: String,
    durable: Option<String>,
    start_sequence: u64,
    ledger_url: Option<String>,
    ack_wait_ms: u64,
    batch: usize,
    reconnect_initial_ms: u64,
    reconnect_max_ms: u64,
    ready_max_lag: u64,
}

impl Default for RawUpstream {
    fn default() -> Self {
        RawUpstream {
            servers: vec![servers::DEFAULT.to_owned()],
            servers_env: None,
            auth: CredentialKeys::default(),
            // The nats plugin's defaults: an edge follows a plugin
            // configured with none.
            stream: "EVENTHOST".to_owned(),
            subject_prefix: "eventhost".to_owned(),
            durable: None,
            start_sequence: 0,
            ledger_url: None,
            ack_wait_ms: 30_000,
            batch: 256,
            reconnect_initial_ms: 500,
            reconnect_max_ms: 30_000,
            ready_max_lag: 1_000,
        }
    }
}

/// Where an edge whose log is empty starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// At the first message the stream still holds.
    First,
    /// At this stream sequence number (or the first after it the stream holds).
    Sequence(u64),
}

/// A checked `[source]` table of `kind = "nats"`.
#[derive(Clone)]
pub struct UpstreamConfig {
    pub servers: Vec<ServerAddr>,
    /// The `auth` table, checked by [`UpstreamConfig::credentials`].
    auth: CredentialKeys,
    /// The configuration's directory: a relative `creds_file` is there.
    base: PathBuf,
    pub stream: String,
    /// The nats plugin's subjects under `subject_prefix`, block format.
    pub subjects: Subjects,
    /// The durable consumer's name: this edge's position in the stream.
    pub durable: String,
    pub start: Start,
    /// Where clients send transactions; named in the answers to them.
    pub ledger_url: Option<String>,
    /// How long JetStream waits for an acknowledgement before it delivers
    /// a message again.
    pub ack_wait: Duration,
    /// Most messages committed to the log in one transaction.
    pub batch: usize,
    pub reconnect_initial: Duration,
    pub reconnect_max: Duration,
    /// `/health/ready` fails while the edge is more events than this behind.
    pub ready_max_lag: u64,
}

/// Every setting but the secrets, so that a configuration can be shown
/// and compared (`eventhost admin reload-config` says a change needs a
/// restart).
impl fmt::Debug for UpstreamConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let servers: Vec<&str> = self.servers.iter().map(|s| s.as_url_str()).collect();
        f.debug_struct("UpstreamConfig")
            .field("servers", &servers)
            .field("auth", &auth_keys(&self.auth))
            .field("stream", &self.stream)
            .field("subjects", &self.subjects.all())
            .field("durable", &self.durable)
            .field("start", &self.start)
            .field("ledger_url", &self.ledger_url)
            .field("ack_wait", &self.ack_wait)
            .field("batch", &self.batch)
            .field("reconnect_initial", &self.reconnect_initial)
            .field("reconnect_max", &self.reconnect_max)
            .field("ready_max_lag", &self.ready_max_lag)
            .finish()
    }
}

impl UpstreamConfig {
    /// How to log in: the `auth` table, its secrets from the table or from
    /// the environment variables it names (looked up with `env`).
    pub fn credentials(
        &self,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<Credentials, String> {
        let credentials = Credentials::check(self.auth.clone(), env)
            .map_err(|e| format!("[source.auth]: {e}"))?;
        Ok(match credentials {
            Credentials::CredsFile(path) => Credentials::CredsFile(self.base.join(path)),
            other => other,
        })
    }

    /// The servers and the stream, as the log shows them (never a secret).
    pub fn describe(&self) -> String {
        let servers: Vec<&str> = self.servers.iter().map(|s| s.as_url_str()).collect();
        format!(
            "stream `{}` on {} (consumer `{}`)",
            self.stream,
            servers.join(", "),
            self.durable,
        )
    }
}

/// Which `auth` keys are set, and the user and variable names: never a
/// secret's value.
fn auth_keys(keys: &CredentialKeys) -> String {
    let named = [
        ("user", keys.user.clone()),
        ("password", keys.password.as_ref().map(|_| "…".to_owned())),
        ("password_env", keys.password_env.clone()),
        ("token", keys.token.as_ref().map(|_| "…".to_owned())),
        ("token_env", keys.token_env.clone()),
        ("nkey_seed", keys.nkey_seed.as_ref().map(|_| "…".to_owned())),
        ("nkey_seed_env", keys.nkey_seed_env.clone()),
        (
            "creds_file",
            keys.creds_file.as_ref().map(|p| p.display().to_string()),
        ),
        ("creds_file_env", keys.creds_file_env.clone()),
    ];
    let set: Vec<String> = named
        .into_iter()
        .filter_map(|(key, value)| value.map(|v| format!("{key} = {v}")))
        .collect();
    set.join(", ")
}

impl RawUpstream {
    /// Checks every key but the credentials' (see
    /// [`UpstreamConfig::credentials`]); `base` is the configuration's
    /// directory (a relative `creds_file` is found from there), `env` looks
    /// up `servers_env`.
    pub fn check(
        self,
        base: &Path,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<UpstreamConfig, String> {
        let servers = servers::check(self.servers, self.servers_env, env)?;
        subject::check_stream_name(&self.stream)?;
        // Only the block format rebuilds events; the subjects say where
        // they are.
        let subjects = Subjects::new(&self.subject_prefix, Format::Block)?;
        let durable = self.durable.ok_or(
            "`durable` is missing: name this edge's consumer of the stream, a name no other edge uses (e.g. \"edge-eu-1\")",
        )?;
        subject::check_name("durable", &durable)?;
        let ledger_url = self.ledger_url.map(check_url).transpose()?;
        let reconnect_initial = millis(
            "`reconnect_initial_ms`",
            self.reconnect_initial_ms,
            1..=600_000,
        )?;
        Ok(UpstreamConfig {
            servers,
            auth: self.auth,
            base: base.to_owned(),
            stream: self.stream,
            subjects,
            durable,
            start: match self.start_sequence {
                0 => Start::First,
                n => Start::Sequence(n),
            },
            ledger_url,
            ack_wait: millis("`ack_wait_ms`", self.ack_wait_ms, 1_000..=3_600_000)?,
            batch: bounded("`batch`", self.batch, 1..=10_000)?,
            reconnect_initial,
            reconnect_max: millis(
                "`reconnect_max_ms`",
                self.reconnect_max_ms,
                self.reconnect_initial_ms..=3_600_000,
            )?,
            ready_max_lag: self.ready_max_lag,
        })
    }
}

/// The ledger node's URL: shown to clients as it is written, so it must be
/// an http(s) URL and one line.
fn check_url(url: String) -> Result<String, String> {
    let valid = (url.starts_with("http://") || url.starts_with("https://"))
        && url.len() > "https://".len()
        && url.bytes().all(|b| b.is_ascii_graphic());
    if !valid {
        return Err(format!(
            "`ledger_url` `{}` is not an http:// or https:// URL (e.g. \"https://ledger.example.com:9984\")",
            url.escape_default()
        ));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(var: &str) -> Option<String> {
        (var == "PASSWORD").then(|| "hunter2".to_owned())
    }

    /// The table checked, its credentials too.
    fn check(table: &str) -> Result<UpstreamConfig, String> {
        let raw: RawUpstream = toml::from_str(table).map_err(|e| e.to_string())?;
        let config = raw.check(Path::new("/etc/eventhost"), &env)?;
        config.credentials(&env)?;
        Ok(config)
    }

    #[test]
    fn defaults_follow_the_nats_plugins_defaults() {
        let c = check("durable = \"edge-1\"").unwrap();
        assert_eq!(c.servers[0].as_url_str(), "nats://127.0.0.1:4222");
        assert_eq!(c.stream, "EVENTHOST");
        assert_eq!(c.subjects.all(), "eventhost.>");
        assert_eq!(c.start, Start::First);
        assert_eq!(c.ledger_url, None);
        assert_eq!(c.ack_wait, Duration::from_secs(30));
        assert_eq!(c.batch, 256);
        assert_eq!(c.ready_max_lag, 1000);
        assert_eq!(
            c.describe(),
            "stream `EVENTHOST` on nats://127.0.0.1:4222 (consumer `edge-1`)"
        );
        assert_eq!(c.credentials(&env).unwrap().describe(), "no credentials");
    }

    #[test]
    fn every_key_is_read() {
        let c = check(
            "servers = [\"nats://a:1\", \"nats://b:2\"]\nstream = \"LEDGER\"\nsubject_prefix = \"l.eu\"\ndurable = \"edge-2\"\nstart_sequence = 40\nledger_url = \"https://ledger.example.com:9984/\"\nack_wait_ms = 5000\nbatch = 10\n[auth]\nuser = \"edge\"\npassword_env = \"PASSWORD\"\n",
        )
        .unwrap();
        assert_eq!(c.servers.len(), 2);
        assert_eq!(c.subjects.block_valid, "l.eu.block.valid");
        assert_eq!(c.start, Start::Sequence(40));
        assert_eq!(
            c.ledger_url.as_deref(),
            Some("https://ledger.example.com:9984")
        );
        assert_eq!(c.ack_wait, Duration::from_secs(5));
        assert_eq!(c.batch, 10);
        assert_eq!(c.credentials(&env).unwrap().describe(), "user `edge`");
        let shown = format!("{c:?}");
        assert!(
            shown.contains("user = edge, password_env = PASSWORD"),
            "{shown}"
        );
        let inline = check("durable = \"e\"\n[auth]\ntoken = \"hunter2\"").unwrap();
        let shown = format!("{inline:?}");
        assert!(
            shown.contains("token = …") && !shown.contains("hunter2"),
            "{shown}"
        );
        let creds = check("durable = \"e\"\n[auth]\ncreds_file = \"edge.creds\"").unwrap();
        assert_eq!(
            creds.credentials(&env).unwrap().describe(),
            "the creds file /etc/eventhost/edge.creds"
        );
        // The variables are looked up when the credentials are needed.
        let unset = toml::from_str::<RawUpstream>("durable = \"e\"\n[auth]\ntoken_env = \"UNSET\"")
            .unwrap()
            .check(Path::new("/"), &env)
            .unwrap();
        assert_eq!(
            unset.credentials(&env).err().unwrap(),
            "[source.auth]: `token_env` names the environment variable UNSET, which is not set"
        );
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            ("", "`durable` is missing"),
            ("durable = \"a.b\"", "`durable` `a.b`"),
            ("durable = \"e\"\nstream = \"a b\"", "`stream`"),
            (
                "durable = \"e\"\nsubject_prefix = \"a.>\"",
                "`subject_prefix`",
            ),
            ("durable = \"e\"\nservers = []", "`servers` is empty"),
            (
                "durable = \"e\"\nservers = [\"nats://u:hunter2@a:1\"]",
                "carries credentials",
            ),
            (
                "durable = \"e\"\nledger_url = \"ledger:9984\"",
                "`ledger_url`",
            ),
            ("durable = \"e\"\nack_wait_ms = 10", "`ack_wait_ms` = 10"),
            ("durable = \"e\"\nbatch = 0", "`batch` = 0"),
            (
                "durable = \"e\"\nreconnect_initial_ms = 900\nreconnect_max_ms = 10",
                "`reconnect_max_ms` = 10",
            ),
            (
                "durable = \"e\"\nformat = \"block\"",
                "unknown field `format`",
            ),
            ("durable = \"e\"\n[auth]\nuser = \"u\"", "`user` needs"),
        ];
        for (table, expected) in cases {
            let err = check(table).err().unwrap();
            assert!(err.contains(expected), "{table:?}: {err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }
}
