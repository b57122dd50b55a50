//! The end of the run: the committed chain, read through the API while the
//! node runs and through `eventhost events` and `eventhost verify` once it
//! stopped, against what the posters were told and what the stream
//! clients received.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::findings::Findings;
use crate::http::Api;
use crate::load::{Kind, Outcome, Sent};
use crate::node::Node;
use crate::streams::{self, Stream};

/// The committed chain as the API serves it.
pub struct Chain {
    /// Per height from 1: its transactions' ids, in order.
    pub blocks: Vec<Vec<String>>,
    /// Each committed transaction's height.
    pub heights: HashMap<String, u64>,
}

impl Chain {
    pub fn transactions(&self) -> u64 {
        self.heights.len() as u64
    }
}

/// Threads that read the API at the end of the run.
const READERS: usize = 4;

/// Waits until `GET /api/v1/transactions/{id}` finds every acknowledged
/// CREATE (a node that was killed commits what it had queued after it
/// restarts); reports those still missing after `patience`.
pub fn wait_committed(api: &Api, sent: &[Sent], patience: Duration, findings: &Findings) {
    let ids: Vec<&str> = sent
        .iter()
        .filter(|s| s.kind == Kind::Create && s.outcome.acknowledged())
        .map(|s| s.id.as_str())
        .collect();
    let deadline = Instant::now() + patience;
    let missing = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for chunk in ids.chunks(ids.len().div_ceil(READERS).max(1)) {
            let missing = &missing;
            scope.spawn(move || {
                for id in chunk {
                    loop {
                        match api.get(&format!("/api/v1/transactions/{id}")) {
                            Ok((200, body)) => {
                                let found = serde_json::from_str::<Value>(&body)
                                    .ok()
                                    .and_then(|v| v["id"].as_str().map(str::to_owned));
                                if found.as_deref() != Some(*id) {
                                    findings.violation(format!(
                                        "GET /api/v1/transactions/{id} answered another transaction: {body:.200}"
                                    ));
                                }
                                break;
                            }
                            _ if Instant::now() > deadline => {
                                lock(missing).push(id.to_string());
                                break;
                            }
                            _ => std::thread::sleep(Duration::from_millis(100)),
                        }
                    }
                }
            });
        }
    });
    let missing = missing.into_inner().unwrap_or_else(|e| e.into_inner());
    if !missing.is_empty() {
        findings.violation(format!(
            "{} acknowledged transaction(s) are not committed {} s after the load stopped, e.g. {:?}",
            missing.len(),
            patience.as_secs(),
            &missing[..missing.len().min(5)]
        ));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Reads every block through `GET /api/v1/blocks/{height}`; a transaction
/// in two places is a violation.
pub fn walk(api: &Api, findings: &Findings) -> anyhow::Result<Chain> {
    let exists = |height: u64| -> anyhow::Result<bool> {
        match api.get(&format!("/api/v1/blocks/{height}"))? {
            (200, _) => Ok(true),
            (404, _) => Ok(false),
            (status, body) => anyhow::bail!("GET /api/v1/blocks/{height}: {status} {body:.200}"),
        }
    };
    // The tip: double until past it, then halve the gap.
    let (mut low, mut high) = (0u64, 1u64);
    while exists(high)? {
        low = high;
        high *= 2;
    }
    while high - low > 1 {
        let mid = low + (high - low) / 2;
        if exists(mid)? {
            low = mid;
        } else {
            high = mid;
        }
    }
    let tip = low;
    let blocks: Mutex<BTreeMap<u64, Vec<String>>> = Mutex::new(BTreeMap::new());
    let failed = Mutex::new(None);
    std::thread::scope(|scope| {
        for reader in 0..READERS as u64 {
            let (blocks, failed) = (&blocks, &failed);
            scope.spawn(move || {
                for height in (1 + reader..=tip).step_by(READERS) {
                    match read_block(api, height) {
                        Ok(ids) => {
                            lock(blocks).insert(height, ids);
                        }
                        Err(e) => {
                            *lock(failed) = Some(e);
                            return;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = failed.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e);
    }
    let blocks: Vec<Vec<String>> = blocks
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_values()
        .collect();
    let mut heights = HashMap::new();
    for (i, ids) in blocks.iter().enumerate() {
        let height = i as u64 + 1;
        if ids.is_empty() {
            findings.violation(format!("block {height} holds no transaction"));
        }
        for id in ids {
            if let Some(first) = heights.insert(id.clone(), height) {
                findings.violation(format!(
                    "transaction {id} is committed twice: in blocks {first} and {height}"
                ));
            }
        }
    }
    Ok(Chain { blocks, heights })
}

fn read_block(api: &Api, height: u64) -> anyhow::Result<Vec<String>> {
    let (status, body) = api.get(&format!("/api/v1/blocks/{height}"))?;
    anyhow::ensure!(
        status == 200,
        "GET /api/v1/blocks/{height}: {status} {body:.200}"
    );
    let block: Value = serde_json::from_str(&body)?;
    let ids = block["transactions"]
        .as_array()
        .map(|txs| {
            txs.iter()
                .filter_map(|t| t["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Ok(ids)
}

/// What became of the posted transactions, for the summary.
#[derive(Default, Debug)]
pub struct Outcomes {
    pub sent: u64,
    pub by_mode: [u64; 3],
    pub acknowledged: u64,
    pub known_after_resend: u64,
    pub refused: u64,
    pub unanswered: u64,
    pub double_spends: u64,
    /// Double spends both of whose TRANSFERs were acknowledged: the ledger
    /// settled them when it built the block (BLOCK_INVALID for the loser).
    pub settled_in_block: u64,
}

/// Every acknowledged transaction is committed once (a TRANSFER that lost
/// its double spend: rejected in a BLOCK_INVALID event instead); no
/// refused one is committed; no double spend is committed twice.
pub fn check_transactions(
    sent: &[Sent],
    chain: &Chain,
    rejected_in_blocks: &HashSet<String>,
    findings: &Findings,
) -> Outcomes {
    let mut o = Outcomes::default();
    let mut rounds: BTreeMap<u64, Vec<&Sent>> = BTreeMap::new();
    for s in sent {
        o.sent += 1;
        o.by_mode[s.mode] += 1;
        match &s.outcome {
            Outcome::Accepted => o.acknowledged += 1,
            Outcome::Known => {
                o.acknowledged += 1;
                o.known_after_resend += 1;
            }
            Outcome::Refused(_) => o.refused += 1,
            Outcome::Unanswered => o.unanswered += 1,
        }
        let committed = chain.heights.contains_key(&s.id);
        match (&s.kind, &s.outcome) {
            (Kind::Create, outcome) if outcome.acknowledged() && !committed => findings.violation(
                format!("acknowledged transaction {} is not committed", s.id),
            ),
            (_, Outcome::Refused(why)) if committed => findings.violation(format!(
                "transaction {} was refused ({why}) but is committed",
                s.id
            )),
            _ => {}
        }
        if let Kind::Spend { round } = s.kind {
            rounds.entry(round).or_default().push(s);
        }
    }
    for (round, spends) in &rounds {
        o.double_spends += 1;
        let committed = spends
            .iter()
            .filter(|s| chain.heights.contains_key(&s.id))
            .count();
        let acknowledged = spends.iter().filter(|s| s.outcome.acknowledged()).count();
        if acknowledged == 2 {
            o.settled_in_block += 1;
        }
        if committed > 1 {
            findings.violation(format!(
                "double spend {round}: both TRANSFERs of one output are committed"
            ));
        }
        if acknowledged > 0 && committed == 0 {
            findings.violation(format!(
                "double spend {round}: a TRANSFER was acknowledged, yet neither is committed"
            ));
        }
        for s in spends {
            if s.outcome.acknowledged()
                && !chain.heights.contains_key(&s.id)
                && !rejected_in_blocks.contains(&s.id)
            {
                findings.violation(format!(
                    "double spend {round}: TRANSFER {} was acknowledged, is not committed, and no BLOCK_INVALID event rejects it",
                    s.id
                ));
            }
        }
    }
    o
}

/// The event log as `eventhost events` prints it.
#[derive(Default)]
pub struct EventLog {
    /// Its last sequence number (events are 1 to `head`).
    pub head: u64,
    pub invalid_events: u64,
    /// Per height from 1: the BLOCK_VALID event's block hash.
    pub hashes: Vec<String>,
    /// Transactions BLOCK_INVALID events rejected.
    pub rejected: HashSet<String>,
}

/// Reads the stopped node's event log with `eventhost events`: sequence
/// numbers from 1 with no gap, one BLOCK_VALID per height in order, each
/// with the transactions the API shows for that block.
pub fn read_event_log(node: &Node, chain: &Chain, findings: &Findings) -> anyhow::Result<EventLog> {
    let mut child = node
        .command(&["events"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().expect("piped stdout");
    let mut log = EventLog::default();
    let mut faults = 0;
    let mut fault = |what: String| {
        faults += 1;
        if faults <= 5 {
            findings.violation(format!("event log: {what}"));
        }
    };
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        let event: Value = serde_json::from_str(&line)?;
        let seq = event["seq"].as_u64().unwrap_or(0);
        if seq != log.head + 1 {
            fault(format!("event {seq} follows event {}", log.head));
        }
        log.head = seq;
        let height = event["height"].as_u64().unwrap_or(0);
        let ids: Vec<&str> = event["transactions"]
            .as_array()
            .map(|t| t.iter().filter_map(|t| t["id"].as_str()).collect())
            .unwrap_or_default();
        match event["type"].as_str() {
            Some("BLOCK_VALID") => {
                let expected = log.hashes.len() as u64 + 1;
                if height != expected {
                    fault(format!(
                        "event {seq}: BLOCK_VALID for height {height}, expected {expected}"
                    ));
                }
                let api_ids = chain.blocks.get(height as usize - 1);
                if api_ids.is_none_or(|api| !api.iter().map(String::as_str).eq(ids.iter().copied()))
                {
                    fault(format!(
                        "event {seq}: block {height}'s transactions differ from the API's block"
                    ));
                }
                log.hashes
                    .push(event["hash"].as_str().unwrap_or_default().to_owned());
            }
            Some("BLOCK_INVALID") => {
                log.invalid_events += 1;
                for r in event["rejections"].as_array().into_iter().flatten() {
                    if let Some(id) = r["transaction_id"].as_str() {
                        log.rejected.insert(id.to_owned());
                    }
                }
            }
            other => fault(format!("event {seq} has type {other:?}")),
        }
    }
    let output = child.wait_with_output()?;
    if !output.status.success() {
        findings.violation(format!(
            "`eventhost events` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    if log.hashes.len() != chain.blocks.len() {
        fault(format!(
            "{} BLOCK_VALID events, but the API shows {} blocks",
            log.hashes.len(),
            chain.blocks.len()
        ));
    }
    if faults > 5 {
        findings.violation(format!("event log: {} more fault(s)", faults - 5));
    }
    Ok(log)
}

/// Runs `eventhost verify` on the stopped node's store; returns its
/// summary line.
pub fn verify(node: &Node, findings: &Findings) -> anyhow::Result<String> {
    let output = node.command(&["verify"]).output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = stdout.lines().last().unwrap_or_default().to_owned();
    if !output.status.success() {
        findings.violation(format!(
            "`eventhost verify` failed ({}):\n{stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(summary)
}

/// Each stream client's every life against the chain: the blocks it
/// received are the chain's first blocks, each as committed, and its last
/// life reached the tip.
pub fn check_streams(
    clients: &[streams::Finished],
    chain: &Chain,
    log: &EventLog,
    findings: &Findings,
) {
    let expected = |stream: Stream, height: usize| -> Option<(u64, u64)> {
        let ids = chain.blocks.get(height)?;
        let hash = match stream {
            Stream::Blocks => Some(log.hashes.get(height)?.as_str()),
            Stream::Transactions => None,
        };
        Some((
            streams::digest(hash, ids.iter().map(String::as_str)),
            ids.len() as u64,
        ))
    };
    for client in clients {
        let name = &client.name;
        for (n, life) in client.lives.iter().enumerate() {
            for fault in life.faults.iter().take(5) {
                findings.violation(format!("{name}: {fault}"));
            }
            let wrong: Vec<usize> = life
                .blocks
                .iter()
                .enumerate()
                .filter(|(h, got)| got.is_some() && **got != expected(client.stream, *h))
                .map(|(h, _)| h + 1)
                .collect();
            if !wrong.is_empty() {
                findings.violation(format!(
                    "{name}: {} block(s) received differ from the committed ones (or are not committed), e.g. {:?}",
                    wrong.len(),
                    &wrong[..wrong.len().min(5)]
                ));
            }
            let last = n + 1 == client.lives.len();
            if last && life.complete() != chain.blocks.len() as u64 {
                findings.violation(format!(
                    "{name}: received {} of the {} blocks by the end",
                    life.complete(),
                    chain.blocks.len()
                ));
            }
        }
    }
}
