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

use std::io::Write;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
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
const PATH: &str = "/api/v1/streams/valid_transactions";
/// Transactions per block: one message each per client.
const PER_BLOCK: u64 = 100;
/// Messages a client may be behind before the feeder waits: a fifth of
/// either server's queue.
const WINDOW: u64 = 2_000;
/// A server that delivers nothing for this long has stopped.
const STALL: Duration = Duration::from_secs(30);

struct Params {
    clients: usize,
    rounds: usize,
    /// How long blocks are fed in a round.
    feed_for: Duration,
    /// How often a new client connects while blocks are fed.
    probe_every: Duration,
}

#[derive(Clone, Copy, PartialEq)]
enum Server {
    Ours,
    Bare,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Ours => "eventhost",
            Server::Bare => "bare tokio-tungstenite",
        }
    }
}

/// One round of one server.
struct Round {
    delivered: u64,
    feeding: Duration,
    server_cpu: Duration,
    idle_kib_per_client: f64,
    connect_ms: Vec<f64>,
    peak_rss_kib: Option<u64>,
}

impl Round {
    fn rate(&self) -> f64 {
        self.delivered as f64 / self.feeding.as_secs_f64()
    }

    fn cpu_us_per_message(&self) -> f64 {
        self.server_cpu.as_secs_f64() * 1e6 / self.delivered as f64
    }
}

