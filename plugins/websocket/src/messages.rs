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

use std::fmt::Write;
use std::sync::Arc;

use eventhost_plugin_api::{BLOCK_INVALID, BLOCK_VALID, Event};
use serde::Serialize;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::state_delta;
use crate::stream::Stream;
use eventhost_plugin_api::summaries::{SummarizedEvent, SummaryView};
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

/// What a transaction stream's message says of a transaction: the same
/// whether its summary was read from its JSON ([`TxSummary`]) or borrowed
/// from the log's stored summaries ([`SummaryView`]).
pub trait Summary {
    fn id(&self) -> &str;
    /// The main asset, by plugin-api's rule (`TxSummary::asset_id`).
    fn asset_id(&self) -> &str;
    /// Never empty.
    fn asset_ids(&self) -> impl Iterator<Item = &str>;
}

impl Summary for TxSummary {
    fn id(&self) -> &str {
        &self.id
    }
    fn asset_id(&self) -> &str {
        TxSummary::asset_id(self)
    }
    fn asset_ids(&self) -> impl Iterator<Item = &str> {
        self.asset_ids.iter().map(String::as_str)
    }
}

impl Summary for SummaryView<'_, '_> {
    fn id(&self) -> &str {
        SummaryView::id(self)
    }
    fn asset_id(&self) -> &str {
        SummaryView::asset_id(self)
    }
    fn asset_ids(&self) -> impl Iterator<Item = &str> {
        SummaryView::asset_ids(self).iter().copied()
    }
}

/// The message about `tx` on a transaction `stream` of `event`.
fn transaction_message(stream: Stream, event: &Event, tx: &impl Summary) -> Option<Text> {
    match stream {
        Stream::ValidTransactions => Some(valid_transaction(event.height, tx)),
        Stream::ValidTx => Some(valid_tx(&event.block_hash, tx)),
        Stream::ValidBlocks | Stream::StateDeltas | Stream::InvalidBlocks => None,
    }
}

/// `/valid_transactions`: the keys of BigchainDB 2.x (`asset_id`) and of
/// Planetmint (`asset_ids`), each server's own keys in its own order:
/// `{"height":…,"asset_id":…,"asset_ids":[…],"transaction_id":…}`.
fn valid_transaction(height: u64, tx: &impl Summary) -> Text {
    let id = tx.id();
    let mut m = Message::new(96 + 3 * id.len());
    m.key("{\"height\":");
    m.number(height);
    m.key(",\"asset_id\":");
    m.string(tx.asset_id());
    m.key(",\"asset_ids\":[");
    for (i, asset) in tx.asset_ids().enumerate() {
        if i > 0 {
            m.key(",");
        }
        m.string(asset);
    }
    m.key("],\"transaction_id\":");
    m.string(id);
    m.key("}");
    m.text()
}

