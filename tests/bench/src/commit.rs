//! Row 3, the commit path, through the real release binary (`eventhost
//! run`, event log on disk in a temporary directory) driven over HTTP on
//! the loopback interface:
//!
//! - throughput: concurrent clients post `mode=async` as fast as the node
//!   answers; the figure is transactions per second from the first POST
//!   until a plugin has received the BLOCK_VALID holding the last one;
//! - latency: `mode=commit` posts paced open-loop at 1,000 tx/s (each is
//!   due at a fixed time whatever happened to the ones before, and its
//!   latency counts from then, so a stall is not hidden by sending less);
//!   the figures are the time to the 202 and the time until a plugin
//!   received the BLOCK_VALID holding it.
//!
//! The plugin is `bench-sink`, writing a timestamp line per event; the node
//! and this process share the machine's wall clock.
//!
//! Baselines from the same run: the node's CPU per committed transaction
//! in the throughput part (from /proc) against the CPU one core spends
//! validating such a transaction (row 2's work), and the latency against
//! the disk's own floor (`disk`): a bare redb commit of a block-sized write.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use tokio_tungstenite::tungstenite;

use crate::node::Node;
use crate::report::{Figure, Row, Target};
use crate::txs::Tx;
use crate::{SINK, quantile};

/// How long the node may take to start, to commit what it accepted, to stop.
const PATIENCE: Duration = Duration::from_secs(60);

struct Params {
    /// Concurrent clients in the throughput part.
    clients: usize,
    throughput_for: Duration,
    /// Transactions made up front for the throughput part, which stops
    /// early if it runs out (so making them does not compete with the node).
    pool: usize,
    /// Open-loop rate of the latency part, in transactions per second.
    rate: u32,
    latency_for: Duration,
    /// Leading part of the latency run left out of the figures: new
    /// connections, first blocks.
    warmup: Duration,
    /// Senders in the latency part: enough that a stall of this many
    /// milliseconds does not delay sending.
    senders: usize,
    /// Commits of each kind in the disk's floor.
    floor_commits: usize,
}

