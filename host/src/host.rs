//! One host: the event log, the exchange, and the running plugins.

use std::path::Path;
use std::sync::Arc;

use eventhost_plugin_api::Event;

use crate::config::Config;
use crate::exchange::Exchange;
use crate::plugin_manager::{self, LoadError, PluginManager, RunningPlugin, State};
use crate::store::{Store, StoreError};

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
        for p in &loaded {
            tracing::info!(
                plugin = %p.entry.name,
                file = %p.file.display(),
                api = %p.api_version,
                events = %p.event_types,
                "plugin loaded"
            );
        }
        let plugins = PluginManager::start(loaded, &exchange);
        let host = Host {
            store,
            exchange,
            plugins,
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

    /// The newest published sequence number.
    pub fn head(&self) -> u64 {
        self.exchange.head()
    }

    /// Tells every plugin to stop once its queue is drained, and waits for them.
    pub fn shutdown(self) {
        tracing::info!("stopping plugins");
        self.plugins
            .shutdown(&self.exchange, self.config.host.shutdown_timeout);
        tracing::info!("stopped");
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
