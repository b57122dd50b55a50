//! Sending a resuming client what it missed, from the host's durable event
//! log (where it starts: see `position`).
//!
//! A resuming client joins the hub first, so that live batches wait for
//! it from then on, each tagged with its event's sequence number. It is
//! then sent the events after its position, read from the log a batch at
//! a time, up to the first live batch published for it (or the end of
//! the log, if none is yet); live batches of events it was sent from the
//! log are skipped. Every event that was written to the log before the
//! client joined is in the log by the time it is read, and every later one
//! reaches its queue: so nothing is missed at the seam, and nothing is sent
//! twice.
//!
//! A batch is sized in bytes (see `budget`): its messages are taken from
//! the replay budget before the log is read, held until the socket took
//! them, and given back. Events are read a few at a time, as many as fit
//! a batch by the size of the last ones read, so that a log of large
//! blocks is not read 256 blocks at once. While one batch is written, the
//! next is read (when the budget has room for both), and cut short at the
//! first live batch if that came meanwhile. Replay goes at the client's
//! pace; meanwhile the client falls behind the live stream by the usual
//! rules, so a client that cannot catch up within `client_queue_capacity`
//! messages is closed as too slow, like any other.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use eventhost_plugin_api::summaries::SummarizedEvent;
use eventhost_plugin_api::{Context, Event, SharedEvent};
use stream_query::Query;

use crate::budget::{self, Budget};
use crate::messages::{self, Text};
use crate::metrics::{Counted, Metrics};
use crate::stream::Stream;
use crate::subject::Rows;

/// Events read from the log at once, at most.
const MAX_READ: usize = 256;
/// Events one batch looks at, at most, however few of them the query
/// selects: the writer gets to ping between batches.
const MAX_SCANNED: usize = 4096;

/// A client's way through the log.
pub struct Replay {
    ctx: Arc<Context>,
    stream: Stream,
    query: Option<Arc<Query>>,
    budget: Arc<Budget>,
    /// The next event to read.
    next: u64,
    /// Events to read at once, from the size of those read so far.
    read_at_once: usize,
    /// The batch after the one being written, read meanwhile.
    ahead: Option<Ahead>,
    _counted: Counted,
}

/// A batch being read ahead, from `Replay::next`, and the budget it holds.
struct Ahead {
    read: JoinHandle<Result<Read, String>>,
    lease: budget::Lease,
}

/// Why a replay cannot go on.
#[derive(Debug)]
pub enum ReplayError {
    /// No room in the replay budget within the wait given: other
    /// resuming clients hold it all.
    Starved,
    /// The event log could not be read.
    Unreadable(String),
}

/// Messages read from the log, and the budget they hold until sent.
pub struct Batch {
    pub texts: Vec<Text>,
    pub lease: budget::Lease,
}

impl Replay {
    /// Replays the events after the one with sequence number `after`.
    pub fn new(
        ctx: Arc<Context>,
        stream: Stream,
        query: Option<Arc<Query>>,
        after: u64,
        budget: Arc<Budget>,
        metrics: &Arc<Metrics>,
    ) -> Replay {
        Replay {
            ctx,
            stream,
            query,
            budget,
            next: after + 1,
            read_at_once: 1,
            ahead: None,
            _counted: metrics.replaying(),
        }
    }

    /// Live messages of events before this one were sent from the log.
    pub fn live_from(&self) -> u64 {
        self.next
    }

