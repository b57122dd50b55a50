//! What the fuzz targets share: the fixture ledger TRANSFERs are checked
//! against, and re-signing with the fixture keys.
//!
//! A mutated transaction almost never gets past the id check, and one with
//! a fixed-up id never past the signatures: the fuzzer cannot forge SHA3 or
//! Ed25519. [`resign`] redoes the cryptography the way a driver would, so
//! the schema, amount and state rules see mutated transactions too.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use ed25519_dalek::{Signer, SigningKey};
use eventhost::sources::ledger::conditions::{Details, Fulfillment};
use eventhost::sources::ledger::state::{BlockView, LedgerView, OutputState};
use eventhost::sources::ledger::transaction::{
    OutputRef, Transaction, id_of, signed_message, signing_base,
};
use eventhost::store::StoreError;
use serde_json::Value;

/// The driver-made vectors the seed corpus comes from (tests/fixtures/vectors).
const VECTOR_FILES: [&str; 2] = [
    include_str!("../../../tests/fixtures/vectors/bigchaindb-2.0.json"),
    include_str!("../../../tests/fixtures/vectors/planetmint-3.0.json"),
];

/// Committed state with nothing in it.
pub struct Empty;

impl LedgerView for Empty {
    fn contains(&self, _: &str) -> Result<bool, StoreError> {
        Ok(false)
    }

    fn output(&self, _: &OutputRef) -> Result<Option<OutputState>, StoreError> {
        Ok(None)
    }
}

struct Fixtures {
    /// Every transaction a fixture TRANSFER spends, counted as committed.
    ledger: BlockView<'static, Empty>,
    /// The fixtures' signing keys, by public key.
    keys: BTreeMap<[u8; 32], SigningKey>,
}

static FIXTURES: LazyLock<Fixtures> = LazyLock::new(|| {
    let vectors: Vec<Value> = VECTOR_FILES
        .iter()
        .flat_map(|text| serde_json::from_str::<Vec<Value>>(text).expect("fixture is JSON"))
        .collect();
    let mut ledger = BlockView::new(&Empty);
    let mut keys = BTreeMap::new();
    for vector in &vectors {
        for spent in vector["input_transactions"]
            .as_array()
            .into_iter()
            .flatten()
        {
            ledger.apply(&Transaction::parse(spent.clone()).expect("spent fixtures are valid"));
        }
        for key in vector["keys"]
            .as_object()
            .into_iter()
            .flat_map(|k| k.values())
        {
            let seed = unhex(key["seed_hex"].as_str().expect("fixture keys have seeds"));
            let signing = SigningKey::from_bytes(&seed);
            keys.insert(signing.verifying_key().to_bytes(), signing);
        }
    }
    // Re-signing what a driver made must change nothing, or the fuzzer
    // would be exploring transactions no driver writes.
    let mut accepted = 0;
    for tx in vectors.iter().map(|v| &v["transaction"]) {
        if Transaction::parse(tx.clone()).is_ok() {
            let resigned = resign_with(tx.clone(), &keys);
            assert_eq!(
                resigned.as_ref(),
                Some(tx),
                "resign changed a valid fixture"
            );
            accepted += 1;
        }
    }
    assert!(
        accepted >= 20,
        "only {accepted} fixture transactions are valid"
    );
    Fixtures { ledger, keys }
});

/// The fixture ledger: the CREATEs the fixture TRANSFERs spend, none spent.
pub fn ledger() -> &'static BlockView<'static, Empty> {
    &FIXTURES.ledger
}

fn unhex(hex: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(hex.as_bytes().chunks(2)) {
        let text = std::str::from_utf8(pair).expect("fixture hex is ASCII");
        *byte = u8::from_str_radix(text, 16).expect("fixture hex is hex");
    }
    out
}

/// `json` as a driver holding the fixture keys would have finished it:
/// each output's `condition.uri` derived from its details, every Ed25519
/// leaf with a fixture key signed over the transaction's message, the
/// fulfillments in canonical form and the id recomputed. Parts the
/// validator would refuse anyway (a malformed details, an unknown key, an
/// unparsable fulfillment) are left alone. `None` when `json` does not have
/// the shape the signing helpers need (an object whose `inputs`, if an
/// array, holds only objects).
pub fn resign(json: Value) -> Option<Value> {
    resign_with(json, &FIXTURES.keys)
}

fn resign_with(mut json: Value, keys: &BTreeMap<[u8; 32], SigningKey>) -> Option<Value> {
    let inputs_are_objects = match json.as_object()?.get("inputs") {
        Some(Value::Array(inputs)) => inputs.iter().all(Value::is_object),
        _ => true,
    };
    if !inputs_are_objects {
        return None;
    }
    if let Some(Value::Array(outputs)) = json.get_mut("outputs") {
        for condition in outputs.iter_mut().filter_map(|o| o.get_mut("condition")) {
            let Some(condition) = condition.as_object_mut() else {
                continue;
            };
            if let Some(Ok(details)) = condition.get("details").map(Details::from_json) {
                condition.insert("uri".into(), Value::String(details.condition().uri()));
            }
        }
    }
    let base = signing_base(&json);
    if let Some(Value::Array(inputs)) = json.get_mut("inputs") {
        for input in inputs {
            let Some(Ok(mut fulfillment)) =
                input["fulfillment"].as_str().map(Fulfillment::from_uri)
            else {
                continue;
            };
            let spent = input["fulfills"].as_object().map(|f| OutputRef {
                transaction_id: f
                    .get("transaction_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                output_index: f
                    .get("output_index")
                    .and_then(Value::as_u64)
                    .and_then(|n| u32::try_from(n).ok())
                    .unwrap_or_default(),
            });
            sign(
                &mut fulfillment,
                &signed_message(&base, spent.as_ref()),
                keys,
            );
            input["fulfillment"] = Value::String(fulfillment.to_uri());
        }
    }
    json["id"] = Value::String(id_of(&json));
    Some(json)
}

fn sign(fulfillment: &mut Fulfillment, message: &[u8; 32], keys: &BTreeMap<[u8; 32], SigningKey>) {
    match fulfillment {
        Fulfillment::Ed25519 {
            public_key,
            signature,
        } => {
            if let Some(key) = keys.get(public_key) {
                *signature = key.sign(message).to_bytes();
            }
        }
        Fulfillment::Threshold {
            subfulfillments, ..
        } => {
            for sub in subfulfillments {
                sign(sub, message, keys);
            }
        }
    }
}

/// Whether `c` would start a new line, or do worse, in a terminal or a log
/// viewer: control characters (C0, DEL, C1) and the Unicode line and
/// paragraph separators.
pub fn breaks_line(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}
