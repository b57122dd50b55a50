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
#[cfg(any(test, feature = "test-support"))]
pub mod builder;
pub mod canonical;
pub mod chain_store;
pub mod conditions;
pub mod ed25519;
mod outage;
pub mod state;
pub mod transaction;

use std::collections::{HashMap, HashSet, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use abi_stable::std_types::{RString, RVec};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use eventhost_plugin_api::summaries;
use eventhost_plugin_api::tx::TxSummary;
use eventhost_plugin_api::{BLOCK_INVALID, BLOCK_VALID, Event, Rejection};
use tokio::sync::oneshot;

pub use crate::config::LedgerConfig;
use crate::event_log::EventLog;
use crate::metrics::Metrics;
use crate::store::StoreError;
use chain_store::{BlockRecord, ChainStore};
pub use outage::LedgerStatus;
use outage::Outage;
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
    /// The ledger cannot take it now.
    Unavailable(Arc<LedgerError>),
}

/// Why the ledger cannot do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot start the ledger thread: {0}")]
    Spawn(std::io::Error),
    #[error("the ledger is shutting down")]
    ShuttingDown,
    #[error("the ledger stopped")]
    Stopped,
    /// A fault the ledger cannot go on with.
    #[error("{0}")]
    Fatal(String),
    /// A transaction that was not yet durable when the store refused to
    /// write: it is forgotten, so that the client can send it again.
    #[error(
        "the transaction was not accepted: the store refused to write it ({0}); send it again later"
    )]
    NotAccepted(Arc<LedgerError>),
    /// Accepted and durably queued, but its block cannot be written now.
    #[error(
        "the transaction is queued durably, but its block cannot be written now ({0}); it will be committed once the store recovers"
    )]
    Delayed(Arc<LedgerError>),
}

/// How long a stopping ledger keeps retrying a failing store before it
/// leaves what it accepted queued in the store for the next start, unless
/// told otherwise ([`Ledger::shutdown`]).
const STOP_TIMEOUT: Duration = Duration::from_secs(2);

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
    status: Arc<LedgerStatus>,
    /// When a stopping ledger gives up on a failing store.
    stop_by: Arc<Mutex<Option<Instant>>>,
}