    /// The next batch of messages of events before `until` (the first
    /// live message's event), or `None` once there are no more. Waits up
    /// to `wait` for room in the budget first; reading the log is the
    /// server's own time, not counted. The batch may be empty when none of
    /// its events has a message for the client.
    ///
    /// While the caller writes the batch returned, the next one is read,
    /// if the budget has room for it now: replay then goes at the pace of
    /// the slower of the log and the socket, not of both one after the
    /// other (row 5a of docs/benchmarks.md).
    pub async fn next_batch(
        &mut self,
        until: Option<u64>,
        wait: Duration,
    ) -> Result<Option<Batch>, ReplayError> {
        if until.is_some_and(|until| self.next >= until) {
            self.ahead = None;
            return Ok(None);
        }
        let Ahead { read, mut lease } = match self.ahead.take() {
            Some(ahead) => ahead,
            None => {
                let lease = tokio::time::timeout(wait, self.budget.take(self.budget.batch_bytes()))
                    .await
                    .map_err(|_| ReplayError::Starved)?;
                self.read_ahead(lease, None)
            }
        };
        let mut read = read
            .await
            .map_err(|e| format!("reading the event log failed: {e}"))
            .and_then(|read| read)
            .map_err(ReplayError::Unreadable)?;
        if let Some(until) = until {
            // Read ahead before the first live batch came: what it has of
            // that batch's events and later goes live instead.
            read.cut(until);
        }
        if read.next == self.next {
            return Ok(None);
        }
        self.next = read.next;
        self.read_at_once = read.read_at_once;
        lease.resize(read.bytes);
        if !read.at_end
            && let Some(ahead_lease) = self.budget.try_take(self.budget.batch_bytes())
        {
            self.ahead = Some(self.read_ahead(ahead_lease, until));
        }
        Ok(Some(Batch {
            texts: read.texts.into_iter().map(|(_, text)| text).collect(),
            lease,
        }))
    }

    /// Starts reading the batch from `next`, off the runtime's workers
    /// (reading and rendering block).
    fn read_ahead(&self, lease: budget::Lease, until: Option<u64>) -> Ahead {
        let (ctx, stream, query, from, read_at_once, target) = (
            self.ctx.clone(),
            self.stream,
            self.query.clone(),
            self.next,
            self.read_at_once,
            lease.bytes(),
        );
        let read = tokio::task::spawn_blocking(move || {
            read_batch(
                &ctx,
                stream,
                query.as_deref(),
                from,
                until,
                target,
                read_at_once,
            )
        });
        Ahead { read, lease }
    }
}

struct Read {
    /// Each message with its event's sequence number.
    texts: Vec<(u64, Text)>,
    bytes: usize,
    next: u64,
    read_at_once: usize,
    /// The log had no more events.
    at_end: bool,
}

impl Read {
    /// Leaves out the messages of events from `until` on.
    fn cut(&mut self, until: u64) {
        if self.next <= until {
            return;
        }
        let kept = self.texts.partition_point(|(seq, _)| *seq < until);
        self.bytes -= self.texts[kept..]
            .iter()
            .map(|(_, text)| text.len())
            .sum::<usize>();
        self.texts.truncate(kept);
        self.next = until;
        self.at_end = false;
    }
}

/// An event as read from the log for a client.
enum Logged {
    /// With its transactions' JSON: for `state_deltas`, made of them, and
    /// for a query that looks into them.
    Whole(SharedEvent),
    /// With its transactions' summaries, which the host stored at commit:
    /// for every other client, whose messages are made of them alone
    /// (row 5 of docs/benchmarks.md: no JSON is decoded or parsed).
    Summarized(SummarizedEvent),
}

impl Logged {
    fn event(&self) -> &Event {
        match self {
            Logged::Whole(event) => event,
            Logged::Summarized(read) => &read.event,
        }
    }

    /// About the bytes it took to read.
    fn bytes(&self) -> usize {
        256 + match self {
            Logged::Whole(event) => event.transactions.iter().map(|t| t.len()).sum::<usize>(),
            Logged::Summarized(read) => read.encoded.len(),
        }
    }

