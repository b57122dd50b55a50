//! Publishes each event once to every plugin that subscribed to its type.
//!
//! Every plugin has its own bounded in-memory queue holding shared
//! references to the one published event. Publishing never waits: when a
//! plugin's queue is full, the exchange stops filling it and remembers the
//! first event that did not fit. Once the plugin has drained its queue it
//! reads the missed events from the event log, and when it has caught up the
//! exchange fills its queue again. The switch back happens under the publish
//! lock, so there is no gap and no duplicate at the seam. A plugin that never
//! reads costs one full queue of shared references and nothing else.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use abi_stable::std_types::RArc;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, TrySendError};
use eventhost_plugin_api::ffi::{HostQueue, Received};
use eventhost_plugin_api::{Event, EventType, EventTypes, SharedEvent};
use prometheus_client::metrics::counter::Counter;

use crate::metrics::Metrics;
use crate::store::{Store, StoreError};

/// Events read from the log per catch-up step: large enough to amortize a
/// read transaction, small enough to bound the memory of a catching-up plugin.
const CATCH_UP_BATCH: usize = 256;

pub struct Exchange {
    store: Arc<Store>,
    /// The `events_published` counter of each event type, looked up once:
    /// looking it up per event allocated its labels every time, 40% of the
    /// instructions of a publish to 8 plugins (the exchange benchmark, tests/bench).
    published: Vec<(EventType, Counter)>,
    /// The publish lock: held while an event is handed out, and while a
    /// catching-up plugin switches back to its live queue.
    subscribers: Mutex<Vec<Subscriber>>,
    /// The newest published sequence number.
    head: AtomicU64,
    /// Set by `close`: nothing more is published.
    closed: AtomicBool,
}

struct Subscriber {
    plugin: String,
    mask: EventTypes,
    capacity: usize,
    tx: Sender<SharedEvent>,
    progress: Arc<Progress>,
}

/// How far one subscriber got; shared between the exchange and its queue.
#[derive(Default)]
pub struct Progress {
    /// 0 while the subscriber's queue is live; otherwise the first event
    /// that did not fit and must come from the log.
    behind_from: AtomicU64,
    /// The sequence number of the last event handed to the subscriber.
    delivered: AtomicU64,
    /// The sequence number of the last event the subscriber finished.
    finished: AtomicU64,
    /// Whether only explicit acknowledgements finish events.
    explicit_acks: AtomicBool,
    /// Events waiting in the subscriber's in-memory queue.
    queued: AtomicUsize,
    /// Events handed to the subscriber.
    count: AtomicU64,
}

impl Progress {
    /// The sequence number of the last event handed to the subscriber.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Acquire)
    }

    /// The sequence number of the last event the subscriber finished: its cursor.
    pub fn finished(&self) -> u64 {
        self.finished.load(Ordering::Acquire)
    }

    /// How many events were handed to the subscriber.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }

    /// Events waiting in the subscriber's in-memory queue.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    /// Receiving finishes what was received before, unless acks are explicit.
    fn finish_delivered(&self) {
        if !self.explicit_acks.load(Ordering::Acquire) {
            self.finished.fetch_max(self.delivered(), Ordering::AcqRel);
        }
    }
}

