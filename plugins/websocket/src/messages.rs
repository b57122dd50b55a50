//! The JSON messages each stream sends for an event.
//!
//! Each message is serialized once, into a reference-counted buffer that
//! every client shares: sending it to a client costs a reference count.

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
}

/// `/valid_transactions`: the keys of BigchainDB 2.x (`asset_id`) and of
/// Planetmint (`asset_ids`), each server's own keys in its own order.
#[derive(Serialize)]
struct ValidTransaction<'a> {
    height: u64,
    asset_id: &'a str,
    asset_ids: &'a [String],
    transaction_id: &'a str,
}

/// `/valid_tx`: BigchainDB 1.x, where a block was known by its hash.
#[derive(Serialize)]
struct ValidTx<'a> {
    tx_id: &'a str,
    asset_id: &'a str,
    block_id: &'a str,
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
/// listens to cost nothing).
pub fn render(event: &Event, wanted: impl Fn(Stream) -> bool) -> Rendered {
    let mut rendered = Rendered {
        streams: Vec::new(),
        txs: Vec::new(),
        skipped: Vec::new(),
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
        rendered.txs = transactions(event, &mut rendered.skipped);
        let txs: Vec<&TxSummary> = rendered.txs.iter().map(|(_, tx)| &**tx).collect();
        for stream in wanted {
            let messages = match stream {
                Stream::ValidTransactions => per_transaction(&txs, |tx| ValidTransaction {
                    height: event.height,
                    asset_id: tx.asset_id(),
                    asset_ids: &tx.asset_ids,
                    transaction_id: &tx.id,
                }),
                Stream::ValidTx => per_transaction(&txs, |tx| ValidTx {
                    tx_id: &tx.id,
                    asset_id: tx.asset_id(),
                    block_id: &event.block_hash,
                }),
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

/// The block's transactions that can be read, in block order.
fn transactions(event: &Event, skipped: &mut Vec<String>) -> Vec<(usize, Arc<TxSummary>)> {
    let mut txs = Vec::with_capacity(event.transactions.len());
    for (i, json) in event.transactions.iter().enumerate() {
        match TxSummary::parse(json) {
            Ok(tx) => txs.push((i, Arc::new(tx))),
            Err(e) => skipped.push(format!(
                "transaction {} of the block at height {} is left out of the streams: {e}",
                i + 1,
                event.height
            )),
        }
    }
    txs
}

fn per_transaction<'a, M: Serialize>(
    txs: &[&'a TxSummary],
    message: impl Fn(&'a TxSummary) -> M,
) -> Vec<Text> {
    txs.iter().map(|tx| to_text(&message(tx))).collect()
}

fn block_message(message: &impl Serialize) -> Text {
    to_text(message)
}

fn to_text(message: &impl Serialize) -> Text {
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
    fn nothing_is_rendered_for_streams_nobody_wants() {
        let r = render(&event(BLOCK_VALID, &["not json"]), |_| false);
        assert!(r.streams.is_empty() && r.skipped.is_empty());
    }
}