    /// The event's messages on `stream` that `query` selects, in order.
    fn messages(self, stream: Stream, query: Option<&Query>) -> Result<Vec<Text>, String> {
        let (event, mut rendered) = match (self, query) {
            // Every message, made without keeping any summary.
            (Logged::Summarized(read), None) => return messages::render_replayed(&read, stream),
            (Logged::Whole(event), _) => {
                let rendered = messages::render(&event, |s| s == stream);
                (event, rendered)
            }
            (Logged::Summarized(read), Some(_)) => {
                let rendered =
                    messages::render_summarized(&read.event, read.transactions()?, |s| s == stream);
                (read.event, rendered)
            }
        };
        let streams = std::mem::take(&mut rendered.streams);
        // The subjects are made only for a query.
        let rows = query.map(|_| Rows::new(&event, &rendered));
        let subjects = rows.as_ref().map(|rows| rows.subjects(stream.scope()));
        let mut selected = Vec::new();
        for (_, texts) in streams {
            for (row, text) in texts.into_iter().enumerate() {
                let wanted = match (query, subjects.as_ref().map(|s| s.get(row))) {
                    (None, _) => true,
                    (Some(query), Some(Some(subject))) => query.matches(*subject),
                    (Some(_), _) => false,
                };
                if wanted {
                    selected.push(text);
                }
            }
        }
        Ok(selected)
    }
}

/// Up to `max` events from `from`, read as the client needs them.
fn read_logged(
    ctx: &Context,
    stream: Stream,
    query: Option<&Query>,
    from: u64,
    max: usize,
) -> Result<Vec<Logged>, String> {
    if stream == Stream::StateDeltas || query.is_some_and(Query::needs_json) {
        Ok(ctx
            .read_events(from, max)?
            .into_iter()
            .map(Logged::Whole)
            .collect())
    } else {
        Ok(ctx
            .read_summaries(from, max)?
            .into_iter()
            .map(Logged::Summarized)
            .collect())
    }
}

/// Reads events from `from` (before `until`) and renders the client's
/// messages of them, until they reach `target` bytes.
fn read_batch(
    ctx: &Context,
    stream: Stream,
    query: Option<&Query>,
    from: u64,
    until: Option<u64>,
    target: usize,
    mut read_at_once: usize,
) -> Result<Read, String> {
    let mut read = Read {
        texts: Vec::new(),
        bytes: 0,
        next: from,
        read_at_once,
        at_end: false,
    };
    let mut scanned = 0;
    while read.bytes < target && scanned < MAX_SCANNED {
        let asked = read_at_once;
        let events = read_logged(ctx, stream, query, read.next, asked)?;
        let mut event_bytes = 0;
        let count = events.len();
        for logged in events {
            let seq = logged.event().seq;
            if until.is_some_and(|until| seq >= until) || read.bytes >= target {
                // Unread: the next batch starts here.
                return Ok(read);
            }
            event_bytes += logged.bytes();
            for text in logged.messages(stream, query)? {
                read.bytes += text.len();
                read.texts.push((seq, text));
            }
            read.next = seq + 1;
            scanned += 1;
        }
        // As many events as the batch has room for, by their size so far.
        if let Some(per_event) = event_bytes.checked_div(count) {
            read_at_once = (target / per_event.max(1)).clamp(1, MAX_READ);
            read.read_at_once = read_at_once;
        }
        if count < asked {
            // The end of the log.
            read.at_end = true;
            break;
        }
    }
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(seqs: &[u64], next: u64) -> Read {
        Read {
            texts: seqs
                .iter()
                .map(|seq| (*seq, format!("m{seq}").into()))
                .collect(),
            bytes: seqs.len() * 2,
            next,
            read_at_once: 4,
            at_end: true,
        }
    }

    #[test]
    fn a_batch_read_ahead_is_cut_at_the_first_live_event() {
        // Events 3 to 6, with two messages of event 4 and none of event 5.
        let mut r = read(&[3, 4, 4, 6], 7);
        r.cut(5);
        let kept: Vec<(u64, &str)> = r.texts.iter().map(|(s, t)| (*s, t.as_str())).collect();
        assert_eq!(kept, [(3, "m3"), (4, "m4"), (4, "m4")]);
        assert_eq!((r.bytes, r.next, r.at_end), (6, 5, false));

        // A batch wholly before the live one is whole.
        let mut r = read(&[3, 4], 5);
        r.cut(5);
        assert_eq!((r.texts.len(), r.bytes, r.next, r.at_end), (2, 4, 5, true));

        // A batch wholly after it is empty, and the next read starts there.
        let mut r = read(&[8, 9], 10);
        r.cut(8);
        assert_eq!((r.texts.len(), r.bytes, r.next), (0, 0, 8));
    }
}
