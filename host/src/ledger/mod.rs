//! The ledger: validates transactions, commits them in blocks, and turns
//! each block into BLOCK_VALID / BLOCK_INVALID events.

pub mod canonical;
pub mod conditions;
