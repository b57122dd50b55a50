//! The plugin author's view of its queue.

use std::time::Duration;

use abi_stable::std_types::RArc;

use crate::event::Event;
use crate::ffi::{HostQueueBox, Received};

/// A published event, shared with every other subscriber (cloning is cheap).
pub type SharedEvent = RArc<Event>;

/// The plugin's own queue: the events it subscribed to, in publication order.
///
/// Receiving ends (`None`, or [`RecvTimeoutError::Closed`]) when the host
/// shuts down and everything queued for the plugin has been received.
/// Iterating `&Events` receives until then.
///
/// The host remembers, durably, the last event the plugin finished, and
/// after a restart delivers every event after it. By default an event is
/// finished when the plugin asks for the next one. A plugin that completes
/// events later (say, once a broker confirmed them) calls
/// [`Events::use_explicit_acks`] and then [`Events::ack`].
pub struct Events {
    queue: HostQueueBox,
}

/// Why [`Events::recv_timeout`] returned no event.
#[derive(Debug, Copy, Clone, PartialEq, Eq)]
pub enum RecvTimeoutError {
    /// Nothing arrived in time; the queue is still open.
    Timeout,
    /// The host is shutting down: return from `run`.
    Closed,
}

impl Events {
    pub(crate) fn new(queue: HostQueueBox) -> Self {
        Events { queue }
    }

    /// Blocks until the next event, or returns `None` once the host shuts down.
    pub fn recv(&self) -> Option<SharedEvent> {
        match self.queue.recv(u64::MAX) {
            Received::Event(e) => Some(e),
            Received::Timeout | Received::Closed => None,
        }
    }

    /// Like [`Events::recv`], but gives up after `timeout` so the plugin can do
    /// periodic work.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<SharedEvent, RecvTimeoutError> {
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX - 1);
        match self.queue.recv(ms) {
            Received::Event(e) => Ok(e),
            Received::Timeout => Err(RecvTimeoutError::Timeout),
            Received::Closed => Err(RecvTimeoutError::Closed),
        }
    }
}

impl Events {
    /// Since plugin-api 1.1. From now on events are finished only by
    /// [`Events::ack`], not by receiving the next one.
    pub fn use_explicit_acks(&self) {
        self.queue.use_explicit_acks();
    }

    /// Since plugin-api 1.1. Every event received so far with a sequence
    /// number up to and including `seq` is finished: after a restart the
    /// plugin receives only events after it.
    pub fn ack(&self, seq: u64) {
        self.queue.ack(seq);
    }
}

impl Iterator for &Events {
    type Item = SharedEvent;

    fn next(&mut self) -> Option<SharedEvent> {
        self.recv()
    }
}
