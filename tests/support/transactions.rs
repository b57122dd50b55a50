//! Transactions and blocks in the shapes a ledger publishes, for tests that
//! need many of them: BigchainDB 2.0 and Planetmint 3.0 CREATEs and
//! TRANSFERs with the fields stream consumers look at (ids, assets, the
//! outputs' `public_keys`, the inputs' `owners_before`). Signatures are
//! well-formed but not valid: nothing in the event path verifies them.

use serde_json::{Value, json};

/// A transaction id: 64 lower-case hex digits, distinct for each `n`.
pub fn tx_id(n: u64) -> String {
    format!("{:016x}{:048x}", n, n.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// An Ed25519 public key in base58, as ledgers write them, distinct for each `n`.
pub fn public_key(n: u64) -> String {
    let mut bytes = [0x5a_u8; 32];
    bytes[24..].copy_from_slice(&n.to_be_bytes());
    bs58::encode(bytes).into_string()
}

/// Which transaction model: BigchainDB 2.0 (`asset`, object metadata) or
/// Planetmint 3.0 (`assets`, IPFS CIDs).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Version {
    V2,
    V3,
}

fn output(owner: &str) -> Value {
    json!({
        "amount": "1",
        "condition": {
            "details": {"public_key": owner, "type": "ed25519-sha-256"},
            "uri": "ni:///sha-256;PNYwdxaRaNw60N6LDFzOWO97b8tJeragczakL8PrAPc?fpt=ed25519-sha-256&cost=131072"
        },
        "public_keys": [owner]
    })
}

fn input(owner: &str, fulfills: Value) -> Value {
    json!({
        "fulfillment": "pGSAIDE5i63cn4X8T8N1sZ2mGkJD5lNRnBM4PZgI_zvzbr-cgUCy4BR6gKaYT-tdyAGPPpknIqI4JYQQ-p2nCg3_9BfOI-15vzldhyz-j_LZVpqAlRmbTzKS-Q5gs7ZIFaZCA_UD",
        "fulfills": fulfills,
        "owners_before": [owner]
    })
}

/// A CREATE by `owner` of a new asset, owned by `owner`.
pub fn create(version: Version, id: &str, owner: &str) -> Value {
    let mut tx = json!({
        "id": id,
        "inputs": [input(owner, Value::Null)],
        "operation": "CREATE",
        "outputs": [output(owner)],
    });
    match version {
        Version::V2 => {
            tx["asset"] = json!({"data": {"serial": id[..8].to_owned()}});
            tx["metadata"] = json!({"note": "created"});
            tx["version"] = json!("2.0");
        }
        Version::V3 => {
            tx["assets"] = json!([{"data": "QmQP5C3PmhH9oB84n7YqSY4WVqmYatdoo1BdwhH4zmcwqM"}]);
            tx["metadata"] = json!("QmZs4UHLHCUGLQr6rzbtJTjT8Sf5pw6FNuaRZ5pzguk5FV");
            tx["version"] = json!("3.0");
        }
    }
    tx
}

/// A TRANSFER of `assets` (one for 2.0; one or more for 3.0), spending
/// output 0 of `spends`, from `from` to `to`.
pub fn transfer(
    version: Version,
    id: &str,
    assets: &[&str],
    spends: &str,
    from: &str,
    to: &str,
) -> Value {
    let mut tx = json!({
        "id": id,
        "inputs": [input(from, json!({"output_index": 0, "transaction_id": spends}))],
        "operation": "TRANSFER",
        "outputs": [output(to)],
    });
    match version {
        Version::V2 => {
            assert_eq!(assets.len(), 1, "a 2.0 TRANSFER moves one asset");
            tx["asset"] = json!({"id": assets[0]});
            tx["metadata"] = Value::Null;
            tx["version"] = json!("2.0");
        }
        Version::V3 => {
            let assets: Vec<Value> = assets.iter().map(|id| json!({"id": id})).collect();
            tx["assets"] = json!(assets);
            tx["metadata"] = Value::Null;
            tx["version"] = json!("3.0");
        }
    }
    tx
}

/// The block hash the generated blocks use at `height`.
pub fn block_hash(height: u64) -> String {
    format!("{:064x}", height.wrapping_mul(0xb10c_0000_0001))
}

/// A BLOCK_VALID event line, as `eventhost replay` reads it.
pub fn block_valid(height: u64, transactions: &[Value]) -> String {
    json!({
        "type": "BLOCK_VALID",
        "height": height,
        "hash": block_hash(height),
        "transactions": transactions,
    })
    .to_string()
}

/// A BLOCK_INVALID event line: each transaction with the reason it was rejected.
pub fn block_invalid(height: u64, rejected: &[(Value, &str)]) -> String {
    let transactions: Vec<&Value> = rejected.iter().map(|(tx, _)| tx).collect();
    let rejections: Vec<Value> = rejected
        .iter()
        .map(|(tx, reason)| json!({"transaction_id": tx["id"], "reason": reason}))
        .collect();
    json!({
        "type": "BLOCK_INVALID",
        "height": height,
        "hash": block_hash(height),
        "transactions": transactions,
        "rejections": rejections,
    })
    .to_string()
}
