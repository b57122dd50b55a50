//! The plugin's transactions and blocks as queries see them.

use std::cell::OnceCell;

use eventhost_plugin_api::Event;
use serde_json::Value;
use stream_query::{Block, Subject, Transaction};

use eventhost_plugin_api::tx::TxSummary;

use crate::messages::Rendered;

/// A committed transaction: its summary, read when the event was
/// rendered, and its JSON, parsed only if a query looks into it (and then
/// once, for every query).
pub struct TxSubject<'a> {
    facts: &'a TxSummary,
    height: u64,
    text: &'a str,
    json: OnceCell<Option<Value>>,
}

impl<'a> TxSubject<'a> {
    pub fn new(facts: &'a TxSummary, height: u64, text: &'a str) -> Self {
        TxSubject {
            facts,
            height,
            text,
            json: OnceCell::new(),
        }
    }
}

impl Transaction for TxSubject<'_> {
    fn height(&self) -> u64 {
        self.height
    }
    fn id(&self) -> &str {
        &self.facts.id
    }
    fn operation(&self) -> &str {
        &self.facts.operation
    }
    fn asset_ids(&self) -> &[String] {
        &self.facts.asset_ids
    }
    fn public_keys(&self) -> &[String] {
        &self.facts.public_keys
    }
    fn json(&self) -> Option<&Value> {
        self.json
            .get_or_init(|| serde_json::from_str(self.text).ok())
            .as_ref()
    }
}

/// A block, or a rejected proposal, of `transaction_count` transactions
/// (a replayed event comes without them).
pub struct BlockSubject<'a> {
    event: &'a Event,
    transaction_count: usize,
}

impl Block for BlockSubject<'_> {
    fn height(&self) -> u64 {
        self.event.height
    }
    fn hash(&self) -> &str {
        &self.event.block_hash
    }
    fn transaction_count(&self) -> u64 {
        self.transaction_count as u64
    }
}

/// The subjects of one event's messages: its transactions (for the
/// transaction streams, message `i` being transaction `i`), or the block.
pub struct Rows<'a> {
    txs: Vec<TxSubject<'a>>,
    block: BlockSubject<'a>,
}

impl<'a> Rows<'a> {
    /// The subjects of `event`'s messages as `rendered` has them.
    pub fn new(event: &'a Event, rendered: &'a Rendered) -> Self {
        let txs = rendered
            .txs
            .iter()
            .map(|(index, facts)| {
                let text = event.transactions.get(*index).map_or("", |t| t.as_str());
                TxSubject::new(facts, event.height, text)
            })
            .collect();
        Rows {
            txs,
            block: BlockSubject {
                event,
                transaction_count: rendered.transaction_count,
            },
        }
    }

    /// The subjects of a stream of `scope`, in message order.
    pub fn subjects(&self, scope: stream_query::Scope) -> Vec<Subject<'_>> {
        match scope {
            stream_query::Scope::Transactions => self
                .txs
                .iter()
                .map(|tx| Subject::Transaction(tx as &dyn Transaction))
                .collect(),
            stream_query::Scope::Blocks => vec![Subject::Block(&self.block)],
        }
    }
}
