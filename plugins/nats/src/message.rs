//! The JetStream messages an event becomes: subject, headers and payload.
//!
//! Which messages, with which ids and payloads, is the bridges' rule
//! ([`plugin_support::message`]); their `Nats-Msg-Id` (`<seq>` for a block
//! message, `<seq>:<transaction index>` for a transaction message) is what
//! lets the stream drop repeats, so that each event is stored once (within
//! the stream's duplicate window).
//!
//! The headers carry the event's coordinates, so that consumers (and edge
//! nodes) can route, filter and check order without parsing payloads. The
//! contract is in docs/scaling-out.md ("Messages").

use async_nats::{HeaderMap, HeaderName, HeaderValue};
use bytes::Bytes;
use eventhost_plugin_api::{BLOCK_VALID, Event};
use plugin_support::message::{self, Kind};

use nats_common::{Format, Subjects, header};

/// One message to publish.
pub struct Message {
    pub subject: String,
    pub headers: HeaderMap,
    pub payload: Bytes,
}

/// The messages of `event`, in the order they are to be published.
pub fn messages(event: &Event, format: Format, subjects: &Subjects) -> Vec<Message> {
    let count = event.transactions.len();
    message::messages(event, format, |m| {
        let mut headers = headers(event, m.kind.format(), m.id);
        let subject = match m.kind {
            Kind::Transaction { index, operation } => {
                headers.insert(TX_INDEX, HeaderValue::from(index));
                headers.insert(TX_COUNT, HeaderValue::from(count));
                subjects.transaction(&operation)
            }
            Kind::Block if event.event_type == BLOCK_VALID => subjects.block_valid.clone(),
            Kind::Block => subjects.block_invalid.clone(),
        };
        Message {
            subject,
            headers,
            payload: Bytes::from(m.body),
        }
    })
}

/// The header names, made at compile time: made from a `&str` at each
/// insert, each was checked and the custom ones copied, a tenth of the
/// plugin's CPU per message (the nats benchmark, row 7a).
const MSG_ID: HeaderName = HeaderName::from_static(header::MSG_ID);
const CONTENT_TYPE: HeaderName = HeaderName::from_static(header::CONTENT_TYPE);
const FORMAT: HeaderName = HeaderName::from_static(header::FORMAT);
const SEQ: HeaderName = HeaderName::from_static(header::SEQ);
const TYPE: HeaderName = HeaderName::from_static(header::TYPE);
const HEIGHT: HeaderName = HeaderName::from_static(header::HEIGHT);
const HASH: HeaderName = HeaderName::from_static(header::HASH);
const TIMESTAMP_MS: HeaderName = HeaderName::from_static(header::TIMESTAMP_MS);
const TX_INDEX: HeaderName = HeaderName::from_static(header::TX_INDEX);
const TX_COUNT: HeaderName = HeaderName::from_static(header::TX_COUNT);

fn headers(event: &Event, format: Format, msg_id: String) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(MSG_ID, msg_id);
    headers.insert(CONTENT_TYPE, "application/json");
    headers.insert(FORMAT, format.name());
    headers.insert(SEQ, HeaderValue::from(event.seq));
    headers.insert(TYPE, event.event_type.name());
    headers.insert(HEIGHT, HeaderValue::from(event.height));
    headers.insert(HASH, event.block_hash.as_str());
    headers.insert(TIMESTAMP_MS, HeaderValue::from(event.timestamp_ms));
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventhost_plugin_api::BLOCK_INVALID;
    use plugin_support::test_support::event;

    fn get<'a>(m: &'a Message, name: &str) -> &'a str {
        m.headers
            .get(name)
            .unwrap_or_else(|| panic!("no header {name}"))
            .as_str()
    }

    #[test]
    fn a_block_message_is_the_events_json_with_its_coordinates() {
        let e = event(BLOCK_VALID, &[r#"{"id":"t1","operation":"CREATE"}"#]);
        let subjects = Subjects::new("ledger", Format::Block).unwrap();
        let [m] = &messages(&e, Format::Block, &subjects)[..] else {
            panic!("one message per block");
        };
        assert_eq!(m.subject, "ledger.block.valid");
        assert_eq!(m.payload, e.to_json().into_bytes());
        // The payload rebuilds the event exactly.
        let back = Event::from_json(std::str::from_utf8(&m.payload).unwrap()).unwrap();
        assert_eq!(back.to_json(), e.to_json());
        for (name, value) in [
            ("Nats-Msg-Id", "41"),
            ("Content-Type", "application/json"),
            ("Eventhost-Format", "block"),
            ("Eventhost-Seq", "41"),
            ("Eventhost-Type", "BLOCK_VALID"),
            ("Eventhost-Height", "17"),
            ("Eventhost-Hash", &"ab".repeat(32)),
            ("Eventhost-Timestamp-Ms", "1732521600123"),
        ] {
            assert_eq!(get(m, name), value, "{name}");
        }
    }

    #[test]
    fn transactions_become_messages_on_their_operations_subject() {
        let e = event(
            BLOCK_VALID,
            &[
                r#"{"id":"c2","operation":"CREATE","asset":{"data":{"a":1}}}"#,
                r#"{"id":"t3","operation":"TRANSFER","assets":[{"id":"c3"}]}"#,
            ],
        );
        let subjects = Subjects::new("p", Format::Transaction).unwrap();
        let got: Vec<(String, String, String, String, serde_json::Value)> =
            messages(&e, Format::Transaction, &subjects)
                .iter()
                .map(|m| {
                    (
                        m.subject.clone(),
                        get(m, "Nats-Msg-Id").to_owned(),
                        get(m, "Eventhost-Tx-Index").to_owned(),
                        get(m, "Eventhost-Format").to_owned(),
                        serde_json::from_slice(&m.payload).unwrap(),
                    )
                })
                .collect();
        let body = |id: &str, asset: &str| serde_json::json!({"transaction_id": id, "asset_id": asset, "height": 17});
        assert_eq!(
            got,
            [
                (
                    "p.tx.create".into(),
                    "41:0".into(),
                    "0".into(),
                    "transaction".into(),
                    body("c2", "c2")
                ),
                (
                    "p.tx.transfer".into(),
                    "41:1".into(),
                    "1".into(),
                    "transaction".into(),
                    body("t3", "c3")
                ),
            ]
        );
    }

    #[test]
    fn an_invalid_block_stays_one_block_message_in_transaction_format() {
        let e = event(BLOCK_INVALID, &[r#"{"id":"bad","operation":"TRANSFER"}"#]);
        let subjects = Subjects::new("p", Format::Transaction).unwrap();
        let [m] = &messages(&e, Format::Transaction, &subjects)[..] else {
            panic!("one message per invalid block");
        };
        assert_eq!(m.subject, "p.block.invalid");
        assert_eq!(get(m, "Eventhost-Format"), "block");
        assert_eq!(get(m, "Nats-Msg-Id"), "41");
    }

    #[test]
    fn a_block_without_transactions_has_no_transaction_messages() {
        let e = event(BLOCK_VALID, &[]);
        let subjects = Subjects::new("p", Format::Transaction).unwrap();
        assert!(messages(&e, Format::Transaction, &subjects).is_empty());
    }
}
