//! The ledger: admits transactions, commits them in blocks, and turns each
//! block into BLOCK_VALID / BLOCK_INVALID events.
//!
//! One thread owns the chain. It admits submissions (checking state for
//! `sync` and `commit`), cuts a block when `max_block_size` transactions are
//! pending or `block_interval` has passed since the last block (0: as soon
//! as the previous block is written, so blocks grow with load), checks the
//! block's transactions in arrival order against the state including the
//! block's earlier transactions, and writes the block, its events and the
//! mempool changes in one durable transaction. Only then are the events
//! published, and then the clients answered.
//!
//! A transaction accepted in `async` mode that turns out invalid when its
//! block is built (say, a second spend of one output) is left out of the
//! block and published in a BLOCK_INVALID event, with the height attempted
//! and the reason; the valid remainder is committed as BLOCK_VALID.

pub mod block;
pub mod builder;
pub mod canonical;
pub mod conditions;
pub mod state;
pub mod transaction;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use abi_stable::std_types::{RString, RVec};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use eventhost_plugin_api::{BLOCK_INVALID, BLOCK_VALID, Event, Rejection};
use tokio::sync::oneshot;

use crate::exchange::Exchange;
use crate::metrics::Metrics;
use crate::store::chain::BlockRecord;
use crate::store::{Store, StoreError};
use state::{BlockView, StateError};
use transaction::{Rejected, Rule, Transaction};

/// When a submission is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Once its schema, id and signatures are checked and it is durably queued.
    Async,
    /// Also once it is valid against the ledger, including queued transactions.
    Sync,
    /// Once the block holding it is committed.
    Commit,
}

/// What became of a submission.
#[derive(Debug)]
pub enum Outcome {
    /// Durably queued (`async`, `sync`).
    Accepted,
    /// In the committed block of this height (`commit`).
    Committed { height: u64 },
    /// Broke a rule.
    Rejected(Rejected),
    /// The ledger cannot take it now (storage failure, shutting down).
    Unavailable(String),
}

#[derive(Debug, Clone)]
pub struct LedgerConfig {
    pub max_block_size: usize,
    pub block_interval: Duration,
}

struct Submission {
    tx: Arc<Transaction>,
    mode: Mode,
    reply: oneshot::Sender<Outcome>,
}

/// A transaction admitted and not yet in a block.
struct Pending {
    /// Arrival number, its key in the durable mempool.
    no: u64,
    tx: Arc<Transaction>,
    /// Whether it is in the store's mempool table yet.
    stored: bool,
}

/// The ledger's handle: submit transactions, stop it.
pub struct Ledger {
    submit: Option<Sender<Submission>>,
    thread: Option<JoinHandle<()>>,
}

impl Ledger {
    /// Starts the ledger thread on the chain in `store`, re-admitting the
    /// transactions a previous run accepted but did not commit.
    pub fn start(
        store: Arc<Store>,
        exchange: Arc<Exchange>,
        metrics: Arc<Metrics>,
        config: LedgerConfig,
    ) -> Result<Ledger, StoreError> {
        let tip = store.last_block()?;
        let mut pending = VecDeque::new();
        for (no, json) in store.pending()? {
            let parsed = serde_json::from_str(&json)
                .map_err(|e| e.to_string())
                .and_then(|v| Transaction::parse(v).map_err(|e| e.to_string()));
            match parsed {
                Ok(tx) => pending.push_back(Pending {
                    no,
                    tx: Arc::new(tx),
                    stored: true,
                }),
                Err(e) => tracing::error!("dropping unreadable queued transaction {no}: {e}"),
            }
        }
        if !pending.is_empty() {
            tracing::info!("{} accepted transactions wait for a block", pending.len());
        }
        let (submit, submissions) = crossbeam_channel::unbounded();
        let mut chain = Chain {
            next_no: pending.back().map_or(1, |p| p.no + 1),
            pending_ids: pending.iter().map(|p| p.tx.id.clone()).collect(),
            pending,
            tip,
            waiters: HashMap::new(),
            last_block_at: Instant::now(),
            store,
            exchange,
            metrics,
            config,
        };
        let thread = std::thread::Builder::new()
            .name("ledger".into())
            .spawn(move || chain.run(submissions))
            .map_err(|e| StoreError::Db {
                path: "ledger thread".into(),
                source: redb::Error::Io(e),
            })?;
        Ok(Ledger {
            submit: Some(submit),
            thread: Some(thread),
        })
    }

    /// Hands a checked transaction to the ledger; the answer comes when `mode` says.
    pub fn submit(&self, tx: Transaction, mode: Mode) -> oneshot::Receiver<Outcome> {
        let (reply, answer) = oneshot::channel();
        let submission = Submission {
            tx: Arc::new(tx),
            mode,
            reply,
        };
        if let Some(Err(e)) = self.submit.as_ref().map(|s| s.send(submission)) {
            let _ = e
                .into_inner()
                .reply
                .send(Outcome::Unavailable("the ledger is shutting down".into()));
        }
        answer
    }

