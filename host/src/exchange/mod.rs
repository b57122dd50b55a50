//! Publishes each event once to every plugin that subscribed to its type.
//!
//! The exchange sits between the event log and the plugin runtime: the log
//! hands it each commit's events once they are durable (through the one
//! [`Publisher`], which the log keeps), and each plugin's [`Queue`] takes
//! them from it.
//!
//! Every plugin has its own bounded in-memory queue holding shared
//! references to the one published event: a ring with one writer and one
//! reader ([`ring`]), which neither side locks. A commit's events reach
//! each queue with one store, and the plugin's thread takes them one by
//! one: per event, neither side takes a lock or a read-modify-write that
//! the other side touches (benchmark row 1). A receiver that found its
//! queue empty sleeps only after saying so, and only then does the
//! publisher wake it (a system call).
//!
//! Publishing never waits: when a plugin's queue is full, the exchange
//! stops filling it and remembers the first event that did not fit. Once
//! the plugin has drained its queue it reads the missed events from the
//! event log, and when it has caught up the exchange fills its queue again.
//! The switch back happens under the publish lock, so there is no gap and
//! no duplicate at the seam. A plugin that never reads costs one full queue
//! of shared references and nothing else.

mod acks;
mod ring;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use abi_stable::std_types::RArc;
use crossbeam_utils::{Backoff, CachePadded};
use eventhost_plugin_api::ffi::{HostQueue, Received};
use eventhost_plugin_api::{BLOCK_VALID, Event, EventType, EventTypes, SharedEvent};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

pub use acks::Acks;
use ring::{Reader, Ring, Writer};

use crate::metrics::{Labels, Metrics};
use crate::store::StoreError;

/// Where the exchange reads events it published earlier, for a plugin that
/// fell behind or resumes: the event log.
pub trait History: Send + Sync {
    /// Up to `max` events with `seq >= from`, in order.
    fn read(&self, from: u64, max: usize) -> Result<Vec<Event>, StoreError>;
}

/// How often a plugin waiting for events looks whether it was paused.
const PAUSE_CHECK: Duration = Duration::from_millis(100);

/// Events read from the log per catch-up step: large enough to amortize a
/// read transaction, small enough to bound the memory of a catching-up plugin.
const CATCH_UP_BATCH: usize = 256;

pub struct Exchange {
    history: Arc<dyn History>,
    /// The `events_published` and `block_transactions` counters of each
    /// event type, looked up once: looking one up per event allocated its
    /// labels every time, 40% of the instructions of a publish to 8 plugins
    /// (the exchange benchmark, tests/bench).
    published: Vec<(EventType, Published)>,
    /// The `head_height` gauge.
    height: Gauge,
    /// Events a subscriber missed because retention pruned them, by plugin.
    missed: Family<Labels, Counter>,
    /// The publish lock: held while a commit's events are handed out, and
    /// while a catching-up plugin switches back to its live queue.
    subscribers: Mutex<Vec<Subscriber>>,
    /// The newest published sequence number.
    head: AtomicU64,
    /// Set by `close`: nothing more is published.
    closed: AtomicBool,
}

/// The counters one event type's publishing adds to.
struct Published {
    events: Counter,
    transactions: Counter,
}

/// The publisher's side of one subscription.
struct Subscriber {
    plugin: String,
    mask: EventTypes,
    capacity: usize,
    progress: Arc<Progress>,
    /// Fills its inbox (under the publish lock).
    inbox: Writer,
    /// The first event of the commit being published that did not fit in
    /// its inbox, or 0.
    missed: u64,
    /// The commit being published put events in its inbox: wake the
    /// receiver if it sleeps.
    arrived: bool,
}

/// How far one subscriber got, and the inbox the exchange fills for it;
/// shared between the exchange and the subscriber's queue.
///
/// What the publisher writes and what the plugin's thread writes are on
/// cache lines of their own: a line both sides wrote moved between the
/// cores at every event.
pub struct Progress {
    /// The events the publisher put in the inbox and the receiver did not
    /// take yet.
    inbox: Arc<Ring>,
    /// Written by the receiving thread alone (and acknowledgements).
    receiver: CachePadded<ReceiverSide>,
    /// The inbox's state beside its events, which the receiver reads
    /// whenever it finds the inbox empty.
    state: CachePadded<InboxState>,
    /// Delivery is held: receiving waits (the plugin is paused).
    paused: AtomicBool,
    /// The subscriber is being stopped: it gets what its inbox holds, and
    /// nothing more from the log.
    stopping: AtomicBool,
    /// The queue was dropped (the plugin's run returned): the exchange
    /// forgets the subscriber at its next publish.
    dropped: AtomicBool,
}

