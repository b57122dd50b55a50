//! The plugin runtime: loads the configured plugins and runs each one, on a
//! thread of the host or in a child process, restarting the ones that fail,
//! and loads, unloads, reloads, pauses and resumes them while the node runs.
//!
//! Events reach it from the exchange: each plugin's supervisor
//! ([`supervisor`]) subscribes it after its durable cursor ([`cursors`]) and
//! hands the queue to a [`runner`], thread or process. Whichever runs it,
//! the plugin gets the same host services, implemented once in
//! [`context`], and the same acknowledgement rule
//! ([`crate::exchange::Acks`]). At shutdown every plugin gets time to drain
//! its queue; one that stops making progress is abandoned so it cannot keep
//! the node from exiting.

mod advertised;
mod context;
pub mod cursors;
pub mod dead_letters;
mod load;
pub mod process;
mod record;
mod runner;
mod services;
mod supervisor;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use advertised::{Advertised, AdvertisedLink};
pub use context::HostServices;
pub use load::{
    LoadError, LoadErrorKind, LoadedPlugin, check_config, copies_dir, library_file_name, load,
    load_all, load_copy, open_library, resolve,
};
pub use record::{PluginRecord, State};
pub use runner::RunError;

use crate::config::RestartPolicy;
use crate::metrics::Metrics;
use crate::shutdown::StopRequest;
use crate::store::StoreError;
use cursors::{CursorFlusher, Cursors};
use dead_letters::DeadLetters;
use supervisor::{Stopping, Supervision, Supervisor};

/// Why a change to the running plugins was refused.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("no plugin `{0}` is loaded")]
    NotLoaded(String),
    #[error("plugin `{0}` is already loaded; reload it, or unload it first")]
    AlreadyLoaded(String),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("plugin `{plugin}` did not start: {reason}; the previous instance runs again")]
    DidNotStart { plugin: String, reason: String },
    #[error("plugin `{plugin}` did not start: {reason}; it is not loaded")]
    NotStarted { plugin: String, reason: String },
    #[error("the node is stopping")]
    Stopping,
    #[error("cannot start plugin `{plugin}`'s thread: {source}")]
    Spawn {
        plugin: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The node's plugins as they are now; the list changes as plugins are
/// loaded and unloaded. Shared with whoever reports on them.
#[derive(Default)]
pub struct Plugins {
    list: RwLock<Vec<Arc<PluginRecord>>>,
}

impl Plugins {
    /// Every loaded plugin, in the order they were loaded.
    pub fn list(&self) -> Vec<Arc<PluginRecord>> {
        self.list.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn get(&self, name: &str) -> Option<Arc<PluginRecord>> {
        self.list
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|r| r.name() == name)
            .cloned()
    }

    fn add(&self, record: Arc<PluginRecord>) {
        self.list
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(record);
    }

    fn remove(&self, record: &Arc<PluginRecord>) {
        self.list
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|r| !Arc::ptr_eq(r, record));
    }
}

/// What the runtime needs to know of the node's settings.
#[derive(Clone)]
pub struct RuntimeSettings {
    pub policy: RestartPolicy,
    pub startup_timeout: Duration,
    pub shutdown_timeout: Duration,
    /// Where dead letters and private copies of reloaded libraries go.
    pub data_dir: PathBuf,
}

/// The running plugins of one node.
pub struct PluginRuntime {
    plugins: Arc<Plugins>,
    threads: Mutex<HashMap<usize, JoinHandle<()>>>,
    flusher: Mutex<Option<CursorFlusher>>,
    with: Supervision,
    settings: RuntimeSettings,
    /// Serializes changes (load, unload, reload, ...), which each take a
    /// while and must not interleave for one plugin.
    changing: Mutex<()>,
}

