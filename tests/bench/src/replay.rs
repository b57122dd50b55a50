//! Row 5, replay: events per second from the node's durable event log to
//! one resuming WebSocket client (`valid_transactions?last_seen_event=0`),
//! against `eventhost events` reading the same log in the same run.
//!
//! The data directory's event log is written once, before the rounds,
//! through the host library's `Store::append` in batches of 256 events (as
//! `eventhost replay` writes its own log): blocks of builder-made CREATEs,
//! cycled from a pool of distinct signed transactions (signing a million
//! and more would take longer than the benchmark; the plugin renders each message
//! from the transaction's JSON, whatever else the block holds). Only the
//! event log is written; the ledger's chain tables stay empty, which
//! nothing here reads.
//!
//! A round of ours starts `eventhost run` on that directory with the
//! WebSocket plugin, connects one client resuming from the first event,
//! and times from the connect until the client has every message of the
//! log, checking each one's height and transaction id in order; the node's
//! CPU time over that span comes from /proc/PID/stat. A round of the
//! baseline runs `eventhost events` (the store is locked while the node
//! runs, so the two alternate) and times it until this process has read
//! its last line, checking the count; its CPU time is the process's whole
//! life, from getrusage of the waited-for child. Both read the log through
//! the page cache, which holds it once it was written (the machine has the
//! memory): the disk is not what is measured.

use std::fs;
use std::io::BufRead;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use abi_stable::std_types::{RString, RVec};
use anyhow::{Context, bail};
use eventhost::event_log::{EventLog, Reader};
use eventhost::metrics::Metrics;
use eventhost::store::STORE_FILE;
use eventhost::store::Store;
use eventhost_plugin_api::{BLOCK_VALID, Event, summaries};
use tokio_tungstenite::tungstenite;

use crate::node::{Node, eventhost};
use crate::report::{Figure, Row, Target};
use crate::txs::Tx;
use crate::{median, sys};

/// Transactions per block: one message each on `valid_transactions`.
const PER_BLOCK: usize = 50;
/// Distinct signed transactions the blocks cycle through.
const POOL: usize = 5_000;
/// Events written to the log per store transaction, as `eventhost replay` does.
const WRITE_BATCH: usize = 256;
/// A node that does not start, or a client that gets nothing, this long has stopped.
const STALL: Duration = Duration::from_secs(60);

struct Params {
    blocks: usize,
    rounds: usize,
}

/// One round of one side.
struct Round {
    events: u64,
    wall: Duration,
    cpu: Duration,
}

impl Round {
    fn rate(&self) -> f64 {
        self.events as f64 / self.wall.as_secs_f64()
    }

    fn cpu_per_event_us(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.events as f64
    }
}

