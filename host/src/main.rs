use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Parser, Subcommand};
use std::time::Duration;

use eventhost::api::{self, Api};
use eventhost::config::Config;
use eventhost::host::{self, Host, STORE_FILE, StartError};
use eventhost::ledger::{Ledger, LedgerConfig};
use eventhost::plugin_manager::{self, library_file_name};
use eventhost::replay;
use eventhost::store::Store;
use tracing_subscriber::EnvFilter;

/// A ledger node and plugin host for its events.
///
/// eventhost accepts transactions over a BigchainDB/Planetmint-compatible
/// HTTP API, commits them in blocks, and publishes BLOCK_VALID (1) and
/// BLOCK_INVALID (2) events to the plugins listed in its configuration
/// file. Each plugin is a shared library built against the
/// eventhost-plugin-api crate; it runs on a thread of its own or in a child
/// process, and consumes the events it subscribed to from its own queue.
/// `eventhost check-config` checks a configuration and its plugins.
///
/// Exit status: 0 success; 1 runtime failure; 2 bad command line,
/// configuration or input file; 3 a required plugin failed to load or start.
#[derive(Parser)]
#[command(version, propagate_version = true, max_term_width = 100)]
struct Cli {
    /// Configuration file; relative paths inside it are resolved from its directory.
    #[arg(
        short,
        long,
        global = true,
        env = "EVENTHOST_CONFIG",
        default_value = "config.toml"
    )]
    config: PathBuf,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the node: the HTTP transaction API, the ledger and the plugins,
    /// until SIGINT or SIGTERM.
    ///
    /// Clients post transactions to the BigchainDB-compatible API (default
    /// http://127.0.0.1:9984); each committed block is published to the
    /// plugins as BLOCK_VALID, rejected transactions as BLOCK_INVALID. On a
    /// signal the API stops, the ledger commits what it accepted, and every
    /// plugin drains its queue and is told to stop. A plugin that makes no
    /// progress for `shutdown_timeout_ms` is abandoned.
    Run,
    /// Publish the events of a JSON-lines file to the configured plugins, then stop.
    ///
    /// Each line is one event as the printer plugin writes it with
    /// format = "json": {"type": "BLOCK_VALID", "height": 1, "hash": "...",
    /// "transactions": [...]}. A file is checked whole before anything is
    /// published; with `-`, lines from standard input are published as they
    /// arrive until it closes. The events go to a temporary event log, not
    /// the data directory.
    Replay {
        /// The JSON-lines file, or `-` for standard input.
        file: PathBuf,
        /// Publish at most this many events per second.
        #[arg(long, value_parser = positive_rate)]
        rate: Option<f64>,
    },
    /// Load and check every configured plugin without running it, and print a table.
    ///
    /// Exits with status 3 if any plugin fails its checks, 2 if the
    /// configuration itself is invalid.
    CheckConfig {
        /// Configuration file to check (default: the --config file).
        file: Option<PathBuf>,
    },
    /// List the configured plugins and the library file each resolves to.
    Plugins,
    /// The plugin-runner role: runs one plugin in a child process of a host
    /// (`isolation = "process"`). The host starts it; not for direct use.
    #[command(hide = true)]
    RunPlugin,
    /// Print the event log of the data directory as JSON lines, the form
    /// `replay` reads. The host must not be running (the store is locked).
    Events {
        /// First sequence number to print.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Print at most this many events.
        #[arg(long)]
        limit: Option<usize>,
    },
}

fn positive_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!(
            "`{text}` is not a positive number of events per second"
        )),
    }
}

const EXIT_RUNTIME: u8 = 1;
const EXIT_INPUT: u8 = 2;
const EXIT_PLUGIN: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::RunPlugin = cli.command {
        // The host passes everything over the socket; no configuration file.
        return ExitCode::from(eventhost::process::child::run() as u8);
    }
    let config_path = match &cli.command {
        Command::CheckConfig { file: Some(file) } => file.clone(),
        _ => cli.config.clone(),
    };
    let config = match Config::load(&config_path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_INPUT);
        }
    };
    init_logging(&config.host.log);
    match cli.command {
        Command::Run => run(&config),
        Command::Replay { file, rate } => replay(&config, &file, rate),
        Command::CheckConfig { .. } => check_config(&config),
        Command::Plugins => list_plugins(&config),
        Command::Events { from, limit } => print_events(&config, from, limit),
        Command::RunPlugin => unreachable!("handled before loading a configuration"),
    }
}

