//! An edge node's source: a ledger node's events, from the NATS JetStream
//! stream its `nats` plugin publishes to (`[source] kind = "nats"`).
//!
//! The edge follows the stream with a durable pull consumer of its own,
//! reads each message of the block format back into the ledger node's
//! event (`Event::from_json`, [`message`]), and commits it through the
//! node's one [`EventLog`] with the ledger's own sequence number, height,
//! hash and timestamp, each the next one of its log
//! ([`EventLog::commit_numbered_with`]); only then does it acknowledge the
//! message to JetStream. So every edge's log is the ledger node's, event
//! for event, and a client's `last_seen_event` means the same on every
//! edge. The plugins run as on the ledger node: they see the log.
//!
//! - [`config`]: the `[source]` table;
//! - [`follow`]: connecting, consuming, the order rule, committing;
//! - [`consumer`]: the stream's checks and the consumer's placement;
//! - [`position`]: the stream sequence of the log's newest event;
//! - [`status`]: how the edge is doing, for the API and the node.
//!
//! The source runs on a thread of its own with a small async runtime (the
//! client is async); its commits are synchronous, as the ledger's are.

pub mod config;
mod consumer;
mod follow;
mod message;
pub mod position;
pub mod status;

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;

pub use config::UpstreamConfig;
pub use status::Status;

use crate::event_log::{EventLog, Reader};
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};
use follow::Follower;

/// Why following the stream stopped, or paused.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Worth trying again: the servers, the network, credentials being
    /// fixed, a stream not created yet, a store refusing a write.
    #[error("{0}")]
    Retry(String),
    /// Retrying cannot help: the stream is not one this edge can follow
    /// (another format, other subjects, a gap, another node's events).
    #[error("{0}")]
    Fatal(String),
}

/// Why the source could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The credentials, from the environment variables `[source.auth]` names.
    #[error("{0}")]
    Credentials(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot start the upstream source's thread: {0}")]
    Spawn(std::io::Error),
}

/// How long the source's runtime may take to end once the follower ended.
const RUNTIME_STOP: Duration = Duration::from_secs(1);

/// Which of `servers` an edge tries first: one that depends on its
/// consumer's name, so that edges with the same list spread over the
/// cluster rather than all connecting to the first server.
fn first_server(durable: &str, servers: usize) -> usize {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    durable.hash(&mut hasher);
    (hasher.finish() % servers.max(1) as u64) as usize
}

/// The running source.
pub struct Upstream {
    status: Arc<Status>,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl Upstream {
    /// Starts following the stream `config` names, committing through `log`
    /// (of `store`).
    pub fn start(
        config: &UpstreamConfig,
        log: EventLog,
        store: Arc<Store>,
        metrics: &Metrics,
    ) -> Result<Upstream, StartError> {
        let credentials = config
            .credentials(&|var| std::env::var(var).ok())
            .map_err(StartError::Credentials)?;
        tracing::info!(
            "edge node: following {}, as {}",
            config.describe(),
            credentials.describe()
        );
        let stream_seq = position::read(&store, &config.stream)?;
        let status = Arc::new(Status::new(
            &config.stream,
            config.ledger_url.clone(),
            config.ready_max_lag,
            log.head(),
            metrics.register_upstream(),
        ));
        let (stop, stopping) = watch::channel(false);
        let follower = Follower {
            config: config.clone(),
            credentials,
            reader: Reader::new(store.clone()),
            log,
            status: status.clone(),
            stop: stopping,
            stream_seq,
            next_server: first_server(&config.durable, config.servers.len()),
            followed: false,
        };
        // A multi-threaded runtime, of one worker: the follower's commits
        // hand the worker over (`block_in_place`) while they wait for the disk.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("upstream-io")
            .enable_all()
            .build()
            .map_err(StartError::Spawn)?;
        let panicked = status.clone();
        let thread = std::thread::Builder::new()
            .name("upstream".into())
            .spawn(move || {
                let followed = runtime.block_on(runtime.spawn(follower.run()));
                if let Err(e) = followed {
                    // A bug; the node must not go on serving a log that stopped.
                    panicked.set_fatal(format!("the upstream source failed: {e}"));
                }
                runtime.shutdown_timeout(RUNTIME_STOP);
            })
            .map_err(StartError::Spawn)?;
        Ok(Upstream {
            status,
            stop,
            thread: Some(thread),
        })
    }

    /// How the edge is doing.
    pub fn status(&self) -> &Arc<Status> {
        &self.status
    }

    /// Stops following: a commit under way finishes, what it committed is
    /// acknowledged or delivered again at the next start.
    pub fn shutdown(mut self) {
        self.stop_following();
    }

    fn stop_following(&mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop_following();
    }
}
