//! One host: the event log, the exchange, and the running plugins.

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{RecvTimeoutError, Sender};
use eventhost_plugin_api::Event;

use crate::config::Config;
use crate::exchange::{Exchange, Progress};
use crate::plugin_manager::{self, Advertised, LoadError, PluginManager, RunningPlugin, State};
use crate::store::{Store, StoreError};

/// How often plugin cursors are written to the store. After a crash a plugin
/// may receive again what it finished in the last interval; within one run
/// it never receives an event twice.
const CURSOR_FLUSH_INTERVAL: Duration = Duration::from_millis(200);

/// File name of the store inside the data directory.
pub const STORE_FILE: &str = "eventhost.redb";

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Load(Vec<LoadError>),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("plugin `{plugin}` failed to start: {reason}")]
    PluginFailed { plugin: String, reason: String },
}

pub struct Host {
    store: Arc<Store>,
    exchange: Arc<Exchange>,
    plugins: PluginManager,
    advertised: Arc<Advertised>,
    cursors: CursorFlusher,
    config: Config,
}

impl Host {
    /// Loads every configured plugin, opens the store at `store_path`, starts
    /// the plugins and waits for them to be ready.
    ///
    /// A required plugin that fails to load or to start is an error; an
    /// optional one is logged and left out.
    pub fn start(config: &Config, store_path: &Path) -> Result<Host, StartError> {
        let (loaded, failed) = load_plugins(config);
        let fatal: Vec<LoadError> = failed
            .into_iter()
            .filter_map(|e| {
                let required = config
                    .plugins
                    .iter()
                    .any(|p| p.name == e.plugin && p.required);
                if required {
                    Some(e)
                } else {
                    tracing::warn!("{e} (required = false: going on without it)");
                    None
                }
            })
            .collect();
        if !fatal.is_empty() {
            return Err(StartError::Load(fatal));
        }

        let store = Arc::new(Store::open(store_path)?);
        let exchange = Exchange::new(store.clone())?;
        let head = exchange.head();
        let mut with_cursors = Vec::with_capacity(loaded.len());
        let mut new_cursors = Vec::new();
        for p in loaded {
            // A plugin new to this store starts with the next event; its
            // cursor is recorded now so a crash before its first event
            // cannot make it skip what is published meanwhile.
            let cursor = match store.cursor(&p.entry.name)? {
                Some(cursor) => cursor,
                None => {
                    new_cursors.push(p.entry.name.clone());
                    head
                }
            };
            tracing::info!(
                plugin = %p.entry.name,
                file = %p.file.display(),
                api = %p.api_version,
                events = %p.event_types,
                "plugin loaded; resuming after event {cursor}"
            );
            with_cursors.push((p, cursor));
        }
        let fresh: Vec<(&str, u64)> = new_cursors.iter().map(|n| (n.as_str(), head)).collect();
        store.save_cursors(&fresh)?;

        let advertised = Arc::new(Advertised::default());
        let plugins = PluginManager::start(with_cursors, &exchange, &advertised);
        let cursors = CursorFlusher::start(store.clone(), &plugins);
        let host = Host {
            store,
            exchange,
            plugins,
            advertised,
            cursors,
            config: config.clone(),
        };
        let mut failure = None;
        for (p, state) in host.plugins.wait_started(config.host.startup_timeout) {
            match state {
                State::Running | State::Stopped => {}
                State::Starting => tracing::warn!(
                    plugin = %p.name(),
                    "plugin has not reported ready after {} ms; going on",
                    config.host.startup_timeout.as_millis()
                ),
                State::Failed(reason) if p.plugin.entry.required && failure.is_none() => {
                    failure = Some(StartError::PluginFailed {
                        plugin: p.name().to_owned(),
                        reason,
                    });
                }
                State::Failed(_) => {}
            }
        }
        match failure {
            Some(e) => {
                host.shutdown();
                Err(e)
            }
            None => Ok(host),
        }
    }

    /// Writes the events to the event log, numbering them, then publishes them.
    pub fn publish(&self, mut events: Vec<Event>) -> Result<(), StoreError> {
        self.store.append(&mut events)?;
        for event in events {
            self.exchange.publish(event);
        }
        Ok(())
    }

    pub fn plugins(&self) -> &[RunningPlugin] {
        self.plugins.plugins()
    }

    /// The URLs the plugins advertise.
    pub fn advertised(&self) -> &Arc<Advertised> {
        &self.advertised
    }

    /// The store holding the event log and the chain.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Where events are published.
    pub fn exchange(&self) -> &Arc<Exchange> {
        &self.exchange
    }

    /// The newest published sequence number.
    pub fn head(&self) -> u64 {
        self.exchange.head()
    }

    /// Tells every plugin to stop once its queue is drained, waits for
    /// them, and records where each got to.
    pub fn shutdown(self) {
        tracing::info!("stopping plugins");
        self.plugins
            .shutdown(&self.exchange, self.config.host.shutdown_timeout);
        self.cursors.stop();
        tracing::info!("stopped");
    }
}

/// Writes plugin cursors to the store while the host runs, and once more at the end.
struct CursorFlusher {
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

impl CursorFlusher {
    fn start(store: Arc<Store>, plugins: &PluginManager) -> CursorFlusher {
        let plugins: Vec<(String, Arc<Progress>, u64)> = plugins
            .plugins()
            .iter()
            .map(|p| (p.name().to_owned(), p.progress(), p.finished()))
            .collect();
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let thread = std::thread::spawn(move || {
            let mut plugins = plugins;
            loop {
                let last_round = match stopped.recv_timeout(CURSOR_FLUSH_INTERVAL) {
                    Err(RecvTimeoutError::Timeout) => false,
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => true,
                };
                flush_cursors(&store, &mut plugins);
                if last_round {
                    return;
                }
            }
        });
        CursorFlusher { stop, thread }
    }

    fn stop(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}

fn flush_cursors(store: &Store, plugins: &mut [(String, Arc<Progress>, u64)]) {
    // One snapshot: a cursor that moves while we write is caught next round.
    let now: Vec<u64> = plugins.iter().map(|(_, p, _)| p.finished()).collect();
    let changed: Vec<(&str, u64)> = plugins
        .iter()
        .zip(&now)
        .filter(|((_, _, saved), now)| *saved != **now)
        .map(|((name, _, _), now)| (name.as_str(), *now))
        .collect();
    if changed.is_empty() {
        return;
    }
    match store.save_cursors(&changed) {
        Ok(()) => {
            for ((_, _, saved), now) in plugins.iter_mut().zip(now) {
                *saved = now;
            }
        }
        Err(e) => tracing::error!("cannot record plugin cursors: {e}; retrying"),
    }
}

/// Loads every configured plugin, returning the ones that loaded and the errors.
pub fn load_plugins(config: &Config) -> (Vec<plugin_manager::LoadedPlugin>, Vec<LoadError>) {
    let mut loaded = Vec::new();
    let mut failed = Vec::new();
    for entry in &config.plugins {
        match plugin_manager::load(entry, &config.host.plugin_dirs) {
            Ok(p) => loaded.push(p),
            Err(e) => failed.push(e),
        }
    }
    (loaded, failed)
}
