//! Retention: the event log keeps every event unless told otherwise; with
//! `[host.event_log_retention]` it drops events older than an age and/or
//! beyond a size, in the background, a batch per write transaction so that
//! commits are never held up for long, and never an event a required
//! plugin has not finished. The ledger's blocks and transactions are never
//! pruned: only the log of events.
//!
//! Measured before retention existed: the replay benchmark's log held
//! 3.1 GiB for 1.5 M transactions, beside the blocks themselves.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{RecvTimeoutError, Sender};
use redb::{ReadableTable, ReadableTableMetadata};

use super::{EVENT_BY_HASH, EVENT_BY_HEIGHT, EVENT_SUMMARIES, EVENTS, Reader};
use crate::codec;
use crate::metrics::Metrics;
use crate::store::seal::{unseal, unseal_u64};
use crate::store::{Store, StoreError, TxnError};

/// Events deleted per write transaction: short enough that a commit
/// waiting behind it is not held up for long.
const BATCH: u64 = 1_000;

/// How much of the event log to keep.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Retention {
    /// Drop events whose block is older than this.
    pub max_age: Option<Duration>,
    /// Drop the oldest events while the log's stored bytes exceed this.
    pub max_bytes: Option<u64>,
    /// How often to look.
    pub check_interval: Duration,
}

impl Retention {
    /// Whether anything is ever pruned.
    pub fn prunes(&self) -> bool {
        self.max_age.is_some() || self.max_bytes.is_some()
    }
}

/// Prunes the event log in the background.
pub struct Pruner {
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

impl Pruner {
    /// Starts pruning the log in `store` by `retention`, never past
    /// `protected()`: the last event every required plugin has finished.
    pub fn start(
        store: Arc<Store>,
        retention: Retention,
        protected: impl Fn() -> u64 + Send + 'static,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Option<Pruner>> {
        if !retention.prunes() {
            return Ok(None);
        }
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let thread = std::thread::Builder::new()
            .name("event log retention".into())
            .spawn(move || {
                let log = Reader::new(store.clone());
                loop {
                    match stopped.recv_timeout(retention.check_interval) {
                        Err(RecvTimeoutError::Timeout) => {}
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                    }
                    if let Err(e) = prune(&store, &log, &retention, protected(), &metrics) {
                        tracing::error!("cannot prune the event log: {e}; trying again later");
                    }
                }
            })?;
        Ok(Some(Pruner { stop, thread }))
    }