fn init_logging(default_filter: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(default_filter))
        .unwrap_or_else(|e| {
            eprintln!("warning: log filter `{default_filter}` is invalid ({e}); using `info`");
            EnvFilter::new("info")
        });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn start(config: &Config, store: &Path) -> Result<Host, ExitCode> {
    Host::start(config, store).map_err(|e| {
        for line in e.to_string().lines() {
            tracing::error!("{line}");
        }
        ExitCode::from(match e {
            StartError::Load(_) | StartError::PluginFailed { .. } => EXIT_PLUGIN,
            StartError::Store(_) => EXIT_RUNTIME,
        })
    })
}

fn run(config: &Config) -> ExitCode {
    let host = match start(config, &config.host.data_dir.join(STORE_FILE)) {
        Ok(host) => host,
        Err(code) => return code,
    };
    let code = match serve(config, &host) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    };
    host.shutdown();
    code
}

/// Runs the ledger and the HTTP API until a signal, then stops them in
/// order: no new requests, then the ledger commits what it accepted.
fn serve(config: &Config, host: &Host) -> Result<(), String> {
    let services = host.services();
    let ledger = Ledger::start(
        services.store.clone(),
        services.exchange.clone(),
        services.metrics.clone(),
        LedgerConfig {
            max_block_size: config.ledger.max_block_size,
            block_interval: Duration::from_millis(config.ledger.block_interval_ms),
        },
    )
    .map_err(|e| format!("cannot start the ledger: {e}"))?;
    let ledger = Arc::new(ledger);
    let router = api::router(Arc::new(Api {
        ledger: ledger.clone(),
        services: services.clone(),
        plugins: host.plugins().clone(),
        max_body_bytes: config.api.max_body_bytes,
    }));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("http")
        .build()
        .map_err(|e| format!("cannot start the HTTP runtime: {e}"))?;
    let served = runtime.block_on(async {
        let bind = &config.api.bind;
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .map_err(|e| format!("cannot listen on {bind}: {e}; set [api] bind"))?;
        let address = listener
            .local_addr()
            .map_or_else(|_| bind.clone(), |a| a.to_string());
        tracing::info!(
            plugins = host.plugins().len(),
            "eventhost running; HTTP API on http://{address}; stop it with Ctrl-C or SIGTERM"
        );
        api::serve(listener, router, async {
            match shutdown_signal().await {
                Ok(signal) => tracing::info!("{signal} received"),
                Err(e) => tracing::error!("cannot wait for signals: {e}; stopping"),
            }
        })
        .await
        .map_err(|e| format!("the HTTP API failed: {e}"))
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    match Arc::try_unwrap(ledger) {
        Ok(ledger) => ledger.shutdown(),
        Err(_) => tracing::warn!("requests still hold the ledger; it stops with the process"),
    }
    served
}

fn replay(config: &Config, file: &Path, rate: Option<f64>) -> ExitCode {
    let source = replay::Source::new(file);
    let total = match &source {
        replay::Source::Stdin => None,
        replay::Source::File(path) => match replay::check(path) {
            Ok(total) => Some(total),
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::from(EXIT_INPUT);
            }
        },
    };
    let log_dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => {
            tracing::error!("cannot create a temporary directory for the replay's event log: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let host = match start(config, &log_dir.path().join(STORE_FILE)) {
        Ok(host) => host,
        Err(code) => return code,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let watcher_stop = stop.clone();
    std::thread::spawn(move || {
        if let Ok(signal) = wait_for_signal() {
            tracing::info!("{signal} received; stopping the replay");
            watcher_stop.store(true, Ordering::Relaxed);
        }
    });
    let outcome = replay::publish(&host, &source, total, rate, &stop);
    let code = match outcome {
        Ok(published) => {
            tracing::info!("replay: published {published} events; waiting for plugins to finish");
            ExitCode::SUCCESS
        }
        Err(e @ replay::ReplayError::BadLine { .. }) => {
            tracing::error!("{e}");
            ExitCode::from(EXIT_INPUT)
        }
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    };
    let head = host.services().exchange.head();
    for p in host.plugins().iter() {
        let delivered = p.progress().delivered();
        tracing::debug!(plugin = %p.name(), "received up to event {delivered} of {head}");
    }
    host.shutdown();
    code
}

fn print_events(config: &Config, from: u64, limit: Option<usize>) -> ExitCode {
    use std::io::Write;
    let store = match Store::open_with_cache(
        &config.host.data_dir.join(STORE_FILE),
        config.host.store_cache_bytes,
    ) {
        Ok(store) => store,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let mut out = std::io::stdout().lock();
    let mut next = from.max(1);
    let mut left = limit.unwrap_or(usize::MAX);
    while left > 0 {
        let batch = match store.read(next, left.min(1024)) {
            Ok(batch) => batch,
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::from(EXIT_RUNTIME);
            }
        };
        let Some(last) = batch.last() else { break };
        next = last.seq + 1;
        left -= batch.len();
        for event in &batch {
            if writeln!(out, "{}", event.to_json()).is_err() {
                // The reader went away (e.g. `| head`): not an error.
                return ExitCode::SUCCESS;
            }
        }
    }
    ExitCode::SUCCESS
}

fn check_config(config: &Config) -> ExitCode {
    let (loaded, failed) = host::load_plugins(config);
    let mut rows = vec![[
        "NAME".to_owned(),
        "STATUS".into(),
        "API".into(),
        "EVENTS".into(),
        "FILE".into(),
    ]];
    for entry in &config.plugins {
        if let Some(p) = loaded.iter().find(|p| p.entry.name == entry.name) {
            rows.push([
                entry.name.clone(),
                "ok".into(),
                p.api_version.to_string(),
                p.event_types.to_string(),
                p.file.display().to_string(),
            ]);
        } else if let Some(e) = failed.iter().find(|e| e.plugin == entry.name) {
            let status = if entry.required {
                "error"
            } else {
                "error (optional)"
            };
            rows.push([
                entry.name.clone(),
                status.into(),
                "-".into(),
                "-".into(),
                e.file
                    .as_ref()
                    .map_or("-".into(), |f| f.display().to_string()),
            ]);
        }
    }
    print_table(&rows);
    for e in &failed {
        println!("error: {e}");
    }
    println!(
        "{}: {} plugin(s) ok, {} failed",
        config.source.display(),
        loaded.len(),
        failed.len()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_PLUGIN)
    }
}

fn list_plugins(config: &Config) -> ExitCode {
    let mut rows = vec![[
        "NAME".to_owned(),
        "REQUIRED".into(),
        "EVENTS".into(),
        "LIBRARY".into(),
        "RESOLVES TO".into(),
    ]];
    for entry in &config.plugins {
        let resolved = match plugin_manager::resolve(entry, &config.host.plugin_dirs) {
            Ok(file) => file.display().to_string(),
            Err(_) => format!(
                "not found ({} not in plugin_dirs)",
                library_file_name(&entry.library)
            ),
        };
        rows.push([
            entry.name.clone(),
            if entry.required { "yes" } else { "no" }.into(),
            entry
                .event_types
                .map_or("as declared".into(), |t| t.to_string()),
            entry
                .path
                .as_ref()
                .map_or(entry.library.clone(), |p| p.display().to_string()),
            resolved,
        ]);
    }
    print_table(&rows);
    let dirs: Vec<String> = config
        .host
        .plugin_dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    println!("plugin_dirs: {}", dirs.join(", "));
    ExitCode::SUCCESS
}

fn print_table<const N: usize>(rows: &[[String; N]]) {
    let mut widths = [0; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", cells.join("  ").trim_end());
    }
}

/// Blocks until SIGINT or SIGTERM.
fn wait_for_signal() -> std::io::Result<&'static str> {
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
