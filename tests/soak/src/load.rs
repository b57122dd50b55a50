//! The transaction load: posters that send signed CREATEs in `async`,
//! `sync` and `commit` mode, and now and then a double spend (two TRANSFERs
//! of one output), at a bounded rate, and record what became of each.
//!
//! A request the node did not answer (it was killed under it, or is
//! starting) or answered 503 is sent again until it gets an answer: a
//! transaction the node had stored before it died is then refused as a
//! duplicate, which says it is known; one it had not stored is accepted.
//! Either way it must end up committed exactly once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use eventhost::sources::ledger::builder::{self, Keypair};
use eventhost::sources::ledger::transaction::OutputRef;
use serde_json::{Value, json};

use crate::findings::Findings;
use crate::http::Api;

/// A transaction's mode, as the query parameter says it.
pub const MODES: [&str; 3] = ["async", "sync", "commit"];

/// What became of a transaction the poster sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 202.
    Accepted,
    /// Refused as a duplicate when sent again after a request that got no
    /// answer (or 503): the node had stored it.
    Known,
    /// Refused (400) by this rule.
    Refused(String),
    /// Never answered before the run gave up sending it.
    Unanswered,
}

impl Outcome {
    /// Whether the node acknowledged it, so that it must be committed (or,
    /// for a spend that lost a double spend, rejected in a BLOCK_INVALID
    /// event).
    pub fn acknowledged(&self) -> bool {
        matches!(self, Outcome::Accepted | Outcome::Known)
    }
}

/// What a transaction was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Create,
    /// One of the two TRANSFERs of double spend number `round`.
    Spend {
        round: u64,
    },
}

#[derive(Debug, Clone)]
pub struct Sent {
    pub id: String,
    pub kind: Kind,
    pub mode: usize,
    pub outcome: Outcome,
}

/// Counters the progress line shows while posters run.
#[derive(Default)]
pub struct Counters {
    pub sent: AtomicU64,
    pub acknowledged: AtomicU64,
    pub refused: AtomicU64,
    /// Requests sent again after no answer or a 503.
    pub resent: AtomicU64,
    pub double_spends: AtomicU64,
}

/// What every poster shares: when to stop, and how many transactions may
/// still be made.
pub struct Control {
    /// No new transactions from now on.
    pub stop: AtomicBool,
    /// Stop resending what got no answer.
    pub give_up: AtomicBool,
    /// Transactions that may still be made: the run's bound on count.
    pub budget: AtomicU64,
    pub counters: Counters,
}

/// One poster's settings.
pub struct Poster {
    pub index: usize,
    pub api: Api,
    /// Seconds between two transactions of this poster.
    pub interval: Duration,
    /// Share of double spends among the transactions made.
    pub double_spend_share: f64,
    pub seed: u64,
}

/// Sends transactions until told to stop; returns what became of each.
pub fn post(poster: Poster, control: &Control, findings: &Findings) -> Vec<Sent> {
    let mut rng = fastrand::Rng::with_seed(poster.seed);
    let owner = Keypair::from_seed(seed_bytes(poster.seed, 0));
    let recipients = [
        Keypair::from_seed(seed_bytes(poster.seed, 1)),
        Keypair::from_seed(seed_bytes(poster.seed, 2)),
    ];
    let mut sent = Vec::new();
    let mut serial = 0u64;
    let mut next = Instant::now();
    while !control.stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else if now - next > Duration::from_secs(1) {
            // Behind after the node was down: no burst to catch up.
            next = now;
        }
        next += poster.interval;
        if !take(&control.budget, 1) {
            break;
        }
        serial += 1;
        let data = json!({"soak": poster.seed, "poster": poster.index, "serial": serial});
        if rng.f64() >= poster.double_spend_share {
            let tx = builder::create(&owner, &[(owner.public_key(), 1)], data, Value::Null);
            let mode = rng.usize(..MODES.len());
            let outcome = send(&poster.api, &tx, mode, control);
            if let Outcome::Refused(why) = &outcome {
                findings.violation(format!(
                    "a valid CREATE was refused ({}): {why}",
                    MODES[mode]
                ));
            }
            sent.push(Sent {
                id: id(&tx),
                kind: Kind::Create,
                mode,
                outcome,
            });
            continue;
        }
        // A double spend: an output committed first (commit mode), then
        // two TRANSFERs of it, each in a mode of its own.
        let funding = builder::create(&owner, &[(owner.public_key(), 1)], data, Value::Null);
        let outcome = send(&poster.api, &funding, 2, control);
        let funded = outcome.acknowledged();
        if let Outcome::Refused(why) = &outcome {
            findings.violation(format!("a valid CREATE was refused (commit): {why}"));
        }
        sent.push(Sent {
            id: id(&funding),
            kind: Kind::Create,
            mode: 2,
            outcome,
        });
        if !funded {
            continue;
        }
        let round = control
            .counters
            .double_spends
            .fetch_add(1, Ordering::Relaxed);
        let spent = OutputRef {
            transaction_id: id(&funding),
            output_index: 0,
        };
        for (n, to) in recipients.iter().enumerate() {
            let tx = builder::transfer(
                &[(spent.clone(), &owner)],
                &id(&funding),
                &[(to.public_key(), 1)],
                json!({"double_spend": round, "copy": n}),
            );
            let mode = rng.usize(..MODES.len());
            let outcome = send(&poster.api, &tx, mode, control);
            match &outcome {
                Outcome::Refused(rule) if rule.contains("DoubleSpend") => {}
                Outcome::Refused(why) => findings.violation(format!(
                    "a TRANSFER was refused for another reason than a double spend ({}): {why}",
                    MODES[mode]
                )),
                _ => {}
            }
            sent.push(Sent {
                id: id(&tx),
                kind: Kind::Spend { round },
                mode,
                outcome,
            });
        }
    }
    sent
}

