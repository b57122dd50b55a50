//! Splinter scabbard's state-delta events, for the ledger's state: its set
//! of unspent outputs.
//!
//! Each committed block is one event, `{"id": "<block hash>",
//! "state_changes": [...]}`: in block order, for each transaction, a
//! `{"Delete": {"key": <address>}}` for each output its inputs spend, then a
//! `{"Set": {"key": <address>, "value": [bytes]}}` for each output it
//! creates, the bytes being the output object's canonical JSON (keys
//! sorted, no whitespace) as it appears in the transaction.
//!
//! An output's address is 70 hex digits: the namespace prefix, the first 3
//! bytes of `sha3_256("eventhost-output")`, then `sha3_256("<transaction
//! id>:<output index>")`, the index in decimal. So a client can compute the
//! address of any output it knows of.

use serde::Serialize;
use serde_json::Value;
use sha3::{Digest, Sha3_256};

/// The header a Splinter client names its protocol version in, and the
/// server answers with the version it speaks.
pub const VERSION_HEADER: &str = "splinterprotocolversion";

/// The SplinterProtocolVersions spoken: 1 and 2 have the same events.
const VERSIONS: [u32; 2] = [1, 2];

/// The version to speak with a client that asked for `asked` (the latest
/// if it asked for none), or why not.
pub fn protocol_version<E>(asked: Option<Result<&str, E>>) -> Result<u32, String> {
    let latest = VERSIONS[VERSIONS.len() - 1];
    let Some(asked) = asked else {
        return Ok(latest);
    };
    asked
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|v| VERSIONS.contains(v))
        .ok_or_else(|| {
            "unsupported SplinterProtocolVersion; this node speaks versions 1 and 2".into()
        })
}

/// The namespace the addresses of outputs live under.
const NAMESPACE: &str = "eventhost-output";

/// The address of output `index` of transaction `tx_id`.
pub fn address(tx_id: &str, index: u64) -> String {
    let prefix = Sha3_256::digest(NAMESPACE.as_bytes());
    let output = Sha3_256::digest(format!("{tx_id}:{index}").as_bytes());
    let mut hex = String::with_capacity(70);
    for byte in prefix[..3].iter().chain(output.iter()) {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

#[derive(Serialize)]
pub struct StateDeltaEvent<'a> {
    id: &'a str,
    state_changes: Vec<StateChange>,
}

#[derive(Serialize)]
enum StateChange {
    Set { key: String, value: Vec<u8> },
    Delete { key: String },
}

/// The event for a committed block with these transactions (JSON texts);
/// unreadable transactions (reported by the other streams) are left out.
pub fn event<'a>(block_hash: &'a str, transactions: &[impl AsRef<str>]) -> StateDeltaEvent<'a> {
    let mut state_changes = Vec::new();
    for json in transactions {
        let Ok(tx) = serde_json::from_str::<Value>(json.as_ref()) else {
            continue;
        };
        let Some(id) = tx["id"].as_str() else {
            continue;
        };
        for input in tx["inputs"].as_array().into_iter().flatten() {
            let fulfills = &input["fulfills"];
            if let (Some(spent), Some(index)) = (
                fulfills["transaction_id"].as_str(),
                fulfills["output_index"].as_u64(),
            ) {
                state_changes.push(StateChange::Delete {
                    key: address(spent, index),
                });
            }
        }
        for (index, output) in tx["outputs"].as_array().into_iter().flatten().enumerate() {
            state_changes.push(StateChange::Set {
                key: address(id, index as u64),
                value: canonical(output).into_bytes(),
            });
        }
    }
    StateDeltaEvent {
        id: block_hash,
        state_changes,
    }
}

/// JSON with object keys sorted and no whitespace, whatever order the map keeps.
fn canonical(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by_key(|(k, _)| *k);
            let fields: Vec<String> = entries
                .into_iter()
                .map(|(k, v)| format!("{}:{}", Value::String(k.clone()), canonical(v)))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(canonical).collect();
            format!("[{}]", items.join(","))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_versions_1_and_2_are_spoken() {
        let asked = |v: &str| protocol_version(Some(Ok::<_, ()>(v)));
        assert_eq!(protocol_version::<()>(None), Ok(2));
        assert_eq!(asked("1"), Ok(1));
        assert_eq!(asked("2"), Ok(2));
        assert!(asked("3").unwrap_err().contains("versions 1 and 2"));
    }

    #[test]
    fn addresses_are_70_hex_digits_under_one_prefix() {
        let a = address("ab", 0);
        assert_eq!(a.len(), 70);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(a[..6], address("cd", 1)[..6]);
        assert_ne!(a, address("ab", 1));
    }

    #[test]
    fn spent_outputs_are_deleted_and_new_ones_set() {
        let transfer = r#"{"id":"t2","inputs":[{"fulfills":{"output_index":0,"transaction_id":"t1"}}],
            "outputs":[{"public_keys":["k"],"amount":"1"}]}"#;
        let json = serde_json::to_string(&event("h", &[transfer])).unwrap();
        let set_value: Vec<u8> = br#"{"amount":"1","public_keys":["k"]}"#.to_vec();
        assert_eq!(
            json,
            format!(
                r#"{{"id":"h","state_changes":[{{"Delete":{{"key":"{}"}}}},{{"Set":{{"key":"{}","value":{}}}}}]}}"#,
                address("t1", 0),
                address("t2", 0),
                serde_json::to_string(&set_value).unwrap()
            )
        );
    }
}