    pub fn stop(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}

/// One pass: finds the first event to keep, and drops those before it.
fn prune(
    store: &Store,
    log: &Reader,
    retention: &Retention,
    protected: u64,
    metrics: &Metrics,
) -> Result<(), StoreError> {
    let (Some(first), last) = (log.first_seq()?, log.last_seq()?) else {
        return Ok(());
    };
    let mut keep_from = first;
    if let Some(max_age) = retention.max_age {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let oldest_ms = now.saturating_sub(max_age.as_millis() as u64);
        keep_from = keep_from.max(first_at_or_after(log, first, last, oldest_ms)?);
    }
    if let Some(max_bytes) = retention.max_bytes {
        let stored = log_bytes(store)?;
        if stored > max_bytes {
            let count = last - first + 1;
            let per_event = stored.div_ceil(count).max(1);
            let over = (stored - max_bytes).div_ceil(per_event);
            keep_from = keep_from.max(first + over);
        }
    }
    // The newest event always stays: the log numbers the next one after it.
    let keep_from = keep_from.min(last).min(protected.saturating_add(1));
    if keep_from <= first {
        return Ok(());
    }
    let mut from = first;
    while from < keep_from {
        let to = (from + BATCH).min(keep_from);
        store.write(|txn| drop_range(txn, from, to))?;
        from = to;
    }
    let pruned = keep_from - first;
    metrics.events_pruned.inc_by(pruned);
    tracing::info!(
        "event log retention: dropped events {first} to {} ({pruned} events); the log now starts at event {keep_from}",
        keep_from - 1
    );
    Ok(())
}

/// The first event in `first..=last` whose block is at or after `ms`
/// (timestamps grow with the sequence numbers), or `last + 1`.
fn first_at_or_after(log: &Reader, first: u64, last: u64, ms: u64) -> Result<u64, StoreError> {
    let (mut lo, mut hi) = (first, last + 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let at = log
            .read(mid, 1)?
            .first()
            .map_or(u64::MAX, |e| e.timestamp_ms);
        if at >= ms {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Ok(lo)
}

/// The bytes the log's events and their summaries take.
fn log_bytes(store: &Store) -> Result<u64, StoreError> {
    store.read(|txn| {
        let events = txn.open_table(EVENTS)?.stats()?.stored_bytes();
        let summaries = match txn.open_table(EVENT_SUMMARIES) {
            Ok(table) => table.stats()?.stored_bytes(),
            Err(redb::TableError::TableDoesNotExist(_)) => 0,
            Err(e) => return Err(e.into()),
        };
        Ok(events + summaries)
    })
}

/// Drops the events `from..to`, their summaries and their index entries.
fn drop_range(txn: &redb::WriteTransaction, from: u64, to: u64) -> Result<(), TxnError> {
    let mut events = txn.open_table(EVENTS)?;
    let mut summaries = txn.open_table(EVENT_SUMMARIES)?;
    let mut by_hash = txn.open_table(EVENT_BY_HASH)?;
    let mut by_height = txn.open_table(EVENT_BY_HEIGHT)?;
    let mut dropped = Vec::new();
    for entry in events.range(from..to)? {
        let (k, v) = entry?;
        let seq = k.value();
        let record = || format!("event {seq}");
        let bytes = unseal::<u64>("events", &seq, v.value(), record)?;
        let event = codec::decode_event(seq, bytes).map_err(|e| TxnError::corrupt(record(), e))?;
        dropped.push((seq, event.block_hash.to_string(), event.height));
    }
    for (seq, hash, height) in dropped {
        events.remove(seq)?;
        summaries.remove(seq)?;
        // An index entry goes only if it still points at this event (a
        // later event of the same block or height replaced it otherwise).
        let hash = hash.as_str();
        let points_here = match by_hash.get(hash)? {
            Some(v) => unseal_u64::<&str>("event_by_hash", &hash, v.value(), String::new)? == seq,
            None => false,
        };
        if points_here {
            by_hash.remove(hash)?;
        }
        let points_here = match by_height.get(height)? {
            Some(v) => {
                unseal_u64::<u64>("event_by_height", &height, v.value(), String::new)? == seq
            }
            None => false,
        };
        if points_here {
            by_height.remove(height)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_log::EventLog;
    use abi_stable::std_types::RString;
    use eventhost_plugin_api::{BLOCK_VALID, Event, summaries};

    /// An event of about 2 KiB at `height`.
    fn event(height: u64) -> Event {
        Event {
            event_type: BLOCK_VALID,
            seq: 0,
            height,
            block_hash: format!("hash{height}").into(),
            timestamp_ms: 1000 + height,
            transactions: vec![RString::from(format!(
                "{{\"h\":{height},\"pad\":\"{}\"}}",
                "x".repeat(2048)
            ))]
            .into(),
            rejections: Default::default(),
        }
    }

    fn stored_bytes(store: &Store) -> u64 {
        log_bytes(store).unwrap()
    }

    #[test]
    fn a_log_over_its_size_drops_its_oldest_events_but_never_past_the_protected_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("s.redb")).unwrap());
        let metrics = Metrics::new();
        let (mut log, _) = EventLog::open(store.clone(), &metrics).unwrap();
        // With their summaries, as the ledger commits them.
        let events: Vec<Event> = (1..=200).map(event).collect();
        let summaries = events.iter().map(summaries::summarize).collect();
        log.commit_summarized_with(events, summaries, |_| Ok(()))
            .unwrap();
        let reader = Reader::new(store.clone());
        let full = stored_bytes(&store);
        let retention = Retention {
            max_age: None,
            max_bytes: Some(full / 4),
            check_interval: Duration::from_secs(1),
        };

        // A required plugin has finished event 100 only: nothing after it goes.
        prune(&store, &reader, &retention, 100, &metrics).unwrap();
        assert_eq!(reader.first_seq().unwrap(), Some(101));
        assert_eq!(metrics.events_pruned.get(), 100);

        // Once it has finished everything, the log shrinks to its bound.
        prune(&store, &reader, &retention, 200, &metrics).unwrap();
        let first = reader.first_seq().unwrap().unwrap();
        assert!((140..=160).contains(&first), "the log starts at {first}");
        assert!(stored_bytes(&store) <= full / 4 + 4096, "over the bound");
        assert_eq!(reader.last_seq().unwrap(), 200, "the newest stays");
        assert_eq!(reader.read(first, 1).unwrap()[0].height, first);
        // The dropped events' index entries went with them.
        assert_eq!(reader.find_event("hash1").unwrap(), None);
        assert_eq!(reader.find_event("hash200").unwrap(), Some(200));
        // And their summaries: reading from the start finds the first kept.
        assert_eq!(reader.read_summaries(1, 1).unwrap()[0].0.seq, first);
        let left = store
            .read(|txn| Ok(txn.open_table(EVENT_SUMMARIES)?.len()?))
            .unwrap();
        assert_eq!(left, 200 - (first - 1), "summaries of dropped events");
        assert_eq!(metrics.events_pruned.get(), first - 1);
    }
}
