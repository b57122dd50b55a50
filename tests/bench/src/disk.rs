//! The disk's own floor for the commit path (row 3g, and the baseline of
//! row 3d): how long a bare redb write transaction of a block-sized value
//! takes to commit durably, and a bare `fdatasync` after writing the same
//! bytes over the start of a file, measured in the directory the node's
//! store used, in the same run. No node, no HTTP, no events: what a commit
//! cannot be faster than on this disk.
//!
//! The file is written in place, never extended: on ext4 an `fdatasync`
//! after a file grew also commits the journal, which took 4 ms here
//! against the node's 0.9 ms block writes, and would make the floor
//! higher than what it bounds. For the same reason the database is warmed
//! up (its file grown) before the commits are timed.
//!
//! A thread spins on another core while the commits are timed. On this
//! VM an `fdatasync` issued while every core is idle completes only at the
//! next 4 ms timer tick (p50 3.7–4.0 ms), and in 0.08–0.11 ms while one
//! core is busy (2026-12-06, 200 syncs of 781 bytes each way). The node's
//! own threads keep a core busy during row 3's latency part; without the
//! spinner the floor would measure the idle wake-up, not the disk.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use redb::{Database, TableDefinition};

use crate::report::Figure;

const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");

/// Untimed commits first: redb grows its file early on.
const WARM_UP: u64 = 100;

/// The floor's two figures.
pub struct Floor {
    /// redb: insert `block` under a new key, commit (durably: redb's
    /// default fsyncs before a commit returns).
    pub redb: Figure,
    /// Write `block` over the start of a file, `fdatasync` it.
    pub fdatasync: Figure,
}

/// `commits` of each, alternating in rounds of 10 so that both see the
/// same moments of a shared disk, in a new directory under `dir`.
pub fn floor(dir: &Path, block: &[u8], commits: usize) -> anyhow::Result<Floor> {
    let dir = tempfile::Builder::new()
        .prefix("disk-floor-")
        .tempdir_in(dir)?;
    let db = Database::create(dir.path().join("bare.redb"))?;
    let commit = |key: u64| -> anyhow::Result<()> {
        let txn = db.begin_write()?;
        txn.open_table(BLOCKS)?.insert(key, block)?;
        txn.commit()?;
        Ok(())
    };
    for key in 0..WARM_UP {
        commit(key)?;
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(dir.path().join("bare.log"))?;
    file.write_all_at(block, 0)?;
    file.sync_all()?;
    let sync = || -> anyhow::Result<()> {
        file.write_all_at(block, 0)?;
        file.sync_data()?;
        Ok(())
    };

    let spinning = AtomicBool::new(true);
    let timed = std::thread::scope(|scope| {
        scope.spawn(|| {
            while spinning.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        });
        let mut redb_ms = Vec::with_capacity(commits);
        let mut sync_ms = Vec::with_capacity(commits);
        let mut timed = || -> anyhow::Result<()> {
            let mut key = WARM_UP;
            while redb_ms.len() < commits {
                for _ in 0..10 {
                    redb_ms.push(milliseconds(|| commit(key))?);
                    key += 1;
                }
                for _ in 0..10 {
                    sync_ms.push(milliseconds(sync)?);
                }
            }
            Ok(())
        };
        let outcome = timed();
        spinning.store(false, Ordering::Relaxed);
        outcome.map(|()| (redb_ms, sync_ms))
    });
    let (redb_ms, sync_ms) = timed?;
    Ok(Floor {
        redb: latency(redb_ms),
        fdatasync: latency(sync_ms),
    })
}

/// How long `work` took, in milliseconds.
fn milliseconds(work: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    let started = Instant::now();
    work()?;
    Ok(started.elapsed().as_secs_f64() * 1e3)
}

fn latency(mut ms: Vec<f64>) -> Figure {
    ms.sort_by(f64::total_cmp);
    Figure::latency(&ms)
}