impl Ledger {
    /// Starts the ledger thread on `chain`, committing blocks and their
    /// events through `log`, and re-admitting the transactions a previous
    /// run accepted but did not commit.
    pub fn start(
        chain: ChainStore,
        log: EventLog,
        metrics: Arc<Metrics>,
        config: LedgerConfig,
    ) -> Result<Ledger, LedgerError> {
        let tip = chain.last_block()?;
        let mut pending = VecDeque::new();
        for (no, json) in chain.pending()? {
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
        let status = Arc::new(LedgerStatus::default());
        let stop_by = Arc::new(Mutex::new(None));
        let mut committer = Committer {
            next_no: pending.back().map_or(1, |p| p.no + 1),
            pending_ids: pending.iter().map(|p| p.tx.id.clone()).collect(),
            pending,
            tip,
            waiters: HashMap::new(),
            last_block_at: Instant::now(),
            chain,
            log,
            metrics,
            config,
            outage: None,
            status: status.clone(),
            stop_by: stop_by.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("ledger".into())
            .spawn(move || {
                // A panic here is a bug; the node must not go on without
                // its ledger, answering every POST with 503.
                let outcome = catch_unwind(AssertUnwindSafe(|| committer.run(submissions)));
                let fatal = match outcome {
                    Ok(Ok(())) => return,
                    Ok(Err(e)) => e.to_string(),
                    Err(panic) => format!(
                        "the ledger thread panicked: {}",
                        panic
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_default()
                    ),
                };
                tracing::error!("the ledger stopped: {fatal}");
                committer.status.set_fatal(fatal);
            })
            .map_err(LedgerError::Spawn)?;
        Ok(Ledger {
            submit: Some(submit),
            thread: Some(thread),
            status,
            stop_by,
        })
    }

    /// How the ledger is doing.
    pub fn status(&self) -> &Arc<LedgerStatus> {
        &self.status
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
                .send(Outcome::Unavailable(Arc::new(LedgerError::ShuttingDown)));
        }
        answer
    }

    /// Commits what is queued and stops. While the store refuses writes it
    /// keeps trying for at most `timeout`, then stops anyway: what it had
    /// accepted stays queued in the store and is committed at the next start.
    pub fn shutdown(mut self, timeout: Duration) {
        self.stop(timeout);
    }

    fn stop(&mut self, timeout: Duration) {
        *self.stop_by.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now() + timeout);
        drop(self.submit.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        self.stop(STOP_TIMEOUT);
    }
}

/// The ledger thread's state: it alone writes the chain and the event log.
struct Committer {
    chain: ChainStore,
    log: EventLog,
    metrics: Arc<Metrics>,
    config: LedgerConfig,
    tip: Option<BlockRecord>,
    pending: VecDeque<Pending>,
    pending_ids: HashSet<String>,
    next_no: u64,
    /// `commit`-mode submitters, by transaction id.
    waiters: HashMap<String, Vec<oneshot::Sender<Outcome>>>,
    last_block_at: Instant,
    /// While the store refuses writes.
    outage: Option<Outage>,
    status: Arc<LedgerStatus>,
    stop_by: Arc<Mutex<Option<Instant>>>,
}

impl Committer {
    /// Runs until the ledger is stopped and has committed what it accepted
    /// (or gave up on a failing store); an error is a fault it cannot go on
    /// with (a damaged store).
    fn run(&mut self, submissions: Receiver<Submission>) -> Result<(), LedgerError> {
        let mut open = true;
        loop {
            let mut batch = Vec::new();
            if open {
                open = self.wait(&submissions, &mut batch);
            } else {
                std::thread::sleep(self.next_due().saturating_duration_since(Instant::now()));
            }
            if !open && self.outage.is_some() && self.stop_due() {
                self.give_up();
                return Ok(());
            }
            if let Some(outage) = self
                .outage
                .as_ref()
                .filter(|o| Instant::now() < o.retry_at())
            {
                // Refused at once while the store fails: trying to write
                // each one would only fail again, and slowly.
                let cause = Arc::new(LedgerError::NotAccepted(outage.cause().clone()));
                for s in batch {
                    let _ = s.reply.send(Outcome::Unavailable(cause.clone()));
                }
                continue;
            }
            let accepted = self.admit(batch);
            let block_due = !self.pending.is_empty()
                && (!open
                    || self.outage.is_some()
                    || self.pending.len() >= self.config.max_block_size
                    || self.last_block_at.elapsed() >= self.config.block_interval);
            let durable = if block_due {
                self.cut_block()
            } else {
                self.store_pending()
            };
            let durable = match durable {
                Ok(()) => {
                    Outage::recovered(&mut self.outage);
                    self.status.set_failing(None);
                    Ok(())
                }
                Err(LedgerError::Store(e)) if e.is_corruption() => {
                    let e = Arc::new(LedgerError::Store(e));
                    self.fail_all(&e);
                    for reply in accepted {
                        let _ = reply.send(Outcome::Unavailable(e.clone()));
                    }
                    return Err(LedgerError::Fatal(format!(
                        "{e}; run `eventhost verify` to see what is damaged"
                    )));
                }
                Err(e) => {
                    let e = Arc::new(e);
                    self.forget_undurable(&e);
                    Outage::failed(&mut self.outage, e.clone(), self.pending.len());
                    self.status.set_failing(Some(e.to_string()));
                    Err(Arc::new(LedgerError::NotAccepted(e)))
                }
            };
            for reply in accepted {
                let _ = reply.send(match &durable {
                    Ok(()) => Outcome::Accepted,
                    Err(e) => Outcome::Unavailable(e.clone()),
                });
            }
            if !open && self.pending.is_empty() {
                return Ok(());
            }
        }
    }

    /// When the next block is due, or the next retry of a failing store.
    fn next_due(&self) -> Instant {
        match &self.outage {
            Some(outage) => outage.retry_at(),
            None => self.last_block_at + self.config.block_interval,
        }
    }

    fn stop_due(&self) -> bool {
        self.stop_by
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|by| Instant::now() >= by)
    }

    /// The store failed: transactions that were not durable yet are
    /// forgotten (their clients are answered 503 and may send them again);
    /// `commit` clients of durable ones are told their transaction waits.
    fn forget_undurable(&mut self, cause: &Arc<LedgerError>) {
        let mut forgotten = Vec::new();
        self.pending.retain(|p| {
            if !p.stored {
                forgotten.push(p.tx.id.clone());
            }
            p.stored
        });
        let not_accepted = Arc::new(LedgerError::NotAccepted(cause.clone()));
        for id in &forgotten {
            self.pending_ids.remove(id);
            self.answer(id, || Outcome::Unavailable(not_accepted.clone()));
        }
        let delayed = Arc::new(LedgerError::Delayed(cause.clone()));
        for (_, replies) in self.waiters.drain() {
            for reply in replies {
                let _ = reply.send(Outcome::Unavailable(delayed.clone()));
            }
        }
    }

    /// Answers every waiting client with `cause`: the ledger stops.
    fn fail_all(&mut self, cause: &Arc<LedgerError>) {
        for (_, replies) in self.waiters.drain() {
            for reply in replies {
                let _ = reply.send(Outcome::Unavailable(cause.clone()));
            }
        }
    }

