//! Where an edge is in the stream it follows: the stream sequence number
//! of the message that carried its newest event, per stream name. It is
//! written in the same transaction as the events (so it is never ahead of
//! or behind the log), and it is what the edge restarts its consumer from
//! when the consumer's own position cannot be trusted (see `consumer`).

use std::sync::Arc;

use redb::{TableDefinition, WriteTransaction};

use crate::store::seal::{seal_u64, unseal_u64};
use crate::store::{Store, StoreError, TxnError};

/// stream name -> the stream sequence number of the edge's newest event.
const POSITIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("upstream_positions");

/// The stream sequence number of the message of the newest event this
/// edge committed from `stream`; `None` if it never committed one from it.
pub fn read(store: &Arc<Store>, stream: &str) -> Result<Option<u64>, StoreError> {
    store.read(|txn| {
        let table = match txn.open_table(POSITIONS) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let Some(v) = table.get(stream)? else {
            return Ok(None);
        };
        let record = || format!("the position in stream `{stream}`");
        unseal_u64::<&str>("upstream_positions", &stream, v.value(), record).map(Some)
    })
}

/// Whether `store` is an edge node's: it committed events from a stream.
/// Such a store holds the ledger's events and not its blocks, and its log
/// starts where the edge started following (`eventhost verify` checks it
/// as such).
pub fn is_edge_store(store: &Store) -> Result<bool, StoreError> {
    store.read(|txn| match txn.open_table(POSITIONS) {
        Ok(_) => Ok(true),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(false),
        Err(e) => Err(e.into()),
    })
}

/// Records, inside the transaction that commits its event, that the
/// newest event came from stream sequence `stream_seq` of `stream`.
pub fn write(txn: &WriteTransaction, stream: &str, stream_seq: u64) -> Result<(), TxnError> {
    let mut table = txn.open_table(POSITIONS)?;
    table.insert(
        stream,
        seal_u64::<&str>("upstream_positions", &stream, stream_seq).as_slice(),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_is_kept_per_stream() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("s.redb")).unwrap());
        assert_eq!(read(&store, "A").unwrap(), None);
        store.write(|txn| write(txn, "A", 7)).unwrap();
        store.write(|txn| write(txn, "A", 9)).unwrap();
        store.write(|txn| write(txn, "B", 3)).unwrap();
        assert_eq!(read(&store, "A").unwrap(), Some(9));
        assert_eq!(read(&store, "B").unwrap(), Some(3));
        assert_eq!(read(&store, "C").unwrap(), None);
    }
}
