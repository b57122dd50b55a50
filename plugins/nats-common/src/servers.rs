//! The `servers` (or `servers_env`) of a configuration: NATS URLs, checked
//! once at start. Credentials in a URL are refused, so that they are never
//! shown: logs show the servers as configured.

use async_nats::ServerAddr;

/// Used when the configuration names no server: a local one.
pub const DEFAULT: &str = "nats://127.0.0.1:4222";

/// The servers of `servers`, or of the comma-separated list in the
/// environment variable `servers_env` names (looked up with `env`), not
/// both; each one checked.
pub fn check(
    servers: Vec<String>,
    servers_env: Option<String>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Vec<ServerAddr>, String> {
    let servers = match servers_env {
        Some(var) => {
            if servers != [DEFAULT] {
                return Err("set either `servers` or `servers_env`, not both".to_owned());
            }
            let value = env(&var).filter(|v| !v.trim().is_empty()).ok_or_else(|| {
                format!("`servers_env` names the environment variable {var}, which is not set")
            })?;
            value.split(',').map(|s| s.trim().to_owned()).collect()
        }
        None => servers,
    };
    if servers.is_empty() {
        return Err("`servers` is empty: name at least one NATS server".to_owned());
    }
    servers
        .iter()
        .enumerate()
        .map(|(i, url)| server(i, url))
        .collect()
}

/// The `index`-th server URL, checked.
fn server(index: usize, url: &str) -> Result<ServerAddr, String> {
    let n = index + 1;
    let authority = url.split_once("://").map_or(url, |(_, rest)| rest);
    if authority
        .split(['/', '?', '#'])
        .next()
        .is_some_and(|a| a.contains('@'))
    {
        return Err(format!(
            "server {n} carries credentials in its URL; put them in the `auth` table (or its `_env` keys) instead"
        ));
    }
    let addr: ServerAddr = url
        .parse()
        .map_err(|e| format!("server {n} (`{url}`) is not a NATS URL: {e}"))?;
    if addr.scheme() != "nats" {
        return Err(format!(
            "server {n} (`{url}`): {}:// is not supported by this build of eventhost; use nats://",
            addr.scheme()
        ));
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(var: &str) -> Option<String> {
        (var == "SERVERS").then(|| "nats://a:1, nats://b:2".to_owned())
    }

    #[test]
    fn from_the_list_or_the_environment() {
        let hosts = |servers: Vec<ServerAddr>| -> Vec<(String, u16)> {
            servers
                .iter()
                .map(|a| (a.host().to_owned(), a.port()))
                .collect()
        };
        let listed = check(vec![DEFAULT.to_owned()], None, &env).unwrap();
        assert_eq!(hosts(listed), [("127.0.0.1".to_owned(), 4222)]);
        let from_env = check(vec![DEFAULT.to_owned()], Some("SERVERS".into()), &env).unwrap();
        assert_eq!(hosts(from_env), [("a".to_owned(), 1), ("b".to_owned(), 2)]);
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            (vec![], None, "`servers` is empty"),
            (vec!["nats://a:1", "http://b"], None, "server 2"),
            (
                vec!["nats://bob:hunter2@a:4222"],
                None,
                "server 1 carries credentials",
            ),
            (vec!["tls://a:4222"], None, "tls://"),
            (vec!["nats://a:1"], Some("SERVERS"), "not both"),
            (vec![DEFAULT], Some("NONE"), "NONE, which is not set"),
        ];
        for (servers, var, expected) in cases {
            let servers = servers.into_iter().map(str::to_owned).collect();
            let err = check(servers, var.map(str::to_owned), &env).unwrap_err();
            assert!(err.contains(expected), "{err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }
}