pub fn run(build: &Path, quick: bool) -> anyhow::Result<Vec<Row>> {
    let p = if quick {
        Params {
            clients: 8,
            throughput_for: Duration::from_secs(2),
            pool: 10_000,
            rate: 1000,
            latency_for: Duration::from_secs(3),
            warmup: Duration::from_millis(500),
            senders: 64,
            floor_commits: 200,
        }
    } else {
        Params {
            clients: 64,
            throughput_for: Duration::from_secs(20),
            pool: 80_000,
            rate: 1000,
            latency_for: Duration::from_secs(30),
            warmup: Duration::from_secs(2),
            senders: 64,
            floor_commits: 2_000,
        }
    };
    let latency_count = (f64::from(p.rate) * p.latency_for.as_secs_f64()) as usize;
    let count = p.pool.max(latency_count);
    eprintln!("[3 commit] signing {count} distinct CREATE transactions");
    let txs = crate::txs::creates(count, "commit")?;

    eprintln!(
        "[3 commit] throughput: {} clients posting mode=async for {:.0} s",
        p.clients,
        p.throughput_for.as_secs_f64()
    );
    let node = Bench::start(build, false)?;
    let throughput = throughput_part(&node, &txs[..p.pool], p.clients, p.throughput_for)?;
    let throughput_rss = node.peak_rss_kib();
    node.stop()?;

    eprintln!(
        "[3 commit] latency: mode=commit at {} tx/s for {:.0} s",
        p.rate,
        p.latency_for.as_secs_f64()
    );
    let node = Bench::start(build, true)?;
    let latency = latency(&node, &txs[..latency_count], &p)?;
    let latency_rss = node.peak_rss_kib();
    node.stop()?;

    eprintln!(
        "[3 commit] the bare server (rows 3h, 3i): the same clients for {:.0} s, the same open loop",
        p.throughput_for.as_secs_f64() / 2.0
    );
    let bare = Bare::start()?;
    // Half as long: the pool of signed transactions lasts the bare server
    // about 12 s (6,800 tx/s against the node's 3,300-5,500).
    let bare_throughput = throughput_part(&bare, &txs[..p.pool], p.clients, p.throughput_for / 2)?;
    let bare_throughput_rss = bare.peak_rss_kib();
    bare.stop()?;
    let bare = Bare::start()?;
    let bare_latency = bare_latency(&bare, &txs[..latency_count], &p)?;
    let bare_latency_rss = bare.peak_rss_kib();
    bare.stop()?;

    let validated = &txs[..p.pool.min(2_000)];
    eprintln!(
        "[3 commit] baselines: validating {} transactions on one core; the disk's floor",
        validated.len()
    );
    let texts: Vec<&str> = validated.iter().map(|tx| tx.text.as_str()).collect();
    let validation = crate::validation::cpu_per_transaction(&texts, 3)?;
    // A block as the latency part made them: that many transactions' JSON.
    let per_block = (latency.block_size.round() as usize).clamp(1, txs.len());
    let block: Vec<u8> = txs[..per_block]
        .iter()
        .flat_map(|tx| tx.text.bytes())
        .collect();
    let floor = crate::disk::floor(&std::env::temp_dir(), &block, p.floor_commits)?;

    let node_over_bare = |f: fn(Figure, Figure) -> Option<f64>| {
        f(latency.websocket, bare_latency.websocket).unwrap_or(f64::NAN)
    };
    let latency_note = format!(
        "open loop at {} tx/s for {:.0} s, first {:.1} s left out, latency from when each POST was due; {:.1} transactions per block on average; per transaction the node's threads waited {:.0} µs for a CPU and the client's {:.0} µs (run queue, /proc/*/schedstat); by the node's metrics a POST took {:.2} ms and a block's durable write {:.2} ms on average, 99% of the writes within {} ms",
        p.rate,
        p.latency_for.as_secs_f64(),
        p.warmup.as_secs_f64(),
        latency.block_size,
        latency.node_waited_us,
        latency.senders_waited_us,
        latency.request_ms,
        latency.block_commit_ms,
        latency.block_commit_p99_bound_ms
    );
    Ok(vec![
        Row {
            id: "3a",
            what: format!(
                "Commit path: POST mode=async ({} clients) → BLOCK_VALID at a plugin",
                p.clients
            ),
            ours: Figure::Rate {
                per_second: throughput.committed_per_second,
                unit: "tx",
            },
            baseline: None,
            target: None,
            peak_rss_kib: throughput_rss,
            rss_of: "node",
            notes: vec![format!(
                "{} transactions; clients got 202s at {:.0} tx/s; {:.0} transactions per block on average; event log on disk; clients share the machine's 2 cores with the node",
                throughput.accepted, throughput.accepted_per_second, throughput.block_size
            )],
        },
        Row {
            id: "3b",
            what: format!("mode=commit at {} tx/s: POST → 202", p.rate),
            ours: latency.http,
            baseline: None,
            target: None,
            peak_rss_kib: latency_rss,
            rss_of: "node",
            notes: vec![latency_note],
        },
        Row {
            id: "3c",
            what: format!(
                "mode=commit at {} tx/s: POST → BLOCK_VALID received by a plugin",
                p.rate
            ),
            ours: latency.plugin,
            baseline: None,
            target: None,
            peak_rss_kib: latency_rss,
            rss_of: "node",
            notes: Vec::new(),
        },
        Row {
            id: "3d",
            what: format!(
                "mode=commit at {} tx/s: POST → message on a WebSocket client (valid_transactions)",
                p.rate
            ),
            ours: latency.websocket,
            baseline: Some(floor.redb),
            target: Some(Target::LatencyRatioAtMost { p50: 1.5, p99: 2.0 }),
            peak_rss_kib: latency_rss,
            rss_of: "node",
            notes: vec![format!(
                "baseline: a bare redb commit (durable) of a block-sized write ({} bytes, {per_block} transactions' JSON) in the same temporary directory, {} commits after the node stopped (row 3g)",
                block.len(),
                p.floor_commits
            )],
        },
        Row {
            id: "3f",
            what: format!(
                "Node CPU per committed transaction ({} clients, mode=async) vs validating one on one core",
                p.clients
            ),
            ours: Figure::Cost {
                amount: throughput.per_tx(throughput.node_cpu),
                unit: "µs",
                per: "tx",
            },
            baseline: Some(Figure::Cost {
                amount: validation.as_secs_f64() * 1e6,
                unit: "µs",
                per: "tx",
            }),
            target: Some(Target::RatioAtMost(2.0)),
            peak_rss_kib: throughput_rss,
            rss_of: "node",
            notes: vec![format!(
                "the node's CPU (every thread, /proc/PID/stat, 10 ms ticks) from the first POST of row 3a until its plugin had the last block, over the {} transactions it committed; the baseline is row 2's work (JSON text to a checked transaction) on this process's thread, median of 3 passes over {} of the same transactions; beyond validation the node parses HTTP, checks state, writes the store and the event log, and publishes; of the node's CPU per transaction the HTTP workers took {:.1} µs and the ledger thread {:.1} µs (each thread's schedstat)",
                throughput.accepted,
                validated.len(),
                throughput.per_tx(throughput.http_cpu),
                throughput.per_tx(throughput.ledger_cpu)
            )],
        },
        Row {
            id: "3g",
            what: "The disk's floor: bare redb commit of a block-sized write vs bare write in place + fdatasync".into(),
            ours: floor.redb,
            baseline: Some(floor.fdatasync),
            target: None,
            peak_rss_kib: None,
            rss_of: "bench process",
            notes: vec![format!(
                "{} of each, alternating in tens, {} bytes each, in {}; redb's commit is durable (it syncs before returning); the file is written in place, the database warmed up first (a growing file costs ext4 a journal commit per fdatasync)",
                p.floor_commits,
                block.len(),
                std::env::temp_dir().display()
            )],
        },
        Row {
            id: "3h",
            what: format!(
                "Bare commit server's CPU per committed transaction ({} clients, mode=async) vs validating one on one core",
                p.clients
            ),
            ours: Figure::micros(bare_throughput.per_tx(bare_throughput.node_cpu), "tx"),
            baseline: Some(Figure::micros(validation.as_secs_f64() * 1e6, "tx")),
            target: None,
            peak_rss_kib: bare_throughput_rss,
            rss_of: "bare server",
            notes: vec![format!(
                "3f's floor: `eventhost-bench bare-commit-server` (tests/bench/src/bare_commit.rs: axum, the node's `Transaction::parse`, one thread writing each block as one durable redb value, a broadcast to WebSocket clients; no state, indexes, event log, plugins or metrics) under row 3a's clients for half as long: {} transactions at {:.0} tx/s, {:.0} per block; of its CPU per transaction the HTTP workers took {:.1} µs and the ledger thread {:.1} µs; the node's CPU per transaction (3f) is {:.2}x this server's",
                bare_throughput.accepted,
                bare_throughput.committed_per_second,
                bare_throughput.block_size,
                bare_throughput.per_tx(bare_throughput.http_cpu),
                bare_throughput.per_tx(bare_throughput.ledger_cpu),
                throughput.per_tx(throughput.node_cpu) / bare_throughput.per_tx(bare_throughput.node_cpu)
            )],
        },
        Row {
            id: "3i",
            what: format!(
                "Bare commit server: mode=commit at {} tx/s: POST → message on a WebSocket client",
                p.rate
            ),
            ours: bare_latency.websocket,
            baseline: Some(floor.redb),
            target: None,
            peak_rss_kib: bare_latency_rss,
            rss_of: "bare server",
            notes: vec![format!(
                "3d's floor, the same open loop as 3d through the bare server of 3h; baseline as 3d's; POST → 202 p50 / p99 {}; {:.1} transactions per block; per transaction its threads waited {:.0} µs for a CPU and the senders' {:.0} µs; the node's 3d is {:.2} / {:.2} (p50 / p99) times this",
                bare_latency.http.text(),
                bare_latency.block_size,
                bare_latency.server_waited_us,
                bare_latency.senders_waited_us,
                node_over_bare(Figure::p50_ratio),
                node_over_bare(Figure::ratio)
            )],
        },
    ])
}

