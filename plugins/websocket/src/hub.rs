//! The connected clients, and how each event's messages reach them.
//!
//! Each stream has one ring of batches (a `tokio::sync::broadcast`
//! channel), a batch being one event's messages for that stream, and every
//! client of the stream reads the ring with a cursor of its own. Publishing
//! an event therefore costs one push per stream, whatever the number of
//! clients, and a message is held once however many clients have yet to
//! send it: the ring lets go of a batch when the last client has taken it.
//!
//! A client may fall behind the stream by at most `client_queue_capacity`
//! messages (counted before its filter, since that is what the ring holds
//! for it). After each publish the hub compares every client's progress
//! with the stream's: one that is too far behind is dropped from the hub
//! and told why, and nobody else notices.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use eventhost_plugin_api::Event;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, oneshot};

use crate::filter::Filter;
use crate::messages::{self, Outgoing, Text};
use crate::stream::Stream;

pub struct Hub {
    state: Mutex<State>,
    queue_capacity: usize,
    max_clients: usize,
    too_slow: AtomicU64,
}

#[derive(Default)]
struct State {
    next_id: u64,
    /// Per stream, by [`Stream::index`].
    channels: [Channel; Stream::ALL.len()],
    closed: bool,
}

impl State {
    fn count(&self) -> usize {
        self.channels.iter().map(|c| c.clients.len()).sum()
    }
}

/// One stream's ring and clients.
#[derive(Default)]
struct Channel {
    /// Made when the first client joins: an unused stream costs nothing.
    ring: Option<broadcast::Sender<Arc<Batch>>>,
    /// Messages published on the stream so far.
    published: u64,
    clients: HashMap<u64, Client>,
}

/// One event's messages on one stream, shared by all its clients.
pub struct Batch {
    /// The event's sequence number: a resuming client uses it to tell
    /// where the log ends and the live messages begin (see [`crate::resume`]).
    pub seq: u64,
    messages: Vec<Outgoing>,
    /// The stream's message count up to and including this batch.
    end: u64,
}

impl Batch {
    /// The batch's messages that pass `filter`, in order.
    pub fn texts<'a>(&'a self, filter: &'a Filter) -> impl Iterator<Item = &'a Text> {
        self.messages
            .iter()
            .filter(|m| m.tx.as_ref().is_none_or(|tx| filter.matches(tx)))
            .map(|m| &m.text)
    }
}

/// The hub's side of one client.
struct Client {
    /// The `end` of the last batch the client took off the ring.
    taken: Arc<AtomicU64>,
    too_slow: Option<oneshot::Sender<()>>,
}

/// A client's membership: its cursor on the ring, and word if it is
/// dropped for being too slow. Dropping it leaves the hub.
pub struct Subscription {
    hub: Arc<Hub>,
    stream: Stream,
    id: u64,
    /// The client's messages; ends once the hub closes and they are taken.
    pub live: Live,
    /// Completes with `Ok` if the client fell too far behind.
    pub too_slow: oneshot::Receiver<()>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.lock().channels[self.stream.index()]
            .clients
            .remove(&self.id);
    }
}

/// A client's cursor on its stream's ring.
pub struct Live {
    ring: broadcast::Receiver<Arc<Batch>>,
    taken: Arc<AtomicU64>,
    pub filter: Filter,
}

/// Why a client gets no more live batches.
#[derive(Debug, PartialEq, Eq)]
pub enum LiveEnd {
    /// The plugin is stopping, and the client took everything published.
    Closed,
    /// The ring dropped batches the client had not taken.
    TooSlow,
}

impl Live {
    /// Waits for the next batch.
    pub async fn recv(&mut self) -> Result<Arc<Batch>, LiveEnd> {
        match self.ring.recv().await {
            Ok(batch) => Ok(self.took(batch)),
            Err(RecvError::Closed) => Err(LiveEnd::Closed),
            Err(RecvError::Lagged(_)) => Err(LiveEnd::TooSlow),
        }
    }

    /// The next batch if one is published; `Ok(None)` if none is yet.
    pub fn try_recv(&mut self) -> Result<Option<Arc<Batch>>, LiveEnd> {
        match self.ring.try_recv() {
            Ok(batch) => Ok(Some(self.took(batch))),
            Err(TryRecvError::Empty) => Ok(None),
            Err(TryRecvError::Closed) => Err(LiveEnd::Closed),
            Err(TryRecvError::Lagged(_)) => Err(LiveEnd::TooSlow),
        }
    }

    fn took(&self, batch: Arc<Batch>) -> Arc<Batch> {
        self.taken.store(batch.end, Ordering::Relaxed);
        batch
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
            state: Mutex::default(),
            queue_capacity,
            max_clients,
            too_slow: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
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
        let mut state = self.lock();
        if state.closed {
            return Err(Refusal::Closed);
        }
        if state.count() >= self.max_clients {
            return Err(Refusal::Full(self.max_clients));
        }
        let id = state.next_id;
        state.next_id += 1;
        let channel = &mut state.channels[stream.index()];
        // Every batch holds a message, so a client within its message
        // allowance is within this many batches, plus the one published
        // before the hub checks: the ring never drops what a client that
        // is still in the hub has yet to take.
        let ring = channel
            .ring
            .get_or_insert_with(|| broadcast::channel(self.queue_capacity + 1).0)
            .subscribe();
        let taken = Arc::new(AtomicU64::new(channel.published));
        let (too_slow_in, too_slow) = oneshot::channel();
        channel.clients.insert(
            id,
            Client {
                taken: taken.clone(),
                too_slow: Some(too_slow_in),
            },
        );
        Ok(Subscription {
            hub: self.clone(),
            stream,
            id,
            live: Live {
                ring,
                taken,
                filter,
            },
            too_slow,
        })
    }

