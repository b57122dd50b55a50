//! Loads the configured plugins and runs each on its own thread.
//!
//! A plugin's `run` consumes its own queue; the manager tracks whether it
//! started, failed or stopped, and at shutdown gives each plugin time to
//! drain its queue, abandoning one that stops making progress so that a
//! plugin stuck in its own code cannot keep the host from exiting.

mod load;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RResult, RStr};
use eventhost_plugin_api::ffi::{HostContext, HostContext_TO, HostQueue_TO, LogLevel, RunArgs};

pub use load::{LoadError, LoadErrorKind, LoadedPlugin, library_file_name, load, resolve};

use crate::exchange::{Exchange, Progress};

/// Where a plugin is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// `run` was called; the plugin has not said it is ready yet.
    Starting,
    /// The plugin said it is ready.
    Running,
    /// The plugin reported a failure, returned an error, or panicked.
    Failed(String),
    /// `run` returned without error.
    Stopped,
}

/// A plugin's state, shared between the manager and the plugin's context.
#[derive(Default)]
pub struct Status {
    state: Mutex<Option<State>>,
    changed: Condvar,
    finished: AtomicBool,
}

impl Status {
    pub fn state(&self) -> State {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or(State::Starting)
    }

    fn set(&self, state: State) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = Some(state);
        self.changed.notify_all();
    }

    /// Waits until the state is no longer `Starting`, or the deadline passes.
    fn wait_started(&self, deadline: Instant) -> State {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while state.is_none() {
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
        state.clone().unwrap_or(State::Starting)
    }

    fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }
}

/// The URLs plugins advertise to the host's clients, by name (`rel`).
#[derive(Default)]
pub struct Advertised {
    links: Mutex<BTreeMap<String, Link>>,
}

/// One advertised URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub plugin: String,
    pub url: String,
}

impl Advertised {
    /// The URL advertised under `rel`, if a plugin did.
    pub fn get(&self, rel: &str) -> Option<Link> {
        self.links
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(rel)
            .cloned()
    }

    fn set(&self, rel: &str, link: Link) {
        let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = links.get(rel).filter(|old| old.plugin != link.plugin) {
            tracing::warn!(
                plugin = %link.plugin,
                "plugin advertises `{rel}`, replacing the URL plugin `{}` advertised",
                old.plugin
            );
        }
        links.insert(rel.to_owned(), link);
    }

    /// Forgets what a plugin advertised, once it no longer runs.
    fn remove_plugin(&self, plugin: &str) {
        let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        links.retain(|_, link| link.plugin != plugin);
    }
}

/// The host's side of one plugin's `HostContext`.
struct PluginContext {
    name: String,
    config_json: String,
    status: Arc<Status>,
    advertised: Arc<Advertised>,
}

impl HostContext for PluginContext {
    fn plugin_name(&self) -> RStr<'_> {
        RStr::from_str(&self.name)
    }

    fn config_json(&self) -> RStr<'_> {
        RStr::from_str(&self.config_json)
    }

    fn log(&self, level: LogLevel, message: RStr<'_>) {
        let plugin = &self.name;
        match level {
            LogLevel::Error => tracing::error!(target: "eventhost::plugin", plugin, "{message}"),
            LogLevel::Warn => tracing::warn!(target: "eventhost::plugin", plugin, "{message}"),
            LogLevel::Info => tracing::info!(target: "eventhost::plugin", plugin, "{message}"),
            LogLevel::Debug => tracing::debug!(target: "eventhost::plugin", plugin, "{message}"),
            LogLevel::Trace => tracing::trace!(target: "eventhost::plugin", plugin, "{message}"),
        }
    }

    fn ready(&self) {
        tracing::info!(plugin = %self.name, "plugin ready");
        self.status.set(State::Running);
    }

    fn failed(&self, reason: RStr<'_>) {
        tracing::error!(plugin = %self.name, "plugin reports failure: {reason}");
        self.status.set(State::Failed(reason.to_string()));
    }

    fn advertise(&self, rel: RStr<'_>, url: RStr<'_>) {
        tracing::info!(plugin = %self.name, "plugin advertises {rel} = {url}");
        self.advertised.set(
            rel.as_str(),
            Link {
                plugin: self.name.clone(),
                url: url.to_string(),
            },
        );
    }
}

/// A plugin whose `run` was started.
pub struct RunningPlugin {
    pub plugin: LoadedPlugin,
    pub status: Arc<Status>,
    progress: Arc<Progress>,
    thread: Option<JoinHandle<()>>,
}

