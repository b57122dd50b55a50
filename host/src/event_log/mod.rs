//! The event log: every event a source produces, numbered and durable, and
//! the one door through which events reach the exchange.
//!
//! A source (the ledger, a replay, later an upstream node) holds the one
//! [`EventLog`] of the node and calls [`EventLog::commit`]: the events are
//! numbered and written to the store in one durable transaction (with
//! whatever else the source writes in it, such as a block), and only then
//! handed to the exchange, in order. The exchange's publishing handle lives
//! inside the `EventLog` and nowhere else, and `commit` takes `&mut self`,
//! so "written before published, in order, by one writer" is a property of
//! the types rather than a convention.
//!
//! A source numbers nothing itself, except an edge node's: it follows a
//! ledger node's log and keeps that node's numbers, so that every edge's
//! log is the ledger's, event for event ([`EventLog::commit_numbered_with`]
//! takes them as given and refuses any but the next one).
//!
//! Anyone may read the log through a [`Reader`]: a plugin resuming a
//! client, a catching-up queue, `eventhost events`.

mod retention;

use std::sync::Arc;

use abi_stable::std_types::RVec;
use eventhost_plugin_api::summaries;
use eventhost_plugin_api::{BLOCK_VALID, Event};
use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};

use crate::codec;
use crate::exchange::{Exchange, History, Publisher};
use crate::metrics::Metrics;
use crate::store::seal::{seal, seal_u64, unseal, unseal_u64};
use crate::store::{Store, StoreError, TxnError};

pub use retention::{Pruner, Retention};

/// seq -> the event, as [`codec::encode_event`] writes it (sealed, as every
/// value, see [`crate::store::seal`]).
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// block hash -> the sequence number of its event (BLOCK_VALID or BLOCK_INVALID).
const EVENT_BY_HASH: TableDefinition<&str, &[u8]> = TableDefinition::new("event_by_hash");
/// height -> the sequence number of its BLOCK_VALID event.
const EVENT_BY_HEIGHT: TableDefinition<u64, &[u8]> = TableDefinition::new("event_by_height");
/// seq -> the event without its transactions, and their summaries, as
/// [`codec::encode_summarized`] writes them: what a stream replaying the
/// log reads instead of the whole event (row 5 of docs/benchmarks.md: a
/// block of 50 transactions is some 80 KiB of JSON, its summaries 10 KiB).
/// Written with the event, in the same transaction, where they cost
/// nothing to make: by a source that has parsed the transactions anyway
/// (the ledger). Other sources (a replay, an edge's upstream) would have
/// to parse every transaction on the commit path for them (2.6 µs per
/// one-transaction event of `eventhost replay`: 7.8 → 10.4 µs per event,
/// docs/benchmarks.md Run C), so their events have none; neither have
/// events of stores written before this table, or by a host that did not
/// know it. Reading an event without an entry computes it from the event's
/// transactions: the cost moves to the streams that replay it.
const EVENT_SUMMARIES: TableDefinition<u64, &[u8]> = TableDefinition::new("event_summaries");

/// The node's one writer of events.
pub struct EventLog {
    store: Arc<Store>,
    publisher: Publisher,
    /// The sequence number of the newest event, 0 while the log is empty:
    /// this is the one writer, so it always knows.
    head: u64,
}

/// Why events numbered by an upstream node were not committed.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An event whose number is not the next one of the log.
    #[error(
        "event {got} cannot follow event {head}, the newest of the event log: events are committed in order, each the next one"
    )]
    OutOfOrder { head: u64, got: u64 },
}

/// Who numbers the events of a commit.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Numbering {
    /// The log: each one after the newest.
    Log,
    /// The events carry their numbers (an upstream node's), checked to be
    /// the next ones.
    Given,
}