impl Exchange {
    /// An exchange whose history is the store's event log.
    pub fn new(store: Arc<Store>, metrics: Arc<Metrics>) -> Result<Arc<Exchange>, StoreError> {
        let head = store.last_seq()?;
        let published = EventType::ALL
            .into_iter()
            .map(|t| {
                let labels = vec![("type".to_owned(), t.name().to_owned())];
                (t, metrics.events_published.get_or_create(&labels).clone())
            })
            .collect();
        Ok(Arc::new(Exchange {
            store,
            published,
            subscribers: Mutex::new(Vec::new()),
            head: AtomicU64::new(head),
            closed: AtomicBool::new(false),
        }))
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
        let head = self.head();
        if from > head {
            return Ok(Vec::new());
        }
        let wanted = usize::try_from(head - from + 1).unwrap_or(usize::MAX);
        let mut events = self.store.read(from, max.min(wanted))?;
        events.retain(|e| e.seq <= head);
        Ok(events)
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
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        let progress = Arc::new(Progress::default());
        let mut subscribers = self.lock();
        let after = after.min(self.head.load(Ordering::Acquire));
        progress.delivered.store(after, Ordering::Release);
        progress.finished.store(after, Ordering::Release);
        if after < self.head.load(Ordering::Acquire) {
            progress.behind_from.store(after + 1, Ordering::Release);
        }
        if !self.closed.load(Ordering::Acquire) {
            subscribers.push(Subscriber {
                plugin: plugin.to_owned(),
                mask,
                capacity,
                tx,
                progress: progress.clone(),
            });
        }
        Queue {
            exchange: self.clone(),
            rx,
            mask,
            progress,
            backlog: Mutex::new(VecDeque::new()),
        }
    }

    /// Hands an event, already written to the event log, to its subscribers.
    pub fn publish(&self, event: Event) {
        let event_type = event.event_type;
        let seq = event.seq;
        if let Some((_, counter)) = self.published.iter().find(|(t, _)| *t == event_type) {
            counter.inc();
        }
        let event = RArc::new(event);
        let mut subscribers = self.lock();
        debug_assert!(
            seq > self.head.load(Ordering::Relaxed),
            "events published out of order"
        );
        self.head.store(seq, Ordering::Release);
        subscribers.retain(|s| {
            if !s.mask.contains(event_type) || s.progress.behind_from.load(Ordering::Acquire) != 0 {
                return true;
            }
            match s.tx.try_send(event.clone()) {
                Ok(()) => {
                    s.progress.queued.fetch_add(1, Ordering::AcqRel);
                    true
                }
                Err(TrySendError::Full(_)) => {
                    s.progress.behind_from.store(seq, Ordering::Release);
                    tracing::warn!(
                        plugin = %s.plugin,
                        "plugin fell behind: its queue of {} events is full at event {seq}; it will catch up from the event log",
                        s.capacity
                    );
                    true
                }
                // The plugin's run returned and dropped its queue.
                Err(TrySendError::Disconnected(_)) => false,
            }
        });
    }

    /// Ends every queue once the subscriber has received what was published.
    pub fn close(&self) {
        let mut subscribers = self.lock();
        self.closed.store(true, Ordering::Release);
        subscribers.clear();
    }
}

/// One plugin's queue, handed to the plugin as its `HostQueue`.
pub struct Queue {
    exchange: Arc<Exchange>,
    rx: Receiver<SharedEvent>,
    mask: EventTypes,
    progress: Arc<Progress>,
    /// Events read from the log while catching up. Only the plugin's thread
    /// receives, so the lock is never contended.
    backlog: Mutex<VecDeque<SharedEvent>>,
}

impl Queue {
    /// How far the plugin got, for status and shutdown.
    pub fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    fn deliver_queued(&self, event: SharedEvent) -> Received {
        self.progress.queued.fetch_sub(1, Ordering::AcqRel);
        self.deliver(event)
    }

    fn deliver(&self, event: SharedEvent) -> Received {
        self.progress.delivered.store(event.seq, Ordering::Release);
        self.progress.count.fetch_add(1, Ordering::AcqRel);
        Received::Event(event)
    }

    /// Reads the next batch of missed events from the log; when that reaches
    /// the head, switches the subscriber back to its live queue.
    fn catch_up(&self, from: u64) {
        let events = match self.exchange.read_published(from, CATCH_UP_BATCH) {
            Ok(events) => events,
            Err(e) => {
                tracing::error!("cannot read missed events from the event log: {e}; retrying");
                std::thread::sleep(Duration::from_millis(100));
                return;
            }
        };
        let mut next = from;
        {
            let mut backlog = self.backlog.lock().unwrap_or_else(|e| e.into_inner());
            for event in events {
                next = event.seq + 1;
                if self.mask.contains(event.event_type) {
                    backlog.push_back(RArc::new(event));
                }
            }
        }
        let _publishing = self.exchange.lock();
        let caught_up = next > self.exchange.head.load(Ordering::Acquire);
        let resume_at = if caught_up { 0 } else { next };
        self.progress
            .behind_from
            .store(resume_at, Ordering::Release);
    }