/// `/valid_tx`: BigchainDB 1.x, where a block was known by its hash:
/// `{"tx_id":…,"asset_id":…,"block_id":…}`.
fn valid_tx(block_hash: &str, tx: &impl Summary) -> Text {
    let id = tx.id();
    let mut m = Message::new(64 + 3 * id.len());
    m.key("{\"tx_id\":");
    m.string(id);
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
///
/// Written into a `String`, so that the text needs no UTF-8 check at the
/// end (that check was 3% of replay's CPU: row 5b, 2026-12-07).
struct Message(String);

impl Message {
    fn new(capacity: usize) -> Message {
        Message(String::with_capacity(capacity))
    }

    /// JSON punctuation and keys, as they are.
    fn key(&mut self, text: &str) {
        self.0.push_str(text);
    }

    fn number(&mut self, n: u64) {
        // Writing into a String cannot fail.
        let _ = write!(self.0, "{n}");
    }

    fn string(&mut self, s: &str) {
        let plain = s.bytes().fold(true, |plain, b| {
            plain & (b >= 0x20) & (b != b'"') & (b != b'\\')
        });
        if plain {
            self.0.push('"');
            self.0.push_str(s);
            self.0.push('"');
        } else {
            // A string always serializes.
            self.0
                .push_str(&serde_json::to_string(s).unwrap_or_default());
        }
    }

    fn text(self) -> Text {
        self.0.into()
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
        rendered
            .streams
            .push((Stream::InvalidBlocks, vec![invalid_block(event)]));
    } else if event.event_type == BLOCK_VALID {
        rendered.txs = readable(event.height, summaries(), &mut rendered.skipped);
        let txs: Vec<&TxSummary> = rendered.txs.iter().map(|(_, tx)| &**tx).collect();
        for stream in wanted {
            let messages = match stream {
                Stream::ValidTransactions | Stream::ValidTx => txs
                    .iter()
                    .filter_map(|tx| transaction_message(stream, event, *tx))
                    .collect(),
                Stream::ValidBlocks => vec![valid_block(
                    event,
                    txs.iter().map(|tx| tx.id.as_str()).collect(),
                )],
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

/// A replayed event's messages on `stream` (any but `state_deltas`), made
/// as [`render_summarized`] makes them, straight from the summaries the
/// host stored: for a client without a query, which needs no transaction's
/// summary kept, so that nothing is allocated per transaction but its
/// message (building and dropping each [`TxSummary`] was a fifth of
/// replay's CPU: row 5b, 2026-12-07). Unreadable transactions are left
/// out, as from the live stream.
pub fn render_replayed(read: &SummarizedEvent, stream: Stream) -> Result<Vec<Text>, String> {
    debug_assert!(
        stream != Stream::StateDeltas,
        "state deltas need the transactions"
    );
    let event = &read.event;
    if stream.event_type() != event.event_type {
        return Ok(Vec::new());
    }
    Ok(match stream {
        Stream::InvalidBlocks => vec![invalid_block(event)],
        Stream::ValidBlocks => {
            let mut ids = Vec::new();
            read.visit_transactions(|tx| ids.extend(tx.ok().map(|tx| tx.id())))?;
            vec![valid_block(event, ids)]
        }
        Stream::ValidTransactions | Stream::ValidTx | Stream::StateDeltas => {
            let mut messages = Vec::new();
            read.visit_transactions(|tx| {
                messages.extend(
                    tx.ok()
                        .and_then(|tx| transaction_message(stream, event, &tx)),
                )
            })?;
            messages
        }
    })
}

/// `/valid_blocks`' message of `event`, whose readable transactions have
/// these ids.
fn valid_block(event: &Event, transaction_ids: Vec<&str>) -> Text {
    block_message(&ValidBlock {
        height: event.height,
        hash: &event.block_hash,
        transaction_ids,
    })
}

/// `/invalid_blocks`' message of `event`.
fn invalid_block(event: &Event) -> Text {
    let rejected = event
        .rejections
        .iter()
        .map(|r| Rejected {
            transaction_id: &r.transaction_id,
            reason: &r.reason,
        })
        .collect();
    block_message(&InvalidBlock {
        height: event.height,
        hash: &event.block_hash,
        rejected,
    })
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
    fn a_replayed_event_renders_as_the_whole_event_without_summaries_kept() {
        for event_type in [BLOCK_VALID, BLOCK_INVALID] {
            let e = event(
                event_type,
                &[
                    r#"{"id":"t1","operation":"CREATE","asset":{"data":{}}}"#,
                    "not json",
                    r#"{"id":"t2","operation":"TRANSFER","assets":[{"id":"a1"},{"id":"a2"}]}"#,
                ],
            );
            let read = SummarizedEvent {
                event: eventhost_plugin_api::SharedEvent::new(Event {
                    transactions: Default::default(),
                    ..e.clone()
                }),
                encoded: eventhost_plugin_api::summaries::summarize(&e).into(),
            };
            for stream in Stream::ALL
                .into_iter()
                .filter(|s| *s != Stream::StateDeltas)
            {
                let whole = render(&e, |s| s == stream);
                let expected: Vec<&str> = whole
                    .streams
                    .iter()
                    .flat_map(|(_, m)| m.iter().map(|t| t.as_str()))
                    .collect();
                let replayed = render_replayed(&read, stream).unwrap();
                let replayed: Vec<&str> = replayed.iter().map(|t| t.as_str()).collect();
                assert_eq!(replayed, expected, "{event_type:?} {stream:?}");
            }
        }
        // Malformed summaries: an error naming the event.
        let read = SummarizedEvent {
            event: eventhost_plugin_api::SharedEvent::new(event(BLOCK_VALID, &[])),
            encoded: "+2:t1".into(),
        };
        let e = render_replayed(&read, Stream::ValidTransactions).unwrap_err();
        assert!(e.starts_with("the summaries of event 1:"), "{e}");
    }

    #[test]
    fn nothing_is_rendered_for_streams_nobody_wants() {
        let r = render(&event(BLOCK_VALID, &["not json"]), |_| false);
        assert!(r.streams.is_empty() && r.skipped.is_empty());
    }
}
