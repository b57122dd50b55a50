//! Resuming a stream from the host's durable event log:
//! `?last_seen_event=<block hash or height>`.
//!
//! A resuming client joins the hub first, so that live batches wait for
//! it from then on, each tagged with its event's sequence number. It is
//! then sent the events after the one it names, read from the log a batch
//! at a time, up to the first live batch published for it (or the end of
//! the log, if none is yet); live batches of events it was sent from the
//! log are skipped. Every event that was written to the log before the
//! client joined is in the log by the time it is read, and every later one
//! reaches its queue: so nothing is missed at the seam, and nothing is sent
//! twice.
//!
//! Replay holds one batch in memory at a time, and its pace is the client's:
//! the next batch is read once the last one was written to the socket.
//! Meanwhile the client falls behind the live stream by the usual rules, so
//! a client that cannot catch up within `client_queue_capacity` messages is
//! closed as too slow, like any other.

use std::sync::Arc;

use eventhost_plugin_api::Context;

use crate::filter::{Filter, shorten};
use crate::messages::{self, Text};
use crate::stream::Stream;

/// The query parameter a resuming client names its last event with.
pub const PARAMETER: &str = "last_seen_event";

/// Events read from the log at once.
const BATCH: usize = 256;

/// The value of `last_seen_event` in a query, if given; given twice is an error.
pub fn requested(query: &str) -> Result<Option<String>, String> {
    let mut values = form_urlencoded::parse(query.as_bytes())
        .filter(|(name, _)| name == PARAMETER)
        .map(|(_, value)| value.into_owned());
    let first = values.next();
    match values.next() {
        Some(_) => Err(format!("query parameter `{PARAMETER}` is given twice")),
        None => Ok(first),
    }
}

/// The sequence number of the event a client last saw: `""` and `"0"` mean
/// none (replay from the first event); otherwise a block hash (of either
/// event type) or a height (its BLOCK_VALID event) the log knows.
pub fn resolve(ctx: &Context, id: &str) -> Result<u64, String> {
    if id.is_empty() || id == "0" {
        return Ok(0);
    }
    ctx.find_event(id).ok_or_else(|| {
        format!(
            "{PARAMETER} `{}` is not in the event log: give a block hash or a height the node has published, or 0 for the first event",
            shorten(id)
        )
    })
}

/// A client's way through the log.
pub struct Replay {
    ctx: Arc<Context>,
    stream: Stream,
    filter: Filter,
    /// The next event to read.
    next: u64,
}

impl Replay {
    /// Replays the events after the one with sequence number `after`.
    pub fn new(ctx: Arc<Context>, stream: Stream, filter: Filter, after: u64) -> Replay {
        Replay {
            ctx,
            stream,
            filter,
            next: after + 1,
        }
    }

    /// Live messages of events before this one were sent from the log.
    pub fn live_from(&self) -> u64 {
        self.next
    }

    /// The messages of the next batch of events before `until` (the first
    /// live message's event), or `None` once there are no more. The batch
    /// may be empty when none of its events has a message for the client.
    pub async fn next_batch(&mut self, until: Option<u64>) -> Result<Option<Vec<Text>>, String> {
        if until.is_some_and(|until| self.next >= until) {
            return Ok(None);
        }
        let (ctx, stream, filter, from) = (
            self.ctx.clone(),
            self.stream,
            self.filter.clone(),
            self.next,
        );
        // Reading and rendering block: off the runtime's workers.
        let read = tokio::task::spawn_blocking(move || {
            let events = ctx.read_events(from, BATCH)?;
            let mut messages = Vec::new();
            let mut next = from;
            for event in events
                .iter()
                .take_while(|e| until.is_none_or(|until| e.seq < until))
            {
                let rendered = messages::render(event, |s| s == stream);
                let matching = rendered.streams.into_iter().flat_map(|(_, m)| m);
                messages.extend(
                    matching
                        .filter(|m| m.tx.as_ref().is_none_or(|tx| filter.matches(tx)))
                        .map(|m| m.text),
                );
                next = event.seq + 1;
            }
            Ok::<_, String>((next, messages))
        });
        let (next, messages) = read
            .await
            .map_err(|e| format!("reading the event log failed: {e}"))??;
        if next == self.next {
            return Ok(None);
        }
        self.next = next;
        Ok(Some(messages))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parameter_is_optional_and_single() {
        assert_eq!(requested("operation=CREATE"), Ok(None));
        assert_eq!(requested("last_seen_event="), Ok(Some(String::new())));
        assert_eq!(
            requested("operation=CREATE&last_seen_event=ab%20c"),
            Ok(Some("ab c".into()))
        );
        assert!(
            requested("last_seen_event=1&last_seen_event=2")
                .unwrap_err()
                .contains("given twice")
        );
    }
}
