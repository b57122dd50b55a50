//! The listening socket: accepts connections, upgrades them, and serves
//! each on a task of its own until the plugin stops.
//!
//! Accepting and upgrading run on a runtime of their own, with one thread,
//! and the upgraded connections on the plugin's main runtime. While the
//! main runtime's workers are busy writing to thousands of clients, each of
//! their queues holds a task per client; a new client's accept and upgrade
//! queued behind them waited that long (p99 over 100 ms at 1,000 clients
//! in benchmark row 4). On the accepting runtime they wait for nothing but
//! a CPU.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use eventhost_plugin_api::Context;
use socket2::{SockRef, TcpKeepalive};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::{JoinError, JoinSet};
use tokio_rustls::TlsAcceptor;

use crate::auth::Tokens;
use crate::budget::Budget;
use crate::config::Config;
use crate::connection;
use crate::handshake::Upgraded;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::quota::Quotas;
use crate::tls::ClientStream;

/// Pause after a failed accept (say, out of file descriptors), so that the
/// loop waits for connections to end instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What the server shares with every connection.
pub struct Shared {
    pub hub: Arc<Hub>,
    pub config: Arc<Config>,
    pub tokens: Option<Tokens>,
    pub quotas: Arc<Quotas>,
    pub budget: Arc<Budget>,
    pub metrics: Arc<Metrics>,
    pub tls: Option<TlsAcceptor>,
    pub ctx: Arc<Context>,
    /// The streams' advertised base URL, for the stream index.
    pub base_url: String,
}

type Upgrade = (SocketAddr, Option<Upgraded<ClientStream>>);

/// Accepts connections until `stop` fires, then waits for the open ones to
/// end (the caller bounds how long). Runs on the accepting runtime; each
/// upgrade (with its TLS handshake) is a task of its own there, so that a
/// slow or silent client never holds up the accepting, and each upgraded
/// connection is served on `connections`.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    connections: Handle,
    mut stop: oneshot::Receiver<()>,
) {
    let mut upgrades: JoinSet<Upgrade> = JoinSet::new();
    let mut served = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    tune(&tcp, &shared.config, &shared.ctx);
                    upgrades.spawn(upgrade(tcp, peer, shared.clone()));
                }
                Err(e) => {
                    shared.ctx.warn(format_args!("cannot accept a connection: {e}"));
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            Some(upgraded) = upgrades.join_next() => {
                start(upgraded, &shared, &mut served, &connections);
            }
            Some(finished) = served.join_next() => report(finished, &shared.ctx),
        }
    }
    drop(listener);
    // The hub is closed by now: upgrades still under way are refused, and
    // a client upgraded just before is served its close frame.
    while let Some(upgraded) = upgrades.join_next().await {
        start(upgraded, &shared, &mut served, &connections);
    }
    while let Some(finished) = served.join_next().await {
        report(finished, &shared.ctx);
    }
}

/// Serves an upgraded client on the `connections` runtime.
fn start(
    upgraded: Result<Upgrade, JoinError>,
    shared: &Arc<Shared>,
    served: &mut JoinSet<()>,
    connections: &Handle,
) {
    match upgraded {
        Ok((peer, Some(upgraded))) => {
            let connection = connection::serve(upgraded, peer, shared.clone());
            served.spawn_on(connection, connections);
        }
        Ok((_, None)) => {}
        Err(e) => report(Err(e), &shared.ctx),
    }
}

async fn upgrade(tcp: TcpStream, peer: SocketAddr, shared: Arc<Shared>) -> Upgrade {
    (peer, connection::upgrade(tcp, peer, &shared).await)
}

/// Socket options for a client: TCP keepalive, so that the kernel notices
/// a vanished peer on an idle connection; a bounded send buffer, so that a
/// stalled client cannot park megabytes in the kernel before its queue
/// even starts to fill; no Nagle delay, since the connection batches its
/// writes itself.
fn tune(tcp: &TcpStream, config: &Config, ctx: &Context) {
    let socket = SockRef::from(tcp);
    let every = config.tcp_keepalive();
    let keepalive = TcpKeepalive::new().with_time(every).with_interval(every);
    let mut outcome = socket
        .set_tcp_keepalive(&keepalive)
        .and_then(|()| tcp.set_nodelay(true));
    if config.send_buffer_bytes > 0 {
        outcome = outcome.and_then(|()| socket.set_send_buffer_size(config.send_buffer_bytes));
    }
    if let Err(e) = outcome {
        ctx.debug(format_args!("cannot set socket options: {e}"));
    }
}

fn report(finished: Result<(), JoinError>, ctx: &Context) {
    match finished {
        Ok(()) => {}
        // Its runtime ended first (the plugin stops): nothing went wrong.
        // The soak test's log counted these as errors at shutdown.
        Err(e) if e.is_cancelled() => ctx.debug(format_args!("a connection's task ended: {e}")),
        Err(e) => ctx.error(format_args!("a connection's task failed: {e}")),
    }
}
