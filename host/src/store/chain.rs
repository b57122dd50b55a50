//! The ledger's chain in the store: blocks, transactions, outputs and their
//! spenders, the indexes the HTTP API queries, and the transactions accepted
//! but not yet in a block (the durable mempool).
//!
//! A block, its transactions, its index entries and the events it produces
//! are written in one transaction, so a crash leaves either all of it or
//! none of it.

use std::collections::HashMap;

use eventhost_plugin_api::Event;
use redb::{ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError, append_events};
use crate::ledger::state::{LedgerView, OutputState, outputs_of};
use crate::ledger::transaction::{Operation, OutputRef, Transaction};

/// height -> [`BlockRecord`].
const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
/// transaction id -> [`TxRecord`].
const TRANSACTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("transactions");
/// (transaction id, output index) -> [`OutputRecord`].
const OUTPUTS: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("outputs");
/// (asset id, commit number) -> (transaction id, operation): an asset's history.
const ASSET_TXS: TableDefinition<(&str, u64), (&str, &str)> = TableDefinition::new("asset_txs");
/// (public key, commit number, output index) -> transaction id: a key's outputs.
const KEY_OUTPUTS: TableDefinition<(&str, u64, u32), &str> = TableDefinition::new("key_outputs");
/// (field, word, commit number) -> transaction id: the text index of asset
/// data ("asset") and metadata ("metadata").
const WORDS: TableDefinition<(&str, &str, u64), &str> = TableDefinition::new("words");
/// arrival number -> transaction JSON: accepted, not yet in a block.
const PENDING: TableDefinition<u64, &str> = TableDefinition::new("pending");
/// Counters: "transactions" (commit numbers handed out).
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

