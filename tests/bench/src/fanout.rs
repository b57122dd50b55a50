//! Row 4, WebSocket fan-out: messages per second delivered to 1,000
//! connected clients by the node (`eventhost replay -` with the WebSocket
//! plugin, its `valid_transactions` stream) against a bare tokio-tungstenite
//! broadcast server ([`crate::bare_ws`]) in the same setup: the same blocks
//! on standard input, the same clients, the same pacing.
//!
//! Both servers are processes of their own. For each this measures, in a
//! round: its resident memory before and after the clients connect (memory
//! per idle connection); the messages delivered while blocks are fed for a
//! fixed time (the feeder keeps every client within a window of messages
//! behind, well inside both servers' queues, so nobody is dropped and the
//! rate is what the slowest client sustains); the server's CPU time over
//! that time, from /proc/PID/stat, per delivered message; and, meanwhile,
//! how long a new client takes to connect and upgrade.
//!
//! The clients run in this process, on the same 2 cores: reading 1,000
//! streams costs about what serving them does, and both servers share
//! that handicap.
//!
//! Row 7c ([`crate::edge`]) measures an edge node the same way
//! ([`measure_edge`]): its blocks come from a JetStream stream the feeder
//! publishes to, instead of its standard input.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::report::{Figure, Row, Target};
use crate::{median, quantile, sys};

/// The stream the clients read; the bare server serves it on any path.
pub const PATH: &str = "/api/v1/streams/valid_transactions";
/// Transactions per block: one message each per client.
pub const PER_BLOCK: u64 = 100;
/// Messages a client may be behind before the feeder waits: a fifth of
/// either server's queue.
const WINDOW: u64 = 2_000;
/// A server that delivers nothing for this long has stopped.
const STALL: Duration = Duration::from_secs(30);

pub(crate) struct Params {
    pub clients: usize,
    pub rounds: usize,
    /// How long blocks are fed in a round.
    pub feed_for: Duration,
    /// How often a new client connects while blocks are fed.
    pub probe_every: Duration,
}

impl Params {
    pub fn new(quick: bool) -> Params {
        if quick {
            Params {
                clients: 50,
                rounds: 1,
                feed_for: Duration::from_secs(2),
                probe_every: Duration::from_millis(100),
            }
        } else {
            Params {
                clients: 1000,
                rounds: 3,
                feed_for: Duration::from_secs(8),
                probe_every: Duration::from_millis(50),
            }
        }
    }
}

/// What the clients ask for and what the blocks hold.
pub(crate) struct Workload {
    /// Client `i` reads `paths[i % paths.len()]`.
    pub paths: Vec<String>,
    /// Whether each transaction has metadata (`{"n": <its number>}`) and an
    /// output, for queries to look into.
    pub rich: bool,
}

impl Workload {
    /// Row 4's: every client on `valid_transactions`, bare transactions.
    pub fn plain() -> Workload {
        Workload {
            paths: vec![PATH.into()],
            rich: false,
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Server {
    Ours,
    /// The node's websocket plugin over wss:// (row 4k).
    OursTls,
    Bare,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Ours => "eventhost",
            Server::OursTls => "eventhost over wss://",
            Server::Bare => "bare tokio-tungstenite",
        }
    }
}

/// An edge node following a stream, and how its blocks get there.
pub(crate) struct EdgeFeed {
    /// The `[source]` table of the edge's configuration.
    pub source: String,
    /// Makes the writer that publishes each block (a line) written to it.
    pub publisher: Box<dyn Fn() -> anyhow::Result<Box<dyn Write + Send>>>,
}

/// One round of one server.
pub(crate) struct Round {
    pub delivered: u64,
    feeding: Duration,
    server_cpu: Duration,
    /// This process's CPU meanwhile: the clients, and the feeder and the
    /// prober beside them.
    client_cpu: Duration,
    idle_kib_per_client: f64,
    connect_ms: Vec<f64>,
    pub peak_rss_kib: Option<u64>,
}

impl Round {
    pub fn rate(&self) -> f64 {
        self.delivered as f64 / self.feeding.as_secs_f64()
    }

