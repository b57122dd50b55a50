//! What a client wants from its stream: a query (see the `stream_query`
//! crate and docs/stream-queries.md), from `?q=` and the equality
//! parameters `asset_id`, `public_key` and `operation`.
//!
//! An equality parameter is the query `name = 'value'`, checked and
//! evaluated by the same rules, and the parameters given together are the
//! AND of their queries. A malformed filter is refused when the client
//! connects, so that a typo is an error the client sees rather than a
//! stream that stays silent.

use stream_query::{Limits, Query, Scope};

use crate::params::Params;
use crate::stream::Stream;

pub use stream_query::shorten;

/// The query a request's parameters ask for on `stream`; `None` selects
/// everything. The error names the parameter at fault and says what it
/// should be (for `q`, at which byte).
pub fn query(stream: Stream, params: &Params, limits: &Limits) -> Result<Option<Query>, String> {
    let scope = stream.scope();
    let mut parts = Vec::new();
    for (name, value) in params.filters() {
        if scope != Scope::Transactions {
            return Err(format!(
                "{} takes no transaction filters, but got `{name}` (its q filters by height, hash and transaction_count)",
                stream.path()
            ));
        }
        parts.push(Query::equals(name, value, scope)?);
    }
    if let Some(q) = &params.q {
        parts.push(
            Query::parse(q, scope, limits).map_err(|e| format!("q is not a valid query: {e}"))?,
        );
    }
    Ok(Query::all(parts))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ASSET: &str = "4957744b3ac54434b8270f2c854cc1040228c82ea4e72d66d2887a4d3e30b317";
    const KEY: &str = "4K9sWUMFwTgaDGPfdynrbxWqWS6sWmKbZoTjxLtVUibD";

    fn txs(query_string: &str) -> Result<Option<Query>, String> {
        let params = Params::parse(query_string)?;
        query(Stream::ValidTransactions, &params, &Limits::default())
    }

    #[test]
    fn parameters_are_the_queries_they_name() {
        let params = txs(&format!(
            "asset_id={}&operation=transfer&public_key={KEY}",
            ASSET.to_uppercase()
        ))
        .unwrap()
        .unwrap();
        let q = txs(&format!(
            "q=public_key = '{KEY}' AND asset_id = '{ASSET}' AND operation = 'TRANSFER'"
        ))
        .unwrap()
        .unwrap();
        assert_eq!(params.normal_form(), q.normal_form());
        let both = txs("operation=CREATE&q=height >= 5").unwrap().unwrap();
        assert_eq!(both.normal_form(), "height >= 5 AND operation = 'CREATE'");
        assert!(txs("").unwrap().is_none());
    }

    #[test]
    fn malformed_filters_are_named() {
        let err = |q: &str| txs(q).unwrap_err();
        assert!(err("asset_id=abc").starts_with("asset_id must be 64 hexadecimal digits"));
        assert!(err(&format!("asset_id={}", "g".repeat(64))).contains("asset_id"));
        assert!(err("public_key=0OIl").starts_with("public_key must be a base58"));
        assert!(err(&format!("public_key={}", &KEY[..42])).contains("public_key"));
        assert!(err("operation=BURN").contains("operation must be CREATE or TRANSFER, not `BURN`"));
        assert_eq!(
            err("q=operation = "),
            "q is not a valid query: at byte 12: expected a value ('text', a number, TRUE or FALSE), found the end of the query"
        );
        assert!(err(&format!("asset_id={}", "x".repeat(500))).len() < 200);
    }

    #[test]
    fn block_streams_take_block_queries_only() {
        let blocks = |q: &str| {
            query(
                Stream::ValidBlocks,
                &Params::parse(q).unwrap(),
                &Limits::default(),
            )
        };
        let err = blocks("operation=CREATE").unwrap_err();
        assert!(
            err.starts_with(
                "/api/v1/streams/valid_blocks takes no transaction filters, but got `operation`"
            ),
            "{err}"
        );
        assert!(
            blocks("q=height > 2 AND transaction_count >= 1")
                .unwrap()
                .is_some()
        );
        assert!(
            blocks("q=operation = 'CREATE'")
                .unwrap_err()
                .contains("unknown field `operation`")
        );
        assert!(blocks("").unwrap().is_none());
    }
}
