//! Filters a client sets on a transaction stream with query parameters:
//! `?asset_id=<64 hex>&public_key=<base58>&operation=CREATE|TRANSFER`.
//!
//! A malformed filter is refused when the client connects, so that a typo
//! is an error the client sees rather than a stream that stays silent.

use crate::resume;
use crate::stream::Stream;
use crate::transaction::TxFacts;

/// What a client wants from a transaction stream; empty means everything.
/// The parameters combine: a transaction must match every one given.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Filter {
    /// One of the transaction's assets (lower-case hex).
    asset_id: Option<String>,
    /// A key among the outputs' `public_keys` or the inputs' `owners_before`.
    public_key: Option<String>,
    /// `CREATE` or `TRANSFER`.
    operation: Option<&'static str>,
}

const PARAMETERS: &str = "asset_id, public_key and operation";

impl Filter {
    /// Reads the filter from a request's query string; the error names the
    /// parameter at fault and says what it should be.
    pub fn parse(stream: Stream, query: &str) -> Result<Filter, String> {
        let mut filter = Filter::default();
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            // Where to start from is not a filter: the handshake reads it (see `resume`).
            if name == resume::PARAMETER {
                continue;
            }
            if !stream.per_transaction() {
                return Err(format!(
                    "{} takes no filters, but got `{}`",
                    stream.path(),
                    shorten(&name)
                ));
            }
            match name.as_ref() {
                "asset_id" => set_once(&mut filter.asset_id, &name, parse_asset_id(&value)?)?,
                "public_key" => set_once(&mut filter.public_key, &name, parse_public_key(&value)?)?,
                "operation" => set_once(&mut filter.operation, &name, parse_operation(&value)?)?,
                other => {
                    return Err(format!(
                        "unknown query parameter `{}` (the filters are {PARAMETERS})",
                        shorten(other)
                    ));
                }
            }
        }
        Ok(filter)
    }

    /// Whether the transaction passes every parameter the client gave.
    pub fn matches(&self, tx: &TxFacts) -> bool {
        self.asset_id
            .as_ref()
            .is_none_or(|id| tx.asset_ids.contains(id))
            && self
                .public_key
                .as_ref()
                .is_none_or(|key| tx.public_keys.contains(key))
            && self.operation.is_none_or(|op| tx.operation == op)
    }
}

fn set_once<T>(slot: &mut Option<T>, name: &str, value: T) -> Result<(), String> {
    match slot.replace(value) {
        Some(_) => Err(format!("query parameter `{name}` is given twice")),
        None => Ok(()),
    }
}

fn parse_asset_id(value: &str) -> Result<String, String> {
    if value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(value.to_ascii_lowercase())
    } else {
        Err(format!(
            "asset_id must be 64 hexadecimal digits (a transaction id), not `{}`",
            shorten(value)
        ))
    }
}

const BASE58: &str = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

fn parse_public_key(value: &str) -> Result<String, String> {
    if (43..=44).contains(&value.len()) && value.chars().all(|c| BASE58.contains(c)) {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "public_key must be a base58 Ed25519 public key (43 or 44 characters, no 0, O, I or l), not `{}`",
            shorten(value)
        ))
    }
}

fn parse_operation(value: &str) -> Result<&'static str, String> {
    // BigchainDB's query parameters accept the operation in any case.
    ["CREATE", "TRANSFER"]
        .into_iter()
        .find(|op| op.eq_ignore_ascii_case(value))
        .ok_or_else(|| {
            format!(
                "operation must be CREATE or TRANSFER, not `{}`",
                shorten(value)
            )
        })
}

/// A client's text, cut short enough to quote in an error message.
pub fn shorten(text: &str) -> String {
    const MAX: usize = 80;
    match text.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ASSET: &str = "4957744b3ac54434b8270f2c854cc1040228c82ea4e72d66d2887a4d3e30b317";
    const KEY: &str = "4K9sWUMFwTgaDGPfdynrbxWqWS6sWmKbZoTjxLtVUibD";

    fn tx(operation: &str, asset: &str, keys: &[&str]) -> TxFacts {
        TxFacts {
            id: "t".into(),
            operation: operation.into(),
            asset_ids: vec!["other".into(), asset.into()],
            public_keys: keys.iter().map(|k| k.to_string()).collect(),
        }
    }

    fn txs(query: &str) -> Result<Filter, String> {
        Filter::parse(Stream::ValidTransactions, query)
    }

    #[test]
    fn parameters_combine() {
        let f = txs(&format!(
            "asset_id={}&operation=transfer&public_key={KEY}",
            ASSET.to_uppercase()
        ))
        .unwrap();
        assert!(f.matches(&tx("TRANSFER", ASSET, &["x", KEY])));
        assert!(!f.matches(&tx("CREATE", ASSET, &[KEY])));
        assert!(!f.matches(&tx("TRANSFER", "b", &[KEY])));
        assert!(!f.matches(&tx("TRANSFER", ASSET, &["x"])));
        assert!(
            txs("")
                .unwrap()
                .matches(&tx("VALIDATOR_ELECTION", "b", &[]))
        );
    }

    #[test]
    fn malformed_filters_are_named() {
        let err = |q: &str| txs(q).unwrap_err();
        assert!(err("asset_id=abc").starts_with("asset_id must be 64 hexadecimal digits"));
        assert!(err(&format!("asset_id={}", "g".repeat(64))).contains("asset_id"));
        assert!(err("public_key=0OIl").starts_with("public_key must be a base58"));
        assert!(err(&format!("public_key={}", &KEY[..42])).contains("public_key"));
        assert!(err("operation=BURN").contains("operation must be CREATE or TRANSFER, not `BURN`"));
        assert!(err("colour=red").contains("unknown query parameter `colour`"));
        assert!(err("operation=CREATE&operation=CREATE").contains("`operation` is given twice"));
        assert!(
            err(&format!("asset_id={ASSET}&asset_id={ASSET}"))
                .contains("`asset_id` is given twice")
        );
        assert!(err(&"x".repeat(500)).len() < 200);
    }

    #[test]
    fn block_streams_take_no_parameters() {
        let err = Filter::parse(Stream::ValidBlocks, "operation=CREATE").unwrap_err();
        assert!(
            err.contains("/api/v1/streams/valid_blocks takes no filters"),
            "{err}"
        );
        assert_eq!(
            Filter::parse(Stream::InvalidBlocks, ""),
            Ok(Filter::default())
        );
        assert_eq!(
            Filter::parse(Stream::ValidBlocks, "last_seen_event=7"),
            Ok(Filter::default())
        );
    }
}
