//! The header names of every message, one place for all: the publisher
//! sets them, consumers (edge nodes) check them.

/// JetStream's deduplication id.
pub const MSG_ID: &str = "Nats-Msg-Id";
pub const CONTENT_TYPE: &str = "Content-Type";
/// `block` or `transaction`: which format the message is of.
pub const FORMAT: &str = "Eventhost-Format";
/// The event's sequence number in the ledger node's event log.
pub const SEQ: &str = "Eventhost-Seq";
/// `BLOCK_VALID` or `BLOCK_INVALID`.
pub const TYPE: &str = "Eventhost-Type";
pub const HEIGHT: &str = "Eventhost-Height";
pub const HASH: &str = "Eventhost-Hash";
pub const TIMESTAMP_MS: &str = "Eventhost-Timestamp-Ms";
/// Transaction messages: the transaction's index in its block…
pub const TX_INDEX: &str = "Eventhost-Tx-Index";
/// …and how many transactions the block has.
pub const TX_COUNT: &str = "Eventhost-Tx-Count";