impl Default for Progress {
    /// A subscriber's before it subscribed: nothing delivered.
    fn default() -> Progress {
        Progress::new(Ring::new(1).0, 0, 0)
    }
}

#[derive(Default)]
struct ReceiverSide {
    /// What the subscriber was given and finished.
    acks: Acks,
    /// Events handed to the subscriber, from the inbox or the log.
    count: AtomicU64,
}

/// Whether a subscriber is live, and how its receiver waits for events.
#[derive(Default)]
struct InboxState {
    /// 0 while the subscriber is live; otherwise the first event that did
    /// not fit, from which it reads the log. Written under the publish
    /// lock, after the events before it were published.
    behind_from: AtomicU64,
    /// Nothing more will arrive (unsubscribed, or the exchange closed).
    /// Written under `sleep`, after the last events were published.
    ended: AtomicBool,
    /// The receiver is about to wait, or waits, on `arrived`: only then is
    /// it signalled (a signal is a system call). The receiver sets it and
    /// then looks at the inbox, the publisher publishes and then looks at
    /// it, each with a full fence between: at least one of them sees the
    /// other's write, so the receiver either finds the events or is woken.
    /// The publisher clears it when it wakes the receiver.
    sleeping: AtomicBool,
    /// Held by a receiver from setting `sleeping` until it waits, and to
    /// signal it: a signal is not lost between its last look and its wait.
    sleep: Mutex<()>,
    /// Signalled when events arrive or the inbox ends.
    arrived: Condvar,
}

impl InboxState {
    fn lock(&self) -> MutexGuard<'_, ()> {
        // Nothing panics while holding the lock; recover rather than cascade if it ever did.
        self.sleep.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn behind_from(&self) -> u64 {
        self.behind_from.load(Ordering::Acquire)
    }

    fn ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    fn end(&self) {
        let _sleep = self.lock();
        self.ended.store(true, Ordering::Release);
        self.arrived.notify_all();
    }

    /// Wakes the receiver if it sleeps; after a full fence that follows
    /// the publishing of the events it is woken for.
    ///
    /// Once only: the flag stayed set until the woken receiver ran, and
    /// the publisher's next commits, made before it did on a busy
    /// machine, woke it again each time (a system call each). And after
    /// the lock: it is taken only so that the receiver is past its last
    /// look, and a receiver woken while it was still held found it taken
    /// and had to be woken again when it was released. Row 1, 2026-12-07:
    /// the wake-ups were 18% of the publisher's samples in eventhost's
    /// rounds (perf, DWARF call graphs), the baseline's 2%.
    fn wake(&self) {
        if self.sleeping.load(Ordering::Relaxed) && self.sleeping.swap(false, Ordering::Relaxed) {
            drop(self.lock());
            self.arrived.notify_one();
        }
    }
}

impl Progress {
    /// The progress of a subscriber that finished every event up to
    /// `cursor` and is live, or reads the log from `behind_from` if that
    /// is not 0.
    fn new(inbox: Arc<Ring>, cursor: u64, behind_from: u64) -> Progress {
        Progress {
            inbox,
            receiver: CachePadded::new(ReceiverSide {
                acks: Acks::after(cursor),
                count: AtomicU64::new(0),
            }),
            state: CachePadded::new(InboxState {
                behind_from: AtomicU64::new(behind_from),
                ..InboxState::default()
            }),
            paused: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            dropped: AtomicBool::new(false),
        }
    }

    /// Holds or resumes delivery to the subscriber.
    pub fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::Release);
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// The sequence number of the last event handed to the subscriber.
    pub fn delivered(&self) -> u64 {
        self.receiver.acks.delivered()
    }

    /// The sequence number of the last event the subscriber finished: its cursor.
    pub fn finished(&self) -> u64 {
        self.receiver.acks.finished()
    }

    /// How many events were handed to the subscriber.
    pub fn count(&self) -> u64 {
        self.receiver.count.load(Ordering::Acquire)
    }

    /// Events waiting in the subscriber's in-memory queue.
    pub fn queued(&self) -> usize {
        usize::try_from(self.inbox.queued()).unwrap_or(usize::MAX)
    }
}

/// The right to publish: one per exchange, held by the event log.
pub struct Publisher {
    exchange: Arc<Exchange>,
}

impl Publisher {
    /// Hands a commit's events, already written to the event log in this
    /// order, to their subscribers.
    pub fn publish(&mut self, events: Vec<Event>) {
        self.exchange.publish(events);
    }
}

