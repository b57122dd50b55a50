//! The JSON form of an [`Event`]: what the printer plugin writes, what
//! `eventhost replay` reads, and what stream and broker plugins build on.
//!
//! ```json
//! {"type":"BLOCK_VALID","seq":7,"height":7,"hash":"…","timestamp_ms":1732521600000,
//!  "transactions":[{…}],"rejections":[]}
//! ```
//! Transactions are embedded as JSON values, not strings.

use abi_stable::std_types::{RString, RVec};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::event::{Event, EventType, Rejection};

impl Event {
    /// The event as one line of JSON (no trailing newline).
    ///
    /// Transactions are copied verbatim: the host only publishes transactions
    /// that are single JSON values, so the output is valid JSON without
    /// re-parsing them.
    pub fn to_json(&self) -> String {
        let tx_bytes: usize = self.transactions.iter().map(|t| t.len() + 1).sum();
        let mut out = String::with_capacity(160 + self.block_hash.len() + tx_bytes);
        out.push_str("{\"type\":\"");
        out.push_str(self.event_type.name());
        out.push_str("\",\"seq\":");
        out.push_str(&self.seq.to_string());
        out.push_str(",\"height\":");
        out.push_str(&self.height.to_string());
        out.push_str(",\"hash\":");
        push_json_str(&mut out, &self.block_hash);
        out.push_str(",\"timestamp_ms\":");
        out.push_str(&self.timestamp_ms.to_string());
        out.push_str(",\"transactions\":[");
        for (i, tx) in self.transactions.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(tx);
        }
        out.push_str("],\"rejections\":[");
        for (i, r) in self.rejections.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("{\"transaction_id\":");
            push_json_str(&mut out, &r.transaction_id);
            out.push_str(",\"reason\":");
            push_json_str(&mut out, &r.reason);
            out.push('}');
        }
        out.push_str("]}");
        out
    }

    /// Parses the form [`Event::to_json`] writes. `seq` and `timestamp_ms`
    /// may be absent (they read as 0); `type` may be a name or an id.
    pub fn from_json(json: &str) -> Result<Event, String> {
        let raw: EventJson = serde_json::from_str(json).map_err(|e| e.to_string())?;
        let event_type = match &raw.event_type {
            TypeJson::Id(id) => EventType::from_id(*id),
            TypeJson::Name(name) => EventType::from_name(name),
        }
        .ok_or_else(|| {
            format!(
                "unknown event type {:?} (known: {})",
                raw.event_type,
                EventType::known()
            )
        })?;
        Ok(Event {
            event_type,
            seq: raw.seq,
            height: raw.height,
            block_hash: raw.hash.into(),
            timestamp_ms: raw.timestamp_ms,
            transactions: raw
                .transactions
                .into_iter()
                .map(|t| RString::from(String::from(Box::<str>::from(t))))
                .collect::<RVec<_>>(),
            rejections: raw
                .rejections
                .into_iter()
                .map(|r| Rejection {
                    transaction_id: r.transaction_id.into(),
                    reason: r.reason.into(),
                })
                .collect(),
        })
    }
}

fn push_json_str(out: &mut String, s: &str) {
    // Serializing a &str cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventJson {
    #[serde(rename = "type")]
    event_type: TypeJson,
    #[serde(default)]
    seq: u64,
    height: u64,
    hash: String,
    #[serde(default)]
    timestamp_ms: u64,
    #[serde(default)]
    transactions: Vec<Box<RawValue>>,
    #[serde(default)]
    rejections: Vec<RejectionJson>,
}

#[derive(Deserialize, Debug)]
#[serde(untagged)]
enum TypeJson {
    Id(u32),
    Name(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RejectionJson {
    transaction_id: String,
    reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{BLOCK_INVALID, BLOCK_VALID};

    fn sample() -> Event {
        Event {
            event_type: BLOCK_INVALID,
            seq: 9,
            height: 4,
            block_hash: "ab\"cd".into(),
            timestamp_ms: 17,
            transactions: vec![RString::from(r#"{"id":"t1","x":[1,2]}"#)].into(),
            rejections: vec![Rejection {
                transaction_id: "t1".into(),
                reason: "double spend of t0:0".into(),
            }]
            .into(),
        }
    }

    #[test]
    fn round_trips_through_json() {
        let e = sample();
        let json = e.to_json();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["type"], "BLOCK_INVALID");
        assert_eq!(v["transactions"][0]["x"][1], 2);
        assert_eq!(Event::from_json(&json).unwrap(), e);
    }

    #[test]
    fn accepts_numeric_type_and_missing_seq() {
        let e = Event::from_json(r#"{"type":1,"height":2,"hash":"h"}"#).unwrap();
        assert_eq!((e.event_type, e.seq, e.height), (BLOCK_VALID, 0, 2));
    }

    #[test]
    fn names_what_is_wrong() {
        let err = Event::from_json(r#"{"type":"BLOCK_MAYBE","height":2,"hash":"h"}"#).unwrap_err();
        assert!(err.contains("BLOCK_MAYBE"), "{err}");
        let err = Event::from_json(r#"{"type":1,"height":2,"hash":"h","colour":1}"#).unwrap_err();
        assert!(err.contains("colour"), "{err}");
    }
}
