//! `eventhost verify`: walks the whole store and says what is damaged.
//!
//! It reads the store without changing it and checks, record by record:
//! every value's checksum (every table); every block's hash against its
//! header and its link to the block before; every transaction of a block
//! is stored, belongs to that height, and passes the ledger's checks of
//! its id and signatures; the event log has no gap, each committed block
//! has its BLOCK_VALID event with the same hash and transactions, and the
//! log's indexes point at the right events, and each event's stored
//! summaries are its own; no plugin's cursor is past the
//! log's head. An edge node's store holds a ledger node's events and no
//! blocks: its log is checked for gaps from its first event, and its
//! indexes, without blocks to compare with.
//!
//! Long walks show how far they got through [`crate::progress`]: a bar on a
//! terminal, a line every few seconds in a log, and each walk's summary.

use std::path::Path;
use std::sync::Arc;

use eventhost_plugin_api::summaries;
use eventhost_plugin_api::{BLOCK_VALID, Event};
use serde_json::Value;

use crate::event_log::Reader;
use crate::plugin_runtime::cursors::Cursors;
use crate::progress::Progress;
use crate::sources::ledger::block;
use crate::sources::ledger::chain_store::ChainStore;
use crate::sources::ledger::transaction::Transaction;
use crate::sources::upstream::position;
use crate::store::{Store, StoreError};

/// Events read from the log at a time.
const BATCH: usize = 256;

/// What a walk of the store found.
#[derive(Default)]
pub struct Report {
    pub blocks: u64,
    pub transactions: u64,
    pub events: u64,
    pub index_entries: u64,
    pub cursors: u64,
    pub faults: Vec<String>,
}

impl Report {
    fn fault(&mut self, what: String) {
        self.faults.push(what);
    }