impl Exchange {
    /// An exchange whose events up to `head` are in `history`, and the one
    /// handle that publishes to it.
    pub fn new(
        history: Arc<dyn History>,
        head: u64,
        metrics: &Metrics,
    ) -> (Arc<Exchange>, Publisher) {
        let published = EventType::ALL
            .into_iter()
            .map(|t| {
                let labels = vec![("type".to_owned(), t.name().to_owned())];
                let counters = Published {
                    events: metrics.events_published.get_or_create(&labels).clone(),
                    transactions: metrics.block_transactions.get_or_create(&labels).clone(),
                };
                (t, counters)
            })
            .collect();
        let exchange = Arc::new(Exchange {
            history,
            missed: metrics.plugin_events_missed.clone(),
            published,
            height: metrics.head_height.clone(),
            subscribers: Mutex::new(Vec::new()),
            head: AtomicU64::new(head),
            closed: AtomicBool::new(false),
        });
        let publisher = Publisher {
            exchange: exchange.clone(),
        };
        (exchange, publisher)
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Subscriber>> {
        // Nothing panics while holding the lock; recover rather than cascade if it ever did.
        self.subscribers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The newest published sequence number.
    pub fn head(&self) -> u64 {
        self.head.load(Ordering::Acquire)
    }

    /// Up to `max` published events from `from` on. The log may already
    /// hold events the publisher is about to hand out; readers must not
    /// see them before the subscribers do, or they would see them twice.
    pub fn read_published(&self, from: u64, max: usize) -> Result<Vec<Event>, StoreError> {
        self.published(
            from,
            max,
            |from, max| self.history.read(from, max),
            |e| e.seq,
        )
    }

    /// What `read(from, max)` reads of the log, cut to the published
    /// events as [`Exchange::read_published`] is: for a reader of the log
    /// other than the history (e.g. of its summaries), `seq` giving each
    /// item's sequence number.
    pub fn published<T>(
        &self,
        from: u64,
        max: usize,
        read: impl FnOnce(u64, usize) -> Result<Vec<T>, StoreError>,
        seq: impl Fn(&T) -> u64,
    ) -> Result<Vec<T>, StoreError> {
        let head = self.head();
        if from > head {
            return Ok(Vec::new());
        }
        let wanted = usize::try_from(head - from + 1).unwrap_or(usize::MAX);
        let mut read = read(from, max.min(wanted))?;
        read.retain(|item| seq(item) <= head);
        Ok(read)
    }

    /// A queue that receives every event of the `mask` types after event
    /// `after`: first the ones already in the log, then live ones. After
    /// `close`, it receives what is in the log and then ends.
    pub fn subscribe(
        self: &Arc<Self>,
        plugin: &str,
        mask: EventTypes,
        capacity: usize,
        after: u64,
    ) -> Queue {
        let mut subscribers = self.lock();
        let head = self.head.load(Ordering::Acquire);
        let after = after.min(head);
        let (ring, writer, reader) = Ring::new(capacity);
        let behind_from = if after < head { after + 1 } else { 0 };
        let progress = Arc::new(Progress::new(ring, after, behind_from));
        if self.closed.load(Ordering::Acquire) {
            progress.state.ended.store(true, Ordering::Release);
        } else {
            subscribers.push(Subscriber {
                plugin: plugin.to_owned(),
                mask,
                capacity,
                progress: progress.clone(),
                inbox: writer,
                missed: 0,
                arrived: false,
            });
        }
        Queue {
            exchange: self.clone(),
            plugin: plugin.to_owned(),
            mask,
            progress,
            pending: Mutex::new(Pending {
                events: VecDeque::new(),
                inbox: reader,
                count: 0,
            }),
        }
    }

    /// Hands a commit's events to their subscribers; only through the
    /// [`Publisher`], which gets them in order from the one event log.
    fn publish(&self, events: Vec<Event>) {
        let Some(last) = events.last().map(|e| e.seq) else {
            return;
        };
        let mut types = EventTypes::NONE;
        for (event_type, counters) in &self.published {
            let (n, transactions) = events
                .iter()
                .filter(|e| e.event_type == *event_type)
                .fold((0, 0), |(n, t), e| (n + 1, t + e.transactions.len() as u64));
            if n > 0 {
                counters.events.inc_by(n);
                counters.transactions.inc_by(transactions);
                types = types | *event_type;
            }
        }
        if let Some(valid) = events.iter().rev().find(|e| e.event_type == BLOCK_VALID) {
            self.height
                .set(i64::try_from(valid.height).unwrap_or(i64::MAX));
        }
        let events: Vec<SharedEvent> = events.into_iter().map(RArc::new).collect();
        let mut subscribers = self.lock();
        self.head.store(last, Ordering::Release);
        subscribers.retain_mut(|s| {
            if s.progress.dropped.load(Ordering::Acquire) {
                return false;
            }
            if !s.mask.intersection(types).is_empty() {
                s.offer(&events);
            }
            true
        });
        // Every inbox is filled before any is published: the events'
        // shared counts are all raised while their cache line is still
        // the publisher's alone. Publishing each inbox as it was filled
        // let its receiver take the event and drop it, taking the line
        // away, before the next inbox's copy: the clones through the
        // shared pointer's vtable took as many samples as all of
        // `publish`'s own code (perf, row 1).
        let mut arrived = false;
        for s in subscribers.iter_mut() {
            arrived |= s.publish();
        }
        if arrived {
            // One fence for the commit's publishing to every inbox; then
            // only receivers that went to sleep are woken (see `sleeping`).
            fence(Ordering::SeqCst);
            for s in subscribers.iter_mut().filter(|s| s.arrived) {
                s.arrived = false;
                s.progress.state.wake();
            }
        }
    }

    /// Stops one subscriber: its queue ends once it has received what its
    /// inbox holds (the rest stays in the log, after its cursor).
    pub fn unsubscribe(&self, progress: &Arc<Progress>) {
        let mut subscribers = self.lock();
        progress.stopping.store(true, Ordering::Release);
        subscribers.retain(|s| !Arc::ptr_eq(&s.progress, progress));
        progress.state.end();
    }

    /// Ends every queue once the subscriber has received what was published.
    pub fn close(&self) {
        let mut subscribers = self.lock();
        self.closed.store(true, Ordering::Release);
        for s in subscribers.drain(..) {
            s.progress.state.end();
        }
    }
}

impl Subscriber {
    /// Puts the events of a commit it subscribed to in its inbox, as far as
    /// there is room; at the first that does not fit it falls behind (once
    /// published) and will read the rest from the log.
    fn offer(&mut self, events: &[SharedEvent]) {
        // Only holders of the publish lock write it.
        if self.progress.state.behind_from.load(Ordering::Relaxed) != 0 {
            return;
        }
        for event in events.iter().filter(|e| self.mask.contains(e.event_type)) {
            if !self.inbox.push(event) {
                self.missed = event.seq;
                return;
            }
        }
    }

    /// Makes what `offer` put in the inbox visible to the receiver, and
    /// marks it behind if something did not fit; returns whether there
    /// were new events.
    fn publish(&mut self) -> bool {
        self.arrived = self.inbox.publish();
        if self.missed != 0 {
            // After the events before it: a receiver that sees the mark
            // and then finds its inbox empty has received all of them.
            let state = &self.progress.state;
            state.behind_from.store(self.missed, Ordering::Release);
            tracing::warn!(
                plugin = %self.plugin,
                "plugin fell behind: its queue of {} events is full at event {}; it will catch up from the event log",
                self.capacity,
                self.missed,
            );
            self.missed = 0;
        }
        self.arrived
    }
}

/// One plugin's queue, handed to the plugin as its `HostQueue`.
pub struct Queue {
    exchange: Arc<Exchange>,
    /// The subscriber's name, for what it is told in the log.
    plugin: String,
    mask: EventTypes,
    progress: Arc<Progress>,
    /// The receiving side: only the receiving thread locks it, so it is
    /// never contended (a plugin may receive on several threads).
    pending: Mutex<Pending>,
}

/// What [`Queue::recv_many`] got.
#[derive(Debug, PartialEq, Eq)]
pub enum Receipt {
    /// At least one event.
    Events,
    /// Nothing arrived in time; the queue is still open.
    Timeout,
    /// The queue ended and everything in it was received.
    Closed,
}

struct Pending {
    /// Events read from the log, not yet handed out: they come before
    /// anything in the inbox, which the publisher fills again only once
    /// the last of them is read.
    events: VecDeque<SharedEvent>,
    /// Takes the events the publisher put in the inbox.
    inbox: Reader,
    /// Events handed out; `ReceiverSide::count` mirrors it.
    count: u64,
}

impl Pending {
    fn has_events(&mut self) -> bool {
        !self.events.is_empty() || self.inbox.has_events()
    }

    /// The next event, counted as handed to the subscriber.
    fn hand_out(&mut self, receiver: &ReceiverSide) -> Option<SharedEvent> {
        let event = match self.events.pop_front() {
            Some(event) => event,
            None => self.inbox.pop()?,
        };
        // Plain stores: only this thread writes these.
        self.count += 1;
        receiver.count.store(self.count, Ordering::Release);
        receiver.acks.delivered_up_to(event.seq);
        Some(event)
    }
}

impl Queue {
    /// How far the plugin got, for status and shutdown.
    pub fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    /// Up to `max` events at once into `into`, waiting up to `timeout` for
    /// the first: for a receiver in the host that passes events on (a
    /// plugin in a child process). The same events, in the same order, as
    /// that many calls of `recv`.
    pub fn recv_many(&self, timeout: Duration, max: usize, into: &mut Vec<SharedEvent>) -> Receipt {
        self.progress.receiver.acks.on_receive();
        let mut pending = match self.ready(Instant::now().checked_add(timeout)) {
            Ok(pending) => pending,
            Err(Received::Timeout) => return Receipt::Timeout,
            Err(_) => return Receipt::Closed,
        };
        let receiver = &*self.progress.receiver;
        into.extend(std::iter::from_fn(|| pending.hand_out(receiver)).take(max));
        Receipt::Events
    }

    /// Waits until there are events to hand out (or `deadline` passes:
    /// `Timeout`, or the queue ends: `Closed`).
    fn ready(&self, deadline: Option<Instant>) -> Result<MutexGuard<'_, Pending>, Received> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let backoff = Backoff::new();
        loop {
            let stopping = self.progress.stopping.load(Ordering::Acquire);
            if self.progress.is_paused() && !stopping {
                let now = Instant::now();
                if deadline.is_some_and(|d| now >= d) {
                    return Err(Received::Timeout);
                }
                let wait = deadline.map_or(PAUSE_CHECK, |d| (d - now).min(PAUSE_CHECK));
                std::thread::sleep(wait);
                continue;
            }
            if pending.has_events() {
                return Ok(pending);
            }
            let state = &self.progress.state;
            // Once the publisher marked us behind it put nothing more in
            // the inbox, and it marked us after publishing what it put
            // there: if the inbox is still empty after the mark was seen,
            // everything before the mark was received.
            let behind_from = state.behind_from();
            if behind_from != 0 && !stopping {
                if !pending.has_events() {
                    self.catch_up(behind_from, &mut pending);
                }
                continue;
            }
            if state.ended() {
                if pending.has_events() {
                    continue;
                }
                return Err(Received::Closed);
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Err(Received::Timeout);
            }
            // Spins, then yields, a little before it sleeps: a publisher
            // in full flow has the next commit ready by then, and a
            // receiver that slept on every commit cost the publisher a
            // wake-up (a system call) per subscriber and commit: 31-43 µs
            // of CPU per event to 8 plugins in row 1's one-event commits,
            // against 0.9 with the back-off (crossbeam's channels, the
            // baseline, back off the same way). It watches the publisher's
            // count meanwhile, which is on a line of its own.
            if !backoff.is_completed() {
                while !backoff.is_completed() && !pending.inbox.has_events() {
                    backoff.snooze();
                }
                continue;
            }
            // The publisher goes on with its next commit after waking
            // this thread, which should run first (see `wakeups`).
            crate::wakeups::prefer_prompt_wakeups();
            // Waits in slices, so that a pause is seen within one.
            let wait = deadline.map_or(PAUSE_CHECK, |d| (d - now).min(PAUSE_CHECK));
            let sleep = state.lock();
            state.sleeping.store(true, Ordering::Relaxed);
            // Pairs with the publisher's fence after it published (see
            // `InboxState::sleeping`).
            fence(Ordering::SeqCst);
            if !pending.inbox.has_events() && state.behind_from() == 0 && !state.ended() {
                drop(
                    state
                        .arrived
                        .wait_timeout(sleep, wait)
                        .unwrap_or_else(|e| e.into_inner()),
                );
            }
            state.sleeping.store(false, Ordering::Relaxed);
        }
    }

    /// Reads the next batch of missed events from the log into `pending`;
    /// when that reaches the head, switches the subscriber back to its inbox.
    fn catch_up(&self, from: u64, pending: &mut Pending) {
        let events = match self.exchange.read_published(from, CATCH_UP_BATCH) {
            Ok(events) => events,
            Err(e) => {
                tracing::error!("cannot read missed events from the event log: {e}; retrying");
                std::thread::sleep(Duration::from_millis(100));
                return;
            }
        };
        if let Some(first) = events.first().filter(|e| e.seq > from) {
            // Retention dropped them before this subscriber got to them.
            let missed = first.seq - from;
            tracing::warn!(
                plugin = %self.plugin,
                "plugin missed events {from} to {} ({missed} events): the event log's retention \
                 dropped them before it read them; it goes on from event {}",
                first.seq - 1,
                first.seq
            );
            self.exchange
                .missed
                .get_or_create(&vec![("plugin".to_owned(), self.plugin.clone())])
                .inc_by(missed);
        }
        let mut next = from;
        for event in events {
            next = event.seq + 1;
            if self.mask.contains(event.event_type) {
                pending.events.push_back(RArc::new(event));
            }
        }
        let _publishing = self.exchange.lock();
        let caught_up = next > self.exchange.head.load(Ordering::Acquire);
        self.progress
            .state
            .behind_from
            .store(if caught_up { 0 } else { next }, Ordering::Release);
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        self.progress.dropped.store(true, Ordering::Release);
        // What it held is not for anyone else.
        let pending = self.pending.get_mut().unwrap_or_else(|e| e.into_inner());
        while pending.inbox.pop().is_some() {}
    }
}

impl HostQueue for Queue {
    fn recv(&self, timeout_ms: u64) -> Received {
        let deadline = (timeout_ms != u64::MAX)
            .then(|| Instant::now().checked_add(Duration::from_millis(timeout_ms)))
            .flatten();
        self.progress.receiver.acks.on_receive();
        match self.ready(deadline) {
            // `ready` returns only with events pending.
            Ok(mut pending) => pending
                .hand_out(&self.progress.receiver)
                .map_or(Received::Timeout, Received::Event),
            Err(received) => received,
        }
    }

