//! Following the stream: connect to a server, check the stream, place the
//! consumer, then take its messages in order, commit them to the event log
//! with the ledger node's numbers, and acknowledge them once committed.
//! Trouble worth retrying ends the session; the next one starts after a
//! backoff (doubling from `reconnect_initial_ms` to `reconnect_max_ms`),
//! with the next server of the list.
//!
//! The order rule, for each message's event against the log's newest
//! event (`head`):
//! - the next one (`head + 1`; any one while the log is empty): committed;
//! - one the log has (`<= head`, a delivery again): skipped, once it is
//!   known to be the same event as the log's (else the stream is another
//!   node's, and the edge stops);
//! - one further on: either JetStream delivered messages to a connection
//!   that went away (they come again only after `ack_wait`), or the stream
//!   does not hold the events in between. The consumer is placed again
//!   right after `head`: if the first message it then delivers is still
//!   further on, the stream lacks those events, and the edge stops, saying
//!   which.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::pull;
use async_nats::jetstream::stream::Stream;
use async_nats::jetstream::{self, Message};
use async_nats::{Client, Event as ClientEvent};
use eventhost_plugin_api::Event;
use futures_util::{FutureExt, StreamExt};
use nats_common::{Credentials, header};
use tokio::sync::{mpsc, watch};

use super::UpstreamError;
use super::config::UpstreamConfig;
use super::consumer::{self, Position};
use super::message::{self, Delivered};
use super::position;
use super::status::Status;
use crate::event_log::{CommitError, EventLog, Reader};
use crate::progress::Progress;

/// How long a JetStream request (stream and consumer lookups) may take.
const API_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the server sends an idle consumer's heartbeat; two missed
/// end the session (a server that went silent).
const HEARTBEAT: Duration = Duration::from_secs(5);
/// How often the stream's newest event is looked up, for `/health/ready`
/// and the `behind` metric: one small request.
const STREAM_END_POLL: Duration = Duration::from_secs(1);
/// How long closing a connection may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// A consumer with at least this many messages to deliver is a catch-up,
/// shown with progress in the log.
const CATCH_UP_SHOWN: u64 = 100;
/// Most bytes of messages one pull request asks for: at least one message
/// of the largest a NATS server takes (64 MiB), and a bound on what the
/// edge holds, whatever the size of the ledger's blocks (`batch` of them
/// at 1 MB each would be 256 MB).
const MAX_BATCH_BYTES: usize = 64 << 20;

pub(super) struct Follower {
    pub config: UpstreamConfig,
    pub credentials: Credentials,
    pub log: EventLog,
    pub reader: Reader,
    pub status: Arc<Status>,
    pub stop: watch::Receiver<bool>,
    /// The stream sequence of the message of the log's newest event, if
    /// the log got it from this stream.
    pub stream_seq: Option<u64>,
    /// Which server the next connection tries first: each one starts one
    /// further, so that a server that is down is not always first.
    pub next_server: usize,
    /// Whether the last session got as far as following the stream.
    pub followed: bool,
}

/// How a run of the consumer ended.
enum Consumed {
    /// The consumer is ahead of the log: place it again.
    Replace,
}

/// What one batch of messages came to.
#[derive(PartialEq, Eq)]
enum Taken {
    Committed,
    /// A message further on than the next event: place the consumer again.
    Ahead,
}

