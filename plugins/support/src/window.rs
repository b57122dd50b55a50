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

    /// Waits for room for one more event and takes it. False once the
    /// window is gone, i.e. the publisher stopped.
    pub async fn take(&self) -> bool {
        match self.0.acquire().await {
            Ok(permit) => {
                permit.forget();
                true
            }
            Err(_) => false,
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

    pub fn iter(&self) -> impl Iterator<Item = &SharedEvent> {
        self.events.iter()
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Removes the oldest event, now confirmed, and frees its slot.
    pub fn confirm_oldest(&mut self) -> Option<SharedEvent> {
        let event = self.events.pop_front()?;
        self.slots.0.add_permits(1);
        Some(event)
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
        let slots = Slots::new(2);
        let mut window = Window::new(slots.clone());
        for seq in 1..=2 {
            assert!(slots.take().await);
            window.push(event(seq));
        }
        let waiting = tokio::spawn({
            let slots = slots.clone();
            async move { slots.take().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "took a slot of a full window");
        assert_eq!(window.confirm_oldest().map(|e| e.seq), Some(1));
        assert!(waiting.await.unwrap());
        assert_eq!(window.iter().map(|e| e.seq).collect::<Vec<_>>(), [2]);
    }

    #[tokio::test]
    async fn an_intake_waiting_for_room_stops_when_the_window_is_gone() {
        let slots = Slots::new(1);
        let window = Window::new(slots.clone());
        assert!(slots.take().await);
        let waiting = tokio::spawn({
            let slots = slots.clone();
            async move { slots.take().await }
        });
        drop(window);
        assert!(!waiting.await.unwrap());
    }
}