    fn use_explicit_acks(&self) {
        self.progress.receiver.acks.use_explicit();
    }

    fn ack(&self, seq: u64) {
        self.progress.receiver.acks.ack(seq);
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use abi_stable::std_types::{RString, RVec};
    use eventhost_plugin_api::{BLOCK_INVALID, BLOCK_VALID, EventType};

    /// An event log in memory: the exchange needs only its reads.
    #[derive(Default)]
    struct MemoryLog(Mutex<Vec<Event>>);

    impl History for MemoryLog {
        fn read(&self, from: u64, max: usize) -> Result<Vec<Event>, StoreError> {
            let log = self.0.lock().unwrap();
            let start = (from.max(1) - 1) as usize;
            Ok(log.iter().skip(start).take(max).cloned().collect())
        }
    }

    struct Fixture {
        log: Arc<MemoryLog>,
        publisher: Mutex<Publisher>,
        exchange: Arc<Exchange>,
    }

    fn fixture() -> Fixture {
        let log = Arc::new(MemoryLog::default());
        let (exchange, publisher) = Exchange::new(log.clone(), 0, &Metrics::new());
        Fixture {
            log,
            publisher: Mutex::new(publisher),
            exchange,
        }
    }

    fn block(event_type: EventType, height: u64) -> Event {
        Event {
            event_type,
            seq: 0,
            height,
            block_hash: "h".into(),
            timestamp_ms: 0,
            transactions: RVec::new(),
            rejections: RVec::new(),
        }
    }

    impl Fixture {
        /// Writes the events to the log, then publishes them, as the event log does.
        fn commit(&self, events: Vec<Event>) {
            let mut numbered = Vec::with_capacity(events.len());
            {
                let mut log = self.log.0.lock().unwrap();
                for mut event in events {
                    event.seq = log.len() as u64 + 1;
                    log.push(event.clone());
                    numbered.push(event);
                }
            }
            self.publisher.lock().unwrap().publish(numbered);
        }

        fn publish(&self, event_type: EventType, height: u64) {
            self.commit(vec![block(event_type, height)]);
        }
    }

    fn drain(queue: &Queue) -> Vec<(EventType, u64)> {
        let mut got = Vec::new();
        loop {
            match queue.recv(0) {
                Received::Event(e) => got.push((e.event_type, e.seq)),
                Received::Timeout | Received::Closed => return got,
            }
        }
    }

    #[test]
    fn each_subscriber_gets_its_types_in_order_sharing_one_event() {
        let f = fixture();
        let valid = f.exchange.subscribe("v", BLOCK_VALID.into(), 8, 0);
        let both = f.exchange.subscribe("b", BLOCK_VALID | BLOCK_INVALID, 8, 0);
        f.publish(BLOCK_VALID, 1);
        f.publish(BLOCK_INVALID, 2);
        f.publish(BLOCK_VALID, 2);
        let (Received::Event(a), Received::Event(b)) = (valid.recv(0), both.recv(0)) else {
            panic!("no event");
        };
        assert!(
            std::ptr::eq(&*a, &*b),
            "the event was copied per subscriber"
        );
        assert_eq!(drain(&valid), [(BLOCK_VALID, 3)]);
        assert_eq!(drain(&both), [(BLOCK_INVALID, 2), (BLOCK_VALID, 3)]);
    }

    #[test]
    fn a_full_queue_catches_up_from_the_log_without_gap_or_duplicate() {
        let f = fixture();
        let slow = f.exchange.subscribe("slow", BLOCK_VALID.into(), 4, 0);
        for h in 1..=1000 {
            f.publish(
                if h % 10 == 0 {
                    BLOCK_INVALID
                } else {
                    BLOCK_VALID
                },
                h,
            );
        }
        // Half way through catching up, publishing goes on.
        let mut got: Vec<u64> = (0..450)
            .map(|_| match slow.recv(0) {
                Received::Event(e) => e.seq,
                _ => panic!("queue ended early"),
            })
            .collect();
        for h in 1001..=1100 {
            f.publish(BLOCK_VALID, h);
        }
        got.extend(drain(&slow).into_iter().map(|(_, seq)| seq));
        let expected: Vec<u64> = (1..=1100).filter(|s| s % 10 != 0 || *s > 1000).collect();
        assert_eq!(got, expected);
        assert_eq!(slow.progress().delivered(), 1100);
    }

    #[test]
    fn a_commit_fills_a_queue_as_far_as_it_has_room_and_the_rest_comes_from_the_log() {
        let f = fixture();
        let q = f.exchange.subscribe("small", BLOCK_VALID.into(), 4, 0);
        f.commit((1..=10).map(|h| block(BLOCK_VALID, h)).collect());
        assert_eq!(q.progress().queued(), 4, "the queue holds what fit");
        f.commit(vec![block(BLOCK_VALID, 11)]);
        assert_eq!(q.progress().queued(), 4, "nothing more once behind");
        let got: Vec<u64> = drain(&q).into_iter().map(|(_, seq)| seq).collect();
        assert_eq!(got, (1..=11).collect::<Vec<_>>());
        assert_eq!(q.progress().queued(), 0);
        f.commit(vec![block(BLOCK_VALID, 12)]);
        assert_eq!(q.progress().queued(), 1, "live again");
    }

    #[test]
    fn events_published_are_counted_by_type_a_commit_at_a_time() {
        let log = Arc::new(MemoryLog::default());
        let metrics = Metrics::new();
        let (exchange, publisher) = Exchange::new(log.clone(), 0, &metrics);
        let f = Fixture {
            log,
            publisher: Mutex::new(publisher),
            exchange,
        };
        let with_transactions = |mut event: Event, n: usize| {
            event.transactions = (0..n).map(|i| RString::from(i.to_string())).collect();
            event
        };
        f.commit(vec![
            with_transactions(block(BLOCK_VALID, 1), 2),
            with_transactions(block(BLOCK_INVALID, 2), 1),
            with_transactions(block(BLOCK_VALID, 2), 3),
        ]);
        assert_eq!(
            metrics.head_height.get(),
            2,
            "the commit's last valid block"
        );
        f.commit(vec![block(BLOCK_VALID, 3)]);
        let labels = |t: EventType| vec![("type".to_owned(), t.name().to_owned())];
        let count = |t: EventType| metrics.events_published.get_or_create(&labels(t)).get();
        let transactions =
            |t: EventType| metrics.block_transactions.get_or_create(&labels(t)).get();
        assert_eq!((count(BLOCK_VALID), count(BLOCK_INVALID)), (3, 1));
        assert_eq!(
            (transactions(BLOCK_VALID), transactions(BLOCK_INVALID)),
            (5, 1)
        );
        assert_eq!(metrics.head_height.get(), 3);
        assert_eq!(f.exchange.head(), 4);
    }

    #[test]
    fn recv_many_hands_out_what_recv_would_in_the_same_order() {
        let f = fixture();
        let q = f
            .exchange
            .subscribe("many", BLOCK_VALID | BLOCK_INVALID, 4, 0);
        f.commit((1..=9).map(|h| block(BLOCK_VALID, h)).collect());
        let mut got = Vec::new();
        assert_eq!(
            q.recv_many(Duration::ZERO, 3, &mut got),
            Receipt::Events,
            "from the queue"
        );
        assert_eq!(q.recv_many(Duration::ZERO, 100, &mut got), Receipt::Events);
        assert_eq!(
            q.recv_many(Duration::ZERO, 100, &mut got),
            Receipt::Events,
            "from the log"
        );
        assert_eq!(q.recv_many(Duration::ZERO, 100, &mut got), Receipt::Timeout);
        let seqs: Vec<u64> = got.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=9).collect::<Vec<_>>());
        assert_eq!(q.progress().delivered(), 9);
        assert_eq!(q.progress().count(), 9);
        f.exchange.close();
        assert_eq!(q.recv_many(Duration::ZERO, 100, &mut got), Receipt::Closed);
    }

