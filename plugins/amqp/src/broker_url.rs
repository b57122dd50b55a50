//! The broker's address. It may come from an environment variable rather
//! than config.toml, so that credentials need not sit in a file; and it is
//! only ever shown with its password replaced, so logs never carry them.

use std::fmt;

use lapin::uri::{AMQPScheme, AMQPUri};

/// Used when the configuration names no broker: a local RabbitMQ's default vhost as guest.
pub const DEFAULT_URL: &str = "amqp://127.0.0.1:5672/%2f";

/// What is shown in place of the password.
const REDACTED: &str = "REDACTED";

/// A parsed broker URL; its `Display` form has the password redacted.
pub struct BrokerUrl {
    uri: AMQPUri,
}

impl BrokerUrl {
    /// The URL from `url`, or from the environment variable named by
    /// `url_env` (looked up with `env`), or [`DEFAULT_URL`] when neither is set.
    pub fn resolve(
        url: Option<&str>,
        url_env: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<BrokerUrl, String> {
        let (raw, origin) = match (url, url_env) {
            (Some(_), Some(_)) => {
                return Err("set either `url` or `url_env`, not both".to_owned());
            }
            (Some(url), None) => (url.to_owned(), "`url`".to_owned()),
            (None, Some(var)) => {
                let value = env(var).filter(|v| !v.is_empty()).ok_or_else(|| {
                    format!("`url_env` names the environment variable {var}, which is not set")
                })?;
                (value, format!("the environment variable {var}"))
            }
            (None, None) => (DEFAULT_URL.to_owned(), "the default".to_owned()),
        };
        Self::parse(&raw).map_err(|e| format!("invalid broker URL in {origin}: {e}"))
    }

    fn parse(raw: &str) -> Result<BrokerUrl, String> {
        // The parser's messages may quote the input, password included.
        let uri: AMQPUri = raw
            .parse()
            .map_err(|e: String| e.replace(raw, "<the URL>"))?;
        if uri.scheme == AMQPScheme::AMQPS {
            return Err(
                "amqps:// (TLS) is not supported by this build of the plugin; use amqp://".into(),
            );
        }
        // amq-protocol-uri reads only domain names and IPv4 addresses as
        // hosts and silently puts `localhost` in place of an IPv6 literal.
        if authority(raw).starts_with('[') {
            return Err("an IPv6 address as host is not supported; use a host name".into());
        }
        Ok(BrokerUrl { uri })
    }

    /// The URL to connect to.
    pub fn uri(&self) -> AMQPUri {
        self.uri.clone()
    }
}

/// The host and port of a URL: what follows `scheme://` and any `user:password@`.
fn authority(raw: &str) -> &str {
    let rest = raw.split_once("://").map_or(raw, |(_, rest)| rest);
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.uri.clone();
        shown.authority.userinfo.password = REDACTED.to_owned();
        shown.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn shows_the_url_without_its_password() {
        let url = BrokerUrl::resolve(
            Some("amqp://bob:s3cret@rabbit.local:5673/prod"),
            None,
            no_env,
        )
        .unwrap();
        let shown = url.to_string();
        assert_eq!(shown, "amqp://bob:REDACTED@rabbit.local:5673/prod");
        assert_eq!(url.uri().authority.userinfo.password, "s3cret");
    }

    #[test]
    fn reads_the_url_from_the_named_variable() {
        let env = |name: &str| (name == "AMQP_URL").then(|| "amqp://u:pw@10.0.0.7/%2f".to_owned());
        let url = BrokerUrl::resolve(None, Some("AMQP_URL"), env).unwrap();
        assert_eq!(url.uri().authority.host, "10.0.0.7");
        assert_eq!(url.to_string(), "amqp://u:REDACTED@10.0.0.7:5672/%2F");
        let err = BrokerUrl::resolve(None, Some("MISSING"), env)
            .err()
            .unwrap();
        assert!(err.contains("MISSING") && err.contains("not set"), "{err}");
    }

    #[test]
    fn defaults_to_a_local_broker() {
        let url = BrokerUrl::resolve(None, None, no_env).unwrap();
        assert_eq!(url.to_string(), "amqp://guest:REDACTED@127.0.0.1:5672/%2F");
    }

    #[test]
    fn refuses_what_it_cannot_honour_without_echoing_secrets() {
        let cases = [
            ("amqps://u:pw@host/", "TLS"),
            ("amqp://u:pw@[::1]:5672/", "IPv6"),
            ("amqp:u:hunter2@host", "<the URL>"),
            ("http://u:hunter2@host/", "scheme"),
            ("amqp://u:hunter2@host:99999/", "port"),
        ];
        for (raw, expected) in cases {
            let err = BrokerUrl::resolve(Some(raw), None, no_env).err().unwrap();
            assert!(err.contains(expected), "{raw}: {err}");
            assert!(!err.contains("hunter2"), "{raw}: {err}");
        }
        let err = BrokerUrl::resolve(Some("amqp://h"), Some("V"), no_env)
            .err()
            .unwrap();
        assert!(err.contains("not both"), "{err}");
    }
}
