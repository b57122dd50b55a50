//! Durable state in one redb file under the data directory.
//!
//! It holds the event log, every published event under its sequence number,
//! written before any plugin sees it, so a plugin that falls behind (or a
//! later reader) gets every event back in order; each plugin's cursor, the
//! last event it finished, so a restarted plugin resumes after it; and the
//! ledger's chain (see [`chain`]), written in the same transaction as the
//! events a block produces.

pub mod chain;

use std::path::{Path, PathBuf};

use eventhost_plugin_api::{BLOCK_VALID, Event};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::codec;

/// seq -> the event, as [`codec::encode_event`] writes it.
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// block hash -> the sequence number of its event (BLOCK_VALID or BLOCK_INVALID).
const EVENT_BY_HASH: TableDefinition<&str, u64> = TableDefinition::new("event_by_hash");
/// height -> the sequence number of its BLOCK_VALID event.
const EVENT_BY_HEIGHT: TableDefinition<u64, u64> = TableDefinition::new("event_by_height");
/// plugin name -> the sequence number of the last event it finished.
const CURSORS: TableDefinition<&str, u64> = TableDefinition::new("cursors");

/// The memory the store keeps of its file unless told otherwise
/// (`[host] store_cache_mb`).
pub const DEFAULT_CACHE_BYTES: usize = 128 << 20;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {path}: {source}")]
    Db {
        path: PathBuf,
        #[source]
        source: redb::Error,
    },
    #[error("store {path}: event {seq} is unreadable: {reason}")]
    Corrupt {
        path: PathBuf,
        seq: u64,
        reason: String,
    },
}

pub struct Store {
    db: Database,
    path: PathBuf,
}

impl Store {
    pub(crate) fn db(&self) -> &Database {
        &self.db
    }
}

impl Store {
    /// Opens the store file, creating it (and its directory) if needed.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// Opens the store keeping at most `cache_bytes` of its file in memory.
    /// redb's own default is 1 GiB, which a node serving a long replay
    /// from the log filled (benchmark row 5): the kernel's page cache
    /// holds the file anyway, and is shared and reclaimable.
    pub fn open_with_cache(path: &Path, cache_bytes: usize) -> Result<Store, StoreError> {
        let db_err = |source: redb::Error| StoreError::Db {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| db_err(redb::Error::Io(e)))?;
        }
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(path)
            .map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => db_err(redb::Error::Io(std::io::Error::other(
                "it is in use by another process (is an eventhost running on this data directory?)",
            ))),
            other => db_err(other.into()),
        })?;
        // Create the tables up front so readers never meet a missing table.
        let txn = db.begin_write().map_err(|e| db_err(e.into()))?;
        txn.open_table(EVENTS).map_err(|e| db_err(e.into()))?;
        txn.open_table(CURSORS).map_err(|e| db_err(e.into()))?;
        txn.open_table(EVENT_BY_HASH)
            .map_err(|e| db_err(e.into()))?;
        txn.open_table(EVENT_BY_HEIGHT)
            .map_err(|e| db_err(e.into()))?;
        chain::create_tables(&txn).map_err(db_err)?;
        txn.commit().map_err(|e| db_err(e.into()))?;
        Ok(Store {
            db,
            path: path.to_owned(),
        })
    }

    pub(crate) fn err(&self, source: impl Into<redb::Error>) -> StoreError {
        StoreError::Db {
            path: self.path.clone(),
            source: source.into(),
        }
    }

    /// The sequence number of the newest event, 0 if there is none.
    pub fn last_seq(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = txn.open_table(EVENTS).map_err(|e| self.err(e))?;
        let last = table.last().map_err(|e| self.err(e))?;
        Ok(last.map_or(0, |(k, _)| k.value()))
    }

    /// Numbers the events after the newest one and writes them durably in
    /// one transaction; on return their `seq` fields are set.
    pub fn append(&self, events: &mut [Event]) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        append_events(&txn, events).map_err(|e| self.err(e))?;
        txn.commit().map_err(|e| self.err(e))
    }

    /// Up to `max` events with `seq >= from`, in order.
    pub fn read(&self, from: u64, max: usize) -> Result<Vec<Event>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = txn.open_table(EVENTS).map_err(|e| self.err(e))?;
        let mut events = Vec::new();
        for entry in table.range(from..).map_err(|e| self.err(e))?.take(max) {
            let (k, v) = entry.map_err(|e| self.err(e))?;
            let seq = k.value();
            let event =
                codec::decode_event(seq, v.value()).map_err(|reason| StoreError::Corrupt {
                    path: self.path.clone(),
                    seq,
                    reason,
                })?;
            events.push(event);
        }
        Ok(events)
    }
}