    fn next(&self, deadline: Option<Instant>) -> Received {
        self.progress.finish_delivered();
        loop {
            let backlogged = self
                .backlog
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop_front();
            if let Some(event) = backlogged {
                return self.deliver(event);
            }
            // Read before looking at the live queue: once the publisher has
            // marked the subscriber behind it sends nothing more, so an
            // empty queue then really holds nothing older than the mark.
            // (Looked at the other way round, the queue could refill and
            // overflow in between, and missed events would overtake it.)
            let behind_from = self.progress.behind_from.load(Ordering::Acquire);
            match self.rx.try_recv() {
                Ok(event) => return self.deliver_queued(event),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => {}
            }
            if behind_from != 0 {
                self.catch_up(behind_from);
                continue;
            }
            let received = match deadline {
                Some(deadline) => self.rx.recv_deadline(deadline),
                None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match received {
                Ok(event) => return self.deliver_queued(event),
                Err(RecvTimeoutError::Timeout) => return Received::Timeout,
                Err(RecvTimeoutError::Disconnected) => {
                    if self.progress.behind_from.load(Ordering::Acquire) == 0 {
                        return Received::Closed;
                    }
                }
            }
        }
    }
}

impl HostQueue for Queue {
    fn recv(&self, timeout_ms: u64) -> Received {
        let deadline = (timeout_ms != u64::MAX)
            .then(|| Instant::now().checked_add(Duration::from_millis(timeout_ms)))
            .flatten();
        self.next(deadline)
    }

    fn use_explicit_acks(&self) {
        self.progress.explicit_acks.store(true, Ordering::Release);
    }

    fn ack(&self, seq: u64) {
        // A plugin cannot finish what it was never given.
        let seq = seq.min(self.progress.delivered());
        self.progress.finished.fetch_max(seq, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi_stable::std_types::RVec;
    use eventhost_plugin_api::{BLOCK_INVALID, BLOCK_VALID, EventType};

    struct Fixture {
        _dir: tempfile::TempDir,
        store: Arc<Store>,
        exchange: Arc<Exchange>,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("s.redb")).unwrap());
        let exchange = Exchange::new(store.clone(), Arc::new(Metrics::new())).unwrap();
        Fixture {
            _dir: dir,
            store,
            exchange,
        }
    }

    impl Fixture {
        fn publish(&self, event_type: EventType, height: u64) {
            let mut batch = [Event {
                event_type,
                seq: 0,
                height,
                block_hash: "h".into(),
                timestamp_ms: 0,
                transactions: RVec::new(),
                rejections: RVec::new(),
            }];
            self.store.append(&mut batch).unwrap();
            let [event] = batch;
            self.exchange.publish(event);
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
        // Batched appends keep the log's writes from being the whole test.
        for start in (1..=EVENTS).step_by(BATCH as usize) {
            let mut batch: Vec<Event> = (start..start + BATCH)
                .map(|height| Event {
                    event_type: BLOCK_VALID,
                    seq: 0,
                    height,
                    block_hash: "h".into(),
                    timestamp_ms: 0,
                    transactions: RVec::new(),
                    rejections: RVec::new(),
                })
                .collect();
            f.store.append(&mut batch).unwrap();
            for event in batch {
                f.exchange.publish(event);
            }
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
    fn a_dropped_queue_is_forgotten() {
        let f = fixture();
        drop(f.exchange.subscribe("gone", BLOCK_VALID.into(), 1, 0));
        f.publish(BLOCK_VALID, 1);
        assert!(f.exchange.lock().is_empty());
    }
}
