//! The stream an edge follows and its durable consumer: the stream checked
//! to be one an edge can follow, and the consumer placed right after the
//! edge's own newest event.
//!
//! The consumer holds the edge's position on the server: a restarted edge
//! resumes from it. Its position can run ahead of the edge's log, though:
//! JetStream counts a message delivered once it sent it, so messages sent
//! to a connection that went away (a server killed, an edge killed before
//! its commit) are delivered again only after `ack_wait`, behind newer
//! ones. The edge therefore keeps, with its events, the stream sequence of
//! its newest one ([`super::position`]), and when the consumer is not
//! exactly there, deletes it and creates it again to start right after it.
//! That costs two requests, and no event waits for `ack_wait`.

use async_nats::jetstream;
use async_nats::jetstream::consumer::{self, AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::context::ConsumerInfoErrorKind;
use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use nats_common::lookup::stream_not_found;
use nats_common::subject::covers;

use super::UpstreamError;
use super::config::{Start, UpstreamConfig};

/// Messages a pull consumer may have delivered and not yet had
/// acknowledged, in batches: four of the edge's commits.
const ACK_PENDING_BATCHES: usize = 4;

/// The stream, checked to be one an edge can follow.
pub async fn stream(
    js: &jetstream::Context,
    config: &UpstreamConfig,
) -> Result<Stream, UpstreamError> {
    let name = &config.stream;
    let mut stream = match js.get_stream(name).await {
        Ok(stream) => stream,
        Err(e) if stream_not_found(&e) => {
            return Err(UpstreamError::Retry(format!(
                "stream `{name}` does not exist (yet): the ledger node's nats plugin creates it when it first connects; is it running, with the same `stream`?"
            )));
        }
        Err(e) => {
            return Err(UpstreamError::Retry(format!(
                "cannot look up stream `{name}`: {e}"
            )));
        }
    };
    let info = stream
        .info()
        .await
        .map_err(|e| UpstreamError::Retry(format!("cannot read stream `{name}`: {e}")))?;
    let subjects = &config.subjects;
    let wanted = [&subjects.block_valid, &subjects.block_invalid];
    let missing: Vec<&String> = wanted
        .into_iter()
        .filter(|s| !info.config.subjects.iter().any(|f| covers(f, s)))
        .collect();
    if !missing.is_empty() {
        return Err(UpstreamError::Fatal(format!(
            "stream `{name}` takes the subjects {:?}, not {missing:?}, where the ledger node's nats plugin publishes with subject_prefix = {:?}: set [source] `subject_prefix` (or `stream`) to the plugin's",
            info.config.subjects,
            subjects.prefix()
        )));
    }
    // A stream of the transaction format has transaction messages.
    let transactions = subjects.transaction(">");
    match stream.get_last_raw_message_by_subject(&transactions).await {
        Ok(m) => {
            return Err(UpstreamError::Fatal(format!(
                "stream `{name}` holds messages of the `transaction` format (message {} on `{}`), which do not carry whole events: an edge follows a stream of the `block` format (the nats plugin's format = \"block\", its default), not one of format = \"transaction\"",
                m.sequence, m.subject
            )));
        }
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => {}
        Err(e) => {
            return Err(UpstreamError::Retry(format!(
                "cannot look into stream `{name}`: {e}"
            )));
        }
    }
    Ok(stream)
}

/// Where the edge is: its newest event and the stream sequence of the
/// message that carried it (`None` if not known: the log came from
/// another stream, or the edge never committed one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub head: u64,
    pub stream_seq: Option<u64>,
}

/// A consumer, and whether it was just created (so that the first event it
/// delivers after the edge's newest is the stream's next one).
pub struct Placed {
    pub consumer: consumer::Consumer<pull::Config>,
    pub fresh: bool,
    /// Messages it has yet to deliver.
    pub pending: u64,
}

