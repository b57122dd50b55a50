//! The listening socket: accepts connections and serves each on a task of
//! its own until the plugin stops.

use std::sync::Arc;
use std::time::Duration;

use eventhost_plugin_api::Context;
use socket2::{SockRef, TcpKeepalive};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::auth::Tokens;
use crate::config::Config;
use crate::connection;
use crate::hub::Hub;

/// Pause after a failed accept (say, out of file descriptors), so that the
/// loop waits for connections to end instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Accepts connections until `stop` fires, then waits for the open ones to
/// end (the caller bounds how long). With `tls`, each connection's TLS
/// handshake is its own task's, so that a slow or silent client never
/// holds up the accepting.
pub async fn serve(
    listener: TcpListener,
    hub: Arc<Hub>,
    config: Arc<Config>,
    tokens: Option<Arc<Tokens>>,
    tls: Option<TlsAcceptor>,
    ctx: Arc<Context>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    tune(&tcp, &config, &ctx);
                    connections.spawn(connection::serve(
                        tcp,
                        peer,
                        hub.clone(),
                        config.clone(),
                        tokens.clone(),
                        tls.clone(),
                        ctx.clone(),
                    ));
                }
                Err(e) => {
                    ctx.warn(format_args!("cannot accept a connection: {e}"));
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            Some(finished) = connections.join_next() => report(finished, &ctx),
        }
    }
    drop(listener);
    while let Some(finished) = connections.join_next().await {
        report(finished, &ctx);
    }
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

fn report(finished: Result<(), tokio::task::JoinError>, ctx: &Context) {
    if let Err(e) = finished {
        ctx.error(format_args!("a connection's task failed: {e}"));
    }
}
