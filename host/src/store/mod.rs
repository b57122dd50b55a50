//! Durable state in one redb file under the data directory.
//!
//! The store is the file and its transactions, nothing more: the tables in
//! it belong to their users, who define and create them: the event log
//! ([`crate::event_log`]), the plugins' cursors
//! ([`crate::plugin_runtime::cursors`]) and the ledger's chain
//! ([`crate::sources::ledger::chain_store`]). One write transaction can span
//! several users' tables, which is how a block and its events become durable
//! together. Every value is sealed with a checksum ([`seal`]).
//!
//! The store is where the node meets its disk, so it is where faults are
//! contained: a panic inside the storage engine is caught here and becomes
//! an error naming the file; after an I/O error (a full disk), redb refuses
//! every later write until the database is reopened, so the next use
//! reopens it, and the node recovers by itself once the disk does.

pub mod seal;

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Once, RwLock, RwLockReadGuard};

use redb::{
    Database, ReadOnlyDatabase, ReadTransaction, ReadableDatabase, TableDefinition,
    WriteTransaction,
};

/// The memory the store keeps of its file unless told otherwise
/// (`[host] store_cache_mb`).
pub const DEFAULT_CACHE_BYTES: usize = 128 << 20;

/// File name of the store inside the data directory.
pub const STORE_FILE: &str = "eventhost.redb";

/// The store's own records: "format" -> [`FORMAT`].
const STORE_META: TableDefinition<&str, &[u8]> = TableDefinition::new("store");

/// The layout of the tables. 2: every value sealed with a checksum.
const FORMAT: u64 = 2;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {path}: {source}")]
    Db {
        path: PathBuf,
        #[source]
        source: redb::Error,
    },
    #[error("store {path}: {record} is unreadable: {reason}")]
    Corrupt {
        path: PathBuf,
        /// Which record, e.g. `event 12`.
        record: String,
        reason: String,
    },
    #[error(
        "store {path}: the storage engine hit an internal error ({message}); the file may be damaged (`eventhost verify` checks it)"
    )]
    Panicked { path: PathBuf, message: String },
    #[error("store {path}: {problem}")]
    Unusable { path: PathBuf, problem: String },
}

impl StoreError {
    /// Whether the file itself is damaged (as opposed to the disk refusing
    /// a write for now).
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            StoreError::Corrupt { .. }
                | StoreError::Db {
                    source: redb::Error::Corrupted(_),
                    ..
                }
        )
    }
}

/// What can go wrong inside a transaction, before the store names its file.
/// Every redb error converts into it, so transaction code uses `?`.
#[derive(Debug)]
pub enum TxnError {
    Db(redb::Error),
    Corrupt { record: String, reason: String },
}

impl TxnError {
    /// A record that cannot be decoded: `record` names it (`event 12`).
    pub fn corrupt(record: impl Into<String>, reason: impl ToString) -> TxnError {
        TxnError::Corrupt {
            record: record.into(),
            reason: reason.to_string(),
        }
    }
}

macro_rules! from_redb {
    ($($error:ty),*) => {$(
        impl From<$error> for TxnError {
            fn from(e: $error) -> Self {
                TxnError::Db(e.into())
            }
        }
    )*};
}

from_redb!(
    redb::Error,
    redb::TableError,
    redb::StorageError,
    redb::TransactionError,
    redb::CommitError
);

