//! Optional bearer authentication at the upgrade.
//!
//! With `tokens` or `tokens_file` configured, a client must present one of
//! the tokens, in any of these forms:
//!
//! - `Authorization: Bearer <token>` (BigchainDB-style clients, curl);
//! - `Authorization: Bearer Cylinder: <token>` (Splinter's clients);
//! - the subprotocols `bearer, <token>` in `Sec-WebSocket-Protocol`, for
//!   browsers, which cannot set headers on a WebSocket: `new
//!   WebSocket(url, ["bearer", token])`. The server answers with the
//!   subprotocol `bearer`. A header, unlike a query parameter, is kept out
//!   of proxies' access logs and the browser's history.
//!
//! A token may have a name and limits (see `quota`); the name labels its
//! clients in the metrics. A request without a valid token is refused
//! with 401 before any socket opens. Only sha3-256 digests of the tokens are kept, and a presented
//! token's digest is compared with every one of them in constant time, so
//! neither the comparison's time nor its length reveals a token. Tokens are
//! never logged, and refusals never quote them.

use std::path::Path;

use sha3::{Digest, Sha3_256};
use subtle::{ConditionallySelectable, ConstantTimeEq};
use tokio_tungstenite::tungstenite::handshake::server::Request;
use tokio_tungstenite::tungstenite::http::header;

use crate::config::{NamedToken, TokenSetting};
use crate::quota::{Identity, TokenLimits};

/// The subprotocol a browser offers before its token.
pub const SUBPROTOCOL: &str = "bearer";

/// The tokens a client may present, each with the identity it stands for.
pub struct Tokens {
    digests: Vec<([u8; 32], Identity)>,
}

/// The named tokens' names and limits, in the order of their identities.
pub type Named = Vec<(String, TokenLimits)>;

/// How a request was authenticated.
#[derive(Debug, PartialEq, Eq)]
pub enum Admitted {
    /// By its `Authorization` header.
    Header,
    /// By the `bearer, <token>` subprotocols: the response must name `bearer`.
    Subprotocol,
}

impl Tokens {
    /// The configured tokens, or `None` if authentication is off, and the
    /// named ones' names and limits. The file holds one token per line;
    /// blank lines and `#` comments are skipped. No error quotes a token.
    pub fn load(
        settings: &[TokenSetting],
        file: Option<&Path>,
    ) -> Result<(Option<Tokens>, Named), String> {
        let mut all: Vec<(String, Identity)> = Vec::new();
        let mut named: Named = Vec::new();
        for setting in settings {
            match setting {
                TokenSetting::Plain(token) => {
                    all.push((token.clone(), Identity::UNNAMED));
                }
                TokenSetting::Named(entry) => {
                    if named.iter().any(|(name, _)| *name == entry.name) {
                        return Err(format!("tokens: the name `{}` is given twice", entry.name));
                    }
                    let identity = Identity::named(named.len());
                    all.push((named_token(entry)?, identity));
                    named.push((entry.name.clone(), TokenLimits::of(entry)));
                }
            }
        }
        if let Some(file) = file {
            let before = all.len();
            all.extend(
                read(file, "tokens_file")?
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(|token| (token.to_owned(), Identity::UNNAMED)),
            );
            if all.len() == before {
                return Err(format!("tokens_file {} holds no token", file.display()));
            }
        }
        if all.iter().any(|(t, _)| t.trim().is_empty()) {
            return Err("tokens must not be empty".into());
        }
        let mut digests: Vec<([u8; 32], Identity)> =
            all.iter().map(|(t, who)| (digest(t), *who)).collect();
        let count = digests.len();
        digests.sort_by_key(|(d, _)| *d);
        digests.dedup_by_key(|(d, _)| *d);
        if digests.len() != count {
            return Err("tokens: a token is given twice (it could not tell whose it is)".into());
        }
        Ok(((!digests.is_empty()).then_some(Tokens { digests }), named))
    }

    /// Whether the request presents a valid token, how, and whose; the
    /// error is the refusal's sentence.
    pub fn admit(&self, request: &Request) -> Result<(Admitted, Identity), &'static str> {
        let headers = request.headers();
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
            .map(|v| v.strip_prefix("Cylinder: ").unwrap_or(v).trim());
        let offered = headers
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(',').map(str::trim))
            .collect::<Vec<_>>();
        let subprotocol = match offered.as_slice() {
            [SUBPROTOCOL, token] => Some(*token),
            _ => None,
        };
        let (token, how) = match (bearer, subprotocol) {
            (Some(token), _) => (token, Admitted::Header),
            (None, Some(token)) => (token, Admitted::Subprotocol),
            (None, None) => {
                return Err(
                    "a bearer token is required: send `Authorization: Bearer <token>` or offer the subprotocols `bearer, <token>`",
                );
            }
        };
        match self.identify(token) {
            Some(identity) => Ok((how, identity)),
            None => Err("the bearer token is not valid"),
        }
    }

    /// Whose `token` is, if it is one of the tokens, in time independent
    /// of which (or whether) it matches.
    fn identify(&self, token: &str) -> Option<Identity> {
        let presented = digest(token);
        let mut found = subtle::Choice::from(0);
        let mut whose = 0u64;
        for (d, identity) in &self.digests {
            let matched = d.ct_eq(&presented);
            found |= matched;
            whose.conditional_assign(&(identity.index() as u64), matched);
        }
        bool::from(found).then(|| Identity::from_index(whose as usize))
    }
}