    /// Commits what is queued and stops.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        drop(self.submit.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The ledger thread's state.
struct Chain {
    store: Arc<Store>,
    exchange: Arc<Exchange>,
    metrics: Arc<Metrics>,
    config: LedgerConfig,
    tip: Option<BlockRecord>,
    pending: VecDeque<Pending>,
    pending_ids: HashSet<String>,
    next_no: u64,
    /// `commit`-mode submitters, by transaction id.
    waiters: HashMap<String, Vec<oneshot::Sender<Outcome>>>,
    last_block_at: Instant,
}

impl Chain {
    fn run(&mut self, submissions: Receiver<Submission>) {
        loop {
            let mut batch = Vec::new();
            let open = self.wait(&submissions, &mut batch);
            let accepted = self.admit(batch);
            let block_due = !self.pending.is_empty()
                && (!open
                    || self.pending.len() >= self.config.max_block_size
                    || self.last_block_at.elapsed() >= self.config.block_interval);
            let durable = if block_due {
                self.cut_block()
            } else {
                self.store_pending()
            };
            for reply in accepted {
                let _ = reply.send(match &durable {
                    Ok(()) => Outcome::Accepted,
                    Err(e) => Outcome::Unavailable(e.clone()),
                });
            }
            if !open && self.pending.is_empty() {
                return;
            }
        }
    }

