//! One client's connection, from the upgrade until either side ends it
//! with a close frame that says why.
//!
//! One task serves it, and it reads and writes the socket by polling it
//! from whichever await the task is at ([`Conn::poll`]): what the client
//! sends is checked and dropped (messages are ignored, pongs prove it is
//! alive, pings are answered), what is queued is written, and keep-alive
//! pings go out when due, while the task waits for the next live batch (a
//! resuming client: first what it missed, from the log). Word that the
//! client fell behind, an unanswered ping, or the end of the socket or of
//! the stream ends the connection. Live messages go out as the frames the
//! hub made once for every client of the stream (see [`crate::wire`]).
//!
//! An idle client's task therefore holds the socket, the few bytes of
//! state of its reader and writer, and its subscription, and no buffer:
//! what sending a batch, a replay or the close needs is boxed for as long
//! as it lasts (row 4c of docs/benchmarks.md). The socket is not split in
//! two halves (each a task's borrow, tokio's shared between them).

use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::config::Config;
use crate::handshake::{self, Upgraded};
use crate::hub::{Batch, Hub, Live, LiveEnd, TooSlow};
use crate::keepalive::{Due, Keepalive};
use crate::metrics::{Closed, Metrics};
use crate::quota::{Identity, Lease, Limit};
use crate::resume::{Replay, ReplayError};
use crate::server::Shared;
use crate::stream::Stream;
use crate::tls::{self, ClientStream};
use crate::wire::{self, Frames, Incoming, ReadError, Reader, Writer, code};

/// Messages written before a flush: flushing per message costs far more
/// CPU, and flushing at least this often keeps pings going out under load
/// and bounds how long a client's task holds its worker.
const MAX_BATCH: usize = 512;

/// Why a connection ended.
enum End {
    /// The socket failed or the client went: nobody left to tell.
    Gone,
    /// The client sent a close frame (with its code, if any): it gets its
    /// code back.
    ClientClosed(Option<u16>),
    TooSlow,
    /// Too slow while its token's message rate held it back.
    RateLimited(u64),
    NoPong,
    TooBig,
    /// The client broke the protocol (bad frame, bad UTF-8…): the close
    /// code and what is wrong.
    Invalid(u16, String),
    /// The plugin is stopping; the client received everything published.
    ShuttingDown,
    /// The event log could not be read for a resuming client.
    LogUnreadable(String),
    /// A resuming client's socket took no batch within the stall timeout.
    ReplayStalled,
    /// A resuming client waited the stall timeout for replay memory.
    ReplayStarved,
}

impl End {
    fn metric(&self) -> Closed {
        match self {
            End::Gone | End::ClientClosed(_) => Closed::Client,
            End::TooSlow => Closed::Slow,
            End::RateLimited(_) => Closed::Limit,
            End::NoPong => Closed::PongTimeout,
            End::TooBig => Closed::MessageTooBig,
            End::Invalid(..) => Closed::ProtocolError,
            End::ShuttingDown => Closed::Shutdown,
            End::LogUnreadable(_) => Closed::LogUnreadable,
            End::ReplayStalled => Closed::ReplayStalled,
            End::ReplayStarved => Closed::ReplayBudget,
        }
    }
}

/// The client's socket, and what is read from it and written to it.
struct Conn {
    io: ClientStream,
    reader: Reader,
    writer: Writer,
    /// The pong owed, for the latest ping only (RFC 6455 allows that), so
    /// that a client that floods pings is owed one pong at a time.
    pong: Option<Bytes>,
    /// None if pings are off.
    keepalive: Option<Keepalive>,
}

impl Conn {
    fn new(io: ClientStream, config: &Config) -> Conn {
        Conn {
            io,
            reader: Reader::new(config.max_message_bytes),
            writer: Writer::default(),
            pong: None,
            keepalive: None,
        }
    }

