//! The connected clients, and how each event's messages reach them.
//!
//! Each stream has one ring of batches (see [`crate::ring`]), a batch being
//! one event's messages for that stream, and every client of the stream
//! reads the ring with a cursor of its own. Publishing an event therefore
//! costs one push per stream, whatever the number of clients, and a message
//! is held once however many clients have yet to send it: the ring lets go
//! of a batch once every client has taken it.
//!
//! Queries are shared the same way: each distinct query (by its normal
//! form) in use on transaction streams, or on block streams, has a slot,
//! and publishing evaluates every slot's query once per message (see
//! `matches`). A client's batch tells it, by its slot, which messages are
//! its. The slots a batch was evaluated with are those of the clients in
//! the hub when it is sent, so every client that receives it finds its own.
//!
//! A client may fall behind the stream by at most `client_queue_capacity`
//! messages (counted before its query, since that is what the ring holds
//! for it). After each publish the hub compares every client's progress
//! with the stream's: one that is too far behind is dropped from the hub
//! and told why, and nobody else notices.

use std::collections::HashMap;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use eventhost_plugin_api::Event;
use futures_util::task::AtomicWaker;
use stream_query::{Query, Scope};

use crate::matches::{Matches, Slots};
use crate::messages;
use crate::ring::{Gap, Ring};
use crate::stream::Stream;
use crate::subject::Rows;
use crate::wire::Frames;

pub struct Hub {
    state: Mutex<State>,
    queue_capacity: usize,
    max_clients: usize,
    max_queries: usize,
    too_slow: AtomicU64,
}

const SCOPES: [Scope; 2] = [Scope::Transactions, Scope::Blocks];

fn scope_index(scope: Scope) -> usize {
    match scope {
        Scope::Transactions => 0,
        Scope::Blocks => 1,
    }
}

#[derive(Default)]
struct State {
    next_id: u64,
    /// Per stream, by [`Stream::index`].
    channels: [Channel; Stream::ALL.len()],
    /// Per scope, by [`scope_index`].
    registries: [Registry; SCOPES.len()],
    closed: bool,
}

impl State {
    fn count(&self) -> usize {
        self.channels.iter().map(|c| c.clients.len()).sum()
    }

    fn distinct_queries(&self) -> usize {
        self.registries.iter().map(|r| r.by_form.len()).sum()
    }
}

/// One stream's ring and clients.
#[derive(Default)]
struct Channel {
    ring: Arc<Ring<Arc<Batch>>>,
    /// Messages published on the stream so far.
    published: u64,
    clients: HashMap<u64, Arc<Cursor>>,
}

/// The distinct queries in use in one scope.
struct Registry {
    slots: Vec<Option<Slot>>,
    by_form: HashMap<String, usize>,
    /// `slots`' queries, remade when a slot changes: what batches are evaluated with.
    snapshot: Slots,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            slots: Vec::new(),
            by_form: HashMap::new(),
            snapshot: Arc::from(Vec::new()),
        }
    }
}

struct Slot {
    query: Arc<Query>,
    users: usize,
}

impl Registry {
    /// The slot of `query`, taken by one more client.
    fn take(
        &mut self,
        query: Query,
        max: usize,
        total: usize,
    ) -> Result<(usize, Arc<Query>), Refusal> {
        if let Some(&slot) = self.by_form.get(query.normal_form()) {
            let taken = self.slots[slot].as_mut().expect("a named slot is taken");
            taken.users += 1;
            return Ok((slot, taken.query.clone()));
        }
        if total >= max {
            return Err(Refusal::TooManyQueries(max));
        }
        let slot = self
            .slots
            .iter()
            .position(Option::is_none)
            .unwrap_or(self.slots.len());
        if slot == self.slots.len() {
            self.slots.push(None);
        }
        let query = Arc::new(query);
        self.by_form.insert(query.normal_form().to_owned(), slot);
        self.slots[slot] = Some(Slot {
            query: query.clone(),
            users: 1,
        });
        self.remake_snapshot();
        Ok((slot, query))
    }

    fn release(&mut self, slot: usize) {
        let Some(taken) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        taken.users -= 1;
        if taken.users == 0 {
            self.by_form.remove(taken.query.normal_form());
            self.slots[slot] = None;
            while self.slots.last().is_some_and(Option::is_none) {
                self.slots.pop();
            }
            self.remake_snapshot();
        }
    }

    fn remake_snapshot(&mut self) {
        self.snapshot = self
            .slots
            .iter()
            .map(|s| s.as_ref().map(|s| s.query.clone()))
            .collect();
    }

    fn in_use(&self) -> bool {
        !self.by_form.is_empty()
    }
}

