//! Row 6, process mode against thread mode: the `bench-sink` plugin
//! loaded with `isolation = "process"`, against the same plugin with
//! `isolation = "thread"`, in the same run, in alternating rounds.
//!
//! Both are driven the same way, through the real binary, `eventhost
//! replay`, with one-transaction blocks (a builder-made CREATE), each
//! written to the replay's event log before it is published. Two parts per
//! mode and round, each a node of its own:
//!
//! - throughput: `eventhost replay FILE`, which writes the events to its
//!   log 256 per commit and publishes them as fast as it can; the figure
//!   is events received by the plugin per second, from when the plugin
//!   started (after the replay checked the file) to its last receipt, and
//!   the CPU time of the node and of the plugin's process (/proc/PID/stat)
//!   from then until the node ended, per event. (`replay -` commits every line on its
//!   own, which holds both modes to the same 15,000 events/s or so: the
//!   commit, not the plugin, would be measured.) The plugin's queue fills
//!   in both modes and it catches up from the event log, as designed;
//! - latency: `eventhost replay -`, lines paced open-loop at a fixed rate
//!   on its standard input, each due at a fixed time whatever happened to
//!   the ones before, and each published on its own as a node publishes
//!   a block; the figure is from when a line was due to when the plugin
//!   received its event.
//!
//! The plugin says when it received each event by appending a line to a
//! stamps file (its own buffered writes, flushed when its queue is idle:
//! the same few hundred nanoseconds in both modes, and no extra message on
//! the socket between host and child that the measurement would add). This
//! process and the plugin read the same wall clock.
//!
//! The replay's event log is a temporary file, put on tmpfs (/dev/shm)
//! where there is one: publishing a line is a durable commit, and a disk's
//! flush per event would be most of either mode's time (row 3 measures
//! it); here it is the same redb work without the wait for the disk.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use eventhost::sources::ledger::builder::{self, Keypair};

use crate::report::{Figure, Row, Target};
use crate::{SINK, median, quantile, sys};

/// How long a node may take to start, to deliver, to stop.
const STALL: Duration = Duration::from_secs(60);
/// Where the event log and the stamps go, if the machine has it: RAM.
const TMPFS: &str = "/dev/shm";

struct Params {
    rounds: usize,
    /// Events fed as fast as possible in a throughput part.
    burst: u64,
    /// Open-loop rate and length of a latency part.
    rate: u32,
    paced_for: Duration,
    /// Leading part of a latency part left out: the first events wake
    /// threads and fault in pages.
    warmup: Duration,
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Thread,
    Process,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Thread => "thread",
            Mode::Process => "process",
        }
    }
}

/// What one mode measured in one round.
struct Round {
    /// Throughput part: events, from first receipt to last, and the CPU
    /// time of the node and the plugin's process meanwhile.
    events: u64,
    span: Duration,
    cpu: Duration,
    /// Latency part: from due to received, in ms, and how long the
    /// node's and the plugin's threads waited for a CPU, per event.
    p50_ms: f64,
    p99_ms: f64,
    waited: Duration,
    paced: u64,
    peak_rss_kib: Option<u64>,
}

impl Round {
    fn rate(&self) -> f64 {
        self.events as f64 / self.span.as_secs_f64()
    }

    fn cpu_per_event_us(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.events as f64
    }

    fn waited_per_event_us(&self) -> f64 {
        self.waited.as_secs_f64() * 1e6 / self.paced as f64
    }
}

