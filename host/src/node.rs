//! A node: where the parts are put together, in the order events flow.
//!
//! [`Node::start`] opens the store, the event log and its exchange, loads
//! and starts the plugins, and hands back the event log's one writer for
//! the node's source: [`Node::serve`] gives it to the node's ledger, or on
//! an edge node (`[source] kind = "nats"`) to the upstream source that
//! follows a ledger node's stream, and serves the HTTP API (`eventhost
//! run`); `eventhost replay` gives it to a replay.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::admin::dashboard::Dashboard;
use crate::admin::{self, Admin};
use crate::api::{self, Api};
use crate::config::Config;
use crate::event_log::{self, EventLog};
use crate::exchange::Exchange;
use crate::metrics::Metrics;
use crate::plugin_runtime::cursors::Cursors;
use crate::plugin_runtime::{
    self, Advertised, HostServices, LoadError, PluginRuntime, Plugins, RuntimeSettings, State,
};
use crate::shutdown::StopRequest;
use crate::sources::ledger::chain_store::ChainStore;
use crate::sources::ledger::{Ledger, LedgerError};
use crate::sources::upstream::{self, Upstream};
use crate::store::{Durability, Store, StoreError};

/// Why a node could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Load(Vec<LoadError>),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("plugin `{plugin}` failed to start: {reason}")]
    PluginFailed { plugin: String, reason: String },
    #[error("cannot start the ledger: {0}")]
    Ledger(#[from] LedgerError),
    #[error("cannot start following the stream: {0}")]
    Upstream(#[from] upstream::StartError),
    /// An edge node's source stopped for good.
    #[error("the edge stopped following its stream: {0}")]
    Unfollowable(String),
    #[error("cannot listen on {bind}: {source}; set [api] bind")]
    Listen {
        bind: String,
        source: std::io::Error,
    },
    #[error("cannot start the HTTP runtime: {0}")]
    Runtime(std::io::Error),
    #[error("the HTTP API failed: {0}")]
    Serve(std::io::Error),
    #[error(transparent)]
    ApiLimits(#[from] api::server::descriptors::CapError),
    #[error("cannot listen on {bind} for the admin API: {source}; set [admin] bind (or \"off\")")]
    AdminListen {
        bind: String,
        source: std::io::Error,
    },
    /// A plugin with `on_failure = "stop-node"` failed.
    #[error("{0}")]
    PluginStopped(String),
}

impl NodeError {
    /// Whether a plugin, rather than the node itself, is at fault.
    pub fn is_plugin_failure(&self) -> bool {
        matches!(
            self,
            NodeError::Load(_) | NodeError::PluginFailed { .. } | NodeError::PluginStopped(_)
        )
    }
}

pub struct Node {
    config: Config,
    store: Arc<Store>,
    runtime: Arc<PluginRuntime>,
    /// Drops old events, when retention is configured.
    pruner: Option<event_log::Pruner>,
    /// Set by a plugin whose failure must stop the node.
    stop_request: Arc<StopRequest>,
}

impl Node {
    /// Loads every configured plugin, opens the store at `store_path` with
    /// its event log, starts the plugins and waits for them to be ready.
    /// Returns the node and the event log's writer, for the node's source.
    ///
    /// A required plugin that fails to load or to start is an error; an
    /// optional one is logged and left out.
    pub fn start(
        config: &Config,
        store_path: &Path,
        durability: Durability,
    ) -> Result<(Node, EventLog), NodeError> {
        let (loaded, failed) = plugin_runtime::load_all(config);
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
            return Err(NodeError::Load(fatal));
        }

        let store = Arc::new(Store::open_with_cache(
            store_path,
            config.host.store_cache_bytes,
            durability,
        )?);
        let metrics = Arc::new(Metrics::new());
        let (log, exchange) = EventLog::open(store.clone(), &metrics)?;
        let services = HostServices {
            exchange,
            log: event_log::Reader::new(store.clone()),
            advertised: Arc::new(Advertised::default()),
            metrics,
        };
        let cursors = Cursors::open(store.clone())?;
        let stop_request = Arc::new(StopRequest::default());
        let settings = RuntimeSettings {
            policy: config.host.restart.clone(),
            startup_timeout: config.host.startup_timeout,
            shutdown_timeout: config.host.shutdown_timeout,
            data_dir: config.host.data_dir.clone(),
        };
        let runtime = Arc::new(PluginRuntime::start(
            loaded,
            cursors,
            services,
            settings,
            stop_request.clone(),
        )?);
        let pruner = event_log::Pruner::start(
            store.clone(),
            config.host.retention.clone(),
            protected(runtime.plugins().clone()),
            runtime.services().metrics.clone(),
        )
        .map_err(NodeError::Runtime)?;
        let node = Node {
            config: config.clone(),
            store,
            runtime,
            pruner,
            stop_request,
        };
        if let Err(e) = node.check_started() {
            node.shutdown();
            return Err(e);
        }
        Ok((node, log))
    }

    /// Waits for the plugins to start; the first required one that failed
    /// is an error.
    fn check_started(&self) -> Result<(), NodeError> {
        let timeout = self.config.host.startup_timeout;
        for (p, state) in self.runtime.wait_started(timeout) {
            // A plugin that fails while starting is a plugin that did not
            // start, whether or not it would be restarted.
            let reason = match state {
                State::Running | State::Stopped => continue,
                State::Starting => {
                    tracing::warn!(
                        plugin = %p.name(),
                        "plugin has not reported ready after {} ms (startup_timeout_ms); going on. \
                         Did its `run` call `ctx.ready()`?",
                        timeout.as_millis()
                    );
                    continue;
                }
                State::Failed(reason) => reason,
                State::Restarting => p.last_error().unwrap_or_default(),
            };
            if p.plugin.entry.required {
                return Err(NodeError::PluginFailed {
                    plugin: p.name().to_owned(),
                    reason,
                });
            }
            tracing::error!(
                plugin = %p.name(),
                "optional plugin did not start: {reason}; it is {} (required = false: going on without it)",
                p.state().name()
            );
        }
        Ok(())
    }

    /// The plugins, and how each is doing.
    pub fn plugins(&self) -> &Arc<Plugins> {
        self.runtime.plugins()
    }

    /// The exchange the event log publishes to.
    pub fn exchange(&self) -> &Arc<Exchange> {
        &self.runtime.services().exchange
    }

    /// Runs the node's source (committing through `log`): its ledger, or
    /// on an edge node the upstream source; and the HTTP API, until SIGINT
    /// or SIGTERM, or until the source stops for good. Then stops them in
    /// order: no new requests, then the source (the ledger commits what it
    /// accepted).
    pub fn serve(&self, log: EventLog) -> Result<(), NodeError> {
        let limits = api::limits(&self.config.api)?;
        let services = self.runtime.services();
        let source = Serving::start(&self.config, &self.store, log, &services.metrics)?;
        let router = api::router(Arc::new(Api {
            source: source.api(),
            exchange: services.exchange.clone(),
            advertised: services.advertised.clone(),
            metrics: services.metrics.clone(),
            plugins: self.plugins().clone(),
            config: self.config.api.clone(),
            reads: api::Reads::new(self.config.api.heavy_query_threads),
        }));
        let admin = Arc::new(Admin::new(self.runtime.clone(), self.config.clone()));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("http")
            .build()
            .map_err(NodeError::Runtime)?;
        let served = runtime.block_on(async {
            let bind = &self.config.api.bind;
            let (listener, address) = listen(bind).await.map_err(|source| NodeError::Listen {
                bind: bind.clone(),
                source,
            })?;
            let (stop_admin, admin_stops) = tokio::sync::oneshot::channel();
            let admin_task = self
                .serve_admin(admin.clone(), source.api().health(), admin_stops)
                .await?;
            reload_on_sighup(admin.clone());
            tracing::info!(
                plugins = self.plugins().list().len(),
                "{}; HTTP API on http://{address}; stop it with Ctrl-C or SIGTERM",
                source.running()
            );
            let source_stopped = source.stopped();
            let stop_request = self.stop_request.clone();
            // The API drains its connections first, within its own deadline.
            let deadline = self.config.api.shutdown_timeout + self.config.host.shutdown_timeout;
            let served = api::serve(listener, router, limits, services.metrics.clone(), async move {
                tokio::select! {
                    signal = shutdown_signal() => match signal {
                        Ok(signal) => tracing::info!("{signal} received"),
                        Err(e) => tracing::error!("cannot wait for signals: {e}; stopping"),
                    },
                    why = source_stopped => tracing::error!("stopping the node: {why}"),
                    () = stop_request.requested() => tracing::error!("stopping the node: a plugin asked for it"),
                }
                exit_after(deadline + STOP_GRACE);
            })
            .await
            .map_err(NodeError::Serve);
            let _ = stop_admin.send(());
            if let Some(task) = admin_task {
                let _ = task.await;
            }
            served
        });
        runtime.shutdown_timeout(Duration::from_secs(1));
        let fatal = source.shutdown(self.config.host.shutdown_timeout);
        if let Some(why) = self.stop_request.reason() {
            return Err(NodeError::PluginStopped(why));
        }
        match fatal {
            Some(e) => Err(e),
            None => served,
        }
    }

    /// Starts the admin API on its own listener, unless it is `off`; it
    /// stops when `stop` fires.
    async fn serve_admin(
        &self,
        admin: Arc<Admin>,
        health: api::SourceHealth,
        stop: tokio::sync::oneshot::Receiver<()>,
    ) -> Result<Option<tokio::task::JoinHandle<()>>, NodeError> {
        let bind = &self.config.admin.bind;
        if bind == "off" {
            return Ok(None);
        }
        let (listener, address) = listen(bind)
            .await
            .map_err(|source| NodeError::AdminListen {
                bind: bind.clone(),
                source,
            })?;
        tracing::info!("admin API on http://{address}");
        let sources = admin::dashboard::Sources {
            runtime: self.runtime.clone(),
            health,
        };
        let dashboard = Dashboard::start(sources, !self.config.admin.tokens.is_empty());
        let router = admin::router(admin, dashboard.clone());
        let observed = api::server::Observed::new(self.runtime.services().metrics.clone(), "admin");
        Ok(Some(tokio::spawn(async move {
            let stop = async {
                let _ = stop.await;
                // Its event streams end, so that open pages do not hold
                // the listener's shutdown.
                dashboard.stop();
            };
            if let Err(e) = api::server::serve(listener, router, ADMIN_LIMITS, observed, stop).await
            {
                tracing::error!("the admin API failed: {e}");
            }
        })))
    }

    /// Tells every plugin to stop once its queue is drained, waits for
    /// them, and records where each got to.
    pub fn shutdown(self) {
        if let Some(pruner) = self.pruner {
            pruner.stop();
        }
        tracing::info!("stopping plugins");
        self.runtime.shutdown();
        tracing::info!("stopped");
    }
}

/// The node's source while it serves.
enum Serving {
    /// A ledger node's own ledger.
    Ledger {
        ledger: Arc<Ledger>,
        chain: ChainStore,
    },
    /// An edge node's: a ledger node's stream.
    Edge(Upstream),
}

impl Serving {
    /// The source `config` asks for, committing through `log`.
    fn start(
        config: &Config,
        store: &Arc<Store>,
        log: EventLog,
        metrics: &Arc<Metrics>,
    ) -> Result<Serving, NodeError> {
        Ok(match &config.upstream {
            None => {
                let chain = ChainStore::open(store.clone())?;
                let ledger =
                    Ledger::start(chain.clone(), log, metrics.clone(), config.ledger.clone())?;
                Serving::Ledger {
                    ledger: Arc::new(ledger),
                    chain,
                }
            }
            Some(upstream) => {
                Serving::Edge(Upstream::start(upstream, log, store.clone(), metrics)?)
            }
        })
    }

    /// What the API serves of it.
    fn api(&self) -> api::Source {
        match self {
            Serving::Ledger { ledger, chain } => api::Source::Ledger(api::Tables {
                ledger: ledger.clone(),
                chain: chain.clone(),
            }),
            Serving::Edge(upstream) => api::Source::Edge(upstream.status().clone()),
        }
    }

    /// The log line that says the node runs.
    fn running(&self) -> &'static str {
        match self {
            Serving::Ledger { .. } => "eventhost running",
            Serving::Edge(_) => "eventhost edge node running",
        }
    }

    /// Resolves, with what happened, once the source has stopped for good.
    fn stopped(&self) -> Pin<Box<dyn Future<Output = &'static str> + Send>> {
        match self {
            Serving::Ledger { ledger, .. } => {
                let status = ledger.status().clone();
                Box::pin(async move {
                    status.stopped().await;
                    "its ledger stopped"
                })
            }
            Serving::Edge(upstream) => {
                let status = upstream.status().clone();
                Box::pin(async move {
                    status.stopped().await;
                    "it cannot follow its stream"
                })
            }
        }
    }

    /// Stops the source (within `timeout`, for a ledger whose store
    /// fails); returns why it had stopped for good, if it had.
    fn shutdown(self, timeout: Duration) -> Option<NodeError> {
        match self {
            Serving::Ledger { ledger, .. } => {
                let fatal = ledger.status().fatal();
                match Arc::try_unwrap(ledger) {
                    Ok(ledger) => ledger.shutdown(timeout),
                    Err(_) => {
                        tracing::warn!("requests still hold the ledger; it stops with the process")
                    }
                }
                fatal.map(|why| NodeError::Ledger(LedgerError::Fatal(why)))
            }
            Serving::Edge(upstream) => {
                let fatal = upstream.status().fatal();
                upstream.shutdown();
                fatal.map(NodeError::Unfollowable)
            }
        }
    }
}