impl Store {
    /// The sequence number of a block's event: `id` is a block hash, or a
    /// height (its BLOCK_VALID event).
    pub fn find_event(&self, id: &str) -> Result<Option<u64>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        if let Ok(height) = id.parse::<u64>() {
            let table = txn.open_table(EVENT_BY_HEIGHT).map_err(|e| self.err(e))?;
            let found = table.get(height).map_err(|e| self.err(e))?;
            return Ok(found.map(|v| v.value()));
        }
        let table = txn.open_table(EVENT_BY_HASH).map_err(|e| self.err(e))?;
        let found = table.get(id).map_err(|e| self.err(e))?;
        Ok(found.map(|v| v.value()))
    }

    /// The last event the plugin finished, if it ever ran against this store.
    pub fn cursor(&self, plugin: &str) -> Result<Option<u64>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = txn.open_table(CURSORS).map_err(|e| self.err(e))?;
        let value = table.get(plugin).map_err(|e| self.err(e))?;
        Ok(value.map(|v| v.value()))
    }

    /// Records where each plugin got to, in one durable transaction.
    pub fn save_cursors(&self, cursors: &[(&str, u64)]) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut table = txn.open_table(CURSORS).map_err(|e| self.err(e))?;
            for (plugin, seq) in cursors {
                table.insert(*plugin, *seq).map_err(|e| self.err(e))?;
            }
        }
        txn.commit().map_err(|e| self.err(e))
    }
}

/// Appends `events` to the log inside `txn`, numbering them.
pub(crate) fn append_events(
    txn: &redb::WriteTransaction,
    events: &mut [Event],
) -> Result<(), redb::Error> {
    let mut table = txn.open_table(EVENTS)?;
    let mut by_hash = txn.open_table(EVENT_BY_HASH)?;
    let mut by_height = txn.open_table(EVENT_BY_HEIGHT)?;
    let mut seq = table.last()?.map_or(0, |(k, _)| k.value());
    let mut buf = Vec::new();
    for event in events.iter_mut() {
        seq += 1;
        event.seq = seq;
        codec::encode_event(event, &mut buf);
        table.insert(seq, buf.as_slice())?;
        by_hash.insert(event.block_hash.as_str(), seq)?;
        if event.event_type == BLOCK_VALID {
            by_height.insert(event.height, seq)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi_stable::std_types::{RString, RVec};
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

    #[test]
    fn appends_numbers_and_reads_back_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/store.redb");
        let mut batch = vec![event(1, false), event(1, true), event(2, false)];
        {
            let store = Store::open(&path).unwrap();
            assert_eq!(store.last_seq().unwrap(), 0);
            store.append(&mut batch).unwrap();
            assert_eq!(batch.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.last_seq().unwrap(), 3);
        assert_eq!(store.read(1, 10).unwrap(), batch);
        assert_eq!(store.read(2, 1).unwrap(), batch[1..2]);
        let mut more = vec![event(3, false)];
        store.append(&mut more).unwrap();
        assert_eq!(more[0].seq, 4);
        assert!(store.read(5, 10).unwrap().is_empty());
        assert_eq!(
            store.find_event("hash1").unwrap(),
            Some(2),
            "the later event of a hash"
        );
        assert_eq!(store.find_event("2").unwrap(), Some(3));
        assert_eq!(
            store.find_event("1").unwrap(),
            Some(1),
            "a height finds its BLOCK_VALID"
        );
        assert_eq!(store.find_event("nope").unwrap(), None);
    }

    #[test]
    fn cursors_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        {
            let store = Store::open(&path).unwrap();
            assert_eq!(store.cursor("a").unwrap(), None);
            store.save_cursors(&[("a", 3), ("b", 0)]).unwrap();
            store.save_cursors(&[("a", 5)]).unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.cursor("a").unwrap(), Some(5));
        assert_eq!(store.cursor("b").unwrap(), Some(0));
    }
}
