//! Rows 7b–7d, edge nodes (issue 19): an edge (`eventhost run` with
//! `[source] kind = "nats"`) following a stream on one nats-server
//! (JetStream, file storage, one replica) on a loopback port, the binary
//! the tests use.
//!
//! - 7b, from JetStream to the log: one-transaction blocks (signed CREATEs)
//!   are published to the stream as the nats plugin publishes them (the
//!   same JSON and headers, 256 acknowledgements in flight) while the edge
//!   follows it; the figure is the edge process's CPU time (/proc) per
//!   event until its log holds the last one. The baseline is the same
//!   events committed straight to an event log in this process, 256 per
//!   transaction (`EventLog::commit_numbered_with`, the edge's own call):
//!   the log's cost, without JetStream.
//! - 7c, WebSocket fan-out: row 4's measurement ([`crate::fanout`]) of an
//!   edge serving the websocket plugin's streams, its blocks coming from
//!   the stream, against the node fed the same blocks on its standard
//!   input (`eventhost replay -`, row 4's node): server CPU per delivered
//!   message. Target: at most 1.1 times the node's.
//! - 7d, end to end: `mode=commit` posts to a ledger node (with the nats
//!   plugin and the websocket plugin), paced open-loop as row 3d; the
//!   figures are from each post's due time to its message on a WebSocket
//!   client of the edge's `valid_transactions`, against a client of the
//!   ledger node's own, in the same run.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use async_nats::jetstream;
use eventhost::event_log::EventLog;
use eventhost::metrics::Metrics;
use eventhost::store::Store;
use eventhost_plugin_api::Event;
use support::nats::{self as servers, Auth, Client, Server};

use crate::fanout::{self, EdgeFeed, Workload};
use crate::node::Node;
use crate::report::{Figure, Row, Target};
use crate::{median, quantile, sys};

/// How long a node may take to start, to catch up, to stop.
const PATIENCE: Duration = Duration::from_secs(60);
/// Distinct signed transactions the blocks cycle through.
const POOL: usize = 2_000;
/// An edge whose log does not move this long has stopped.
const STALL: Duration = Duration::from_secs(30);

pub fn run(build: &Path, quick: bool) -> anyhow::Result<Vec<Row>> {
    crate::nats::check_server()?;
    eprintln!(
        "[7 edge] starting nats-server ({})",
        servers::binary().display()
    );
    let server = servers::single(&Auth::None);
    Ok(vec![
        to_the_log(build, &server, quick)?,
        fan_out(build, &server, quick)?,
        end_to_end(build, &server, quick)?,
    ])
}

/// An edge's `[source]` table: `stream` on `url`, its subjects under the
/// stream's name in lower case.
fn source(url: &str, stream: &str) -> String {
    format!(
        "[source]\nkind = \"nats\"\nservers = [{url:?}]\nstream = {stream:?}\nsubject_prefix = {:?}\ndurable = \"bench\"\nreconnect_initial_ms = 50\nreconnect_max_ms = 200\n",
        stream.to_lowercase()
    )
}

/// A node's configuration in a benchmark: `tables` after `[host]` and `[api]`.
fn config(build: &Path, tables: &str) -> String {
    format!(
        "[host]\ndata_dir = \"data\"\n{}\nlog = \"info\"\n\n[api]\nbind = \"127.0.0.1:0\"\n\n[admin]\nbind = \"off\"\n\n{tables}",
        crate::plugin_dirs_line(build)
    )
}

/// The newest event of an edge's log, from its `/health/ready`.
fn edge_head(agent: &ureq::Agent, base: &str) -> anyhow::Result<u64> {
    let body = agent
        .get(format!("{base}/health/ready"))
        .call()?
        .body_mut()
        .read_to_string()?;
    let health: serde_json::Value = serde_json::from_str(&body)?;
    health["checks"]["upstream"]["head"]
        .as_u64()
        .with_context(|| format!("no upstream head in {body}"))
}