    /// Moves the connection to the runtime this is called on: its socket
    /// (see [`ClientStream::rehome`]) and its keep-alive timer, which
    /// starts now.
    fn rehome(&mut self, config: &Config) -> std::io::Result<()> {
        self.io.rehome()?;
        self.keepalive = Keepalive::new(config.ping_interval(), config.pong_timeout());
        Ok(())
    }

    /// Serves the socket: reads what the client sent, sends a ping when
    /// one is due, and writes what is queued, with the pong owed once
    /// nothing else is. Ready only when the connection must end, with why.
    fn poll(&mut self, cx: &mut Context<'_>, too_slow: &TooSlow) -> Poll<End> {
        if too_slow.poll(cx).is_ready() {
            return Poll::Ready(End::TooSlow);
        }
        if let Some(keepalive) = &mut self.keepalive {
            while let Poll::Ready(due) = keepalive.poll_due(cx) {
                match due {
                    Due::Ping => self.writer.push(wire::ping()),
                    Due::Expired => return Poll::Ready(End::NoPong),
                }
            }
        }
        loop {
            match self.reader.poll_next(&mut self.io, cx) {
                Poll::Ready(Ok(Incoming::Ping(payload))) => self.pong = Some(payload),
                Poll::Ready(Ok(Incoming::Pong)) => {
                    if let Some(keepalive) = &mut self.keepalive {
                        keepalive.pong();
                    }
                }
                Poll::Ready(Ok(Incoming::Close(code))) => {
                    return Poll::Ready(End::ClientClosed(code));
                }
                Poll::Ready(Err(e)) => return Poll::Ready(e.into()),
                Poll::Pending => break,
            }
        }
        if self.writer.is_idle()
            && let Some(payload) = self.pong.take()
        {
            self.writer.push(wire::pong(&payload));
        }
        match self.writer.poll_flush(&mut self.io, cx) {
            Poll::Ready(Err(_)) => Poll::Ready(End::Gone),
            Poll::Ready(Ok(())) | Poll::Pending => Poll::Pending,
        }
    }

    /// Waits for `until` while serving the socket; the connection's end
    /// instead, if that comes first. `until` is pinned by the caller, so
    /// that its state is held once.
    async fn beside<F: Future>(
        &mut self,
        too_slow: &TooSlow,
        mut until: Pin<&mut F>,
    ) -> Result<F::Output, End> {
        poll_fn(|cx| match self.poll(cx, too_slow) {
            Poll::Ready(end) => Poll::Ready(Err(end)),
            Poll::Pending => until.as_mut().poll(cx).map(Ok),
        })
        .await
    }

    /// Writes everything queued, serving the socket meanwhile.
    async fn flush(&mut self, too_slow: &TooSlow) -> Result<(), End> {
        poll_fn(|cx| match self.poll(cx, too_slow) {
            Poll::Ready(end) => Poll::Ready(Err(end)),
            Poll::Pending if self.writer.is_idle() => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
        })
        .await
    }
}

impl From<ReadError> for End {
    fn from(e: ReadError) -> End {
        match e {
            ReadError::Gone => End::Gone,
            ReadError::TooBig => End::TooBig,
            ReadError::Protocol(why) => End::Invalid(code::PROTOCOL, why),
            ReadError::Utf8 => End::Invalid(code::INVALID, "a text message is not UTF-8".into()),
        }
    }
}

/// Takes an accepted TCP connection through the TLS handshake, if any, and
/// the upgrade, within `handshake_timeout_ms`. None if the client gets no
/// stream; the log says why.
pub async fn upgrade(
    tcp: TcpStream,
    peer: SocketAddr,
    shared: &Arc<Shared>,
) -> Option<Upgraded<ClientStream>> {
    let Shared {
        config, tls, ctx, ..
    } = &**shared;
    let upgrade = async {
        let io = tls::open(tcp, tls.as_ref()).await?;
        handshake::accept(io, peer, shared).await
    };
    match tokio::time::timeout(config.handshake_timeout(), upgrade).await {
        Ok(Ok(upgraded)) => Some(upgraded),
        Ok(Err(reason)) => {
            ctx.debug(format_args!("client {peer}: no stream: {reason}"));
            None
        }
        Err(_) => {
            ctx.debug(format_args!(
                "client {peer}: no upgrade within {} ms; dropped",
                config.handshake_timeout_ms
            ));
            None
        }
    }
}

