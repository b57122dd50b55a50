//! Loads the configured plugins and runs each on its own thread, restarting
//! the ones that fail.
//!
//! Each plugin's thread supervises it: it subscribes the plugin to the
//! exchange after the plugin's cursor and calls `run`. When `run` fails (an
//! error, a panic caught by `export_plugin!`) the thread waits, with
//! exponential backoff, and calls `run` again on a new queue that starts
//! after the last event the plugin finished, so nothing is lost and nothing
//! it finished comes again. After too many failures within a window the
//! plugin is reported failed and left alone; the host runs on. At shutdown
//! every plugin gets time to drain its queue; one that stops making
//! progress is abandoned so it cannot keep the host from exiting.

mod context;
mod load;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::RResult;
use eventhost_plugin_api::ffi::{HostContext_TO, HostQueue_TO, RunArgs};

pub use context::{Advertised, Link, Services};
pub(crate) use context::{labels, log_line};
pub use load::{
    LoadError, LoadErrorKind, LoadedPlugin, library_file_name, load, open_library, resolve,
};

use crate::config::Isolation;
use crate::exchange::{Exchange, Progress};
use crate::metrics::Metrics;
use crate::process;
use context::PluginContext;

/// Where a plugin is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// `run` was called; the plugin has not said it is ready yet.
    Starting,
    /// The plugin said it is ready.
    Running,
    /// `run` failed; it is called again after a backoff.
    Restarting,
    /// The plugin reported a failure, or failed too often to restart.
    Failed(String),
    /// `run` returned without error.
    Stopped,
}

impl State {
    /// The state's name in the status API.
    pub fn name(&self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Running => "running",
            State::Restarting => "restarting",
            State::Failed(_) => "failed",
            State::Stopped => "stopped",
        }
    }
}

/// When and how often failed plugins are restarted.
#[derive(Debug, Clone)]
pub struct RestartPolicy {
    /// Wait before the first restart; doubled after each failure.
    pub initial_backoff: Duration,
    /// The longest wait between restarts.
    pub max_backoff: Duration,
    /// A plugin that fails this many times within `window` is given up.
    pub max_failures: usize,
    pub window: Duration,
}

/// One configured plugin: what it is and how it is doing.
pub struct PluginRecord {
    pub plugin: LoadedPlugin,
    state: Mutex<State>,
    changed: Condvar,
    /// Its supervising thread has ended.
    done: AtomicBool,
    /// The progress of its current queue.
    progress: Mutex<Arc<Progress>>,
    restarts: AtomicU32,
    last_error: Mutex<Option<String>>,
    /// Events delivered by the queues of earlier runs.
    delivered_before: AtomicU64,
}

impl PluginRecord {
    fn new(plugin: LoadedPlugin) -> PluginRecord {
        PluginRecord {
            plugin,
            state: Mutex::new(State::Starting),
            changed: Condvar::new(),
            done: AtomicBool::new(false),
            progress: Mutex::new(Arc::new(Progress::default())),
            restarts: AtomicU32::new(0),
            last_error: Mutex::new(None),
            delivered_before: AtomicU64::new(0),
        }
    }

    pub fn name(&self) -> &str {
        &self.plugin.entry.name
    }

    pub fn state(&self) -> State {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn set_state(&self, state: State) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = state;
        self.changed.notify_all();
    }

    /// How often `run` was called again after failing.
    pub fn restarts(&self) -> u32 {
        self.restarts.load(Ordering::Acquire)
    }

