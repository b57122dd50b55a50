//! Row 9, what the dashboard page costs the node: the node's CPU and
//! memory with the page open in a real headless Chromium, against the same
//! node without it, in the same run.
//!
//! - 9a: under the commit benchmark's load (row 3b: `mode=commit` posts at
//!   1,000 tx/s), with the websocket plugin and one stream client;
//! - 9b: idle: the sampler and the page's snapshots alone.
//!
//! The phases alternate (without, with, without, with, ...) on one node so
//! that drift in a shared machine's load falls on both; the figure is the
//! node's CPU (every thread, from /proc) per second of each phase.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use support::browser::{self, Browser};

use crate::node::Node;
use crate::report::{Figure, Row};
use crate::txs::Tx;

const PATIENCE: Duration = Duration::from_secs(60);

struct Params {
    /// Each phase's length.
    phase: Duration,
    /// Phases of each kind, alternating.
    rounds: usize,
    /// Transactions per second under load (row 3b's).
    rate: u32,
    senders: usize,
}

pub fn run(build: &Path, quick: bool) -> anyhow::Result<Vec<Row>> {
    let Some(chromium) = browser::chromium() else {
        eprintln!(
            "[9 dashboard] skipped: chromium is not installed (apt-get install chromium, or set EVENTHOST_TEST_CHROMIUM)"
        );
        return Ok(Vec::new());
    };
    let p = if quick {
        Params {
            phase: Duration::from_secs(3),
            rounds: 1,
            rate: 1000,
            senders: 64,
        }
    } else {
        Params {
            phase: Duration::from_secs(15),
            rounds: 3,
            rate: 1000,
            senders: 64,
        }
    };
    let per_phase = (f64::from(p.rate) * p.phase.as_secs_f64()) as usize;
    // One phase more, first, unmeasured: the node's memory grows over its
    // first load (store cache, allocator), which would be charged to
    // whichever phase came first.
    let count = per_phase * (2 * p.rounds + 1);
    eprintln!("[9 dashboard] signing {count} distinct CREATE transactions");
    let txs = crate::txs::creates(count, "dashboard")?;

    let dir = tempfile::Builder::new()
        .prefix("eventhost-bench-")
        .tempdir()?;
    std::fs::write(
        dir.path().join("config.toml"),
        format!(
            "[host]\ndata_dir = \"data\"\n{}\n\n[api]\nbind = \"127.0.0.1:0\"\n\n[admin]\nbind = \"127.0.0.1:0\"\n\n\
             [[plugins]]\nname = \"printer\"\n[plugins.config]\noutput = \"printer.out\"\n\n\
             [[plugins]]\nname = \"websocket\"\n[plugins.config]\nbind = \"127.0.0.1:0\"\n",
            crate::plugin_dirs_line(build)
        ),
    )?;
    let node = Node::start(build, dir.path(), PATIENCE)?;
    let base = format!("http://{}", node.logged_address("HTTP API on http://")?);
    let admin = format!("http://{}", node.logged_address("admin API on http://")?);
    let websocket = node.logged_address("listening on ")?;
    let _client = crate::ws_connect(&websocket, "/api/v1/streams/valid_transactions")?;

    let mut loaded = Costs::default();
    let mut idle = Costs::default();
    let mut batches = txs.chunks(per_phase);
    eprintln!("[9 dashboard] warming up: {} tx/s, not measured", p.rate);
    post_paced(&base, batches.next().context("too few transactions")?, &p)?;
    for round in 1..=p.rounds {
        for with_page in [false, true] {
            eprintln!(
                "[9 dashboard] round {round} of {}: {} the page, idle then {} tx/s",
                p.rounds,
                if with_page { "with" } else { "without" },
                p.rate
            );
            let before = rss_kib(&node);
            let page = with_page
                .then(|| open_page(&chromium, &admin))
                .transpose()?;
            let rest = || {
                std::thread::sleep(p.phase);
                Ok(())
            };
            idle.add(with_page, measure(&node, rest)?);
            // What the node holds for an open page: its growth from before
            // the page opened to the end of an idle phase, against the
            // same span without a page.
            idle.grew(with_page, rss_kib(&node).saturating_sub(before));
            let batch = batches.next().context("too few transactions")?;
            loaded.add(with_page, measure(&node, || post_paced(&base, batch, &p))?);
            if let Some(page) = page {
                page.close()?;
            }
        }
    }
    node.stop(PATIENCE)?;

    let note = format!(
        "node CPU (every thread, /proc/PID/stat, 10 ms ticks) per second, {} phases of {:.0} s each way, alternating, after a warm-up phase under load; the node's RSS grew by {} KiB from opening the page to the end of an idle phase, {} KiB over the same span without (largest of the rounds); the page in headless Chromium (its own CPU not counted), one snapshot a second over one event stream",
        p.rounds,
        p.phase.as_secs_f64(),
        idle.with.grew_kib,
        idle.without.grew_kib,
    );
    Ok(vec![
        loaded.row(
            "9a",
            format!(
                "Node CPU with the dashboard page open vs without, mode=commit at {} tx/s",
                p.rate
            ),
            vec![
                note.clone(),
                format!(
                    "{} transactions per phase from {} senders; the websocket plugin with one valid_transactions client",
                    per_phase, p.senders
                ),
            ],
        ),
        idle.row(
            "9b",
            "Node CPU with the dashboard page open vs without, idle".into(),
            vec![note],
        ),
    ])
}

