//! One client's connection, from the upgrade until either side ends it
//! with a close frame that says why.
//!
//! Three things run side by side: the reader checks and drops whatever the
//! client sends (messages are ignored, pongs prove it is alive, pings are
//! answered), the writer sends what a resuming client missed from the log,
//! then the live batches, the keep-alive pings and the pongs owed, and the
//! first of them to end, or word that the client fell behind, or an
//! unanswered ping, ends the connection. Live messages go out as the
//! frames the hub made once for every client of the stream (see
//! [`crate::wire`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::FutureExt;
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Interval;

use crate::config::Config;
use crate::handshake::{self, Upgraded};
use crate::hub::{Batch, Hub, Live, LiveEnd};
use crate::keepalive::Keepalive;
use crate::metrics::{Closed, Metrics};
use crate::quota::{Identity, Lease, Limit};
use crate::resume::{Replay, ReplayError};
use crate::server::Shared;
use crate::stream::Stream;
use crate::tls::{self, ClientStream};
use crate::wire::{self, Frames, Incoming, ReadError, code};

/// Messages written before a flush: flushing per message costs far more
/// CPU, and flushing at least this often keeps pings going out under load
/// and bounds how long a client's task holds its worker.
const MAX_BATCH: usize = 512;

type Reader = wire::Reader<ReadHalf<ClientStream>>;
type Writer = wire::Writer<WriteHalf<ClientStream>>;

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

/// The pong the writer owes the client: for the latest ping only (RFC 6455
/// allows that), so a client that floods pings is owed one pong at a time.
#[derive(Default)]
struct Pongs {
    owed: Mutex<Option<Bytes>>,
    due: Notify,
}

impl Pongs {
    fn owe(&self, payload: Bytes) {
        *self.owed.lock().unwrap_or_else(|e| e.into_inner()) = Some(payload);
        self.due.notify_one();
    }