/// `eventhost run` with the bench-sink plugin, in a temporary directory.
struct Bench {
    node: Node,
    /// Holds the data directory, the configuration, the log and the stamps.
    dir: tempfile::TempDir,
    base: String,
    /// The WebSocket plugin's address, if it runs.
    websocket: Option<String>,
}

impl Bench {
    /// Starts the node and waits until its HTTP API listens. With
    /// `latency`, the plugin's stamps name every transaction of each block,
    /// and the WebSocket plugin serves the streams.
    fn start(build: &Path, latency: bool) -> anyhow::Result<Bench> {
        let dir = tempfile::Builder::new()
            .prefix("eventhost-bench-")
            .tempdir()?;
        let mut config = format!(
            "[host]\ndata_dir = \"data\"\n{}\nlog = \"info\"\n\n[api]\nbind = \"127.0.0.1:0\"\n\n[admin]\nbind = \"127.0.0.1:0\"\n\n\
             [[plugins]]\nname = \"stamps\"\nlibrary = \"{SINK}\"\n[plugins.config]\nstamps = \"stamps.txt\"\nids = {latency}\n",
            crate::plugin_dirs_line(build)
        );
        if latency {
            config.push_str(
                "\n[[plugins]]\nname = \"websocket\"\n[plugins.config]\nbind = \"127.0.0.1:0\"\n",
            );
        }
        fs::write(dir.path().join("config.toml"), config)?;
        let node = Node::start(build, dir.path(), PATIENCE)?;
        let base = format!("http://{}", node.logged_address("HTTP API on http://")?);
        let websocket = latency
            .then(|| node.logged_address("listening on "))
            .transpose()?;
        Ok(Bench {
            node,
            dir,
            base,
            websocket,
        })
    }