pub fn run(build: &Path, quick: bool) -> anyhow::Result<Vec<Row>> {
    let p = if quick {
        // Enough for the node's CPU time, counted in 10 ms clock ticks,
        // to be read to a few per cent (500 blocks took 8 ticks).
        Params {
            blocks: 2_000,
            rounds: 3,
        }
    } else {
        Params {
            blocks: 30_000,
            rounds: 3,
        }
    };
    let messages = (p.blocks * PER_BLOCK) as u64;
    let pool = POOL.min(p.blocks * PER_BLOCK);
    eprintln!("[5 replay] signing {pool} distinct CREATE transactions");
    let txs = crate::txs::creates(pool, "replay")?;
    let dir = tempfile::Builder::new()
        .prefix("eventhost-bench-replay-")
        .tempdir()?;
    eprintln!(
        "[5 replay] writing {} blocks of {PER_BLOCK} transactions to a new event log",
        p.blocks
    );
    let written = Instant::now();
    write_log(&dir.path().join("data").join(STORE_FILE), &txs, p.blocks)?;
    let log_bytes = fs::metadata(dir.path().join("data").join(STORE_FILE))?.len();
    eprintln!(
        "[5 replay] wrote {:.0} MiB in {:.1} s; {} round(s), eventhost and `eventhost events` alternating",
        log_bytes as f64 / 1048576.0,
        written.elapsed().as_secs_f64(),
        p.rounds
    );
    fs::write(dir.path().join("config.toml"), config_text(build))?;

    let mut ours = Vec::with_capacity(p.rounds);
    let mut bare = Vec::with_capacity(p.rounds);
    let mut node_rss = None;
    let mut client_us = Vec::with_capacity(p.rounds);
    for round in 1..=p.rounds {
        let (r, rss, client_cpu) = ours_round(build, dir.path(), &txs, p.blocks)?;
        eprintln!(
            "[5 replay] round {round}/{}: eventhost {:.0} events/s ({:.0} messages/s), {:.1} µs node CPU per event",
            p.rounds,
            r.rate(),
            r.rate() * PER_BLOCK as f64,
            r.cpu_per_event_us()
        );
        node_rss = node_rss.max(rss);
        client_us.push(client_cpu.as_secs_f64() * 1e6 / messages as f64);
        ours.push(r);
        let r = baseline_round(build, dir.path(), p.blocks as u64)?;
        eprintln!(
            "[5 replay] round {round}/{}: `eventhost events` {:.0} events/s, {:.1} µs CPU per event",
            p.rounds,
            r.rate(),
            r.cpu_per_event_us()
        );
        bare.push(r);
    }
    let store_rate = store_read_rate(&dir.path().join("data").join(STORE_FILE), p.blocks)?;
    eprintln!("[5 replay] the store alone reads and decodes {store_rate:.0} events/s");

    let rate = |rounds: &[Round]| median(rounds.iter().map(Round::rate).collect());
    let cpu = |rounds: &[Round]| median(rounds.iter().map(Round::cpu_per_event_us).collect());
    Ok(vec![
        Row {
            id: "5a",
            what: format!(
                "Replay from the event log to one resuming WebSocket client (blocks of {PER_BLOCK}) vs `eventhost events`"
            ),
            ours: Figure::Rate {
                per_second: rate(&ours),
                unit: "events",
            },
            baseline: Some(Figure::Rate {
                per_second: rate(&bare),
                unit: "events",
            }),
            target: Some(Target::RatioAtLeast(1.0)),
            peak_rss_kib: node_rss,
            rss_of: "node",
            notes: vec![format!(
                "{} events ({messages} valid_transactions messages, {:.0} MiB of log) from connect to the last message, median of {} alternating round(s): {:.0} messages/s; every message checked in order; the baseline prints the same events as JSON lines to a pipe this process reads, from its start to its end; the store alone (Store::read in this process) reads {store_rate:.0} events/s; the client shares the 2 cores with the node",
                p.blocks,
                log_bytes as f64 / 1048576.0,
                p.rounds,
                rate(&ours) * PER_BLOCK as f64
            )],
        },
        Row {
            id: "5b",
            what: "Replay: server CPU time per event (/proc/PID/stat) vs `eventhost events`".into(),
            ours: Figure::micros(cpu(&ours), "event"),
            baseline: Some(Figure::micros(cpu(&bare), "event")),
            // Issue 21: at most 1.0 µs of node CPU per replayed message,
            // and each event here carries PER_BLOCK messages.
            target: Some(Target::CostAtMost(PER_BLOCK as f64, "µs")),
            peak_rss_kib: None,
            rss_of: "",
            notes: vec![format!(
                "{:.2} µs of node CPU per message; the client took {:.2} µs per message on its thread",
                cpu(&ours) / PER_BLOCK as f64,
                median(client_us)
            )],
        },
    ])
}

/// The transaction at `index` in the log's order (block by block).
fn tx_at(txs: &[Tx], index: usize) -> &Tx {
    &txs[index % txs.len()]
}

/// Writes `blocks` BLOCK_VALID events, heights 1 to `blocks`, to a new store,
/// as a ledger node's log holds them.
fn write_log(path: &Path, txs: &[Tx], blocks: usize) -> anyhow::Result<()> {
    let store = Arc::new(Store::open(path)?);
    let (mut log, _) = EventLog::open(store, &Metrics::new())?;
    let mut height = 0;
    while height < blocks {
        let batch: Vec<Event> = (height..(height + WRITE_BATCH).min(blocks))
            .map(|h| Event {
                event_type: BLOCK_VALID,
                seq: 0,
                height: h as u64 + 1,
                block_hash: RString::from(format!("{:064x}", h + 1)),
                timestamp_ms: 1_764_028_800_000 + h as u64,
                transactions: (0..PER_BLOCK)
                    .map(|j| RString::from(tx_at(txs, h * PER_BLOCK + j).text.as_str()))
                    .collect::<RVec<_>>(),
                rejections: RVec::new(),
            })
            .collect();
        height += batch.len();
        // With their summaries, as the ledger stores its blocks' events
        // (it makes them from the transactions it has parsed).
        let summarized = batch.iter().map(summaries::summarize).collect();
        log.commit_summarized_with(batch, summarized, |_| Ok(()))?;
    }
    Ok(())
}

fn config_text(build: &Path) -> String {
    // No pings: the client is busy reading, and a ping would only add a
    // message to the count it checks.
    format!(
        "[host]\ndata_dir = \"data\"\n{}\nlog = \"info\"\n\n[api]\nbind = \"127.0.0.1:0\"\n\n[admin]\nbind = \"127.0.0.1:0\"\n\n\
         [[plugins]]\nname = \"websocket\"\n[plugins.config]\nbind = \"127.0.0.1:0\"\nping_interval_ms = 0\n",
        crate::plugin_dirs_line(build)
    )
}