    #[test]
    fn a_queue_that_overflows_while_being_read_keeps_order_without_duplicates() {
        let f = fixture();
        let q = f.exchange.subscribe("racy", BLOCK_VALID.into(), 4, 0);
        const EVENTS: u64 = 20_000;
        const BATCH: u64 = 500;
        let reader = std::thread::spawn(move || {
            let mut got = Vec::with_capacity(EVENTS as usize);
            while got.len() < EVENTS as usize {
                match q.recv(10_000) {
                    Received::Event(e) => got.push(e.seq),
                    _ => break,
                }
            }
            got
        });
        for start in (1..=EVENTS).step_by(BATCH as usize) {
            f.commit(
                (start..start + BATCH)
                    .map(|height| block(BLOCK_VALID, height))
                    .collect(),
            );
        }
        let got = reader.join().unwrap();
        let expected: Vec<u64> = (1..=EVENTS).collect();
        if got != expected {
            let first = got.iter().zip(&expected).position(|(g, w)| g != w);
            panic!("{} events; first difference at {first:?}", got.len());
        }
    }

    #[test]
    fn close_ends_queues_after_what_was_published() {
        let f = fixture();
        let q = f.exchange.subscribe("p", BLOCK_VALID.into(), 2, 0);
        for h in 1..=5 {
            f.publish(BLOCK_VALID, h);
        }
        f.exchange.close();
        assert_eq!(drain(&q).len(), 5);
        assert!(matches!(q.recv(u64::MAX), Received::Closed));
    }