pub fn run(build: &Path, quick: bool) -> anyhow::Result<Vec<Row>> {
    let p = if quick {
        Params {
            rounds: 1,
            burst: 20_000,
            rate: 1000,
            paced_for: Duration::from_secs(2),
            warmup: Duration::from_millis(500),
        }
    } else {
        Params {
            rounds: 5,
            burst: 200_000,
            rate: 1000,
            paced_for: Duration::from_secs(5),
            warmup: Duration::from_millis(500),
        }
    };
    eprintln!(
        "[6 process] {} round(s): {} events from a file as fast as they go, then {} events/s for {:.0} s on standard input; thread mode and process mode alternating",
        p.rounds,
        p.burst,
        p.rate,
        p.paced_for.as_secs_f64()
    );
    let tx = builder::create(
        &Keypair::from_seed([6; 32]),
        &[(Keypair::from_seed([6; 32]).public_key(), 1)],
        serde_json::json!({"bench": "process"}),
        serde_json::Value::Null,
    )
    .to_string();
    let mut thread = Vec::with_capacity(p.rounds);
    let mut process = Vec::with_capacity(p.rounds);
    for round in 1..=p.rounds {
        for mode in [Mode::Thread, Mode::Process] {
            let r = measure(build, mode, &p, &tx)?;
            eprintln!(
                "[6 process] round {round}/{}: {} mode: {:.0} events/s, {:.1} µs CPU per event; at {} events/s p50 {:.3} ms, p99 {:.3} ms, {:.0} µs waiting for a CPU per event",
                p.rounds,
                mode.name(),
                r.rate(),
                r.cpu_per_event_us(),
                p.rate,
                r.p50_ms,
                r.p99_ms,
                r.waited_per_event_us()
            );
            match mode {
                Mode::Thread => thread.push(r),
                Mode::Process => process.push(r),
            }
        }
    }

    let rate = |rounds: &[Round]| median(rounds.iter().map(Round::rate).collect());
    let cpu = |rounds: &[Round]| median(rounds.iter().map(Round::cpu_per_event_us).collect());
    // Per-round quantiles, then their median: another tenant's burst
    // makes one round's tail, and pooling the rounds would let it make
    // the figure too.
    let p50 = |rounds: &[Round]| median(rounds.iter().map(|r| r.p50_ms).collect());
    let p99 = |rounds: &[Round]| median(rounds.iter().map(|r| r.p99_ms).collect());
    let waited = |rounds: &[Round]| median(rounds.iter().map(Round::waited_per_event_us).collect());
    let figure = |rounds: &[Round]| Figure::Latency {
        p50_ms: p50(rounds),
        p99_ms: p99(rounds),
    };
    let peak = |rounds: &[Round]| rounds.iter().filter_map(|r| r.peak_rss_kib).max();
    let on_tmpfs = if Path::new(TMPFS).is_dir() {
        "on tmpfs"
    } else {
        "on disk (no /dev/shm)"
    };
    Ok(vec![
        Row {
            id: "6a",
            what: "Process-mode plugin vs thread mode: events/s received (`replay FILE`, one-transaction blocks)".into(),
            ours: Figure::Rate {
                per_second: rate(&process),
                unit: "events",
            },
            baseline: Some(Figure::Rate {
                per_second: rate(&thread),
                unit: "events",
            }),
            target: Some(Target::RatioAtLeast(0.9)),
            peak_rss_kib: peak(&process),
            rss_of: "node and plugin process",
            notes: vec![format!(
                "`eventhost replay FILE` of {} events, publishing as fast as it writes them to its event log ({on_tmpfs}, 256 per commit); events received per second from the plugin's start to its last receipt, median of {} alternating round(s); the plugin's queue of 1024 fills and it catches up from the log in both modes; thread mode's node peak RSS {:.1} MiB",
                p.burst,
                p.rounds,
                peak(&thread).unwrap_or(0) as f64 / 1024.0
            )],
        },
        Row {
            id: "6b",
            what: "Process mode vs thread mode: CPU time per event (node and plugin process, /proc/PID/stat)".into(),
            ours: Figure::micros(cpu(&process), "event"),
            baseline: Some(Figure::micros(cpu(&thread), "event")),
            target: Some(Target::AddedAtMost(3.0)),
            peak_rss_kib: None,
            rss_of: "",
            notes: vec![format!(
                "over the throughput part; both include the replay's parsing of each line and writing it to the log; process mode adds {:.1} µs per event",
                cpu(&process) - cpu(&thread)
            )],
        },
        Row {
            id: "6c",
            what: format!(
                "Process mode vs thread mode at {} events/s: line due → event received by the plugin",
                p.rate
            ),
            ours: figure(&process),
            baseline: Some(figure(&thread)),
            target: None,
            peak_rss_kib: None,
            rss_of: "",
            notes: vec![format!(
                "`eventhost replay -`, one line written to its standard input when due, open loop for {:.0} s per round, first {:.1} s left out, {} samples per round; medians of {} rounds' p50 and p99; each line is a commit to the log ({on_tmpfs}) before it is published, in both modes; process mode adds {:.3} ms at p50, {:.3} ms at p99; per event the node's and plugin's threads waited {:.0} µs (thread mode) and {:.0} µs (process mode) for a CPU (run queue, /proc/*/schedstat)",
                p.paced_for.as_secs_f64(),
                p.warmup.as_secs_f64(),
                process[0].paced,
                p.rounds,
                p50(&process) - p50(&thread),
                p99(&process) - p99(&thread),
                waited(&thread),
                waited(&process)
            )],
        },
    ])
}

