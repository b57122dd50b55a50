//! The JSON messages each stream sends for an event.
//!
//! Each message is serialized once, into a reference-counted buffer that
//! every client shares: sending it to a client costs a reference count.
//!
//! The messages are made from the transactions' summaries ([`TxSummary`]):
//! a live event's are read from its transactions' JSON ([`render`]); a
//! replayed event's come with it from the log ([`render_summarized`]),
//! where the host stored them at commit. Either way the same rules below
//! make the messages.

use std::sync::Arc;

use eventhost_plugin_api::{BLOCK_INVALID, BLOCK_VALID, Event};
use serde::Serialize;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::state_delta;
use crate::stream::Stream;
use eventhost_plugin_api::tx::TxSummary;

/// A serialized message, ready for any number of clients.
pub type Text = Utf8Bytes;

/// An event's messages for the streams that wanted them.
pub struct Rendered {
    /// Per stream, its messages in the order they go out: on a transaction
    /// stream, message `i` is about `txs[i]`; a block stream has one.
    pub streams: Vec<(Stream, Vec<Text>)>,
    /// The transactions that could be read (for a BLOCK_VALID event with a
    /// transaction stream wanted), each with its index in the event.
    pub txs: Vec<(usize, Arc<TxSummary>)>,
    /// Why transactions were left out: one line each, for the log.
    pub skipped: Vec<String>,
    /// How many transactions the event has, readable or not.
    pub transaction_count: usize,
}

/// `/valid_transactions`: the keys of BigchainDB 2.x (`asset_id`) and of
/// Planetmint (`asset_ids`), each server's own keys in its own order:
/// `{"height":…,"asset_id":…,"asset_ids":[…],"transaction_id":…}`.
fn valid_transaction(height: u64, tx: &TxSummary) -> Text {
    let mut m = Message::new(96 + 3 * tx.id.len());
    m.key("{\"height\":");
    m.number(height);
    m.key(",\"asset_id\":");
    m.string(tx.asset_id());
    m.key(",\"asset_ids\":[");
    for (i, id) in tx.asset_ids.iter().enumerate() {
        if i > 0 {
            m.key(",");
        }
        m.string(id);
    }
    m.key("],\"transaction_id\":");
    m.string(&tx.id);
    m.key("}");
    m.text()
}

/// `/valid_tx`: BigchainDB 1.x, where a block was known by its hash:
/// `{"tx_id":…,"asset_id":…,"block_id":…}`.
fn valid_tx(block_hash: &str, tx: &TxSummary) -> Text {
    let mut m = Message::new(64 + 3 * tx.id.len());
    m.key("{\"tx_id\":");
    m.string(&tx.id);
    m.key(",\"asset_id\":");
    m.string(tx.asset_id());
    m.key(",\"block_id\":");
    m.string(block_hash);
    m.key("}");
    m.text()
}

/// A message of a transaction stream, written as serde_json writes it, by
/// hand: serde_json escapes a string a byte at a time, which was a fifth
/// of replay's CPU once the JSON was no longer parsed (row 5b, profile of
/// 2026-12-07), and one message is written per transaction per stream.
/// Ids and keys need no escaping; that is checked in one pass the compiler
/// vectorizes, and serde_json escapes the rare string that does.
struct Message(Vec<u8>);

impl Message {
    fn new(capacity: usize) -> Message {
        Message(Vec::with_capacity(capacity))
    }

    /// JSON punctuation and keys, as they are.
    fn key(&mut self, text: &str) {
        self.0.extend_from_slice(text.as_bytes());
    }

    fn number(&mut self, n: u64) {
        self.0.extend_from_slice(n.to_string().as_bytes());
    }

    fn string(&mut self, s: &str) {
        let plain = s.bytes().fold(true, |plain, b| {
            plain & (b >= 0x20) & (b != b'"') & (b != b'\\')
        });
        if plain {
            self.0.push(b'"');
            self.0.extend_from_slice(s.as_bytes());
            self.0.push(b'"');
        } else {
            // Writing a string into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut self.0, s);
        }
    }

    fn text(self) -> Text {
        // Whole strings and ASCII punctuation: still UTF-8.
        String::from_utf8(self.0).unwrap_or_default().into()
    }
}

/// `/valid_blocks`, as Planetmint serves it.
#[derive(Serialize)]
struct ValidBlock<'a> {
    height: u64,
    hash: &'a str,
    transaction_ids: Vec<&'a str>,
}

/// `/invalid_blocks`: the rejected proposal and why each transaction was refused.
#[derive(Serialize)]
struct InvalidBlock<'a> {
    height: u64,
    hash: &'a str,
    rejected: Vec<Rejected<'a>>,
}

#[derive(Serialize)]
struct Rejected<'a> {
    transaction_id: &'a str,
    reason: &'a str,
}