/// What the admin listener allows: a few operators and a dashboard, so a
/// small connection cap (each listener's cap must fit in the open-file
/// limit on its own).
const ADMIN_LIMITS: api::server::Limits = api::server::Limits {
    max_connections: 64,
    max_header_bytes: 16 * 1024,
    body: api::server::BodyLimits {
        max_bytes: 1 << 20,
        timeout: Duration::from_secs(10),
    },
    body_memory_bytes: 8 << 20,
    timeouts: api::server::Timeouts {
        idle: Duration::from_secs(60),
        header: Duration::from_secs(10),
    },
    shutdown_timeout: Duration::from_secs(2),
};

/// What a stopping node may take beyond `shutdown_timeout_ms` before it
/// ends itself (the HTTP server's, the ledger's and the plugins' deadlines
/// each run up to `shutdown_timeout_ms`, in turn).
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// Ends the process if it is still running `after` from now: a stopping
/// node ends within a bounded time, whatever its parts are doing (a store
/// that fails, a plugin that ignores its queue closing).
pub fn exit_after(after: Duration) {
    let spawned = std::thread::Builder::new()
        .name("stop deadline".into())
        .spawn(move || {
            std::thread::sleep(after);
            tracing::error!(
                "the node did not stop within {} ms of being told to; exiting now (plugin \
                 cursors were recorded at most 200 ms ago)",
                after.as_millis()
            );
            std::process::exit(1);
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start the stop deadline's thread: {e}");
    }
}

/// The last event every required plugin has finished: retention keeps
/// everything after it. (An optional plugin that falls behind what is kept
/// is told, and goes on from the oldest event kept.)
fn protected(plugins: Arc<Plugins>) -> impl Fn() -> u64 + Send + 'static {
    move || {
        plugins
            .list()
            .iter()
            .filter(|p| p.plugin.entry.required)
            .map(|p| p.progress().finished())
            .min()
            .unwrap_or(u64::MAX)
    }
}