/// Sends `tx` until the node answers something other than 503.
fn send(api: &Api, tx: &Value, mode: usize, control: &Control) -> Outcome {
    let counters = &control.counters;
    counters.sent.fetch_add(1, Ordering::Relaxed);
    let body = tx.to_string();
    let path = format!("/api/v1/transactions?mode={}", MODES[mode]);
    let mut backoff = Duration::from_millis(50);
    // Whether an earlier attempt may have been stored: it got no answer,
    // or 503 (which, when the store fails, can mean "queued durably").
    let mut maybe_stored = false;
    loop {
        match api.post_json(&path, &body) {
            Ok((202, _)) => {
                counters.acknowledged.fetch_add(1, Ordering::Relaxed);
                return Outcome::Accepted;
            }
            Ok((400, reply)) => {
                let message = serde_json::from_str::<Value>(&reply)
                    .ok()
                    .and_then(|v| v["message"].as_str().map(str::to_owned))
                    .unwrap_or(reply);
                if maybe_stored && message.contains("(DuplicateTransaction)") {
                    counters.acknowledged.fetch_add(1, Ordering::Relaxed);
                    return Outcome::Known;
                }
                counters.refused.fetch_add(1, Ordering::Relaxed);
                return Outcome::Refused(message);
            }
            // 503: stopping, starting, or the ledger cannot write now.
            Ok((503, _)) => maybe_stored = true,
            Ok((status, reply)) => {
                counters.refused.fetch_add(1, Ordering::Relaxed);
                return Outcome::Refused(format!("unexpected status {status}: {reply}"));
            }
            Err(_) => maybe_stored = true,
        }
        if control.give_up.load(Ordering::Relaxed) {
            return Outcome::Unanswered;
        }
        counters.resent.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// Takes `n` from `budget` if it holds that many.
fn take(budget: &AtomicU64, n: u64) -> bool {
    budget
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
            left.checked_sub(n)
        })
        .is_ok()
}

fn seed_bytes(seed: u64, key: u8) -> [u8; 32] {
    let mut bytes = [key; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes
}

fn id(tx: &Value) -> String {
    tx["id"].as_str().unwrap_or_default().to_owned()
}

/// The run's posters, their counters and their stop switch.
pub struct Load {
    pub control: Arc<Control>,
    handles: Vec<std::thread::JoinHandle<Vec<Sent>>>,
}

impl Load {
    /// Starts `posters` threads sending `rate` transactions per second in
    /// all, `budget` at most.
    pub fn start(
        api_port: u16,
        posters: usize,
        rate: f64,
        budget: u64,
        double_spend_share: f64,
        seed: u64,
        findings: &Arc<Findings>,
    ) -> Load {
        let control = Arc::new(Control {
            stop: AtomicBool::new(false),
            give_up: AtomicBool::new(false),
            budget: AtomicU64::new(budget),
            counters: Counters::default(),
        });
        let interval = Duration::from_secs_f64(posters as f64 / rate);
        let handles = (0..posters)
            .map(|index| {
                let poster = Poster {
                    index,
                    // Commit mode waits for the block; a killed node never answers.
                    api: Api::new(api_port, Duration::from_secs(30)),
                    interval,
                    double_spend_share,
                    seed: seed.wrapping_add(index as u64 * 0x9e37_79b9),
                };
                let (control, findings) = (control.clone(), findings.clone());
                std::thread::spawn(move || post(poster, &control, &findings))
            })
            .collect();
        Load { control, handles }
    }

    /// No new transactions from now on; the posters go on resending what
    /// got no answer until [`Load::join`].
    pub fn stop(&self) {
        self.control.stop.store(true, Ordering::Relaxed);
    }

    /// Whether every poster is done.
    pub fn finished(&self) -> bool {
        self.handles.iter().all(|h| h.is_finished())
    }

    /// Stops resending and returns what became of every transaction.
    pub fn join(self, findings: &Findings) -> Vec<Sent> {
        self.stop();
        self.control.give_up.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for handle in self.handles {
            match handle.join() {
                Ok(sent) => all.extend(sent),
                Err(_) => findings.violation("a poster thread of the driver panicked"),
            }
        }
        all
    }
}
