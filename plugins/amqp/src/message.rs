//! The AMQP messages an event becomes: routing key, body and properties.
//!
//! Which messages, with which ids and bodies, is the bridges' rule
//! ([`plugin_support::message`]); their `message_id` (`<seq>` for a block
//! message, `<seq>:<transaction index>` for a transaction message) is what
//! lets consumers drop the duplicates that at-least-once delivery allows.

use eventhost_plugin_api::{BLOCK_VALID, Event};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use plugin_support::message::{self, Kind};

use crate::config::{Format, OPERATION, RoutingKeys};

/// One message to publish.
pub struct Message {
    pub routing_key: ShortString,
    pub body: Vec<u8>,
    pub properties: BasicProperties,
}

/// The messages of `event`, in the order they are to be published.
pub fn messages(event: &Event, format: Format, keys: &RoutingKeys) -> Vec<Message> {
    message::messages(event, format, |m| Message {
        routing_key: match m.kind {
            // The configuration left room for the operation wherever it goes.
            Kind::Transaction { operation, .. } => {
                ShortString::from(keys.transaction.replace(OPERATION, &operation))
            }
            Kind::Block if event.event_type == BLOCK_VALID => {
                ShortString::from(keys.block_valid.as_str())
            }
            Kind::Block => ShortString::from(keys.block_invalid.as_str()),
        },
        body: m.body,
        properties: properties(event, m.id),
    })
}

/// Persistent JSON, with the event's coordinates in the headers so that
/// consumers can route and filter without parsing bodies.
fn properties(event: &Event, message_id: String) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(
        "event_type".into(),
        AMQPValue::LongString(LongString::from(event.event_type.name())),
    );
    headers.insert("seq".into(), AMQPValue::LongLongInt(signed(event.seq)));
    headers.insert(
        "height".into(),
        AMQPValue::LongLongInt(signed(event.height)),
    );
    headers.insert(
        "block_hash".into(),
        AMQPValue::LongString(LongString::from(event.block_hash.as_str())),
    );
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(PERSISTENT)
        .with_message_id(ShortString::from(message_id))
        .with_timestamp(event.timestamp_ms / 1000)
        .with_app_id("eventhost".into())
        .with_headers(headers)
}

/// AMQP delivery mode 2: the broker writes the message to disk.
const PERSISTENT: u8 = 2;

/// AMQP tables have no unsigned 64-bit integer that RabbitMQ accepts.
fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventhost_plugin_api::BLOCK_INVALID;
    use plugin_support::test_support::event;

    fn header<'a>(m: &'a Message, name: &str) -> &'a AMQPValue {
        m.properties
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get(name))
            .unwrap_or_else(|| panic!("no header {name}"))
    }

    fn body(m: &Message) -> serde_json::Value {
        serde_json::from_slice(&m.body).unwrap()
    }

    #[test]
    fn a_block_message_is_the_events_json_with_its_coordinates() {
        let e = event(BLOCK_VALID, &[r#"{"id":"t1","operation":"CREATE"}"#]);
        let [m] = &messages(&e, Format::Block, &RoutingKeys::default())[..] else {
            panic!("one message per block");
        };
        assert_eq!(m.routing_key.as_str(), "block.valid");
        assert_eq!(m.body, e.to_json().into_bytes());
        let p = &m.properties;
        assert_eq!(p.delivery_mode(), &Some(2));
        assert_eq!(
            p.content_type().as_ref().map(ShortString::as_str),
            Some("application/json")
        );
        assert_eq!(p.message_id().as_ref().map(ShortString::as_str), Some("41"));
        assert_eq!(p.timestamp(), &Some(1_732_521_600));
        assert_eq!(
            header(m, "event_type"),
            &AMQPValue::LongString("BLOCK_VALID".into())
        );
        assert_eq!(header(m, "seq"), &AMQPValue::LongLongInt(41));
        assert_eq!(header(m, "height"), &AMQPValue::LongLongInt(17));
        assert_eq!(
            header(m, "block_hash"),
            &AMQPValue::LongString("ab".repeat(32).as_str().into())
        );
    }

    #[test]
    fn transactions_become_valid_transactions_messages() {
        let v2_create =
            r#"{"id":"c2","operation":"CREATE","asset":{"data":{"a":1}},"version":"2.0"}"#;
        let v2_transfer =
            r#"{"id":"t2","operation":"TRANSFER","asset":{"id":"c2"},"version":"2.0"}"#;
        let v3_create =
            r#"{"id":"c3","operation":"CREATE","assets":[{"data":"QmX"}],"version":"3.0"}"#;
        let v3_transfer =
            r#"{"id":"t3","operation":"TRANSFER","assets":[{"id":"c3"}],"version":"3.0"}"#;
        let e = event(
            BLOCK_VALID,
            &[v2_create, v2_transfer, v3_create, v3_transfer],
        );
        let keys = RoutingKeys {
            transaction: "ledger.{operation}.done".into(),
            ..RoutingKeys::default()
        };
        let got: Vec<(String, String, serde_json::Value)> =
            messages(&e, Format::Transaction, &keys)
                .iter()
                .map(|m| {
                    (
                        m.routing_key.to_string(),
                        m.properties.message_id().as_ref().unwrap().to_string(),
                        body(m),
                    )
                })
                .collect();
        let tx = |id: &str, asset: &str| serde_json::json!({"transaction_id": id, "asset_id": asset, "height": 17});
        assert_eq!(
            got,
            [
                ("ledger.create.done".into(), "41:0".into(), tx("c2", "c2")),
                ("ledger.transfer.done".into(), "41:1".into(), tx("t2", "c2")),
                ("ledger.create.done".into(), "41:2".into(), tx("c3", "c3")),
                ("ledger.transfer.done".into(), "41:3".into(), tx("t3", "c3")),
            ]
        );
    }

    #[test]
    fn an_invalid_block_goes_under_the_invalid_blocks_key_in_either_format() {
        let e = event(BLOCK_INVALID, &[r#"{"id":"bad","operation":"TRANSFER"}"#]);
        for format in [Format::Block, Format::Transaction] {
            let keys: Vec<String> = messages(&e, format, &RoutingKeys::default())
                .iter()
                .map(|m| m.routing_key.to_string())
                .collect();
            assert_eq!(keys, ["block.invalid"], "{format:?}");
        }
    }

    #[test]
    fn odd_transactions_give_nulls_not_panics() {
        let huge_op = format!(r#"{{"id":"x","operation":"{}"}}"#, "A".repeat(300));
        let e = event(BLOCK_VALID, &["[1,2]", r#"{"operation":"BURN"}"#, &huge_op]);
        let got: Vec<(String, serde_json::Value)> =
            messages(&e, Format::Transaction, &RoutingKeys::default())
                .iter()
                .map(|m| (m.routing_key.to_string(), body(m)))
                .collect();
        let null = serde_json::Value::Null;
        assert_eq!(got[0].0, "tx.unknown");
        assert_eq!(got[0].1["transaction_id"], null);
        // Without an id a transaction cannot be read: its operation neither.
        assert_eq!(got[1].0, "tx.unknown");
        assert_eq!(got[1].1["asset_id"], null);
        assert_eq!(got[2].0, "tx.unknown");
        assert_eq!(got[2].1["transaction_id"], "x");
    }
}
