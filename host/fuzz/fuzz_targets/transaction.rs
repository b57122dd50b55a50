//! JSON bytes → `Transaction::parse` → `state::validate`: never panics, and
//! the verdicts agree with each other. Each input is checked as received
//! (the id and signature checks) and re-signed with the fixture keys (the
//! schema, amount and state rules; see `eventhost_fuzz::resign`).

#![no_main]

use eventhost::sources::ledger::state::{self, BlockView, LedgerView, StateError};
use eventhost::sources::ledger::transaction::{Operation, Rule, Transaction, id_of};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(json) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    check(json.clone());
    if let Some(resigned) = eventhost_fuzz::resign(json) {
        check(resigned);
    }
});

fn check(json: Value) {
    let tx = match Transaction::parse(json.clone()) {
        Ok(tx) => tx,
        Err(rejected) => {
            assert!(!rejected.message.is_empty(), "{rejected:?}");
            return;
        }
    };
    assert_eq!(tx.id, id_of(&json));
    let _ = (tx.public_keys(), tx.asset_data(), tx.metadata());

    let on_empty = rule(state::validate(&tx, &eventhost_fuzz::Empty));
    match tx.operation {
        Operation::Create => assert_eq!(on_empty, None),
        Operation::Transfer => assert_eq!(on_empty, Some(Rule::InputDoesNotExist)),
    }

    // The block view must give the verdict plain validation gives, and a
    // transaction it admitted is then a duplicate with its outputs spent.
    let ledger = eventhost_fuzz::ledger();
    let verdict = rule(state::validate(&tx, ledger));
    let mut block = BlockView::new(ledger);
    assert_eq!(rule(block.admit(&tx)), verdict);
    if verdict.is_none() {
        assert_eq!(
            rule(state::validate(&tx, &block)),
            Some(Rule::DuplicateTransaction)
        );
        for spent in tx.spends() {
            let output = block.output(spent).unwrap().expect("spent output exists");
            assert_eq!(output.spent_by.as_deref(), Some(tx.id.as_str()));
        }
    }
}

/// The rule broken, if any; the fuzz views never fail to read.
fn rule(verdict: Result<(), StateError>) -> Option<Rule> {
    match verdict {
        Ok(()) => None,
        Err(StateError::Rejected(r)) => {
            assert!(!r.message.is_empty(), "{r:?}");
            Some(r.rule)
        }
        Err(StateError::Store(e)) => panic!("the fuzz views cannot fail: {e}"),
    }
}