    fn stamps(&self) -> PathBuf {
        self.dir.path().join("stamps.txt")
    }

    fn stop(self) -> anyhow::Result<()> {
        self.node.stop(PATIENCE)
    }
}

/// What the throughput and latency parts drive: the node (rows 3a–3d) or
/// row 3h's bare server (3h, 3i).
trait Server {
    /// `http://ADDR` of its HTTP API.
    fn base(&self) -> &str;
    fn pid(&self) -> u32;
    /// Where it serves `valid_transactions`, if it does.
    fn websocket(&self) -> Option<&str>;
    /// Waits until `count` transactions are committed.
    fn wait_committed(&self, count: usize) -> anyhow::Result<Committed>;

    /// How long its threads have waited for a CPU so far.
    fn run_queue_wait(&self) -> Duration {
        crate::sys::run_queue_wait(self.pid()).unwrap_or_default()
    }

    fn peak_rss_kib(&self) -> Option<u64> {
        crate::sys::peak_rss_kib(Some(self.pid()))
    }
}

/// Blocks committed, and when the last one was (on the wall clock).
struct Committed {
    blocks: usize,
    last_ns: u128,
}

impl Server for Bench {
    fn base(&self) -> &str {
        &self.base
    }

    fn pid(&self) -> u32 {
        self.node.pid()
    }

    fn websocket(&self) -> Option<&str> {
        self.websocket.as_deref()
    }

    fn wait_committed(&self, count: usize) -> anyhow::Result<Committed> {
        let stamps = wait_committed(self, count)?;
        Ok(Committed {
            blocks: stamps.len(),
            last_ns: stamps.last().map_or(0, |s| s.at_ns),
        })
    }
}

/// Row 3h's bare server (`bare_commit`), as a process of its own.
struct Bare {
    server: Node,
    /// Holds its store and its log.
    _dir: tempfile::TempDir,
    base: String,
    websocket: String,
}

impl Bare {
    fn start() -> anyhow::Result<Bare> {
        let dir = tempfile::Builder::new()
            .prefix("eventhost-bench-bare-")
            .tempdir()?;
        let mut command = std::process::Command::new(std::env::current_exe()?);
        command
            .arg("bare-commit-server")
            .arg("--dir")
            .arg(dir.path());
        let server = Node::spawn(command, &dir.path().join("server.log"), PATIENCE)?;
        let base = format!("http://{}", server.logged_address("HTTP API on http://")?);
        let websocket = server.logged_address("websocket on ")?;
        Ok(Bare {
            server,
            _dir: dir,
            base,
            websocket,
        })
    }

    fn stop(self) -> anyhow::Result<()> {
        self.server.stop(PATIENCE)
    }
}

impl Server for Bare {
    fn base(&self) -> &str {
        &self.base
    }

    fn pid(&self) -> u32 {
        self.server.pid()
    }

    fn websocket(&self) -> Option<&str> {
        Some(&self.websocket)
    }

