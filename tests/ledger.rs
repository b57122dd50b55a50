//! The ledger with a real store and exchange: modes, blocks, BLOCK_INVALID,
//! restart.

use std::sync::Arc;
use std::time::Duration;

use eventhost::event_log::{EventLog, Reader};
use eventhost::exchange::{Exchange, Queue};
use eventhost::metrics::Metrics;
use eventhost::sources::ledger::builder::{self, Keypair};
use eventhost::sources::ledger::chain_store::ChainStore;
use eventhost::sources::ledger::transaction::{OutputRef, Rule, Transaction};
use eventhost::sources::ledger::{Ledger, LedgerConfig, Mode, Outcome};
use eventhost::store::Store;
use eventhost_plugin_api::ffi::{HostQueue, Received};
use eventhost_plugin_api::{BLOCK_INVALID, BLOCK_VALID, Event, EventTypes};
use serde_json::{Value, json};
use support::node::create;

struct Node {
    dir: tempfile::TempDir,
    store: Arc<Store>,
    chain: ChainStore,
    exchange: Arc<Exchange>,
    ledger: Ledger,
    events: Queue,
}

fn config(max_block_size: usize, interval_ms: u64) -> LedgerConfig {
    LedgerConfig {
        max_block_size,
        block_interval: Duration::from_millis(interval_ms),
    }
}

fn start(dir: tempfile::TempDir, config: LedgerConfig) -> Node {
    let store = Arc::new(Store::open(&dir.path().join("store.redb")).unwrap());
    let metrics = Arc::new(Metrics::new());
    let (log, exchange) = EventLog::open(store.clone(), &metrics).unwrap();
    let events = exchange.subscribe("test", EventTypes::ALL, 1024, exchange.head());
    let chain = ChainStore::open(store.clone()).unwrap();
    let ledger = Ledger::start(chain.clone(), log, metrics, config).unwrap();
    Node {
        dir,
        store,
        chain,
        exchange,
        ledger,
        events,
    }
}

impl Node {
    fn new(config: LedgerConfig) -> Node {
        start(tempfile::tempdir().unwrap(), config)
    }

    fn submit(&self, tx: &Value, mode: Mode) -> tokio::sync::oneshot::Receiver<Outcome> {
        self.ledger
            .submit(Transaction::parse(tx.clone()).unwrap(), mode)
    }

    fn post(&self, tx: &Value, mode: Mode) -> Outcome {
        self.submit(tx, mode).blocking_recv().unwrap()
    }

    fn next_event(&self) -> Event {
        match self.events.recv(10_000) {
            Received::Event(e) => (*e).clone(),
            _ => panic!("no event within 10 s"),
        }
    }

    fn restart(self, config: LedgerConfig) -> Node {
        let Node {
            dir,
            store,
            chain,
            exchange,
            ledger,
            events,
        } = self;
        ledger.shutdown(Duration::from_secs(2));
        // The store is one open file: every handle must go before it reopens.
        drop((events, exchange, chain, store));
        start(dir, config)
    }
}

fn alice() -> Keypair {
    Keypair::from_seed([1; 32])
}

fn bob() -> Keypair {
    Keypair::from_seed([2; 32])
}

fn spend(tx: &Value, index: u32) -> OutputRef {
    OutputRef {
        transaction_id: tx["id"].as_str().unwrap().to_owned(),
        output_index: index,
    }
}

/// A TRANSFER of the one output of `coin`, a CREATE of one `owner` owns,
/// to `to`; `metadata` tells spends of one coin apart.
fn transfer_coin(coin: &Value, owner: &Keypair, to: &Keypair, metadata: Value) -> Value {
    builder::transfer(
        &[(spend(coin, 0), owner)],
        coin["id"].as_str().unwrap(),
        &[(to.public_key(), 1)],
        metadata,
    )
}

