//! Known-answer tests: transactions made by the real BigchainDB and
//! Planetmint Python drivers (tests/fixtures/vectors, see its README), each
//! with the verdict the reference server code gives.

use eventhost::sources::ledger::state::{self, BlockView, LedgerView, OutputState, StateError};
use eventhost::sources::ledger::transaction::{OutputRef, Rule, Transaction};
use eventhost::store::StoreError;
use serde_json::Value;

/// Committed state with nothing in it.
struct Empty;

impl LedgerView for Empty {
    fn contains(&self, _: &str) -> Result<bool, StoreError> {
        Ok(false)
    }
    fn output(&self, _: &OutputRef) -> Result<Option<OutputState>, StoreError> {
        Ok(None)
    }
}

fn vectors(family: &str) -> Vec<Value> {
    let path = format!(
        "{}/../tests/fixtures/vectors/{family}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Where this node deliberately differs from the reference, and why.
fn deviation(family: &str, name: &str) -> Option<&'static str> {
    match (family, name) {
        // The reference stores outputs whose uri contradicts their details;
        // this node refuses such inconsistent transactions.
        (_, "create-output-uri-mismatch") => Some("ValidationError"),
        _ => None,
    }
}

/// The verdict of this node: None if valid, else the rule broken.
fn verdict(vector: &Value) -> Option<Rule> {
    let mut committed = Vec::new();
    for input in vector["input_transactions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        committed
            .push(Transaction::parse(input.clone()).expect("the spent transactions are valid"));
    }
    let tx = match Transaction::parse(vector["transaction"].clone()) {
        Ok(tx) => tx,
        Err(rejected) => return Some(rejected.rule),
    };
    let mut view = BlockView::new(&Empty);
    for input in &committed {
        view.apply(input);
    }
    match state::validate(&tx, &view) {
        Ok(()) => None,
        Err(StateError::Rejected(r)) => Some(r.rule),
        Err(StateError::Store(e)) => panic!("{e}"),
    }
}

fn check_family(family: &str) {
    let vectors = vectors(family);
    assert!(vectors.len() > 15, "{family}: too few vectors");
    let mut failures = Vec::new();
    for v in &vectors {
        let name = v["name"].as_str().unwrap();
        let expected = match deviation(family, name) {
            Some(rule) => Some(rule.to_owned()),
            None if v["valid"] == true => None,
            None => Some(v["expected_error"].as_str().unwrap().to_owned()),
        };
        let got = verdict(v).map(|r| r.as_str().to_owned());
        if got != expected {
            failures.push(format!("{name}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{family}:\n{}", failures.join("\n"));
}

#[test]
fn bigchaindb_2_0_vectors_get_the_reference_verdicts() {
    check_family("bigchaindb-2.0");
}

#[test]
fn planetmint_3_0_vectors_get_the_reference_verdicts() {
    check_family("planetmint-3.0");
}

#[test]
fn ids_match_the_drivers() {
    for family in ["bigchaindb-2.0", "planetmint-3.0"] {
        let valid = vectors(family).into_iter().filter(|v| {
            v["valid"] == true && deviation(family, v["name"].as_str().unwrap()).is_none()
        });
        for v in valid {
            let tx = Transaction::parse(v["transaction"].clone()).unwrap();
            assert_eq!(tx.id, v["id"].as_str().unwrap(), "{}", v["name"]);
        }
    }
}

#[test]
fn a_reordered_threshold_fulfillment_cannot_give_a_second_id() {
    use eventhost::sources::ledger::conditions::Fulfillment;
    use eventhost::sources::ledger::transaction::id_of;
    let vector = vectors("bigchaindb-2.0")
        .into_iter()
        .find(|v| v["name"] == "transfer-threshold-2of2")
        .unwrap();
    let mut tx = vector["transaction"].clone();
    let uri = tx["inputs"][0]["fulfillment"].as_str().unwrap().to_owned();
    let Fulfillment::Threshold {
        mut subfulfillments,
        subconditions,
    } = Fulfillment::from_uri(&uri).unwrap()
    else {
        panic!("not a threshold fulfillment");
    };
    subfulfillments.reverse();
    // Encode the reversed set by hand: to_uri would sort it back.
    let reordered = Fulfillment::Threshold {
        subfulfillments,
        subconditions,
    };
    let sorted = reordered.to_uri();
    assert_eq!(sorted, uri, "to_uri writes the canonical order");
    let der = base64_url_decode(&uri);
    let swapped = swap_set_elements(&der);
    tx["inputs"][0]["fulfillment"] = Value::String(base64_url_encode(&swapped));
    tx["id"] = Value::String(id_of(&tx));
    let err = Transaction::parse(tx).unwrap_err();
    assert_eq!(err.rule, Rule::InvalidSignature);
    assert!(err.message.contains("canonical DER"), "{err}");
}

fn base64_url_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

fn base64_url_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Swaps the two Ed25519 fulfillments (each `a4 64 …`, 102 bytes) inside a
/// 2-of-2 threshold fulfillment's subfulfillment set.
fn swap_set_elements(der: &[u8]) -> Vec<u8> {
    let first = der.windows(2).position(|w| w == [0xa4, 0x64]).unwrap();
    let (a, b) = (first, first + 102);
    assert_eq!(&der[b..b + 2], [0xa4, 0x64]);
    let mut out = der.to_vec();
    out[a..a + 102].copy_from_slice(&der[b..b + 102]);
    out[b..b + 102].copy_from_slice(&der[a..a + 102]);
    out
}