    fn take(&self) -> Option<Bytes> {
        self.owed.lock().unwrap_or_else(|e| e.into_inner()).take()
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
    // Taken apart before the future is made, so that the future holds the
    // parts once rather than both them and the whole (every byte of it is
    // a byte per connected client).
    let Upgraded {
        mut socket,
        stream,
        mut subscription,
        replay,
        lease,
    } = upgraded;
    async move {
        let Shared {
            hub,
            config,
            ctx,
            metrics,
            ..
        } = &*shared;
        if let Err(e) = socket.rehome() {
            ctx.warn(format_args!("client {peer}: cannot move its socket: {e}"));
            return;
        }
        let _counted = metrics.connected(lease.identity());
        let path = stream.path();
        ctx.debug(format_args!("client {peer} connected to {path}"));
        let keepalive = Keepalive::new(config.ping_interval(), config.pong_timeout());
        let (read_half, write_half) = tokio::io::split(socket);
        let mut reader = Reader::new(read_half, config.max_message_bytes);
        let mut writer = Writer::new(write_half);
        let pongs = Pongs::default();
        let pace = Pace::new(&lease, metrics, stream);
        let end = tokio::select! {
            biased;
            Ok(()) = &mut subscription.too_slow => End::TooSlow,
            () = keepalive.expired() => End::NoPong,
            end = read(&mut reader, &keepalive, &pongs) => end,
            end = write(&mut writer, &mut subscription.live, replay, &keepalive, &pongs, &pace, config) => end,
        };
        // The plugin may have stopped just after dropping the client as too slow.
        let end = match end {
            End::ShuttingDown if subscription.too_slow.try_recv().is_ok() => End::TooSlow,
            End::TooSlow if pace.throttled() => End::RateLimited(pace.per_second()),
            end => end,
        };
        // Leave the hub first: a slow client's backlog is freed at once.
        drop(subscription);
        metrics.closed(end.metric());
        if let End::RateLimited(_) = end {
            metrics.limit_hit(lease.identity(), Limit::MessagesPerSecond);
        }
        let frame = close_frame(&end, hub, &keepalive, config, lease.label());
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
        close(writer, reader, frame, &end, config).await;
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

/// Checks what the client sends until it closes or breaks the protocol.
async fn read(reader: &mut Reader, keepalive: &Keepalive, pongs: &Pongs) -> End {
    loop {
        match reader.next().await {
            Ok(Incoming::Pong) => keepalive.pong(),
            Ok(Incoming::Ping(payload)) => pongs.owe(payload),
            Ok(Incoming::Close(code)) => return End::ClientClosed(code),
            Err(ReadError::Gone) => return End::Gone,
            Err(ReadError::TooBig) => return End::TooBig,
            Err(ReadError::Protocol(why)) => return End::Invalid(code::PROTOCOL, why),
            Err(ReadError::Utf8) => {
                return End::Invalid(code::INVALID, "a text message is not UTF-8".into());
            }
        }
    }
}

/// Sends what a resuming client missed, then the live batches, in order,
/// the keep-alive pings and the pongs owed.
async fn write(
    writer: &mut Writer,
    live: &mut Live,
    replay: Option<Replay>,
    keepalive: &Keepalive,
    pongs: &Pongs,
    pace: &Pace<'_>,
    config: &Config,
) -> End {
    let mut pings = keepalive.pings();
    // Live batches of events before this one were sent from the log.
    let mut live_from = 0;
    if let Some(mut replay) = replay {
        // Boxed: only resuming clients need room for the replay's state.
        let sent = Box::pin(send_replay(
            writer,
            live,
            &mut replay,
            &mut pings,
            pongs,
            pace,
            config,
        ))
        .await;
        let first_live = match sent {
            Ok(first_live) => first_live,
            Err(end) => return end,
        };
        live_from = replay.live_from();
        drop(replay);
        if let Some(batch) = first_live.filter(|batch| batch.seq >= live_from) {
            debug_assert_eq!(batch.seq, live_from);
            if let Err(end) = send_live(writer, live, batch, live_from, pace).await {
                return end;
            }
        }
    }
    loop {
        let sent = tokio::select! {
            biased;
            () = pongs.due.notified() => match pongs.take() {
                Some(payload) => {
                    writer.push(wire::pong(&payload));
                    writer.flush().await.map_err(|_| End::Gone)
                }
                None => Ok(()),
            },
            () = next_ping(&mut pings) => {
                writer.push(wire::ping());
                writer.flush().await.map_err(|_| End::Gone)
            }
            next = live.recv() => match next {
                Ok(batch) if batch.seq < live_from => Ok(()),
                // Boxed: its state would otherwise be part of every idle
                // connection's task (about 400 bytes, row 4c).
                Ok(batch) => Box::pin(send_live(writer, live, batch, live_from, pace)).await,
                Err(end) => return end.into(),
            },
        };
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

/// Waits for the next ping to be due; forever if pings are off.
async fn next_ping(pings: &mut Option<Interval>) {
    match pings {
        Some(pings) => {
            pings.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Sends the log's events up to the first live batch published, a log
/// batch at a time, pinging when a ping is due. Returns that first live
/// batch, if one was published by then. A batch that the budget cannot
/// hold, or that the socket does not take, within the stall timeout ends
/// the connection.
async fn send_replay(
    writer: &mut Writer,
    live: &mut Live,
    replay: &mut Replay,
    pings: &mut Option<Interval>,
    pongs: &Pongs,
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
        let batch = replay.next_batch(until, stall).await.map_err(|e| match e {
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
        pace.allow(messages).await;
        writer.push(frames.all());
        if next_ping(pings).now_or_never().is_some() {
            writer.push(wire::ping());
        }
        if let Some(payload) = pongs.take() {
            writer.push(wire::pong(&payload));
        }
        match tokio::time::timeout(stall, writer.flush()).await {
            Err(_) => return Err(End::ReplayStalled),
            Ok(Err(_)) => return Err(End::Gone),
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
    writer: &mut Writer,
    live: &mut Live,
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
                pace.allow(messages).await;
            }
            for slice in slices {
                writer.push(slice);
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
    let flushed = writer.flush().await.map_err(|_| End::Gone);
    pace.sent(fed as u64, bytes as u64);
    flushed
}

/// The close frame to send: its code and reason; none if the socket is gone.
fn close_frame(
    end: &End,
    hub: &Hub,
    keepalive: &Keepalive,
    config: &Config,
    token: &str,
) -> Option<(u16, String)> {
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
                keepalive.pong_timeout().as_millis()
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

/// Sends the close frame, if any, and unless the client closed first waits
/// for the client's, so that the server closes the TCP connection first;
/// all within `close_timeout_ms`.
async fn close(
    mut writer: Writer,
    mut reader: Reader,
    frame: Option<(u16, String)>,
    end: &End,
    config: &Config,
) {
    let handshake = async {
        if let Some((code, reason)) = &frame {
            writer.push(wire::close(Some((*code, reason))));
            let sent = writer.flush().await.is_ok();
            if sent && !matches!(end, End::ClientClosed(_)) {
                while let Ok(incoming) = reader.next().await {
                    if let Incoming::Close(_) = incoming {
                        break;
                    }
                }
            }
        }
        let _ = writer.shutdown().await;
    };
    let _ = tokio::time::timeout(config.close_timeout(), handshake).await;
}
