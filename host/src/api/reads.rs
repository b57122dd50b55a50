//! Store reads, run off the async workers.
//!
//! A store read blocks its thread (redb pages come from disk), and a heavy
//! one for long: `GET /api/v1/metadata?search=hello` on 50,000 matching
//! transactions took 0.75 s, and 4 clients looping on it pushed
//! `GET /api/v1`, which reads nothing, from 1–2 ms to a 333 ms median
//! because they held the HTTP workers. So every read runs on tokio's
//! blocking pool, and heavy ones (scans whose cost grows with the data: a
//! text search, a key's outputs, an asset's history) take one of a few
//! permits first, so that however many clients ask for them, they use at
//! most `heavy_query_threads` CPUs and the rest of the API keeps its own.
//! A light read (one record by key) takes no permit: it never waits
//! behind a heavy one.

use std::sync::Arc;

use tokio::sync::Semaphore;

use super::error::ApiError;

/// Runs store reads on the blocking pool.
pub struct Reads {
    heavy: Arc<Semaphore>,
}

impl Reads {
    /// Reads of which at most `heavy_threads` heavy ones run at once
    /// (`None`: half the CPUs, at least one).
    pub fn new(heavy_threads: Option<usize>) -> Reads {
        let threads = heavy_threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
        });
        Reads {
            heavy: Arc::new(Semaphore::new(threads)),
        }
    }

    /// A read of a few records by key.
    pub async fn light<T: Send + 'static>(
        &self,
        read: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        tokio::task::spawn_blocking(read)
            .await
            .map_err(ApiError::internal)?
    }

    /// A read whose cost grows with the data; it waits for a permit.
    pub async fn heavy<T: Send + 'static>(
        &self,
        read: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let permit = self
            .heavy
            .clone()
            .acquire_owned()
            .await
            .map_err(ApiError::internal)?;
        // The permit goes with the work: a client that leaves does not
        // free it while the read still runs.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            read()
        })
        .await
        .map_err(ApiError::internal)?
    }
}
