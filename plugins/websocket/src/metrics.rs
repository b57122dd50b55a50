//! What clients experience, on the host's `/metrics` (the host labels each
//! with `plugin="<name>"`):
//!
//! - `websocket_clients{stream}`, `websocket_token_clients{token}`: connected now;
//! - `websocket_messages_sent_total{stream,token}`, `websocket_bytes_sent_total{stream,token}`;
//! - `websocket_clients_closed_total{reason}`: why connections ended;
//! - `websocket_upgrades_refused_total{reason}`: requests that got no stream;
//! - `websocket_limit_hits_total{token,limit}`: refusals and closes by a limit;
//! - `websocket_replays`: resuming clients sending from the log now, and
//!   `websocket_replay_memory_bytes`: what their batches hold;
//! - `websocket_distinct_queries`: queries evaluated per message.
//!
//! Every label comes from a closed set: stream names, the reasons and
//! limits below, and token names from the configuration (`anonymous`
//! without authentication, `unnamed` for tokens without a name), never a
//! token itself. Connections count into atomics; the plugin reports them
//! to the host every [`REPORT_EVERY`], so a message costs no call across
//! the plugin boundary.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use eventhost_plugin_api::Context;

use crate::quota::{Identity, Limit};
use crate::stream::Stream;

/// How often the counts reach the host: a scrape sees them at most this old.
pub const REPORT_EVERY: Duration = Duration::from_secs(1);

/// Why a connection ended.
#[derive(Debug, Copy, Clone, PartialEq, Eq)]
pub enum Closed {
    /// The client closed it, or went away.
    Client,
    Slow,
    PongTimeout,
    Limit,
    ProtocolError,
    MessageTooBig,
    /// A resuming client whose socket took no batch in time.
    ReplayStalled,
    /// A resuming client that waited too long for replay memory.
    ReplayBudget,
    LogUnreadable,
    Shutdown,
}

impl Closed {
    const ALL: [Closed; 10] = [
        Closed::Client,
        Closed::Slow,
        Closed::PongTimeout,
        Closed::Limit,
        Closed::ProtocolError,
        Closed::MessageTooBig,
        Closed::ReplayStalled,
        Closed::ReplayBudget,
        Closed::LogUnreadable,
        Closed::Shutdown,
    ];

    fn label(self) -> &'static str {
        match self {
            Closed::Client => "client",
            Closed::Slow => "slow",
            Closed::PongTimeout => "pong_timeout",
            Closed::Limit => "limit",
            Closed::ProtocolError => "protocol_error",
            Closed::MessageTooBig => "message_too_big",
            Closed::ReplayStalled => "replay_stalled",
            Closed::ReplayBudget => "replay_budget",
            Closed::LogUnreadable => "log_unreadable",
            Closed::Shutdown => "shutdown",
        }
    }
}

/// Why a request got no stream.
#[derive(Debug, Copy, Clone, PartialEq, Eq)]
pub enum Refused {
    Unauthorized,
    NotFound,
    BadRequest,
    /// A position older than the log holds (410).
    Gone,
    Limit,
    /// Full, too many distinct queries, or shutting down (503).
    Unavailable,
    /// Request line or header over `max_request_bytes` (414, 431).
    TooLarge,
}

impl Refused {
    const ALL: [Refused; 7] = [
        Refused::Unauthorized,
        Refused::NotFound,
        Refused::BadRequest,
        Refused::Gone,
        Refused::Limit,
        Refused::Unavailable,
        Refused::TooLarge,
    ];

    fn label(self) -> &'static str {
        match self {
            Refused::Unauthorized => "unauthorized",
            Refused::NotFound => "not_found",
            Refused::BadRequest => "bad_request",
            Refused::Gone => "gone",
            Refused::Limit => "limit",
            Refused::Unavailable => "unavailable",
            Refused::TooLarge => "too_large",
        }
    }
}

const STREAMS: usize = Stream::ALL.len();

pub struct Metrics {
    /// Identity labels, by [`Identity::index`].
    tokens: Vec<String>,
    token_clients: Vec<AtomicI64>,
    /// By identity, then stream: counts not yet reported.
    messages: Vec<AtomicU64>,
    bytes: Vec<AtomicU64>,
    closed: [AtomicU64; Closed::ALL.len()],
    refused: [AtomicU64; Refused::ALL.len()],
    /// By identity, then limit.
    limit_hits: Vec<AtomicU64>,
    replays: AtomicI64,
}

fn counters(n: usize) -> Vec<AtomicU64> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

