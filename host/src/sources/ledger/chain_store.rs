//! The ledger's chain in the store: blocks, transactions, outputs and their
//! spenders, the indexes the HTTP API queries, and the transactions accepted
//! but not yet in a block (the durable mempool).
//!
//! A block, its transactions and its index entries are written in the same
//! transaction as the events the block produces (see
//! [`crate::event_log::EventLog::commit_with`]), so a crash leaves either
//! all of it or none of it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use redb::{Key, ReadTransaction, ReadableTable, TableDefinition, TableHandle, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::state::{LedgerView, OutputState, outputs_of};
use super::transaction::{Operation, OutputRef, Transaction};
use crate::store::seal::{self, seal_u64, unseal, unseal_str, unseal_u64};
use crate::store::{Store, StoreError, TxnError};

// Every value is sealed with a checksum (see `crate::store::seal`); the
// comments give what is inside the seal.

/// height -> [`BlockRecord`] (postcard).
const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
/// transaction id -> [`TxRecord`] (postcard).
const TRANSACTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("transactions");
/// (transaction id, output index) -> [`OutputRecord`] (postcard).
const OUTPUTS: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("outputs");
/// (asset id, commit number) -> (transaction id, operation) (postcard): an
/// asset's history.
const ASSET_TXS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("asset_txs");
/// (public key, commit number, output index) -> transaction id: a key's outputs.
const KEY_OUTPUTS: TableDefinition<(&str, u64, u32), &[u8]> = TableDefinition::new("key_outputs");
/// (field, word, commit number) -> transaction id: the text index of asset
/// data ("asset") and metadata ("metadata").
const WORDS: TableDefinition<(&str, &str, u64), &[u8]> = TableDefinition::new("words");
/// arrival number -> transaction JSON: accepted, not yet in a block.
const PENDING: TableDefinition<u64, &[u8]> = TableDefinition::new("pending");
/// Counters: "transactions" (commit numbers handed out).
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// The chain's tables in the node's store.
#[derive(Clone)]
pub struct ChainStore {
    store: Arc<Store>,
}

/// A committed block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRecord {
    pub height: u64,
    pub hash: String,
    pub previous_hash: String,
    pub timestamp_ms: u64,
    pub transaction_ids: Vec<String>,
}

/// A committed transaction.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TxRecord {
    pub height: u64,
    /// The transaction's JSON as stored (keys sorted, numbers as received).
    pub json: String,
}

#[derive(Serialize, Deserialize)]
struct OutputRecord {
    amount: u64,
    condition_uri: String,
    asset_id: String,
    spent_by: Option<String>,
}

/// Which text index to search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextField {
    Asset,
    Metadata,
}

impl TextField {
    fn key(self) -> &'static str {
        match self {
            TextField::Asset => "asset",
            TextField::Metadata => "metadata",
        }
    }
}

/// The record stored under `key` in the table `def`, once its seal checks
/// out; `what` names it in errors (`block 3`).
fn decode<K: Key + 'static, T: for<'de> Deserialize<'de>>(
    def: TableDefinition<'_, K, &'static [u8]>,
    key: &K::SelfType<'_>,
    stored: &[u8],
    what: impl Fn() -> String,
) -> Result<T, TxnError> {
    let bytes = unseal::<K>(def.name(), key, stored, &what)?;
    postcard::from_bytes(bytes).map_err(|e| TxnError::corrupt(what(), e))
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("plain structs of strings and integers always encode")
}

/// The lower-cased words of every string in `value` (not its keys).
pub fn words(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) => out.extend(words_of(s)),
        serde_json::Value::Array(items) => items.iter().for_each(|v| words(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| words(v, out)),
        _ => {}
    }
}