/// Serves an upgraded connection until it ends, on the runtime this runs
/// on (not the one that accepted it).
pub fn serve(
    upgraded: Upgraded<ClientStream>,
    peer: SocketAddr,
    shared: Arc<Shared>,
) -> impl Future<Output = ()> {
    // Taken apart, and the socket made a `Conn`, before the future is
    // made, so that the future holds each part once rather than both it
    // and what it was made from (every byte of it is a byte per connected
    // client).
    let Upgraded {
        socket,
        stream,
        mut subscription,
        replay,
        lease,
    } = upgraded;
    let mut conn = Conn::new(socket, &shared.config);
    async move {
        let Shared {
            hub,
            config,
            ctx,
            metrics,
            ..
        } = &*shared;
        if let Err(e) = conn.rehome(config) {
            ctx.warn(format_args!("client {peer}: cannot move its socket: {e}"));
            return;
        }
        let _counted = metrics.connected(lease.identity());
        let path = stream.path();
        ctx.debug(format_args!("client {peer} connected to {path}"));
        let pace = Pace::new(&lease, metrics, stream);
        let end = send(
            &mut conn,
            &mut subscription.live,
            &subscription.too_slow,
            replay,
            &pace,
            config,
        )
        .await;
        // The plugin may have stopped just after dropping the client as too slow.
        let end = match end {
            End::ShuttingDown if subscription.too_slow.is_set() => End::TooSlow,
            End::TooSlow if pace.throttled() => End::RateLimited(pace.per_second()),
            end => end,
        };
        // Leave the hub first: a slow client's backlog is freed at once.
        drop(subscription);
        metrics.closed(end.metric());
        if let End::RateLimited(_) = end {
            metrics.limit_hit(lease.identity(), Limit::MessagesPerSecond);
        }
        let frame = close_frame(&end, hub, config, lease.label());
        if let End::ClientClosed(code) = end {
            let code = code.map_or("no code".into(), |c| format!("code {c}"));
            ctx.debug(format_args!("client {peer} on {path} closed ({code})"));
        } else if let Some(frame) = &frame {
            let message = format!("closing client {peer} on {path}: {}", frame.1);
            match end {
                End::TooSlow | End::RateLimited(_) => ctx.warn(format_args!(
                    "{message} (slow clients so far: {})",
                    hub.too_slow_count()
                )),
                End::NoPong | End::ReplayStalled | End::ReplayStarved => ctx.info(message),
                End::LogUnreadable(ref why) => ctx.error(format_args!("{message}: {why}")),
                _ => ctx.debug(message),
            }
        } else {
            ctx.debug(format_args!("client {peer} on {path} left"));
        }
        // Boxed: an idle connection's task need not hold room for it.
        Box::pin(close(conn, frame, &end, config)).await;
        drop(lease);
    }
}

/// A client's sending: its token's message rate, if limited, and the
/// counts of what it was sent.
struct Pace<'a> {
    lease: &'a Lease,
    metrics: &'a Metrics,
    stream: Stream,
    identity: Identity,
    throttled: AtomicBool,
}

impl<'a> Pace<'a> {
    fn new(lease: &'a Lease, metrics: &'a Metrics, stream: Stream) -> Self {
        Pace {
            lease,
            metrics,
            stream,
            identity: lease.identity(),
            throttled: AtomicBool::new(false),
        }
    }

    fn limited(&self) -> bool {
        self.lease.rate().is_some()
    }

    /// Waits until `messages` may be sent under the token's rate.
    async fn allow(&self, messages: usize) {
        let Some(rate) = self.lease.rate() else {
            return;
        };
        let wait = rate.take(messages);
        if !wait.is_zero() {
            self.throttled.store(true, Ordering::Relaxed);
            tokio::time::sleep(wait).await;
        }
    }