    #[test]
    fn a_subscriber_resumes_after_its_cursor_then_goes_live() {
        let f = fixture();
        for h in 1..=10 {
            f.publish(BLOCK_VALID, h);
        }
        let q = f.exchange.subscribe("back", BLOCK_VALID.into(), 2, 6);
        f.publish(BLOCK_VALID, 11);
        let got: Vec<u64> = drain(&q).into_iter().map(|(_, seq)| seq).collect();
        assert_eq!(got, [7, 8, 9, 10, 11]);
    }

    #[test]
    fn receiving_finishes_earlier_events_unless_acks_are_explicit() {
        let f = fixture();
        let auto = f.exchange.subscribe("auto", BLOCK_VALID.into(), 8, 0);
        let manual = f.exchange.subscribe("manual", BLOCK_VALID.into(), 8, 0);
        manual.use_explicit_acks();
        for h in 1..=3 {
            f.publish(BLOCK_VALID, h);
        }
        for q in [&auto, &manual] {
            assert!(matches!(q.recv(0), Received::Event(_)));
            assert!(matches!(q.recv(0), Received::Event(_)));
        }
        assert_eq!(auto.progress().finished(), 1);
        assert_eq!(manual.progress().finished(), 0);
        manual.ack(99);
        assert_eq!(
            manual.progress().finished(),
            2,
            "acked past what was delivered"
        );
    }