/// Reloads the configuration on each SIGHUP, as `eventhost admin
/// reload-config` does.
fn reload_on_sighup(admin: Arc<Admin>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(hangups) => hangups,
            Err(e) => {
                tracing::error!(
                    "cannot wait for SIGHUP: {e}; reload with `eventhost admin reload-config`"
                );
                return;
            }
        };
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP received: reloading the configuration");
            let admin = admin.clone();
            // reload_config logs what it did, or why it did nothing.
            let _ = tokio::task::spawn_blocking(move || admin::reload_config(&admin)).await;
        }
    });
}

/// Blocks until SIGINT or SIGTERM.
pub fn wait_for_signal() -> std::io::Result<&'static str> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(shutdown_signal())
}

async fn shutdown_signal() -> std::io::Result<&'static str> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.map(|()| "SIGINT"),
            _ = term.recv() => Ok("SIGTERM"),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.map(|()| "Ctrl-C")
    }
}

/// A listener on `bind`, and the address it got (the port chosen for
/// `:0`), as the log and the tests print it.
async fn listen(bind: &str) -> std::io::Result<(tokio::net::TcpListener, String)> {
    let listener = tokio::net::TcpListener::bind(bind).await?;
    let address = listener
        .local_addr()
        .map_or_else(|_| bind.to_owned(), |a| a.to_string());
    Ok((listener, address))
}
