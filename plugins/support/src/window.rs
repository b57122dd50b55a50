//! The bounded window of events received from the host whose messages the
//! broker has not confirmed yet.
//!
//! The plugin must hold these itself: the host redelivers unacknowledged
//! events only after a restart, so within one run the window is what gets
//! published again after a reconnect. Its bound is what keeps a long outage
//! from filling memory: the intake takes a slot before receiving each event
//! and the window frees it once the event is confirmed, so receiving pauses
//! while the window is full (the host meanwhile runs on; the plugin catches
//! up from the host's event log when it receives again).

use std::collections::VecDeque;
use std::sync::Arc;

use eventhost_plugin_api::SharedEvent;
use tokio::sync::Semaphore;

/// Free room in the window, shared by the intake and the window.
#[derive(Clone)]
pub struct Slots(Arc<Semaphore>);

impl Slots {
    pub fn new(capacity: usize) -> Slots {
        Slots(Arc::new(Semaphore::new(capacity)))
    }

    /// Waits for room for at least one more event and takes as much as
    /// there is, up to `max` events. 0 once the window is gone, i.e. the
    /// publisher stopped. Only the intake takes slots.
    pub async fn take_up_to(&self, max: usize) -> usize {
        let Ok(first) = self.0.acquire().await else {
            return 0;
        };
        first.forget();
        let more = self.0.available_permits().min(max.saturating_sub(1));
        match self
            .0
            .try_acquire_many(u32::try_from(more).unwrap_or(u32::MAX))
        {
            Ok(permits) if more > 0 => {
                permits.forget();
                1 + more
            }
            _ => 1,
        }
    }

    /// Returns slots taken and not used.
    pub fn give_back(&self, count: usize) {
        if count > 0 {
            self.0.add_permits(count);
        }
    }
}

/// The unconfirmed events, oldest first.
pub struct Window {
    events: VecDeque<SharedEvent>,
    slots: Slots,
}

impl Window {
    /// A window whose room is `slots`.
    pub fn new(slots: Slots) -> Window {
        Window {
            events: VecDeque::new(),
            slots,
        }
    }

    /// Adds an event the intake took a slot for.
    pub fn push(&mut self, event: SharedEvent) {
        self.events.push_back(event);
    }

    /// Adds events the intake took slots for.
    pub fn extend(&mut self, events: Vec<SharedEvent>) {
        self.events.extend(events);
    }

    pub fn iter(&self) -> impl Iterator<Item = &SharedEvent> {
        self.events.iter()
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Removes the `count` oldest events, now confirmed, and frees their
    /// slots at once: one wake-up of a waiting intake per burst of
    /// confirmations rather than per event (row 7a).
    pub fn confirm_oldest(&mut self, count: usize) {
        let count = count.min(self.events.len());
        self.events.drain(..count);
        self.slots.give_back(count);
    }
}

impl Drop for Window {
    /// An intake waiting for room stops waiting.
    fn drop(&mut self) {
        self.slots.0.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventhost_plugin_api::{BLOCK_VALID, Event};

    fn event(seq: u64) -> SharedEvent {
        SharedEvent::new(Event {
            event_type: BLOCK_VALID,
            seq,
            height: seq,
            block_hash: "h".into(),
            timestamp_ms: 0,
            transactions: Default::default(),
            rejections: Default::default(),
        })
    }

    #[tokio::test]
    async fn receiving_pauses_while_the_window_is_full() {
        let slots = Slots::new(3);
        let mut window = Window::new(slots.clone());
        assert_eq!(slots.take_up_to(2).await, 2, "as much room as asked for");
        assert_eq!(slots.take_up_to(5).await, 1, "only the room there is");
        for seq in 1..=3 {
            window.push(event(seq));
        }
        let waiting = tokio::spawn({
            let slots = slots.clone();
            async move { slots.take_up_to(8).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "took a slot of a full window");
        window.confirm_oldest(2);
        assert_eq!(
            waiting.await.unwrap(),
            2,
            "the room of both confirmed events"
        );
        assert_eq!(window.iter().map(|e| e.seq).collect::<Vec<_>>(), [3]);
        slots.give_back(1);
        assert_eq!(
            slots.take_up_to(8).await,
            1,
            "a slot given back is free again"
        );
    }

    #[tokio::test]
    async fn an_intake_waiting_for_room_stops_when_the_window_is_gone() {
        let slots = Slots::new(1);
        let window = Window::new(slots.clone());
        assert_eq!(slots.take_up_to(1).await, 1);
        let waiting = tokio::spawn({
            let slots = slots.clone();
            async move { slots.take_up_to(1).await }
        });
        drop(window);
        assert_eq!(waiting.await.unwrap(), 0);
    }
}