    fn wait_committed(&self, count: usize) -> anyhow::Result<Committed> {
        let url = format!("{}/committed", self.base);
        let agent = client();
        let deadline = Instant::now() + PATIENCE;
        loop {
            let text = agent.get(&url).call()?.body_mut().read_to_string()?;
            let fields: Vec<u128> = text
                .split(' ')
                .map(str::parse)
                .collect::<Result<_, _>>()
                .with_context(|| format!("GET {url} answered `{text}`"))?;
            let [committed, blocks, last_ns] = fields[..] else {
                bail!("GET {url} answered `{text}`");
            };
            if committed as usize >= count {
                return Ok(Committed {
                    blocks: blocks as usize,
                    last_ns,
                });
            }
            if Instant::now() > deadline {
                bail!(
                    "the bare server committed only {committed} of {count} transactions within {PATIENCE:?}"
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// An HTTP client with its own keep-alive connection.
pub(crate) fn client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(PATIENCE))
        .build()
        .into()
}

/// Posts a transaction; fails unless the node answers 202.
pub(crate) fn post(agent: &ureq::Agent, url: &str, tx: &Tx) -> anyhow::Result<()> {
    let mut response = agent
        .post(url)
        .header("content-type", "application/json")
        .send(tx.text.as_str())?;
    // Reading the body to its end returns the connection to the pool.
    let body = response.body_mut().read_to_string()?;
    if response.status() != 202 {
        bail!("POST {url} answered {}: {body}", response.status());
    }
    Ok(())
}

/// One line the plugin wrote: when it received which event.
struct Stamp {
    at_ns: u128,
    valid: bool,
    transactions: usize,
    ids: Vec<String>,
}

/// The complete lines of the stamps file so far.
fn read_stamps(path: &Path) -> anyhow::Result<Vec<Stamp>> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    // The plugin may be half way through a line.
    let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    complete
        .lines()
        .map(|line| {
            let mut fields = line.split(' ');
            let mut next = || fields.next().context("a short stamp line");
            let at_ns = next()?.parse()?;
            let _seq = next()?;
            let valid = next()? == "BLOCK_VALID";
            let transactions = next()?.parse()?;
            let ids = fields
                .next()
                .map(|ids| ids.split(',').map(str::to_owned).collect())
                .unwrap_or_default();
            Ok(Stamp {
                at_ns,
                valid,
                transactions,
                ids,
            })
        })
        .collect()
}

/// Waits until the plugin has received BLOCK_VALIDs holding `count`
/// transactions, and returns its stamps.
fn wait_committed(node: &Bench, count: usize) -> anyhow::Result<Vec<Stamp>> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let stamps = read_stamps(&node.stamps())?;
        if let Some(invalid) = stamps.iter().find(|s| !s.valid) {
            bail!(
                "the node rejected {} transactions at block time",
                invalid.transactions
            );
        }
        let committed: usize = stamps.iter().map(|s| s.transactions).sum();
        if committed >= count {
            return Ok(stamps);
        }
        if Instant::now() > deadline {
            bail!(
                "only {committed} of {count} transactions reached the plugin within {PATIENCE:?}"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The mean of a Prometheus histogram (its `_sum` over its `_count`), in
/// milliseconds, over the series whose labels contain `labels`.
fn mean_ms(metrics: &str, histogram: &str, labels: &str) -> f64 {
    let total = |suffix: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(&format!("{histogram}{suffix}")) && l.contains(labels))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    total("_sum") * 1e3 / total("_count")
}

/// The upper bound of the bucket holding the 99th percentile of a
/// Prometheus histogram without labels, in milliseconds (the buckets
/// double, so it is within a factor of two).
fn p99_bound_ms(metrics: &str, histogram: &str) -> f64 {
    let prefix = format!("{histogram}_bucket{{le=\"");
    let buckets: Vec<(f64, f64)> = metrics
        .lines()
        .filter_map(|l| {
            let (le, count) = l.strip_prefix(&prefix)?.split_once("\"} ")?;
            Some((le.parse().ok()?, count.parse().ok()?))
        })
        .collect();
    let total = buckets.last().map_or(0.0, |(_, count)| *count);
    buckets
        .iter()
        .find(|(_, count)| *count >= 0.99 * total)
        .map_or(f64::NAN, |(le, _)| le * 1e3)
}

pub(crate) fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Prints progress every few seconds until `done` says the work finished
/// (or `limit` passed, in case a worker hangs: its failure shows later).
fn report_progress(what: &str, done: impl Fn() -> Option<String>, limit: Duration) {
    let started = Instant::now();
    let mut last = Instant::now();
    while started.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(100));
        match done() {
            None => return,
            Some(status) if last.elapsed() >= Duration::from_secs(5) => {
                eprintln!("[3 commit] {what}: {status}");
                last = Instant::now();
            }
            Some(_) => {}
        }
    }
}

/// The node's thread names (host/src/node.rs, host/src/sources/ledger):
/// the HTTP API's runtime, and the thread that writes the blocks.
const HTTP_THREADS: &str = "http";
const LEDGER_THREAD: &str = "ledger";

struct Throughput {
    accepted: usize,
    /// CPU the node used from the first POST until the last block reached
    /// its plugin.
    node_cpu: Duration,
    /// The part of it the HTTP API's threads used, and the ledger's thread.
    http_cpu: Duration,
    ledger_cpu: Duration,
    accepted_per_second: f64,
    committed_per_second: f64,
    block_size: f64,
}

impl Throughput {
    /// `cpu` per committed transaction, in µs.
    fn per_tx(&self, cpu: Duration) -> f64 {
        cpu.as_secs_f64() * 1e6 / self.accepted.max(1) as f64
    }
}

fn throughput_part(
    node: &impl Server,
    txs: &[Tx],
    clients: usize,
    length: Duration,
) -> anyhow::Result<Throughput> {
    let url = format!("{}/api/v1/transactions?mode=async", node.base());
    let next = AtomicUsize::new(0);
    let finished = AtomicUsize::new(0);
    let node_cpu = || crate::sys::process_cpu_time(node.pid()).context("the server's CPU time");
    let threads_cpu = |name| {
        crate::sys::threads_cpu_time(node.pid(), name)
            .with_context(|| format!("the CPU time of the server's {name} threads"))
    };
    let cpu_before = node_cpu()?;
    let http_before = threads_cpu(HTTP_THREADS)?;
    let ledger_before = threads_cpu(LEDGER_THREAD)?;
    let started_ns = now_ns();
    let started = Instant::now();
    let results: Vec<anyhow::Result<usize>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..clients)
            .map(|_| {
                scope.spawn(|| {
                    let agent = client();
                    let mut sent = 0;
                    let outcome = loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= txs.len() || started.elapsed() >= length {
                            break Ok(sent);
                        }
                        if let Err(e) = post(&agent, &url, &txs[i]) {
                            break Err(e);
                        }
                        sent += 1;
                    };
                    finished.fetch_add(1, Ordering::Relaxed);
                    outcome
                })
            })
            .collect();
        report_progress(
            "throughput",
            || {
                (finished.load(Ordering::Relaxed) < clients)
                    .then(|| format!("{} posted", next.load(Ordering::Relaxed).min(txs.len())))
            },
            length + PATIENCE,
        );
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|_| bail!("a client panicked")))
            .collect()
    });
    let posting = started.elapsed();
    let mut accepted = 0;
    for r in results {
        accepted += r?;
    }
    if accepted == txs.len() {
        eprintln!(
            "[3 commit] warning: the throughput part ran out of transactions after {:.1} s",
            posting.as_secs_f64()
        );
    }
    let committed = node.wait_committed(accepted)?;
    let node_cpu = node_cpu()?.saturating_sub(cpu_before);
    let http_cpu = threads_cpu(HTTP_THREADS)?.saturating_sub(http_before);
    let ledger_cpu = threads_cpu(LEDGER_THREAD)?.saturating_sub(ledger_before);
    let last_ns = committed.last_ns.max(started_ns);
    let seconds = (last_ns.saturating_sub(started_ns)) as f64 / 1e9;
    let result = Throughput {
        accepted,
        node_cpu,
        http_cpu,
        ledger_cpu,
        accepted_per_second: accepted as f64 / posting.as_secs_f64(),
        committed_per_second: accepted as f64 / seconds,
        block_size: accepted as f64 / committed.blocks.max(1) as f64,
    };
    eprintln!(
        "[3 commit] throughput: {accepted} transactions committed at {:.0} tx/s",
        result.committed_per_second
    );
    Ok(result)
}