fn sorted(mut xs: Vec<f64>) -> Vec<f64> {
    xs.sort_by(f64::total_cmp);
    xs
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// The line `eventhost replay` reads for block `height`.
fn line(height: u64, tx: &str) -> String {
    format!(
        "{{\"type\":\"BLOCK_VALID\",\"height\":{height},\"hash\":\"{height:064x}\",\"transactions\":[{tx}]}}\n"
    )
}

fn measure(build: &Path, mode: Mode, p: &Params, tx: &str) -> anyhow::Result<Round> {
    let node = Node::start(build, mode, Some((p.burst, tx)))?;
    let (events, span, cpu, burst_rss) = throughput(node, p.burst)?;
    let node = Node::start(build, mode, None)?;
    let paced = latency(node, p, tx)?;
    Ok(Round {
        events,
        span,
        cpu,
        p50_ms: quantile(&paced.latency_ms, 0.5),
        p99_ms: quantile(&paced.latency_ms, 0.99),
        waited: paced.waited,
        paced: paced.latency_ms.len() as u64,
        peak_rss_kib: burst_rss.max(paced.peak_rss_kib),
    })
}

/// `eventhost replay` with the bench-sink plugin in one mode, in a
/// temporary directory (on tmpfs where there is one): of a file of
/// `(events, tx)`, or of its standard input.
struct Node {
    child: Child,
    input: Option<ChildStdin>,
    dir: tempfile::TempDir,
}

impl Node {
    fn start(build: &Path, mode: Mode, file: Option<(u64, &str)>) -> anyhow::Result<Node> {
        let mut dir = tempfile::Builder::new();
        dir.prefix("eventhost-bench-process-");
        let dir = if Path::new(TMPFS).is_dir() {
            dir.tempdir_in(TMPFS)?
        } else {
            dir.tempdir()?
        };
        let config = format!(
            "[host]\n{}\nlog = \"info\"\n\n[[plugins]]\nname = \"sink\"\nlibrary = \"{SINK}\"\nisolation = \"{}\"\n[plugins.config]\nstamps = \"stamps.txt\"\n",
            crate::plugin_dirs_line(build),
            mode.name()
        );
        fs::write(dir.path().join("config.toml"), config)?;
        let source = match file {
            Some((events, tx)) => {
                let path = dir.path().join("events.jsonl");
                let mut out = std::io::BufWriter::new(fs::File::create(&path)?);
                for height in 1..=events {
                    out.write_all(line(height, tx).as_bytes())?;
                }
                out.flush()?;
                path
            }
            None => PathBuf::from("-"),
        };
        let mut child = crate::node::eventhost(build, dir.path())
            .arg("replay")
            .arg(source)
            // The replay's temporary event log goes where the stamps do.
            .env("TMPDIR", dir.path())
            .stdin(if file.is_some() {
                Stdio::null()
            } else {
                Stdio::piped()
            })
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.path().join("node.log"))?)
            .spawn()
            .context("cannot start eventhost replay")?;
        let input = child.stdin.take();
        let node = Node { child, input, dir };
        // The plugin creates its stamps file once it starts; a replay of a
        // file has checked it by then.
        let deadline = Instant::now() + STALL;
        while !node.stamps().exists() {
            if Instant::now() > deadline {
                bail!("the plugin did not start within {STALL:?}:\n{}", node.log());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if mode == Mode::Process && node.plugin_pids().is_empty() {
            bail!(
                "process mode, but the node has no child process:\n{}",
                node.log()
            );
        }
        Ok(node)
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("node.log")).unwrap_or_default()
    }

    fn stamps(&self) -> PathBuf {
        self.dir.path().join("stamps.txt")
    }

    fn input(&mut self) -> anyhow::Result<&mut ChildStdin> {
        self.input.as_mut().context("the node's input is closed")
    }

    /// The plugin's process, in process mode: the node's children.
    fn plugin_pids(&self) -> Vec<u32> {
        sys::children(self.child.id())
    }

    /// CPU time of the node and of its children (the plugin's process,
    /// running or reaped) so far.
    fn cpu_time(&self) -> anyhow::Result<Duration> {
        let mut total =
            sys::process_tree_cpu_time(self.child.id()).context("the node's CPU time")?;
        for pid in self.plugin_pids() {
            total += sys::process_cpu_time(pid).context("the plugin process's CPU time")?;
        }
        Ok(total)
    }

    /// How long the threads of the node and of its children have waited
    /// for a CPU so far: on a shared machine, how much of a latency is
    /// other tenants' turn on the cores.
    fn run_queue_wait(&self) -> Duration {
        std::iter::once(self.child.id())
            .chain(self.plugin_pids())
            .filter_map(sys::run_queue_wait)
            .sum()
    }

    /// Peak RSS of the node and its children, added up.
    fn peak_rss_kib(&self) -> Option<u64> {
        let children: u64 = self
            .plugin_pids()
            .into_iter()
            .filter_map(|pid| sys::peak_rss_kib(Some(pid)))
            .sum();
        Some(sys::peak_rss_kib(Some(self.child.id()))? + children)
    }

    /// Waits until the plugin has stamped event `seq` (its stamps flushed
    /// once its queue is idle), reading only the end of the file.
    fn wait_received(&self, seq: u64) -> anyhow::Result<()> {
        let mark = format!(" {seq} BLOCK_VALID 1\n");
        let deadline = Instant::now() + STALL;
        let mut file = fs::File::open(self.stamps())?;
        let mut tail = Vec::new();
        loop {
            let len = file.seek(SeekFrom::End(0))?;
            file.seek(SeekFrom::Start(len.saturating_sub(mark.len() as u64)))?;
            tail.clear();
            file.read_to_end(&mut tail)?;
            if tail.ends_with(mark.as_bytes()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the plugin did not receive event {seq} within {STALL:?}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Ends the node's input, if any, so it finishes, and waits for it; then the
    /// plugin's stamps are complete: (wall clock in ns, seq) per event.
    fn finish(mut self, events: u64) -> anyhow::Result<Vec<(u128, u64)>> {
        drop(self.input.take());
        let deadline = Instant::now() + STALL;
        loop {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!("eventhost replay exited with {status}:\n{}", self.log());
                }
                break;
            }
            if Instant::now() > deadline {
                bail!("eventhost replay did not stop within {STALL:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let text = fs::read_to_string(self.stamps())?;
        let stamps = text
            .lines()
            .map(|l| {
                let mut fields = l.split(' ');
                let at = fields.next().and_then(|f| f.parse().ok());
                let seq = fields.next().and_then(|f| f.parse().ok());
                at.zip(seq)
                    .with_context(|| format!("a bad stamp line: {l}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        // Every event, once, in order: the host numbers them from 1.
        if stamps.len() as u64 != events || stamps.iter().zip(1..).any(|((_, seq), n)| *seq != n) {
            bail!(
                "the plugin received {} events, not events 1 to {events} in order",
                stamps.len()
            );
        }
        Ok(stamps)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the node has replayed its file and ended. Returns the
/// events the plugin received from now to the last, how long that took,
/// the CPU the node and the plugin used until the node ended, and their
/// peak RSS.
fn throughput(node: Node, events: u64) -> anyhow::Result<(u64, Duration, Duration, Option<u64>)> {
    let started_ns = now_ns();
    let cpu_before = node.cpu_time()?;
    // A replay of a file ends once its plugin has received everything, and
    // the plugin's process with it: memory is sampled while it runs, and
    // the CPU time read once the node has ended (not yet reaped), when it
    // counts the plugin's process, which the node reaped. So the CPU time
    // includes the node's shutdown, a few milliseconds.
    let deadline = Instant::now() + STALL;
    let mut rss = node.peak_rss_kib();
    while !sys::has_ended(node.child.id()) {
        if Instant::now() > deadline {
            bail!(
                "eventhost replay did not finish within {STALL:?}:\n{}",
                node.log()
            );
        }
        rss = rss.max(node.peak_rss_kib());
        std::thread::sleep(Duration::from_millis(20));
    }
    let cpu = sys::process_tree_cpu_time(node.child.id())
        .context("the node's CPU time")?
        .saturating_sub(cpu_before);
    let stamps = node.finish(events)?;
    let last_ns = stamps[stamps.len() - 1].0;
    // Publishing began as the plugin started: some events may have been
    // received before this process looked.
    let received = stamps.iter().filter(|(at, _)| *at > started_ns).count() as u64;
    let span = Duration::from_nanos(last_ns.saturating_sub(started_ns) as u64);
    Ok((received, span, cpu, rss))
}

/// What a latency part measured.
struct Paced {
    /// From when each event's line was due to when the plugin received
    /// it, after the warm-up, sorted.
    latency_ms: Vec<f64>,
    /// How long the node's and the plugin's threads waited for a CPU
    /// over the events measured.
    waited: Duration,
    peak_rss_kib: Option<u64>,
}

/// Feeds lines paced open-loop, and measures how long each took to reach
/// the plugin.
fn latency(mut node: Node, p: &Params, tx: &str) -> anyhow::Result<Paced> {
    let events = (f64::from(p.rate) * p.paced_for.as_secs_f64()) as u64;
    let interval = Duration::from_secs(1) / p.rate;
    let lines: Vec<String> = (1..=events).map(|h| line(h, tx)).collect();
    let lead = Duration::from_millis(50);
    let start = Instant::now() + lead;
    let start_ns = now_ns() + lead.as_nanos();
    let skip = (p.warmup.as_secs_f64() * f64::from(p.rate)) as usize;
    let mut waited = Duration::ZERO;
    let mut reported = Instant::now();
    for (i, text) in lines.iter().enumerate() {
        if i == skip {
            waited = node.run_queue_wait();
        }
        let due = start + interval * i as u32;
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        // One write per line, straight to the pipe: the node sees each line
        // when it is due.
        node.input()?.write_all(text.as_bytes())?;
        if reported.elapsed() >= Duration::from_secs(5) {
            eprintln!("[6 process] latency: {} of {events} sent", i + 1);
            reported = Instant::now();
        }
    }
    node.wait_received(events)?;
    let waited = node.run_queue_wait().saturating_sub(waited);
    let peak_rss_kib = node.peak_rss_kib();
    let stamps = node.finish(events)?;
    let latency_ms = stamps
        .iter()
        .enumerate()
        .skip(skip)
        .map(|(i, (at, _))| {
            let due_ns = start_ns + interval.as_nanos() * i as u128;
            at.saturating_sub(due_ns) as f64 / 1e6
        })
        .collect();
    Ok(Paced {
        latency_ms: sorted(latency_ms),
        waited,
        peak_rss_kib,
    })
}