impl Metrics {
    pub fn new(tokens: &[String]) -> Metrics {
        Metrics {
            tokens: tokens.to_vec(),
            token_clients: (0..tokens.len()).map(|_| AtomicI64::new(0)).collect(),
            messages: counters(tokens.len() * STREAMS),
            bytes: counters(tokens.len() * STREAMS),
            closed: Default::default(),
            refused: Default::default(),
            limit_hits: counters(tokens.len() * Limit::ALL.len()),
            replays: AtomicI64::new(0),
        }
    }

    /// Counts messages sent to a client.
    pub fn sent(&self, identity: Identity, stream: Stream, messages: u64, bytes: u64) {
        let i = identity.index() * STREAMS + stream.index();
        self.messages[i].fetch_add(messages, Ordering::Relaxed);
        self.bytes[i].fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn closed(&self, why: Closed) {
        self.closed[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn refused(&self, why: Refused) {
        self.refused[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn limit_hit(&self, identity: Identity, limit: Limit) {
        let i = identity.index() * Limit::ALL.len() + limit as usize;
        self.limit_hits[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a connected client of `identity` until the guard drops.
    pub fn connected(self: &Arc<Self>, identity: Identity) -> Counted {
        Counted::new(self, Some(identity.index()))
    }

    /// Counts a replay in progress until the guard drops.
    pub fn replaying(self: &Arc<Self>) -> Counted {
        Counted::new(self, None)
    }

    fn gauge(&self, token: Option<usize>) -> &AtomicI64 {
        match token {
            Some(i) => &self.token_clients[i],
            None => &self.replays,
        }
    }

    /// Reports everything to the host: counters by what they grew since
    /// the last report, gauges as they are.
    pub fn report(
        &self,
        ctx: &Context,
        clients: &[usize; STREAMS],
        queries: usize,
        replay_bytes: usize,
    ) {
        for stream in Stream::ALL {
            let count = i64::try_from(clients[stream.index()]).unwrap_or(i64::MAX);
            ctx.gauge("websocket_clients", &[("stream", stream.name())], count);
        }
        for (i, token) in self.tokens.iter().enumerate() {
            let labels = [("token", token.as_str())];
            let now = self.token_clients[i].load(Ordering::Relaxed);
            ctx.gauge("websocket_token_clients", &labels, now);
            for stream in Stream::ALL {
                let labels = [("stream", stream.name()), ("token", token.as_str())];
                let j = i * STREAMS + stream.index();
                for (name, counter) in [
                    ("websocket_messages_sent_total", &self.messages[j]),
                    ("websocket_bytes_sent_total", &self.bytes[j]),
                ] {
                    report_counter(ctx, name, &labels, counter);
                }
            }
            for limit in Limit::ALL {
                let labels = [("token", token.as_str()), ("limit", limit.label())];
                let j = i * Limit::ALL.len() + limit as usize;
                report_counter(
                    ctx,
                    "websocket_limit_hits_total",
                    &labels,
                    &self.limit_hits[j],
                );
            }
        }
        for why in Closed::ALL {
            let labels = [("reason", why.label())];
            report_counter(
                ctx,
                "websocket_clients_closed_total",
                &labels,
                &self.closed[why as usize],
            );
        }
        for why in Refused::ALL {
            let labels = [("reason", why.label())];
            report_counter(
                ctx,
                "websocket_upgrades_refused_total",
                &labels,
                &self.refused[why as usize],
            );
        }
        ctx.gauge(
            "websocket_replays",
            &[],
            self.replays.load(Ordering::Relaxed),
        );
        ctx.gauge(
            "websocket_replay_memory_bytes",
            &[],
            i64::try_from(replay_bytes).unwrap_or(i64::MAX),
        );
        ctx.gauge(
            "websocket_distinct_queries",
            &[],
            i64::try_from(queries).unwrap_or(i64::MAX),
        );
    }
}

/// Adds what `counter` grew by to the host's counter (every series is
/// reported, at 0 too, so that it exists from the first scrape).
fn report_counter(ctx: &Context, name: &str, labels: &[(&str, &str)], counter: &AtomicU64) {
    ctx.counter(name, labels, counter.swap(0, Ordering::Relaxed));
}

/// One in a gauge (a token's clients, or replays), given back on drop.
pub struct Counted {
    metrics: Arc<Metrics>,
    token: Option<usize>,
}

impl Counted {
    fn new(metrics: &Arc<Metrics>, token: Option<usize>) -> Self {
        metrics.gauge(token).fetch_add(1, Ordering::Relaxed);
        Counted {
            metrics: metrics.clone(),
            token,
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.metrics
            .gauge(self.token)
            .fetch_sub(1, Ordering::Relaxed);
    }
}
