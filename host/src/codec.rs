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
        rejections: rejection_refs(event),
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
    Ok(Event {
        event_type: event_type(r.event_type)?,
        seq,
        height: r.height,
        block_hash: r.block_hash.into(),
        timestamp_ms: r.timestamp_ms,
        transactions: r
            .transactions
            .into_iter()
            .map(RString::from)
            .collect::<RVec<_>>(),
        rejections: rejections(r.rejections),
    })
}

const SUMMARIZED_V1: u8 = 1;

#[derive(Serialize)]
struct SummarizedRef<'a> {
    event_type: u32,
    height: u64,
    block_hash: &'a str,
    timestamp_ms: u64,
    rejections: Vec<(&'a str, &'a str)>,
    summaries: &'a str,
}

#[derive(Deserialize)]
struct Summarized {
    event_type: u32,
    height: u64,
    block_hash: String,
    timestamp_ms: u64,
    rejections: Vec<(String, String)>,
    summaries: String,
}

/// Writes `event` without its sequence number and its transactions, and
/// `summaries` (its transactions' summaries, encoded as plugin-api's
/// `summaries` module does), into `buf`, replacing its contents: the event
/// log's record of what a stream reads of an event.
pub fn encode_summarized(event: &Event, summaries: &str, buf: &mut Vec<u8>) {
    let record = SummarizedRef {
        event_type: event.event_type.id(),
        height: event.height,
        block_hash: &event.block_hash,
        timestamp_ms: event.timestamp_ms,
        rejections: rejection_refs(event),
        summaries,
    };
    buf.clear();
    buf.push(SUMMARIZED_V1);
    let encoded = postcard::to_extend(&record, std::mem::take(buf))
        .expect("plain strings and integers always encode into a Vec");
    *buf = encoded;
}

/// Reads what [`encode_summarized`] wrote: the event, numbered `seq`, with
/// no transactions, and its summaries.
pub fn decode_summarized(seq: u64, bytes: &[u8]) -> Result<(Event, String), String> {
    let (tag, body) = bytes.split_first().ok_or("empty record")?;
    if *tag != SUMMARIZED_V1 {
        return Err(format!("unknown record format {tag}"));
    }
    let r: Summarized = postcard::from_bytes(body).map_err(|e| e.to_string())?;
    let event = Event {
        event_type: event_type(r.event_type)?,
        seq,
        height: r.height,
        block_hash: r.block_hash.into(),
        timestamp_ms: r.timestamp_ms,
        transactions: RVec::new(),
        rejections: rejections(r.rejections),
    };
    Ok((event, r.summaries))
}

fn rejection_refs(event: &Event) -> Vec<(&str, &str)> {
    event
        .rejections
        .iter()
        .map(|r| (r.transaction_id.as_str(), r.reason.as_str()))
        .collect()
}

fn rejections(pairs: Vec<(String, String)>) -> RVec<Rejection> {
    pairs
        .into_iter()
        .map(|(id, reason)| Rejection {
            transaction_id: id.into(),
            reason: reason.into(),
        })
        .collect()
}

fn event_type(id: u32) -> Result<EventType, String> {
    EventType::from_id(id).ok_or_else(|| format!("unknown event type {id}"))
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

    #[test]
    fn summarized_events_round_trip_without_their_transactions() {
        let mut buf = Vec::new();
        for e in [event(0, 0), event(3, 0), event(5, 4)] {
            encode_summarized(&e, "+1:t6:CREATE1;1:t0;", &mut buf);
            let (header, summaries) = decode_summarized(e.seq, &buf).unwrap();
            assert_eq!(
                header,
                Event {
                    transactions: RVec::new(),
                    ..e
                }
            );
            assert_eq!(summaries, "+1:t6:CREATE1;1:t0;");
        }
        assert!(decode_summarized(1, &[2]).is_err());
    }
}
