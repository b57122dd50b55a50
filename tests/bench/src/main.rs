//! eventhost's benchmarks (issue 9): each row measures eventhost and, where
//! the issue names one, a bare baseline doing the same work in the same run,
//! and prints a table with the ratio and peak memory.
//!
//! Run it with `bash tests/bench/run.sh` (builds the workspace in release
//! mode first: the node binary and the plugin libraries it loads are not
//! dependencies cargo would build for this crate). `--quick` runs every row
//! for a few seconds; CI uses it to show the benchmarks still work.

mod bare_commit;
mod bare_ws;
mod commit;
mod dashboard;
mod disk;
mod edge;
mod exchange;
mod fanout;
mod heavy_reads;
mod isolation;
mod nats;
mod node;
mod peer;
mod python;
mod queries;
mod replay;
mod report;
mod sys;
mod tls;
mod txs;
mod validation;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};

/// Benchmarks eventhost against bare baselines measured in the same run.
#[derive(Parser)]
#[command(max_term_width = 100)]
struct Cli {
    /// Which benchmark to run.
    #[arg(value_enum, default_value_t = Which::All)]
    which: Which,
    /// A few seconds per row instead of up to a minute: shows the benchmarks
    /// work, says little about speed.
    #[arg(long)]
    quick: bool,
    /// Where to write the rows as JSON (default: target/bench/results.json).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The bare commit server's directory (only with `bare-commit-server`).
    #[arg(long, hide = true)]
    dir: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Which {
    All,
    /// 1: publish to 8 plugins vs a bare crossbeam fan-out.
    Exchange,
    /// 2: transaction validation vs bare Ed25519 verification.
    Validation,
    /// 3: HTTP POST to BLOCK_VALID through the real node, and through a
    /// bare commit server (3h, 3i).
    Commit,
    /// 3e: GET /api/v1 while 4 clients loop on a heavy text search.
    HeavyReads,
    /// 4: WebSocket fan-out to 1,000 clients vs a bare tokio-tungstenite server.
    Websocket,
    /// 4k: wss:// fan-out: the server's CPU per message over TLS vs the bare
    /// server over ws:// (and the node over ws://).
    Wss,
    /// 4f-4h: fan-out to clients with queries vs without; one query's evaluation.
    Queries,
    /// 5: replay from the event log to one resuming WebSocket client vs
    /// `eventhost events`.
    Replay,
    /// 4e, 4i, 4j: fan-out vs BigchainDB 2.2.2's own stream server and the
    /// pre-framed floor, through ../shared/peer's harness (skipped without it).
    Peer,
    /// 6: a plugin in process mode vs the same plugin in thread mode.
    Process,
    /// 7a: the nats plugin's JetStream publish with acks vs bare async-nats.
    Nats,
    /// 7b–7d: edge nodes: JetStream to the log, WebSocket fan-out, POST to
    /// an edge's client.
    Edge,
    /// 8: a Python plugin that counts vs a native one (process mode).
    Python,
    /// 9: the node's CPU and memory with the dashboard page open in
    /// headless Chromium vs without (skipped without chromium).
    Dashboard,
    /// Not a benchmark: the bare WebSocket server row 4 measures, run as a
    /// process of its own.
    #[value(hide = true)]
    BareWsServer,
    /// Not a benchmark: the bare commit server rows 3h and 3i measure, run
    /// as a process of its own (its store in `--dir`).
    #[value(hide = true)]
    BareCommitServer,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A benchmark: its rows, or why it could not make them.
type Benchmark<'a> = &'a dyn Fn() -> anyhow::Result<Vec<report::Row>>;

fn run(cli: &Cli) -> anyhow::Result<()> {
    match cli.which {
        Which::BareWsServer => return bare_ws::serve(),
        Which::BareCommitServer => {
            let dir = cli
                .dir
                .as_deref()
                .context("bare-commit-server needs --dir")?;
            return bare_commit::serve(dir);
        }
        _ => {}
    }
    let build = build_dir()?;
    let machine = sys::machine();
    eprintln!("machine: {machine}");
    let started = Instant::now();
    let mut rows = Vec::new();
    // A benchmark that fails does not take the others' results with it;
    // the run still fails at the end.
    let mut failed = Vec::new();
    let benchmarks: &[(Which, &str, Benchmark)] = &[
        (Which::Exchange, "exchange", &|| {
            exchange::run(&build, cli.quick)
        }),
        (Which::Validation, "validation", &|| {
            validation::run(cli.quick)
        }),
        (Which::Commit, "commit", &|| commit::run(&build, cli.quick)),
        (Which::HeavyReads, "heavy-reads", &|| {
            heavy_reads::run(&build, cli.quick)
        }),
        (Which::Websocket, "websocket", &|| {
            fanout::run(&build, cli.quick)
        }),
        (Which::Wss, "wss", &|| fanout::run_wss(&build, cli.quick)),
        (Which::Peer, "peer", &|| peer::run(&build, cli.quick)),
        (Which::Queries, "queries", &|| {
            queries::run(&build, cli.quick)
        }),
        (Which::Replay, "replay", &|| replay::run(&build, cli.quick)),
        (Which::Process, "process", &|| {
            isolation::run(&build, cli.quick)
        }),
        (Which::Nats, "nats", &|| nats::run(&build, cli.quick)),
        (Which::Edge, "edge", &|| edge::run(&build, cli.quick)),
        (Which::Python, "python", &|| python::run(&build, cli.quick)),
        (Which::Dashboard, "dashboard", &|| {
            dashboard::run(&build, cli.quick)
        }),
    ];
    for &(which, name, benchmark) in benchmarks {
        if cli.which != Which::All && cli.which != which {
            continue;
        }
        match benchmark() {
            Ok(done) => rows.extend(done),
            Err(e) => {
                eprintln!("error: the {name} benchmark failed: {e:#}");
                failed.push(name);
            }
        }
    }
    eprintln!("done in {:.0} s", started.elapsed().as_secs_f64());
    print!("{}", report::table(&rows));

    let out = match &cli.out {
        Some(out) => out.clone(),
        None => build
            .parent()
            .context("the build directory has no parent")?
            .join("bench")
            .join("results.json"),
    };
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(&report::json(&rows, cli.quick, machine))?;
    std::fs::write(&out, text + "\n").with_context(|| format!("write {}", out.display()))?;
    eprintln!("results written to {}", out.display());
    if !failed.is_empty() {
        bail!("benchmarks failed: {}", failed.join(", "));
    }
    Ok(())
}

/// The cargo output directory this binary was built into (`target/release`):
/// the node binary and the plugin libraries must be there too.
fn build_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let dir = exe
        .parent()
        .context("this executable has no directory")?
        .to_owned();
    for file in [
        format!("eventhost{}", std::env::consts::EXE_SUFFIX),
        eventhost::plugin_runtime::library_file_name(SINK),
        eventhost::plugin_runtime::library_file_name("websocket"),
    ] {
        if !dir.join(&file).exists() {
            bail!(
                "{} is missing: build the workspace first (`cargo build --release --workspace`, or use tests/bench/run.sh)",
                dir.join(file).display()
            );
        }
    }
    if dir.file_name().and_then(|n| n.to_str()) != Some("release") {
        eprintln!(
            "warning: running from {} rather than a release build; the figures mean little",
            dir.display()
        );
    }
    Ok(dir)
}

/// The benchmarks' plugin library (tests/plugins/bench_sink).
const SINK: &str = "fixture_bench_sink";

/// The value at quantile `q` (0..=1) of sorted samples, nearest rank.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The median of per-round figures (the mean of the middle two of an even
/// number): robust to a round disturbed by another tenant of a shared machine.
fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => f64::NAN,
        n if n % 2 == 0 => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
        n => xs[n / 2],
    }
}

