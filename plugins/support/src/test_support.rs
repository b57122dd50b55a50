//! The event the bridges' unit tests turn into messages (feature
//! `test-support`, for their dev-dependencies; not in a plugin's build).

use eventhost_plugin_api::{Event, EventType};

/// An event at seq 41, height 17, holding `transactions` (JSON texts).
pub fn event(event_type: EventType, transactions: &[&str]) -> Event {
    Event {
        event_type,
        seq: 41,
        height: 17,
        block_hash: "ab".repeat(32).into(),
        timestamp_ms: 1_732_521_600_123,
        transactions: transactions.iter().map(|t| (*t).into()).collect(),
        rejections: Default::default(),
    }
}
