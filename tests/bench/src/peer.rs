//! Rows 4e, 4i and 4j: WebSocket fan-out measured with the harness in
//! `../shared/peer` (see its README), which is never copied into the
//! project. Its load client `wsload` (one thread) subscribes the same
//! clients to three servers in turn, each fed the same blocks of 100
//! transactions as fast as it takes them:
//!
//! - eventhost (`eventhost replay -` with the WebSocket plugin, the blocks
//!   written to its input once the clients are connected and idle);
//! - BigchainDB 2.2.2's own stream server (`bdb_peer.py`: its aiohttp
//!   server fed through its real Exchange process), row 4e;
//! - the pre-framed floor (`bare --mode preframed`: every block's frames
//!   encoded once and the same bytes written to every socket), rows 4i, 4j.
//!
//! wsload reports each server's CPU time over the delivery (/proc), the
//! messages delivered, and its resident memory before and after the clients
//! connected. The harness is looked for at `../shared/peer` beside the
//! workspace (`EVENTHOST_PEER_DIR` overrides); when it is absent the rows
//! are skipped with a note. Full runs build its tools under /tmp as its
//! README says; `--quick` runs use them only if they are built already.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::fanout::{PATH, PER_BLOCK, block};
use crate::report::{Figure, Row, Target};

/// A server must be listening within this.
const START: Duration = Duration::from_secs(60);

struct Params {
    clients: usize,
    blocks: u64,
    /// wsload's window: a run that has not delivered everything by then failed.
    limit: Duration,
}

/// Where the harness keeps what it builds (its README's defaults).
const WSLOAD: &str = "/tmp/wsload-target/release/wsload";
const BARE_TARGET: &str = "/tmp/bare-ws-target";
const BDB_VENV: &str = "/tmp/bdb-peer-venv";

#[derive(Clone, Copy, PartialEq)]
enum Server {
    Eventhost,
    BigchainDb,
    Preframed,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Eventhost => "eventhost",
            Server::BigchainDb => "BigchainDB 2.2.2",
            Server::Preframed => "bare --mode preframed",
        }
    }
}

/// What wsload measured of one server.
struct Run {
    delivered: u64,
    server_cpu_us_per_message: f64,
    /// CPU of the server's child processes (BigchainDB's Exchange and feeder).
    children_cpu_us_per_message: f64,
    wsload_cpu_us_per_message: f64,
    messages_per_second: f64,
    idle_kib_per_client: f64,
}

/// The harness, if it is there.
fn harness() -> Option<PathBuf> {
    let dir = match std::env::var_os("EVENTHOST_PEER_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/peer"),
    };
    dir.join("run_wsload.sh").exists().then_some(dir)
}

