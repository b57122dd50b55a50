//! One client's connection, from the upgrade until either side ends it
//! with a close frame that says why.
//!
//! Three things run side by side: the reader drains whatever the client
//! sends (messages are ignored, pongs prove it is alive), the writer sends
//! what a resuming client missed from the log, then the live batches, and
//! the keep-alive pings, and the first of them to
//! end, or word that the client fell behind, or an unanswered ping, ends
//! the connection.

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::Interval;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::config::Config;
use crate::handshake::{self, Upgraded};
use crate::hub::{Batch, Hub, Live, LiveEnd};
use crate::keepalive::Keepalive;
use crate::resume::Replay;
use crate::server::Shared;
use crate::tls::{self, ClientStream};

/// Messages written before a flush: flushing per message costs far more
/// CPU, and flushing at least this often keeps pings going out under load
/// and bounds how long a client's task holds its worker.
const MAX_BATCH: usize = 512;

type Socket = WebSocketStream<ClientStream>;

/// Why a connection ended.
enum End {
    /// The client closed it, or the socket failed: nobody left to tell.
    Gone,
    TooSlow,
    NoPong,
    TooBig,
    /// The client broke the protocol (bad frame, bad UTF-8…).
    Invalid(CloseCode, String),
    /// The plugin is stopping; the client received everything published.
    ShuttingDown,
    /// The event log could not be read for a resuming client.
    LogUnreadable(String),
}

/// Takes an accepted TCP connection through the TLS handshake, if any, and
/// the upgrade, within `handshake_timeout_ms`. None if the client gets no
/// stream; the log says why.
pub async fn upgrade(
    tcp: TcpStream,
    peer: SocketAddr,
    shared: &Shared,
) -> Option<Upgraded<ClientStream>> {
    let Shared {
        hub,
        config,
        tokens,
        tls,
        ctx,
    } = shared;
    let upgrade = async {
        let io = tls::open(tcp, tls.as_ref()).await?;
        handshake::accept(io, hub, tokens.as_deref(), ctx, config).await
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
    } = upgraded;
    async move {
        let Shared {
            hub, config, ctx, ..
        } = &*shared;
        if let Err(e) = socket.get_mut().rehome() {
            ctx.warn(format_args!("client {peer}: cannot move its socket: {e}"));
            return;
        }
        let path = stream.path();
        ctx.debug(format_args!("client {peer} connected to {path}"));
        let keepalive = Keepalive::new(config.ping_interval(), config.pong_timeout());
        let (mut sink, mut incoming) = socket.split();
        let end = tokio::select! {
            biased;
            Ok(()) = &mut subscription.too_slow => End::TooSlow,
            () = keepalive.expired() => End::NoPong,
            end = read(&mut incoming, &keepalive) => end,
            end = write(&mut sink, &mut subscription.live, replay, &keepalive) => end,
        };
        // The plugin may have stopped just after dropping the client as too slow.
        let end = match end {
            End::ShuttingDown if subscription.too_slow.try_recv().is_ok() => End::TooSlow,
            end => end,
        };
        // Leave the hub first: a slow client's backlog is freed at once.
        drop(subscription);
        let frame = close_frame(&end, hub, &keepalive, config);
        if let Some(frame) = &frame {
            let message = format!("closing client {peer} on {path}: {}", frame.reason);
            match end {
                End::TooSlow => ctx.warn(format_args!(
                    "{message} (slow clients so far: {})",
                    hub.too_slow_count()
                )),
                End::NoPong => ctx.info(message),
                End::LogUnreadable(ref why) => ctx.error(format_args!("{message}: {why}")),
                _ => ctx.debug(message),
            }
        } else {
            ctx.debug(format_args!("client {peer} on {path} left"));
        }
        close(sink, incoming, frame, config).await;
    }
}

/// Drains what the client sends until it closes or breaks the protocol.
async fn read(incoming: &mut SplitStream<Socket>, keepalive: &Keepalive) -> End {
    while let Some(message) = incoming.next().await {
        match message {
            // Pings are answered by tungstenite itself.
            Ok(Message::Pong(_)) => keepalive.pong(),
            Ok(Message::Close(_)) => return End::Gone,
            // The streams are one-way: what a client says is ignored.
            Ok(_) => {}
            Err(WsError::Capacity(_)) => return End::TooBig,
            Err(WsError::Protocol(e)) => return End::Invalid(CloseCode::Protocol, e.to_string()),
            Err(WsError::Utf8(e)) => return End::Invalid(CloseCode::Invalid, e),
            Err(_) => return End::Gone,
        }
    }
    End::Gone
}