pub fn run(build: &Path, quick: bool) -> anyhow::Result<Vec<Row>> {
    let p = if quick {
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
    };
    eprintln!(
        "[4 websocket] {} round(s): {} clients, blocks of {PER_BLOCK} transactions fed for {:.0} s, eventhost and the bare server alternating",
        p.rounds,
        p.clients,
        p.feed_for.as_secs_f64()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut ours = Vec::new();
    let mut bare = Vec::new();
    for round in 1..=p.rounds {
        for server in [Server::Ours, Server::Bare] {
            let r = measure(server, build, &p, &runtime)?;
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
                Server::Ours => ours.push(r),
                Server::Bare => bare.push(r),
            }
        }
    }

    let rate = |rounds: &[Round]| median(rounds.iter().map(Round::rate).collect());
    let cpu = |rounds: &[Round]| median(rounds.iter().map(Round::cpu_us_per_message).collect());
    let idle = |rounds: &[Round]| median(rounds.iter().map(|r| r.idle_kib_per_client).collect());
    let connect =
        |rounds: &[Round]| sorted(rounds.iter().flat_map(|r| r.connect_ms.clone()).collect());
    let peak = |rounds: &[Round]| rounds.iter().filter_map(|r| r.peak_rss_kib).max();
    let (ours_connect, bare_connect) = (connect(&ours), connect(&bare));
    let latency = |sorted: &[f64]| Figure::Latency {
        p50_ms: quantile(sorted, 0.5),
        p99_ms: quantile(sorted, 0.99),
    };
    let clients = p.clients;
    Ok(vec![
        Row {
            id: "4a",
            what: format!("WebSocket fan-out to {clients} clients vs bare tokio-tungstenite"),
            ours: Figure::Rate {
                per_second: rate(&ours),
                unit: "messages",
            },
            baseline: Some(Figure::Rate {
                per_second: rate(&bare),
                unit: "messages",
            }),
            target: Some(Target::RatioAtLeast(0.8)),
            peak_rss_kib: peak(&ours),
            rss_of: "node",
            notes: vec![format!(
                "messages delivered per second to all clients together (valid_transactions, blocks of {PER_BLOCK}); median of {} round(s); clients at most {WINDOW} messages behind; the clients share the 2 cores; bare server's peak RSS {:.1} MiB",
                p.rounds,
                peak(&bare).unwrap_or(0) as f64 / 1024.0
            )],
        },
        Row {
            id: "4b",
            what: "Server CPU time per delivered message (/proc/PID/stat)".into(),
            ours: Figure::Cost {
                amount: cpu(&ours),
                unit: "µs",
                per: "message",
            },
            baseline: Some(Figure::Cost {
                amount: cpu(&bare),
                unit: "µs",
                per: "message",
            }),
            target: Some(Target::RatioAtMost(1.25)),
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
            target: Some(Target::CostAtMost(6.0, "KiB")),
            peak_rss_kib: None,
            rss_of: "",
            notes: Vec::new(),
        },
        Row {
            id: "4d",
            what: "Connect latency (TCP + upgrade) of a new client during full-speed fan-out".into(),
            ours: latency(&ours_connect),
            baseline: Some(latency(&bare_connect)),
            target: Some(Target::P99AtMost(100.0)),
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

fn sorted(mut xs: Vec<f64>) -> Vec<f64> {
    xs.sort_by(f64::total_cmp);
    xs
}

/// A server process, its log in a temporary directory.
struct Process {
    child: Child,
    dir: tempfile::TempDir,
    address: String,
}

impl Process {
    fn start(server: Server, build: &Path) -> anyhow::Result<Process> {
        let dir = tempfile::Builder::new()
            .prefix("eventhost-bench-ws-")
            .tempdir()?;
        let log = dir.path().join("server.log");
        let mut command = match server {
            Server::Ours => {
                let config = format!(
                    "[host]\n{}\nlog = \"info\"\n\n[[plugins]]\nname = \"websocket\"\n[plugins.config]\nbind = \"127.0.0.1:0\"\n# The bare server does not ping either.\nping_interval_ms = 0\n",
                    crate::plugin_dirs_line(build)
                );
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
        let child = command
            .current_dir(dir.path())
            .env_remove("RUST_LOG")
            .env_remove("EVENTHOST_CONFIG")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("cannot start the {} server", server.name()))?;
        let mut process = Process {
            child,
            dir,
            address: String::new(),
        };
        let deadline = Instant::now() + STALL;
        process.address = loop {
            let text = process.log();
            if let Some(address) = crate::logged_address(&text, "listening on ") {
                break address;
            }
            if let Some(status) = process.child.try_wait()? {
                bail!("the {} server exited ({status}):\n{text}", server.name());
            }
            if Instant::now() > deadline {
                bail!(
                    "the {} server did not listen within {STALL:?}:\n{text}",
                    server.name()
                );
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

    /// Ends its input, so it stops, and waits for it.
    fn stop(mut self) -> anyhow::Result<()> {
        drop(self.child.stdin.take());
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

/// Connects a client to the stream; it counts the text messages it gets
/// into `count` until the server closes it or `stop` is set.
async fn connect(address: &str, count: Arc<AtomicU64>) -> anyhow::Result<()> {
    let tcp = TcpStream::connect(address).await?;
    tcp.set_nodelay(true)?;
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{address}{PATH}"), tcp).await?;
    tokio::spawn(async move {
        while let Some(Ok(message)) = ws.next().await {
            match message {
                Message::Text(_) => {
                    count.fetch_add(1, Ordering::Relaxed);
                }
                Message::Close(_) => return,
                _ => {}
            }
        }
    });
    Ok(())
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
/// `eventhost replay` reads it.
fn block(height: u64, first: u64) -> String {
    let transactions: Vec<String> = (first..first + PER_BLOCK)
        .map(|n| format!(r#"{{"id":"{n:064x}","operation":"CREATE"}}"#))
        .collect();
    format!(
        r#"{{"type":"BLOCK_VALID","height":{height},"hash":"{height:064x}","transactions":[{}]}}"#,
        transactions.join(",")
    )
}

fn measure(
    server: Server,
    build: &Path,
    p: &Params,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<Round> {
    let mut process = Process::start(server, build)?;
    let rss_before = sys::rss_kib(process.pid()).context("the server's RSS")?;
    let counts: Vec<Arc<AtomicU64>> = (0..p.clients).map(|_| Arc::default()).collect();
    runtime.block_on(async {
        // A hundred at a time: what a crowd reconnecting looks like, and
        // well within the listen backlog.
        for chunk in counts.chunks(100) {
            let connecting = chunk.iter().map(|c| connect(&process.address, c.clone()));
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

    let mut input = process.child.stdin.take().context("the server's input")?;
    let probing = AtomicBool::new(true);
    let (fed, connect_ms) = std::thread::scope(|scope| {
        let prober = scope.spawn(|| probe(&process.address, p.probe_every, &probing));
        let fed = (|| {
            let cpu_before =
                sys::process_cpu_time(process.pid()).context("the server's CPU time")?;
            let started = Instant::now();
            let sent = feed(&mut input, &counts, p.feed_for)?;
            let feeding = started.elapsed();
            let server_cpu = sys::process_cpu_time(process.pid())
                .context("the server's CPU time")?
                .saturating_sub(cpu_before);
            anyhow::Ok((sent, feeding, server_cpu))
        })();
        probing.store(false, Ordering::Relaxed);
        let connect_ms = prober
            .join()
            .unwrap_or_else(|_| bail!("the prober panicked"))
            .context("a new client could not connect");
        (fed, connect_ms)
    });
    let (sent, feeding, server_cpu) = fed?;
    let connect_ms = connect_ms?;
    let peak_rss_kib = sys::peak_rss_kib(Some(process.pid()));
    let delivered: u64 = counts.iter().map(|c| c.load(Ordering::Relaxed)).sum();
    if delivered != sent * p.clients as u64 {
        bail!(
            "the {} server delivered {delivered} of {} messages",
            server.name(),
            sent * p.clients as u64
        );
    }
    process.child.stdin = Some(input);
    process.stop()?;
    Ok(Round {
        delivered,
        feeding,
        server_cpu,
        idle_kib_per_client,
        connect_ms,
        peak_rss_kib,
    })
}

/// Feeds blocks for `length`, keeping every client within `WINDOW`
/// messages, then waits until every client has every message. Returns the
/// messages each client got.
fn feed(
    input: &mut ChildStdin,
    counts: &[Arc<AtomicU64>],
    length: Duration,
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
        writeln!(input, "{}", block(height, sent))?;
        input.flush()?;
        sent += PER_BLOCK;
    }
    wait_until(&|slowest| slowest >= sent)?;
    Ok(sent)
}