pub fn run(build: &Path, quick: bool) -> anyhow::Result<Vec<Row>> {
    let Some(peer) = harness() else {
        eprintln!(
            "[4e peer] skipped: no ../shared/peer beside the workspace (set EVENTHOST_PEER_DIR to its path)"
        );
        return Ok(Vec::new());
    };
    let p = if quick {
        // BigchainDB takes most of the time: about 8 s for these 300,000
        // messages.
        Params {
            clients: 50,
            blocks: 60,
            limit: Duration::from_secs(120),
        }
    } else {
        Params {
            clients: 1000,
            blocks: 200,
            limit: Duration::from_secs(600),
        }
    };
    if !prepare(&peer, quick)? {
        return Ok(Vec::new());
    }
    eprintln!(
        "[4e peer] {} wsload clients, {} blocks of {PER_BLOCK} transactions, per server",
        p.clients, p.blocks
    );
    let mut runs = Vec::new();
    for server in [Server::Eventhost, Server::BigchainDb, Server::Preframed] {
        let run = measure(server, &peer, build, &p)
            .with_context(|| format!("the {} run", server.name()))?;
        eprintln!(
            "[4e peer] {}: {:.0} messages/s, {:.3} µs server CPU per message (+{:.3} in child processes), {:.1} KiB per idle client, wsload {:.2} µs per message",
            server.name(),
            run.messages_per_second,
            run.server_cpu_us_per_message,
            run.children_cpu_us_per_message,
            run.idle_kib_per_client,
            run.wsload_cpu_us_per_message
        );
        runs.push(run);
    }
    let [ours, bdb, floor] = &runs[..] else {
        unreachable!("three servers");
    };
    let cost = |amount: f64| Figure::micros(amount, "message");
    let memory = |amount: f64| Figure::Cost {
        amount,
        unit: "KiB",
        per: "client",
    };
    let mut feed = format!(
        "wsload (../shared/peer, 1 thread) with {} clients, {} blocks × {PER_BLOCK} transactions fed as fast as the server takes them, every message delivered",
        p.clients, p.blocks
    );
    if quick {
        feed.push_str(
            "; --quick: the fast servers' CPU is a few 10 ms ticks of /proc, and the idle memory per client is mostly fixed costs spread over few clients",
        );
    }
    let rates = |run: &Run, name: &str| {
        format!(
            "{name}: {:.0} messages/s over the delivery, {:.1} KiB per idle client, wsload {:.2} µs per message",
            run.messages_per_second, run.idle_kib_per_client, run.wsload_cpu_us_per_message
        )
    };
    Ok(vec![
        Row {
            id: "4e",
            what: "Server CPU per delivered message vs BigchainDB 2.2.2's own stream server".into(),
            ours: cost(ours.server_cpu_us_per_message),
            baseline: Some(cost(bdb.server_cpu_us_per_message)),
            target: Some(Target::RatioAtMost(0.02)),
            peak_rss_kib: None,
            rss_of: "",
            notes: vec![
                feed.clone(),
                rates(ours, "eventhost"),
                format!(
                    "{}; its Exchange and feeder processes used {:.2} µs more per message, not counted",
                    rates(bdb, "BigchainDB"),
                    bdb.children_cpu_us_per_message
                ),
                format!(
                    "idle memory per client: eventhost {:.1} KiB, BigchainDB {:.1} KiB ({:.2}x)",
                    ours.idle_kib_per_client,
                    bdb.idle_kib_per_client,
                    ours.idle_kib_per_client / bdb.idle_kib_per_client
                ),
            ],
        },
        Row {
            id: "4i",
            what: "Server CPU per delivered message vs the pre-framed floor (peer/bare --mode preframed)".into(),
            ours: cost(ours.server_cpu_us_per_message),
            baseline: Some(cost(floor.server_cpu_us_per_message)),
            target: None,
            peak_rss_kib: None,
            rss_of: "",
            notes: vec![
                feed,
                rates(floor, "pre-framed floor"),
                format!(
                    "{} messages delivered by each server",
                    ours.delivered
                ),
            ],
        },
        Row {
            id: "4j",
            what: "Memory per idle connection vs the pre-framed floor".into(),
            ours: memory(ours.idle_kib_per_client),
            baseline: Some(memory(floor.idle_kib_per_client)),
            target: None,
            peak_rss_kib: None,
            rss_of: "",
            notes: vec!["server RSS growth from before to after the clients connected (wsload), over the clients".into()],
        },
    ])
}

