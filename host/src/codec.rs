//! The compact binary form of an event, shared by the event log and the
//! process-mode framing: a one-byte format tag followed by postcard.

use abi_stable::std_types::{RString, RVec};
use eventhost_plugin_api::{Event, EventType, Rejection};
use serde::{Deserialize, Serialize};

const RECORD_V1: u8 = 1;

#[derive(Serialize)]
struct RecordRef<'a> {
    event_type: u32,
    height: u64,
    block_hash: &'a str,
    timestamp_ms: u64,
    transactions: Vec<&'a str>,
    rejections: Vec<(&'a str, &'a str)>,
}

#[derive(Deserialize)]
struct Record {
    event_type: u32,
    height: u64,
    block_hash: String,
    timestamp_ms: u64,
    transactions: Vec<String>,
    rejections: Vec<(String, String)>,
}

/// Writes `event` (without its sequence number) into `buf`, replacing its contents.
pub fn encode_event(event: &Event, buf: &mut Vec<u8>) {
    let record = RecordRef {
        event_type: event.event_type.id(),
        height: event.height,
        block_hash: &event.block_hash,
        timestamp_ms: event.timestamp_ms,
        transactions: event.transactions.iter().map(RString::as_str).collect(),
        rejections: event
            .rejections
            .iter()
            .map(|r| (r.transaction_id.as_str(), r.reason.as_str()))
            .collect(),
    };
    buf.clear();
    buf.push(RECORD_V1);
    let encoded = postcard::to_extend(&record, std::mem::take(buf))
        .expect("plain strings and integers always encode into a Vec");
    *buf = encoded;
}

/// Reads an event [`encode_event`] wrote, giving it sequence number `seq`.
pub fn decode_event(seq: u64, bytes: &[u8]) -> Result<Event, String> {
    let (tag, body) = bytes.split_first().ok_or("empty record")?;
    if *tag != RECORD_V1 {
        return Err(format!("unknown record format {tag}"));
    }
    let r: Record = postcard::from_bytes(body).map_err(|e| e.to_string())?;
    let event_type = EventType::from_id(r.event_type)
        .ok_or_else(|| format!("unknown event type {}", r.event_type))?;
    Ok(Event {
        event_type,
        seq,
        height: r.height,
        block_hash: r.block_hash.into(),
        timestamp_ms: r.timestamp_ms,
        transactions: r
            .transactions
            .into_iter()
            .map(RString::from)
            .collect::<RVec<_>>(),
        rejections: r
            .rejections
            .into_iter()
            .map(|(id, reason)| Rejection {
                transaction_id: id.into(),
                reason: reason.into(),
            })
            .collect(),
    })
}

/// At least the length [`encode_event`] writes for `event` (the framing
/// of process mode sizes its frames by it without encoding twice): the
/// text, and a varint's most (10 bytes) for every length and number.
pub fn encoded_len_bound(event: &Event) -> usize {
    const VARINT: usize = 10;
    let text = |s: &str| VARINT + s.len();
    1 + 4 * VARINT
        + text(&event.block_hash)
        + event.transactions.iter().map(|t| text(t)).sum::<usize>()
        + event
            .rejections
            .iter()
            .map(|r| text(&r.transaction_id) + text(&r.reason))
            .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventhost_plugin_api::{BLOCK_INVALID, BLOCK_VALID};

    fn event(transactions: usize, rejections: usize) -> Event {
        Event {
            event_type: if rejections > 0 {
                BLOCK_INVALID
            } else {
                BLOCK_VALID
            },
            seq: 9,
            height: u64::MAX,
            block_hash: "ab".repeat(32).into(),
            timestamp_ms: u64::MAX,
            transactions: (0..transactions)
                .map(|i| RString::from("x".repeat(i * 37)))
                .collect(),
            rejections: (0..rejections)
                .map(|i| Rejection {
                    transaction_id: "t".repeat(i).into(),
                    reason: "r".repeat(200 * i).into(),
                })
                .collect(),
        }
    }

    #[test]
    fn events_round_trip_within_their_length_bound() {
        let mut buf = Vec::new();
        for e in [event(0, 0), event(1, 0), event(300, 0), event(5, 40)] {
            encode_event(&e, &mut buf);
            assert!(buf.len() <= encoded_len_bound(&e), "{} bytes", buf.len());
            assert_eq!(decode_event(e.seq, &buf).unwrap(), e);
        }
    }
}
