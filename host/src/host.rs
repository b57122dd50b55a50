//! One host: the event log, the exchange, and the running plugins.

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{RecvTimeoutError, Sender};
use eventhost_plugin_api::Event;

use crate::config::Config;
use crate::exchange::Exchange;
use crate::metrics::Metrics;
use crate::plugin_manager::{
    self, Advertised, LoadError, PluginManager, PluginRecord, Services, State,
};
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
    services: Services,
    plugins: PluginManager,
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

        let store = Arc::new(Store::open_with_cache(
            store_path,
            config.host.store_cache_bytes,
        )?);
        let metrics = Arc::new(Metrics::new());
        let exchange = Exchange::new(store.clone(), metrics.clone())?;
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

        let services = Services {
            store: store.clone(),
            exchange,
            advertised: Arc::new(Advertised::default()),
            metrics,
        };
        let plugins = PluginManager::start(with_cursors, &services, &config.host.restart);
        let cursors = CursorFlusher::start(store, plugins.records().clone());
        let host = Host {
            services,
            plugins,
            cursors,
            config: config.clone(),
        };
        let mut failure = None;
        for (p, state) in host.plugins.wait_started(config.host.startup_timeout) {
            // A plugin that fails while starting is a plugin that did not
            // start, whether or not it would be restarted.
            let reason = match state {
                State::Running | State::Stopped => continue,
                State::Starting => {
                    tracing::warn!(
                        plugin = %p.name(),
                        "plugin has not reported ready after {} ms; going on",
                        config.host.startup_timeout.as_millis()
                    );
                    continue;
                }
                State::Failed(reason) => reason,
                State::Restarting => p.last_error().unwrap_or_default(),
            };
            if p.plugin.entry.required && failure.is_none() {
                failure = Some(StartError::PluginFailed {
                    plugin: p.name().to_owned(),
                    reason,
                });
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
        self.services.store.append(&mut events)?;
        for event in events {
            self.services.exchange.publish(event);
        }
        Ok(())
    }

    /// Every configured plugin that loaded, and how it is doing.
    pub fn plugins(&self) -> &Arc<[Arc<PluginRecord>]> {
        self.plugins.records()
    }

    /// What the host shares with its plugins and its API: the store, the
    /// exchange, advertised links, metrics.
    pub fn services(&self) -> &Services {
        &self.services
    }

    /// Tells every plugin to stop once its queue is drained, waits for
    /// them, and records where each got to.
    pub fn shutdown(self) {
        tracing::info!("stopping plugins");
        self.plugins
            .shutdown(&self.services.exchange, self.config.host.shutdown_timeout);
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
    fn start(store: Arc<Store>, plugins: Arc<[Arc<PluginRecord>]>) -> CursorFlusher {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let thread = std::thread::spawn(move || {
            let mut saved: Vec<u64> = plugins.iter().map(|p| p.progress().finished()).collect();
            loop {
                let last_round = match stopped.recv_timeout(CURSOR_FLUSH_INTERVAL) {
                    Err(RecvTimeoutError::Timeout) => false,
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => true,
                };
                flush_cursors(&store, &plugins, &mut saved);
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

fn flush_cursors(store: &Store, plugins: &[Arc<PluginRecord>], saved: &mut [u64]) {
    // One snapshot: a cursor that moves while we write is caught next round.
    let now: Vec<u64> = plugins.iter().map(|p| p.progress().finished()).collect();
    let changed: Vec<(&str, u64)> = plugins
        .iter()
        .zip(now.iter().zip(saved.iter()))
        .filter(|(_, (now, saved))| now != saved)
        .map(|(p, (now, _))| (p.name(), *now))
        .collect();
    if changed.is_empty() {
        return;
    }
    match store.save_cursors(&changed) {
        Ok(()) => saved.copy_from_slice(&now),
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