impl RunningPlugin {
    pub fn name(&self) -> &str {
        &self.plugin.entry.name
    }

    /// The sequence number of the last event the plugin received.
    pub fn delivered(&self) -> u64 {
        self.progress.delivered()
    }

    /// The sequence number of the last event the plugin finished: its cursor.
    pub fn finished(&self) -> u64 {
        self.progress.finished()
    }

    /// The plugin's progress, which outlives the manager's borrow.
    pub fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }
}

/// The running plugins of one host.
pub struct PluginManager {
    plugins: Vec<RunningPlugin>,
}

impl PluginManager {
    /// Subscribes each plugin to the exchange after its cursor and calls its
    /// `run` on a thread of its own.
    pub fn start(
        loaded: Vec<(LoadedPlugin, u64)>,
        exchange: &Arc<Exchange>,
        advertised: &Arc<Advertised>,
    ) -> PluginManager {
        let plugins = loaded
            .into_iter()
            .map(|(plugin, cursor)| start_one(plugin, cursor, exchange, advertised))
            .collect();
        PluginManager { plugins }
    }

    pub fn plugins(&self) -> &[RunningPlugin] {
        &self.plugins
    }

    /// Waits until every plugin is ready or failed, at most `timeout`, and
    /// returns the state of each.
    pub fn wait_started(&self, timeout: Duration) -> Vec<(&RunningPlugin, State)> {
        let deadline = Instant::now() + timeout;
        self.plugins
            .iter()
            .map(|p| (p, p.status.wait_started(deadline)))
            .collect()
    }

    /// Closes every queue and waits for the plugins to drain them and return.
    /// A plugin that makes no progress for `timeout` is abandoned (its thread
    /// ends with the process).
    pub fn shutdown(mut self, exchange: &Exchange, timeout: Duration) {
        exchange.close();
        let mut waiting: Vec<(usize, u64, Instant)> = (0..self.plugins.len())
            .map(|i| (i, self.plugins[i].delivered(), Instant::now()))
            .collect();
        while !waiting.is_empty() {
            waiting.retain_mut(|(i, last_delivered, last_progress)| {
                let p = &mut self.plugins[*i];
                if p.status.is_finished() {
                    if let Some(thread) = p.thread.take() {
                        let _ = thread.join();
                    }
                    return false;
                }
                let delivered = p.delivered();
                if delivered != *last_delivered {
                    *last_delivered = delivered;
                    *last_progress = Instant::now();
                } else if last_progress.elapsed() >= timeout {
                    tracing::warn!(
                        plugin = %p.name(),
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

fn start_one(
    plugin: LoadedPlugin,
    cursor: u64,
    exchange: &Arc<Exchange>,
    advertised: &Arc<Advertised>,
) -> RunningPlugin {
    let name = plugin.entry.name.clone();
    let status = Arc::new(Status::default());
    let queue = exchange.subscribe(
        &name,
        plugin.event_types,
        plugin.entry.queue_capacity,
        cursor,
    );
    let progress = queue.progress();
    let context = PluginContext {
        name: name.clone(),
        config_json: plugin.entry.config.to_string(),
        status: status.clone(),
        advertised: advertised.clone(),
    };
    let thread_advertised = advertised.clone();
    let args = RunArgs::new(
        HostContext_TO::from_value(context, TD_Opaque),
        HostQueue_TO::from_value(queue, TD_Opaque),
    );
    let run = plugin.module.run();
    let thread_status = status.clone();
    let thread_name = name.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("plugin:{name}"))
        .spawn(move || {
            let outcome = run(args);
            let state = match outcome {
                RResult::ROk(()) => {
                    tracing::info!(plugin = %thread_name, "plugin stopped");
                    State::Stopped
                }
                RResult::RErr(reason) => {
                    tracing::error!(plugin = %thread_name, "plugin failed: {reason}");
                    State::Failed(reason.into_string())
                }
            };
            thread_advertised.remove_plugin(&thread_name);
            thread_status.finished.store(true, Ordering::Release);
            thread_status.set(state);
        });
    let thread = match spawned {
        Ok(thread) => Some(thread),
        Err(e) => {
            let reason = format!("cannot start its thread: {e}");
            tracing::error!(plugin = %name, "{reason}");
            status.finished.store(true, Ordering::Release);
            status.set(State::Failed(reason));
            None
        }
    };
    RunningPlugin {
        plugin,
        status,
        progress,
        thread,
    }
}
