//! Row 3e, heavy reads (issue 14, item 7): the latency of `GET /api/v1`,
//! which reads nothing from the store, while 4 clients loop on a text
//! search that every committed transaction matches
//! (`GET /api/v1/metadata?search=benchmark`, the drivers' default
//! `limit`), against its latency with no searches, in the same run, on
//! the real release binary over loopback.
//!
//! Before store reads moved off the HTTP workers, 4 such clients on 50,000
//! transactions pushed `GET /api/v1` from 1–2 ms to a 333 ms median (the
//! issue's figures): each search held a worker for 0.75 s.

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::node::Node;
use crate::report::{Figure, Row};
use crate::txs::Tx;
use crate::{median, quantile};

/// How long the node may take to start, to commit, to stop.
const PATIENCE: Duration = Duration::from_secs(120);

/// Clients looping on the search, as in the issue.
const SEARCHERS: usize = 4;

const SEARCH: &str = "/api/v1/metadata?search=benchmark";

pub fn run(build: &Path, quick: bool) -> anyhow::Result<Vec<Row>> {
    let (transactions, probe_for) = if quick {
        (5_000, Duration::from_secs(2))
    } else {
        (50_000, Duration::from_secs(15))
    };
    eprintln!("[3e heavy reads] signing {transactions} distinct CREATE transactions");
    let txs = crate::txs::creates(transactions, "heavy")?;
    let dir = tempfile::Builder::new()
        .prefix("eventhost-bench-")
        .tempdir()?;
    fs::write(
        dir.path().join("config.toml"),
        format!(
            "[host]\ndata_dir = \"data\"\n{}\n\n[api]\nbind = \"127.0.0.1:0\"\n",
            crate::plugin_dirs_line(build)
        ),
    )?;
    let node = Node::start(build, dir.path(), PATIENCE)?;
    let base = format!("http://{}", node.logged_address("HTTP API on http://")?);
    eprintln!("[3e heavy reads] committing them");
    commit_all(&base, &txs)?;

    eprintln!(
        "[3e heavy reads] GET /api/v1 alone for {:.0} s",
        probe_for.as_secs_f64()
    );
    let idle = probe(&base, probe_for)?;
    eprintln!(
        "[3e heavy reads] GET /api/v1 for {:.0} s while {SEARCHERS} clients loop on GET {SEARCH}",
        probe_for.as_secs_f64()
    );
    let stop = AtomicBool::new(false);
    let (loaded, searches) = std::thread::scope(|scope| {
        let searchers: Vec<_> = (0..SEARCHERS)
            .map(|_| scope.spawn(|| search_until(&base, &stop)))
            .collect();
        // Let every searcher have a search running before probing.
        std::thread::sleep(Duration::from_millis(500));
        let loaded = probe(&base, probe_for);
        stop.store(true, Ordering::Relaxed);
        let searches: anyhow::Result<(Vec<f64>, usize)> =
            searchers
                .into_iter()
                .try_fold((Vec::new(), 0), |(mut all, _), searcher| {
                    let (mine, hits) = searcher
                        .join()
                        .map_err(|_| anyhow::anyhow!("a searcher panicked"))??;
                    all.extend(mine);
                    Ok((all, hits))
                });
        (loaded, searches)
    });
    let (loaded, (mut searches, hits)) = (loaded?, searches?);
    let peak_rss_kib = crate::sys::peak_rss_kib(Some(node.pid()));
    node.stop(PATIENCE)?;
    searches.sort_by(f64::total_cmp);
    let searched_for = probe_for + Duration::from_millis(500);
    Ok(vec![Row {
        id: "3e",
        what: format!(
            "GET /api/v1 while {SEARCHERS} clients loop on a search matching all {transactions} transactions"
        ),
        ours: loaded.figure(),
        baseline: Some(idle.figure()),
        target: None,
        peak_rss_kib,
        rss_of: "node",
        notes: vec![format!(
            "baseline: GET /api/v1 with no searches, same node; {} searches in {:.1} s ({:.1}/s), each p50 {:.0} ms, p99 {:.0} ms, returning {} hits each; GET /api/v1 median {:.2} ms loaded vs {:.2} ms alone; the searchers and the probe share the machine's cores with the node",
            searches.len(),
            searched_for.as_secs_f64(),
            searches.len() as f64 / searched_for.as_secs_f64(),
            quantile(&searches, 0.5),
            quantile(&searches, 0.99),
            hits,
            median(loaded.samples.clone()),
            median(idle.samples.clone()),
        )],
    }])
}

