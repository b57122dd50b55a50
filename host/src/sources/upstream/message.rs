//! A message of the stream, read as the ledger node's event: the contract
//! of docs/scaling-out.md ("Subjects and messages"). Anything else in the
//! stream is refused with what it is and where, so that an edge pointed at
//! the wrong stream (another format, another application's messages) says
//! so instead of committing something that is not the ledger's event.

use async_nats::HeaderMap;
use eventhost_plugin_api::Event;
use nats_common::{Format, header};

/// An event as a message of the stream carried it.
#[derive(Debug)]
pub struct Delivered {
    pub event: Event,
    /// Where in the stream it was.
    pub stream_seq: u64,
}

/// The event `payload` carries, checked against its headers; `stream` and
/// `stream_seq` say where it was, for the error. Every error is one line.
pub fn decode(
    stream: &str,
    stream_seq: u64,
    subject: &str,
    headers: Option<&HeaderMap>,
    payload: &[u8],
) -> Result<Delivered, String> {
    let at = || format!("message {stream_seq} of stream `{stream}` (subject `{subject}`)");
    let header = |name: &str| headers.and_then(|h| h.get(name)).map(|v| v.as_str());
    match header(header::FORMAT) {
        Some(f) if f == Format::Block.name() => {}
        Some(f) if f == Format::Transaction.name() => {
            return Err(format!(
                "{} is of the `transaction` format, which does not carry whole events: an edge follows a stream of the `block` format (the nats plugin's format = \"block\", its default) and this stream has transaction messages",
                at()
            ));
        }
        Some(other) => {
            return Err(format!(
                "{} has an {} header `{}`, a format this edge does not know",
                at(),
                header::FORMAT,
                other.escape_default()
            ));
        }
        None => {
            return Err(format!(
                "{} has no {} header: it was not published by eventhost's nats plugin (does another application publish under this subject_prefix?)",
                at(),
                header::FORMAT
            ));
        }
    }
    let text =
        std::str::from_utf8(payload).map_err(|e| format!("{} is not UTF-8 text: {e}", at()))?;
    let event =
        Event::from_json(text).map_err(|e| format!("{} is not an event's JSON: {e}", at()))?;
    let seq = header(header::SEQ);
    if seq != Some(event.seq.to_string().as_str()) || event.seq == 0 {
        return Err(format!(
            "{} carries event {} but its {} header says {}",
            at(),
            event.seq,
            header::SEQ,
            seq.unwrap_or("nothing")
        ));
    }
    Ok(Delivered { event, stream_seq })
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventhost_plugin_api::BLOCK_VALID;

    fn event() -> Event {
        Event {
            event_type: BLOCK_VALID,
            seq: 7,
            height: 5,
            block_hash: "ab".repeat(32).into(),
            timestamp_ms: 1_732_521_600_000,
            transactions: vec![r#"{"id":"t"}"#.into()].into(),
            rejections: Default::default(),
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (k, v) in pairs {
            headers.insert(*k, *v);
        }
        headers
    }

    #[test]
    fn a_block_message_gives_the_event_exactly() {
        let e = event();
        let h = headers(&[("Eventhost-Format", "block"), ("Eventhost-Seq", "7")]);
        let d = decode("S", 12, "x.block.valid", Some(&h), e.to_json().as_bytes()).unwrap();
        assert_eq!(d.event, e);
        assert_eq!(d.stream_seq, 12);
    }

    #[test]
    fn anything_else_is_named() {
        let json = event().to_json();
        let cases: [(Option<HeaderMap>, &str, &str); 6] = [
            (
                Some(headers(&[("Eventhost-Format", "transaction")])),
                "{}",
                "message 12 of stream `S` (subject `x.block.valid`) is of the `transaction` format",
            ),
            (
                Some(headers(&[("Eventhost-Format", "xml")])),
                &json,
                "a format this edge does not know",
            ),
            (None, &json, "has no Eventhost-Format header"),
            (
                Some(headers(&[
                    ("Eventhost-Format", "block"),
                    ("Eventhost-Seq", "7"),
                ])),
                "{\"type\": 9}",
                "is not an event's JSON",
            ),
            (
                Some(headers(&[
                    ("Eventhost-Format", "block"),
                    ("Eventhost-Seq", "8"),
                ])),
                &json,
                "carries event 7 but its Eventhost-Seq header says 8",
            ),
            (
                Some(headers(&[("Eventhost-Format", "block")])),
                &json,
                "header says nothing",
            ),
        ];
        for (h, payload, expected) in cases {
            let err = decode("S", 12, "x.block.valid", h.as_ref(), payload.as_bytes()).unwrap_err();
            assert!(err.contains(expected), "{err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }
}