/// The height and transaction id of a `valid_transactions` message
/// (`{"height":3,"asset_id":…,"transaction_id":"…"}`, keys in that order),
/// read without parsing the rest: a full parse of every message would take
/// CPU from the node on the same cores.
fn height_and_id(text: &str) -> Option<(u64, &str)> {
    let rest = text.strip_prefix("{\"height\":")?;
    let height = rest[..rest.find(',')?].parse().ok()?;
    let id = text.strip_suffix("\"}")?;
    let id = &id[id.rfind("\"transaction_id\":\"")? + "\"transaction_id\":\"".len()..];
    Some((height, id))
}

fn ours_round(
    build: &Path,
    dir: &Path,
    txs: &[Tx],
    blocks: usize,
) -> anyhow::Result<(Round, Option<u64>, Duration)> {
    let node = Node::start(build, dir, STALL)?;
    let address = node.logged_address("listening on ")?;
    let pid = node.pid();
    let cpu_before = sys::process_cpu_time(pid).context("the node's CPU time")?;
    let client_before = sys::thread_cpu_time();
    let started = Instant::now();
    let mut client = crate::ws_connect(
        &address,
        "/api/v1/streams/valid_transactions?last_seen_event=0",
    )?;
    let total = blocks * PER_BLOCK;
    let mut received = 0;
    let mut moved = Instant::now();
    let mut reported = Instant::now();
    while received < total {
        let text = match client.read() {
            Ok(tungstenite::Message::Text(text)) => text,
            Ok(_) => continue,
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if moved.elapsed() > STALL {
                    bail!(
                        "the client got {received} of {total} messages, then nothing for {STALL:?}"
                    );
                }
                continue;
            }
            Err(e) => bail!("the stream failed after {received} of {total} messages: {e}"),
        };
        let (height, id) = ((received / PER_BLOCK) as u64 + 1, &tx_at(txs, received).id);
        if height_and_id(&text) != Some((height, id.as_str())) {
            bail!("message {received} should be about transaction {id} of block {height}: {text}");
        }
        received += 1;
        moved = Instant::now();
        if reported.elapsed() >= Duration::from_secs(5) {
            eprintln!("[5 replay] eventhost: {received} of {total} messages");
            reported = Instant::now();
        }
    }
    let wall = started.elapsed();
    let client_cpu = sys::thread_cpu_time().saturating_sub(client_before);
    let cpu = sys::process_cpu_time(pid)
        .context("the node's CPU time")?
        .saturating_sub(cpu_before);
    let rss = sys::peak_rss_kib(Some(pid));
    drop(client);
    node.stop(STALL)?;
    Ok((
        Round {
            events: blocks as u64,
            wall,
            cpu,
        },
        rss,
        client_cpu,
    ))
}

fn baseline_round(build: &Path, dir: &Path, events: u64) -> anyhow::Result<Round> {
    let cpu_before = sys::children_cpu_time();
    let started = Instant::now();
    let mut child = eventhost(build, dir)
        .arg("events")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start `eventhost events`")?;
    let mut out = std::io::BufReader::with_capacity(
        1 << 20,
        child.stdout.take().context("the reader's output")?,
    );
    let (mut lines, mut line, mut last) = (0, String::new(), String::new());
    while out.read_line(&mut line)? > 0 {
        lines += 1;
        // Only the last line is checked: parsing every one would make this
        // process, not the reader, the bound.
        std::mem::swap(&mut line, &mut last);
        line.clear();
    }
    let status = child.wait()?;
    let wall = started.elapsed();
    if !status.success() {
        bail!("`eventhost events` exited with {status}");
    }
    let expected = format!("{{\"type\":\"BLOCK_VALID\",\"seq\":{events},");
    if lines != events || !last.starts_with(&expected) {
        bail!("`eventhost events` printed {lines} lines, not {events} ending with event {events}");
    }
    Ok(Round {
        events,
        wall,
        cpu: sys::children_cpu_time().saturating_sub(cpu_before),
    })
}

/// Events per second the event log's reader returns in this process,
/// batches of 256 as the WebSocket plugin asks for them: the floor under
/// both sides.
fn store_read_rate(path: &Path, blocks: usize) -> anyhow::Result<f64> {
    let store = Reader::new(Arc::new(Store::open(path)?));
    let started = Instant::now();
    let mut next = 1;
    loop {
        let batch = store.read(next, 256)?;
        let Some(last) = batch.last() else { break };
        next = last.seq + 1;
    }
    let read = next - 1;
    if read != blocks as u64 {
        bail!("the store returned {read} of {blocks} events");
    }
    Ok(read as f64 / started.elapsed().as_secs_f64())
}
