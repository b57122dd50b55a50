//! What the bridge tests (amqp, nats) expect of a bridge's messages,
//! whatever the broker: worked out from the node's event log as
//! `eventhost events` prints it, and compared with what the broker holds.

use serde_json::{Value, json};

/// The transaction message of `tx`, a transaction of the BLOCK_VALID
/// `event`: its operation as a routing-key or subject token, and its body
/// in the shape of BigchainDB's valid_transactions stream.
pub fn transaction_message(event: &Value, tx: &Value) -> (String, Value) {
    let operation = tx["operation"].as_str().unwrap();
    let asset_id = match operation {
        "CREATE" => tx["id"].clone(),
        _ if tx["version"] == "2.0" => tx["asset"]["id"].clone(),
        _ => tx["assets"][0]["id"].clone(),
    };
    let body = json!({"transaction_id": tx["id"], "asset_id": asset_id, "height": event["height"]});
    (operation.to_lowercase(), body)
}

/// Compares long lists of messages, naming the first difference rather
/// than printing both.
pub fn assert_same(what: &str, got: &[Value], expected: &[Value]) {
    for (i, (g, e)) in got.iter().zip(expected).enumerate() {
        assert_eq!(g, e, "{what}: message {i} differs");
    }
    assert_eq!(got.len(), expected.len(), "{what}: message count");
}