    fn sent(&self, messages: u64, bytes: u64) {
        if messages > 0 {
            self.metrics
                .sent(self.identity, self.stream, messages, bytes);
        }
    }

    fn throttled(&self) -> bool {
        self.throttled.load(Ordering::Relaxed)
    }

    fn per_second(&self) -> u64 {
        self.lease.rate().map_or(0, |r| r.per_second())
    }
}

/// Sends what a resuming client missed, then the live batches, in order,
/// until the connection must end; says why.
async fn send(
    conn: &mut Conn,
    live: &mut Live,
    too_slow: &TooSlow,
    replay: Option<Box<Replay>>,
    pace: &Pace<'_>,
    config: &Config,
) -> End {
    // Live batches of events before this one were sent from the log.
    let mut live_from = 0;
    if let Some(mut replay) = replay {
        // Boxed: only resuming clients need room for the replay's state.
        let sent = Box::pin(send_replay(conn, live, too_slow, &mut replay, pace, config)).await;
        let first_live = match sent {
            Ok(first_live) => first_live,
            Err(end) => return end,
        };
        live_from = replay.live_from();
        drop(replay);
        if let Some(batch) = first_live.filter(|batch| batch.seq >= live_from) {
            debug_assert_eq!(batch.seq, live_from);
            let sent = Box::pin(send_live(conn, live, too_slow, batch, live_from, pace)).await;
            if let Err(end) = sent {
                return end;
            }
        }
    }
    loop {
        let batch = match conn.beside(too_slow, pin!(live.recv())).await {
            Ok(Ok(batch)) => batch,
            Ok(Err(end)) => return end.into(),
            Err(end) => return end,
        };
        if batch.seq < live_from {
            continue;
        }
        // Boxed: its state would otherwise be part of every idle
        // connection's task (row 4c).
        let sent = Box::pin(send_live(conn, live, too_slow, batch, live_from, pace)).await;
        if let Err(end) = sent {
            return end;
        }
    }
}

impl From<LiveEnd> for End {
    fn from(end: LiveEnd) -> End {
        match end {
            LiveEnd::Closed => End::ShuttingDown,
            LiveEnd::TooSlow => End::TooSlow,
        }
    }
}

/// Sends the log's events up to the first live batch published, a log
/// batch at a time. Returns that first live batch, if one was published
/// by then. A batch that the budget cannot hold, or that the socket does
/// not take, within the stall timeout ends the connection.
async fn send_replay(
    conn: &mut Conn,
    live: &mut Live,
    too_slow: &TooSlow,
    replay: &mut Replay,
    pace: &Pace<'_>,
    config: &Config,
) -> Result<Option<Arc<Batch>>, End> {
    let stall = config.replay_stall_timeout();
    let mut first_live = None;
    loop {
        if first_live.is_none() {
            first_live = live.try_recv()?;
        }
        let until = first_live.as_ref().map(|batch| batch.seq);
        let batch = conn
            .beside(too_slow, pin!(replay.next_batch(until, stall)))
            .await?
            .map_err(|e| match e {
                ReplayError::Starved => End::ReplayStarved,
                ReplayError::Unreadable(why) => End::LogUnreadable(why),
            })?;
        let Some(crate::resume::Batch { texts, lease }) = batch else {
            return Ok(first_live);
        };
        let (messages, bytes) = (texts.len(), texts.iter().map(|t| t.len()).sum::<usize>());
        // This client's own batch: framed for it alone.
        let frames = Frames::text(&texts);
        drop(texts);
        conn.beside(too_slow, pin!(pace.allow(messages))).await?;
        conn.writer.push(frames.all());
        match tokio::time::timeout(stall, conn.flush(too_slow)).await {
            Err(_) => return Err(End::ReplayStalled),
            Ok(Err(end)) => return Err(end),
            Ok(Ok(())) => pace.sent(messages as u64, bytes as u64),
        }
        // The socket took the batch: its budget is free for others.
        drop(lease);
    }
}