/// The lower-cased words of a text, as a search query is split.
pub fn words_of(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

impl ChainStore {
    /// The chain in `store`, creating its tables if needed.
    pub fn open(store: Arc<Store>) -> Result<ChainStore, StoreError> {
        store.write(|txn| {
            txn.open_table(BLOCKS)?;
            txn.open_table(TRANSACTIONS)?;
            txn.open_table(OUTPUTS)?;
            txn.open_table(ASSET_TXS)?;
            txn.open_table(KEY_OUTPUTS)?;
            txn.open_table(WORDS)?;
            txn.open_table(PENDING)?;
            txn.open_table(META)?;
            Ok(())
        })?;
        Ok(ChainStore { store })
    }

    /// The chain of a store opened for reading (`eventhost verify`).
    pub fn existing(store: Arc<Store>) -> ChainStore {
        ChainStore { store }
    }

    /// The newest block, if any.
    pub fn last_block(&self) -> Result<Option<BlockRecord>, StoreError> {
        self.store.read(|txn| {
            let table = txn.open_table(BLOCKS)?;
            match table.last()? {
                Some((k, v)) => {
                    let height = k.value();
                    Ok(Some(decode(BLOCKS, &height, v.value(), || {
                        format!("block {height}")
                    })?))
                }
                None => Ok(None),
            }
        })
    }

    pub fn block(&self, height: u64) -> Result<Option<BlockRecord>, StoreError> {
        self.store.read(|txn| {
            let table = txn.open_table(BLOCKS)?;
            match table.get(height)? {
                Some(v) => Ok(Some(decode(BLOCKS, &height, v.value(), || {
                    format!("block {height}")
                })?)),
                None => Ok(None),
            }
        })
    }

    pub fn transaction(&self, id: &str) -> Result<Option<TxRecord>, StoreError> {
        self.store.read(|txn| read_tx(txn, id))
    }

    /// The transactions of one block, in block order.
    pub fn block_transactions(&self, block: &BlockRecord) -> Result<Vec<String>, StoreError> {
        self.store.read(|txn| {
            let mut out = Vec::with_capacity(block.transaction_ids.len());
            for id in &block.transaction_ids {
                out.push(indexed_tx(txn, id, || format!("block {}", block.height))?.json);
            }
            Ok(out)
        })
    }

    /// A consistent view of the committed state, for validation.
    pub fn snapshot(&self) -> Result<Snapshot<'_>, StoreError> {
        Ok(Snapshot {
            store: &self.store,
            txn: self.store.begin_read()?,
        })
    }

    /// Records accepted transactions that are not yet in a block.
    pub fn add_pending(&self, entries: &[(u64, &str)]) -> Result<(), StoreError> {
        self.store.write(|txn| {
            let mut table = txn.open_table(PENDING)?;
            for (no, json) in entries {
                seal::insert(&mut table, PENDING, *no, json.as_bytes())?;
            }
            Ok(())
        })
    }

    /// Accepted transactions not yet in a block, in arrival order.
    pub fn pending(&self) -> Result<Vec<(u64, String)>, StoreError> {
        self.store.read(|txn| {
            let table = txn.open_table(PENDING)?;
            let mut pending = Vec::new();
            for entry in table.iter()? {
                let (k, v) = entry?;
                let no = k.value();
                let record = || format!("queued transaction {no}");
                let json = unseal_str::<u64>(PENDING.name(), &no, v.value(), record)?;
                pending.push((no, json.to_owned()));
            }
            Ok(pending)
        })
    }

    /// The committed transactions of an asset, in commit order: the CREATE
    /// whose id it is and the TRANSFERs that move it.
    pub fn asset_transactions(
        &self,
        asset_id: &str,
        operation: Option<Operation>,
        last_only: bool,
    ) -> Result<Vec<String>, StoreError> {
        self.store.read(|txn| {
            let index = txn.open_table(ASSET_TXS)?;
            let mut ids = Vec::new();
            for entry in index.range((asset_id, 0)..=(asset_id, u64::MAX))? {
                let (k, v) = entry?;
                let key = k.value();
                let (id, op): (String, String) = decode(ASSET_TXS, &key, v.value(), || {
                    format!("history entry {} of asset {asset_id}", key.1)
                })?;
                if operation.is_none_or(|o| o.as_str() == op) {
                    ids.push(id);
                }
            }
            if last_only {
                ids.drain(..ids.len().saturating_sub(1));
            }
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                out.push(indexed_tx(txn, &id, || format!("the history of asset {asset_id}"))?.json);
            }
            Ok(out)
        })
    }

    /// The outputs a public key can spend, in commit order; with `spent`,
    /// only the spent or the unspent ones.
    pub fn key_outputs(
        &self,
        key: &str,
        spent: Option<bool>,
    ) -> Result<Vec<(String, u32)>, StoreError> {
        self.store.read(|txn| {
            let index = txn.open_table(KEY_OUTPUTS)?;
            let outputs = txn.open_table(OUTPUTS)?;
            let mut out = Vec::new();
            for entry in index.range((key, 0, 0)..=(key, u64::MAX, u32::MAX))? {
                let (k, v) = entry?;
                let entry_key = k.value();
                let index = entry_key.2;
                let record = || format!("output entry {} of key {key}", entry_key.1);
                let id = unseal_str::<(&str, u64, u32)>(
                    KEY_OUTPUTS.name(),
                    &entry_key,
                    v.value(),
                    record,
                )?
                .to_owned();
                if let Some(wanted) = spent {
                    let output_key = (id.as_str(), index);
                    let is_spent = match outputs.get(output_key)? {
                        Some(r) => {
                            decode::<_, OutputRecord>(OUTPUTS, &output_key, r.value(), || {
                                format!("output {id}:{index}")
                            })?
                            .spent_by
                            .is_some()
                        }
                        None => false,
                    };
                    if is_spent != wanted {
                        continue;
                    }
                }
                out.push((id, index));
            }
            Ok(out)
        })
    }

    /// At most `limit` transactions whose asset data or metadata contains
    /// a word of `query`: those matching the most distinct words first,
    /// then in commit order.
    ///
    /// The words' index entries are merged in commit order, so each
    /// transaction's count of matched words is known as the merge passes
    /// it, and only the best `limit` so far are kept. The merge stops as
    /// soon as `limit` transactions match every word (no later one can
    /// rank above them), and in any case after reading `max_scan` index
    /// entries: then the results are the best among the transactions
    /// committed earliest. Before, every hit was collected and ranked
    /// before `limit` applied: 0.75 s for one word in 50,000 transactions.
    pub fn search(
        &self,
        field: TextField,
        query: &str,
        limit: usize,
        max_scan: usize,
    ) -> Result<Vec<TxRecordWithId>, StoreError> {
        self.store.read(|txn| {
            let index = txn.open_table(WORDS)?;
            let mut query_words: Vec<String> = words_of(query).collect();
            query_words.sort();
            query_words.dedup();
            let every_word = query_words.len();
            let mut cursors = Vec::with_capacity(every_word);
            for word in &query_words {
                let key = |no| (field.key(), word.as_str(), no);
                cursors.push(index.range(key(0)..=key(u64::MAX))?);
            }
            // Each word's next entry, the lowest commit number on top.
            let mut next: BinaryHeap<Reverse<(u64, usize, String)>> = BinaryHeap::new();
            for (word, cursor) in cursors.iter_mut().enumerate() {
                if let Some((no, id)) = next_entry(cursor)? {
                    next.push(Reverse((no, word, id)));
                }
            }
            // The best `limit` so far, the worst on top.
            let mut best: BinaryHeap<Ranked> = BinaryHeap::with_capacity(limit + 1);
            let mut scanned = 0;
            while let Some(Reverse((no, mut word, id))) = next.pop() {
                // Every entry of this commit number is on top now: count them.
                let mut matched = 0;
                loop {
                    matched += 1;
                    scanned += 1;
                    if let Some((later, id)) = next_entry(&mut cursors[word])? {
                        next.push(Reverse((later, word, id)));
                    }
                    match next.peek() {
                        Some(Reverse((same, _, _))) if *same == no => {}
                        _ => break,
                    }
                    if let Some(Reverse((_, other, _))) = next.pop() {
                        word = other;
                    }
                }
                let hit = Ranked { matched, no, id };
                if best.len() < limit {
                    best.push(hit);
                } else if best.peek().is_some_and(|worst| hit < *worst) {
                    best.pop();
                    best.push(hit);
                }
                let settled =
                    best.len() >= limit && best.peek().is_some_and(|w| w.matched == every_word);
                if settled || scanned >= max_scan {
                    break;
                }
            }
            let mut out = Vec::with_capacity(best.len());
            for Ranked { id, .. } in best.into_sorted_vec() {
                let record = indexed_tx(txn, &id, || format!("the {} text index", field.key()))?;
                out.push(TxRecordWithId { id, record });
            }
            Ok(out)
        })
    }
}