impl Follower {
    /// Follows the stream until told to stop, or until it cannot (then the
    /// status says why and the node stops).
    pub async fn run(mut self) {
        let mut delay = self.config.reconnect_initial;
        let mut stop = self.stop.clone();
        loop {
            self.followed = false;
            let outcome = tokio::select! {
                outcome = self.session() => outcome,
                _ = stop.wait_for(|stop| *stop) => return,
            };
            match outcome {
                UpstreamError::Fatal(why) => {
                    tracing::error!("edge: cannot follow {}: {why}", self.config.describe());
                    self.status.set_fatal(why);
                    return;
                }
                UpstreamError::Retry(why) => {
                    // A session that followed the stream ended: the trouble
                    // is new, and retried soon.
                    if self.followed {
                        delay = self.config.reconnect_initial;
                    }
                    self.status.metrics().connection_failures.inc();
                    self.status.set_not_following(&why);
                    tracing::warn!(
                        "edge: cannot follow stream `{}`: {why}; retrying in {} ms",
                        self.config.stream,
                        delay.as_millis()
                    );
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        _ = stop.wait_for(|stop| *stop) => return,
                    }
                    delay = (delay * 2).min(self.config.reconnect_max);
                }
            }
        }
    }

    /// One connection: follows the stream until something goes wrong.
    async fn session(&mut self) -> UpstreamError {
        let (client, server, mut notices) = match self.connect().await {
            Ok(connected) => connected,
            Err(e) => return e,
        };
        let js = jetstream::ContextBuilder::new()
            .timeout(API_TIMEOUT)
            .build(client.clone());
        let ended = self.follow(&js, &server, &mut notices).await;
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, client.drain()).await;
        ended
    }

    /// Connects to one of the servers, starting one further along the list
    /// each time.
    async fn connect(
        &mut self,
    ) -> Result<(Client, String, mpsc::UnboundedReceiver<ClientEvent>), UpstreamError> {
        let servers = &self.config.servers;
        let first = self.next_server;
        self.next_server = self.next_server.wrapping_add(1);
        let mut failures = Vec::new();
        for i in 0..servers.len() {
            let server = &servers[(first + i) % servers.len()];
            let options = self
                .credentials
                .options()
                .await
                .map_err(UpstreamError::Retry)?;
            let (to_session, notices) = mpsc::unbounded_channel();
            let connected = options
                .name(format!("eventhost edge {}", self.config.durable))
                // This connection is to this server only: when it drops,
                // the next session connects to whichever server answers.
                .ignore_discovered_servers()
                .max_reconnects(1)
                .event_callback(move |event| {
                    let to_session = to_session.clone();
                    async move {
                        let _ = to_session.send(event);
                    }
                })
                .connect(server.clone())
                .await;
            match connected {
                Ok(client) => return Ok((client, server.as_url_str().to_owned(), notices)),
                Err(e) => failures.push(format!("{}: {e}", server.as_url_str())),
            }
        }
        Err(UpstreamError::Retry(format!(
            "cannot connect ({}): {}",
            self.credentials.describe(),
            failures.join("; ")
        )))
    }

    /// Checks the stream, places the consumer, and consumes; places it
    /// again when it ran ahead of the log.
    async fn follow(
        &mut self,
        js: &jetstream::Context,
        server: &str,
        notices: &mut mpsc::UnboundedReceiver<ClientEvent>,
    ) -> UpstreamError {
        let stream = match consumer::stream(js, &self.config).await {
            Ok(stream) => stream,
            Err(e) => return e,
        };
        loop {
            let at = Position {
                head: self.log.head(),
                stream_seq: self.stream_seq,
            };
            let placed = match consumer::place(&stream, &self.config, at).await {
                Ok(placed) => placed,
                Err(e) => return e,
            };
            let messages = placed
                .consumer
                .stream()
                .max_messages_per_batch(self.config.batch)
                .max_bytes_per_batch(MAX_BATCH_BYTES)
                .heartbeat(HEARTBEAT)
                .messages()
                .await;
            let messages = match messages {
                Ok(messages) => messages,
                Err(e) => {
                    return UpstreamError::Retry(format!(
                        "cannot pull from consumer `{}`: {e}",
                        self.config.durable
                    ));
                }
            };
            self.status.set_following();
            self.followed = true;
            tracing::info!(
                "edge: following stream `{}` on {server} after event {}",
                self.config.stream,
                at.head
            );
            match self
                .consume(&stream, messages, placed, server, notices)
                .await
            {
                Ok(Consumed::Replace) => {
                    self.status.metrics().consumer_resets.inc();
                }
                Err(e) => return e,
            }
        }
    }

    /// Takes the consumer's messages, in batches of what has arrived.
    async fn consume(
        &mut self,
        stream: &Stream,
        mut messages: pull::Stream,
        placed: consumer::Placed,
        server: &str,
        notices: &mut mpsc::UnboundedReceiver<ClientEvent>,
    ) -> Result<Consumed, UpstreamError> {
        let mut fresh = placed.fresh;
        let mut catch_up = (placed.pending >= CATCH_UP_SHOWN)
            .then(|| CatchUp::start(placed.pending, self.log.head()));
        let mut poll = tokio::time::interval(STREAM_END_POLL);
        loop {
            tokio::select! {
                biased;
                notice = notices.recv() => on_notice(notice, server)?,
                _ = poll.tick() => self.look_at_stream_end(stream).await,
                next = messages.next() => {
                    let first = match next {
                        Some(Ok(m)) => m,
                        Some(Err(e)) => return Err(retry(format!("the consumer's messages: {e}"))),
                        None => return Err(retry("the consumer's messages ended".to_owned())),
                    };
                    // Whatever else has arrived goes into the same commit.
                    let mut batch = vec![first];
                    let mut failed = None;
                    while batch.len() < self.config.batch {
                        match messages.next().now_or_never() {
                            Some(Some(Ok(m))) => batch.push(m),
                            Some(Some(Err(e))) => {
                                failed = Some(retry(format!("the consumer's messages: {e}")));
                                break;
                            }
                            Some(None) | None => break,
                        }
                    }
                    let taken = self.take(&batch, &mut fresh).await?;
                    if let Some(progress) = catch_up.take() {
                        let left = batch.last().and_then(|m| m.info().ok()).map(|i| i.pending);
                        catch_up = progress.at(self.log.head(), left);
                    }
                    if let Some(e) = failed {
                        return Err(e);
                    }
                    if taken == Taken::Ahead {
                        return Ok(Consumed::Replace);
                    }
                }
            }
        }
    }

    /// Commits the batch's new events in one transaction, then
    /// acknowledges its newest message (which acknowledges the ones before).
    async fn take(&mut self, batch: &[Message], fresh: &mut bool) -> Result<Taken, UpstreamError> {
        let stream = self.config.stream.clone();
        let mut head = self.log.head();
        let mut events: Vec<Event> = Vec::new();
        let mut last_stream_seq = None;
        let mut acknowledge = None;
        let mut taken = Taken::Committed;
        // Why to stop once what came before is committed.
        let mut stop = None;
        for m in batch {
            let info = match m.info() {
                Ok(info) => info,
                Err(e) => {
                    stop = Some(retry(format!("a message without JetStream metadata: {e}")));
                    break;
                }
            };
            let decoded = message::decode(
                &stream,
                info.stream_sequence,
                m.subject.as_str(),
                m.headers.as_ref(),
                &m.payload,
            );
            let delivered = match decoded {
                Ok(delivered) => delivered,
                Err(e) => {
                    stop = Some(UpstreamError::Fatal(e));
                    break;
                }
            };
            let seq = delivered.event.seq;
            if head != 0 && seq <= head {
                if let Err(e) = self.check_repeat(&delivered, &events) {
                    stop = Some(e);
                    break;
                }
                self.status.metrics().repeats_skipped.inc();
                acknowledge = Some(m);
                continue;
            }
            if head != 0 && seq != head + 1 {
                if *fresh {
                    stop = Some(gap(&stream, head, &delivered));
                } else {
                    tracing::info!(
                        "edge: stream message {} carries event {seq}, not {}: messages were delivered to a connection that is gone; placing the consumer after event {head} again",
                        delivered.stream_seq,
                        head + 1
                    );
                    taken = Taken::Ahead;
                }
                break;
            }
            if head == 0 && seq > 1 {
                tracing::info!(
                    "edge: this edge's log starts at event {seq} (stream message {}): the stream's earlier events are gone, or `start_sequence` skipped them",
                    delivered.stream_seq
                );
            }
            head = seq;
            last_stream_seq = Some(delivered.stream_seq);
            events.push(delivered.event);
            acknowledge = Some(m);
            *fresh = false;
        }
        if let Some(stream_seq) = last_stream_seq {
            self.commit(events, stream_seq)?;
        }
        if let Some(m) = acknowledge {
            m.ack()
                .await
                .map_err(|e| retry(format!("cannot acknowledge stream message: {e}")))?;
        }
        match stop {
            Some(e) => Err(e),
            None => Ok(taken),
        }
    }

    /// A delivery of an event the log has must be that very event.
    fn check_repeat(&self, delivered: &Delivered, staged: &[Event]) -> Result<(), UpstreamError> {
        let theirs = &delivered.event;
        let ours = match staged.iter().find(|e| e.seq == theirs.seq) {
            Some(event) => Some(event.clone()),
            None => self
                .reader
                .read(theirs.seq, 1)
                .map_err(|e| retry(format!("cannot read the event log: {e}")))?
                .into_iter()
                .find(|e| e.seq == theirs.seq),
        };
        match ours {
            // Before the start of this edge's log: nothing to compare with.
            None => Ok(()),
            Some(ours)
                if ours.block_hash == theirs.block_hash && ours.event_type == theirs.event_type =>
            {
                Ok(())
            }
            Some(ours) => Err(UpstreamError::Fatal(format!(
                "stream `{}` has another event {} (block {}, stream message {}) than this edge's log (block {}): it is not the stream this edge followed (another ledger node's, or made again); an edge follows one ledger node's log for good: start it on an empty data directory to follow this stream",
                self.config.stream,
                theirs.seq,
                theirs.block_hash,
                delivered.stream_seq,
                ours.block_hash
            ))),
        }
    }

    /// Commits `events` with the position of the newest, then publishes them.
    fn commit(&mut self, events: Vec<Event>, stream_seq: u64) -> Result<(), UpstreamError> {
        let stream = &self.config.stream;
        let log = &mut self.log;
        // The write is synchronous (it waits for the disk): the runtime's
        // worker is handed over meanwhile, so the connection is served.
        let committed = tokio::task::block_in_place(|| {
            log.commit_numbered_with(events, |txn| position::write(txn, stream, stream_seq))
        });
        match committed {
            Ok(()) => {
                self.stream_seq = Some(stream_seq);
                self.status.set_head(self.log.head());
                Ok(())
            }
            Err(CommitError::Store(e)) if e.is_corruption() => Err(UpstreamError::Fatal(format!(
                "{e}; run `eventhost verify` to see what is damaged"
            ))),
            Err(CommitError::Store(e)) => Err(retry(format!(
                "cannot write to the event log: {e} (the messages are delivered again)"
            ))),
            // The order was checked message by message above.
            Err(e @ CommitError::OutOfOrder { .. }) => Err(UpstreamError::Fatal(e.to_string())),
        }
    }

    /// Looks up the stream's newest event; a failure only leaves the
    /// last figure as it was.
    async fn look_at_stream_end(&self, stream: &Stream) {
        match stream
            .get_last_raw_message_by_subject(&self.config.subjects.all())
            .await
        {
            Ok(m) => {
                let seq = m
                    .headers
                    .get(header::SEQ)
                    .and_then(|v| v.as_str().parse().ok());
                if let Some(seq) = seq {
                    self.status.set_stream_last(seq);
                }
            }
            Err(e)
                if e.kind()
                    == async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound =>
            {
                self.status.set_stream_last(0);
            }
            Err(e) => tracing::debug!("edge: cannot look up the stream's newest event: {e}"),
        }
    }
}

