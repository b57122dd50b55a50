//! `GET /api/v1/streams`: the streams, and the range of the event log a
//! position (`last_seen_event`, `from_height`, `from_time`) can name, so
//! that a client can tell before it connects whether its position is
//! still there.
//!
//! ```json
//! {"streams": [{"name": "valid_transactions", "path": "/api/v1/streams/valid_transactions",
//!   "url": "ws://localhost:9985/api/v1/streams/valid_transactions",
//!   "oldest": {"seq": 1, "height": 1, "hash": "…", "timestamp": "2025-01-31T12:00:00.250Z", "timestamp_ms": 1738324800250},
//!   "newest": {…}}, …]}
//! ```
//!
//! Every stream resumes from the same log, so each has the same range;
//! `oldest` and `newest` are `null` while the log is empty.

use serde_json::{Value, json};

use crate::position::{EventLog, Mark, rfc3339};
use crate::stream::Stream;

/// Where the index is served, on the streams' port.
pub const PATH: &str = "/api/v1/streams";

/// The index as JSON. `base_url` is the advertised base (`ws://host:port`).
pub fn render(
    log: &dyn EventLog,
    base_url: &str,
    scabbard: (&str, &str),
) -> Result<String, String> {
    let oldest = log.first_from(1)?;
    let head = log.head();
    let newest = if head == 0 {
        None
    } else {
        log.first_from(head)?
    };
    let (circuit, service) = scabbard;
    let streams: Vec<Value> = Stream::ALL
        .into_iter()
        .map(|stream| {
            let path = match stream {
                Stream::StateDeltas => format!("/scabbard/{circuit}/{service}/ws/subscribe"),
                other => other.path().to_owned(),
            };
            json!({
                "name": stream.name(),
                "url": format!("{base_url}{path}"),
                "path": path,
                "oldest": oldest.as_ref().map(mark),
                "newest": newest.as_ref().map(mark),
            })
        })
        .collect();
    Ok(json!({ "streams": streams }).to_string())
}

fn mark(m: &Mark) -> Value {
    json!({
        "seq": m.seq,
        "height": m.height,
        "hash": m.hash,
        "timestamp": rfc3339(m.timestamp_ms),
        "timestamp_ms": m.timestamp_ms,
    })
}
