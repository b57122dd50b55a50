//! Transactions for the benchmarks: distinct, signed CREATEs made by the
//! ledger's own builder, as the drivers make them.

use anyhow::anyhow;
use eventhost::sources::ledger::builder::{self, Keypair};
use serde_json::json;

/// A transaction ready to post.
pub struct Tx {
    pub id: String,
    /// Its JSON text.
    pub text: String,
}

/// `count` distinct CREATEs, each by its own key, with asset data and
/// metadata like the drivers' examples. Made on every core: signing is the
/// slow part of setting up a benchmark.
pub fn creates(count: usize, label: &str) -> anyhow::Result<Vec<Tx>> {
    let keys: Vec<Keypair> = (0..KEYS)
        .map(|k| {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(k as u64).to_le_bytes());
            Keypair::from_seed(seed)
        })
        .collect();
    let keys = &keys;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = count.div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    (t * chunk..((t + 1) * chunk).min(count))
                        .map(|i| create(i, label, keys))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all = Vec::with_capacity(count);
        for part in parts {
            all.extend(
                part.join()
                    .map_err(|_| anyhow!("making transactions panicked"))?,
            );
        }
        Ok(all)
    })
}

/// Signers: enough that no key dominates, few enough that deriving them
/// (a scalar multiplication each) does not double the cost of signing.
const KEYS: usize = 256;

fn create(i: usize, label: &str, keys: &[Keypair]) -> Tx {
    let key = &keys[i % keys.len()];
    let tx = builder::create(
        key,
        &[(key.public_key(), 1)],
        json!({"bench": label, "serial": i, "kind": "bicycle"}),
        json!({"planet": "earth", "note": "benchmark transaction"}),
    );
    Tx {
        id: tx["id"].as_str().unwrap_or_default().to_owned(),
        text: tx.to_string(),
    }
}