    /// Hands the event's messages to every stream with clients, without
    /// waiting for any, and drops the clients that fell too far behind.
    /// Returns why transactions were left out, for the log.
    pub fn publish(&self, event: &Event) -> Vec<String> {
        let listened: [bool; Stream::ALL.len()] = {
            let state = self.lock();
            std::array::from_fn(|i| !state.channels[i].clients.is_empty())
        };
        // Render outside the lock, so that clients can join meanwhile; one
        // that joins a stream nobody listened to starts with the next event.
        let rendered = messages::render(event, |stream| listened[stream.index()]);
        let mut state = self.lock();
        for (stream, messages) in rendered.streams {
            let channel = &mut state.channels[stream.index()];
            let Some(ring) = channel.ring.as_ref().filter(|_| !messages.is_empty()) else {
                continue;
            };
            channel.published += messages.len() as u64;
            // No receiver is no error: the last client just left.
            let _ = ring.send(Arc::new(Batch {
                seq: event.seq,
                messages,
                end: channel.published,
            }));
            let (published, capacity) = (channel.published, self.queue_capacity as u64);
            channel.clients.retain(|_, client| {
                let behind = published - client.taken.load(Ordering::Relaxed);
                if behind <= capacity {
                    return true;
                }
                self.too_slow.fetch_add(1, Ordering::Relaxed);
                if let Some(tell) = client.too_slow.take() {
                    let _ = tell.send(());
                }
                false
            });
        }
        rendered.skipped
    }

    /// Lets every client take what was published and refuses new ones:
    /// the plugin is stopping.
    pub fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        for channel in &mut state.channels {
            channel.ring = None;
            channel.clients.clear();
        }
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
        let mut texts = Vec::new();
        while let Ok(Some(batch)) = sub.live.try_recv() {
            let filter = sub.live.filter.clone();
            texts.extend(batch.texts(&filter).map(|t| t.as_str().to_owned()));
        }
        texts
    }

    #[test]
    fn every_client_gets_the_same_shared_batch() {
        let hub = Arc::new(Hub::new(10, 10));
        let mut a = hub
            .subscribe(Stream::ValidBlocks, Filter::default())
            .unwrap();
        let mut b = hub
            .subscribe(Stream::ValidBlocks, Filter::default())
            .unwrap();
        hub.publish(&block(1, &["t1"]));
        let (ba, bb) = (
            a.live.try_recv().unwrap().unwrap(),
            b.live.try_recv().unwrap().unwrap(),
        );
        assert!(Arc::ptr_eq(&ba, &bb));
        assert_eq!((ba.seq, ba.end), (1, 1));
    }

    #[test]
    fn filters_apply_per_client() {
        let hub = Arc::new(Hub::new(10, 10));
        let creates = Filter::parse(Stream::ValidTx, "operation=CREATE").unwrap();
        let transfers = Filter::parse(Stream::ValidTx, "operation=TRANSFER").unwrap();
        let mut a = hub.subscribe(Stream::ValidTx, creates).unwrap();
        let mut b = hub.subscribe(Stream::ValidTx, transfers).unwrap();
        hub.publish(&block(1, &["t1", "t2"]));
        assert_eq!(received(&mut a).len(), 2);
        assert!(received(&mut b).is_empty());
    }

    #[test]
    fn a_client_that_falls_behind_is_dropped_and_told() {
        let hub = Arc::new(Hub::new(3, 10));
        let slow = hub.subscribe(Stream::ValidTx, Filter::default()).unwrap();
        let mut fast = hub.subscribe(Stream::ValidTx, Filter::default()).unwrap();
        hub.publish(&block(1, &["t1", "t2"]));
        assert_eq!(received(&mut fast).len(), 2);
        hub.publish(&block(2, &["t3"]));
        let mut slow = slow;
        assert!(slow.too_slow.try_recv().is_err(), "3 behind is allowed");
        hub.publish(&block(3, &["t4"]));
        assert_eq!(received(&mut fast).len(), 2);
        assert_eq!(slow.too_slow.try_recv(), Ok(()));
        assert_eq!(hub.too_slow_count(), 1);
        hub.publish(&block(4, &["t5"]));
        assert_eq!(received(&mut fast).len(), 1);
        assert_eq!(hub.too_slow_count(), 1, "told once");
    }

    #[test]
    fn a_client_keeping_up_is_never_dropped() {
        let hub = Arc::new(Hub::new(2, 10));
        let mut sub = hub.subscribe(Stream::ValidTx, Filter::default()).unwrap();
        for height in 1..=100 {
            hub.publish(&block(height, &["a", "b"]));
            assert_eq!(received(&mut sub).len(), 2);
        }
        assert!(sub.too_slow.try_recv().is_err());
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
    fn closing_lets_clients_take_what_was_published_and_refuses_newcomers() {
        let hub = Arc::new(Hub::new(3, 10));
        let mut a = hub
            .subscribe(Stream::ValidTransactions, Filter::default())
            .unwrap();
        hub.publish(&block(1, &["t1"]));
        hub.close();
        assert_eq!(received(&mut a).len(), 1);
        assert_eq!(a.live.try_recv().err(), Some(LiveEnd::Closed));
        assert!(a.too_slow.try_recv().is_err());
        assert_eq!(
            hub.subscribe(Stream::ValidTx, Filter::default()).err(),
            Some(Refusal::Closed)
        );
    }
}