/// Reads `valid_transactions` messages until `count` arrived (or `until`);
/// returns when each transaction's message arrived, on the wall clock.
pub(crate) fn listen(
    mut client: crate::WsClient,
    count: usize,
    until: Instant,
) -> anyhow::Result<HashMap<String, u128>> {
    let mut arrived = HashMap::with_capacity(count);
    while arrived.len() < count {
        if Instant::now() > until {
            bail!(
                "the WebSocket client got {} of {count} messages in time",
                arrived.len()
            );
        }
        let text = match client.read() {
            Ok(tungstenite::Message::Text(text)) => text,
            Ok(_) => continue,
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) => bail!("the WebSocket stream failed: {e}"),
        };
        let at = now_ns();
        let message: serde_json::Value = serde_json::from_str(&text)?;
        let id = message["transaction_id"]
            .as_str()
            .with_context(|| format!("a message without a transaction_id: {text}"))?;
        arrived.insert(id.to_owned(), at);
    }
    Ok(arrived)
}

struct Latency {
    http: Figure,
    plugin: Figure,
    websocket: Figure,
    block_size: f64,
    /// Mean time the node took to write a block durably, and to answer a
    /// POST, by its own metrics: what of the latency is the node's.
    block_commit_ms: f64,
    /// Bounds the 99th percentile of a block's durable write (bucket bound).
    block_commit_p99_bound_ms: f64,
    request_ms: f64,
    /// Time the node's threads, and the senders, spent waiting for a CPU,
    /// per transaction.
    node_waited_us: f64,
    senders_waited_us: f64,
}