thread_local! {
    /// Set while this thread runs storage-engine code under the store's
    /// guard: a panic there is caught and reported as a [`StoreError`].
    static GUARDED: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f`, catching a panic in it. The process's panic hook stays quiet
/// for it: the store reports it, once, as an error naming the file.
fn guarded<T>(f: impl FnOnce() -> T) -> std::thread::Result<T> {
    static QUIET_HOOK: Once = Once::new();
    QUIET_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !GUARDED.get() {
                previous(info);
            }
        }));
    });
    let outer = GUARDED.replace(true);
    let result = catch_unwind(AssertUnwindSafe(f));
    GUARDED.set(outer);
    result
}

/// How the file is open.
enum Db {
    Writable(Database),
    /// For the commands that only read (`events`, `verify`): never changes
    /// the file.
    ReadOnly(ReadOnlyDatabase),
}

impl Db {
    fn begin_read(&self) -> Result<ReadTransaction, redb::TransactionError> {
        match self {
            Db::Writable(db) => db.begin_read(),
            Db::ReadOnly(db) => db.begin_read(),
        }
    }
}

/// Whether a commit is on the disk when it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Every commit is synced: what a node's store needs.
    Immediate,
    /// For a store deleted when the process exits (`eventhost replay`'s
    /// event log): commits are not synced, but for one in
    /// [`TEMPORARY_SYNC_EVERY`], which lets redb reuse the pages freed
    /// since. A sync per batch of 256 events was a fifth of a replay's CPU,
    /// spent on a file nobody reopens (row 7a).
    Temporary,
}

/// In a temporary store, one commit in this many is synced.
const TEMPORARY_SYNC_EVERY: u64 = 64;

pub struct Store {
    /// `None` after a failed reopen, until the next one succeeds.
    db: RwLock<Option<Db>>,
    path: PathBuf,
    cache_bytes: usize,
    durability: Durability,
    /// Commits so far: in a temporary store, which ones to sync.
    commits: AtomicU64,
    /// A failure left redb refusing further writes: reopen before the next use.
    needs_reopen: AtomicBool,
}

impl Store {
    /// Opens the store file with the default cache, creating it (and its
    /// directory) if needed.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_with_cache(path, DEFAULT_CACHE_BYTES, Durability::Immediate)
    }

    /// Opens the store keeping at most `cache_bytes` of its file in memory,
    /// creating it if there is none. A file that is there but empty, or is
    /// not an eventhost store of this format, is refused: a damaged store
    /// must not silently become a new, empty ledger.
    ///
    /// redb's own cache default is 1 GiB, which a node serving a long
    /// replay from the log filled (benchmark row 5): the kernel's page cache
    /// holds the file anyway, and is shared and reclaimable.
    pub fn open_with_cache(
        path: &Path,
        cache_bytes: usize,
        durability: Durability,
    ) -> Result<Store, StoreError> {
        let store = Store {
            db: RwLock::new(None),
            path: path.to_owned(),
            cache_bytes,
            durability,
            commits: AtomicU64::new(0),
            needs_reopen: AtomicBool::new(false),
        };
        let db = store.open_writable()?;
        *store.db.write().unwrap_or_else(|e| e.into_inner()) = Some(Db::Writable(db));
        Ok(store)
    }

    /// Opens an existing store for reading only; the file is never created
    /// or changed.
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        let store = Store {
            db: RwLock::new(None),
            path: path.to_owned(),
            cache_bytes: DEFAULT_CACHE_BYTES,
            durability: Durability::Immediate,
            commits: AtomicU64::new(0),
            needs_reopen: AtomicBool::new(false),
        };
        store.check_file(false)?;
        let db = guarded(|| {
            redb::Builder::new()
                .set_cache_size(store.cache_bytes)
                .open_read_only(path)
        })
        .map_err(|panic| store.panicked(&*panic))?
        .map_err(|e| store.open_error(e))?;
        let db = Db::ReadOnly(db);
        store.contained(|| store.check_format(&db, false))?;
        *store.db.write().unwrap_or_else(|e| e.into_inner()) = Some(db);
        Ok(store)
    }

    /// Whether the next commit may skip its sync.
    fn skips_sync(&self) -> bool {
        self.durability == Durability::Temporary
            && !(self.commits.fetch_add(1, Ordering::Relaxed) + 1)
                .is_multiple_of(TEMPORARY_SYNC_EVERY)
    }

    fn unusable(&self, problem: impl Into<String>) -> StoreError {
        StoreError::Unusable {
            path: self.path.clone(),
            problem: problem.into(),
        }
    }

    /// Refuses what cannot be a store: a directory, a FIFO, an empty file.
    /// Returns whether the file exists.
    fn check_file(&self, may_create: bool) -> Result<bool, StoreError> {
        match std::fs::metadata(&self.path) {
            Ok(m) if !m.is_file() => Err(self.unusable(
                "is not a regular file; set [host] data_dir to a directory for eventhost's files",
            )),
            Ok(m) if m.len() == 0 => Err(self.unusable(
                "is empty (0 bytes): it was truncated or never written. Restore it from a backup, \
                 or move it away to start a new, empty ledger",
            )),
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && may_create => Ok(false),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(self
                .unusable("does not exist: nothing to read (has a node run with this data_dir?)")),
            Err(e) => Err(self.unusable(format!("cannot be read: {e}"))),
        }
    }

    fn open_error(&self, e: redb::DatabaseError) -> StoreError {
        match e {
            redb::DatabaseError::DatabaseAlreadyOpen => self.unusable(
                "it is in use by another process (is an eventhost running on this data directory?)",
            ),
            redb::DatabaseError::RepairAborted => {
                self.unusable("it needs a repair after an unclean shutdown, which was aborted")
            }
            other => StoreError::Db {
                path: self.path.clone(),
                source: other.into(),
            },
        }
    }

    fn open_writable(&self) -> Result<Database, StoreError> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                self.unusable(format!(
                    "cannot create its directory {}: {e}",
                    dir.display()
                ))
            })?;
        }
        let existed = self.check_file(true)?;
        let db = guarded(|| {
            Database::builder()
                .set_cache_size(self.cache_bytes)
                .create(&self.path)
        })
        .map_err(|panic| self.panicked(&*panic))?
        .map_err(|e| self.open_error(e))?;
        let db = Db::Writable(db);
        self.contained(|| self.check_format(&db, existed))?;
        let Db::Writable(db) = db else {
            unreachable!("opened writable above")
        };
        Ok(db)
    }

    /// Checks the format marker of an existing store, or writes it into a
    /// new one. A file with no tables at all is new (a crash can leave one
    /// between creating the file and the first commit).
    fn check_format(&self, db: &Db, existed: bool) -> Result<(), StoreError> {
        let key = "format";
        let found = {
            let txn = db.begin_read().map_err(|e| self.err(e))?;
            let read = || -> Result<Option<u64>, TxnError> {
                let table = match txn.open_table(STORE_META) {
                    Ok(table) => table,
                    Err(redb::TableError::TableDoesNotExist(_)) => {
                        let empty = txn.list_tables()?.next().is_none();
                        return Ok(if empty { None } else { Some(0) });
                    }
                    Err(e) => return Err(e.into()),
                };
                let Some(v) = table.get(key)? else {
                    return Ok(Some(0));
                };
                let bytes = seal::unseal::<&str>("store", &key, v.value(), || "format".into())?;
                Ok(Some(u64::from_le_bytes(bytes.try_into().map_err(
                    |_| TxnError::corrupt("format", "not an 8-byte number"),
                )?)))
            };
            read().map_err(|e| self.err(e))?
        };
        match (found, db) {
            (Some(FORMAT), _) => Ok(()),
            (None, Db::Writable(db)) => {
                if existed {
                    tracing::warn!(
                        "store {} holds no tables yet; initialising it",
                        self.path.display()
                    );
                }
                let txn = db.begin_write().map_err(|e| self.err(e))?;
                let write = || -> Result<(), TxnError> {
                    let mut table = txn.open_table(STORE_META)?;
                    table.insert(
                        key,
                        seal::seal::<&str>("store", &key, &FORMAT.to_le_bytes()).as_slice(),
                    )?;
                    Ok(())
                };
                write().map_err(|e| self.err(e))?;
                txn.commit().map_err(|e| self.err(e))
            }
            (None, Db::ReadOnly(_)) => Err(self.unusable("holds no data yet")),
            (Some(0), _) => Err(self.unusable(
                "is not an eventhost store of this version (it has tables but no format \
                 marker; stores written before format 2 have no checksums): point [host] \
                 data_dir elsewhere, or move the file away to start a new ledger",
            )),
            (Some(other), _) => Err(self.unusable(format!(
                "has format {other}, but this eventhost reads format {FORMAT}"
            ))),
        }
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Names an error from inside a transaction with the store's file.
    pub fn err(&self, error: impl Into<TxnError>) -> StoreError {
        match error.into() {
            TxnError::Db(source) => StoreError::Db {
                path: self.path.clone(),
                source,
            },
            TxnError::Corrupt { record, reason } => StoreError::Corrupt {
                path: self.path.clone(),
                record,
                reason,
            },
        }
    }

    fn panicked(&self, payload: &(dyn std::any::Any + Send)) -> StoreError {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        self.needs_reopen.store(true, Ordering::Release);
        let e = StoreError::Panicked {
            path: self.path.clone(),
            message,
        };
        tracing::error!("{e}");
        e
    }

    /// Runs `f`, turning a panic inside it (in redb) into an error.
    fn contained<T>(&self, f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
        let result = guarded(f).unwrap_or_else(|p| Err(self.panicked(&*p)));
        if let Err(StoreError::Db { source, .. }) = &result
            && matches!(
                source,
                redb::Error::Io(_)
                    | redb::Error::PreviousIo
                    | redb::Error::LockPoisoned(_)
                    | redb::Error::DatabaseClosed
            )
        {
            self.needs_reopen.store(true, Ordering::Release);
        }
        result
    }

    /// The open database, reopened first if a failure left it refusing work.
    fn db(&self) -> Result<RwLockReadGuard<'_, Option<Db>>, StoreError> {
        if self.needs_reopen.load(Ordering::Acquire) {
            self.reopen()?;
        }
        Ok(self.db.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn reopen(&self) -> Result<(), StoreError> {
        let mut slot = self.db.write().unwrap_or_else(|e| e.into_inner());
        if !self.needs_reopen.load(Ordering::Acquire) {
            return Ok(()); // another thread reopened it meanwhile
        }
        if let Some(Db::ReadOnly(_)) = &*slot {
            self.needs_reopen.store(false, Ordering::Release);
            return Ok(());
        }
        // Closing releases the file and its lock at once, even while read
        // transactions are alive (their reads then fail, and are retried).
        drop(slot.take());
        let db = self.open_writable()?;
        *slot = Some(Db::Writable(db));
        self.needs_reopen.store(false, Ordering::Release);
        tracing::debug!("store {} reopened", self.path.display());
        Ok(())
    }

    fn closed(&self) -> StoreError {
        self.needs_reopen.store(true, Ordering::Release);
        StoreError::Db {
            path: self.path.clone(),
            source: redb::Error::DatabaseClosed,
        }
    }

    /// Runs `read` in one read transaction: a consistent view.
    pub fn read<T>(
        &self,
        read: impl FnOnce(&ReadTransaction) -> Result<T, TxnError>,
    ) -> Result<T, StoreError> {
        let txn = self.begin_read()?;
        self.contained(|| read(&txn).map_err(|e| self.err(e)))
    }

    /// A read transaction that outlives the call, for a view held across
    /// many reads (the ledger's snapshot of committed state).
    pub fn begin_read(&self) -> Result<ReadTransaction, StoreError> {
        self.contained(|| {
            let db = self.db()?;
            let db = db.as_ref().ok_or_else(|| self.closed())?;
            db.begin_read().map_err(|e| self.err(e))
        })
    }

    /// Runs `write` in one write transaction and commits it durably; on an
    /// error nothing of it is written.
    pub fn write<T>(
        &self,
        write: impl FnOnce(&WriteTransaction) -> Result<T, TxnError>,
    ) -> Result<T, StoreError> {
        self.contained(|| {
            let mut txn = {
                let db = self.db()?;
                match db.as_ref() {
                    Some(Db::Writable(db)) => db.begin_write().map_err(|e| self.err(e))?,
                    Some(Db::ReadOnly(_)) => {
                        return Err(self.unusable("is open for reading only"));
                    }
                    None => return Err(self.closed()),
                }
            };
            if self.skips_sync() {
                // Refused only where the file is shared between processes,
                // which a temporary store never is: then it is synced.
                let _ = txn.set_durability(redb::Durability::None);
            }
            let value = write(&txn).map_err(|e| self.err(e))?;
            txn.commit().map_err(|e| self.err(e))?;
            Ok(value)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::ReadableTableMetadata;

    const T: TableDefinition<u64, u64> = TableDefinition::new("t");

    #[test]
    fn a_failed_write_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("sub/s.redb")).unwrap();
        store
            .write(|txn| {
                txn.open_table(T)?.insert(1, 1)?;
                Ok(())
            })
            .unwrap();
        let failed: Result<(), StoreError> = store.write(|txn| {
            txn.open_table(T)?.insert(2, 2)?;
            Err(TxnError::corrupt("record 2", "refused"))
        });
        let message = failed.unwrap_err().to_string();
        assert!(
            message.contains("s.redb: record 2 is unreadable: refused"),
            "{message}"
        );
        let count = store.read(|txn| Ok(txn.open_table(T)?.len()?)).unwrap();
        assert_eq!(count, 1);
    }

    #[test]
    fn a_temporary_store_reads_back_what_it_wrote_without_a_sync_per_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = Store::open_with_cache(&path, 1 << 20, Durability::Temporary).unwrap();
        let commits = 3 * TEMPORARY_SYNC_EVERY + 5;
        let mut skipped = 0;
        for i in 0..commits {
            let before = store.commits.load(Ordering::Relaxed);
            store
                .write(|txn| {
                    txn.open_table(T)?.insert(i, i)?;
                    Ok(())
                })
                .unwrap();
            assert_eq!(store.commits.load(Ordering::Relaxed), before + 1);
            skipped += u64::from(!(before + 1).is_multiple_of(TEMPORARY_SYNC_EVERY));
        }
        assert_eq!(
            skipped,
            commits - 3,
            "one commit in {TEMPORARY_SYNC_EVERY} is synced"
        );
        let count = store.read(|txn| Ok(txn.open_table(T)?.len()?)).unwrap();
        assert_eq!(count, commits);
        // A durable store counts nothing and syncs every commit.
        let durable = Store::open(&dir.path().join("d.redb")).unwrap();
        assert!(!durable.skips_sync());
        assert_eq!(durable.commits.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_panic_in_a_transaction_is_an_error_and_the_store_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let panicked: Result<(), StoreError> = store.write(|_| panic!("engine bug"));
        let message = panicked.unwrap_err().to_string();
        assert!(message.contains("internal error (engine bug)"), "{message}");
        store
            .write(|txn| {
                txn.open_table(T)?.insert(1, 1)?;
                Ok(())
            })
            .unwrap();
        assert_eq!(store.read(|txn| Ok(txn.open_table(T)?.len()?)).unwrap(), 1);
    }

    #[test]
    fn an_empty_or_foreign_file_is_refused_and_read_only_never_creates() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.redb");
        std::fs::write(&empty, b"").unwrap();
        let e = Store::open(&empty).err().unwrap().to_string();
        assert!(e.contains("is empty (0 bytes)"), "{e}");

        let foreign = dir.path().join("foreign.redb");
        {
            let db = Database::create(&foreign).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(T).unwrap().insert(1, 1).unwrap();
            txn.commit().unwrap();
        }
        let e = Store::open(&foreign).err().unwrap().to_string();
        assert!(e.contains("not an eventhost store"), "{e}");

        let missing = dir.path().join("missing.redb");
        let e = Store::open_read_only(&missing).err().unwrap().to_string();
        assert!(e.contains("does not exist"), "{e}");
        assert!(!missing.exists());

        let path = dir.path().join("s.redb");
        drop(Store::open(&path).unwrap());
        let reader = Store::open_read_only(&path).unwrap();
        assert!(reader.write(|_| Ok(())).is_err());
        let e = Store::open(dir.path()).err().unwrap().to_string();
        assert!(e.contains("is not a regular file"), "{e}");
    }
}
