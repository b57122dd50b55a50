//! The acknowledgement rule: which events a plugin has finished.
//!
//! By default an event is finished when the plugin asks for the next one;
//! after `use_explicit_acks` only `ack(seq)` finishes events, and never
//! past what the plugin was given. The host's queue applies the rule in
//! thread mode, and a plugin's child process applies the same rule (this
//! type) in process mode, reporting each advance to the host.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// How far one plugin got through its queue.
#[derive(Debug, Default)]
pub struct Acks {
    /// The sequence number of the last event handed to the plugin.
    delivered: AtomicU64,
    /// The sequence number of the last event the plugin finished: its cursor.
    finished: AtomicU64,
    /// Whether only explicit acknowledgements finish events.
    explicit: AtomicBool,
}

impl Acks {
    /// A plugin that has finished every event up to `cursor`.
    pub fn after(cursor: u64) -> Acks {
        Acks {
            delivered: AtomicU64::new(cursor),
            finished: AtomicU64::new(cursor),
            explicit: AtomicBool::new(false),
        }
    }

    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Acquire)
    }

    pub fn finished(&self) -> u64 {
        self.finished.load(Ordering::Acquire)
    }

    /// The plugin was handed event `seq`.
    pub fn delivered_up_to(&self, seq: u64) {
        self.delivered.store(seq, Ordering::Release);
    }

    /// The plugin asks for its next event: unless acknowledgements are
    /// explicit, it finished everything it received. Returns the new cursor
    /// if it moved.
    pub fn on_receive(&self) -> Option<u64> {
        if self.explicit.load(Ordering::Acquire) {
            return None;
        }
        // A plain store rather than `finish`'s read-modify-write, which
        // cost a locked instruction per event: only the receiving thread
        // moves the cursor here, to what it was handed, and an `ack` from
        // another thread never goes past that, so the cursor cannot move
        // back.
        let delivered = self.delivered();
        (self.finished() < delivered).then(|| {
            self.finished.store(delivered, Ordering::Release);
            delivered
        })
    }

    /// From now on only [`Acks::ack`] finishes events.
    pub fn use_explicit(&self) {
        self.explicit.store(true, Ordering::Release);
    }

    /// The plugin finished every event it received up to `seq` (a plugin
    /// cannot finish what it was never given). Returns the new cursor if it
    /// moved.
    pub fn ack(&self, seq: u64) -> Option<u64> {
        self.finish(seq.min(self.delivered()))
    }

    fn finish(&self, seq: u64) -> Option<u64> {
        (self.finished.fetch_max(seq, Ordering::AcqRel) < seq).then_some(seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receiving_finishes_earlier_events_unless_acks_are_explicit() {
        let auto = Acks::after(3);
        auto.delivered_up_to(5);
        assert_eq!(auto.finished(), 3);
        assert_eq!(auto.on_receive(), Some(5));
        assert_eq!(auto.on_receive(), None, "reported once");

        let manual = Acks::after(0);
        manual.use_explicit();
        manual.delivered_up_to(2);
        assert_eq!(manual.on_receive(), None);
        assert_eq!(manual.ack(99), Some(2), "not past what was delivered");
        assert_eq!(manual.ack(1), None, "never backwards");
        assert_eq!(manual.finished(), 2);
    }
}