impl EventLog {
    /// Opens the log in `store` (creating its tables) and the exchange that
    /// publishes it. The exchange is returned for subscribing; publishing
    /// stays with the log.
    pub fn open(
        store: Arc<Store>,
        metrics: &Metrics,
    ) -> Result<(EventLog, Arc<Exchange>), StoreError> {
        store.write(|txn| {
            txn.open_table(EVENTS)?;
            txn.open_table(EVENT_BY_HASH)?;
            txn.open_table(EVENT_BY_HEIGHT)?;
            // Summaries of events that are gone: pruned by a host that did
            // not know the table (after a downgrade), they are not the log's.
            let first = txn
                .open_table(EVENTS)?
                .first()?
                .map_or(u64::MAX, |(k, _)| k.value());
            txn.open_table(EVENT_SUMMARIES)?
                .retain_in(..first, |_, _| false)?;
            Ok(())
        })?;
        let reader = Reader {
            store: store.clone(),
        };
        let head = reader.last_seq()?;
        metrics
            .head_height
            .set(i64::try_from(reader.last_height()?).unwrap_or(i64::MAX));
        let (exchange, publisher) = Exchange::new(Arc::new(reader), head, metrics);
        Ok((
            EventLog {
                store,
                publisher,
                head,
            },
            exchange,
        ))
    }

    /// The sequence number of the newest event, 0 if there is none.
    pub fn head(&self) -> u64 {
        self.head
    }

    /// Numbers `events` after the newest one, writes them durably in one
    /// transaction, then publishes them in order.
    pub fn commit(&mut self, events: Vec<Event>) -> Result<(), StoreError> {
        self.commit_with(events, |_| Ok(()))
    }

    /// Like [`EventLog::commit`], with `also` writing the source's own
    /// records in the same transaction: both become durable, or neither.
    /// The events are published only once the transaction is committed.
    /// No summaries are stored with them (see [`EVENT_SUMMARIES`]): a
    /// source that has them uses [`EventLog::commit_summarized_with`].
    pub fn commit_with<T>(
        &mut self,
        events: Vec<Event>,
        also: impl FnOnce(&WriteTransaction) -> Result<T, TxnError>,
    ) -> Result<T, StoreError> {
        self.write(events, None, Numbering::Log, also)
    }

    /// Like [`EventLog::commit_with`], for a source that has each event's
    /// transactions parsed already: `summaries` are theirs, one per event,
    /// encoded as plugin-api's `summaries` module does, and stored as they
    /// are instead of being read from the transactions' JSON.
    pub fn commit_summarized_with<T>(
        &mut self,
        events: Vec<Event>,
        summaries: Vec<String>,
        also: impl FnOnce(&WriteTransaction) -> Result<T, TxnError>,
    ) -> Result<T, StoreError> {
        assert_eq!(events.len(), summaries.len(), "one summary per event");
        self.write(events, Some(summaries), Numbering::Log, also)
    }

    /// Commits events that carry their sequence numbers, an upstream
    /// node's (an edge node's source), with `also` in the same transaction
    /// as [`EventLog::commit_with`] does. The first must be the next one
    /// after the newest of the log and each one the next after it; in an
    /// empty log the first one starts the numbering (an edge that starts
    /// with a stream whose first events are gone). Anything else is
    /// refused, and nothing is written.
    pub fn commit_numbered_with<T>(
        &mut self,
        events: Vec<Event>,
        also: impl FnOnce(&WriteTransaction) -> Result<T, TxnError>,
    ) -> Result<T, CommitError> {
        let mut head = self.head;
        for event in &events {
            if event.seq == 0 || (head != 0 && event.seq != head + 1) {
                return Err(CommitError::OutOfOrder {
                    head,
                    got: event.seq,
                });
            }
            head = event.seq;
        }
        Ok(self.write(events, None, Numbering::Given, also)?)
    }

    /// Writes `events` (with their `summaries`, if the source has them)
    /// and `also` in one durable transaction, then publishes the events in
    /// order.
    fn write<T>(
        &mut self,
        mut events: Vec<Event>,
        summaries: Option<Vec<String>>,
        numbering: Numbering,
        also: impl FnOnce(&WriteTransaction) -> Result<T, TxnError>,
    ) -> Result<T, StoreError> {
        let (value, head) = self.store.write(|txn| {
            let value = also(txn)?;
            let head = append(txn, &mut events, summaries.as_deref(), numbering)?;
            Ok((value, head))
        })?;
        self.head = head;
        self.publisher.publish(events);
        Ok(value)
    }
}