    #[test]
    fn a_queue_made_after_close_catches_up_then_ends() {
        let f = fixture();
        for h in 1..=3 {
            f.publish(BLOCK_VALID, h);
        }
        f.exchange.close();
        let late = f.exchange.subscribe("late", BLOCK_VALID.into(), 8, 1);
        assert_eq!(drain(&late).len(), 2);
        assert!(matches!(late.recv(u64::MAX), Received::Closed));
    }

    #[test]
    fn a_paused_queue_holds_events_and_an_unsubscribed_one_ends_after_what_it_holds() {
        let f = fixture();
        let q = f.exchange.subscribe("p", BLOCK_VALID.into(), 2, 0);
        q.progress().set_paused(true);
        f.publish(BLOCK_VALID, 1);
        assert!(
            matches!(q.recv(150), Received::Timeout),
            "delivered while paused"
        );
        q.progress().set_paused(false);
        assert!(matches!(q.recv(150), Received::Event(e) if e.seq == 1));
        for h in 2..=10 {
            f.publish(BLOCK_VALID, h);
        }
        // The queue of 2 holds 2 and 3; 4 to 10 wait in the log.
        f.exchange.unsubscribe(&q.progress());
        assert_eq!(drain(&q).iter().map(|e| e.1).collect::<Vec<_>>(), [2, 3]);
        assert!(matches!(q.recv(u64::MAX), Received::Closed));
        f.publish(BLOCK_VALID, 11);
        assert!(f.exchange.lock().is_empty());
    }

    #[test]
    fn an_event_arriving_while_a_receiver_waits_is_held_by_a_pause_made_meanwhile() {
        let f = fixture();
        let q = Arc::new(f.exchange.subscribe("p", BLOCK_VALID.into(), 4, 0));
        let waiting = {
            let q = q.clone();
            std::thread::spawn(move || match q.recv(2_000) {
                Received::Event(e) => Some(e.seq),
                _ => None,
            })
        };
        // The receiver is inside its wait when the pause comes.
        std::thread::sleep(Duration::from_millis(30));
        q.progress().set_paused(true);
        f.publish(BLOCK_VALID, 1);
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(q.progress().delivered(), 0, "delivered after the pause");
        q.progress().set_paused(false);
        assert_eq!(waiting.join().unwrap(), Some(1));
    }

    #[test]
    fn a_dropped_queue_is_forgotten() {
        let f = fixture();
        drop(f.exchange.subscribe("gone", BLOCK_VALID.into(), 1, 0));
        f.publish(BLOCK_VALID, 1);
        assert!(f.exchange.lock().is_empty());
    }
}