/// What the senders and the WebSocket client of an open-loop run saw.
struct OpenLoop {
    /// Transaction `i` was due at `start_ns + i * interval` (wall clock).
    start_ns: u128,
    interval: Duration,
    /// Transactions left out of the figures (the warm-up).
    skip: usize,
    /// Each transaction's POST → 202, in milliseconds from when it was due.
    http_ms: Vec<f64>,
    /// When each transaction's message reached the WebSocket client.
    on_websocket: HashMap<String, u128>,
    /// Time the server's threads, and the senders, spent waiting for a
    /// CPU, per transaction, in µs.
    server_waited_us: f64,
    senders_waited_us: f64,
}

impl OpenLoop {
    /// Milliseconds from when each transaction after the warm-up was due
    /// until `at` says it arrived, sorted.
    fn since_due(
        &self,
        txs: &[Tx],
        at: impl Fn(&Tx) -> anyhow::Result<u128>,
    ) -> anyhow::Result<Vec<f64>> {
        let mut ms = Vec::with_capacity(txs.len().saturating_sub(self.skip));
        for (i, tx) in txs.iter().enumerate().skip(self.skip) {
            let due_ns = self.start_ns + self.interval.as_nanos() * i as u128;
            ms.push(at(tx)?.saturating_sub(due_ns) as f64 / 1e6);
        }
        ms.sort_by(f64::total_cmp);
        Ok(ms)
    }

    /// POST → 202, sorted.
    fn http(&self) -> Vec<f64> {
        let mut http = self.http_ms[self.skip..].to_vec();
        http.sort_by(f64::total_cmp);
        http
    }

    /// POST → message on the WebSocket client, sorted.
    fn websocket(&self, txs: &[Tx]) -> anyhow::Result<Vec<f64>> {
        self.since_due(txs, |tx| {
            self.on_websocket.get(&tx.id).copied().with_context(|| {
                format!("the WebSocket client never received transaction {}", tx.id)
            })
        })
    }
}

/// Posts `txs` with `mode=commit` open-loop at `p.rate` from `p.senders`
/// threads while a WebSocket client of `valid_transactions` listens.
fn open_loop(server: &impl Server, txs: &[Tx], p: &Params) -> anyhow::Result<OpenLoop> {
    let url = format!("{}/api/v1/transactions?mode=commit", server.base());
    let interval = Duration::from_secs(1) / p.rate;
    let next = AtomicUsize::new(0);
    let finished = AtomicUsize::new(0);
    // Each transaction is due at `start + i * interval`, on both clocks.
    let lead = Duration::from_millis(100);
    let start = Instant::now() + lead;
    let start_ns = now_ns() + lead.as_nanos();
    let http_ms = Mutex::new(vec![f64::NAN; txs.len()]);
    let websocket = server
        .websocket()
        .context("the server serves no WebSocket streams")?;
    let stream = crate::ws_connect(websocket, "/api/v1/streams/valid_transactions")?;
    let listen_until = start + p.latency_for + PATIENCE;
    let server_waited = server.run_queue_wait();
    let senders_waited_ns = AtomicU64::new(0);
    let (results, listened) = std::thread::scope(|scope| {
        let listener = scope.spawn(|| listen(stream, txs.len(), listen_until));
        let workers: Vec<_> = (0..p.senders)
            .map(|_| {
                scope.spawn(|| {
                    let waited = crate::sys::thread_run_queue_wait().unwrap_or_default();
                    let agent = client();
                    let outcome = loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= txs.len() {
                            break Ok(());
                        }
                        let due = start + interval * i as u32;
                        std::thread::sleep(due.saturating_duration_since(Instant::now()));
                        if let Err(e) = post(&agent, &url, &txs[i]) {
                            break Err(e);
                        }
                        let took = due.elapsed().as_secs_f64() * 1e3;
                        http_ms.lock().unwrap_or_else(|e| e.into_inner())[i] = took;
                    };
                    let waited = crate::sys::thread_run_queue_wait()
                        .unwrap_or_default()
                        .saturating_sub(waited);
                    senders_waited_ns.fetch_add(waited.as_nanos() as u64, Ordering::Relaxed);
                    finished.fetch_add(1, Ordering::Relaxed);
                    outcome
                })
            })
            .collect();
        report_progress(
            "latency",
            || {
                (finished.load(Ordering::Relaxed) < p.senders).then(|| {
                    format!(
                        "{} of {} posted",
                        next.load(Ordering::Relaxed).min(txs.len()),
                        txs.len()
                    )
                })
            },
            p.latency_for + PATIENCE,
        );
        let results: Vec<anyhow::Result<()>> = workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|_| bail!("a sender panicked")))
            .collect();
        let listened = listener
            .join()
            .unwrap_or_else(|_| bail!("the WebSocket client panicked"));
        (results, listened)
    });
    for r in results {
        r?;
    }
    let on_websocket = listened?;
    let server_waited = server.run_queue_wait().saturating_sub(server_waited);
    Ok(OpenLoop {
        start_ns,
        interval,
        skip: (p.warmup.as_secs_f64() * f64::from(p.rate)) as usize,
        http_ms: http_ms.into_inner().unwrap_or_else(|e| e.into_inner()),
        on_websocket,
        server_waited_us: server_waited.as_secs_f64() * 1e6 / txs.len() as f64,
        senders_waited_us: senders_waited_ns.into_inner() as f64 / 1e3 / txs.len() as f64,
    })
}

