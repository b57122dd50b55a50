//! Block headers and their hashes.
//!
//! A block's hash is the sha3-256 of the canonical JSON of its header
//! `{"height", "previous_hash", "timestamp_ms", "transactions_hash"}`, where
//! `transactions_hash` is the sha3-256 of the concatenated transaction ids
//! (as BigchainDB hashes a block's transactions). Anyone holding the
//! transaction ids can recompute it.

use serde_json::json;
use sha3::{Digest, Sha3_256};

use super::canonical;
use super::transaction::hex;

/// The hash of a block with these transactions on top of `previous_hash`.
pub fn hash<'a>(
    height: u64,
    previous_hash: &str,
    timestamp_ms: u64,
    transaction_ids: impl IntoIterator<Item = &'a str>,
) -> String {
    let mut ids = Sha3_256::new();
    for id in transaction_ids {
        ids.update(id.as_bytes());
    }
    let header = json!({
        "height": height,
        "previous_hash": previous_hash,
        "timestamp_ms": timestamp_ms,
        "transactions_hash": hex(&ids.finalize()),
    });
    hex(&Sha3_256::digest(canonical::to_string(&header).as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depends_on_every_part_of_the_header() {
        let base = hash(2, "p", 5, ["a", "b"]);
        assert_eq!(base.len(), 64);
        assert_eq!(base, hash(2, "p", 5, ["a", "b"]));
        for other in [
            hash(3, "p", 5, ["a", "b"]),
            hash(2, "q", 5, ["a", "b"]),
            hash(2, "p", 6, ["a", "b"]),
            hash(2, "p", 5, ["b", "a"]),
        ] {
            assert_ne!(base, other);
        }
    }
}