/// The stream lacks the events between the log's newest, `head`, and the
/// one `next` carries.
fn gap(stream: &str, head: u64, next: &Delivered) -> UpstreamError {
    UpstreamError::Fatal(format!(
        "stream `{stream}` has event {} (stream message {}) right after event {head}, the newest of this edge's log: events {} to {} are not in the stream (removed by its max_age or max_bytes before this edge read them, or never published: the ledger node's nats plugin must take every event, without event_types), so this edge cannot hold the ledger's log; start it on an empty data directory to begin at the stream's first event",
        next.event.seq,
        next.stream_seq,
        head + 1,
        next.event.seq - 1
    ))
}

/// What the connection reports: the session ends when it is gone.
fn on_notice(notice: Option<ClientEvent>, server: &str) -> Result<(), UpstreamError> {
    match notice {
        Some(ClientEvent::Disconnected) => Err(retry(format!("disconnected from {server}"))),
        Some(ClientEvent::Closed) | None => {
            Err(retry(format!("the connection to {server} closed")))
        }
        Some(ClientEvent::LameDuckMode) => {
            tracing::warn!(
                "edge: {server} is shutting down (lame duck mode); the edge reconnects when it goes"
            );
            Ok(())
        }
        Some(ClientEvent::ServerError(e)) => {
            tracing::warn!("edge: {server} reported an error: {e}");
            Ok(())
        }
        Some(ClientEvent::ClientError(e)) => {
            tracing::warn!("edge: the connection to {server}: {e}");
            Ok(())
        }
        Some(_) => Ok(()),
    }
}

fn retry(why: String) -> UpstreamError {
    UpstreamError::Retry(why)
}

/// A catch-up under way: progress in the log until the consumer has
/// nothing more to deliver.
struct CatchUp {
    progress: Progress,
    /// The log's head when the catch-up started.
    from: u64,
}

impl CatchUp {
    fn start(pending: u64, head: u64) -> CatchUp {
        CatchUp {
            progress: Progress::start("edge: caught up on", "events", Some(pending)),
            from: head,
        }
    }

    /// The log's head is now `head`, with `left` messages still to come
    /// (if known); the catch-up goes on, or is over and said so.
    fn at(mut self, head: u64, left: Option<u64>) -> Option<CatchUp> {
        let done = head.saturating_sub(self.from);
        self.progress
            .add(done.saturating_sub(self.progress.count()));
        if left != Some(0) {
            return Some(self);
        }
        tracing::info!("{}; following the stream live", self.progress.finish());
        None
    }
}
