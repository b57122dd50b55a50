//! Where events come from. Each source holds the node's one
//! [`crate::event_log::EventLog`] and commits its events through it:
//! - [`ledger`]: the ledger, which commits transactions in blocks and turns
//!   each block into BLOCK_VALID / BLOCK_INVALID events (`eventhost run`);
//! - [`upstream`]: an edge node's: a ledger node's events, from the NATS
//!   JetStream stream its nats plugin publishes to, with the ledger's
//!   numbers (`eventhost run` with `[source] kind = "nats"`);
//! - [`replay`]: a recording, one event per JSON line (`eventhost replay`).

pub mod ledger;
pub mod replay;
pub mod stopped;
pub mod upstream;
