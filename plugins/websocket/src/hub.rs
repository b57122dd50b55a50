//! The connected clients, and how each event's messages reach them.
//!
//! Every client has a bounded queue of its own. Publishing offers each
//! message to each client's queue without ever waiting: a client whose
//! queue is full has fallen further behind than it may, so it is dropped
//! from the hub and told why, and nobody else notices. Publishing therefore
//! costs one queue push per interested client, and the memory held for a
//! client is at most its queue of shared messages.
//!
//! Each queued message carries the sequence number of the event it came
//! from, so that a client resuming from the event log can tell where the
//! log ends and the live messages begin (see [`crate::resume`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use eventhost_plugin_api::Event;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};

use crate::filter::Filter;
use crate::messages::{self, Outgoing, Text};

/// A queued message and the sequence number of its event.
pub type Queued = (u64, Text);
use crate::stream::Stream;

pub struct Hub {
    clients: Mutex<Clients>,
    queue_capacity: usize,
    max_clients: usize,
    too_slow: AtomicU64,
}

#[derive(Default)]
struct Clients {
    next_id: u64,
    /// Per stream (by [`Stream::index`]), its clients by id.
    by_stream: [HashMap<u64, Client>; Stream::ALL.len()],
    closed: bool,
}

impl Clients {
    fn count(&self) -> usize {
        self.by_stream.iter().map(HashMap::len).sum()
    }
}

/// The hub's side of one client.
struct Client {
    filter: Filter,
    queue: mpsc::Sender<Queued>,
    too_slow: Option<oneshot::Sender<()>>,
}

impl Client {
    /// Queues the message if the client wants it. Returns false if the
    /// client must leave the hub: it fell behind, or it is gone.
    fn offer(&mut self, seq: u64, message: &Outgoing, too_slow: &AtomicU64) -> bool {
        if !message.tx.as_ref().is_none_or(|tx| self.filter.matches(tx)) {
            return true;
        }
        match self.queue.try_send((seq, message.text.clone())) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                too_slow.fetch_add(1, Ordering::Relaxed);
                if let Some(tell) = self.too_slow.take() {
                    let _ = tell.send(());
                }
                false
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }
}

/// A client's membership: its queue, and word if it is dropped for being
/// too slow. Dropping it leaves the hub.
pub struct Subscription {
    hub: Arc<Hub>,
    stream: Stream,
    id: u64,
    /// The client's messages; ends once the hub closes and the queue is drained.
    pub queue: mpsc::Receiver<Queued>,
    /// Completes with `Ok` if the client fell behind by more than a full queue.
    pub too_slow: oneshot::Receiver<()>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.lock().by_stream[self.stream.index()].remove(&self.id);
    }
}

/// Why a client cannot join.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `max_clients` are connected.
    Full(usize),
    /// The plugin is shutting down.
    Closed,
}