    pub fn cpu_us_per_message(&self) -> f64 {
        self.server_cpu.as_secs_f64() * 1e6 / self.delivered as f64
    }

    fn client_cpu_us_per_message(&self) -> f64 {
        self.client_cpu.as_secs_f64() * 1e6 / self.delivered as f64
    }
}

/// The median over `rounds` of their rates, in messages per second.
pub fn median_rate(rounds: &[Round]) -> f64 {
    median(rounds.iter().map(Round::rate).collect())
}

/// The median over `rounds` of their server CPU per message, in µs.
pub fn median_cpu(rounds: &[Round]) -> f64 {
    median(rounds.iter().map(Round::cpu_us_per_message).collect())
}

/// The runtime of this process's side, the clients, the feeder and the
/// prober: two workers, as the machine has two cores.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

pub fn run(build: &Path, quick: bool) -> anyhow::Result<Vec<Row>> {
    let p = Params::new(quick);
    eprintln!(
        "[4 websocket] {} round(s): {} clients, blocks of {PER_BLOCK} transactions fed for {:.0} s, eventhost and the bare server alternating",
        p.rounds,
        p.clients,
        p.feed_for.as_secs_f64()
    );
    let runtime = runtime()?;
    let mut ours = Vec::new();
    let mut bare = Vec::new();
    for round in 1..=p.rounds {
        for server in [Server::Ours, Server::Bare] {
            let r = measure(server, build, &p, &Workload::plain(), &runtime)?;
            eprintln!(
                "[4 websocket] round {round}/{}: {}: {:.0} messages/s, {:.2} µs server CPU per message, {:.1} KiB per idle client, connect p99 {:.1} ms",
                p.rounds,
                server.name(),
                r.rate(),
                r.cpu_us_per_message(),
                r.idle_kib_per_client,
                quantile(&sorted(r.connect_ms.clone()), 0.99)
            );
            match server {
                Server::Bare => bare.push(r),
                _ => ours.push(r),
            }
        }
    }

    let idle = |rounds: &[Round]| median(rounds.iter().map(|r| r.idle_kib_per_client).collect());
    let client_cpu = |rounds: &[Round]| {
        median(
            rounds
                .iter()
                .map(Round::client_cpu_us_per_message)
                .collect(),
        )
    };
    let connect =
        |rounds: &[Round]| sorted(rounds.iter().flat_map(|r| r.connect_ms.clone()).collect());
    let peak = |rounds: &[Round]| rounds.iter().filter_map(|r| r.peak_rss_kib).max();
    let (ours_connect, bare_connect) = (connect(&ours), connect(&bare));
    let clients = p.clients;
    Ok(vec![
        Row {
            id: "4a",
            what: format!("WebSocket fan-out to {clients} clients vs bare tokio-tungstenite"),
            ours: Figure::Rate {
                per_second: median_rate(&ours),
                unit: "messages",
            },
            baseline: Some(Figure::Rate {
                per_second: median_rate(&bare),
                unit: "messages",
            }),
            target: Some(Target::RatioAtLeast(1.2)),
            peak_rss_kib: peak(&ours),
            rss_of: "node",
            notes: vec![format!(
                "messages delivered per second to all clients together (valid_transactions, blocks of {PER_BLOCK}); median of {} round(s); clients at most {WINDOW} messages behind; the clients share the 2 cores, and take {:.2} µs of CPU per message against eventhost, {:.2} µs against the bare server (this process: the clients, the feeder, the prober); bare server's peak RSS {:.1} MiB",
                p.rounds,
                client_cpu(&ours),
                client_cpu(&bare),
                peak(&bare).unwrap_or(0) as f64 / 1024.0
            )],
        },
        Row {
            id: "4b",
            what: "Server CPU time per delivered message (/proc/PID/stat)".into(),
            ours: Figure::micros(median_cpu(&ours), "message"),
            baseline: Some(Figure::micros(median_cpu(&bare), "message")),
            target: Some(Target::RatioAtMost(0.6)),
            peak_rss_kib: None,
            rss_of: "",
            notes: vec![
                "ours includes the host: writing each block to the event log and handing it to the plugin".into(),
            ],
        },
        Row {
            id: "4c",
            what: "Memory per idle connection (server RSS growth / clients)".into(),
            ours: Figure::Cost {
                amount: idle(&ours),
                unit: "KiB",
                per: "client",
            },
            baseline: Some(Figure::Cost {
                amount: idle(&bare),
                unit: "KiB",
                per: "client",
            }),
            target: Some(Target::CostAtMost(4.0, "KiB")),
            peak_rss_kib: None,
            rss_of: "",
            notes: Vec::new(),
        },
        Row {
            id: "4d",
            what: "Connect latency (TCP + upgrade) of a new client during full-speed fan-out".into(),
            ours: Figure::latency(&ours_connect),
            baseline: Some(Figure::latency(&bare_connect)),
            target: Some(Target::P99RatioAtMost(0.5)),
            peak_rss_kib: None,
            rss_of: "",
            notes: vec![format!(
                "a new client every {} ms while blocks are fed; {} samples",
                p.probe_every.as_millis(),
                ours_connect.len()
            )],
        },
    ])
}

/// Row 4k: the server's CPU per delivered message with every client on
/// wss://, against the bare server's over ws:// (building a bare TLS
/// server would measure rustls twice over); the node over ws:// in the same
/// rounds says what TLS itself costs. Fewer clients than row 4: each
/// client's decryption runs in this process, on the same two cores.
pub fn run_wss(build: &Path, quick: bool) -> anyhow::Result<Vec<Row>> {
    let p = Params {
        clients: if quick { 20 } else { 200 },
        ..Params::new(quick)
    };
    eprintln!(
        "[4k wss] {} round(s): {} clients, blocks of {PER_BLOCK} fed for {:.0} s, eventhost over wss:// and ws:// and the bare server (ws://) alternating",
        p.rounds,
        p.clients,
        p.feed_for.as_secs_f64()
    );
    let runtime = runtime()?;
    let servers = [Server::OursTls, Server::Ours, Server::Bare];
    let mut rounds: [Vec<Round>; 3] = Default::default();
    for round in 1..=p.rounds {
        for (i, server) in servers.into_iter().enumerate() {
            let r = measure(server, build, &p, &Workload::plain(), &runtime)?;
            eprintln!(
                "[4k wss] round {round}/{}: {}: {:.0} messages/s, {:.2} µs server CPU per message",
                p.rounds,
                server.name(),
                r.rate(),
                r.cpu_us_per_message(),
            );
            rounds[i].push(r);
        }
    }
    let [tls, plain, bare] = &rounds;
    Ok(vec![Row {
        id: "4k",
        what: format!(
            "wss:// fan-out to {} clients: server CPU per delivered message, eventhost over TLS vs the bare tokio-tungstenite server over ws://",
            p.clients
        ),
        ours: Figure::micros(median_cpu(tls), "message"),
        baseline: Some(Figure::micros(median_cpu(bare), "message")),
        target: None,
        peak_rss_kib: rounds[0].iter().filter_map(|r| r.peak_rss_kib).max(),
        rss_of: "node",
        notes: vec![format!(
            "eventhost over ws:// in the same rounds: {:.3} µs per message, so TLS (each client's records encrypted for it alone: the one cost a shared frame cannot share) is {:.0}% of the wss:// figure; {:.0} messages/s over wss://, {:.0} over ws://; median of {} round(s)",
            median_cpu(plain),
            100.0 * (1.0 - median_cpu(plain) / median_cpu(tls)),
            median_rate(tls),
            median_rate(plain),
            p.rounds
        )],
    }])
}

fn sorted(mut xs: Vec<f64>) -> Vec<f64> {
    xs.sort_by(f64::total_cmp);
    xs
}

/// A server process, its log in a temporary directory.
struct Process {
    child: Child,
    dir: tempfile::TempDir,
    address: String,
    name: &'static str,
    /// An edge stops on SIGTERM; the others when their input ends.
    edge: bool,
    /// Its clients speak TLS.
    tls: bool,
}

/// The node's configuration: `source` (an edge's `[source]` table, or
/// nothing), and the websocket plugin set up as the bare server serves.
fn node_config(build: &Path, source: &str) -> String {
    format!(
        "[host]\n{}\nlog = \"info\"\n\n{source}\n[[plugins]]\nname = \"websocket\"\n[plugins.config]\nbind = \"127.0.0.1:0\"\n# The bare server does not ping either.\nping_interval_ms = 0\n# Every client comes from 127.0.0.1.\nmax_connections_per_address = 10000\n",
        crate::plugin_dirs_line(build)
    )
}

impl Process {
    fn start(server: Server, build: &Path) -> anyhow::Result<Process> {
        let dir = tempfile::Builder::new()
            .prefix("eventhost-bench-ws-")
            .tempdir()?;
        let command = match server {
            Server::Ours | Server::OursTls => {
                let mut config = node_config(build, "");
                if server == Server::OursTls {
                    let tls = crate::tls::material()?;
                    config += &format!("tls_cert = {:?}\ntls_key = {:?}\n", tls.cert, tls.key);
                }
                std::fs::write(dir.path().join("config.toml"), config)?;
                let mut command = Command::new(build.join("eventhost"));
                command
                    .arg("--config")
                    .arg(dir.path().join("config.toml"))
                    .args(["replay", "-"]);
                command
            }
            Server::Bare => {
                let mut command = Command::new(std::env::current_exe()?);
                command.arg("bare-ws-server");
                command
            }
        };
        let mut process = Process::spawn(command, dir, server.name(), false)?;
        process.tls = server == Server::OursTls;
        Ok(process)
    }

