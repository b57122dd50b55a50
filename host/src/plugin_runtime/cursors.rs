//! Plugin cursors: per plugin, the last event it finished, kept in the
//! store so that a restarted plugin (or node) resumes after it.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{RecvTimeoutError, Sender};
use redb::{ReadableTable, TableDefinition};

use super::Plugins;
use super::record::PluginRecord;
use crate::store::seal::{seal_u64, unseal_u64};
use crate::store::{Store, StoreError};

/// plugin name -> the sequence number of the last event it finished.
const CURSORS: TableDefinition<&str, &[u8]> = TableDefinition::new("cursors");

/// How often plugin cursors are written to the store. After a crash a plugin
/// may receive again what it finished in the last interval; within one run
/// it never receives an event twice.
const FLUSH_INTERVAL: Duration = Duration::from_millis(200);

/// The cursors table of a store.
#[derive(Clone)]
pub struct Cursors {
    store: Arc<Store>,
}

impl Cursors {
    /// The cursors in `store`, creating their table if needed.
    pub fn open(store: Arc<Store>) -> Result<Cursors, StoreError> {
        store.write(|txn| {
            txn.open_table(CURSORS)?;
            Ok(())
        })?;
        Ok(Cursors { store })
    }

    /// The cursors of a store opened for reading (`eventhost verify`).
    pub fn existing(store: Arc<Store>) -> Cursors {
        Cursors { store }
    }

    /// The last event the plugin finished, if it ever ran against this store.
    pub fn get(&self, plugin: &str) -> Result<Option<u64>, StoreError> {
        self.store.read(|txn| {
            let table = txn.open_table(CURSORS)?;
            let Some(v) = table.get(plugin)? else {
                return Ok(None);
            };
            let record = || format!("the cursor of plugin `{plugin}`");
            unseal_u64::<&str>("cursors", &plugin, v.value(), record).map(Some)
        })
    }

    /// Every plugin's cursor, by name.
    pub fn all(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.store.read(|txn| {
            let table = txn.open_table(CURSORS)?;
            let mut all = Vec::new();
            for entry in table.iter()? {
                let (k, v) = entry?;
                let plugin = k.value();
                let record = || format!("the cursor of plugin `{plugin}`");
                all.push((
                    plugin.to_owned(),
                    unseal_u64::<&str>("cursors", &plugin, v.value(), record)?,
                ));
            }
            Ok(all)
        })
    }

    /// Records where each plugin got to, in one durable transaction.
    pub fn save(&self, cursors: &[(&str, u64)]) -> Result<(), StoreError> {
        self.store.write(|txn| {
            let mut table = txn.open_table(CURSORS)?;
            for (plugin, seq) in cursors {
                table.insert(
                    *plugin,
                    seal_u64::<&str>("cursors", plugin, *seq).as_slice(),
                )?;
            }
            Ok(())
        })
    }
}

/// Writes plugin cursors to the store while the node runs, and once more
/// at the end.
pub(super) struct CursorFlusher {
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

impl CursorFlusher {
    pub(super) fn start(cursors: Cursors, plugins: Arc<Plugins>) -> std::io::Result<CursorFlusher> {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let thread = std::thread::Builder::new()
            .name("cursors".into())
            .spawn(move || {
                let mut saved: HashMap<String, u64> = HashMap::new();
                loop {
                    let last_round = match stopped.recv_timeout(FLUSH_INTERVAL) {
                        Err(RecvTimeoutError::Timeout) => false,
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => true,
                    };
                    flush(&cursors, &plugins.list(), &mut saved);
                    if last_round {
                        return;
                    }
                }
            })?;
        Ok(CursorFlusher { stop, thread })
    }

    pub(super) fn stop(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}

fn flush(cursors: &Cursors, plugins: &[Arc<PluginRecord>], saved: &mut HashMap<String, u64>) {
    // One snapshot: a cursor that moves while we write is caught next round.
    let now: Vec<(&str, u64)> = plugins
        .iter()
        .map(|p| (p.name(), p.progress().finished()))
        .filter(|(name, at)| saved.get(*name) != Some(at))
        .collect();
    if now.is_empty() {
        return;
    }
    match cursors.save(&now) {
        Ok(()) => {
            for (name, at) in now {
                saved.insert(name.to_owned(), at);
            }
        }
        Err(e) => tracing::error!("cannot record plugin cursors: {e}; retrying"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        {
            let cursors = Cursors::open(Arc::new(Store::open(&path).unwrap())).unwrap();
            assert_eq!(cursors.get("a").unwrap(), None);
            cursors.save(&[("a", 3), ("b", 0)]).unwrap();
            cursors.save(&[("a", 5)]).unwrap();
        }
        let cursors = Cursors::open(Arc::new(Store::open(&path).unwrap())).unwrap();
        assert_eq!(cursors.get("a").unwrap(), Some(5));
        assert_eq!(cursors.get("b").unwrap(), Some(0));
    }
}