impl Hub {
    pub fn new(queue_capacity: usize, max_clients: usize) -> Hub {
        Hub {
            clients: Mutex::default(),
            queue_capacity,
            max_clients,
            too_slow: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Clients> {
        self.clients.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The messages a client may fall behind by before it is dropped.
    pub fn queue_capacity(&self) -> usize {
        self.queue_capacity
    }

    /// How many clients were dropped for being too slow so far.
    pub fn too_slow_count(&self) -> u64 {
        self.too_slow.load(Ordering::Relaxed)
    }

    /// Adds a client to `stream`: it receives every message published from
    /// now on that passes `filter`.
    pub fn subscribe(
        self: &Arc<Self>,
        stream: Stream,
        filter: Filter,
    ) -> Result<Subscription, Refusal> {
        let mut clients = self.lock();
        if clients.closed {
            return Err(Refusal::Closed);
        }
        if clients.count() >= self.max_clients {
            return Err(Refusal::Full(self.max_clients));
        }
        let id = clients.next_id;
        clients.next_id += 1;
        let (queue_in, queue) = mpsc::channel(self.queue_capacity);
        let (too_slow_in, too_slow) = oneshot::channel();
        clients.by_stream[stream.index()].insert(
            id,
            Client {
                filter,
                queue: queue_in,
                too_slow: Some(too_slow_in),
            },
        );
        Ok(Subscription {
            hub: self.clone(),
            stream,
            id,
            queue,
            too_slow,
        })
    }

    /// Hands the event's messages to every client that wants them, without
    /// waiting for any. Returns why transactions were left out, for the log.
    pub fn publish(&self, event: &Event) -> Vec<String> {
        let listened: [bool; Stream::ALL.len()] = {
            let clients = self.lock();
            std::array::from_fn(|i| !clients.by_stream[i].is_empty())
        };
        // Render outside the lock, so that clients can join meanwhile; one
        // that joins a stream nobody listened to starts with the next event.
        let rendered = messages::render(event, |stream| listened[stream.index()]);
        let mut clients = self.lock();
        for (stream, messages) in &rendered.streams {
            let stream_clients = &mut clients.by_stream[stream.index()];
            for message in messages {
                stream_clients.retain(|_, client| client.offer(event.seq, message, &self.too_slow));
            }
        }
        rendered.skipped
    }

    /// Lets every client drain its queue and refuses new ones: the plugin is stopping.
    pub fn close(&self) {
        let mut clients = self.lock();
        clients.closed = true;
        clients.by_stream.iter_mut().for_each(HashMap::clear);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventhost_plugin_api::{BLOCK_VALID, Event};

    fn block(height: u64, ids: &[&str]) -> Event {
        Event {
            event_type: BLOCK_VALID,
            seq: height,
            height,
            block_hash: "h".into(),
            timestamp_ms: 0,
            transactions: ids
                .iter()
                .map(|id| format!(r#"{{"id":"{id}","operation":"CREATE"}}"#).into())
                .collect(),
            rejections: Default::default(),
        }
    }

    fn received(sub: &mut Subscription) -> Vec<String> {
        std::iter::from_fn(|| sub.queue.try_recv().ok())
            .map(|(_, m)| m.as_str().to_owned())
            .collect()
    }

    #[test]
    fn every_client_gets_the_same_shared_message() {
        let hub = Arc::new(Hub::new(10, 10));
        let mut a = hub
            .subscribe(Stream::ValidBlocks, Filter::default())
            .unwrap();
        let mut b = hub
            .subscribe(Stream::ValidBlocks, Filter::default())
            .unwrap();
        hub.publish(&block(1, &["t1"]));
        let ((sa, ma), (sb, mb)) = (a.queue.try_recv().unwrap(), b.queue.try_recv().unwrap());
        assert!(Arc::ptr_eq(&ma, &mb));
        assert_eq!((sa, sb), (1, 1));
    }

    #[test]
    fn a_client_that_falls_behind_is_dropped_and_told() {
        let hub = Arc::new(Hub::new(3, 10));
        let mut slow = hub.subscribe(Stream::ValidTx, Filter::default()).unwrap();
        let mut fast = hub.subscribe(Stream::ValidTx, Filter::default()).unwrap();
        hub.publish(&block(1, &["t1", "t2"]));
        assert_eq!(received(&mut fast).len(), 2);
        hub.publish(&block(2, &["t3", "t4"]));
        assert_eq!(received(&mut fast).len(), 2);
        assert_eq!(slow.too_slow.try_recv(), Ok(()));
        assert_eq!(hub.too_slow_count(), 1);
        // It keeps what was queued, and gets nothing more.
        hub.publish(&block(3, &["t5"]));
        assert_eq!(received(&mut slow).len(), 3);
        assert_eq!(received(&mut fast).len(), 1);
    }

    #[test]
    fn clients_leave_on_drop_and_max_clients_holds() {
        let hub = Arc::new(Hub::new(3, 1));
        let a = hub.subscribe(Stream::ValidTx, Filter::default()).unwrap();
        assert_eq!(
            hub.subscribe(Stream::ValidBlocks, Filter::default()).err(),
            Some(Refusal::Full(1))
        );
        drop(a);
        let _b = hub
            .subscribe(Stream::ValidBlocks, Filter::default())
            .unwrap();
    }

    #[test]
    fn closing_lets_queues_drain_and_refuses_newcomers() {
        let hub = Arc::new(Hub::new(3, 10));
        let mut a = hub
            .subscribe(Stream::ValidTransactions, Filter::default())
            .unwrap();
        hub.publish(&block(1, &["t1"]));
        hub.close();
        assert_eq!(received(&mut a).len(), 1);
        assert!(a.queue.is_closed());
        assert!(a.too_slow.try_recv().is_err());
        assert_eq!(
            hub.subscribe(Stream::ValidTx, Filter::default()).err(),
            Some(Refusal::Closed)
        );
    }
}
