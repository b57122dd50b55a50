//! Bytes → a stream query (`?q=`) and a transaction: parsing, checking and
//! evaluating never panic, whatever the query and the JSON. The input's
//! first line is the query, the rest the transaction's JSON.
//!
//! Beyond not panicking: an error points inside the query and is one
//! non-empty line; a query's normal form parses back to the same normal
//! form and selects the same messages (clients share evaluations by it).

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use stream_query::{Block, Limits, Query, Scope, Subject, Transaction};

struct Tx {
    id: String,
    operation: String,
    asset_ids: Vec<String>,
    public_keys: Vec<String>,
    json: Option<Value>,
}

impl Transaction for Tx {
    fn height(&self) -> u64 {
        7
    }
    fn id(&self) -> &str {
        &self.id
    }
    fn operation(&self) -> &str {
        &self.operation
    }
    fn asset_ids(&self) -> &[String] {
        &self.asset_ids
    }
    fn public_keys(&self) -> &[String] {
        &self.public_keys
    }
    fn json(&self) -> Option<&Value> {
        self.json.as_ref()
    }
}

struct Blk;

impl Block for Blk {
    fn height(&self) -> u64 {
        7
    }
    fn hash(&self) -> &str {
        "4957744b3ac54434b8270f2c854cc1040228c82ea4e72d66d2887a4d3e30b317"
    }
    fn transaction_count(&self) -> u64 {
        2
    }
}

/// The strings of `json` at `key`, a list or a single string.
fn strings(json: Option<&Value>, key: &str) -> Vec<String> {
    match json.and_then(|j| j.get(key)) {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (query, json) = text.split_once('\n').unwrap_or((text, ""));
    let json: Option<Value> = serde_json::from_str(json).ok();
    let tx = Tx {
        id: strings(json.as_ref(), "id").concat(),
        operation: strings(json.as_ref(), "operation").concat(),
        asset_ids: strings(json.as_ref(), "asset_ids"),
        public_keys: strings(json.as_ref(), "public_keys"),
        json,
    };
    let limits = Limits::default();
    for (scope, subject) in [
        (Scope::Transactions, Subject::Transaction(&tx)),
        (Scope::Blocks, Subject::Block(&Blk)),
    ] {
        match Query::parse(query, scope, &limits) {
            Ok(parsed) => {
                let matched = parsed.matches(subject);
                // The normal form may be longer (`1e3` is `1000`), never deeper.
                let relaxed = Limits {
                    max_bytes: usize::MAX,
                    ..limits.clone()
                };
                let normal = parsed.normal_form();
                let again = Query::parse(normal, scope, &relaxed)
                    .unwrap_or_else(|e| panic!("the normal form {normal:?} does not parse: {e}"));
                assert_eq!(again.normal_form(), normal, "the normal form is not stable");
                assert_eq!(
                    again.matches(subject),
                    matched,
                    "{normal:?} selects otherwise"
                );
            }
            Err(error) => {
                assert!(error.position <= query.len(), "{error:?} is past the end");
                assert!(!error.message.trim().is_empty(), "empty message");
                assert!(
                    !error.message.chars().any(eventhost_fuzz::breaks_line),
                    "not one line: {error:?}"
                );
            }
        }
    }
});