    /// Waits for submissions (or until the next block is due) and takes all
    /// that arrived. Returns false once the ledger is being shut down.
    fn wait(&self, submissions: &Receiver<Submission>, batch: &mut Vec<Submission>) -> bool {
        let first = if self.pending.is_empty() {
            submissions
                .recv()
                .map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            let due = self.last_block_at + self.config.block_interval;
            submissions.recv_deadline(due)
        };
        match first {
            Ok(s) => batch.push(s),
            Err(RecvTimeoutError::Timeout) => return true,
            Err(RecvTimeoutError::Disconnected) => return false,
        }
        loop {
            match submissions.try_recv() {
                Ok(s) => batch.push(s),
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }

    /// Queues the submissions that pass admission; answers the others.
    /// Returns the replies owed once the queue is durable.
    fn admit(&mut self, batch: Vec<Submission>) -> Vec<oneshot::Sender<Outcome>> {
        if batch.is_empty() {
            return Vec::new();
        }
        let snapshot = match self.store.snapshot() {
            Ok(snapshot) => snapshot,
            Err(e) => {
                for s in batch {
                    let _ = s.reply.send(Outcome::Unavailable(e.to_string()));
                }
                return Vec::new();
            }
        };
        // The state as if every queued transaction were committed, built
        // only if a submission needs it.
        let mut queued: Option<BlockView<'_, _>> = None;
        let mut owed = Vec::new();
        for Submission { tx, mode, reply } in batch {
            let verdict = if self.pending_ids.contains(&tx.id) {
                Err(StateError::Rejected(Rejected::new(
                    Rule::DuplicateTransaction,
                    format!("transaction `{}` already exists", tx.id),
                )))
            } else if mode == Mode::Async {
                use state::LedgerView;
                match snapshot.contains(&tx.id) {
                    Ok(false) => Ok(()),
                    Ok(true) => Err(StateError::Rejected(Rejected::new(
                        Rule::DuplicateTransaction,
                        format!("transaction `{}` already exists", tx.id),
                    ))),
                    Err(e) => Err(e.into()),
                }
            } else {
                let view = queued.get_or_insert_with(|| {
                    let mut view = BlockView::new(&snapshot);
                    for p in &self.pending {
                        // Queued transactions that fail now fail in their block.
                        let _ = view.admit(&p.tx);
                    }
                    view
                });
                view.admit(&tx)
            };
            match verdict {
                Ok(()) => {
                    if let Some(view) = queued.as_mut().filter(|_| mode == Mode::Async) {
                        let _ = view.admit(&tx);
                    }
                    self.pending_ids.insert(tx.id.clone());
                    self.pending.push_back(Pending {
                        no: self.next_no,
                        tx: tx.clone(),
                        stored: false,
                    });
                    self.next_no += 1;
                    if mode == Mode::Commit {
                        self.waiters.entry(tx.id.clone()).or_default().push(reply);
                    } else {
                        owed.push(reply);
                    }
                }
                Err(StateError::Rejected(r)) => {
                    let _ = reply.send(Outcome::Rejected(r));
                }
                Err(StateError::Store(e)) => {
                    let _ = reply.send(Outcome::Unavailable(e.to_string()));
                }
            }
        }
        owed
    }

    /// Makes the queue durable without cutting a block.
    fn store_pending(&mut self) -> Result<(), String> {
        let jsons: Vec<(u64, String)> = self
            .pending
            .iter()
            .filter(|p| !p.stored)
            .map(|p| (p.no, p.tx.json.to_string()))
            .collect();
        if jsons.is_empty() {
            return Ok(());
        }
        let entries: Vec<(u64, &str)> = jsons.iter().map(|(no, j)| (*no, j.as_str())).collect();
        self.store.add_pending(&entries).map_err(|e| {
            tracing::error!("cannot queue transactions durably: {e}");
            e.to_string()
        })?;
        for p in self.pending.iter_mut() {
            p.stored = true;
        }
        Ok(())
    }

    /// Builds, writes and publishes the next block from the queue.
    fn cut_block(&mut self) -> Result<(), String> {
        let started = Instant::now();
        let take = self.pending.len().min(self.config.max_block_size);
        let proposal: Vec<Pending> = self.pending.drain(..take).collect();
        // What did not fit must be durable too before anyone is answered.
        let rest = self.store_pending();

        let snapshot = self.store.snapshot().map_err(|e| e.to_string());
        let mut valid: Vec<&Transaction> = Vec::with_capacity(proposal.len());
        let mut rejected: Vec<(&Transaction, Rejected)> = Vec::new();
        let checked = snapshot.and_then(|snapshot| {
            let mut view = BlockView::new(&snapshot);
            for p in &proposal {
                match view.admit(&p.tx) {
                    Ok(()) => valid.push(&p.tx),
                    Err(StateError::Rejected(r)) => rejected.push((&p.tx, r)),
                    Err(StateError::Store(e)) => return Err(e.to_string()),
                }
            }
            Ok(())
        });
        if let Err(e) = checked {
            tracing::error!("cannot build a block: {e}; retrying");
            for p in proposal.into_iter().rev() {
                self.pending.push_front(p);
            }
            return Err(e);
        }

        let height = self.tip.as_ref().map_or(1, |b| b.height + 1);
        let previous_hash = self.tip.as_ref().map_or(String::new(), |b| b.hash.clone());
        let timestamp_ms = now_ms();
        let record = BlockRecord {
            height,
            hash: block::hash(
                height,
                &previous_hash,
                timestamp_ms,
                valid.iter().map(|t| t.id.as_str()),
            ),
            previous_hash: previous_hash.clone(),
            timestamp_ms,
            transaction_ids: valid.iter().map(|t| t.id.clone()).collect(),
        };
        let mut events = Vec::with_capacity(2);
        if !rejected.is_empty() {
            events.push(Event {
                event_type: BLOCK_INVALID,
                seq: 0,
                height,
                block_hash: block::hash(
                    height,
                    &previous_hash,
                    timestamp_ms,
                    proposal.iter().map(|p| p.tx.id.as_str()),
                )
                .into(),
                timestamp_ms,
                transactions: rejected
                    .iter()
                    .map(|(tx, _)| RString::from(tx.json.to_string()))
                    .collect::<RVec<_>>(),
                rejections: rejected
                    .iter()
                    .map(|(tx, r)| Rejection {
                        transaction_id: tx.id.as_str().into(),
                        reason: r.to_string().into(),
                    })
                    .collect(),
            });
        }
        if !valid.is_empty() {
            events.push(Event {
                event_type: BLOCK_VALID,
                seq: 0,
                height,
                block_hash: record.hash.as_str().into(),
                timestamp_ms,
                transactions: valid
                    .iter()
                    .map(|tx| RString::from(tx.json.to_string()))
                    .collect::<RVec<_>>(),
                rejections: RVec::new(),
            });
        }
        let stored: Vec<u64> = proposal.iter().filter(|p| p.stored).map(|p| p.no).collect();
        if let Err(e) = self
            .store
            .commit_block(&record, &valid, &mut events, &stored)
        {
            tracing::error!("cannot commit block {height}: {e}; retrying");
            for p in proposal.into_iter().rev() {
                self.pending.push_front(p);
            }
            return Err(e.to_string());
        }
        self.last_block_at = Instant::now();
        if !valid.is_empty() {
            self.metrics
                .block_commit_seconds
                .observe(started.elapsed().as_secs_f64());
            tracing::debug!(height, transactions = valid.len(), "block committed");
        }
        // Publish before answering: a client told its transaction is
        // committed can count on the event being on its way to every plugin.
        for event in events {
            self.exchange.publish(event);
        }
        for (tx, reason) in &rejected {
            tracing::info!(
                height,
                "transaction {} rejected at block time: {reason}",
                tx.id
            );
            self.metrics
                .transactions_rejected
                .get_or_create(&vec![
                    ("rule".to_owned(), reason.rule.as_str().to_owned()),
                    ("stage".to_owned(), "block".to_owned()),
                ])
                .inc();
            self.answer(&tx.id, || Outcome::Rejected(reason.clone()));
        }
        for tx in &valid {
            self.answer(&tx.id, || Outcome::Committed { height });
        }
        for p in &proposal {
            self.pending_ids.remove(&p.tx.id);
        }
        if !valid.is_empty() {
            self.tip = Some(record);
        }
        rest
    }

    fn answer(&mut self, id: &str, outcome: impl Fn() -> Outcome) {
        for reply in self.waiters.remove(id).unwrap_or_default() {
            let _ = reply.send(outcome());
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