/// The edge's durable consumer of `stream`, placed right after `at`.
pub async fn place(
    stream: &Stream,
    config: &UpstreamConfig,
    at: Position,
) -> Result<Placed, UpstreamError> {
    let durable = &config.durable;
    let name = &config.stream;
    let wanted = wanted(config, at);
    match stream.consumer_info(durable).await {
        Ok(info) => {
            // Nothing delivered yet (a new edge), or delivered exactly up
            // to the edge's newest event: resume from it.
            let in_place = match (at.head, at.stream_seq) {
                (0, _) => info.delivered.consumer_sequence == 0,
                (_, Some(seq)) => info.delivered.stream_sequence == seq,
                (_, None) => false,
            };
            if in_place && same_settings(&info.config, &wanted) {
                let consumer = stream
                    .get_consumer(durable)
                    .await
                    .map_err(|e| retry(format!("cannot use consumer `{durable}`: {e}")))?;
                tracing::info!(
                    "resuming consumer `{durable}` of stream `{name}` after stream message {} (this edge's event {}); {} message(s) to come",
                    info.delivered.stream_sequence,
                    at.head,
                    info.num_pending
                );
                return Ok(Placed {
                    consumer,
                    fresh: false,
                    pending: info.num_pending,
                });
            }
            let why = if in_place {
                "its settings are not the ones [source] asks for".to_owned()
            } else {
                match at.stream_seq {
                    Some(seq) => format!(
                        "it had delivered up to stream message {} and this edge committed up to {seq} (event {}): messages went to a connection that is gone",
                        info.delivered.stream_sequence, at.head
                    ),
                    None if at.head == 0 => format!(
                        "it had delivered up to stream message {} to an edge whose log is now empty",
                        info.delivered.stream_sequence
                    ),
                    None => format!(
                        "this edge's log (up to event {}) did not come from stream `{name}` through it",
                        at.head
                    ),
                }
            };
            tracing::warn!(
                "consumer `{durable}` of stream `{name}` is not where this edge is: {why}; creating it again"
            );
            stream
                .delete_consumer(durable)
                .await
                .map_err(|e| retry(format!("cannot delete consumer `{durable}`: {e}")))?;
        }
        Err(e) if e.kind() == ConsumerInfoErrorKind::NotFound => {}
        Err(e) => return Err(retry(format!("cannot look up consumer `{durable}`: {e}"))),
    }
    let start = match wanted.deliver_policy {
        DeliverPolicy::ByStartSequence { start_sequence } => {
            format!("at stream message {start_sequence}")
        }
        _ => "at the first message the stream holds".to_owned(),
    };
    let mut consumer = stream
        .create_consumer(wanted)
        .await
        .map_err(|e| retry(format!("cannot create consumer `{durable}`: {e}")))?;
    let pending = consumer
        .info()
        .await
        .map_err(|e| retry(format!("cannot read consumer `{durable}`: {e}")))?
        .num_pending;
    tracing::info!(
        "created consumer `{durable}` of stream `{name}` {start} (this edge's newest event is {}); {pending} message(s) to come",
        at.head
    );
    Ok(Placed {
        consumer,
        // A new consumer delivers the stream in order from its start, and
        // no delivery of it went anywhere else yet.
        fresh: true,
        pending,
    })
}

/// The consumer an edge at `at` wants.
fn wanted(config: &UpstreamConfig, at: Position) -> pull::Config {
    let deliver_policy = match (at.head, at.stream_seq, config.start) {
        (0, _, Start::First) => DeliverPolicy::All,
        (0, _, Start::Sequence(start_sequence)) => {
            DeliverPolicy::ByStartSequence { start_sequence }
        }
        (_, Some(seq), _) => DeliverPolicy::ByStartSequence {
            start_sequence: seq + 1,
        },
        // Every message again; the edge skips the events it has.
        (_, None, _) => DeliverPolicy::All,
    };
    pull::Config {
        durable_name: Some(config.durable.clone()),
        description: Some("an eventhost edge node's position in the stream".to_owned()),
        deliver_policy,
        // The edge commits in order and acknowledges the newest message of
        // each commit: that acknowledges every one before it.
        ack_policy: AckPolicy::All,
        ack_wait: config.ack_wait,
        max_deliver: -1,
        filter_subject: config.subjects.all(),
        max_ack_pending: i64::try_from(config.batch * ACK_PENDING_BATCHES).unwrap_or(i64::MAX),
        ..Default::default()
    }
}

/// Whether an existing consumer was made with the settings an edge makes
/// it with (its start aside: it is past its start).
fn same_settings(have: &consumer::Config, want: &pull::Config) -> bool {
    have.ack_policy == want.ack_policy
        && have.ack_wait == want.ack_wait
        && have.filter_subject == want.filter_subject
        && have.filter_subjects.is_empty()
        && have.max_ack_pending == want.max_ack_pending
        && have.max_deliver == want.max_deliver
}

fn retry(why: String) -> UpstreamError {
    UpstreamError::Retry(why)
}