/// Appends `events` (with their `summaries`, one per event, if given)
/// inside `txn`, numbering them if the log is to, and returns the newest
/// sequence number.
fn append(
    txn: &WriteTransaction,
    events: &mut [Event],
    summaries: Option<&[String]>,
    numbering: Numbering,
) -> Result<u64, TxnError> {
    let mut table = txn.open_table(EVENTS)?;
    let mut by_hash = txn.open_table(EVENT_BY_HASH)?;
    let mut by_height = txn.open_table(EVENT_BY_HEIGHT)?;
    // The summaries table beside the summaries to write in it, if any.
    let mut summarized = match summaries {
        Some(given) => Some((txn.open_table(EVENT_SUMMARIES)?, given)),
        None => None,
    };
    let mut seq = table.last()?.map_or(0, |(k, _)| k.value());
    let mut buf = Vec::new();
    for (i, event) in events.iter_mut().enumerate() {
        if numbering == Numbering::Log {
            event.seq = seq + 1;
        }
        seq = event.seq;
        codec::encode_event(event, &mut buf);
        table.insert(seq, seal::<u64>("events", &seq, &buf).as_slice())?;
        if let Some((table, summaries)) = &mut summarized {
            codec::encode_summarized(event, &summaries[i], &mut buf);
            table.insert(seq, seal::<u64>("event_summaries", &seq, &buf).as_slice())?;
        }
        let hash = event.block_hash.as_str();
        by_hash.insert(
            hash,
            seal_u64::<&str>("event_by_hash", &hash, seq).as_slice(),
        )?;
        if event.event_type == BLOCK_VALID {
            let height = event.height;
            by_height.insert(
                height,
                seal_u64::<u64>("event_by_height", &height, seq).as_slice(),
            )?;
        }
    }
    Ok(seq)
}

/// Reads the event log. Cheap to clone.
#[derive(Clone)]
pub struct Reader {
    store: Arc<Store>,
}

impl Reader {
    /// A reader of the log in `store`, for the commands that read it with
    /// no node running (`eventhost events`).
    pub fn new(store: Arc<Store>) -> Reader {
        Reader { store }
    }

    /// The sequence number of the newest event, 0 if there is none.
    pub fn last_seq(&self) -> Result<u64, StoreError> {
        self.store.read(|txn| {
            let Some(table) = events_table(txn)? else {
                return Ok(0);
            };
            Ok(table.last()?.map_or(0, |(k, _)| k.value()))
        })
    }

    /// The height of the newest BLOCK_VALID event, 0 if there is none.
    pub fn last_height(&self) -> Result<u64, StoreError> {
        self.store.read(|txn| {
            let table = match txn.open_table(EVENT_BY_HEIGHT) {
                Ok(table) => table,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
                Err(e) => return Err(e.into()),
            };
            Ok(table.last()?.map_or(0, |(k, _)| k.value()))
        })
    }

    /// The sequence number of the oldest event still in the log (events
    /// before it were pruned), `None` if there is none.
    pub fn first_seq(&self) -> Result<Option<u64>, StoreError> {
        self.store.read(|txn| {
            let Some(table) = events_table(txn)? else {
                return Ok(None);
            };
            Ok(table.first()?.map(|(k, _)| k.value()))
        })
    }

    /// Up to `max` events with `seq >= from`, in order.
    pub fn read(&self, from: u64, max: usize) -> Result<Vec<Event>, StoreError> {
        self.store.read(|txn| {
            let Some(table) = events_table(txn)? else {
                return Ok(Vec::new());
            };
            let mut events = Vec::new();
            for entry in table.range(from..)?.take(max) {
                let (k, v) = entry?;
                events.push(decode_stored(k.value(), v.value())?);
            }
            Ok(events)
        })
    }