/// One event's messages on one stream, shared by all its clients.
pub struct Batch {
    /// The event's sequence number: a resuming client uses it to tell
    /// where the log ends and the live messages begin (see [`crate::resume`]).
    pub seq: u64,
    /// The messages, framed once for every client of the stream.
    frames: Frames,
    /// The stream's message count up to and including this batch.
    end: u64,
    /// Which messages each query selects; none if no client had a query.
    matches: Option<Arc<Matches>>,
}

impl Batch {
    /// Which of the batch's messages are for a client with the query in
    /// `slot` (all of them for a client without a query), in order.
    fn selected(&self, slot: Option<usize>) -> impl Iterator<Item = usize> + '_ {
        (0..self.frames.len()).filter(move |row| match slot {
            None => true,
            Some(slot) => self.matches.as_ref().is_some_and(|m| m.selects(*row, slot)),
        })
    }

    /// The batch's messages for the client with the query in `slot`, as
    /// shared frames: runs of consecutive messages as one slice (the whole
    /// batch for a client without a query). Also how many messages, and
    /// the bytes of their texts.
    pub fn frames(&self, slot: Option<usize>) -> (Vec<Bytes>, usize, usize) {
        let (mut slices, mut count, mut bytes) = (Vec::new(), 0, 0);
        let mut run: Option<(usize, usize)> = None;
        for row in self.selected(slot) {
            count += 1;
            bytes += self.frames.payload_bytes(row);
            run = match run {
                Some((from, to)) if to == row => Some((from, row + 1)),
                Some((from, to)) => {
                    slices.push(self.frames.range(from, to));
                    Some((row, row + 1))
                }
                None => Some((row, row + 1)),
            };
        }
        if let Some((from, to)) = run {
            slices.push(self.frames.range(from, to));
        }
        (slices, count, bytes)
    }

    /// The texts of the messages for the client with the query in `slot`.
    #[cfg(test)]
    pub fn texts(&self, slot: Option<usize>) -> impl Iterator<Item = &str> {
        self.selected(slot).map(|row| self.frames.text_of(row))
    }
}

/// One client's progress, shared by the hub and the client: one small
/// allocation per client (row 4c).
#[derive(Default)]
struct Cursor {
    /// The `end` of the last batch the client took off the ring.
    taken: AtomicU64,
    /// Set when the hub drops the client for falling too far behind.
    too_slow: AtomicBool,
    /// The client's task, woken when a batch is published or `too_slow`
    /// is set.
    waker: AtomicWaker,
}

/// A client's membership: its cursor on the ring, and word if it is
/// dropped for being too slow. Dropping it leaves the hub.
pub struct Subscription {
    hub: Arc<Hub>,
    stream: Stream,
    id: u64,
    /// The client's messages; ends once the hub closes and they are taken.
    pub live: Live,
    /// The client's query, shared with the clients that have the same.
    pub query: Option<Arc<Query>>,
    /// Whether the client fell too far behind.
    pub too_slow: TooSlow,
}

/// The hub's word that a client fell too far behind and was dropped.
pub struct TooSlow(Arc<Cursor>);

impl TooSlow {
    /// Completes once the client is dropped for being too slow.
    pub fn poll(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_set() {
            return Poll::Ready(());
        }
        self.0.waker.register(cx.waker());
        match self.is_set() {
            true => Poll::Ready(()),
            false => Poll::Pending,
        }
    }

    pub fn is_set(&self) -> bool {
        self.0.too_slow.load(Ordering::Acquire)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut state = self.hub.lock();
        state.channels[self.stream.index()].clients.remove(&self.id);
        if let Some(slot) = self.live.slot {
            state.registries[scope_index(self.stream.scope())].release(slot);
        }
    }
}

/// A client's cursor on its stream's ring.
pub struct Live {
    ring: Arc<Ring<Arc<Batch>>>,
    /// The ring's number of the next batch to take.
    next: u64,
    cursor: Arc<Cursor>,
    /// The slot of the client's query; none: every message.
    pub slot: Option<usize>,
}

/// Why a client gets no more live batches.
#[derive(Debug, PartialEq, Eq)]
pub enum LiveEnd {
    /// The plugin is stopping, and the client took everything published.
    Closed,
    /// The ring let go of batches the client had not taken (it was dropped
    /// from the hub as too slow).
    TooSlow,
}

