//! The AMQP messages an event becomes: routing key, body and properties.
//!
//! Messages are built again each time they are published, after a reconnect
//! too, and come out the same each time: their `message_id` (`<seq>` for a
//! block message, `<seq>:<transaction index>` for a transaction message) is
//! what lets consumers drop the duplicates that at-least-once delivery allows.

use eventhost_plugin_api::{BLOCK_VALID, Event};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use plugin_support::transaction::Summary;

use crate::config::{Format, OPERATION, RoutingKeys};

/// One message to publish.
pub struct Message {
    pub routing_key: ShortString,
    pub body: Vec<u8>,
    pub properties: BasicProperties,
}

/// The messages of `event`, in the order they are to be published.
pub fn messages(event: &Event, format: Format, keys: &RoutingKeys) -> Vec<Message> {
    if format == Format::Transaction && event.event_type == BLOCK_VALID {
        return event
            .transactions
            .iter()
            .enumerate()
            .map(|(index, tx)| transaction_message(event, index, tx, keys))
            .collect();
    }
    let routing_key = if event.event_type == BLOCK_VALID {
        &keys.block_valid
    } else {
        &keys.block_invalid
    };
    vec![Message {
        routing_key: ShortString::from(routing_key.as_str()),
        body: event.to_json().into_bytes(),
        properties: properties(event, event.seq.to_string()),
    }]
}

fn transaction_message(event: &Event, index: usize, tx: &str, keys: &RoutingKeys) -> Message {
    let summary = Summary::of(tx);
    Message {
        // The configuration left room for the operation wherever it goes.
        routing_key: ShortString::from(keys.transaction.replace(OPERATION, &summary.operation)),
        body: summary.body(event),
        properties: properties(event, format!("{}:{index}", event.seq)),
    }
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
    use eventhost_plugin_api::{BLOCK_INVALID, Rejection};

    fn event(event_type: eventhost_plugin_api::EventType, transactions: &[&str]) -> Event {
        Event {
            event_type,
            seq: 41,
            height: 17,
            block_hash: "ab".repeat(32).into(),
            timestamp_ms: 1_732_521_600_123,
            transactions: transactions.iter().map(|t| (*t).into()).collect(),
            rejections: Default::default(),
        }
    }

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
    fn an_invalid_block_stays_one_block_message_in_transaction_format() {
        let mut e = event(BLOCK_INVALID, &[r#"{"id":"bad","operation":"TRANSFER"}"#]);
        e.rejections = vec![Rejection {
            transaction_id: "bad".into(),
            reason: "double spend".into(),
        }]
        .into();
        let [m] = &messages(&e, Format::Transaction, &RoutingKeys::default())[..] else {
            panic!("one message per invalid block");
        };
        assert_eq!(m.routing_key.as_str(), "block.invalid");
        assert_eq!(body(m)["rejections"][0]["reason"], "double spend");
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