    /// Up to `max` events with `seq >= from`, in order, each without its
    /// transactions and with their summaries (encoded as plugin-api's
    /// `summaries` does): from the summaries table, and for events that
    /// have no entry there (stored before it), from the events themselves.
    pub fn read_summaries(
        &self,
        from: u64,
        max: usize,
    ) -> Result<Vec<(Event, String)>, StoreError> {
        self.store.read(|txn| {
            let Some(events) = events_table(txn)? else {
                return Ok(Vec::new());
            };
            let summarized = match txn.open_table(EVENT_SUMMARIES) {
                Ok(table) => Some(table),
                Err(redb::TableError::TableDoesNotExist(_)) => None,
                Err(e) => return Err(e.into()),
            };
            let mut next = from;
            // The events that have summaries stored, in order.
            let mut stored = match &summarized {
                Some(table) => Some(table.range(next..)?),
                None => None,
            };
            let mut peeked = match &mut stored {
                Some(range) => range.next().transpose()?,
                None => None,
            };
            let mut read = Vec::new();
            while read.len() < max {
                let gap_end = peeked.as_ref().map_or(u64::MAX, |(k, _)| k.value());
                if gap_end > next {
                    // Events before the next stored entry (if any) have
                    // none: read them whole.
                    let before = read.len();
                    for entry in events.range(next..gap_end)?.take(max - read.len()) {
                        let (k, v) = entry?;
                        let event = decode_stored(k.value(), v.value())?;
                        let summaries = summaries::summarize(&event);
                        let header = Event {
                            transactions: RVec::new(),
                            ..event
                        };
                        next = header.seq + 1;
                        read.push((header, summaries));
                    }
                    if read.len() > before {
                        continue;
                    }
                }
                let Some((k, v)) = peeked.take() else { break };
                let seq = k.value();
                let record = || format!("the summaries of event {seq}");
                let bytes = unseal::<u64>("event_summaries", &seq, v.value(), record)?;
                let summarized = codec::decode_summarized(seq, bytes)
                    .map_err(|reason| TxnError::corrupt(record(), reason))?;
                read.push(summarized);
                next = seq + 1;
                if let Some(range) = &mut stored {
                    peeked = range.next().transpose()?;
                }
            }
            Ok(read)
        })
    }

    /// The sequence number of a block's event: `id` is a block hash, or a
    /// height (its BLOCK_VALID event).
    pub fn find_event(&self, id: &str) -> Result<Option<u64>, StoreError> {
        self.store.read(|txn| {
            if let Ok(height) = id.parse::<u64>() {
                let table = txn.open_table(EVENT_BY_HEIGHT)?;
                let Some(v) = table.get(height)? else {
                    return Ok(None);
                };
                let record = || format!("the event of height {height}");
                return unseal_u64::<u64>("event_by_height", &height, v.value(), record).map(Some);
            }
            let table = txn.open_table(EVENT_BY_HASH)?;
            let Some(v) = table.get(id)? else {
                return Ok(None);
            };
            let record = || format!("the event of block {id}");
            unseal_u64::<&str>("event_by_hash", &id, v.value(), record).map(Some)
        })
    }
}

/// An event as the events table holds it, under `seq`.
fn decode_stored(seq: u64, stored: &[u8]) -> Result<Event, TxnError> {
    let record = || format!("event {seq}");
    let bytes = unseal::<u64>("events", &seq, stored, record)?;
    codec::decode_event(seq, bytes).map_err(|reason| TxnError::corrupt(record(), reason))
}