impl Live {
    /// Waits for the next batch.
    pub async fn recv(&mut self) -> Result<Arc<Batch>, LiveEnd> {
        poll_fn(|cx| {
            if let Some(batch) = self.try_recv()? {
                return Poll::Ready(Ok(batch));
            }
            // Registered before looking again: a batch published meanwhile
            // wakes the task (see `Hub::publish`).
            self.cursor.waker.register(cx.waker());
            match self.try_recv() {
                Ok(None) => Poll::Pending,
                taken => Poll::Ready(taken.map(|batch| batch.expect("just taken"))),
            }
        })
        .await
    }

    /// The next batch if one is published; `Ok(None)` if none is yet.
    pub fn try_recv(&mut self) -> Result<Option<Arc<Batch>>, LiveEnd> {
        let batch = self.ring.get(self.next).map_err(|gap| match gap {
            Gap::Closed => LiveEnd::Closed,
            Gap::Released => LiveEnd::TooSlow,
        })?;
        if let Some(batch) = &batch {
            self.next += 1;
            self.cursor.taken.store(batch.end, Ordering::Relaxed);
        }
        Ok(batch)
    }
}

/// Why a client cannot join.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `max_clients` are connected.
    Full(usize),
    /// `max_distinct_queries` distinct queries are in use, and this is another.
    TooManyQueries(usize),
    /// The plugin is shutting down.
    Closed,
}