/// A named token's value, from the setting or its file.
fn named_token(entry: &NamedToken) -> Result<String, String> {
    match (&entry.token, &entry.token_file) {
        (Some(token), _) => Ok(token.clone()),
        (None, Some(file)) => {
            let text = read(file, &format!("token_file of token `{}`", entry.name))?;
            let token = text.trim();
            if token.is_empty() || token.contains(char::is_whitespace) {
                return Err(format!(
                    "token_file {} of token `{}` must hold one token",
                    file.display(),
                    entry.name
                ));
            }
            Ok(token.to_owned())
        }
        (None, None) => Err(format!("tokens: token `{}` has no token", entry.name)),
    }
}

fn read(file: &Path, what: &str) -> Result<String, String> {
    std::fs::read_to_string(file).map_err(|e| format!("cannot read {what} {}: {e}", file.display()))
}

fn digest(token: &str) -> [u8; 32] {
    Sha3_256::digest(token.as_bytes()).into()
}

/// The credentials of an `Authorization` header of the Bearer scheme,
/// whose name is case-insensitive (RFC 7235, section 2.1): `bearer …` too.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, credentials) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credentials.trim_start())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> Request {
        let mut builder = Request::builder().uri("/api/v1/streams/valid_tx");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    fn settings(json: &str) -> Vec<TokenSetting> {
        let config: crate::config::Config =
            eventhost_plugin_api::config::parse(&format!(r#"{{"tokens":{json}}}"#)).unwrap();
        config.tokens
    }

    #[test]
    fn every_form_is_accepted_and_wrong_tokens_are_not() {
        let (tokens, named) = Tokens::load(
            &settings(r#"["t0ken", {"name": "explorer", "token": "other", "max_connections": 3}]"#),
            None,
        )
        .unwrap();
        let tokens = tokens.unwrap();
        assert_eq!(named[0].0, "explorer");
        assert_eq!(named[0].1.max_connections, Some(3));
        let admit = |headers: &[(&str, &str)]| tokens.admit(&request(headers));
        assert_eq!(
            admit(&[("authorization", "Bearer t0ken")]),
            Ok((Admitted::Header, Identity::UNNAMED))
        );
        // The scheme's name is case-insensitive (RFC 7235).
        for scheme in ["bearer", "BEARER"] {
            assert_eq!(
                admit(&[("authorization", &format!("{scheme} t0ken"))]),
                Ok((Admitted::Header, Identity::UNNAMED)),
                "{scheme}"
            );
        }
        assert!(admit(&[("authorization", "Bearert0ken")]).is_err());
        assert_eq!(
            admit(&[("authorization", "Bearer Cylinder: other")]),
            Ok((Admitted::Header, Identity::named(0)))
        );
        assert_eq!(
            admit(&[("sec-websocket-protocol", "bearer, t0ken")]),
            Ok((Admitted::Subprotocol, Identity::UNNAMED))
        );
        assert!(admit(&[]).unwrap_err().contains("required"));
        assert!(admit(&[("authorization", "Bearer t0ke")]).is_err());
        assert!(admit(&[("authorization", "Basic t0ken")]).is_err());
        assert!(admit(&[("sec-websocket-protocol", "t0ken")]).is_err());
    }

    #[test]
    fn no_tokens_means_no_authentication() {
        assert!(Tokens::load(&[], None).unwrap().0.is_none());
        assert!(Tokens::load(&settings(r#"[" "]"#), None).is_err());
        let twice = Tokens::load(
            &settings(r#"["s3cr3t", {"name": "n", "token": "s3cr3t"}]"#),
            None,
        )
        .err()
        .unwrap();
        assert!(
            twice.contains("given twice") && !twice.contains("s3cr3t"),
            "{twice}"
        );
        let names = Tokens::load(
            &settings(r#"[{"name": "n", "token": "a"}, {"name": "n", "token": "b"}]"#),
            None,
        );
        assert_eq!(names.err().unwrap(), "tokens: the name `n` is given twice");
    }
}
