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

impl Iterator for &Events {
    type Item = SharedEvent;

    fn next(&mut self) -> Option<SharedEvent> {
        self.recv()
    }
}
