//! The soak test (issue 14): the real node, release build, for a given
//! time under mixed load on loopback, killed with `kill -9` (and now and
//! then stopped with SIGTERM) at random moments and started again; then it
//! checks that nothing acknowledged was lost:
//!
//! - every acknowledged transaction is committed exactly once
//!   (`GET /api/v1/transactions/{id}`, every block read), a refused one
//!   never, a double spend at most once;
//! - the event log has no gap and matches the blocks (`eventhost events`),
//!   and `eventhost verify` finds no fault;
//! - every plugin's output holds every event (at least once; twice only
//!   across a crash), in order;
//! - every WebSocket client, reading, stalling, hanging up and resuming
//!   with `last_seen_event`, received every block once, as committed;
//! - the node's resident memory stayed under a bound;
//! - the node never exited by itself, stopped within its deadline on
//!   SIGTERM, and never panicked.
//!
//! Run it with `bash tests/soak/run.sh [SECONDS]` (docs/operations.md,
//! "Soak test"), which builds the workspace in release mode first.

mod chain;
mod findings;
mod http;
mod load;
mod node;
mod outputs;
mod streams;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;

use findings::Findings;
use http::Api;
use node::{Node, Settings};
use streams::{Behaviour, Client, Stream};

/// Runs the real node for SECONDS under mixed load on loopback (async,
/// sync and commit POSTs, double spends, WebSocket clients that read,
/// stall, hang up and resume, two plugins that panic now and then), kills
/// it with kill -9 (or stops it with SIGTERM) at random moments and starts
/// it again, then checks that nothing acknowledged was lost. Prints
/// progress while it runs and a summary at the end; exits with status 1 on
/// any violation, 2 when it cannot run.
#[derive(Parser)]
#[command(max_term_width = 100)]
struct Cli {
    /// How long the load runs, in seconds; the checks after it take about
    /// a minute more.
    #[arg(default_value_t = 120)]
    seconds: u64,
    /// Transactions per second, all posters together. The run makes at
    /// most rate × seconds transactions.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Clients posting transactions at once.
    #[arg(long, default_value_t = 4)]
    posters: usize,
    /// Share of double spends among the transactions made (each is a
    /// CREATE, then two TRANSFERs of its output).
    #[arg(long, default_value_t = 0.1)]
    double_spends: f64,
    /// Seconds between two kills of the node, drawn evenly from MIN-MAX;
    /// one in seven is drawn from 0-3 s instead, to hit a node that is
    /// still starting.
    #[arg(long, default_value = "5-40")]
    kill_every: Span,
    /// Share of the stops that are SIGTERM (which must end the node with
    /// status 0 within its deadline) rather than kill -9.
    #[arg(long, default_value_t = 0.2)]
    sigterm_share: f64,
    /// Chance, per event, that each of the two flaky plugins panics.
    #[arg(long, default_value_t = 0.002)]
    panic_probability: f64,
    /// Largest resident memory the node may reach, in MiB.
    #[arg(long, default_value_t = 512)]
    max_rss_mib: u64,
    /// Seed of the run's random choices (default: from the clock); the
    /// node's own timing still differs from run to run.
    #[arg(long)]
    seed: Option<u64>,
    /// The run's directory (configuration, data, logs, plugin outputs),
    /// kept afterwards. Default: a temporary directory, removed when the
    /// run passes and kept (and named) when it fails.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Seconds between two progress lines.
    #[arg(long, default_value_t = 10)]
    progress_every: u64,
}

/// A range of seconds, `MIN-MAX`.
#[derive(Clone, Copy, Debug)]
struct Span {
    min: f64,
    max: f64,
}

impl FromStr for Span {
    type Err = String;

