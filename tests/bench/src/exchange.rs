//! Row 1, exchange fan-out: events per second from publishing to 8 plugins
//! (thread mode, each loaded from the `bench-sink` library, each counting
//! what it receives), against a bare fan-out of the same events through 8
//! crossbeam channels to 8 counting threads.
//!
//! Both sides get the same events (a one-transaction block, cloned from one
//! template, wrapped in a shared pointer once and handed to every queue)
//! and the same flow control: bounded queues of the host's default
//! capacity, and a publisher that sends a burst only once every queue has
//! room for it. The exchange itself never waits (a full queue makes the
//! plugin catch up from the event log); here the events are published
//! without being written to the log, whose cost row 3 measures, so the
//! driver must keep every queue from filling, and the baseline is held to
//! the same rule so the two differ only in the exchange.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use abi_stable::std_types::{RString, RVec};
use anyhow::{Context, bail};
use eventhost::config::{Config, DEFAULT_QUEUE_CAPACITY};
use eventhost::event_log::Reader;
use eventhost::exchange::{Exchange, Publisher};
use eventhost::metrics::Metrics;
use eventhost::plugin_runtime::cursors::Cursors;
use eventhost::plugin_runtime::{self, Advertised, HostServices, PluginRuntime, RuntimeSettings};
use eventhost::sources::ledger::builder::{self, Keypair};
use eventhost::store::Store;
use eventhost_plugin_api::{BLOCK_VALID, Event};

use crate::report::{Figure, Row, Target};
use crate::{SINK, median, sys};

const PLUGINS: usize = 8;
/// Events published in one burst, once every queue has room for them. Three
/// quarters of a queue, so consumers take events in bulk: with small
/// bursts, consumers on a busy 2-core machine keep catching up with the
/// publisher, parking and being woken for every few events, and the rate
/// flipped between that regime and the other by 4x from round to round, on
/// either side; it measured the scheduler rather than the exchange.
const BATCH: usize = DEFAULT_QUEUE_CAPACITY * 3 / 4;
/// A consumer that makes no progress this long has stopped.
const STALL: Duration = Duration::from_secs(10);

pub fn run(build: &Path, quick: bool) -> anyhow::Result<Vec<Row>> {
    let (rounds, length) = if quick {
        (1, Duration::from_millis(500))
    } else {
        (15, Duration::from_millis(1500))
    };
    eprintln!(
        "[1 exchange] {rounds} round(s) of {:.1} s each for eventhost and the baseline, alternating",
        length.as_secs_f64()
    );
    let rss_reset = sys::reset_peak_rss();
    let dir = tempfile::tempdir()?;
    let config_path = dir.path().join("config.toml");
    let config = Config::parse(&config_text(build), &config_path)?;
    let mut host = Plugins::start(&config, &dir.path().join("eventhost.redb"))
        .context("cannot start the host with 8 bench-sink plugins")?;
    let template = template_event();

    let mut ours = Vec::with_capacity(rounds);
    let mut bare = Vec::with_capacity(rounds);
    for round in 1..=rounds {
        let r = measure(|| ours_round(&mut host, &template, length))?;
        eprintln!(
            "[1 exchange] round {round}/{rounds}: eventhost {}",
            r.describe()
        );
        ours.push(r);
        let r = measure(|| baseline_round(&template, length))?;
        eprintln!(
            "[1 exchange] round {round}/{rounds}: crossbeam {}",
            r.describe()
        );
        bare.push(r);
    }
    host.runtime.shutdown();

    let cpu = |rounds: &[Round]| median(rounds.iter().map(Round::cpu_per_event_us).collect());
    let mut notes = vec![format!(
        "events published per second, each delivered to {PLUGINS} plugins; median of {rounds} alternating rounds; queues of {DEFAULT_QUEUE_CAPACITY}, bursts of {BATCH} events once every queue has room (both sides); CPU per event (all threads): eventhost {:.2} µs, crossbeam {:.2} µs",
        cpu(&ours),
        cpu(&bare)
    )];
    if !rss_reset {
        notes.push("peak RSS could not be reset: it is the process's peak so far".into());
    }
    Ok(vec![Row {
        id: "1",
        what: format!("Exchange fan-out to {PLUGINS} thread-mode plugins vs crossbeam"),
        ours: Figure::Rate {
            per_second: median(ours.iter().map(Round::rate).collect()),
            unit: "events",
        },
        baseline: Some(Figure::Rate {
            per_second: median(bare.iter().map(Round::rate).collect()),
            unit: "events",
        }),
        target: Some(Target::RatioAtLeast(0.9)),
        peak_rss_kib: sys::peak_rss_kib(None),
        rss_of: "bench process, both sides",
        notes,
    }])
}

/// One round of one side: how many events, in how long, for how much CPU.
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

    fn describe(&self) -> String {
        format!(
            "{:.0} events/s, {:.2} µs CPU per event",
            self.rate(),
            self.cpu_per_event_us()
        )
    }
}

/// Runs a round (which returns how many events it fan out), timing it on
/// the wall clock and in CPU time.
fn measure(round: impl FnOnce() -> anyhow::Result<u64>) -> anyhow::Result<Round> {
    let cpu = sys::cpu_time();
    let started = Instant::now();
    let events = round()?;
    Ok(Round {
        events,
        wall: started.elapsed(),
        cpu: sys::cpu_time().saturating_sub(cpu),
    })
}

