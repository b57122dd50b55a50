//! Which events a Python plugin has finished: the bookkeeping behind
//! `Queue.get()`, `task_done()` and `ack()`, kept apart from Python so it
//! can be tested on its own.
//!
//! The host's queue runs with explicit acknowledgements throughout, and this
//! module decides what to acknowledge, because a Python queue does more than
//! receive: `empty()` and `qsize()` look ahead, taking events from the host
//! before the plugin asks for them, and the plugin's `event_types` may skip
//! events the host delivers (the library declares every type; only the
//! Python module knows what it wants). Neither may finish an event early.
//!
//! An event is finished once it was skipped, or handed to the plugin and
//! then done: by default when the plugin asks for the next one (as native
//! plugins), or, once the plugin called `task_done()` or `ack()`, only by
//! those. The host is told the highest sequence number up to which every
//! event is finished.

use std::collections::VecDeque;

use eventhost_plugin_api::{EventTypes, SharedEvent};

pub struct Delivery {
    wanted: EventTypes,
    explicit: bool,
    /// The highest sequence number taken from the host's queue.
    received: u64,
    /// Wanted events taken from the host, not yet handed to the plugin.
    waiting: VecDeque<SharedEvent>,
    /// Sequence numbers handed to the plugin and not yet done.
    handed: VecDeque<u64>,
    /// What the host was last told is finished.
    finished: u64,
}

/// Why `task_done()` or `ack()` was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum AckError {
    /// More `task_done()` calls than events handed out.
    TooManyTaskDone,
    /// `ack()` of an event the plugin was not handed.
    NotHanded { seq: u64 },
}

impl std::fmt::Display for AckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // multiprocessing.JoinableQueue's own words.
            AckError::TooManyTaskDone => f.write_str("task_done() called too many times"),
            AckError::NotHanded { seq } => write!(
                f,
                "ack(): event {seq} was not received from this queue (get() returns the events to acknowledge)"
            ),
        }
    }
}

impl Delivery {
    pub fn new(wanted: EventTypes) -> Delivery {
        Delivery {
            wanted,
            explicit: false,
            received: 0,
            waiting: VecDeque::new(),
            handed: VecDeque::new(),
            finished: 0,
        }
    }

    /// Records an event taken from the host's queue; events the plugin does
    /// not subscribe to are skipped.
    pub fn take(&mut self, event: SharedEvent) {
        self.received = self.received.max(event.seq);
        if self.wanted.contains(event.event_type) {
            self.waiting.push_back(event);
        }
    }

    /// How many wanted events wait to be handed out.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// The plugin asks for another event: unless it acknowledges events
    /// itself, that finishes every event it was handed.
    pub fn asked_for_next(&mut self) {
        if !self.explicit {
            self.handed.clear();
        }
    }

    /// The next waiting event, now handed to the plugin.
    pub fn hand_out(&mut self) -> Option<SharedEvent> {
        let event = self.waiting.pop_front()?;
        self.handed.push_back(event.seq);
        Some(event)
    }

    /// `task_done()`: the oldest event handed out and not yet done is done.
    pub fn task_done(&mut self) -> Result<(), AckError> {
        self.explicit = true;
        self.handed
            .pop_front()
            .map(drop)
            .ok_or(AckError::TooManyTaskDone)
    }

    /// `ack(event)`: that event and every one handed out before it are done.
    pub fn ack_through(&mut self, seq: u64) -> Result<(), AckError> {
        self.explicit = true;
        if seq > self.handed.back().copied().unwrap_or(self.finished) {
            return Err(AckError::NotHanded { seq });
        }
        while self.handed.front().is_some_and(|s| *s <= seq) {
            self.handed.pop_front();
        }
        Ok(())
    }

    /// The sequence number to report to the host as finished, if it moved:
    /// everything before the first event still in the plugin's hands or
    /// waiting for it, or everything received when there is none.
    pub fn finish(&mut self) -> Option<u64> {
        let through = match (self.handed.front(), self.waiting.front()) {
            (Some(seq), _) => seq - 1,
            (None, Some(event)) => event.seq - 1,
            (None, None) => self.received,
        };
        (through > self.finished).then(|| {
            self.finished = through;
            through
        })
    }
}

#[cfg(test)]
mod tests {
    use abi_stable::std_types::{RArc, RVec};
    use eventhost_plugin_api::{BLOCK_INVALID, BLOCK_VALID, Event, EventType};