/// Builds or installs what the harness needs; in quick mode, says what is
/// missing instead (false: skip the rows).
fn prepare(peer: &Path, quick: bool) -> anyhow::Result<bool> {
    let bare = Path::new(BARE_TARGET).join("release/bare-ws");
    let python = Path::new(BDB_VENV).join("bin/python");
    let missing: Vec<&str> = [
        (Path::new(WSLOAD).exists(), "wsload"),
        (bare.exists(), "bare"),
        (python.exists(), "the BigchainDB venv"),
    ]
    .into_iter()
    .filter_map(|(there, what)| (!there).then_some(what))
    .collect();
    if missing.is_empty() {
        return Ok(true);
    }
    if quick {
        eprintln!(
            "[4e peer] skipped in --quick mode: {} not built yet (a full run builds them, or see ../shared/peer/README.md)",
            missing.join(", ")
        );
        return Ok(false);
    }
    let step = |what: &str, command: &mut Command| -> anyhow::Result<()> {
        eprintln!("[4e peer] {what} (once; minutes)");
        let status = command.status().with_context(|| what.to_owned())?;
        if !status.success() {
            bail!("{what} failed ({status})");
        }
        Ok(())
    };
    if !Path::new(WSLOAD).exists() {
        step(
            "building wsload into /tmp/wsload-target",
            Command::new("cargo")
                .env("CARGO_TARGET_DIR", "/tmp/wsload-target")
                .args(["build", "--release", "--quiet", "--manifest-path"])
                .arg(peer.join("wsload/Cargo.toml")),
        )?;
    }
    if !bare.exists() {
        step(
            "building the bare server into /tmp/bare-ws-target",
            Command::new("cargo")
                .env("CARGO_TARGET_DIR", BARE_TARGET)
                .args(["build", "--release", "--quiet", "--manifest-path"])
                .arg(peer.join("bare/Cargo.toml")),
        )?;
    }
    if !python.exists() {
        step(
            "installing BigchainDB 2.2.2 into /tmp/bdb-peer-venv (setup_peer.sh)",
            Command::new("bash").arg(peer.join("setup_peer.sh")),
        )?;
    }
    Ok(true)
}

/// A free port on the loopback interface for a server that takes one.
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A server process and what it printed, in a temporary directory.
struct Process {
    child: Child,
    dir: tempfile::TempDir,
}

impl Process {
    fn spawn(command: &mut Command, dir: tempfile::TempDir) -> anyhow::Result<Process> {
        let child = command
            .current_dir(dir.path())
            .env_remove("RUST_LOG")
            .env_remove("EVENTHOST_CONFIG")
            .stdout(std::fs::File::create(dir.path().join("out.log"))?)
            .stderr(std::fs::File::create(dir.path().join("err.log"))?)
            .spawn()?;
        Ok(Process { child, dir })
    }

    fn output(&self) -> String {
        let read =
            |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        read("out.log") + &read("err.log")
    }