    /// A store error is a fault of the record it names, unless the store
    /// cannot be read at all.
    fn check<T>(&mut self, result: Result<T, StoreError>) -> Result<Option<T>, StoreError> {
        match result {
            Ok(value) => Ok(Some(value)),
            Err(e @ (StoreError::Corrupt { .. } | StoreError::Panicked { .. })) => {
                self.fault(e.to_string());
                Ok(None)
            }
            Err(e) if e.is_corruption() => {
                self.fault(e.to_string());
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

/// Walks the store at `path`, which must exist; it is opened read-only.
pub fn verify(path: &Path) -> Result<Report, StoreError> {
    let store = Arc::new(Store::open_read_only(path)?);
    let chain = ChainStore::existing(store.clone());
    let log = Reader::new(store.clone());
    let mut report = Report::default();
    let edge = report
        .check(position::is_edge_store(&store))?
        .unwrap_or(false);

    // Blocks and their transactions (an edge has none).
    let last = match edge {
        true => None,
        false => report.check(chain.last_block())?.flatten(),
    };
    let tip = last.as_ref().map_or(0, |b| b.height);
    let mut progress = Progress::start("verify: checked", "blocks", Some(tip));
    let mut previous_hash = String::new();
    for height in 1..=tip {
        progress.add(1);
        report.blocks += 1;
        let Some(block) = report.check(chain.block(height))? else {
            previous_hash.clear();
            continue;
        };
        let Some(block) = block else {
            report.fault(format!("block {height} is missing"));
            previous_hash.clear();
            continue;
        };
        let expected = block::hash(
            height,
            &block.previous_hash,
            block.timestamp_ms,
            block.transaction_ids.iter().map(String::as_str),
        );
        if expected != block.hash {
            report.fault(format!(
                "block {height}: its hash does not match its header"
            ));
        }
        if height > 1 && !previous_hash.is_empty() && block.previous_hash != previous_hash {
            report.fault(format!(
                "block {height}: its previous_hash is not the hash of block {}",
                height - 1
            ));
        }
        previous_hash = block.hash.clone();
        for id in &block.transaction_ids {
            report.transactions += 1;
            match report.check(chain.transaction(id))? {
                None => {}
                Some(None) => report.fault(format!("block {height}: transaction {id} is missing")),
                Some(Some(tx)) => {
                    if tx.height != height {
                        report.fault(format!(
                            "transaction {id}: stored as of height {}, but block {height} holds it",
                            tx.height
                        ));
                    }
                    let parsed = serde_json::from_str::<Value>(&tx.json)
                        .map_err(|e| e.to_string())
                        .and_then(|json| Transaction::parse(json).map_err(|e| e.to_string()));
                    match parsed {
                        Ok(parsed) if parsed.id == *id => {}
                        Ok(parsed) => report.fault(format!(
                            "transaction {id}: its JSON is transaction {}",
                            parsed.id
                        )),
                        Err(e) => report.fault(format!("transaction {id}: {e}")),
                    }
                }
            }
        }
    }

    tracing::info!("{}", progress.finish());

    // The event log against the blocks (an edge's: on its own).
    let head = report.check(log.last_seq())?.unwrap_or(0);
    // Retention may have dropped the oldest events, and an edge's log
    // starts where the edge started following: the log starts at its first
    // event, and only a ledger's log that starts at 1 must hold every block.
    let first = report.check(log.first_seq())?.flatten().unwrap_or(1);
    let total = (head + 1).saturating_sub(first);
    let mut progress = Progress::start("verify: checked", "events", Some(total));
    let mut next = first;
    let mut valid_heights = 0;
    loop {
        let batch = match report.check(log.read(next, BATCH))? {
            Some(batch) => batch,
            None => {
                // A damaged event stops the batch: go on after it, one at a time.
                progress.add(1);
                next += 1;
                if next > head {
                    break;
                }
                continue;
            }
        };
        if batch.is_empty() {
            break;
        }
        for event in &batch {
            if event.seq != next {
                report.fault(format!(
                    "the event log has no events {next} to {}",
                    event.seq - 1
                ));
            }
            next = event.seq + 1;
            report.events += 1;
            check_summaries(&mut report, &log, event)?;
            if event.event_type == BLOCK_VALID {
                valid_heights += 1;
                if !edge {
                    check_block(&mut report, &chain, event)?;
                }
                check_index(&mut report, &log, event)?;
            }
        }
        progress.add(batch.len() as u64);
    }
    tracing::info!("{}", progress.finish());
    if !edge && first == 1 && valid_heights != tip {
        report.fault(format!(
            "the event log has {valid_heights} BLOCK_VALID events for {tip} blocks"
        ));
    }

    // The other tables' seals, and the cursors.
    let faults = &mut Vec::new();
    if !edge && let Some(n) = report.check(chain.verify_tables(|f| faults.push(f)))? {
        report.index_entries = n;
    }
    for f in std::mem::take(faults) {
        report.fault(f);
    }
    let cursors = Cursors::existing(store);
    for (plugin, cursor) in report.check(cursors.all())?.unwrap_or_default() {
        report.cursors += 1;
        if cursor > head {
            report.fault(format!(
                "plugin `{plugin}`'s cursor is at event {cursor}, past the log's head {head}"
            ));
        }
    }
    Ok(report)
}

/// A BLOCK_VALID event against its block.
fn check_block(report: &mut Report, chain: &ChainStore, event: &Event) -> Result<(), StoreError> {
    let seq = event.seq;
    let height = event.height;
    match report.check(chain.block(height))? {
        Some(Some(block)) => {
            if *event.block_hash != *block.hash {
                report.fault(format!("event {seq}: its hash is not block {height}'s"));
            }
            let ids: Vec<String> = event
                .transactions
                .iter()
                .map(|t| {
                    serde_json::from_str::<Value>(t)
                        .ok()
                        .and_then(|v| v["id"].as_str().map(str::to_owned))
                        .unwrap_or_default()
                })
                .collect();
            if ids != block.transaction_ids {
                report.fault(format!(
                    "event {seq}: its transactions are not block {height}'s"
                ));
            }
        }
        Some(None) => report.fault(format!("event {seq}: block {height} is missing")),
        None => {}
    }
    Ok(())
}

/// An event's stored summaries against the event: they must hold the event
/// without its transactions, and what the one rule reads of those.
fn check_summaries(report: &mut Report, log: &Reader, event: &Event) -> Result<(), StoreError> {
    let Some(read) = report.check(log.read_summaries(event.seq, 1))? else {
        return Ok(());
    };
    let seq = event.seq;
    match read.first() {
        Some((header, summaries)) if header.seq == seq => {
            let whole = Event {
                transactions: Default::default(),
                ..event.clone()
            };
            if *header != whole {
                report.fault(format!("event {seq}: its summaries are another event's"));
            } else if *summaries != summaries::summarize(event) {
                report.fault(format!(
                    "event {seq}: its summaries are not its transactions'"
                ));
            }
        }
        _ => report.fault(format!("event {seq}: its summaries cannot be read")),
    }
    Ok(())
}

/// A BLOCK_VALID event against the log's height index.
fn check_index(report: &mut Report, log: &Reader, event: &Event) -> Result<(), StoreError> {
    let (seq, height) = (event.seq, event.height);
    if let Some(found) = report.check(log.find_event(&height.to_string()))?
        && found != Some(seq)
    {
        report.fault(format!(
            "the log's height index sends height {height} to {found:?}, not event {seq}"
        ));
    }
    Ok(())
}
