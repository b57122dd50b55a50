//! Which messages of an event each distinct query selects, evaluated once
//! for all the clients that share the query.
//!
//! A client's query has a slot in the hub (see `hub`) for as long as a
//! client uses it; the matches of an event are a bit per message and
//! slot, computed when the event is published and shared by every
//! client of every stream of the scope.

use std::sync::Arc;

use stream_query::{Query, Subject};

/// The queries by slot, as they were when an event was evaluated.
pub type Slots = Arc<[Option<Arc<Query>>]>;

pub struct Matches {
    slots: Slots,
    /// Words of bits per message.
    words: usize,
    bits: Vec<u64>,
}

impl Matches {
    /// Evaluates every query of `slots` on every subject.
    pub fn evaluate(slots: Slots, subjects: &[Subject<'_>]) -> Matches {
        let words = slots.len().div_ceil(64);
        let mut bits = vec![0u64; words * subjects.len()];
        for (slot, query) in slots.iter().enumerate() {
            let Some(query) = query else { continue };
            for (row, subject) in subjects.iter().enumerate() {
                if query.matches(*subject) {
                    bits[row * words + slot / 64] |= 1 << (slot % 64);
                }
            }
        }
        Matches { slots, words, bits }
    }

    /// Whether the query in `slot` selects message `row`.
    pub fn selects(&self, row: usize, slot: usize) -> bool {
        // Every slot a receiving client holds was evaluated (see `hub`).
        debug_assert!(slot < self.slots.len(), "slot {slot} was not evaluated");
        self.bits
            .get(row * self.words + slot / 64)
            .is_some_and(|word| word & (1 << (slot % 64)) != 0)
    }

    /// Whether these are the matches of the queries in `slots`.
    pub fn evaluated_with(&self, slots: &Slots) -> bool {
        Arc::ptr_eq(&self.slots, slots)
    }
}