    fn from_str(s: &str) -> Result<Span, String> {
        let bad = || format!("`{s}` is not a range of seconds like 5-40");
        let (min, max) = s.split_once('-').ok_or_else(bad)?;
        let (min, max): (f64, f64) = (
            min.trim().parse().map_err(|_| bad())?,
            max.trim().parse().map_err(|_| bad())?,
        );
        if !(0.5..=86_400.0).contains(&min) || max < min || max > 86_400.0 {
            return Err(format!(
                "`{s}`: the range must lie within 0.5 to 86400 s, its lower end first"
            ));
        }
        Ok(Span { min, max })
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("soak: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The build directory: where this binary is, next to `eventhost` and the
/// plugin libraries (`tests/soak/run.sh` builds them all).
fn build_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let dir = exe.parent().context("this executable has no directory")?;
    for file in [
        "eventhost".to_owned(),
        lib("websocket"),
        lib("printer"),
        lib("fixture_misbehaving"),
    ] {
        if !dir.join(&file).exists() {
            bail!(
                "{} is missing: run `bash tests/soak/run.sh`, which builds the workspace in release mode first",
                dir.join(file).display()
            );
        }
    }
    Ok(dir.to_owned())
}

fn lib(name: &str) -> String {
    format!(
        "{}{name}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The run's directory: the one asked for (which must be empty), or a
/// temporary one.
enum RunDir {
    Kept(PathBuf),
    Temporary(tempfile::TempDir),
}

impl RunDir {
    fn new(asked: Option<&Path>) -> anyhow::Result<RunDir> {
        match asked {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                if std::fs::read_dir(dir)?.next().is_some() {
                    bail!(
                        "{} is not empty: give a new or empty directory",
                        dir.display()
                    );
                }
                Ok(RunDir::Kept(dir.canonicalize()?))
            }
            None => Ok(RunDir::Temporary(
                tempfile::Builder::new()
                    .prefix("eventhost-soak-")
                    .tempdir()?,
            )),
        }
    }

    fn path(&self) -> &Path {
        match self {
            RunDir::Kept(dir) => dir,
            RunDir::Temporary(dir) => dir.path(),
        }
    }
}

/// How long the posters go on resending what got no answer after the
/// load stopped, and how long acknowledged transactions and stream clients
/// may take to show up in full: generous, for a busy shared machine; a
/// healthy node needs a few seconds.
const PATIENCE: Duration = Duration::from_secs(120);

fn run(cli: &Cli) -> anyhow::Result<bool> {
    if !(cli.rate > 0.0 && cli.rate <= 10_000.0) {
        bail!("--rate {} is out of range: 0 to 10000", cli.rate);
    }
    if !(1..=64).contains(&cli.posters) {
        bail!("--posters {} is out of range: 1 to 64", cli.posters);
    }
    for (name, share) in [
        ("--double-spends", cli.double_spends),
        ("--sigterm-share", cli.sigterm_share),
        ("--panic-probability", cli.panic_probability),
    ] {
        if !(0.0..=1.0).contains(&share) {
            bail!("{name} {share} is out of range: 0 to 1");
        }
    }
    let build = build_dir()?;
    let dir = RunDir::new(cli.dir.as_deref())?;
    let seed = cli.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let settings = Settings {
        build,
        dir: dir.path().to_owned(),
        api_port: free_port()?,
        ws_port: free_port()?,
        panic_probability: cli.panic_probability,
        client_queue_capacity: 256,
    };
    let config = settings.write_config()?;
    eprintln!(
        "soak: {} s of load, {} tx/s from {} posters, kills every {}-{} s, seed {seed}, in {}",
        cli.seconds,
        cli.rate,
        cli.posters,
        cli.kill_every.min,
        cli.kill_every.max,
        dir.path().display()
    );
    let findings = Arc::new(Findings::default());
    let started = Instant::now();
    let mut node = Node::new(&settings, config);
    node.start()?;
    wait_serving(&mut node, &findings)?;

    // The load.
    let budget = (cli.rate * cli.seconds as f64).ceil() as u64;
    let load = load::Load::start(
        settings.api_port,
        cli.posters,
        cli.rate,
        budget,
        cli.double_spends,
        seed,
        &findings,
    );
    let shared = Arc::new(streams::Shared {
        finishing: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        messages: AtomicU64::new(0),
    });
    let mut clients = Vec::new();
    for stream in [Stream::Blocks, Stream::Transactions] {
        for behaviour in [Behaviour::Read, Behaviour::Stall, Behaviour::Reconnect] {
            let name = format!("{stream:?}/{behaviour:?}").to_lowercase();
            let seed = seed.wrapping_add(clients.len() as u64 + 1000);
            clients.push(Client::start(
                name,
                settings.ws_port,
                stream,
                behaviour,
                seed,
                shared.clone(),
                findings.clone(),
            ));
        }
    }

    // kill -9 and SIGTERM at random moments, progress, readiness.
    let mut rng = fastrand::Rng::with_seed(seed);
    let api = Api::new(settings.api_port, Duration::from_secs(5));
    let mut ready = Readiness::default();
    let end = started + Duration::from_secs(cli.seconds);
    let mut next_stop = started + next_interval(&mut rng, cli.kill_every);
    let mut next_progress = Instant::now() + Duration::from_secs(cli.progress_every);
    let mut next_ready_probe = Instant::now();
    let mut rss_now = 0;
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
        if let Some(rss) = node.tick(&findings) {
            rss_now = rss;
        }
        if !node.is_running() {
            // It exited by itself (a violation, recorded): on with a new life.
            node.start()?;
            next_stop = Instant::now() + next_interval(&mut rng, cli.kill_every);
        }
        let now = Instant::now();
        if now >= next_stop {
            if rng.f64() < cli.sigterm_share && node.is_serving() {
                node.terminate(&findings);
            } else {
                node.kill(&findings);
            }
            node.start()?;
            next_stop = Instant::now() + next_interval(&mut rng, cli.kill_every);
        }
        if node.is_serving() && now >= next_ready_probe {
            next_ready_probe = now + Duration::from_secs(1);
            ready.probe(&api);
        }
        if now >= next_progress {
            next_progress = now + Duration::from_secs(cli.progress_every);
            let c = &load.control.counters;
            eprintln!(
                "soak: {:>4}/{} s | tx {} sent, {} acknowledged, {} refused, {} resent | node: {} kills, {} SIGTERMs, up {:.0} s, RSS {} MiB (max {}) | streams: {} messages | ready: {}",
                started.elapsed().as_secs(),
                cli.seconds,
                c.sent.load(Ordering::Relaxed),
                c.acknowledged.load(Ordering::Relaxed),
                c.refused.load(Ordering::Relaxed),
                c.resent.load(Ordering::Relaxed),
                node.stats.kills,
                node.stats.terminations,
                node.age().as_secs_f64(),
                rss_now >> 10,
                node.stats.max_rss_kib >> 10,
                shared.messages.load(Ordering::Relaxed),
                ready.last
            );
        }
    }

    // The load stops; the node runs on for the checks.
    eprintln!(
        "soak: load over after {:.0} s; checking",
        started.elapsed().as_secs_f64()
    );
    wait_serving(&mut node, &findings)?;
    // The posters resend what got no answer, for a while.
    load.stop();
    let deadline = Instant::now() + PATIENCE;
    while !load.finished() && Instant::now() < deadline {
        node.tick(&findings);
        if !node.is_running() {
            node.start()?;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let sent = load.join(&findings);
    eprintln!(
        "soak: {} transactions made; waiting until the acknowledged ones are committed",
        sent.len()
    );
    chain::wait_committed(&api, &sent, PATIENCE, &findings);
    eprintln!("soak: reading every block");
    let chain = chain::walk(&api, &findings)?;
    let ready_at_end = ready.wait_ok(&api, Duration::from_secs(30));
    if let Err(body) = &ready_at_end {
        findings.violation(format!("/health/ready is not 200 at the end: {body}"));
    }
    eprintln!(
        "soak: {} blocks, {} transactions; waiting for the stream clients to catch up",
        chain.blocks.len(),
        chain.transactions()
    );
    shared.finishing.store(true, Ordering::Relaxed);
    let deadline = Instant::now() + PATIENCE;
    let target = |stream: Stream| match stream {
        Stream::Blocks => chain.blocks.len() as u64,
        Stream::Transactions => chain.transactions(),
    };
    while clients
        .iter()
        .any(|c| c.progress.load(Ordering::Relaxed) < target(c.stream))
        && Instant::now() < deadline
    {
        node.tick(&findings);
        std::thread::sleep(Duration::from_millis(100));
    }
    shared.stop.store(true, Ordering::Relaxed);
    let clients: Vec<streams::Finished> = clients
        .into_iter()
        .filter_map(|c| c.join(&findings))
        .collect();
    node.tick(&findings);
    let last_stop = node.terminate(&findings);

    eprintln!(
        "soak: node stopped; reading its event log, verifying its store, reading the plugins' outputs"
    );
    let log = chain::read_event_log(&node, &chain, &findings)?;
    let outcomes = chain::check_transactions(&sent, &chain, &log.rejected, &findings);
    let verified = chain::verify(&node, &findings)?;
    chain::check_streams(&clients, &chain, &log, &findings);
    let mut checked_outputs = Vec::new();
    for (i, output) in settings.outputs().iter().enumerate() {
        let segments: Vec<u64> = node.segments.iter().map(|s| s[i]).collect();
        checked_outputs.push((
            output.plugin,
            outputs::check(output, &segments, log.head, &findings),
        ));
    }
    let scanned = scan_log(node.log_path(), &findings);
    if node.stats.max_rss_kib > cli.max_rss_mib << 10 {
        findings.violation(format!(
            "the node's resident memory reached {} MiB, over the bound of {} MiB",
            node.stats.max_rss_kib >> 10,
            cli.max_rss_mib
        ));
    }

    let summary = Summary {
        cli,
        seed,
        took: started.elapsed(),
        outcomes: &outcomes,
        node: &node,
        last_stop,
        chain: &chain,
        log: &log,
        verified: &verified,
        outputs: &checked_outputs,
        clients: &clients,
        ready: &ready,
        scanned: &scanned,
    };
    summary.print(&findings);
    let passed = findings.violation_count() == 0;
    match dir {
        RunDir::Temporary(dir) if !passed => {
            let kept = dir.keep();
            println!("the run's directory is kept: {}", kept.display());
        }
        RunDir::Temporary(_) => {}
        RunDir::Kept(dir) => println!("the run's directory: {}", dir.display()),
    }
    Ok(passed)
}

/// The wait before the next stop of the node.
fn next_interval(rng: &mut fastrand::Rng, span: Span) -> Duration {
    let seconds = if rng.u32(..7) == 0 {
        rng.f64() * 3.0
    } else {
        span.min + rng.f64() * (span.max - span.min)
    };
    Duration::from_secs_f64(seconds)
}

/// Waits until the node serves, starting it if it is not running.
fn wait_serving(node: &mut Node, findings: &Findings) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !node.is_serving() {
        if !node.is_running() {
            node.start()?;
        }
        if Instant::now() > deadline {
            bail!(
                "the node does not serve; the end of its log:\n{}",
                node::log_tail(node.log_path())
            );
        }
        node.tick(findings);
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// `/health/ready` as probed once a second while the node serves.
#[derive(Default)]
struct Readiness {
    ok: u64,
    not_ok: u64,
    /// The last status, for the progress line.
    last: u16,
}

impl Readiness {
    fn probe(&mut self, api: &Api) {
        match api.get("/health/ready") {
            Ok((200, _)) => {
                self.ok += 1;
                self.last = 200;
            }
            Ok((status, _)) => {
                self.not_ok += 1;
                self.last = status;
            }
            Err(_) => self.last = 0,
        }
    }

    /// Waits until `/health/ready` answers 200; the last body otherwise.
    fn wait_ok(&mut self, api: &Api, patience: Duration) -> Result<(), String> {
        let deadline = Instant::now() + patience;
        loop {
            let answer = api.get("/health/ready");
            match answer {
                Ok((200, _)) => return Ok(()),
                _ if Instant::now() > deadline => {
                    return Err(match answer {
                        Ok((status, body)) => format!("{status} {body}"),
                        Err(e) => e.to_string(),
                    });
                }
                _ => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }
}

/// What the node's log showed.
#[derive(Default)]
struct Scanned {
    /// Deliberate panics of each flaky plugin.
    plugin_panics: std::collections::BTreeMap<String, u64>,
    /// ERROR lines, by their message with numbers masked, and how many.
    errors: std::collections::BTreeMap<String, u64>,
    /// Stream clients the websocket plugin closed as too slow.
    too_slow: u64,
}

/// Reads the node's log: a panic anywhere but in the flaky plugins is a
/// violation; errors are counted for the summary.
fn scan_log(path: &Path, findings: &Findings) -> Scanned {
    let mut scanned = Scanned::default();
    let Ok(text) = std::fs::read(path) else {
        findings.violation(format!("cannot read the node's log {}", path.display()));
        return scanned;
    };
    let text = String::from_utf8_lossy(&text);
    for line in text.lines() {
        if line.contains("panicked at") && !line.contains("tests/plugins/misbehaving") {
            findings.violation(format!("a panic outside the flaky plugins: {line}"));
        }
        if line.contains("panicking at event") {
            let plugin = line
                .split("plugin=")
                .nth(1)
                .and_then(|p| p.split_whitespace().next())
                .unwrap_or("?")
                .trim_matches('"');
            *scanned.plugin_panics.entry(plugin.to_owned()).or_default() += 1;
        }
        if line.contains("client too slow:") {
            scanned.too_slow += 1;
        }
        if line.contains(" ERROR ") {
            let message = line.split(" ERROR ").nth(1).unwrap_or(line);
            let masked: String = message
                .chars()
                .map(|c| if c.is_ascii_digit() { '#' } else { c })
                .take(160)
                .collect();
            *scanned.errors.entry(masked).or_default() += 1;
        }
    }
    scanned
}

struct Summary<'a> {
    cli: &'a Cli,
    seed: u64,
    took: Duration,
    outcomes: &'a chain::Outcomes,
    node: &'a Node,
    last_stop: Duration,
    chain: &'a chain::Chain,
    log: &'a chain::EventLog,
    verified: &'a str,
    outputs: &'a [(&'static str, outputs::Checked)],
    clients: &'a [streams::Finished],
    ready: &'a Readiness,
    scanned: &'a Scanned,
}

impl Summary<'_> {
    fn print(&self, findings: &Findings) {
        let o = self.outcomes;
        let n = &self.node.stats;
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        println!();
        println!(
            "soak summary: {} s of load, {:.0} s in all, seed {}; {} cores, load average {}",
            self.cli.seconds,
            self.took.as_secs_f64(),
            self.seed,
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            load.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        );
        println!(
            "  transactions: {} sent (async {}, sync {}, commit {}), {} acknowledged ({} known on resending after no answer), {} refused, {} never answered",
            o.sent,
            o.by_mode[0],
            o.by_mode[1],
            o.by_mode[2],
            o.acknowledged,
            o.known_after_resend,
            o.refused,
            o.unanswered
        );
        println!(
            "  double spends: {} ({} with both TRANSFERs acknowledged and settled in a block, the rest refused on arrival)",
            o.double_spends, o.settled_in_block
        );
        let mut starts = n.start_times.clone();
        starts.sort();
        let start_p50 = starts.get(starts.len() / 2).copied().unwrap_or_default();
        let start_max = starts.last().copied().unwrap_or_default();
        println!(
            "  node: {} lives: {} kill -9, {} SIGTERM (slowest stop {:.1} s, the last {:.1} s), {} exits by itself; start to serving p50 {:.2} s, max {:.2} s",
            n.starts,
            n.kills,
            n.terminations,
            n.longest_stop.as_secs_f64(),
            self.last_stop.as_secs_f64(),
            n.unexpected_exits,
            start_p50.as_secs_f64(),
            start_max.as_secs_f64()
        );
        println!(
            "  memory: node max RSS {} MiB (bound {} MiB); {} plugin processes, max RSS {} MiB",
            n.max_rss_kib >> 10,
            self.cli.max_rss_mib,
            n.plugin_processes,
            n.max_plugin_process_rss_kib >> 10
        );
        println!(
            "  ledger: {} blocks, {} transactions committed; event log {} events ({} BLOCK_INVALID), gap-free; verify: {}",
            self.chain.blocks.len(),
            self.chain.transactions(),
            self.log.head,
            self.log.invalid_events,
            self.verified
        );
        for (plugin, c) in self.outputs {
            let panics = self
                .scanned
                .plugin_panics
                .get(*plugin)
                .copied()
                .unwrap_or(0);
            println!(
                "  plugin {plugin}: {} lines for {} events, {} written again after a crash, {} torn by a kill{}",
                c.lines,
                self.log.head,
                c.repeated,
                c.torn,
                if panics > 0 {
                    format!(", {panics} deliberate panics")
                } else {
                    String::new()
                }
            );
        }
        for c in self.clients {
            let ends: Vec<String> = c
                .stats
                .ends
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            println!(
                "  stream {}: {} messages, {} connections, {} stalls, {} starts from the first event; ends: {}",
                c.name,
                c.stats.messages,
                c.stats.connects,
                c.stats.stalls,
                c.stats.restarts_from_first,
                ends.join(", ")
            );
        }
        let probes = self.ready.ok + self.ready.not_ok;
        println!(
            "  /health/ready: 200 in {} of {probes} probes while serving; stream clients closed as too slow: {}",
            self.ready.ok, self.scanned.too_slow
        );
        for (message, count) in &self.scanned.errors {
            println!("  log ERROR ×{count}: {message}");
        }
        let (violations, dropped) = findings.report();
        if violations.is_empty() {
            println!("soak: PASSED, no violation");
        } else {
            println!("soak: FAILED, {} violation(s):", violations.len() + dropped);
            for v in &violations {
                println!("  - {v}");
            }
            if dropped > 0 {
                println!("  ... and {dropped} more");
            }
        }
    }
}