pub(super) fn create_tables(txn: &WriteTransaction) -> Result<(), redb::Error> {
    txn.open_table(BLOCKS)?;
    txn.open_table(TRANSACTIONS)?;
    txn.open_table(OUTPUTS)?;
    txn.open_table(ASSET_TXS)?;
    txn.open_table(KEY_OUTPUTS)?;
    txn.open_table(WORDS)?;
    txn.open_table(PENDING)?;
    txn.open_table(META)?;
    Ok(())
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

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8], what: &str) -> Result<T, redb::Error> {
    postcard::from_bytes(bytes)
        .map_err(|e| redb::Error::Corrupted(format!("{what} record is unreadable: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Plain structs of strings and integers always encode.
    postcard::to_allocvec(value).unwrap_or_default()
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

impl Store {
    /// The newest block, if any.
    pub fn last_block(&self) -> Result<Option<BlockRecord>, StoreError> {
        let read = || -> Result<Option<BlockRecord>, redb::Error> {
            let txn = self.db().begin_read()?;
            let table = txn.open_table(BLOCKS)?;
            match table.last()? {
                Some((_, v)) => Ok(Some(decode(v.value(), "block")?)),
                None => Ok(None),
            }
        };
        read().map_err(|e| self.err(e))
    }

    pub fn block(&self, height: u64) -> Result<Option<BlockRecord>, StoreError> {
        let read = || -> Result<Option<BlockRecord>, redb::Error> {
            let txn = self.db().begin_read()?;
            let table = txn.open_table(BLOCKS)?;
            match table.get(height)? {
                Some(v) => Ok(Some(decode(v.value(), "block")?)),
                None => Ok(None),
            }
        };
        read().map_err(|e| self.err(e))
    }

    pub fn transaction(&self, id: &str) -> Result<Option<TxRecord>, StoreError> {
        let read = || -> Result<Option<TxRecord>, redb::Error> {
            let txn = self.db().begin_read()?;
            read_tx(&txn, id)
        };
        read().map_err(|e| self.err(e))
    }

    /// The transactions of one block, in block order.
    pub fn block_transactions(&self, block: &BlockRecord) -> Result<Vec<String>, StoreError> {
        let read = || -> Result<Vec<String>, redb::Error> {
            let txn = self.db().begin_read()?;
            let mut out = Vec::with_capacity(block.transaction_ids.len());
            for id in &block.transaction_ids {
                if let Some(tx) = read_tx(&txn, id)? {
                    out.push(tx.json);
                }
            }
            Ok(out)
        };
        read().map_err(|e| self.err(e))
    }

    /// A consistent view of the committed state, for validation.
    pub fn snapshot(&self) -> Result<Snapshot<'_>, StoreError> {
        let txn = self.db().begin_read().map_err(|e| self.err(e))?;
        Ok(Snapshot { store: self, txn })
    }

    /// Writes a block, its transactions, their index entries and `events`
    /// (numbering them), and drops the `pending` entries the block holds, in
    /// one durable transaction.
    pub fn commit_block(
        &self,
        block: &BlockRecord,
        txs: &[&Transaction],
        events: &mut [Event],
        pending: &[u64],
    ) -> Result<(), StoreError> {
        let mut write = || -> Result<(), redb::Error> {
            let txn = self.db().begin_write()?;
            if !txs.is_empty() {
                write_block(&txn, block, txs)?;
            }
            {
                let mut table = txn.open_table(PENDING)?;
                for no in pending {
                    table.remove(*no)?;
                }
            }
            append_events(&txn, events)?;
            txn.commit()?;
            Ok(())
        };
        write().map_err(|e| self.err(e))
    }

    /// Records accepted transactions that are not yet in a block.
    pub fn add_pending(&self, entries: &[(u64, &str)]) -> Result<(), StoreError> {
        let write = || -> Result<(), redb::Error> {
            let txn = self.db().begin_write()?;
            {
                let mut table = txn.open_table(PENDING)?;
                for (no, json) in entries {
                    table.insert(*no, *json)?;
                }
            }
            txn.commit()?;
            Ok(())
        };
        write().map_err(|e| self.err(e))
    }

    /// Accepted transactions not yet in a block, in arrival order.
    pub fn pending(&self) -> Result<Vec<(u64, String)>, StoreError> {
        let read = || -> Result<Vec<(u64, String)>, redb::Error> {
            let txn = self.db().begin_read()?;
            let table = txn.open_table(PENDING)?;
            table
                .iter()?
                .map(|e| {
                    e.map(|(k, v)| (k.value(), v.value().to_owned()))
                        .map_err(Into::into)
                })
                .collect()
        };
        read().map_err(|e| self.err(e))
    }

    /// The committed transactions of an asset, in commit order: the CREATE
    /// whose id it is and the TRANSFERs that move it.
    pub fn asset_transactions(
        &self,
        asset_id: &str,
        operation: Option<Operation>,
        last_only: bool,
    ) -> Result<Vec<String>, StoreError> {
        let read = || -> Result<Vec<String>, redb::Error> {
            let txn = self.db().begin_read()?;
            let index = txn.open_table(ASSET_TXS)?;
            let mut ids = Vec::new();
            for entry in index.range((asset_id, 0)..=(asset_id, u64::MAX))? {
                let (_, v) = entry?;
                let (id, op) = v.value();
                if operation.is_none_or(|o| o.as_str() == op) {
                    ids.push(id.to_owned());
                }
            }
            if last_only {
                ids.drain(..ids.len().saturating_sub(1));
            }
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(tx) = read_tx(&txn, &id)? {
                    out.push(tx.json);
                }
            }
            Ok(out)
        };
        read().map_err(|e| self.err(e))
    }

    /// The outputs a public key can spend, in commit order; with `spent`,
    /// only the spent or the unspent ones.
    pub fn key_outputs(
        &self,
        key: &str,
        spent: Option<bool>,
    ) -> Result<Vec<(String, u32)>, StoreError> {
        let read = || -> Result<Vec<(String, u32)>, redb::Error> {
            let txn = self.db().begin_read()?;
            let index = txn.open_table(KEY_OUTPUTS)?;
            let outputs = txn.open_table(OUTPUTS)?;
            let mut out = Vec::new();
            for entry in index.range((key, 0, 0)..=(key, u64::MAX, u32::MAX))? {
                let (k, v) = entry?;
                let (_, _, index) = k.value();
                let id = v.value().to_owned();
                if let Some(wanted) = spent {
                    let is_spent = match outputs.get((id.as_str(), index))? {
                        Some(r) => decode::<OutputRecord>(r.value(), "output")?
                            .spent_by
                            .is_some(),
                        None => false,
                    };
                    if is_spent != wanted {
                        continue;
                    }
                }
                out.push((id, index));
            }
            Ok(out)
        };
        read().map_err(|e| self.err(e))
    }

    /// Transactions whose asset data or metadata contains any word of
    /// `query`, most matching words first, then in commit order; `limit` 0
    /// means all.
    pub fn search(
        &self,
        field: TextField,
        query: &str,
        limit: usize,
    ) -> Result<Vec<TxRecordWithId>, StoreError> {
        let read = || -> Result<Vec<TxRecordWithId>, redb::Error> {
            let txn = self.db().begin_read()?;
            let index = txn.open_table(WORDS)?;
            let mut query_words: Vec<String> = words_of(query).collect();
            query_words.sort();
            query_words.dedup();
            // commit number -> (id, matched words)
            let mut hits: HashMap<u64, (String, usize)> = HashMap::new();
            for word in &query_words {
                let range =
                    (field.key(), word.as_str(), 0)..=(field.key(), word.as_str(), u64::MAX);
                let mut last_no = None;
                for entry in index.range(range)? {
                    let (k, v) = entry?;
                    let (_, _, no) = k.value();
                    // A word repeated in one transaction counts once.
                    if last_no == Some(no) {
                        continue;
                    }
                    last_no = Some(no);
                    hits.entry(no)
                        .or_insert_with(|| (v.value().to_owned(), 0))
                        .1 += 1;
                }
            }
            let mut ranked: Vec<(u64, String, usize)> =
                hits.into_iter().map(|(no, (id, n))| (no, id, n)).collect();
            ranked.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
            if limit > 0 {
                ranked.truncate(limit);
            }
            let mut out = Vec::with_capacity(ranked.len());
            for (_, id, _) in ranked {
                if let Some(record) = read_tx(&txn, &id)? {
                    out.push(TxRecordWithId { id, record });
                }
            }
            Ok(out)
        };
        read().map_err(|e| self.err(e))
    }
}

/// A search hit.
pub struct TxRecordWithId {
    pub id: String,
    pub record: TxRecord,
}

fn read_tx(txn: &ReadTransaction, id: &str) -> Result<Option<TxRecord>, redb::Error> {
    let table = txn.open_table(TRANSACTIONS)?;
    match table.get(id)? {
        Some(v) => Ok(Some(decode(v.value(), "transaction")?)),
        None => Ok(None),
    }
}

fn write_block(
    txn: &WriteTransaction,
    block: &BlockRecord,
    txs: &[&Transaction],
) -> Result<(), redb::Error> {
    txn.open_table(BLOCKS)?
        .insert(block.height, encode(block).as_slice())?;
    let mut meta = txn.open_table(META)?;
    let mut no = meta.get("transactions")?.map_or(0, |v| v.value());
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
            json: tx.json.to_string(),
        };
        transactions.insert(tx.id.as_str(), encode(&record).as_slice())?;
        for spent in tx.spends() {
            let key = (spent.transaction_id.as_str(), spent.output_index);
            let mut record: OutputRecord = match outputs.get(key)? {
                Some(v) => decode(v.value(), "output")?,
                None => continue,
            };
            record.spent_by = Some(tx.id.clone());
            outputs.insert(key, encode(&record).as_slice())?;
        }
        for (output, state) in outputs_of(tx) {
            let record = OutputRecord {
                amount: state.amount,
                condition_uri: state.condition_uri,
                asset_id: state.asset_id,
                spent_by: None,
            };
            outputs.insert(
                (output.transaction_id.as_str(), output.output_index),
                encode(&record).as_slice(),
            )?;
            for key in &tx.outputs[output.output_index as usize].keys {
                key_outputs.insert((key.as_str(), no, output.output_index), tx.id.as_str())?;
            }
        }
        for asset in &tx.asset_ids {
            asset_txs.insert(
                (asset.as_str(), no),
                (tx.id.as_str(), tx.operation.as_str()),
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
                words_index.insert((field.key(), word.as_str(), no), tx.id.as_str())?;
            }
        }
    }
    meta.insert("transactions", no)?;
    Ok(())
}

/// The committed state as of one read transaction.
pub struct Snapshot<'a> {
    store: &'a Store,
    txn: ReadTransaction,
}

impl LedgerView for Snapshot<'_> {
    fn contains(&self, tx_id: &str) -> Result<bool, StoreError> {
        let table = self
            .txn
            .open_table(TRANSACTIONS)
            .map_err(|e| self.store.err(e))?;
        let found = table.get(tx_id).map_err(|e| self.store.err(e))?;
        Ok(found.is_some())
    }

    fn output(&self, output: &OutputRef) -> Result<Option<OutputState>, StoreError> {
        let table = self
            .txn
            .open_table(OUTPUTS)
            .map_err(|e| self.store.err(e))?;
        let key = (output.transaction_id.as_str(), output.output_index);
        let Some(v) = table.get(key).map_err(|e| self.store.err(e))? else {
            return Ok(None);
        };
        let record: OutputRecord = decode(v.value(), "output").map_err(|e| self.store.err(e))?;
        Ok(Some(OutputState {
            amount: record.amount,
            condition_uri: record.condition_uri,
            asset_id: record.asset_id,
            spent_by: record.spent_by,
        }))
    }
}