    /// The last failure, reported or returned.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn set_last_error(&self, error: &str) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error.to_owned());
    }

    /// Events delivered to the plugin in this host run, across restarts.
    pub fn delivered_count(&self) -> u64 {
        self.delivered_before.load(Ordering::Acquire) + self.progress().count()
    }

    /// How far its current queue got.
    pub fn progress(&self) -> Arc<Progress> {
        self.progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits until the plugin is no longer starting, or the deadline passes.
    fn wait_started(&self, deadline: Instant) -> State {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while *state == State::Starting {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        state.clone()
    }
}

/// Wakes supervisors waiting to restart a plugin when the host stops.
#[derive(Default)]
struct Stopping {
    stopping: Mutex<bool>,
    changed: Condvar,
}

impl Stopping {
    fn set(&self) {
        *self.stopping.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.changed.notify_all();
    }

    fn is_set(&self) -> bool {
        *self.stopping.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits `duration`; true if the host started stopping meanwhile.
    fn wait(&self, duration: Duration) -> bool {
        let stopping = self.stopping.lock().unwrap_or_else(|e| e.into_inner());
        let (stopping, _) = self
            .changed
            .wait_timeout_while(stopping, duration, |s| !*s)
            .unwrap_or_else(|e| e.into_inner());
        *stopping
    }
}

/// The plugins of one host.
pub struct PluginManager {
    records: Arc<[Arc<PluginRecord>]>,
    threads: Vec<Option<JoinHandle<()>>>,
    stopping: Arc<Stopping>,
}

impl PluginManager {
    /// Starts each plugin, after its cursor, on a supervising thread of its own.
    pub fn start(
        loaded: Vec<(LoadedPlugin, u64)>,
        services: &Services,
        policy: &RestartPolicy,
    ) -> PluginManager {
        let stopping = Arc::new(Stopping::default());
        let mut records = Vec::with_capacity(loaded.len());
        let mut threads = Vec::with_capacity(loaded.len());
        for (plugin, cursor) in loaded {
            let record = Arc::new(PluginRecord::new(plugin));
            let supervisor = Supervisor {
                record: record.clone(),
                services: services.clone(),
                policy: policy.clone(),
                stopping: stopping.clone(),
            };
            let spawned = std::thread::Builder::new()
                .name(format!("plugin:{}", record.name()))
                .spawn(move || supervisor.run(cursor));
            threads.push(match spawned {
                Ok(thread) => Some(thread),
                Err(e) => {
                    let reason = format!("cannot start its thread: {e}");
                    tracing::error!(plugin = %record.name(), "{reason}");
                    record.done.store(true, Ordering::Release);
                    record.set_state(State::Failed(reason));
                    None
                }
            });
            records.push(record);
        }
        PluginManager {
            records: records.into(),
            threads,
            stopping,
        }
    }

    /// Every plugin's record, shared with whoever reports on them.
    pub fn records(&self) -> &Arc<[Arc<PluginRecord>]> {
        &self.records
    }

    /// Waits until every plugin is ready or failed, at most `timeout`, and
    /// returns the state of each.
    pub fn wait_started(&self, timeout: Duration) -> Vec<(&PluginRecord, State)> {
        let deadline = Instant::now() + timeout;
        self.records
            .iter()
            .map(|r| (&**r, r.wait_started(deadline)))
            .collect()
    }

    /// Closes every queue and waits for the plugins to drain them and return.
    /// A plugin that makes no progress for `timeout` is abandoned (its thread
    /// ends with the process).
    pub fn shutdown(mut self, exchange: &Exchange, timeout: Duration) {
        self.stopping.set();
        exchange.close();
        let mut waiting: Vec<(usize, u64, Instant)> = (0..self.records.len())
            .map(|i| (i, self.records[i].progress().delivered(), Instant::now()))
            .collect();
        while !waiting.is_empty() {
            waiting.retain_mut(|(i, last_delivered, last_progress)| {
                let record = &self.records[*i];
                if record.done.load(Ordering::Acquire) {
                    if let Some(thread) = self.threads[*i].take() {
                        let _ = thread.join();
                    }
                    return false;
                }
                let delivered = record.progress().delivered();
                if delivered != *last_delivered {
                    *last_delivered = delivered;
                    *last_progress = Instant::now();
                } else if last_progress.elapsed() >= timeout {
                    tracing::warn!(
                        plugin = %record.name(),
                        "plugin did not stop within {} ms of its last progress; abandoning it",
                        timeout.as_millis()
                    );
                    return false;
                }
                true
            });
            if !waiting.is_empty() {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Updates the per-plugin metrics from the plugins' records.
pub fn report(records: &[Arc<PluginRecord>], head: u64, metrics: &Metrics) {
    for record in records {
        let labels = vec![("plugin".to_owned(), record.name().to_owned())];
        let progress = record.progress();
        let delivered = progress.delivered();
        metrics
            .plugin_delivered
            .get_or_create(&labels)
            .set(delivered as i64);
        metrics
            .plugin_lag
            .get_or_create(&labels)
            .set(head.saturating_sub(delivered) as i64);
        metrics
            .plugin_queue_depth
            .get_or_create(&labels)
            .set(progress.queued() as i64);
        metrics
            .plugin_restarts
            .get_or_create(&labels)
            .set(i64::from(record.restarts()));
    }
}

/// Runs one plugin, again and again while it fails and may be restarted.
struct Supervisor {
    record: Arc<PluginRecord>,
    services: Services,
    policy: RestartPolicy,
    stopping: Arc<Stopping>,
}

impl Supervisor {
    fn run(self, cursor: u64) {
        let end_state = self.supervise(cursor);
        self.record.done.store(true, Ordering::Release);
        self.record.set_state(end_state);
    }

    fn supervise(&self, mut cursor: u64) -> State {
        let record = &self.record;
        let name = record.name();
        let run = record.plugin.module.run();
        let mut failures: VecDeque<Instant> = VecDeque::new();
        let mut backoff = self.policy.initial_backoff;
        loop {
            let queue = self.services.exchange.subscribe(
                name,
                record.plugin.event_types,
                record.plugin.entry.queue_capacity,
                cursor,
            );
            *record.progress.lock().unwrap_or_else(|e| e.into_inner()) = queue.progress();
            let outcome = match record.plugin.entry.isolation {
                Isolation::Thread => {
                    let context = PluginContext {
                        record: record.clone(),
                        config_json: record.plugin.entry.config.to_string(),
                        services: self.services.clone(),
                    };
                    match run(RunArgs::new(
                        HostContext_TO::from_value(context, TD_Opaque),
                        HostQueue_TO::from_value(queue, TD_Opaque),
                    )) {
                        RResult::ROk(()) => Ok(()),
                        RResult::RErr(reason) => Err(reason.into_string()),
                    }
                }
                Isolation::Process => process::parent::run(
                    record,
                    &self.services,
                    queue,
                    record.plugin.entry.ack_timeout,
                ),
            };
            self.services.advertised.remove_plugin(name);
            let progress = record.progress();
            cursor = progress.finished();
            record
                .delivered_before
                .fetch_add(progress.count(), Ordering::AcqRel);
            let reason = match outcome {
                Ok(()) => {
                    tracing::info!(plugin = %name, "plugin stopped");
                    return State::Stopped;
                }
                Err(reason) => reason,
            };
            tracing::error!(plugin = %name, "plugin failed: {reason}");
            record.set_last_error(&reason);
            let now = Instant::now();
            while failures
                .front()
                .is_some_and(|t| now.duration_since(*t) > self.policy.window)
            {
                failures.pop_front();
            }
            if failures.is_empty() {
                backoff = self.policy.initial_backoff;
            }
            failures.push_back(now);
            if failures.len() >= self.policy.max_failures {
                let why = format!(
                    "gave up after {} failures within {} s; last: {reason}",
                    failures.len(),
                    self.policy.window.as_secs()
                );
                tracing::error!(plugin = %name, "{why}");
                return State::Failed(why);
            }
            record.set_state(State::Restarting);
            // While the host stops, a failed plugin is restarted at once to
            // finish draining its queue (the shutdown deadline still holds).
            let delay = if self.stopping.is_set() {
                Duration::ZERO
            } else {
                backoff
            };
            tracing::warn!(
                plugin = %name,
                "restarting the plugin in {} ms, after event {cursor}",
                delay.as_millis()
            );
            self.stopping.wait(delay);
            backoff = (backoff * 2).min(self.policy.max_backoff);
            record.restarts.fetch_add(1, Ordering::AcqRel);
            record.set_state(State::Starting);
        }
    }
}