/// Writes `first` and whatever else was published since (but batches of
/// events before `live_from`, sent from the log already), up to about
/// [`MAX_BATCH`] messages, then flushes once: the shared frames of each
/// batch, never a copy.
async fn send_live(
    conn: &mut Conn,
    live: &mut Live,
    too_slow: &TooSlow,
    first: Arc<Batch>,
    live_from: u64,
    pace: &Pace<'_>,
) -> Result<(), End> {
    let mut batch = first;
    let (mut fed, mut bytes) = (0, 0);
    loop {
        if batch.seq >= live_from {
            let (slices, messages, size) = batch.frames(live.slot);
            if pace.limited() {
                conn.beside(too_slow, pin!(pace.allow(messages))).await?;
            }
            for slice in slices {
                conn.writer.push(slice);
            }
            fed += messages;
            bytes += size;
        }
        if fed >= MAX_BATCH {
            break;
        }
        match live.try_recv()? {
            Some(next) => batch = next,
            None => break,
        }
    }
    let flushed = conn.flush(too_slow).await;
    pace.sent(fed as u64, bytes as u64);
    flushed
}

/// The close frame to send: its code and reason; none if the socket is gone.
fn close_frame(end: &End, hub: &Hub, config: &Config, token: &str) -> Option<(u16, String)> {
    let (code, reason) = match end {
        End::Gone => return None,
        End::ClientClosed(code) => (code.unwrap_or(code::NORMAL), String::new()),
        End::TooSlow => (
            code::POLICY,
            format!(
                "client too slow: more than {} messages behind",
                hub.queue_capacity()
            ),
        ),
        End::RateLimited(per_second) => (
            code::POLICY,
            format!(
                "limit max_messages_per_second: token `{token}` gets {per_second} messages/s, and this client fell {} behind",
                hub.queue_capacity()
            ),
        ),
        End::ReplayStalled => (
            code::POLICY,
            format!(
                "replay stalled: the client took no messages for {} ms; resume again",
                config.replay_stall_timeout_ms
            ),
        ),
        End::ReplayStarved => (
            code::AGAIN,
            format!(
                "replay memory busy: none free for {} ms; resume again later",
                config.replay_stall_timeout_ms
            ),
        ),
        End::NoPong => (
            code::ERROR,
            format!(
                "keepalive timeout: no pong within {} ms",
                config.pong_timeout_ms
            ),
        ),
        End::TooBig => (
            code::SIZE,
            format!(
                "message too big: the limit is {} bytes",
                config.max_message_bytes
            ),
        ),
        End::Invalid(code, why) => (*code, format!("protocol error: {why}")),
        End::ShuttingDown => (code::AWAY, "server shutting down".into()),
        End::LogUnreadable(_) => (code::ERROR, "cannot read the event log".into()),
    };
    Some((code, reason))
}

/// Sends the close frame, if any, after whatever is still queued, and
/// unless the client closed first waits for the client's, so that the
/// server closes the TCP connection first; all within `close_timeout_ms`.
async fn close(mut conn: Conn, frame: Option<(u16, String)>, end: &End, config: &Config) {
    let handshake = async {
        if let Some((code, reason)) = &frame {
            conn.writer.push(wire::close(Some((*code, reason))));
            let sent = poll_fn(|cx| conn.writer.poll_flush(&mut conn.io, cx)).await;
            if sent.is_ok() && !matches!(end, End::ClientClosed(_)) {
                while let Ok(incoming) = poll_fn(|cx| conn.reader.poll_next(&mut conn.io, cx)).await
                {
                    if let Incoming::Close(_) = incoming {
                        break;
                    }
                }
            }
        }
        let _ = conn.io.shutdown().await;
    };
    let _ = tokio::time::timeout(config.close_timeout(), handshake).await;
}
