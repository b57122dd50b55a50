use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use eventhost::cli_docs;
use eventhost::config::Config;
use eventhost::event_log;
use eventhost::node::{self, Node, NodeError};
use eventhost::plugin_runtime::{self, library_file_name};
use eventhost::progress::Progress;
use eventhost::sources::replay;
use eventhost::store::{Durability, STORE_FILE, Store};
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
    /// progress for `shutdown_timeout_ms` is abandoned. With `[source] kind
    /// = "nats"` the node is an edge node: instead of a ledger it follows a
    /// ledger node's events from a NATS JetStream stream, with the ledger's
    /// own numbers, and serves them to its plugins (docs/scaling-out.md).
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
    /// Talk to a running node's admin API (address and token from the
    /// [admin] table of the same config.toml).
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Check the whole store for damage: every record's checksum, every
    /// block's hash and link, every transaction's id and signatures, the
    /// event log against the blocks, the plugins' cursors against the log.
    ///
    /// Reads the store without changing it (the node must not be running:
    /// the store is locked). Prints each fault and a summary; exits with
    /// status 1 if anything is damaged.
    Verify,
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
    /// Write a new plugin crate, ready to build, with a configuration that
    /// loads it, sample events and a test; print how to build and run it.
    ///
    /// The crate depends on this checkout's plugin-api by path (or on
    /// --api-path, or a registry's with --api-version). An existing
    /// directory is never overwritten. Needs no configuration file.
    NewPlugin {
        /// The crate's and the plugin's name (letters, digits, `_`, `-`).
        name: String,
        /// Create the crate in this directory (made if missing).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Depend on the plugin-api crate in this directory (e.g. a vendored copy).
        #[arg(long, value_name = "DIR", conflicts_with = "api_version")]
        api_path: Option<PathBuf>,
        /// Depend on plugin-api from a registry; without REQ, the version
        /// requirement this host accepts.
        #[arg(long, value_name = "REQ", num_args = 0..=1)]
        api_version: Option<Option<String>>,
    },
    /// Print the shell completion script for SHELL.
    ///
    /// E.g. for bash: `eventhost completions bash > ~/.local/share/bash-completion/completions/eventhost`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), or write one per command into --dir.
    ///
    /// `eventhost man | man -l -` reads it.
    Man {
        /// Write eventhost.1 and a page per subcommand into this directory.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// List the plugins: state, library and its checksum, cursor, lag, restarts.
    List,
    /// Load the plugin of this name from config.toml (read again), or the
    /// entry in --entry FILE.
    Load {
        #[arg(required_unless_present = "entry")]
        name: Option<String>,
        /// A TOML file holding one [[plugins]] entry, loaded instead (its
        /// relative paths are relative to config.toml's directory).
        #[arg(long, value_name = "FILE", conflicts_with = "name")]
        entry: Option<PathBuf>,
    },
    /// Stop delivering to the plugin, let it finish, and unload it (its
    /// cursor is kept for a later load).
    Unload { name: String },
    /// Read the plugin's library from disk again and start the new instance
    /// where the old one stopped.
    Reload {
        name: String,
        /// A TOML file holding the plugin's new [[plugins]] entry (another
        /// library or table), instead of the one it runs with.
        #[arg(long, value_name = "FILE")]
        entry: Option<PathBuf>,
    },
    /// Run the plugin again with the same library (e.g. after it failed).
    Restart { name: String },
    /// Hold delivery to the plugin.
    Pause { name: String },
    /// Resume delivery to the plugin.
    Resume { name: String },
    /// Re-read config.toml and apply the difference (as SIGHUP does).
    ReloadConfig,
    /// The events the plugin kept failing on (poison = "skip").
    DeadLetters { name: String },
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

/// The command line's definition, with the version line that names the
/// plugin-api versions this host loads.
fn cli_definition() -> clap::Command {
    Cli::command().version(cli_docs::version())
}

fn main() -> ExitCode {
    let cli = Cli::from_arg_matches(&cli_definition().get_matches()).unwrap_or_else(|e| e.exit());
    if let Command::RunPlugin = cli.command {
        // The host passes everything over the socket; no configuration file.
        return ExitCode::from(eventhost::plugin_runtime::process::child::run() as u8);
    }
    if let Command::NewPlugin {
        name,
        dir,
        api_path,
        api_version,
    } = cli.command
    {
        return new_plugin(name, dir, api_path, api_version);
    }
    if let Command::Completions { shell } = cli.command {
        cli_docs::completions(&mut cli_definition(), shell, &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    if let Command::Man { dir } = cli.command {
        return match cli_docs::man(cli_definition(), dir.as_deref(), &mut std::io::stdout()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(EXIT_RUNTIME)
            }
        };
    }
    if let Command::Admin(command) = &cli.command {
        // Only the [admin] table: a mistake elsewhere in the file is for
        // the node to refuse (`reload-config`), not for this client.
        return admin(&cli.config, command);
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
        Command::Verify => verify(&config),
        Command::RunPlugin
        | Command::Admin(_)
        | Command::NewPlugin { .. }
        | Command::Completions { .. }
        | Command::Man { .. } => unreachable!("handled before loading a configuration"),
    }
}

fn new_plugin(
    name: String,
    parent: PathBuf,
    api_path: Option<PathBuf>,
    api_version: Option<Option<String>>,
) -> ExitCode {
    use eventhost::scaffold::{self, Api};
    let api = match (api_path, api_version) {
        (Some(dir), _) => Api::Path(dir),
        (None, Some(requirement)) => {
            Api::Version(requirement.unwrap_or_else(Api::default_requirement))
        }
        (None, None) => Api::Path(Api::this_checkout()),
    };
    let request = scaffold::Request {
        name,
        parent,
        api,
        target_dir: std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from),
    };
    match scaffold::create(&request) {
        Ok(created) => {
            print!("{}", created.summary(&how_to_call_me()));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(if e.is_usage() {
                EXIT_INPUT
            } else {
                EXIT_RUNTIME
            })
        }
    }
}

/// `eventhost` when this binary was found on PATH, else its full path, so
/// that a printed command works when pasted.
fn how_to_call_me() -> String {
    let called = std::env::args_os().next().unwrap_or_default();
    if Path::new(&called).components().count() == 1 {
        return "eventhost".into();
    }
    std::env::current_exe()
        .and_then(|exe| exe.canonicalize())
        .map_or_else(|_| "eventhost".into(), |exe| exe.display().to_string())
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
        .with_writer(eventhost::progress::LogWriter)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn start(
    config: &Config,
    store: &Path,
    durability: Durability,
) -> Result<(Node, event_log::EventLog), ExitCode> {
    Node::start(config, store, durability).map_err(|e| fail(&e))
}

/// Logs a node's error, line by line, and gives its exit status.
fn fail(e: &NodeError) -> ExitCode {
    for line in e.to_string().lines() {
        tracing::error!("{line}");
    }
    ExitCode::from(if e.is_plugin_failure() {
        EXIT_PLUGIN
    } else {
        EXIT_RUNTIME
    })
}

fn run(config: &Config) -> ExitCode {
    // Before any plugin's child process starts: they inherit the limit.
    eventhost::api::server::descriptors::OpenFiles::raise();
    let (node, log) = match start(
        config,
        &config.host.data_dir.join(STORE_FILE),
        Durability::Immediate,
    ) {
        Ok(started) => started,
        Err(code) => return code,
    };
    let code = match node.serve(log) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    };
    node.shutdown();
    code
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
    // Deleted at exit: its commits need not reach the disk.
    let (node, mut log) = match start(
        config,
        &log_dir.path().join(STORE_FILE),
        Durability::Temporary,
    ) {
        Ok(started) => started,
        Err(code) => return code,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let watcher_stop = stop.clone();
    let deadline = config.host.shutdown_timeout + node::STOP_GRACE;
    std::thread::spawn(move || {
        if let Ok(signal) = node::wait_for_signal() {
            tracing::info!("{signal} received; stopping the replay");
            watcher_stop.store(true, Ordering::Relaxed);
            node::exit_after(deadline);
        }
    });
    let mut progress = Progress::start("replay: published", "events", total.map(|t| t as u64));
    let outcome = replay::publish(&mut log, &source, rate, &stop, &mut progress);
    let summary = progress.finish();
    let code = match outcome {
        Ok(_) => {
            tracing::info!("{summary}; waiting for plugins to finish");
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
    let head = node.exchange().head();
    let plugins = node.plugins().list();
    node.shutdown();
    // A required plugin that failed for good did not get every event: the
    // replay did not do its job.
    let mut code = code;
    for p in plugins.iter().filter(|p| p.plugin.entry.required) {
        let finished = p.progress().finished();
        if let eventhost::plugin_runtime::State::Failed(why) = p.state() {
            tracing::error!(
                plugin = %p.name(),
                "required plugin failed and missed events after {finished} of {head}: {why}"
            );
            code = ExitCode::from(EXIT_PLUGIN);
        }
    }
    code
}

fn print_events(config: &Config, from: u64, limit: Option<usize>) -> ExitCode {
    use std::io::Write;
    // Reading only: never creates or changes the store.
    let store = match Store::open_read_only(&config.host.data_dir.join(STORE_FILE)) {
        Ok(store) => event_log::Reader::new(Arc::new(store)),
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let mut out = std::io::stdout().lock();
    // A log starts later than 1 when retention pruned it, or on an edge
    // node that started following after the stream's first event.
    let first = store.first_seq().ok().flatten().unwrap_or(1);
    let mut next = from.max(first);
    let mut left = limit.unwrap_or(usize::MAX);
    // Sequence numbers have no gaps, so the count to print is known.
    let total = store.last_seq().ok().map(|head| {
        (head + 1)
            .saturating_sub(next)
            .min(u64::try_from(left).unwrap_or(u64::MAX))
    });
    let mut progress = Progress::start("events: printed", "events", total);
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
        progress.add(batch.len() as u64);
    }
    if out.flush().is_err() {
        return ExitCode::SUCCESS;
    }
    tracing::info!("{}", progress.finish());
    ExitCode::SUCCESS
}

fn admin(config: &Path, command: &AdminCommand) -> ExitCode {
    use eventhost::admin::client::{Request, send};
    use eventhost::config::AdminConfig;
    let admin = match AdminConfig::load(config) {
        Ok(admin) => admin,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_INPUT);
        }
    };
    let act = |name, action| Request::Act {
        name,
        action,
        entry: None,
    };
    let entry = |file: &Path| {
        eventhost::admin::client::entry_file(file).map_err(|e| {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_INPUT)
        })
    };
    let request = match command {
        AdminCommand::List => Request::List,
        AdminCommand::Load {
            entry: Some(file), ..
        } => match entry(file) {
            Ok(entry) => Request::LoadEntry(entry),
            Err(code) => return code,
        },
        AdminCommand::Load { name, .. } => Request::Load(name.as_deref().unwrap_or_default()),
        AdminCommand::Unload { name } => act(name, "unload"),
        AdminCommand::Reload {
            name,
            entry: Some(file),
        } => match entry(file) {
            Ok(entry) => Request::Act {
                name,
                action: "reload",
                entry: Some(entry),
            },
            Err(code) => return code,
        },
        AdminCommand::Reload { name, .. } => act(name, "reload"),
        AdminCommand::Restart { name } => act(name, "restart"),
        AdminCommand::Pause { name } => act(name, "pause"),
        AdminCommand::Resume { name } => act(name, "resume"),
        AdminCommand::ReloadConfig => Request::ReloadConfig,
        AdminCommand::DeadLetters { name } => Request::DeadLetters(name),
    };
    match send(config, &admin, request) {
        Ok(answer) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&answer).unwrap_or_else(|_| answer.to_string())
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

fn verify(config: &Config) -> ExitCode {
    let path = config.host.data_dir.join(STORE_FILE);
    let started = std::time::Instant::now();
    let report = match eventhost::verify::verify(&path) {
        Ok(report) => report,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let summary = format!(
        "{}: {} blocks, {} transactions, {} events, {} index entries, {} plugin cursors in {:.1} s",
        path.display(),
        report.blocks,
        report.transactions,
        report.events,
        report.index_entries,
        report.cursors,
        started.elapsed().as_secs_f64()
    );
    if report.faults.is_empty() {
        println!("{summary}: no fault found");
        ExitCode::SUCCESS
    } else {
        for fault in &report.faults {
            println!("fault: {fault}");
        }
        println!("{summary}: {} fault(s)", report.faults.len());
        ExitCode::from(EXIT_RUNTIME)
    }
}

fn check_config(config: &Config) -> ExitCode {
    let (loaded, failed) = plugin_runtime::load_all(config);
    let mut rows = vec![[
        "NAME".to_owned(),
        "STATUS".into(),
        "API".into(),
        "EVENTS".into(),
        "ISOLATION".into(),
        "FILE".into(),
    ]];
    for entry in &config.plugins {
        if let Some(p) = loaded.iter().find(|p| p.entry.name == entry.name) {
            rows.push([
                entry.name.clone(),
                "ok".into(),
                p.api_version.to_string(),
                p.event_types.to_string(),
                p.isolation.name().into(),
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
                "-".into(),
                e.file
                    .as_ref()
                    .map_or("-".into(), |f| f.display().to_string()),
            ]);
        }
    }
    print_table(&rows);
    for p in loaded.iter().filter(|p| !p.description.is_empty()) {
        println!("{}: {}", p.entry.name, p.description);
    }
    for e in &failed {
        println!("error: {e}");
    }
    println!(
        "{}: {} plugin(s) ok, {} failed",
        config.source.display(),
        loaded.len(),
        failed.len()
    );
    // An edge node's source: its credentials too, from the environment
    // variables the table names, as `run` reads them.
    let source_ok = match &config.upstream {
        None => true,
        Some(upstream) => match upstream.credentials(&|var| std::env::var(var).ok()) {
            Ok(credentials) => {
                println!(
                    "source: {}, as {}",
                    upstream.describe(),
                    credentials.describe()
                );
                true
            }
            Err(e) => {
                println!("error: {}: {e}", config.source.display());
                false
            }
        },
    };
    if !source_ok {
        ExitCode::from(EXIT_INPUT)
    } else if failed.is_empty() {
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
        let resolved = match plugin_runtime::resolve(entry, &config.host.plugin_dirs) {
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