impl PluginRuntime {
    /// Starts each plugin after its cursor, on a supervising thread of its
    /// own, and the thread that records the cursors.
    pub fn start(
        loaded: Vec<LoadedPlugin>,
        cursors: Cursors,
        services: HostServices,
        settings: RuntimeSettings,
        stop_node: Arc<StopRequest>,
    ) -> Result<PluginRuntime, StoreError> {
        load::remove_stale_copies(&copies_dir(&settings.data_dir));
        let plugins = Arc::new(Plugins::default());
        let flusher = match CursorFlusher::start(cursors.clone(), plugins.clone()) {
            Ok(flusher) => Some(flusher),
            Err(e) => {
                tracing::error!(
                    "cannot start the thread that records plugin cursors: {e}; they are recorded at shutdown only"
                );
                None
            }
        };
        let runtime = PluginRuntime {
            plugins,
            threads: Mutex::new(HashMap::new()),
            flusher: Mutex::new(flusher),
            with: Supervision {
                dead_letters: DeadLetters::new(&settings.data_dir),
                services,
                policy: settings.policy.clone(),
                stopping: Arc::new(Stopping::default()),
                cursors,
                stop_node,
            },
            settings,
            changing: Mutex::new(()),
        };
        for plugin in loaded {
            let name = plugin.entry.name.clone();
            if let Err(e) = runtime.start_plugin(plugin) {
                match e {
                    LifecycleError::Store(e) => return Err(e),
                    other => tracing::error!(plugin = %name, "{other}"),
                }
            }
        }
        Ok(runtime)
    }

    /// The plugins, as they are now and will be.
    pub fn plugins(&self) -> &Arc<Plugins> {
        &self.plugins
    }

    /// What the plugins share: exchange, event log, advertised links, metrics.
    pub fn services(&self) -> &HostServices {
        &self.with.services
    }

    /// The dead-letter files of the node's plugins.
    pub fn dead_letters(&self) -> &DeadLetters {
        &self.with.dead_letters
    }

    /// Starts a plugin after its cursor; a plugin new to the store starts
    /// with the next event published, and its cursor is recorded at once,
    /// so a crash before its first event cannot make it skip what is
    /// published meanwhile.
    fn start_plugin(&self, plugin: LoadedPlugin) -> Result<Arc<PluginRecord>, LifecycleError> {
        let name = plugin.entry.name.clone();
        if self.plugins.get(&name).is_some() {
            return Err(LifecycleError::AlreadyLoaded(name));
        }
        let cursor = match self.with.cursors.get(&name)? {
            Some(cursor) => cursor,
            None => {
                let head = self.with.services.exchange.head();
                self.with.cursors.save(&[(name.as_str(), head)])?;
                head
            }
        };
        tracing::info!(
            plugin = %name,
            file = %plugin.origin.display(),
            api = %plugin.api_version,
            events = %plugin.event_types,
            isolation = plugin.isolation.name(),
            "plugin loaded; resuming after event {cursor}"
        );
        let record = Arc::new(PluginRecord::new(plugin));
        let supervisor = Supervisor {
            record: record.clone(),
            with: self.with.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("plugin {name}"))
            .spawn(move || supervisor.run(cursor))
            .map_err(|source| LifecycleError::Spawn {
                plugin: name.clone(),
                source,
            })?;
        self.threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(Arc::as_ptr(&record) as usize, thread);
        self.plugins.add(record.clone());
        Ok(record)
    }

    /// Waits until every plugin is ready or failed, at most `timeout`, and
    /// returns the state of each.
    pub fn wait_started(&self, timeout: Duration) -> Vec<(Arc<PluginRecord>, State)> {
        let deadline = Instant::now() + timeout;
        self.plugins
            .list()
            .into_iter()
            .map(|r| {
                let state = r.wait_started(deadline);
                (r, state)
            })
            .collect()
    }

    fn running(&self, name: &str) -> Result<Arc<PluginRecord>, LifecycleError> {
        self.plugins
            .get(name)
            .ok_or_else(|| LifecycleError::NotLoaded(name.to_owned()))
    }