    use super::*;

    fn event(seq: u64, event_type: EventType) -> SharedEvent {
        RArc::new(Event {
            event_type,
            seq,
            height: seq,
            block_hash: format!("{seq:064x}").into(),
            timestamp_ms: 0,
            transactions: RVec::new(),
            rejections: RVec::new(),
        })
    }

    /// get(): the plugin asks, then the next waiting event is handed out.
    fn get(d: &mut Delivery) -> Option<u64> {
        d.asked_for_next();
        d.hand_out().map(|e| e.seq)
    }

    #[test]
    fn by_default_an_event_is_finished_when_the_plugin_asks_for_the_next() {
        let mut d = Delivery::new(BLOCK_VALID | BLOCK_INVALID);
        d.take(event(1, BLOCK_VALID));
        d.take(event(2, BLOCK_VALID));
        assert_eq!(d.finish(), None);
        assert_eq!(get(&mut d), Some(1));
        assert_eq!(d.finish(), None, "1 is in the plugin's hands");
        assert_eq!(get(&mut d), Some(2));
        assert_eq!(d.finish(), Some(1));
        assert_eq!(get(&mut d), None);
        assert_eq!(d.finish(), Some(2), "asking again finishes 2");
    }

    #[test]
    fn looking_ahead_finishes_nothing() {
        let mut d = Delivery::new(BLOCK_VALID.into());
        assert_eq!(get(&mut d), None);
        // empty()/qsize() took three events from the host.
        for seq in 1..=3 {
            d.take(event(seq, BLOCK_VALID));
        }
        assert_eq!(d.waiting(), 3);
        assert_eq!(d.finish(), None);
        assert_eq!(get(&mut d), Some(1));
        assert_eq!(d.finish(), None);
    }

    #[test]
    fn skipped_events_are_finished_but_never_past_one_the_plugin_holds() {
        let mut d = Delivery::new(BLOCK_VALID.into());
        d.take(event(1, BLOCK_INVALID));
        assert_eq!(d.finish(), Some(1), "a skipped event is finished at once");
        d.take(event(2, BLOCK_VALID));
        assert_eq!(get(&mut d), Some(2));
        d.take(event(3, BLOCK_INVALID));
        d.take(event(4, BLOCK_INVALID));
        assert_eq!(d.finish(), None, "2 is still in the plugin's hands");
        assert_eq!(get(&mut d), None);
        assert_eq!(d.finish(), Some(4), "2 is done, and 3 and 4 were skipped");
    }

    #[test]
    fn task_done_finishes_in_the_order_events_were_handed_out() {
        let mut d = Delivery::new(BLOCK_VALID.into());
        for seq in 1..=3 {
            d.take(event(seq, BLOCK_VALID));
        }
        assert_eq!(get(&mut d), Some(1));
        d.task_done().unwrap();
        assert_eq!(d.finish(), Some(1));
        // From now on asking for more finishes nothing.
        assert_eq!(get(&mut d), Some(2));
        assert_eq!(get(&mut d), Some(3));
        assert_eq!(d.finish(), None);
        d.task_done().unwrap();
        assert_eq!(d.finish(), Some(2));
        d.task_done().unwrap();
        assert_eq!(d.finish(), Some(3));
        assert_eq!(d.task_done(), Err(AckError::TooManyTaskDone));
        assert_eq!(
            AckError::TooManyTaskDone.to_string(),
            "task_done() called too many times"
        );
    }

    #[test]
    fn ack_finishes_an_event_and_every_one_before_it() {
        let mut d = Delivery::new(BLOCK_VALID | BLOCK_INVALID);
        for seq in 1..=4 {
            d.take(event(seq, BLOCK_VALID));
        }
        assert_eq!(get(&mut d), Some(1));
        d.ack_through(1).unwrap();
        for want in 2..=4 {
            assert_eq!(get(&mut d), Some(want));
        }
        assert_eq!(d.finish(), Some(1));
        d.ack_through(3).unwrap();
        assert_eq!(d.finish(), Some(3));
        assert_eq!(d.ack_through(5), Err(AckError::NotHanded { seq: 5 }));
        d.ack_through(2).unwrap(); // already finished: nothing to do
        d.ack_through(4).unwrap();
        assert_eq!(d.finish(), Some(4));
    }
}