/// Rows 3b–3d: the open loop through the node, with its plugin's stamps
/// and its metrics.
fn latency(node: &Bench, txs: &[Tx], p: &Params) -> anyhow::Result<Latency> {
    let run = open_loop(node, txs, p)?;
    let stamps = wait_committed(node, txs.len())?;
    let metrics = client()
        .get(format!("{}/metrics", node.base))
        .call()?
        .body_mut()
        .read_to_string()?;
    let received: HashMap<&str, u128> = stamps
        .iter()
        .flat_map(|s| s.ids.iter().map(move |id| (id.as_str(), s.at_ns)))
        .collect();
    let http = run.http();
    let plugin = run.since_due(txs, |tx| {
        received
            .get(tx.id.as_str())
            .copied()
            .with_context(|| format!("the plugin never received transaction {}", tx.id))
    })?;
    let client = run.websocket(txs)?;
    let result = Latency {
        http: Figure::latency(&http),
        plugin: Figure::latency(&plugin),
        websocket: Figure::latency(&client),
        block_size: txs.len() as f64 / stamps.len().max(1) as f64,
        node_waited_us: run.server_waited_us,
        block_commit_ms: mean_ms(&metrics, "eventhost_block_commit_seconds", ""),
        block_commit_p99_bound_ms: p99_bound_ms(&metrics, "eventhost_block_commit_seconds"),
        request_ms: mean_ms(
            &metrics,
            "eventhost_http_request_seconds",
            "method=\"POST\",route=\"/api/v1/transactions\"",
        ),
        senders_waited_us: run.senders_waited_us,
    };
    eprintln!(
        "[3 commit] latency: POST → 202 p50 {:.2} ms p99 {:.2} ms; → plugin p50 {:.2} ms p99 {:.2} ms; → WebSocket client p50 {:.2} ms p99 {:.2} ms",
        quantile(&http, 0.5),
        quantile(&http, 0.99),
        quantile(&plugin, 0.5),
        quantile(&plugin, 0.99),
        quantile(&client, 0.5),
        quantile(&client, 0.99)
    );
    Ok(result)
}

/// Row 3i: the open loop through the bare server.
struct BareLatency {
    websocket: Figure,
    http: Figure,
    block_size: f64,
    server_waited_us: f64,
    senders_waited_us: f64,
}

fn bare_latency(server: &Bare, txs: &[Tx], p: &Params) -> anyhow::Result<BareLatency> {
    let run = open_loop(server, txs, p)?;
    let committed = server.wait_committed(txs.len())?;
    let http = run.http();
    let client = run.websocket(txs)?;
    eprintln!(
        "[3 commit] bare server: POST → 202 p50 {:.2} ms p99 {:.2} ms; → WebSocket client p50 {:.2} ms p99 {:.2} ms",
        quantile(&http, 0.5),
        quantile(&http, 0.99),
        quantile(&client, 0.5),
        quantile(&client, 0.99)
    );
    Ok(BareLatency {
        websocket: Figure::latency(&client),
        http: Figure::latency(&http),
        block_size: txs.len() as f64 / committed.blocks.max(1) as f64,
        server_waited_us: run.server_waited_us,
        senders_waited_us: run.senders_waited_us,
    })
}