    fn guard(&self) -> Result<std::sync::MutexGuard<'_, ()>, LifecycleError> {
        if self.with.stopping.is_set() {
            return Err(LifecycleError::Stopping);
        }
        Ok(self.changing.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Loads a plugin that is not loaded: it resumes after its cursor, if
    /// it ran against this store before. Waits for it to start (at most
    /// the startup timeout); one that fails to is unloaded again.
    pub fn load(&self, plugin: LoadedPlugin) -> Result<Arc<PluginRecord>, LifecycleError> {
        let _changing = self.guard()?;
        let record = self.start_plugin(plugin)?;
        match self.failed_to_start(&record) {
            None => Ok(record),
            Some(reason) => {
                self.stop_plugin(&record)?;
                let e = LifecycleError::NotStarted {
                    plugin: record.name().to_owned(),
                    reason,
                };
                tracing::error!(plugin = %record.name(), "{e}");
                Err(e)
            }
        }
    }

    /// Waits for a plugin just started, at most the startup timeout; why it
    /// did not start, if it did not (one still starting then is left to it).
    fn failed_to_start(&self, record: &PluginRecord) -> Option<String> {
        let deadline = Instant::now() + self.settings.startup_timeout;
        match record.wait_started(deadline) {
            State::Running | State::Starting => None,
            State::Failed(reason) => Some(reason),
            State::Restarting | State::Stopped => Some(
                record
                    .last_error()
                    .unwrap_or_else(|| "its `run` returned before it was ready".into()),
            ),
        }
    }

    /// Stops delivering to a plugin, lets it finish what its queue holds,
    /// and unloads it; its cursor stays in the store for a later load.
    /// Returns that cursor.
    pub fn unload(&self, name: &str) -> Result<u64, LifecycleError> {
        let _changing = self.guard()?;
        let record = self.running(name)?;
        self.stop_plugin(&record)
    }

    fn stop_plugin(&self, record: &Arc<PluginRecord>) -> Result<u64, LifecycleError> {
        record.request_stop(&self.with.services.exchange);
        self.wait_stopped(record, self.settings.shutdown_timeout);
        let cursor = record.progress().finished();
        self.with.cursors.save(&[(record.name(), cursor)])?;
        self.plugins.remove(record);
        self.with.services.advertised.remove_plugin(record.name());
        forget_metrics(&self.with.services.metrics, record.name());
        tracing::info!(plugin = %record.name(), "plugin unloaded after event {cursor}");
        Ok(cursor)
    }

    /// Waits for a stopping plugin's supervisor to end; one that makes no
    /// progress for `timeout` is abandoned (a child process is killed, a
    /// thread left to end with the process).
    fn wait_stopped(&self, record: &Arc<PluginRecord>, timeout: Duration) {
        let mut last = (record.progress().delivered(), Instant::now());
        while !record.is_done() {
            let delivered = record.progress().delivered();
            if delivered != last.0 {
                last = (delivered, Instant::now());
            } else if last.1.elapsed() >= timeout {
                tracing::warn!(
                    plugin = %record.name(),
                    "plugin did not stop within {} ms of its last progress; abandoning it",
                    timeout.as_millis()
                );
                record.abandon();
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.join(record);
    }

    /// Joins the supervisor thread of a plugin that is done.
    fn join(&self, record: &Arc<PluginRecord>) {
        let thread = self
            .threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(Arc::as_ptr(record) as usize));
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }

    /// Replaces a loaded plugin with `new` (its library read again, or
    /// another entry): the old instance stops after what its queue holds,
    /// and the new one starts from the old one's durable cursor. If the new
    /// one does not start (fails, or is not ready within the startup
    /// timeout), the old one runs again and the error is returned.
    pub fn reload(&self, new: LoadedPlugin) -> Result<Arc<PluginRecord>, LifecycleError> {
        let _changing = self.guard()?;
        let old = self.running(&new.entry.name)?;
        let previous = old.plugin.clone();
        let paused = old.is_paused();
        self.stop_plugin(&old)?;
        let record = self.start_plugin(new)?;
        record.set_paused(paused);
        let Some(reason) = self.failed_to_start(&record) else {
            return Ok(record);
        };
        self.stop_plugin(&record)?;
        let back = self.start_plugin(previous)?;
        back.set_paused(paused);
        if let Some(again) = self.failed_to_start(&back) {
            tracing::error!(plugin = %back.name(), "the previous instance did not start again: {again}");
        }
        let e = LifecycleError::DidNotStart {
            plugin: record.name().to_owned(),
            reason,
        };
        tracing::error!(plugin = %record.name(), "{e}");
        Err(e)
    }

    /// Runs a plugin again with the same library: after a failure, or to
    /// start it afresh.
    pub fn restart(&self, name: &str) -> Result<Arc<PluginRecord>, LifecycleError> {
        let _changing = self.guard()?;
        let old = self.running(name)?;
        let plugin = old.plugin.clone();
        let paused = old.is_paused();
        self.stop_plugin(&old)?;
        let record = self.start_plugin(plugin)?;
        record.set_paused(paused);
        if let Some(reason) = self.failed_to_start(&record) {
            tracing::error!(plugin = %name, "plugin did not start again: {reason}");
        }
        Ok(record)
    }

    /// Holds (`true`) or resumes delivery to a plugin.
    pub fn pause(&self, name: &str, paused: bool) -> Result<Arc<PluginRecord>, LifecycleError> {
        let _changing = self.guard()?;
        let record = self.running(name)?;
        record.set_paused(paused);
        tracing::info!(
            plugin = %name,
            "delivery {}",
            if paused { "paused" } else { "resumed" }
        );
        Ok(record)
    }

    /// Closes every queue and waits for the plugins to drain them and return,
    /// then records where each got to. A plugin that makes no progress for
    /// the shutdown timeout is abandoned (its thread ends with the process).
    pub fn shutdown(&self) {
        let _changing = self.changing.lock().unwrap_or_else(|e| e.into_inner());
        self.with.stopping.set();
        self.with.services.exchange.close();
        let timeout = self.settings.shutdown_timeout;
        let records = self.plugins.list();
        let mut waiting: Vec<(usize, u64, Instant)> = (0..records.len())
            .map(|i| (i, records[i].progress().delivered(), Instant::now()))
            .collect();
        while !waiting.is_empty() {
            waiting.retain_mut(|(i, last_delivered, last_progress)| {
                let record = &records[*i];
                if record.is_done() {
                    self.join(record);
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
                    record.abandon();
                    return false;
                }
                true
            });
            if !waiting.is_empty() {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let flusher = self
            .flusher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(flusher) = flusher {
            flusher.stop();
        }
    }
}

/// Drops an unloaded plugin's series from the per-plugin metrics.
fn forget_metrics(metrics: &Metrics, plugin: &str) {
    let labels = vec![("plugin".to_owned(), plugin.to_owned())];
    metrics.plugin_delivered.remove(&labels);
    metrics.plugin_lag.remove(&labels);
    metrics.plugin_queue_depth.remove(&labels);
    metrics.plugin_restarts.remove(&labels);
    metrics.plugin_dead_letters.remove(&labels);
    for state in State::NAMES {
        metrics.plugin_state.remove(&state_labels(plugin, state));
    }
}

fn state_labels(plugin: &str, state: &str) -> Vec<(String, String)> {
    vec![
        ("plugin".to_owned(), plugin.to_owned()),
        ("state".to_owned(), state.to_owned()),
    ]
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
        // Counted where events are dead-lettered; made here so that every
        // plugin's series exists from the first scrape, at 0.
        let _ = metrics.plugin_dead_letters.get_or_create(&labels);
        let current = record.state().name();
        for state in State::NAMES {
            metrics
                .plugin_state
                .get_or_create(&state_labels(record.name(), state))
                .set(i64::from(state == current));
        }
    }
}