impl Hub {
    pub fn new(queue_capacity: usize, max_clients: usize, max_queries: usize) -> Hub {
        Hub {
            state: Mutex::default(),
            queue_capacity,
            max_clients,
            max_queries,
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

    /// Clients per stream (by [`Stream::index`]) and distinct queries in use.
    pub fn census(&self) -> ([usize; Stream::ALL.len()], usize) {
        let state = self.lock();
        (
            std::array::from_fn(|i| state.channels[i].clients.len()),
            state.distinct_queries(),
        )
    }

    /// Adds a client to `stream`: it receives every message published from
    /// now on that `query` selects (every message, without one).
    pub fn subscribe(
        self: &Arc<Self>,
        stream: Stream,
        query: Option<Query>,
    ) -> Result<Subscription, Refusal> {
        let mut state = self.lock();
        if state.closed {
            return Err(Refusal::Closed);
        }
        if state.count() >= self.max_clients {
            return Err(Refusal::Full(self.max_clients));
        }
        let total = state.distinct_queries();
        let (slot, query) = match query {
            Some(query) => {
                let registry = &mut state.registries[scope_index(stream.scope())];
                let (slot, query) = registry.take(query, self.max_queries, total)?;
                (Some(slot), Some(query))
            }
            None => (None, None),
        };
        let id = state.next_id;
        state.next_id += 1;
        let channel = &mut state.channels[stream.index()];
        let cursor = Arc::new(Cursor {
            taken: AtomicU64::new(channel.published),
            ..Cursor::default()
        });
        channel.clients.insert(id, cursor.clone());
        Ok(Subscription {
            hub: self.clone(),
            stream,
            id,
            live: Live {
                ring: channel.ring.clone(),
                next: channel.ring.end(),
                cursor: cursor.clone(),
                slot,
            },
            query,
            too_slow: TooSlow(cursor),
        })
    }

    /// Hands the event's messages to every stream with clients, without
    /// waiting for any, and drops the clients that fell too far behind.
    /// Returns why transactions were left out, for the log.
    pub fn publish(&self, event: &Event) -> Vec<String> {
        let (listened, snapshots) = {
            let state = self.lock();
            let listened: [bool; Stream::ALL.len()] =
                std::array::from_fn(|i| !state.channels[i].clients.is_empty());
            let snapshots: [Option<Slots>; SCOPES.len()] = std::array::from_fn(|i| {
                let registry = &state.registries[i];
                registry.in_use().then(|| registry.snapshot.clone())
            });
            (listened, snapshots)
        };
        // Render and evaluate outside the lock, so that clients can join
        // meanwhile; one that joins a stream nobody listened to starts
        // with the next event.
        let rendered = messages::render(event, |stream| listened[stream.index()]);
        // The subjects are made only if a query is evaluated.
        let rows = std::cell::OnceCell::new();
        let rows = || rows.get_or_init(|| Rows::new(event, &rendered));
        let rendered_scopes: [bool; SCOPES.len()] = std::array::from_fn(|i| {
            rendered
                .streams
                .iter()
                .any(|(s, _)| scope_index(s.scope()) == i)
        });
        let mut matches: [Option<Arc<Matches>>; SCOPES.len()] = std::array::from_fn(|i| {
            let slots = snapshots[i].clone().filter(|_| rendered_scopes[i])?;
            Some(Arc::new(Matches::evaluate(
                slots,
                &rows().subjects(SCOPES[i]),
            )))
        });
        let mut state = self.lock();
        for (i, scope) in SCOPES.into_iter().enumerate() {
            // A query that arrived meanwhile (rare) is evaluated here, so
            // that its client finds its slot in the batch.
            let registry = &state.registries[i];
            let current = registry.in_use().then(|| registry.snapshot.clone());
            let stale = match (&matches[i], &current) {
                (Some(m), Some(slots)) => !m.evaluated_with(slots),
                (None, Some(_)) => true,
                (_, None) => false,
            };
            if stale && rendered_scopes[i] {
                let slots = current.expect("stale means in use");
                matches[i] = Some(Arc::new(Matches::evaluate(slots, &rows().subjects(scope))));
            }
        }
        for (stream, messages) in rendered.streams {
            let matches = matches[scope_index(stream.scope())].clone();
            let channel = &mut state.channels[stream.index()];
            if messages.is_empty() {
                continue;
            }
            let before = channel.published;
            channel.published += messages.len() as u64;
            channel.ring.push(Arc::new(Batch {
                seq: event.seq,
                frames: Frames::text(&messages),
                end: channel.published,
                matches,
            }));
            let (published, capacity) = (channel.published, self.queue_capacity as u64);
            // The least any client that stays has taken, in messages.
            let mut least = published;
            channel.clients.retain(|_, client| {
                let taken = client.taken.load(Ordering::Relaxed);
                if published - taken <= capacity {
                    least = least.min(taken);
                    // Only a client that took everything before waits for
                    // this batch; the others take it after their flush.
                    if taken == before {
                        client.waker.wake();
                    }
                    return true;
                }
                self.too_slow.fetch_add(1, Ordering::Relaxed);
                client.too_slow.store(true, Ordering::Release);
                client.waker.wake();
                false
            });
            // Every batch holds a message, so a batch ending by `least` was
            // taken by every client left in the hub: a client dropped for
            // being too slow leaves its backlog at once.
            channel.ring.release_while(|batch| batch.end <= least);
        }
        rendered.skipped
    }

    /// Lets every client take what was published and refuses new ones:
    /// the plugin is stopping.
    pub fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        for channel in &mut state.channels {
            channel.ring.close();
            for client in channel.clients.values() {
                client.waker.wake();
            }
            channel.clients.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventhost_plugin_api::{BLOCK_VALID, Event};
    use stream_query::Limits;

    fn block(height: u64, ids: &[&str]) -> Event {
        Event {
            event_type: BLOCK_VALID,
            seq: height,
            height,
            block_hash: "h".into(),
            timestamp_ms: 0,
            transactions: ids
                .iter()
                .map(|id| {
                    let op = if id.starts_with('c') {
                        "CREATE"
                    } else {
                        "TRANSFER"
                    };
                    format!(
                        r#"{{"id":"{id}","operation":"{op}","metadata":{{"n":{}}}}}"#,
                        id.len()
                    )
                    .into()
                })
                .collect(),
            rejections: Default::default(),
        }
    }

    fn query(text: &str) -> Option<Query> {
        Some(Query::parse(text, Scope::Transactions, &Limits::default()).unwrap())
    }

    fn received(sub: &mut Subscription) -> Vec<String> {
        let mut texts = Vec::new();
        while let Ok(Some(batch)) = sub.live.try_recv() {
            texts.extend(batch.texts(sub.live.slot).map(str::to_owned));
        }
        texts
    }

    #[test]
    fn every_client_gets_the_same_shared_batch() {
        let hub = Arc::new(Hub::new(10, 10, 10));
        let mut a = hub.subscribe(Stream::ValidBlocks, None).unwrap();
        let mut b = hub.subscribe(Stream::ValidBlocks, None).unwrap();
        hub.publish(&block(1, &["t1"]));
        let (ba, bb) = (
            a.live.try_recv().unwrap().unwrap(),
            b.live.try_recv().unwrap().unwrap(),
        );
        assert!(Arc::ptr_eq(&ba, &bb));
        assert_eq!((ba.seq, ba.end), (1, 1));
    }

    #[test]
    fn queries_apply_per_client_and_are_shared_by_their_normal_form() {
        let hub = Arc::new(Hub::new(10, 10, 10));
        let mut a = hub
            .subscribe(Stream::ValidTx, query("operation = 'CREATE'"))
            .unwrap();
        let mut b = hub
            .subscribe(Stream::ValidTransactions, query("operation='create'"))
            .unwrap();
        let mut c = hub
            .subscribe(Stream::ValidTx, query("metadata.n > 2"))
            .unwrap();
        let mut all = hub.subscribe(Stream::ValidTx, None).unwrap();
        assert_eq!(a.live.slot, b.live.slot, "one slot for one normal form");
        assert!(Arc::ptr_eq(
            a.query.as_ref().unwrap(),
            b.query.as_ref().unwrap()
        ));
        assert_ne!(a.live.slot, c.live.slot);
        assert_eq!(hub.census().1, 2);
        hub.publish(&block(1, &["c1", "t2", "c333"]));
        let ids = |texts: Vec<String>| -> Vec<String> {
            texts
                .iter()
                .map(|t| {
                    let v: serde_json::Value = serde_json::from_str(t).unwrap();
                    v.get("tx_id")
                        .or(v.get("transaction_id"))
                        .unwrap()
                        .as_str()
                        .unwrap()
                        .to_owned()
                })
                .collect()
        };
        assert_eq!(ids(received(&mut a)), ["c1", "c333"]);
        assert_eq!(ids(received(&mut b)), ["c1", "c333"]);
        assert_eq!(ids(received(&mut c)), ["c333"]);
        assert_eq!(received(&mut all).len(), 3);
        // The slot is freed when its last client leaves, and reused.
        drop(a);
        assert_eq!(hub.census().1, 2);
        drop(b);
        assert_eq!(hub.census().1, 1);
        let d = hub
            .subscribe(Stream::ValidTx, query("operation = 'TRANSFER'"))
            .unwrap();
        assert_eq!(d.live.slot, Some(0));
    }

    #[test]
    fn distinct_queries_are_limited() {
        let hub = Arc::new(Hub::new(10, 10, 1));
        let _a = hub.subscribe(Stream::ValidTx, query("height > 1")).unwrap();
        let _b = hub
            .subscribe(Stream::ValidTransactions, query("height>1"))
            .unwrap();
        assert_eq!(
            hub.subscribe(Stream::ValidTx, query("height > 2")).err(),
            Some(Refusal::TooManyQueries(1))
        );
        let _unfiltered = hub.subscribe(Stream::ValidTx, None).unwrap();
    }

    #[test]
    fn a_client_that_falls_behind_is_dropped_and_told() {
        let hub = Arc::new(Hub::new(3, 10, 10));
        let mut slow = hub.subscribe(Stream::ValidTx, None).unwrap();
        let mut fast = hub.subscribe(Stream::ValidTx, None).unwrap();
        hub.publish(&block(1, &["t1", "t2"]));
        assert_eq!(received(&mut fast).len(), 2);
        hub.publish(&block(2, &["t3"]));
        assert!(!slow.too_slow.is_set(), "3 behind is allowed");
        hub.publish(&block(3, &["t4"]));
        assert_eq!(received(&mut fast).len(), 2);
        assert!(slow.too_slow.is_set());
        // Its backlog was let go: nobody left in the hub needed it.
        assert_eq!(slow.live.try_recv().err(), Some(LiveEnd::TooSlow));
        assert_eq!(hub.too_slow_count(), 1);
        hub.publish(&block(4, &["t5"]));
        assert_eq!(received(&mut fast).len(), 1);
        assert_eq!(hub.too_slow_count(), 1, "told once");
    }

    #[test]
    fn a_client_keeping_up_is_never_dropped() {
        let hub = Arc::new(Hub::new(2, 10, 10));
        let mut sub = hub.subscribe(Stream::ValidTx, None).unwrap();
        for height in 1..=100 {
            hub.publish(&block(height, &["a", "b"]));
            assert_eq!(received(&mut sub).len(), 2);
        }
        assert!(!sub.too_slow.is_set());
    }

    #[test]
    fn clients_leave_on_drop_and_max_clients_holds() {
        let hub = Arc::new(Hub::new(3, 1, 10));
        let a = hub.subscribe(Stream::ValidTx, None).unwrap();
        assert_eq!(
            hub.subscribe(Stream::ValidBlocks, None).err(),
            Some(Refusal::Full(1))
        );
        drop(a);
        let _b = hub.subscribe(Stream::ValidBlocks, None).unwrap();
    }

    #[test]
    fn closing_lets_clients_take_what_was_published_and_refuses_newcomers() {
        let hub = Arc::new(Hub::new(3, 10, 10));
        let mut a = hub.subscribe(Stream::ValidTransactions, None).unwrap();
        hub.publish(&block(1, &["t1"]));
        hub.close();
        assert_eq!(received(&mut a).len(), 1);
        assert_eq!(a.live.try_recv().err(), Some(LiveEnd::Closed));
        assert!(!a.too_slow.is_set());
        assert_eq!(
            hub.subscribe(Stream::ValidTx, None).err(),
            Some(Refusal::Closed)
        );
    }
}