/// A search candidate; a lesser one ranks higher (more words matched, then
/// committed earlier).
#[derive(PartialEq, Eq)]
struct Ranked {
    matched: usize,
    no: u64,
    id: String,
}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (Reverse(self.matched), self.no).cmp(&(Reverse(other.matched), other.no))
    }
}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// A word index cursor's next (commit number, transaction id).
fn next_entry(
    cursor: &mut redb::Range<'_, (&'static str, &'static str, u64), &'static [u8]>,
) -> Result<Option<(u64, String)>, TxnError> {
    let Some(entry) = cursor.next() else {
        return Ok(None);
    };
    let (k, v) = entry?;
    let key = k.value();
    let no = key.2;
    let record = || format!("text index entry {no} of `{}`", key.1);
    let id = unseal_str::<(&str, &str, u64)>(WORDS.name(), &key, v.value(), record)?;
    Ok(Some((no, id.to_owned())))
}

impl ChainStore {
    /// Checks the seal of every entry of the chain's index and queue tables
    /// (blocks and transactions are checked as they are read); calls
    /// `fault` with each damaged record. Returns how many entries it read.
    pub fn verify_tables(&self, mut fault: impl FnMut(String)) -> Result<u64, StoreError> {
        fn each<K: Key + 'static>(
            txn: &ReadTransaction,
            def: TableDefinition<'_, K, &'static [u8]>,
            fault: &mut impl FnMut(String),
        ) -> Result<u64, TxnError> {
            let table = txn.open_table(def)?;
            let mut n = 0;
            for entry in table.iter()? {
                let (k, v) = entry?;
                n += 1;
                let record = || format!("{} entry {n}", def.name());
                if let Err(e) = unseal::<K>(def.name(), &k.value(), v.value(), record) {
                    fault(match e {
                        TxnError::Corrupt { record, reason } => format!("{record}: {reason}"),
                        TxnError::Db(e) => e.to_string(),
                    });
                }
            }
            Ok(n)
        }
        self.store.read(|txn| {
            Ok(each(txn, OUTPUTS, &mut fault)?
                + each(txn, ASSET_TXS, &mut fault)?
                + each(txn, KEY_OUTPUTS, &mut fault)?
                + each(txn, WORDS, &mut fault)?
                + each(txn, PENDING, &mut fault)?
                + each(txn, META, &mut fault)?)
        })
    }
}