/// The events table, or `None` in a store that never held a log.
fn events_table(
    txn: &ReadTransaction,
) -> Result<Option<redb::ReadOnlyTable<u64, &'static [u8]>>, TxnError> {
    match txn.open_table(EVENTS) {
        Ok(table) => Ok(Some(table)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

impl History for Reader {
    fn read(&self, from: u64, max: usize) -> Result<Vec<Event>, StoreError> {
        Reader::read(self, from, max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi_stable::std_types::{RString, RVec};
    use eventhost_plugin_api::tx::TxSummary;
    use eventhost_plugin_api::{BLOCK_INVALID, Rejection};

    fn event(height: u64, invalid: bool) -> Event {
        Event {
            event_type: if invalid { BLOCK_INVALID } else { BLOCK_VALID },
            seq: 0,
            height,
            block_hash: format!("hash{height}").into(),
            timestamp_ms: 1000 + height,
            transactions: vec![RString::from(format!("{{\"h\":{height}}}"))].into(),
            rejections: if invalid {
                vec![Rejection {
                    transaction_id: "t".into(),
                    reason: "r".into(),
                }]
                .into()
            } else {
                RVec::new()
            },
        }
    }

    fn open(path: &std::path::Path) -> (EventLog, Reader) {
        let store = Arc::new(Store::open(path).unwrap());
        let (log, _) = EventLog::open(store.clone(), &Metrics::new()).unwrap();
        (log, Reader::new(store))
    }

    #[test]
    fn appends_numbers_and_reads_back_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/store.redb");
        let mut batch = vec![event(1, false), event(1, true), event(2, false)];
        {
            let (mut log, reader) = open(&path);
            assert_eq!(reader.last_seq().unwrap(), 0);
            log.commit(batch.clone()).unwrap();
        }
        for (i, e) in batch.iter_mut().enumerate() {
            e.seq = i as u64 + 1;
        }
        let (mut log, reader) = open(&path);
        assert_eq!(reader.last_seq().unwrap(), 3);
        assert_eq!(reader.last_height().unwrap(), 2);
        assert_eq!(reader.read(1, 10).unwrap(), batch);
        assert_eq!(reader.read(2, 1).unwrap(), batch[1..2]);
        log.commit(vec![event(3, false)]).unwrap();
        assert_eq!(reader.read(4, 1).unwrap()[0].seq, 4);
        assert!(reader.read(5, 10).unwrap().is_empty());
        assert_eq!(
            reader.find_event("hash1").unwrap(),
            Some(2),
            "the later event of a hash"
        );
        assert_eq!(reader.find_event("2").unwrap(), Some(3));
        assert_eq!(
            reader.find_event("1").unwrap(),
            Some(1),
            "a height finds its BLOCK_VALID"
        );
        assert_eq!(reader.find_event("nope").unwrap(), None);
    }

    fn numbered(seq: u64, height: u64) -> Event {
        Event {
            seq,
            ..event(height, false)
        }
    }

    #[test]
    fn numbered_events_keep_their_numbers_and_must_each_be_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("s.redb")).unwrap());
        let (mut log, exchange) = EventLog::open(store.clone(), &Metrics::new()).unwrap();
        let reader = Reader::new(store.clone());
        // An empty log starts where its upstream's first event is.
        log.commit_numbered_with(vec![numbered(41, 20), numbered(42, 21)], |_| Ok(()))
            .unwrap();
        assert_eq!((log.head(), exchange.head()), (42, 42));
        assert_eq!(
            reader.read(0, 10).unwrap(),
            [numbered(41, 20), numbered(42, 21)]
        );
        assert_eq!(reader.find_event("21").unwrap(), Some(42));
        for (batch, got) in [
            (vec![numbered(42, 21)], 42),
            (vec![numbered(44, 23)], 44),
            (vec![numbered(43, 22), numbered(45, 24)], 45),
            (vec![numbered(0, 22)], 0),
        ] {
            let refused = log.commit_numbered_with(batch, |_| Ok(())).unwrap_err();
            assert!(
                matches!(refused, CommitError::OutOfOrder { head: 42 | 43, got: g } if g == got),
                "{refused}"
            );
        }
        assert_eq!(
            log.commit_numbered_with(vec![numbered(44, 23)], |_| Ok(()))
                .unwrap_err()
                .to_string(),
            "event 44 cannot follow event 42, the newest of the event log: events are committed in order, each the next one"
        );
        assert_eq!(
            reader.last_seq().unwrap(),
            42,
            "nothing refused was written"
        );
        log.commit_numbered_with(vec![numbered(43, 22)], |_| Ok(()))
            .unwrap();
        drop(log);
        // Reopened, the log knows its head.
        let (mut log, exchange) = EventLog::open(store, &Metrics::new()).unwrap();
        assert_eq!((log.head(), exchange.head()), (43, 43));
        assert!(
            log.commit_numbered_with(vec![numbered(45, 24)], |_| Ok(()))
                .is_err()
        );
    }

    /// A transaction's JSON as the ledger stores it.
    fn tx(id: &str) -> RString {
        format!(r#"{{"id":"{id}","operation":"CREATE","asset":{{"data":null}},"inputs":[{{"owners_before":["k1"]}}],"outputs":[{{"public_keys":["k2"]}}]}}"#).into()
    }

    fn block(height: u64, txs: &[&str]) -> Event {
        Event {
            transactions: txs.iter().map(|id| tx(id)).collect(),
            ..event(height, false)
        }
    }

    fn decoded(read: &[(Event, String)]) -> Vec<(u64, Vec<Result<TxSummary, String>>)> {
        read.iter()
            .map(|(e, s)| {
                assert!(e.transactions.is_empty());
                (e.seq, summaries::decode(s).unwrap())
            })
            .collect()
    }

    #[test]
    fn summaries_are_stored_with_each_event_and_read_without_its_transactions() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, reader) = open(&dir.path().join("s.redb"));
        assert!(reader.read_summaries(1, 10).unwrap().is_empty());
        // Given by the source (the ledger's), stored as given.
        let given = "+1:x6:CREATE1;1:x0;".to_owned();
        log.commit_summarized_with(vec![block(1, &["a"])], vec![given.clone()], |_| Ok(()))
            .unwrap();
        // Read from the transactions otherwise, unreadable ones included.
        let unreadable = Event {
            transactions: vec![tx("b"), RString::from("not json")].into(),
            ..event(2, false)
        };
        log.commit(vec![unreadable, event(2, true)]).unwrap();
        let read = reader.read_summaries(1, 10).unwrap();
        assert_eq!(read[0].1, given);
        let full = reader.read(1, 10).unwrap();
        for ((header, _), event) in read.iter().zip(&full) {
            let whole = Event {
                transactions: RVec::new(),
                ..event.clone()
            };
            assert_eq!(*header, whole);
        }
        let summaries = decoded(&read);
        assert_eq!(summaries[1].1[0], TxSummary::parse(&tx("b")));
        assert!(summaries[1].1[1].as_ref().unwrap_err().contains("expected"));
        assert_eq!(summaries[2].1, [TxSummary::parse(r#"{"h":2}"#)]);
        assert_eq!(decoded(&reader.read_summaries(2, 1).unwrap())[0].0, 2);
        assert!(reader.read_summaries(4, 10).unwrap().is_empty());
    }

    #[test]
    fn events_stored_without_summaries_read_the_same_as_with_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let batch: Vec<Event> = (1..=6).map(|h| block(h, &["a", "b"])).collect();
        let given = batch.iter().map(summaries::summarize).collect();
        let with = {
            let (mut log, reader) = open(&path);
            log.commit_summarized_with(batch.clone(), given, |_| Ok(()))
                .unwrap();
            reader.read_summaries(1, 10).unwrap()
        };
        assert_eq!(stored_summaries(&path), 6);
        // As a store written before the table, or by a host that did not
        // know it: events 2, 3 and 5 have no summaries, and later ones do.
        let store = Arc::new(Store::open(&path).unwrap());
        store
            .write(|txn| {
                let mut table = txn.open_table(EVENT_SUMMARIES)?;
                for seq in [2, 3, 5] {
                    table.remove(seq)?;
                }
                Ok(())
            })
            .unwrap();
        let reader = Reader::new(store.clone());
        assert_eq!(reader.read_summaries(1, 10).unwrap(), with);
        assert_eq!(reader.read_summaries(2, 3).unwrap(), with[1..4]);
        assert_eq!(reader.read_summaries(5, 1).unwrap(), with[4..5]);
        // A store with no table at all.
        store
            .write(|txn| {
                txn.delete_table(EVENT_SUMMARIES)?;
                Ok(())
            })
            .unwrap();
        assert_eq!(reader.read_summaries(1, 10).unwrap(), with);
    }

    /// How many events have summaries stored.
    fn stored_summaries(path: &std::path::Path) -> u64 {
        Store::open(path)
            .unwrap()
            .read(|txn| match txn.open_table(EVENT_SUMMARIES) {
                Ok(table) => Ok(redb::ReadableTableMetadata::len(&table)?),
                Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
                Err(e) => Err(e.into()),
            })
            .unwrap()
    }

    #[test]
    fn events_committed_without_summaries_store_none_and_read_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let batch: Vec<Event> = (1..=4).map(|h| block(h, &["a", "b"])).collect();
        let given: Vec<String> = batch.iter().map(summaries::summarize).collect();
        let (summarized, plain) = (dir.path().join("s.redb"), dir.path().join("p.redb"));
        let with = {
            let (mut log, reader) = open(&summarized);
            log.commit_summarized_with(batch.clone(), given, |_| Ok(()))
                .unwrap();
            reader.read_summaries(1, 10).unwrap()
        };
        let without = {
            let (mut log, reader) = open(&plain);
            log.commit(batch[..2].to_vec()).unwrap();
            log.commit_with(batch[2..].to_vec(), |_| Ok(())).unwrap();
            reader.read_summaries(1, 10).unwrap()
        };
        assert_eq!(stored_summaries(&summarized), 4);
        assert_eq!(stored_summaries(&plain), 0);
        assert_eq!(without, with);
    }

    #[test]
    fn summaries_of_events_pruned_without_them_go_when_the_log_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let (mut log, _) = open(&path);
        let batch: Vec<Event> = (1..=4).map(|h| block(h, &["a"])).collect();
        let given = batch.iter().map(summaries::summarize).collect();
        log.commit_summarized_with(batch, given, |_| Ok(()))
            .unwrap();
        drop(log);
        // Retention of a host that did not know the table.
        let store = Arc::new(Store::open(&path).unwrap());
        store
            .write(|txn| {
                let mut events = txn.open_table(EVENTS)?;
                events.remove(1)?;
                events.remove(2)?;
                Ok(())
            })
            .unwrap();
        let reader = Reader::new(store.clone());
        assert_eq!(reader.read_summaries(1, 1).unwrap()[0].0.seq, 1, "stale");
        let _log = EventLog::open(store, &Metrics::new()).unwrap();
        let seqs: Vec<u64> = reader
            .read_summaries(1, 10)
            .unwrap()
            .iter()
            .map(|(e, _)| e.seq)
            .collect();
        assert_eq!(seqs, [3, 4]);
    }

    #[test]
    fn the_head_height_gauge_follows_valid_blocks_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        {
            let store = Arc::new(Store::open(&path).unwrap());
            let metrics = Metrics::new();
            let (mut log, _) = EventLog::open(store, &metrics).unwrap();
            assert_eq!(metrics.head_height.get(), 0);
            log.commit(vec![event(1, false), event(2, true)]).unwrap();
            assert_eq!(metrics.head_height.get(), 1, "an invalid block is no head");
            log.commit(vec![event(2, false)]).unwrap();
            assert_eq!(metrics.head_height.get(), 2);
            let text = metrics.encode();
            for line in [
                "eventhost_block_transactions_total{type=\"BLOCK_VALID\"} 2",
                "eventhost_block_transactions_total{type=\"BLOCK_INVALID\"} 1",
            ] {
                assert!(text.contains(line), "{text}");
            }
        }
        let metrics = Metrics::new();
        let store = Arc::new(Store::open(&path).unwrap());
        let _log = EventLog::open(store, &metrics).unwrap();
        assert_eq!(metrics.head_height.get(), 2, "read back at start");
    }

    #[test]
    fn events_are_published_only_once_durable() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("s.redb")).unwrap());
        let (mut log, exchange) = EventLog::open(store, &Metrics::new()).unwrap();
        let failed: Result<(), StoreError> = log.commit_with(vec![event(1, false)], |_| {
            Err(TxnError::corrupt("block 1", "refused"))
        });
        assert!(failed.is_err());
        assert_eq!(exchange.head(), 0, "a failed commit published nothing");
        log.commit(vec![event(1, false)]).unwrap();
        assert_eq!(exchange.head(), 1);
    }
}
