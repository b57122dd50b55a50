//! What one bridge message carries: the two formats both bridges offer.

use serde::Deserialize;

/// What one message carries (`format` in a bridge's configuration).
#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One message per event: the event's JSON form, everything a consumer
    /// (an edge node) needs to rebuild it.
    Block,
    /// One message per committed transaction, in the shape of BigchainDB's
    /// valid_transactions stream. BLOCK_INVALID events stay block messages.
    Transaction,
}

impl Format {
    /// The name as configured (and as the NATS bridge's `Eventhost-Format`
    /// header says it).
    pub fn name(self) -> &'static str {
        match self {
            Format::Block => "block",
            Format::Transaction => "transaction",
        }
    }
}