/// A search hit.
pub struct TxRecordWithId {
    pub id: String,
    pub record: TxRecord,
}

fn read_tx(txn: &ReadTransaction, id: &str) -> Result<Option<TxRecord>, TxnError> {
    let table = txn.open_table(TRANSACTIONS)?;
    match table.get(id)? {
        Some(v) => Ok(Some(decode(TRANSACTIONS, &id, v.value(), || {
            format!("transaction {id}")
        })?)),
        None => Ok(None),
    }
}

/// A transaction that `referrer` names, so it must be stored: if it is
/// not, the store is damaged (a lookup that misses is never served as
/// "fewer transactions").
fn indexed_tx(
    txn: &ReadTransaction,
    id: &str,
    referrer: impl Fn() -> String,
) -> Result<TxRecord, TxnError> {
    read_tx(txn, id)?.ok_or_else(|| {
        TxnError::corrupt(
            format!("transaction {id}"),
            format!("{} names it, but it is not stored", referrer()),
        )
    })
}

/// Writes a block (when it has transactions), their index entries, and
/// drops the `pending` entries the block holds, inside `txn`: the ledger
/// calls it inside the event log's commit of the block's events.
pub fn write_block(
    txn: &WriteTransaction,
    block: &BlockRecord,
    txs: &[&Transaction],
    pending: &[u64],
) -> Result<(), TxnError> {
    {
        let mut table = txn.open_table(PENDING)?;
        for no in pending {
            table.remove(*no)?;
        }
    }
    if txs.is_empty() {
        return Ok(());
    }
    seal::insert(
        &mut txn.open_table(BLOCKS)?,
        BLOCKS,
        block.height,
        &encode(block),
    )?;
    let mut meta = txn.open_table(META)?;
    const COMMITTED: &str = "transactions";
    let mut no = match meta.get(COMMITTED)? {
        Some(v) => unseal_u64::<&str>(META.name(), &COMMITTED, v.value(), || {
            "the count of committed transactions".into()
        })?,
        None => 0,
    };
    let mut transactions = txn.open_table(TRANSACTIONS)?;
    let mut outputs = txn.open_table(OUTPUTS)?;
    let mut asset_txs = txn.open_table(ASSET_TXS)?;
    let mut key_outputs = txn.open_table(KEY_OUTPUTS)?;
    let mut words_index = txn.open_table(WORDS)?;
    let mut words_buf = Vec::new();
    for tx in txs {
        no += 1;
        let record = TxRecord {
            height: block.height,
            json: tx.text().to_owned(),
        };
        seal::insert(
            &mut transactions,
            TRANSACTIONS,
            tx.id.as_str(),
            &encode(&record),
        )?;
        for spent in tx.spends() {
            let key = (spent.transaction_id.as_str(), spent.output_index);
            let mut record: OutputRecord = match outputs.get(key)? {
                Some(v) => decode(OUTPUTS, &key, v.value(), || {
                    format!("output {}:{}", key.0, key.1)
                })?,
                None => continue,
            };
            record.spent_by = Some(tx.id.clone());
            seal::insert(&mut outputs, OUTPUTS, key, &encode(&record))?;
        }
        for (output, state) in outputs_of(tx) {
            let record = OutputRecord {
                amount: state.amount,
                condition_uri: state.condition_uri,
                asset_id: state.asset_id,
                spent_by: None,
            };
            seal::insert(
                &mut outputs,
                OUTPUTS,
                (output.transaction_id.as_str(), output.output_index),
                &encode(&record),
            )?;
            for key in &tx.outputs[output.output_index as usize].keys {
                seal::insert(
                    &mut key_outputs,
                    KEY_OUTPUTS,
                    (key.as_str(), no, output.output_index),
                    tx.id.as_bytes(),
                )?;
            }
        }
        for asset in &tx.asset_ids {
            seal::insert(
                &mut asset_txs,
                ASSET_TXS,
                (asset.as_str(), no),
                &encode(&(tx.id.as_str(), tx.operation.as_str())),
            )?;
        }
        for (field, value) in [
            (TextField::Asset, tx.asset_data()),
            (TextField::Metadata, tx.metadata()),
        ] {
            let Some(value) = value else { continue };
            words_buf.clear();
            words(value, &mut words_buf);
            words_buf.sort();
            words_buf.dedup();
            for word in &words_buf {
                seal::insert(
                    &mut words_index,
                    WORDS,
                    (field.key(), word.as_str(), no),
                    tx.id.as_bytes(),
                )?;
            }
        }
    }
    meta.insert(
        COMMITTED,
        seal_u64::<&str>(META.name(), &COMMITTED, no).as_slice(),
    )?;
    Ok(())
}

/// The committed state as of one read transaction.
pub struct Snapshot<'a> {
    store: &'a Store,
    txn: ReadTransaction,
}

impl LedgerView for Snapshot<'_> {
    fn contains(&self, tx_id: &str) -> Result<bool, StoreError> {
        let read = || -> Result<bool, TxnError> {
            let table = self.txn.open_table(TRANSACTIONS)?;
            Ok(table.get(tx_id)?.is_some())
        };
        read().map_err(|e| self.store.err(e))
    }

    fn output(&self, output: &OutputRef) -> Result<Option<OutputState>, StoreError> {
        let read = || -> Result<Option<OutputState>, TxnError> {
            let table = self.txn.open_table(OUTPUTS)?;
            let key = (output.transaction_id.as_str(), output.output_index);
            let Some(v) = table.get(key)? else {
                return Ok(None);
            };
            let record: OutputRecord = decode(OUTPUTS, &key, v.value(), || {
                format!("output {}:{}", output.transaction_id, output.output_index)
            })?;
            Ok(Some(OutputState {
                amount: record.amount,
                condition_uri: record.condition_uri,
                asset_id: record.asset_id,
                spent_by: record.spent_by,
            }))
        };
        read().map_err(|e| self.store.err(e))
    }
}