    /// Waits for `mark` in what it printed; returns the text after it.
    fn wait_for(&mut self, mark: &str) -> anyhow::Result<String> {
        let deadline = Instant::now() + START;
        loop {
            let text = self.output();
            if let Some(rest) = text.split(mark).nth(1) {
                return Ok(rest.lines().next().unwrap_or_default().to_owned());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("it exited ({status}):\n{text}");
            }
            if Instant::now() > deadline {
                bail!("it printed no `{mark}` within {START:?}:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // SIGTERM first: the BigchainDB peer stops its own children then.
        // SAFETY: kill has no memory-safety preconditions; the pid is our child's.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn measure(server: Server, peer: &Path, build: &Path, p: &Params) -> anyhow::Result<Run> {
    let dir = tempfile::Builder::new()
        .prefix("eventhost-bench-peer-")
        .tempdir()?;
    let expect = p.clients as u64 * p.blocks * PER_BLOCK;
    let self_fed = |command: &mut Command, port: u16| {
        command.args([
            "--port".to_owned(),
            port.to_string(),
            "--blocks".into(),
            p.blocks.to_string(),
            "--txs".into(),
            PER_BLOCK.to_string(),
            "--wait-clients".into(),
            p.clients.to_string(),
            // Longer than wsload's 1 s settle, so that the idle sample
            // comes before the traffic.
            "--start-delay".into(),
            "2".into(),
        ]);
    };
    let mut process = match server {
        Server::Eventhost => {
            let config = format!(
                "[host]\n{}\nlog = \"info\"\n\n[[plugins]]\nname = \"websocket\"\n[plugins.config]\nbind = \"127.0.0.1:0\"\n# The other servers do not ping either.\nping_interval_ms = 0\n# Every client comes from 127.0.0.1.\nmax_connections_per_address = 10000\n# Nor do they drop a slow client: one wsload thread reads them all, and\n# may fall behind a server that sends faster than it reads.\nclient_queue_capacity = {}\n",
                crate::plugin_dirs_line(build),
                p.blocks * PER_BLOCK
            );
            std::fs::write(dir.path().join("config.toml"), config)?;
            let mut command = Command::new(build.join("eventhost"));
            command
                .arg("--config")
                .arg(dir.path().join("config.toml"))
                .args(["replay", "-"])
                .stdin(Stdio::piped());
            Process::spawn(&mut command, dir)?
        }
        Server::BigchainDb => {
            let mut command = Command::new(Path::new(BDB_VENV).join("bin/python"));
            command.arg(peer.join("bdb_peer.py"));
            self_fed(&mut command, free_port()?);
            Process::spawn(&mut command, dir)?
        }
        Server::Preframed => {
            let mut command = Command::new(Path::new(BARE_TARGET).join("release/bare-ws"));
            command.args(["--mode", "preframed"]);
            self_fed(&mut command, free_port()?);
            Process::spawn(&mut command, dir)?
        }
    };
    let (address, pid) = match server {
        Server::Eventhost => {
            let rest = process.wait_for("listening on ")?;
            let address = rest.split([';', ' ']).next().unwrap_or_default().to_owned();
            (address, process.child.id())
        }
        Server::BigchainDb | Server::Preframed => {
            let ready = process.wait_for("READY ")?;
            let field = |name: &str| {
                ready
                    .split_whitespace()
                    .find_map(|f| f.strip_prefix(name))
                    .map(str::to_owned)
                    .with_context(|| format!("no {name} in its READY line: {ready}"))
            };
            let url = field("url=ws://")?;
            let address = url.split('/').next().unwrap_or_default().to_owned();
            (address, field("pid=")?.parse()?)
        }
    };

    let mut wsload = Command::new("bash")
        .arg(peer.join("run_wsload.sh"))
        .args(["--url", &format!("ws://{address}{PATH}")])
        .args(["--clients", &p.clients.to_string()])
        .args(["--seconds", &p.limit.as_secs().to_string()])
        .args(["--server-pid", &pid.to_string()])
        .args(["--expect", &expect.to_string()])
        .args(["--threads", "1", "--progress", "5"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start run_wsload.sh")?;
    let stdout = wsload.stdout.take().context("wsload's output")?;
    let mut result = None;
    let mut output = String::new();
    // Held open until wsload is done: the end of its input stops eventhost.
    let mut fed = None;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        output.push_str(&line);
        output.push('\n');
        // eventhost is fed once wsload has taken its idle sample.
        if server == Server::Eventhost && line.starts_with("server VmRSS idle") {
            let mut input = process.child.stdin.take().context("eventhost's input")?;
            for height in 1..=p.blocks {
                writeln!(input, "{}", block(height, (height - 1) * PER_BLOCK))?;
            }
            input.flush()?;
            fed = Some(input);
        }
        if let Some(json) = line.strip_prefix("RESULT ") {
            result = Some(serde_json::from_str::<Value>(json)?);
        }
    }
    let status = wsload.wait()?;
    drop(fed);
    let Some(result) = result.filter(|_| status.success()) else {
        bail!("wsload failed ({status}):\n{output}");
    };
    let number = |key: &str| {
        result[key]
            .as_f64()
            .with_context(|| format!("wsload's RESULT has no {key}: {result}"))
    };
    let delivered = number("received")? as u64;
    if delivered != expect {
        bail!(
            "{} delivered {delivered} of {expect} messages:\n{output}",
            server.name()
        );
    }
    let children = result["server_children_cpu"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["cpu_secs"].as_f64())
        .fold(0.0, |sum, secs| sum + secs);
    let per_message = |secs: f64| secs * 1e6 / delivered as f64;
    Ok(Run {
        delivered,
        server_cpu_us_per_message: per_message(number("server_cpu_secs")?),
        children_cpu_us_per_message: per_message(children),
        wsload_cpu_us_per_message: per_message(number("wsload_cpu_secs")?),
        messages_per_second: number("rate_span")?,
        idle_kib_per_client: number("idle_bytes_per_conn")? / 1024.0,
    })
}
