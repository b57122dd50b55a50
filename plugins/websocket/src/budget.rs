//! The memory replays may hold, in bytes, across every resuming client
//! (`replay_memory_bytes`).
//!
//! A resuming client holds one batch of messages read from the log until
//! its socket has taken them, and a second one read ahead meanwhile if the
//! budget has room for it then; a client that stops reading would hold its
//! batches for as long as it stays connected. Before this budget, 20 such
//! clients on a 50,000-transaction log held 486 MB (a batch was 256
//! events, whatever their size). Now a batch is sized in bytes, it is
//! taken from the budget before it is read, and a client that waits too
//! long for the budget, or for its socket, is closed (see `resume`).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

pub struct Budget {
    limit: usize,
    in_use: Mutex<usize>,
    freed: Notify,
}

/// Bytes taken from the budget, given back on drop.
pub struct Lease {
    budget: Arc<Budget>,
    bytes: usize,
}

impl Budget {
    pub fn new(limit: usize) -> Arc<Budget> {
        Arc::new(Budget {
            limit,
            in_use: Mutex::new(0),
            freed: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, usize> {
        self.in_use.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bytes held by replays now.
    pub fn in_use(&self) -> usize {
        *self.lock()
    }

    /// The size of one batch: small enough that 64 clients can each hold
    /// one, large enough to be read and written efficiently.
    pub fn batch_bytes(&self) -> usize {
        (self.limit / 64).clamp(16 * 1024, 1024 * 1024)
    }

    /// Waits until `bytes` fit in the budget (or nothing else is held, so
    /// that a batch larger than the whole budget can still go alone).
    pub async fn take(self: &Arc<Self>, bytes: usize) -> Lease {
        loop {
            let freed = self.freed.notified();
            if let Some(lease) = self.try_take(bytes) {
                return lease;
            }
            freed.await;
        }
    }

    /// `bytes` from the budget if they fit now (as for [`Budget::take`]).
    pub fn try_take(self: &Arc<Self>, bytes: usize) -> Option<Lease> {
        let mut in_use = self.lock();
        (*in_use == 0 || *in_use + bytes <= self.limit).then(|| {
            *in_use += bytes;
            Lease {
                budget: self.clone(),
                bytes,
            }
        })
    }
}

impl Lease {
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Makes the lease `bytes` long: what a batch turned out to hold. It
    /// may grow past the budget by the one event that overshot the batch.
    pub fn resize(&mut self, bytes: usize) {
        let mut in_use = self.budget.lock();
        *in_use = *in_use - self.bytes + bytes;
        let shrunk = bytes < self.bytes;
        self.bytes = bytes;
        drop(in_use);
        if shrunk {
            self.budget.freed.notify_waiters();
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        *self.budget.lock() -= self.bytes;
        self.budget.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn takers_wait_for_room_and_get_it_when_freed() {
        let budget = Budget::new(100);
        let mut a = budget.take(60).await;
        let b = budget.take(40).await;
        assert_eq!(budget.in_use(), 100);
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.take(50).await.bytes }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        a.resize(10);
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(5), waiting)
                .await
                .unwrap()
                .unwrap(),
            50
        );
        drop((a, b));
        assert_eq!(budget.in_use(), 0);
        // Larger than the whole budget: alone.
        let huge = budget.take(1000).await;
        assert_eq!(budget.in_use(), 1000);
        assert!(budget.try_take(1).is_none());
        drop(huge);
        assert_eq!(budget.try_take(100).map(|l| l.bytes()), Some(100));
        assert_eq!(budget.batch_bytes(), 16 * 1024);
    }
}