fn ids(event: &Event) -> Vec<String> {
    event
        .transactions
        .iter()
        .map(|t| {
            serde_json::from_str::<Value>(t).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[test]
fn commit_mode_answers_with_the_height_and_publishes_the_block() {
    let node = Node::new(config(1000, 0));
    let (a, b) = (alice(), bob());
    let create = builder::create(&a, &[(a.public_key(), 5)], json!({"n": 1}), Value::Null);
    assert!(matches!(
        node.post(&create, Mode::Commit),
        Outcome::Committed { height: 1 }
    ));
    let event = node.next_event();
    assert_eq!((event.event_type, event.height), (BLOCK_VALID, 1));
    assert_eq!(ids(&event), [create["id"].as_str().unwrap()]);

    let transfer = builder::transfer(
        &[(spend(&create, 0), &a)],
        create["id"].as_str().unwrap(),
        &[(b.public_key(), 2), (a.public_key(), 3)],
        Value::Null,
    );
    assert!(matches!(
        node.post(&transfer, Mode::Commit),
        Outcome::Committed { height: 2 }
    ));
    let event = node.next_event();
    assert_eq!(event.height, 2);
    let block = node.chain.block(2).unwrap().unwrap();
    assert_eq!(
        block.previous_hash,
        node.chain.block(1).unwrap().unwrap().hash
    );
    assert_eq!(event.block_hash.as_str(), block.hash);
    assert_eq!(
        node.chain
            .key_outputs(b.public_key(), Some(false))
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        node.chain
            .key_outputs(a.public_key(), Some(true))
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn an_async_double_spend_is_published_as_block_invalid_and_the_rest_committed() {
    // A long interval keeps both spends in one block.
    let node = Node::new(config(1000, 300));
    let (a, b) = (alice(), bob());
    let create = create(&a, Value::Null);
    assert!(matches!(
        node.post(&create, Mode::Commit),
        Outcome::Committed { .. }
    ));
    node.next_event();
    let to_bob = transfer_coin(&create, &a, &b, Value::Null);
    let to_alice = transfer_coin(&create, &a, &a, json!({"second": "spend"}));
    let first = node.submit(&to_bob, Mode::Async);
    let second = node.submit(&to_alice, Mode::Async);
    assert!(matches!(first.blocking_recv().unwrap(), Outcome::Accepted));
    assert!(matches!(second.blocking_recv().unwrap(), Outcome::Accepted));

    let invalid = node.next_event();
    assert_eq!(invalid.event_type, BLOCK_INVALID);
    assert_eq!(ids(&invalid), [to_alice["id"].as_str().unwrap()]);
    let reason = &invalid.rejections[0].reason;
    assert!(reason.contains("DoubleSpend"), "{reason}");
    assert_eq!(
        invalid.rejections[0].transaction_id.as_str(),
        to_alice["id"].as_str().unwrap()
    );
    let valid = node.next_event();
    assert_eq!(
        (valid.event_type, valid.height),
        (BLOCK_VALID, invalid.height)
    );
    assert_eq!(ids(&valid), [to_bob["id"].as_str().unwrap()]);
    assert!(
        node.chain
            .transaction(to_alice["id"].as_str().unwrap())
            .unwrap()
            .is_none()
    );
}

#[test]
fn sync_and_commit_reject_what_breaks_a_rule_before_queueing_it() {
    let node = Node::new(config(1000, 0));
    let (a, b) = (alice(), bob());
    let create = create(&a, Value::Null);
    assert!(matches!(node.post(&create, Mode::Sync), Outcome::Accepted));
    let rejected = |outcome: Outcome| match outcome {
        Outcome::Rejected(r) => r.rule,
        other => panic!("expected a rejection, got {other:?}"),
    };
    assert_eq!(
        rejected(node.post(&create, Mode::Sync)),
        Rule::DuplicateTransaction
    );
    assert_eq!(
        rejected(node.post(&create, Mode::Async)),
        Rule::DuplicateTransaction
    );

    let asset = create["id"].as_str().unwrap();
    let first = transfer_coin(&create, &a, &b, Value::Null);
    let again = transfer_coin(&create, &a, &a, json!({"x": 1}));
    assert!(matches!(
        node.post(&first, Mode::Commit),
        Outcome::Committed { .. }
    ));
    assert_eq!(rejected(node.post(&again, Mode::Sync)), Rule::DoubleSpend);
    let missing = OutputRef {
        transaction_id: "ab".repeat(32),
        output_index: 0,
    };
    let from_nowhere =
        builder::transfer(&[(missing, &a)], asset, &[(b.public_key(), 1)], Value::Null);
    assert_eq!(
        rejected(node.post(&from_nowhere, Mode::Commit)),
        Rule::InputDoesNotExist
    );
    // Each spends `first`'s output, which `b` owns, and breaks one rule.
    let other_asset = "cd".repeat(32);
    for (signer, asset, amount, rule) in [
        (&b, asset, 2, Rule::AmountError),
        (&a, asset, 1, Rule::InvalidSignature),
        (&b, other_asset.as_str(), 1, Rule::AssetIdMismatch),
    ] {
        let tx = builder::transfer(
            &[(spend(&first, 0), signer)],
            asset,
            &[(a.public_key(), amount)],
            Value::Null,
        );
        assert_eq!(rejected(node.post(&tx, Mode::Sync)), rule);
    }
}

#[test]
fn blocks_are_cut_at_the_size_limit_in_arrival_order() {
    let node = Node::new(config(3, 200));
    let a = alice();
    let creates: Vec<Value> = (0..7).map(|i| create(&a, json!({"i": i}))).collect();
    let answers: Vec<_> = creates
        .iter()
        .map(|tx| node.submit(tx, Mode::Commit))
        .collect();
    for answer in answers {
        assert!(matches!(
            answer.blocking_recv().unwrap(),
            Outcome::Committed { .. }
        ));
    }
    let mut committed = Vec::new();
    let mut heights = Vec::new();
    while committed.len() < 7 {
        let event = node.next_event();
        assert!(
            event.transactions.len() <= 3,
            "block of {}",
            event.transactions.len()
        );
        heights.push(event.height);
        committed.extend(ids(&event));
    }
    let expected: Vec<String> = creates
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(committed, expected);
    assert_eq!(heights, (1..=heights.len() as u64).collect::<Vec<_>>());
}

#[test]
fn a_restarted_ledger_continues_the_chain_and_the_event_log() {
    let node = Node::new(config(1000, 0));
    let a = alice();
    for i in 0..3 {
        let tx = create(&a, json!({"i": i}));
        assert!(matches!(
            node.post(&tx, Mode::Commit),
            Outcome::Committed { .. }
        ));
    }
    let head = node.exchange.head();
    let node = node.restart(config(1000, 0));
    assert_eq!(node.exchange.head(), head);
    let tx = create(&a, json!({"i": 3}));
    assert!(matches!(
        node.post(&tx, Mode::Commit),
        Outcome::Committed { height: 4 }
    ));
    let event = node.next_event();
    assert_eq!((event.seq, event.height), (head + 1, 4));
    let log: Vec<u64> = Reader::new(node.store.clone())
        .read(1, 100)
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(log, (1..=head + 1).collect::<Vec<_>>());
}