/// Sends what a resuming client missed, then the live batches, in order,
/// and the keep-alive pings.
async fn write(
    sink: &mut SplitSink<Socket, Message>,
    live: &mut Live,
    replay: Option<Replay>,
    keepalive: &Keepalive,
) -> End {
    let mut pings = keepalive.pings();
    // Live batches of events before this one were sent from the log.
    let mut live_from = 0;
    if let Some(mut replay) = replay {
        // Boxed: only resuming clients need room for the replay's state.
        let first_live = match Box::pin(send_replay(sink, live, &mut replay, &mut pings)).await {
            Ok(first_live) => first_live,
            Err(end) => return end,
        };
        live_from = replay.live_from();
        if let Some(batch) = first_live.filter(|batch| batch.seq >= live_from) {
            debug_assert_eq!(batch.seq, live_from);
            if let Err(end) = send_live(sink, live, batch, live_from).await {
                return end;
            }
        }
    }
    loop {
        let sent = tokio::select! {
            biased;
            () = next_ping(&mut pings) => sink
                .send(Message::Ping(Default::default()))
                .await
                .map_err(|_| End::Gone),
            next = live.recv() => match next {
                Ok(batch) if batch.seq < live_from => Ok(()),
                Ok(batch) => send_live(sink, live, batch, live_from).await,
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
/// batch, if one was published by then.
async fn send_replay(
    sink: &mut SplitSink<Socket, Message>,
    live: &mut Live,
    replay: &mut Replay,
    pings: &mut Option<Interval>,
) -> Result<Option<Arc<Batch>>, End> {
    let mut first_live = None;
    loop {
        if first_live.is_none() {
            first_live = live.try_recv()?;
        }
        let until = first_live.as_ref().map(|batch| batch.seq);
        let Some(texts) = replay.next_batch(until).await.map_err(End::LogUnreadable)? else {
            return Ok(first_live);
        };
        let mut sent = Ok(());
        for text in texts {
            sent = sink.feed(Message::Text(text)).await;
            if sent.is_err() {
                break;
            }
        }
        if next_ping(pings).now_or_never().is_some() {
            sent = sent.and(sink.feed(Message::Ping(Default::default())).await);
        }
        sent.and(sink.flush().await).map_err(|_| End::Gone)?;
    }
}

/// Writes `first` and whatever else was published since (but batches of
/// events before `live_from`, sent from the log already), up to about
/// [`MAX_BATCH`] messages, then flushes once.
async fn send_live(
    sink: &mut SplitSink<Socket, Message>,
    live: &mut Live,
    first: Arc<Batch>,
    live_from: u64,
) -> Result<(), End> {
    let mut batch = first;
    let mut fed = 0;
    loop {
        if batch.seq >= live_from {
            for text in batch.texts(&live.filter) {
                sink.feed(Message::Text(text.clone()))
                    .await
                    .map_err(|_| End::Gone)?;
                fed += 1;
            }
        }
        if fed >= MAX_BATCH {
            break;
        }
        match live.try_recv()? {
            Some(next) => batch = next,
            None => break,
        }
    }
    sink.flush().await.map_err(|_| End::Gone)
}

fn close_frame(end: &End, hub: &Hub, keepalive: &Keepalive, config: &Config) -> Option<CloseFrame> {
    let (code, reason) = match end {
        End::Gone => return None,
        End::TooSlow => (
            CloseCode::Policy,
            format!(
                "client too slow: more than {} messages behind",
                hub.queue_capacity()
            ),
        ),
        End::NoPong => (
            CloseCode::Error,
            format!(
                "keepalive timeout: no pong within {} ms",
                keepalive.pong_timeout().as_millis()
            ),
        ),
        End::TooBig => (
            CloseCode::Size,
            format!(
                "message too big: the limit is {} bytes",
                config.max_message_bytes
            ),
        ),
        End::Invalid(code, why) => (*code, format!("protocol error: {why}")),
        End::ShuttingDown => (CloseCode::Away, "server shutting down".into()),
        End::LogUnreadable(_) => (CloseCode::Error, "cannot read the event log".into()),
    };
    Some(CloseFrame {
        code,
        reason: truncate_reason(reason).into(),
    })
}

/// A close frame's reason is at most 123 bytes.
fn truncate_reason(mut reason: String) -> String {
    const MAX: usize = 123;
    if reason.len() > MAX {
        let mut end = MAX;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
    }
    reason
}

/// Sends the close frame, if any, and waits for the client's, so that the
/// server closes the TCP connection first; all within `close_timeout_ms`.
async fn close(
    mut sink: SplitSink<Socket, Message>,
    mut incoming: SplitStream<Socket>,
    frame: Option<CloseFrame>,
    config: &Config,
) {
    let handshake = async {
        let sent = match frame {
            Some(frame) => sink.send(Message::Close(Some(frame))).await,
            None => sink.close().await,
        };
        if sent.is_ok() {
            while let Some(Ok(_)) = incoming.next().await {}
        }
    };
    let _ = tokio::time::timeout(config.close_timeout(), handshake).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_fit_a_close_frame() {
        let long = "é".repeat(100);
        let cut = truncate_reason(long);
        assert!(cut.len() <= 123 && cut.chars().all(|c| c == 'é'));
        assert_eq!(truncate_reason("short".into()), "short");
    }
}