/// Renders `event` for every stream `wanted` accepts (streams nobody
/// listens to cost nothing), reading its transactions' summaries from
/// their JSON.
pub fn render(event: &Event, wanted: impl Fn(Stream) -> bool) -> Rendered {
    render_with(event, event.transactions.len(), wanted, || {
        event.transactions.iter().map(|json| TxSummary::parse(json))
    })
}

/// Renders an event read from the log with its transactions' summaries
/// (`Context::read_summaries`: `event` has no transactions) as [`render`]
/// renders it whole, for every stream but `state_deltas`, which is made of
/// the transactions themselves.
pub fn render_summarized(
    event: &Event,
    transactions: Vec<Result<TxSummary, String>>,
    wanted: impl Fn(Stream) -> bool,
) -> Rendered {
    debug_assert!(
        !wanted(Stream::StateDeltas),
        "state deltas need the transactions"
    );
    render_with(event, transactions.len(), wanted, || transactions)
}

/// Renders `event`, of `transaction_count` transactions whose summaries
/// `summaries` gives (read only if a transaction stream is wanted).
fn render_with<I: IntoIterator<Item = Result<TxSummary, String>>>(
    event: &Event,
    transaction_count: usize,
    wanted: impl Fn(Stream) -> bool,
    summaries: impl FnOnce() -> I,
) -> Rendered {
    let mut rendered = Rendered {
        streams: Vec::new(),
        txs: Vec::new(),
        skipped: Vec::new(),
        transaction_count,
    };
    let wanted: Vec<Stream> = Stream::ALL
        .into_iter()
        .filter(|s| s.event_type() == event.event_type && wanted(*s))
        .collect();
    if wanted.is_empty() {
        return rendered;
    }
    if event.event_type == BLOCK_INVALID {
        let rejected = event
            .rejections
            .iter()
            .map(|r| Rejected {
                transaction_id: &r.transaction_id,
                reason: &r.reason,
            })
            .collect();
        let message = block_message(&InvalidBlock {
            height: event.height,
            hash: &event.block_hash,
            rejected,
        });
        rendered
            .streams
            .push((Stream::InvalidBlocks, vec![message]));
    } else if event.event_type == BLOCK_VALID {
        rendered.txs = readable(event.height, summaries(), &mut rendered.skipped);
        let txs: Vec<&TxSummary> = rendered.txs.iter().map(|(_, tx)| &**tx).collect();
        for stream in wanted {
            let messages = match stream {
                Stream::ValidTransactions => txs
                    .iter()
                    .map(|tx| valid_transaction(event.height, tx))
                    .collect(),
                Stream::ValidTx => txs
                    .iter()
                    .map(|tx| valid_tx(&event.block_hash, tx))
                    .collect(),
                Stream::ValidBlocks => vec![block_message(&ValidBlock {
                    height: event.height,
                    hash: &event.block_hash,
                    transaction_ids: txs.iter().map(|tx| tx.id.as_str()).collect(),
                })],
                Stream::StateDeltas => vec![block_message(&state_delta::event(
                    &event.block_hash,
                    &event.transactions,
                ))],
                Stream::InvalidBlocks => continue,
            };
            rendered.streams.push((stream, messages));
        }
    }
    rendered
}

/// The block's transactions that can be read, in block order, from the
/// summaries of all of them.
fn readable(
    height: u64,
    summaries: impl IntoIterator<Item = Result<TxSummary, String>>,
    skipped: &mut Vec<String>,
) -> Vec<(usize, Arc<TxSummary>)> {
    let mut txs = Vec::new();
    for (i, summary) in summaries.into_iter().enumerate() {
        match summary {
            Ok(tx) => txs.push((i, Arc::new(tx))),
            Err(e) => skipped.push(format!(
                "transaction {} of the block at height {height} is left out of the streams: {e}",
                i + 1,
            )),
        }
    }
    txs
}