fn config_text(build: &Path) -> String {
    let mut text = format!(
        "[host]\n{}\nlog = \"warn\"\n",
        crate::plugin_dirs_line(build)
    );
    for i in 0..PLUGINS {
        text.push_str(&format!(
            "\n[[plugins]]\nname = \"sink-{i}\"\nlibrary = \"{SINK}\"\nqueue_capacity = {DEFAULT_QUEUE_CAPACITY}\n"
        ));
    }
    text
}

/// A BLOCK_VALID as the ledger publishes it for a block of one CREATE.
fn template_event() -> Event {
    let key = Keypair::from_seed([7; 32]);
    let tx = builder::create(
        &key,
        &[(key.public_key(), 1)],
        serde_json::json!({"bench": "exchange"}),
        serde_json::Value::Null,
    );
    Event {
        event_type: BLOCK_VALID,
        seq: 0,
        height: 0,
        block_hash: RString::from("ab".repeat(32)),
        timestamp_ms: 1_764_028_800_000,
        transactions: RVec::from(vec![RString::from(tx.to_string())]),
        rejections: RVec::new(),
    }
}

fn numbered(template: &Event, seq: u64) -> Event {
    let mut event = template.clone();
    event.seq = seq;
    event.height = seq;
    event
}

/// Waits until the fullest queue (as `fullest` reports it) has room for a
/// batch, sleeping meanwhile: the consumers need the cores, and a spinning
/// publisher cost more CPU than the events.
fn wait_for_room(fullest: impl Fn() -> usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + STALL;
    while fullest() + BATCH > DEFAULT_QUEUE_CAPACITY {
        if Instant::now() > deadline {
            bail!("a consumer stopped receiving for {STALL:?}");
        }
        std::thread::sleep(Duration::from_micros(20));
    }
    Ok(())
}

/// The host's plugin runtime on an exchange the bench publishes to itself,
/// without the event log in front of it.
struct Plugins {
    runtime: PluginRuntime,
    exchange: Arc<Exchange>,
    publisher: Publisher,
}

impl Plugins {
    fn start(config: &Config, store: &Path) -> anyhow::Result<Plugins> {
        let (loaded, failed) = plugin_runtime::load_all(config);
        if let Some(e) = failed.first() {
            bail!("{e}");
        }
        let store = Arc::new(Store::open(store)?);
        let metrics = Arc::new(Metrics::new());
        let log = Reader::new(store.clone());
        let (exchange, publisher) = Exchange::new(Arc::new(log.clone()), 0, &metrics);
        let services = HostServices {
            exchange: exchange.clone(),
            log,
            advertised: Arc::new(Advertised::default()),
            metrics,
        };
        let settings = RuntimeSettings {
            policy: config.host.restart.clone(),
            startup_timeout: config.host.startup_timeout,
            shutdown_timeout: config.host.shutdown_timeout,
            data_dir: config.host.data_dir.clone(),
        };
        let runtime = PluginRuntime::start(
            loaded,
            Cursors::open(store)?,
            services,
            settings,
            Default::default(),
        )?;
        runtime.wait_started(config.host.startup_timeout);
        Ok(Plugins {
            runtime,
            exchange,
            publisher,
        })
    }
}

/// Publishes through the host's exchange for `length`, and waits until
/// every plugin has received the last event; returns how many it published.
fn ours_round(host: &mut Plugins, template: &Event, length: Duration) -> anyhow::Result<u64> {
    // Each plugin's progress, looked up once: a plugin that restarted
    // would get a new one, and then the round fails rather than hangs.
    let progress: Vec<_> = host
        .runtime
        .plugins()
        .list()
        .iter()
        .map(|p| p.progress())
        .collect();
    let first = host.exchange.head() + 1;
    let mut last = first - 1;
    let started = Instant::now();
    while started.elapsed() < length {
        wait_for_room(|| progress.iter().map(|p| p.queued()).max().unwrap_or(0))?;
        for _ in 0..BATCH {
            last += 1;
            // One commit per event: the ledger's blocks commit one
            // BLOCK_VALID each (two with rejections), so no batching of
            // events across commits flatters the exchange here.
            host.publisher.publish(vec![numbered(template, last)]);
        }
    }
    let deadline = Instant::now() + STALL;
    while !progress.iter().all(|p| p.delivered() == last) {
        if Instant::now() > deadline {
            bail!("the plugins did not receive every event within {STALL:?}");
        }
        std::thread::sleep(Duration::from_micros(50));
    }
    Ok(last + 1 - first)
}

/// The same events through bare crossbeam channels to counting threads.
fn baseline_round(template: &Event, length: Duration) -> anyhow::Result<u64> {
    let (senders, consumers): (Vec<_>, Vec<_>) = (0..PLUGINS)
        .map(|_| {
            let (tx, rx) = crossbeam_channel::bounded::<Arc<Event>>(DEFAULT_QUEUE_CAPACITY);
            (tx, std::thread::spawn(move || rx.iter().count() as u64))
        })
        .unzip();
    let mut sent = 0;
    let started = Instant::now();
    while started.elapsed() < length {
        wait_for_room(|| senders.iter().map(|s| s.len()).max().unwrap_or(0))?;
        for _ in 0..BATCH {
            sent += 1;
            let event = Arc::new(numbered(template, sent));
            for tx in &senders {
                tx.send(event.clone())
                    .context("a baseline consumer ended early")?;
            }
        }
    }
    drop(senders);
    for consumer in consumers {
        let received = consumer
            .join()
            .map_err(|_| anyhow::anyhow!("a baseline consumer panicked"))?;
        if received != sent {
            bail!("a baseline consumer received {received} of {sent} events");
        }
    }
    Ok(sent)
}