fn client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(PATIENCE))
        .build()
        .into()
}

/// Posts every transaction (8 clients, `mode=async`), then one more in
/// `mode=commit`: blocks are cut in arrival order, so when it is committed
/// every one before it is.
fn commit_all(base: &str, txs: &[Tx]) -> anyhow::Result<()> {
    let (last, rest) = txs.split_last().context("no transactions")?;
    let clients = 8;
    let chunk = rest.len().div_ceil(clients).max(1);
    std::thread::scope(|scope| {
        let posters: Vec<_> = rest
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    let agent = client();
                    for tx in part {
                        post(
                            &agent,
                            &format!("{base}/api/v1/transactions?mode=async"),
                            tx,
                        )?;
                    }
                    anyhow::Ok(())
                })
            })
            .collect();
        for poster in posters {
            poster
                .join()
                .map_err(|_| anyhow::anyhow!("a poster panicked"))??;
        }
        anyhow::Ok(())
    })?;
    post(
        &client(),
        &format!("{base}/api/v1/transactions?mode=commit"),
        last,
    )
}

fn post(agent: &ureq::Agent, url: &str, tx: &Tx) -> anyhow::Result<()> {
    let mut response = agent
        .post(url)
        .header("content-type", "application/json")
        .send(tx.text.as_str())?;
    let body = response.body_mut().read_to_string()?;
    if response.status() != 202 {
        bail!("POST {url} answered {}: {body}", response.status());
    }
    Ok(())
}

/// Latency samples in milliseconds.
struct Samples {
    samples: Vec<f64>,
}

impl Samples {
    fn figure(&self) -> Figure {
        let mut sorted = self.samples.clone();
        sorted.sort_by(f64::total_cmp);
        Figure::latency(&sorted)
    }
}

/// `GET /api/v1` every 10 ms for `length`, on one keep-alive connection.
fn probe(base: &str, length: Duration) -> anyhow::Result<Samples> {
    let agent = client();
    let url = format!("{base}/api/v1");
    let started = Instant::now();
    let mut samples = Vec::new();
    while started.elapsed() < length {
        let sent = Instant::now();
        let mut response = agent.get(&url).call()?;
        response.body_mut().read_to_string()?;
        if response.status() != 200 {
            bail!("GET {url} answered {}", response.status());
        }
        samples.push(sent.elapsed().as_secs_f64() * 1e3);
        std::thread::sleep(Duration::from_millis(10).saturating_sub(sent.elapsed()));
    }
    Ok(Samples { samples })
}

/// Searches until `stop`; each search's latency in milliseconds, and how
/// many hits the first one returned.
fn search_until(base: &str, stop: &AtomicBool) -> anyhow::Result<(Vec<f64>, usize)> {
    let agent = client();
    let url = format!("{base}{SEARCH}");
    let mut latencies = Vec::new();
    let mut hits = 0;
    while !stop.load(Ordering::Relaxed) {
        let sent = Instant::now();
        let mut response = agent.get(&url).call()?;
        let body = response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()?;
        if response.status() != 200 || !body.starts_with('[') {
            bail!("GET {url} answered {}: {body:.200}", response.status());
        }
        latencies.push(sent.elapsed().as_secs_f64() * 1e3);
        if latencies.len() == 1 {
            let parsed: serde_json::Value = serde_json::from_str(&body)?;
            hits = parsed.as_array().map_or(0, Vec::len);
        }
    }
    Ok((latencies, hits))
}