    /// An edge node (`eventhost run`) following the stream `feed` names.
    fn start_edge(feed: &EdgeFeed, build: &Path) -> anyhow::Result<Process> {
        let dir = tempfile::Builder::new()
            .prefix("eventhost-bench-ws-")
            .tempdir()?;
        std::fs::write(
            dir.path().join("config.toml"),
            node_config(build, &feed.source),
        )?;
        let mut command = Command::new(build.join("eventhost"));
        command
            .arg("--config")
            .arg(dir.path().join("config.toml"))
            .arg("run");
        Process::spawn(command, dir, "eventhost edge", true)
    }

    fn spawn(
        mut command: Command,
        dir: tempfile::TempDir,
        name: &'static str,
        edge: bool,
    ) -> anyhow::Result<Process> {
        let log = dir.path().join("server.log");
        let child = command
            .current_dir(dir.path())
            .env_remove("RUST_LOG")
            .env_remove("EVENTHOST_CONFIG")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("cannot start the {name} server"))?;
        let mut process = Process {
            child,
            dir,
            address: String::new(),
            name,
            edge,
            tls: false,
        };
        let deadline = Instant::now() + STALL;
        process.address = loop {
            let text = process.log();
            if let Some(address) = crate::logged_address(&text, "listening on ") {
                break address;
            }
            if let Some(status) = process.child.try_wait()? {
                bail!("the {name} server exited ({status}):\n{text}");
            }
            if Instant::now() > deadline {
                bail!("the {name} server did not listen within {STALL:?}:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Ok(process)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Ends its input, so it stops (an edge: SIGTERM), and waits for it.
    fn stop(mut self) -> anyhow::Result<()> {
        drop(self.child.stdin.take());
        if self.edge {
            // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        }
        let deadline = Instant::now() + STALL;
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                bail!("a server did not stop within {STALL:?} of the end of its input");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connects a client to the stream at `path`; it counts the text messages
/// it gets into `count` until the server closes it or `stop` is set.
async fn connect(
    address: &str,
    path: &str,
    count: Arc<AtomicU64>,
    tls: bool,
) -> anyhow::Result<()> {
    let tcp = TcpStream::connect(address).await?;
    tcp.set_nodelay(true)?;
    if tls {
        let stream = crate::tls::material()?.connect(tcp).await?;
        let url = format!("wss://localhost{path}");
        let (ws, _) = tokio_tungstenite::client_async(url, stream).await?;
        tokio::spawn(count_texts(ws, count));
    } else {
        let url = format!("ws://{address}{path}");
        let (ws, _) = tokio_tungstenite::client_async(url, tcp).await?;
        tokio::spawn(count_texts(ws, count));
    }
    Ok(())
}

/// Counts the text messages a client gets until the server closes it.
async fn count_texts<S>(mut ws: tokio_tungstenite::WebSocketStream<S>, count: Arc<AtomicU64>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    while let Some(Ok(message)) = ws.next().await {
        match message {
            Message::Text(_) => {
                count.fetch_add(1, Ordering::Relaxed);
            }
            Message::Close(_) => return,
            _ => {}
        }
    }
}

/// Connects a new client every `every` until `probing` is cleared, and
/// returns how long each took to connect and complete its upgrade, in ms.
/// It runs on a thread of its own, apart from the runtime the 1,000
/// readers keep busy, so that it measures the server, not their backlog.
fn probe(address: &str, every: Duration, probing: &AtomicBool) -> anyhow::Result<Vec<f64>> {
    let mut took = Vec::new();
    while probing.load(Ordering::Relaxed) {
        let started = Instant::now();
        let client = crate::ws_connect(address, PATH)?;
        took.push(started.elapsed().as_secs_f64() * 1e3);
        drop(client);
        std::thread::sleep(every.saturating_sub(started.elapsed()));
    }
    Ok(took)
}

/// One block of `PER_BLOCK` transactions, numbered from `first`, as
/// `eventhost replay` reads it: row 4's, bare transactions.
pub fn block(height: u64, first: u64) -> String {
    block_of(height, first, false)
}

/// One block of `PER_BLOCK` transactions, numbered from `first`; `rich`:
/// each with metadata and an output, for queries to look into.
fn block_of(height: u64, first: u64, rich: bool) -> String {
    let transactions: Vec<String> = (first..first + PER_BLOCK)
        .map(|n| {
            if rich {
                format!(
                    r#"{{"id":"{n:064x}","operation":"CREATE","metadata":{{"n":{n}}},"outputs":[{{"amount":"1","public_keys":["{KEY}"]}}]}}"#
                )
            } else {
                format!(r#"{{"id":"{n:064x}","operation":"CREATE"}}"#)
            }
        })
        .collect();
    format!(
        r#"{{"type":"BLOCK_VALID","height":{height},"hash":"{height:064x}","transactions":[{}]}}"#,
        transactions.join(",")
    )
}

/// The owner of every output in rich blocks.
pub(crate) const KEY: &str = "JEAkEJqLbbgDRAtMm8YAjGp759Aq2qTn9eaEHUj2XePE";

/// One round of `server`: its clients connect, blocks are fed on its
/// standard input for `p.feed_for`, and what it delivered and spent is
/// measured.
pub(crate) fn measure(
    server: Server,
    build: &Path,
    p: &Params,
    workload: &Workload,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<Round> {
    let mut process = Process::start(server, build)?;
    let input = process.child.stdin.take().context("the server's input")?;
    measure_process(process, Box::new(input), p, workload, runtime)
}

/// [`measure`] of an edge node, its blocks published to its stream.
pub(crate) fn measure_edge(
    feed: &EdgeFeed,
    build: &Path,
    p: &Params,
    workload: &Workload,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<Round> {
    let process = Process::start_edge(feed, build)?;
    let input = (feed.publisher)()?;
    measure_process(process, input, p, workload, runtime)
}

fn measure_process(
    process: Process,
    mut input: Box<dyn Write + Send>,
    p: &Params,
    workload: &Workload,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<Round> {
    let rss_before = sys::rss_kib(process.pid()).context("the server's RSS")?;
    let counts: Vec<Arc<AtomicU64>> = (0..p.clients).map(|_| Arc::default()).collect();
    runtime.block_on(async {
        // A hundred at a time: what a crowd reconnecting looks like, and
        // well within the listen backlog.
        for (i, chunk) in counts.chunks(100).enumerate() {
            let connecting = chunk.iter().enumerate().map(|(j, c)| {
                let path = &workload.paths[(i * 100 + j) % workload.paths.len()];
                connect(&process.address, path, c.clone(), process.tls)
            });
            for connected in futures_util::future::join_all(connecting).await {
                connected.context("a client could not connect")?;
            }
        }
        anyhow::Ok(())
    })?;
    // Let the server finish setting the clients up before looking.
    std::thread::sleep(Duration::from_millis(500));
    let rss_idle = sys::rss_kib(process.pid()).context("the server's RSS")?;
    let idle_kib_per_client = rss_idle.saturating_sub(rss_before) as f64 / p.clients as f64;

    let probing = AtomicBool::new(true);
    let (fed, connect_ms) = std::thread::scope(|scope| {
        // Over TLS the connect latency is not measured (row 4d is ws://).
        let prober = scope.spawn(|| match process.tls {
            true => Ok(Vec::new()),
            false => probe(&process.address, p.probe_every, &probing),
        });
        let fed = (|| {
            let cpu_before =
                sys::process_cpu_time(process.pid()).context("the server's CPU time")?;
            let clients_before = sys::cpu_time();
            let started = Instant::now();
            let sent = feed(&mut *input, &counts, p.feed_for, workload.rich)?;
            let feeding = started.elapsed();
            let server_cpu = sys::process_cpu_time(process.pid())
                .context("the server's CPU time")?
                .saturating_sub(cpu_before);
            let client_cpu = sys::cpu_time().saturating_sub(clients_before);
            anyhow::Ok((sent, feeding, server_cpu, client_cpu))
        })();
        probing.store(false, Ordering::Relaxed);
        let connect_ms = prober
            .join()
            .unwrap_or_else(|_| bail!("the prober panicked"))
            .context("a new client could not connect");
        (fed, connect_ms)
    });
    let (sent, feeding, server_cpu, client_cpu) = fed?;
    let connect_ms = connect_ms?;
    let peak_rss_kib = sys::peak_rss_kib(Some(process.pid()));
    let delivered: u64 = counts.iter().map(|c| c.load(Ordering::Relaxed)).sum();
    if delivered != sent * p.clients as u64 {
        bail!(
            "the {} server delivered {delivered} of {} messages",
            process.name,
            sent * p.clients as u64
        );
    }
    drop(input);
    process.stop()?;
    Ok(Round {
        delivered,
        feeding,
        server_cpu,
        client_cpu,
        idle_kib_per_client,
        connect_ms,
        peak_rss_kib,
    })
}

/// Feeds blocks for `length`, keeping every client within `WINDOW`
/// messages, then waits until every client has every message. Returns the
/// messages each client got.
fn feed(
    input: &mut dyn Write,
    counts: &[Arc<AtomicU64>],
    length: Duration,
    rich: bool,
) -> anyhow::Result<u64> {
    let slowest = || {
        counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0)
    };
    let wait_until = |done: &dyn Fn(u64) -> bool| -> anyhow::Result<()> {
        let mut last = slowest();
        let mut moved = Instant::now();
        while !done(slowest()) {
            let now = slowest();
            if now != last {
                (last, moved) = (now, Instant::now());
            } else if moved.elapsed() > STALL {
                bail!("a client got nothing for {STALL:?}");
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        Ok(())
    };
    let started = Instant::now();
    let mut sent = 0;
    let mut height = 0;
    while started.elapsed() < length {
        wait_until(&|slowest| sent - slowest + PER_BLOCK <= WINDOW)?;
        height += 1;
        writeln!(input, "{}", block_of(height, sent, rich))?;
        input.flush()?;
        sent += PER_BLOCK;
    }
    wait_until(&|slowest| slowest >= sent)?;
    Ok(sent)
}
