//! What a transaction message says about a transaction: its id, its
//! operation as a routing-key or subject token, and its asset. The facts
//! are plugin-api's transaction summary (the node's own rules); the token
//! rule is the bridges': one for every bridge's `transaction` format.

use eventhost_plugin_api::Event;
use eventhost_plugin_api::tx::TxSummary;

/// The longest operation name put in a routing key or subject; longer ones
/// read `unknown`.
pub const MAX_OPERATION_LEN: usize = 32;

/// The fields of a transaction a transaction message needs.
pub(crate) struct Summary {
    /// `None` if the transaction cannot be read (no `id`, not an object).
    pub id: Option<String>,
    /// Lower case, ASCII letters only (`create`, `transfer`), so that it is
    /// a valid token of an AMQP routing key or a NATS subject; `unknown`
    /// for anything else.
    pub operation: String,
    /// For a CREATE its own id; for a TRANSFER the (first) asset it moves.
    pub asset_id: Option<String>,
}

impl Summary {
    /// Reads a transaction's JSON; never fails (the host publishes only
    /// validated transactions, but `eventhost replay` publishes whatever a
    /// file holds: what cannot be read gives `None`s and `unknown`).
    pub fn of(tx: &str) -> Summary {
        match TxSummary::parse(tx) {
            Ok(summary) => Summary {
                operation: token(&summary.operation),
                asset_id: Some(summary.asset_id().to_owned()),
                id: Some(summary.id),
            },
            Err(_) => Summary {
                id: None,
                operation: "unknown".to_owned(),
                asset_id: None,
            },
        }
    }

    /// The body of a transaction message, in the shape of BigchainDB's
    /// valid_transactions stream: `{"transaction_id", "asset_id", "height"}`.
    pub fn body(&self, event: &Event) -> Vec<u8> {
        serde_json::json!({
            "transaction_id": self.id,
            "asset_id": self.asset_id,
            "height": event.height,
        })
        .to_string()
        .into_bytes()
    }
}

/// `operation` as a routing-key or subject token.
fn token(operation: &str) -> String {
    let plain = !operation.is_empty()
        && operation.len() <= MAX_OPERATION_LEN
        && operation.chars().all(|c| c.is_ascii_alphabetic());
    if plain {
        operation.to_ascii_lowercase()
    } else {
        "unknown".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_transaction_models() {
        let cases = [
            (
                r#"{"id":"c2","operation":"CREATE","asset":{"data":{"a":1}},"version":"2.0"}"#,
                "create",
                Some("c2"),
            ),
            (
                r#"{"id":"t2","operation":"TRANSFER","asset":{"id":"c2"},"version":"2.0"}"#,
                "transfer",
                Some("c2"),
            ),
            (
                r#"{"id":"c3","operation":"CREATE","assets":[{"data":"QmX"}],"version":"3.0"}"#,
                "create",
                Some("c3"),
            ),
            (
                r#"{"id":"t3","operation":"TRANSFER","assets":[{"id":"c3"},{"id":"c4"}]}"#,
                "transfer",
                Some("c3"),
            ),
        ];
        for (tx, operation, asset) in cases {
            let s = Summary::of(tx);
            assert_eq!(s.operation, operation, "{tx}");
            assert_eq!(s.asset_id.as_deref(), asset, "{tx}");
        }
    }

    #[test]
    fn odd_transactions_give_nones_and_safe_tokens() {
        let huge = format!(r#"{{"id":"x","operation":"{}"}}"#, "A".repeat(300));
        let cases = [
            ("[1,2]", "unknown", None),
            (r#"{"operation":"BURN"}"#, "unknown", None),
            (r#"{"id":"z","operation":"BURN"}"#, "burn", Some("z")),
            (r#"{"id":"y","operation":"tx.>"}"#, "unknown", Some("y")),
            (&huge, "unknown", Some("x")),
        ];
        for (tx, operation, id) in cases {
            let s = Summary::of(tx);
            assert_eq!(s.operation, operation, "{tx}");
            assert_eq!(s.id.as_deref(), id, "{tx}");
        }
    }
}
