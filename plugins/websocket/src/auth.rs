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
//! A request without a valid token is refused with 401 before any socket
//! opens. Only sha3-256 digests of the tokens are kept, and a presented
//! token's digest is compared with every one of them in constant time, so
//! neither the comparison's time nor its length reveals a token. Tokens are
//! never logged, and refusals never quote them.

use std::path::Path;

use sha3::{Digest, Sha3_256};
use subtle::ConstantTimeEq;
use tokio_tungstenite::tungstenite::handshake::server::Request;
use tokio_tungstenite::tungstenite::http::header;

/// The subprotocol a browser offers before its token.
pub const SUBPROTOCOL: &str = "bearer";

/// The tokens a client may present.
pub struct Tokens {
    digests: Vec<[u8; 32]>,
}

/// How a request was authenticated.
#[derive(Debug, PartialEq, Eq)]
pub enum Admitted {
    /// By its `Authorization` header.
    Header,
    /// By the `bearer, <token>` subprotocols: the response must name `bearer`.
    Subprotocol,
}

impl Tokens {
    /// The configured tokens, or `None` if authentication is off. The
    /// file holds one token per line; blank lines and `#` comments are skipped.
    pub fn load(tokens: &[String], file: Option<&Path>) -> Result<Option<Tokens>, String> {
        let mut all: Vec<String> = tokens.to_vec();
        if let Some(file) = file {
            let text = std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read tokens_file {}: {e}", file.display()))?;
            all.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(str::to_owned),
            );
            if all.len() == tokens.len() {
                return Err(format!("tokens_file {} holds no token", file.display()));
            }
        }
        if all.iter().any(|t| t.trim().is_empty()) {
            return Err("tokens must not be empty".into());
        }
        Ok((!all.is_empty()).then(|| Tokens {
            digests: all.iter().map(|t| digest(t)).collect(),
        }))
    }

    /// Whether the request presents a valid token, and how; the error is
    /// the refusal's sentence.
    pub fn admit(&self, request: &Request) -> Result<Admitted, &'static str> {
        let headers = request.headers();
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
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
        if self.contains(token) {
            Ok(how)
        } else {
            Err("the bearer token is not valid")
        }
    }

    /// Whether `token` is one of the tokens, in time independent of which
    /// (or whether) it matches.
    fn contains(&self, token: &str) -> bool {
        let presented = digest(token);
        self.digests
            .iter()
            .fold(subtle::Choice::from(0), |found, d| {
                found | d.ct_eq(&presented)
            })
            .into()
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha3_256::digest(token.as_bytes()).into()
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

    #[test]
    fn every_form_is_accepted_and_wrong_tokens_are_not() {
        let tokens = Tokens::load(&["t0ken".into(), "other".into()], None)
            .unwrap()
            .unwrap();
        let admit = |headers: &[(&str, &str)]| tokens.admit(&request(headers));
        assert_eq!(
            admit(&[("authorization", "Bearer t0ken")]),
            Ok(Admitted::Header)
        );
        assert_eq!(
            admit(&[("authorization", "Bearer Cylinder: other")]),
            Ok(Admitted::Header)
        );
        assert_eq!(
            admit(&[("sec-websocket-protocol", "bearer, t0ken")]),
            Ok(Admitted::Subprotocol)
        );
        assert!(admit(&[]).unwrap_err().contains("required"));
        assert!(admit(&[("authorization", "Bearer t0ke")]).is_err());
        assert!(admit(&[("authorization", "Basic t0ken")]).is_err());
        assert!(admit(&[("sec-websocket-protocol", "t0ken")]).is_err());
    }

    #[test]
    fn no_tokens_means_no_authentication() {
        assert!(Tokens::load(&[], None).unwrap().is_none());
        assert!(Tokens::load(&[" ".into()], None).is_err());
    }
}