/// The page open in a browser, connected to the node's event stream.
struct Page(Browser);

impl Page {
    fn close(self) -> anyhow::Result<()> {
        let Page(mut browser) = self;
        let errors = browser.errors();
        if !errors.is_empty() {
            bail!("the page reported errors: {errors:?}");
        }
        Ok(())
    }
}

fn open_page(chromium: &Path, admin: &str) -> anyhow::Result<Page> {
    let mut browser = Browser::launch(chromium, 1280, 900);
    browser.navigate(&format!("{admin}/"));
    browser.wait_for(
        "the page's live stream",
        "document.getElementById('connection').textContent === 'live'",
        PATIENCE,
    );
    Ok(Page(browser))
}

/// What one phase cost the node.
#[derive(Default, Clone, Copy)]
struct Cost {
    cpu: Duration,
    wall: Duration,
    rss_kib: u64,
    /// The largest growth of RSS over a phase, where measured.
    grew_kib: u64,
}

#[derive(Default)]
struct Costs {
    with: Cost,
    without: Cost,
}

impl Costs {
    fn side(&mut self, with_page: bool) -> &mut Cost {
        if with_page {
            &mut self.with
        } else {
            &mut self.without
        }
    }

    fn add(&mut self, with_page: bool, cost: Cost) {
        let sum = self.side(with_page);
        sum.cpu += cost.cpu;
        sum.wall += cost.wall;
        sum.rss_kib = sum.rss_kib.max(cost.rss_kib);
    }

    fn grew(&mut self, with_page: bool, kib: u64) {
        let sum = self.side(with_page);
        sum.grew_kib = sum.grew_kib.max(kib);
    }

    fn row(&self, id: &'static str, what: String, notes: Vec<String>) -> Row {
        let per_second = |c: &Cost| Figure::Cost {
            amount: c.cpu.as_secs_f64() * 1e3 / c.wall.as_secs_f64().max(1e-9),
            unit: "CPU ms",
            per: "s",
        };
        Row {
            id,
            what,
            ours: per_second(&self.with),
            baseline: Some(per_second(&self.without)),
            target: None,
            peak_rss_kib: Some(self.with.rss_kib),
            rss_of: "node",
            notes,
        }
    }
}

/// The node's CPU and memory over `work`.
fn measure(node: &Node, work: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<Cost> {
    let cpu = || crate::sys::process_cpu_time(node.pid()).context("no /proc for the node");
    let (cpu0, t0) = (cpu()?, Instant::now());
    work()?;
    let (cpu1, wall) = (cpu()?, t0.elapsed());
    Ok(Cost {
        cpu: cpu1.saturating_sub(cpu0),
        wall,
        rss_kib: rss_kib(node),
        grew_kib: 0,
    })
}

fn rss_kib(node: &Node) -> u64 {
    crate::sys::rss_kib(node.pid()).unwrap_or(0)
}

/// Posts `txs` with `mode=commit` at `p.rate` per second: each is due at a
/// fixed time, whatever happened to the ones before.
fn post_paced(base: &str, txs: &[Tx], p: &Params) -> anyhow::Result<()> {
    let url = format!("{base}/api/v1/transactions?mode=commit");
    let interval = Duration::from_secs(1) / p.rate;
    let start = Instant::now();
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let senders: Vec<_> = (0..p.senders)
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<()> {
                    let agent: ureq::Agent = ureq::Agent::config_builder()
                        .http_status_as_error(false)
                        .timeout_global(Some(PATIENCE))
                        .build()
                        .into();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(tx) = txs.get(i) else {
                            return Ok(());
                        };
                        let due = start + interval * i as u32;
                        std::thread::sleep(due.saturating_duration_since(Instant::now()));
                        let mut response = agent
                            .post(&url)
                            .header("content-type", "application/json")
                            .send(tx.text.as_str())?;
                        let body = response.body_mut().read_to_string()?;
                        if response.status() != 202 {
                            bail!("POST {url} answered {}: {body}", response.status());
                        }
                    }
                })
            })
            .collect();
        senders
            .into_iter()
            .try_for_each(|s| s.join().unwrap_or_else(|_| bail!("a sender panicked")))
    })
}
