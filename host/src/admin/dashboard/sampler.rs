//! The dashboard's one thread: once a second it samples the counters into
//! the history and, while a page is open, builds a snapshot and hands it
//! to every open stream at once (a `watch` channel: a stream that has not
//! sent the last one yet skips to the newest, so a slow page holds one
//! snapshot, not a queue of them). Snapshots are built off the HTTP
//! workers, because they read the event log.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use tokio::sync::watch;

use super::history::History;
use super::recent::Recent;
use super::snapshot::{self, Sources};

/// How often the counters are sampled and a snapshot is pushed.
pub const TICK: Duration = Duration::from_secs(1);

/// What the thread is told.
pub enum Wake {
    /// A page opened: build a snapshot now rather than at the next tick.
    Now,
    Stop,
}

/// A snapshot as sent: JSON text, shared by every stream.
pub type Snapshot = Option<Arc<str>>;

struct Sampler {
    sources: Sources,
    history: History,
    recent: Recent,
    snapshots: watch::Sender<Snapshot>,
    /// Streams open now.
    watching: Arc<AtomicUsize>,
}

/// The sampler thread, and how to reach it.
pub struct Control {
    pub wake: Sender<Wake>,
    thread: std::thread::JoinHandle<()>,
}

impl Control {
    /// Stops the thread and waits for it: it holds the node's plugin
    /// runtime, and through it the store, which must be closed (its last
    /// holder gone) before the process exits, or the next start finds it
    /// needing a repair. A CI run caught an edge node exiting while this
    /// thread still held it.
    pub fn stop(self) {
        let _ = self.wake.send(Wake::Stop);
        let _ = self.thread.join();
    }
}

/// Starts the thread; it stops on [`Wake::Stop`] or when every sender of
/// `control` is dropped, and then the snapshot channel closes.
pub fn spawn(
    sources: Sources,
    snapshots: watch::Sender<Snapshot>,
    watching: Arc<AtomicUsize>,
) -> std::io::Result<Control> {
    let (control, woken) = crossbeam_channel::unbounded();
    let sampler = Sampler {
        sources,
        history: History::default(),
        recent: Recent::default(),
        snapshots,
        watching,
    };
    let thread = std::thread::Builder::new()
        .name("dashboard".into())
        .spawn(move || sampler.run(&woken))?;
    Ok(Control {
        wake: control,
        thread,
    })
}

impl Sampler {
    fn run(mut self, woken: &Receiver<Wake>) {
        let mut next = Instant::now();
        loop {
            let now = Instant::now();
            if now >= next {
                self.history.record(now, snapshot::counters(&self.sources));
                self.publish();
                // After a stall, one sample now rather than a burst.
                next = (next + TICK).max(now + TICK / 2);
            }
            match woken.recv_deadline(next) {
                Ok(Wake::Now) => self.publish(),
                Ok(Wake::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }

    fn publish(&mut self) {
        if self.watching.load(Ordering::Acquire) == 0 {
            return;
        }
        let snapshot = snapshot::build(&self.sources, &self.history, &mut self.recent);
        self.snapshots
            .send_replace(Some(Arc::from(snapshot.to_string())));
    }
}