/// The address logged after `mark` (up to a `;` or a space), in the last
/// line of `log` that has it.
fn logged_address(log: &str, mark: &str) -> Option<String> {
    let rest = log.rsplit(mark).next().filter(|_| log.contains(mark))?;
    let end = rest
        .find(|c: char| c == ';' || c.is_whitespace())
        .unwrap_or(rest.len());
    Some(rest[..end].to_owned())
}

/// A WebSocket client on its own blocking socket.
type WsClient = tokio_tungstenite::tungstenite::WebSocket<std::net::TcpStream>;

/// A WebSocket client of `path` on the server at `address`. The upgrade
/// may take up to 30 s (a loaded server is slow, not broken); afterwards
/// reads time out now and then so that a reading loop can watch a deadline.
fn ws_connect(address: &str, path: &str) -> anyhow::Result<WsClient> {
    let tcp = std::net::TcpStream::connect(address)?;
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    let (client, _) = tokio_tungstenite::tungstenite::client(format!("ws://{address}{path}"), tcp)
        .map_err(|e| anyhow::anyhow!("WebSocket upgrade at {address}{path}: {e}"))?;
    client
        .get_ref()
        .set_read_timeout(Some(std::time::Duration::from_millis(100)))?;
    Ok(client)
}

/// The `plugin_dirs` line of a configuration that loads plugins from `build`.
fn plugin_dirs_line(build: &Path) -> String {
    format!("plugin_dirs = [{:?}]", build.display().to_string())
}