/// Waits until the edge's log holds event `head`, polling every 20 ms.
fn wait_for_head(base: &str, head: u64) -> anyhow::Result<()> {
    let agent = crate::commit::client();
    let (mut last, mut moved) = (0, Instant::now());
    loop {
        let now = edge_head(&agent, base)?;
        if now >= head {
            return Ok(());
        }
        if now != last {
            (last, moved) = (now, Instant::now());
        } else if moved.elapsed() > STALL {
            bail!("the edge's log stopped at event {now} of {head}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Row 7b.
fn to_the_log(build: &Path, server: &Server, quick: bool) -> anyhow::Result<Row> {
    let (events, rounds) = if quick { (2_000, 1) } else { (50_000, 3) };
    eprintln!(
        "[7 edge] signing {} distinct CREATE transactions",
        POOL.min(events)
    );
    let txs = crate::txs::creates(POOL.min(events), "edge")?;
    let lines = crate::nats::event_lines(&txs, events);
    let messages = crate::nats::bare_messages(&lines)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let publisher = runtime.block_on(async_nats::connect(server.url()))?;
    let (mut ours, mut bare, mut rates) = (Vec::new(), Vec::new(), Vec::new());
    let mut node_rss = None;
    for round in 1..=rounds {
        let stream = format!("EDGELOG{round}");
        let dir = tempfile::Builder::new()
            .prefix("eventhost-bench-edge-")
            .tempdir()?;
        std::fs::write(
            dir.path().join("config.toml"),
            config(build, &source(&server.url(), &stream)),
        )?;
        let node = Node::start(build, dir.path(), PATIENCE)?;
        let base = format!("http://{}", node.logged_address("HTTP API on http://")?);
        let cpu_before = sys::process_cpu_time(node.pid()).context("the edge's CPU time")?;
        let started = Instant::now();
        let published = std::thread::scope(|scope| {
            let publishing = scope.spawn(|| {
                runtime.block_on(crate::nats::publish_bare(
                    publisher.clone(),
                    &stream,
                    &messages,
                ))
            });
            let followed = wait_for_head(&base, events as u64);
            publishing
                .join()
                .map_err(|_| anyhow::anyhow!("the publisher panicked"))??;
            followed
        });
        published.with_context(|| format!("the edge:\n{}", node.log()))?;
        let took = started.elapsed();
        let cpu = sys::process_cpu_time(node.pid())
            .context("the edge's CPU time")?
            .saturating_sub(cpu_before);
        node_rss = node_rss.max(sys::peak_rss_kib(Some(node.pid())));
        node.stop(PATIENCE)?;
        ours.push(cpu.as_secs_f64() * 1e6 / events as f64);
        rates.push(events as f64 / took.as_secs_f64());
        bare.push(bare_log_cpu_us(&lines)?);
        eprintln!(
            "[7 edge] round {round}/{rounds}: JetStream → log: {:.1} µs edge CPU per event ({:.0} events/s); straight to a log: {:.1} µs per event",
            ours[round - 1],
            rates[round - 1],
            bare[round - 1]
        );
    }
    Ok(Row {
        id: "7b",
        what: "Edge: CPU per event from JetStream to its event log (edge process) vs the same events committed straight to an event log".into(),
        ours: Figure::micros(median(ours), "event"),
        baseline: Some(Figure::micros(median(bare), "event")),
        target: None,
        peak_rss_kib: node_rss,
        rss_of: "edge",
        notes: vec![format!(
            "{events} one-transaction blocks published with 256 acks in flight while the edge follows, median of {rounds}; the edge took {:.0} events/s; the baseline commits 256 events per transaction in this process",
            median(rates)
        )],
    })
}

/// This thread's CPU time per event, committing `lines`' events straight
/// to a new event log, 256 per transaction.
fn bare_log_cpu_us(lines: &[String]) -> anyhow::Result<f64> {
    let dir = tempfile::Builder::new()
        .prefix("eventhost-bench-log-")
        .tempdir()?;
    let store = Arc::new(Store::open(&dir.path().join("store.redb"))?);
    let (mut log, _exchange) = EventLog::open(store, &Metrics::new())?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
    let events = lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let mut event = Event::from_json(line).map_err(anyhow::Error::msg)?;
            event.seq = i as u64 + 1;
            event.timestamp_ms = now;
            Ok(event)
        })
        .collect::<anyhow::Result<Vec<Event>>>()?;
    let started = sys::thread_cpu_time();
    for batch in events.chunks(256) {
        log.commit_numbered_with(batch.to_vec(), |_| Ok(()))?;
    }
    Ok((sys::thread_cpu_time() - started).as_secs_f64() * 1e6 / lines.len() as f64)
}

/// Publishes each block written to it (a line, as `eventhost replay`
/// reads them) to a stream as the nats plugin would, numbered from 1, and
/// waits for the stream's acknowledgement.
struct Publisher {
    runtime: tokio::runtime::Runtime,
    js: jetstream::Context,
    subject: String,
    seq: u64,
    pending: Vec<u8>,
}

impl Publisher {
    fn new(url: &str, stream: &str) -> anyhow::Result<Publisher> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let client = runtime.block_on(async_nats::connect(url))?;
        let js = {
            let _in_runtime = runtime.enter();
            jetstream::new(client)
        };
        Ok(Publisher {
            runtime,
            js,
            subject: format!("{}.block.valid", stream.to_lowercase()),
            seq: 0,
            pending: Vec::new(),
        })
    }

    fn publish(&mut self, line: &str) -> anyhow::Result<()> {
        self.seq += 1;
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
        let (headers, payload) = crate::nats::block_message(line, self.seq, now)?;
        self.runtime.block_on(async {
            self.js
                .publish_with_headers(self.subject.clone(), headers, payload)
                .await?
                .await?;
            anyhow::Ok(())
        })
    }
}

impl Write for Publisher {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(buf);
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line[..end]).into_owned();
            self.publish(&line).map_err(std::io::Error::other)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Row 7c.
fn fan_out(build: &Path, server: &Server, quick: bool) -> anyhow::Result<Row> {
    let p = fanout::Params::new(quick);
    eprintln!(
        "[7 edge] fan-out: {} round(s): {} clients, blocks of {} transactions fed for {:.0} s, the node (stdin) and an edge (JetStream) alternating",
        p.rounds,
        p.clients,
        fanout::PER_BLOCK,
        p.feed_for.as_secs_f64()
    );
    let runtime = fanout::runtime()?;
    let client = Client::new(&server.url(), &Auth::None);
    let (mut node, mut edge) = (Vec::new(), Vec::new());
    for round in 1..=p.rounds {
        let r = fanout::measure(
            fanout::Server::Ours,
            build,
            &p,
            &Workload::plain(),
            &runtime,
        )?;
        node.push(r);
        // A stream per round: an edge starts with an empty log.
        let stream = format!("EDGEFAN{round}");
        let subjects = format!("{}.>", stream.to_lowercase());
        client.create_stream(&stream, &[subjects.as_str()], 1);
        let url = server.url();
        let feed = EdgeFeed {
            source: source(&url, &stream),
            publisher: Box::new(move || Ok(Box::new(Publisher::new(&url, &stream)?))),
        };
        let r = fanout::measure_edge(&feed, build, &p, &Workload::plain(), &runtime)?;
        edge.push(r);
        eprintln!(
            "[7 edge] round {round}/{}: node {:.0} messages/s, {:.3} µs CPU per message; edge {:.0} messages/s, {:.3} µs CPU per message",
            p.rounds,
            node[round - 1].rate(),
            node[round - 1].cpu_us_per_message(),
            edge[round - 1].rate(),
            edge[round - 1].cpu_us_per_message()
        );
    }
    Ok(Row {
        id: "7c",
        what: format!(
            "Edge: server CPU per delivered message, fan-out to {} clients (blocks from JetStream) vs the node (blocks on stdin, row 4)",
            p.clients
        ),
        ours: Figure::micros(fanout::median_cpu(&edge), "message"),
        baseline: Some(Figure::micros(fanout::median_cpu(&node), "message")),
        target: Some(Target::RatioAtMost(1.1)),
        peak_rss_kib: edge.iter().filter_map(|r| r.peak_rss_kib).max(),
        rss_of: "edge",
        notes: vec![format!(
            "valid_transactions, blocks of {}; median of {} round(s); the edge delivered {:.0} messages/s, the node {:.0}",
            fanout::PER_BLOCK,
            p.rounds,
            fanout::median_rate(&edge),
            fanout::median_rate(&node)
        )],
    })
}

/// Row 7d.
fn end_to_end(build: &Path, server: &Server, quick: bool) -> anyhow::Result<Row> {
    let (rate, run_for, warmup) = if quick {
        (500u32, Duration::from_secs(2), Duration::from_millis(500))
    } else {
        (1000u32, Duration::from_secs(20), Duration::from_secs(2))
    };
    let count = (f64::from(rate) * run_for.as_secs_f64()) as usize;
    eprintln!(
        "[7 edge] end to end: mode=commit at {rate} tx/s for {:.0} s to a ledger node, messages on a client of an edge and of the ledger",
        run_for.as_secs_f64()
    );
    let txs = crate::txs::creates(count, "edge-latency")?;
    let websocket = "[[plugins]]\nname = \"websocket\"\n[plugins.config]\nbind = \"127.0.0.1:0\"\n";
    let ledger_dir = tempfile::Builder::new()
        .prefix("eventhost-bench-ledger-")
        .tempdir()?;
    let nats = format!(
        "[[plugins]]\nname = \"nats\"\n[plugins.config]\nservers = [{:?}]\nstream = \"EDGELAT\"\nsubject_prefix = \"edgelat\"\n\n",
        server.url()
    );
    std::fs::write(
        ledger_dir.path().join("config.toml"),
        config(build, &format!("{nats}{websocket}")),
    )?;
    let ledger = Node::start(build, ledger_dir.path(), PATIENCE)?;
    let ledger_base = format!("http://{}", ledger.logged_address("HTTP API on http://")?);
    let edge_dir = tempfile::Builder::new()
        .prefix("eventhost-bench-edge-")
        .tempdir()?;
    let edge_config = config(
        build,
        &format!("{}\n{websocket}", source(&server.url(), "EDGELAT")),
    );
    std::fs::write(edge_dir.path().join("config.toml"), edge_config)?;
    let edge = Node::start(build, edge_dir.path(), PATIENCE)?;
    let deadline = Instant::now() + PATIENCE;
    while !edge.log().contains("edge: following stream") {
        if Instant::now() > deadline {
            bail!("the edge did not follow the stream:\n{}", edge.log());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let path = "/api/v1/streams/valid_transactions";
    let at_edge = crate::ws_connect(&edge.logged_address("listening on ")?, path)?;
    let at_ledger = crate::ws_connect(&ledger.logged_address("listening on ")?, path)?;

    let url = format!("{ledger_base}/api/v1/transactions?mode=commit");
    let interval = Duration::from_secs(1) / rate;
    let lead = Duration::from_millis(100);
    let start = Instant::now() + lead;
    let start_ns = crate::commit::now_ns() + lead.as_nanos();
    let listen_until = start + run_for + PATIENCE;
    let next = AtomicUsize::new(0);
    let (sent, edge_arrivals, ledger_arrivals) = std::thread::scope(|scope| {
        let edge_listener = scope.spawn(|| crate::commit::listen(at_edge, count, listen_until));
        let ledger_listener = scope.spawn(|| crate::commit::listen(at_ledger, count, listen_until));
        let senders: Vec<_> = (0..64)
            .map(|_| {
                scope.spawn(|| {
                    let agent = crate::commit::client();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= count {
                            return anyhow::Ok(());
                        }
                        let due = start + interval * i as u32;
                        std::thread::sleep(due.saturating_duration_since(Instant::now()));
                        crate::commit::post(&agent, &url, &txs[i])?;
                    }
                })
            })
            .collect();
        let sent: anyhow::Result<()> = senders
            .into_iter()
            .try_for_each(|s| s.join().unwrap_or_else(|_| bail!("a sender panicked")));
        let join = |h: std::thread::ScopedJoinHandle<'_, _>| {
            h.join()
                .unwrap_or_else(|_| bail!("a WebSocket client panicked"))
        };
        (sent, join(edge_listener), join(ledger_listener))
    });
    sent?;
    let edge_arrivals = edge_arrivals.with_context(|| format!("the edge:\n{}", edge.log()))?;
    let ledger_arrivals = ledger_arrivals?;
    let skip = (warmup.as_secs_f64() * f64::from(rate)) as usize;
    let latencies =
        |arrivals: &std::collections::HashMap<String, u128>| -> anyhow::Result<Vec<f64>> {
            let mut ms = txs
                .iter()
                .enumerate()
                .skip(skip)
                .map(|(i, tx)| {
                    let due = start_ns + interval.as_nanos() * i as u128;
                    let at = arrivals
                        .get(&tx.id)
                        .with_context(|| format!("transaction {} never arrived", tx.id))?;
                    Ok(at.saturating_sub(due) as f64 / 1e6)
                })
                .collect::<anyhow::Result<Vec<f64>>>()?;
            ms.sort_by(f64::total_cmp);
            Ok(ms)
        };
    let (at_edge, at_ledger) = (latencies(&edge_arrivals)?, latencies(&ledger_arrivals)?);
    eprintln!(
        "[7 edge] end to end: POST → edge client p50 {:.2} ms p99 {:.2} ms; → ledger client p50 {:.2} ms p99 {:.2} ms",
        quantile(&at_edge, 0.5),
        quantile(&at_edge, 0.99),
        quantile(&at_ledger, 0.5),
        quantile(&at_ledger, 0.99)
    );
    let rss = sys::peak_rss_kib(Some(edge.pid()));
    edge.stop(PATIENCE)?;
    ledger.stop(PATIENCE)?;
    Ok(Row {
        id: "7d",
        what: format!(
            "mode=commit at {rate} tx/s: POST → message on a WebSocket client of an edge (valid_transactions) vs of the ledger node itself"
        ),
        ours: Figure::latency(&at_edge),
        baseline: Some(Figure::latency(&at_ledger)),
        target: None,
        peak_rss_kib: rss,
        rss_of: "edge",
        notes: vec![format!(
            "{} transactions after a {:.1} s warm-up; the ledger node runs the nats plugin (one nats-server, file storage) and the websocket plugin; the edge follows the stream",
            count - skip,
            warmup.as_secs_f64()
        )],
    })
}