    /// A stopping ledger whose store still fails: what is durably queued
    /// stays for the next start.
    fn give_up(&mut self) {
        let cause = self
            .outage
            .as_ref()
            .map_or_else(|| Arc::new(LedgerError::Stopped), |o| o.cause().clone());
        let durable = self.pending.iter().filter(|p| p.stored).count();
        tracing::warn!(
            "stopping while the store fails ({cause}): {durable} accepted transactions stay \
             queued in the store and are committed at the next start"
        );
        self.forget_undurable(&cause);
        self.fail_all(&Arc::new(LedgerError::ShuttingDown));
    }

    /// Waits for submissions (or until the next block or retry is due) and
    /// takes all that arrived. Returns false once the ledger is being shut
    /// down.
    fn wait(&self, submissions: &Receiver<Submission>, batch: &mut Vec<Submission>) -> bool {
        let first = if self.pending.is_empty() && self.outage.is_none() {
            submissions
                .recv()
                .map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            submissions.recv_deadline(self.next_due())
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
        let snapshot = match self.chain.snapshot() {
            Ok(snapshot) => snapshot,
            Err(e) => {
                let e = Arc::new(LedgerError::from(e));
                for s in batch {
                    let _ = s.reply.send(Outcome::Unavailable(e.clone()));
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
                    let _ = reply.send(Outcome::Unavailable(Arc::new(e.into())));
                }
            }
        }
        owed
    }

    /// Makes the queue durable without cutting a block.
    fn store_pending(&mut self) -> Result<(), LedgerError> {
        let entries: Vec<(u64, &str)> = self
            .pending
            .iter()
            .filter(|p| !p.stored)
            .map(|p| (p.no, p.tx.text()))
            .collect();
        if entries.is_empty() {
            return Ok(());
        }
        self.chain.add_pending(&entries)?;
        for p in self.pending.iter_mut() {
            p.stored = true;
        }
        Ok(())
    }

    /// Builds, writes and publishes the next block from the queue.
    fn cut_block(&mut self) -> Result<(), LedgerError> {
        let started = Instant::now();
        let take = self.pending.len().min(self.config.max_block_size);
        let proposal: Vec<Pending> = self.pending.drain(..take).collect();
        // What did not fit must be durable too before anyone is answered.
        let rest = self.store_pending();

        let mut valid: Vec<&Transaction> = Vec::with_capacity(proposal.len());
        let mut rejected: Vec<(&Transaction, Rejected)> = Vec::new();
        let checked = self.chain.snapshot().and_then(|snapshot| {
            let mut view = BlockView::new(&snapshot);
            for p in &proposal {
                match view.admit(&p.tx) {
                    Ok(()) => valid.push(&p.tx),
                    Err(StateError::Rejected(r)) => rejected.push((&p.tx, r)),
                    Err(StateError::Store(e)) => return Err(e),
                }
            }
            Ok(())
        });
        if let Err(e) = checked {
            for p in proposal.into_iter().rev() {
                self.pending.push_front(p);
            }
            return Err(e.into());
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
        let mut summaries = Vec::with_capacity(2);
        if !rejected.is_empty() {
            summaries.push(summaries_of(rejected.iter().map(|(tx, _)| tx.json())));
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
                    .map(|(tx, _)| RString::from(tx.text()))
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
            summaries.push(summaries_of(valid.iter().map(|tx| tx.json())));
            events.push(Event {
                event_type: BLOCK_VALID,
                seq: 0,
                height,
                block_hash: record.hash.as_str().into(),
                timestamp_ms,
                transactions: valid
                    .iter()
                    .map(|tx| RString::from(tx.text()))
                    .collect::<RVec<_>>(),
                rejections: RVec::new(),
            });
        }
        let stored: Vec<u64> = proposal.iter().filter(|p| p.stored).map(|p| p.no).collect();
        // The block and its events become durable together, and the events
        // are published before any client is answered: a client told its
        // transaction is committed can count on the event being on its way
        // to every plugin.
        let committed = self.log.commit_summarized_with(events, summaries, |txn| {
            chain_store::write_block(txn, &record, &valid, &stored)
        });
        if let Err(e) = committed {
            tracing::debug!("cannot commit block {height}: {e}");
            for p in proposal.into_iter().rev() {
                self.pending.push_front(p);
            }
            return Err(e.into());
        }
        self.last_block_at = Instant::now();
        if !valid.is_empty() {
            self.metrics
                .block_commit_seconds
                .observe(started.elapsed().as_secs_f64());
            tracing::debug!(height, transactions = valid.len(), "block committed");
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

/// The summaries the event log stores beside an event of these
/// transactions, from their parsed JSON (not its text, which is not read
/// again): the streams' facts about each, by plugin-api's one rule.
fn summaries_of<'a>(txs: impl Iterator<Item = &'a serde_json::Value>) -> String {
    let txs: Vec<_> = txs.map(TxSummary::from_json).collect();
    let mut encoded = String::new();
    summaries::encode(&txs, &mut encoded);
    encoded
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
