//! Which messages an event becomes, whatever the broker: the rule both
//! bridges follow, so that their consumers get the same messages with the
//! same ids. Each bridge gives a message its broker's addressing (routing
//! key or subject) and metadata (properties or headers).
//!
//! Messages are built again each time they are published, after a
//! reconnect or a restart too, and come out the same each time: their id is
//! what lets consumers (or a stream) drop the duplicates that at-least-once
//! delivery allows.

use eventhost_plugin_api::{BLOCK_VALID, Event};

use crate::Format;
use crate::transaction::Summary;

/// One message of an event, before its broker's addressing and metadata.
pub struct Message {
    /// `<seq>` for a block message, `<seq>:<transaction index>` for a
    /// transaction message.
    pub id: String,
    pub body: Vec<u8>,
    pub kind: Kind,
}

/// What a message carries.
pub enum Kind {
    /// The whole event, its JSON form.
    Block,
    /// One transaction of a BLOCK_VALID event, in the shape of BigchainDB's
    /// valid_transactions stream.
    Transaction {
        /// Its place in the block.
        index: usize,
        /// Its operation as a routing-key or subject token
        /// ([`crate::transaction::MAX_OPERATION_LEN`]).
        operation: String,
    },
}

impl Kind {
    /// The format this message is in: a BLOCK_INVALID event stays a block
    /// message in the transaction format.
    pub fn format(&self) -> Format {
        match self {
            Kind::Block => Format::Block,
            Kind::Transaction { .. } => Format::Transaction,
        }
    }
}

/// The messages of `event` in `format`, in the order they are to be
/// published, each made into the broker's own by `make`.
pub fn messages<M>(event: &Event, format: Format, mut make: impl FnMut(Message) -> M) -> Vec<M> {
    if format == Format::Transaction && event.event_type == BLOCK_VALID {
        return event
            .transactions
            .iter()
            .enumerate()
            .map(|(index, tx)| {
                let summary = Summary::of(tx);
                make(Message {
                    id: format!("{}:{index}", event.seq),
                    body: summary.body(event),
                    kind: Kind::Transaction {
                        index,
                        operation: summary.operation,
                    },
                })
            })
            .collect();
    }
    vec![make(Message {
        id: event.seq.to_string(),
        body: event.to_json().into_bytes(),
        kind: Kind::Block,
    })]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::event;
    use eventhost_plugin_api::{BLOCK_INVALID, Rejection};

    /// What the tests compare: id, kind as (format, index, operation), body.
    fn shown(
        m: Message,
    ) -> (
        String,
        &'static str,
        Option<(usize, String)>,
        serde_json::Value,
    ) {
        let tx = match &m.kind {
            Kind::Block => None,
            Kind::Transaction { index, operation } => Some((*index, operation.clone())),
        };
        let body = serde_json::from_slice(&m.body).unwrap();
        (m.id, m.kind.format().name(), tx, body)
    }

    #[test]
    fn a_block_message_is_the_events_json_under_its_seq() {
        let e = event(BLOCK_VALID, &[r#"{"id":"t1","operation":"CREATE"}"#]);
        let [m] = &messages(&e, Format::Block, |m| m)[..] else {
            panic!("one message per block");
        };
        assert_eq!(m.id, "41");
        assert!(matches!(m.kind, Kind::Block));
        assert_eq!(m.body, e.to_json().into_bytes());
    }

    #[test]
    fn each_transaction_of_a_valid_block_is_a_message_in_block_order() {
        let e = event(
            BLOCK_VALID,
            &[
                r#"{"id":"c2","operation":"CREATE","asset":{"data":{"a":1}},"version":"2.0"}"#,
                r#"{"id":"t3","operation":"TRANSFER","assets":[{"id":"c3"}],"version":"3.0"}"#,
                r#"{"operation":"BURN"}"#,
            ],
        );
        let body = |id: Option<&str>, asset: Option<&str>| serde_json::json!({"transaction_id": id, "asset_id": asset, "height": 17});
        assert_eq!(
            messages(&e, Format::Transaction, shown),
            [
                (
                    "41:0".into(),
                    "transaction",
                    Some((0, "create".into())),
                    body(Some("c2"), Some("c2"))
                ),
                (
                    "41:1".into(),
                    "transaction",
                    Some((1, "transfer".into())),
                    body(Some("t3"), Some("c3"))
                ),
                // Without an id a transaction cannot be read: its operation neither.
                (
                    "41:2".into(),
                    "transaction",
                    Some((2, "unknown".into())),
                    body(None, None)
                ),
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
        let [(id, format, tx, body)] = &messages(&e, Format::Transaction, shown)[..] else {
            panic!("one message per invalid block");
        };
        assert_eq!((id.as_str(), *format, tx), ("41", "block", &None));
        assert_eq!(body["rejections"][0]["reason"], "double spend");
    }

    #[test]
    fn a_block_without_transactions_has_no_transaction_messages() {
        let e = event(BLOCK_VALID, &[]);
        assert!(messages(&e, Format::Transaction, |m| m).is_empty());
    }
}
