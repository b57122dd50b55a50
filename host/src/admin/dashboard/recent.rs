//! The newest blocks, valid and invalid, as the dashboard lists them: a
//! small ring filled from the event log's newest events. Each update reads
//! only what was published since the last one, at most [`RECENT`] events,
//! however fast blocks come.

use std::collections::VecDeque;

use eventhost_plugin_api::{BLOCK_VALID, Event};
use serde::Serialize;

use crate::exchange::Exchange;
use crate::store::StoreError;

/// Blocks listed.
pub const RECENT: usize = 12;

/// One block, without its transactions.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Block {
    pub seq: u64,
    pub valid: bool,
    pub height: u64,
    pub hash: String,
    /// Committed (valid) or rejected (invalid) transactions.
    pub transactions: usize,
    pub time_ms: u64,
}

impl From<&Event> for Block {
    fn from(e: &Event) -> Block {
        Block {
            seq: e.seq,
            valid: e.event_type == BLOCK_VALID,
            height: e.height,
            hash: e.block_hash.to_string(),
            transactions: e.transactions.len(),
            time_ms: e.timestamp_ms,
        }
    }
}

/// The newest [`RECENT`] blocks, oldest first.
#[derive(Default)]
pub struct Recent {
    blocks: VecDeque<Block>,
    /// The newest event read.
    last_seq: u64,
}

impl Recent {
    /// Reads what the exchange published since the last update.
    pub fn update(&mut self, exchange: &Exchange) -> Result<(), StoreError> {
        let head = exchange.head();
        if head <= self.last_seq {
            return Ok(());
        }
        let from = (self.last_seq + 1).max(head.saturating_sub(RECENT as u64 - 1));
        for event in exchange.read_published(from, RECENT)? {
            if self.blocks.len() == RECENT {
                self.blocks.pop_front();
            }
            self.last_seq = event.seq;
            self.blocks.push_back(Block::from(&event));
        }
        Ok(())
    }

    /// Newest first.
    pub fn newest_first(&self) -> Vec<Block> {
        self.blocks.iter().rev().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_log::EventLog;
    use crate::metrics::Metrics;
    use crate::store::Store;
    use abi_stable::std_types::RString;
    use eventhost_plugin_api::BLOCK_INVALID;
    use std::sync::Arc;

    fn event(height: u64, valid: bool, transactions: usize) -> Event {
        Event {
            event_type: if valid { BLOCK_VALID } else { BLOCK_INVALID },
            seq: 0,
            height,
            block_hash: format!("h{height}{valid}").into(),
            timestamp_ms: 1000 * height,
            transactions: (0..transactions)
                .map(|i| RString::from(format!("{{\"i\":{i}}}")))
                .collect(),
            rejections: Default::default(),
        }
    }

    #[test]
    fn keeps_the_newest_blocks_reading_only_what_is_new() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("s.redb")).unwrap());
        let (mut log, exchange) = EventLog::open(store, &Metrics::new()).unwrap();
        let mut recent = Recent::default();
        recent.update(&exchange).unwrap();
        assert!(recent.newest_first().is_empty());

        log.commit(vec![event(1, true, 3), event(2, false, 1)])
            .unwrap();
        recent.update(&exchange).unwrap();
        let blocks = recent.newest_first();
        assert_eq!(blocks.len(), 2);
        assert_eq!(
            blocks[0],
            Block {
                seq: 2,
                valid: false,
                height: 2,
                hash: "h2false".into(),
                transactions: 1,
                time_ms: 2000,
            }
        );
        assert_eq!(
            (blocks[1].height, blocks[1].valid, blocks[1].transactions),
            (1, true, 3)
        );

        // Far more than the ring holds since the last update: only the
        // newest are read, in order.
        let many: Vec<Event> = (3..=40).map(|h| event(h, true, 2)).collect();
        log.commit(many).unwrap();
        recent.update(&exchange).unwrap();
        let heights: Vec<u64> = recent.newest_first().iter().map(|b| b.height).collect();
        assert_eq!(heights, (29..=40).rev().collect::<Vec<_>>());
        recent.update(&exchange).unwrap();
        assert_eq!(recent.newest_first().len(), RECENT);
    }
}