fn block_message(message: &impl Serialize) -> Text {
    // Strings, integers and lists of them always serialize.
    serde_json::to_string(message).unwrap_or_default().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventhost_plugin_api::Rejection;

    fn event(event_type: eventhost_plugin_api::EventType, txs: &[&str]) -> Event {
        Event {
            event_type,
            seq: 1,
            height: 7,
            block_hash: "ab".into(),
            timestamp_ms: 0,
            transactions: txs.iter().map(|t| (*t).into()).collect(),
            rejections: vec![Rejection {
                transaction_id: "t9".into(),
                reason: "double \"spend\"".into(),
            }]
            .into(),
        }
    }

    fn texts(rendered: &Rendered, stream: Stream) -> Vec<&str> {
        let (_, messages) = rendered.streams.iter().find(|(s, _)| *s == stream).unwrap();
        messages.iter().map(|m| m.as_str()).collect()
    }

    #[test]
    fn each_stream_gets_its_dialect_in_block_order() {
        let e = event(
            BLOCK_VALID,
            &[
                r#"{"id":"t1","operation":"CREATE","asset":{"data":{}}}"#,
                r#"{"id":"t2","operation":"TRANSFER","assets":[{"id":"a1"},{"id":"a2"}]}"#,
            ],
        );
        let r = render(&e, |_| true);
        assert!(r.skipped.is_empty());
        assert_eq!(
            texts(&r, Stream::ValidTransactions),
            [
                r#"{"height":7,"asset_id":"t1","asset_ids":["t1"],"transaction_id":"t1"}"#,
                r#"{"height":7,"asset_id":"a1","asset_ids":["a1","a2"],"transaction_id":"t2"}"#,
            ]
        );
        assert_eq!(
            texts(&r, Stream::ValidTx),
            [
                r#"{"tx_id":"t1","asset_id":"t1","block_id":"ab"}"#,
                r#"{"tx_id":"t2","asset_id":"a1","block_id":"ab"}"#,
            ]
        );
        assert_eq!(
            texts(&r, Stream::ValidBlocks),
            [r#"{"height":7,"hash":"ab","transaction_ids":["t1","t2"]}"#]
        );
        assert!(!r.streams.iter().any(|(s, _)| *s == Stream::InvalidBlocks));
    }

    #[test]
    fn transaction_messages_are_the_json_serde_json_writes() {
        let odd = "q\"b\\s/\u{1}\n\u{e9}\u{7f}";
        let tx = TxSummary {
            id: odd.to_owned(),
            operation: "CREATE".to_owned(),
            asset_ids: vec![odd.to_owned(), "a2".to_owned()],
            public_keys: Vec::new(),
        };
        let expected = serde_json::json!({
            "height": u64::MAX,
            "asset_id": odd,
            "asset_ids": [odd, "a2"],
            "transaction_id": odd,
        });
        let text = valid_transaction(u64::MAX, &tx);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).unwrap(),
            expected
        );
        let escaped = serde_json::to_string(odd).unwrap();
        assert_eq!(
            text.as_str(),
            format!(
                r#"{{"height":{},"asset_id":{escaped},"asset_ids":[{escaped},"a2"],"transaction_id":{escaped}}}"#,
                u64::MAX
            )
        );
        assert_eq!(
            valid_tx(odd, &tx).as_str(),
            format!(r#"{{"tx_id":{escaped},"asset_id":{escaped},"block_id":{escaped}}}"#)
        );
    }

    #[test]
    fn invalid_blocks_name_each_rejection() {
        let r = render(&event(BLOCK_INVALID, &["{}"]), |_| true);
        assert_eq!(r.streams.len(), 1);
        assert_eq!(
            texts(&r, Stream::InvalidBlocks),
            [
                r#"{"height":7,"hash":"ab","rejected":[{"transaction_id":"t9","reason":"double \"spend\""}]}"#
            ]
        );
    }

    #[test]
    fn unreadable_transactions_are_skipped_and_reported() {
        let e = event(BLOCK_VALID, &["not json", r#"{"id":"t2"}"#]);
        let r = render(&e, |s| s == Stream::ValidTx);
        assert_eq!(r.streams.len(), 1);
        assert_eq!(texts(&r, Stream::ValidTx).len(), 1);
        assert_eq!(r.skipped.len(), 1);
        assert!(
            r.skipped[0].starts_with("transaction 1 of the block at height 7"),
            "{:?}",
            r.skipped
        );
    }

    #[test]
    fn an_event_read_with_its_summaries_renders_as_the_whole_event() {
        let e = event(
            BLOCK_VALID,
            &[
                r#"{"id":"t1","operation":"CREATE","asset":{"data":{}}}"#,
                "not json",
                r#"{"id":"t2","operation":"TRANSFER","assets":[{"id":"a1"},{"id":"a2"}]}"#,
            ],
        );
        let summaries: Vec<_> = e.transactions.iter().map(|t| TxSummary::parse(t)).collect();
        let header = Event {
            transactions: Default::default(),
            ..e.clone()
        };
        for stream in Stream::ALL
            .into_iter()
            .filter(|s| *s != Stream::StateDeltas)
        {
            let whole = render(&e, |s| s == stream);
            let summarized = render_summarized(&header, summaries.clone(), |s| s == stream);
            let texts = |r: &Rendered| {
                r.streams
                    .iter()
                    .map(|(s, m)| (*s, m.iter().map(|t| t.as_str().to_owned()).collect()))
                    .collect::<Vec<(Stream, Vec<String>)>>()
            };
            assert_eq!(texts(&summarized), texts(&whole), "{stream:?}");
            assert_eq!(summarized.skipped, whole.skipped);
            assert_eq!(summarized.txs, whole.txs);
            assert_eq!(summarized.transaction_count, 3);
        }
    }

    #[test]
    fn nothing_is_rendered_for_streams_nobody_wants() {
        let r = render(&event(BLOCK_VALID, &["not json"]), |_| false);
        assert!(r.streams.is_empty() && r.skipped.is_empty());
    }
}
