//! The HTTP/1.1 server under the API: an accept loop on hyper's connection
//! builder, with the limits a port that faces clients needs. `axum::serve`
//! has none of them: no header-read timeout, no connection cap, and a
//! graceful shutdown that waits for every client however slow (five
//! clients trickling headers held SIGTERM for 38 s).
//!
//! - a cap on open connections ([`Limits::max_connections`], sized from the
//!   open-file limit by [`descriptors`]); at the cap, the connection that
//!   has waited longest for its client is closed to make room, and when
//!   every connection is busy the next one waits in the listen backlog;
//! - per-connection deadlines for idle clients and slow request heads
//!   ([`connection`]);
//! - request bodies read whole before routing, within a size, a time and a
//!   memory budget shared by every connection ([`body`]);
//! - a shutdown deadline: on shutdown the listener closes, waiting
//!   connections close at once, busy ones finish their response, and any
//!   still open after `shutdown_timeout` are dropped.
//!
//! It serves any tower service taking axum's request, so a second listener
//! (an admin API) can run it with limits of its own.

mod body;
mod connection;
pub mod descriptors;

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tower::{Service, ServiceExt};

pub use body::BodyLimits;
pub use connection::Timeouts;
use connection::{Close, Registry, Watched};

use super::ApiError;
use crate::metrics::Metrics;

/// What one listener allows its clients.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once.
    pub max_connections: usize,
    /// Largest request head (hyper's read buffer); 431 beyond it.
    pub max_header_bytes: usize,
    pub body: BodyLimits,
    /// Memory every body being read may hold together.
    pub body_memory_bytes: usize,
    pub timeouts: Timeouts,
    /// How long stopping waits for requests in progress.
    pub shutdown_timeout: Duration,
}

/// Where a listener reports its connections and the limits it enforced.
#[derive(Clone)]
pub struct Observed {
    metrics: Arc<Metrics>,
    listener: &'static str,
    open: Gauge,
}

impl Observed {
    /// The metrics of the listener called `listener` (a label value).
    pub fn new(metrics: Arc<Metrics>, listener: &'static str) -> Observed {
        let open = metrics
            .http_connections
            .get_or_create(&vec![("listener".to_owned(), listener.to_owned())])
            .clone();
        Observed {
            metrics,
            listener,
            open,
        }
    }

    fn hit(&self, limit: &'static str) {
        self.hits(limit).inc();
    }

    fn hits(&self, limit: &'static str) -> Counter {
        self.metrics
            .http_limit_hits
            .get_or_create(&vec![
                ("listener".to_owned(), self.listener.to_owned()),
                ("limit".to_owned(), limit.to_owned()),
            ])
            .clone()
    }
}

/// What every connection of a listener shares.
struct Shared {
    limits: Limits,
    budget: body::Budget,
    observed: Observed,
}

/// Serves `app` on `listener` within `limits` until `shutdown` resolves,
/// then stops within `limits.shutdown_timeout`. Fails only if accepting
/// connections fails for a reason other than a shortage of descriptors or
/// memory (which are waited out).
pub async fn serve<S>(
    listener: TcpListener,
    app: S,
    limits: Limits,
    observed: Observed,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    let shared = Arc::new(Shared {
        limits,
        budget: body::Budget::new(limits.body_memory_bytes),
        observed,
    });
    let registry = Arc::new(Registry::default());
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut tasks = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    let mut accept_failing = false;
    loop {
        while tasks.try_join_next().is_some() {}
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let socket = match accepted {
            Ok((socket, _)) => {
                if accept_failing {
                    tracing::info!("accepting connections again");
                    accept_failing = false;
                }
                socket
            }
            // A connection that failed between the client's connect and
            // our accept is the client's affair.
            Err(e) if is_per_connection(&e) => continue,
            Err(e) if is_shortage(&e) => {
                // The connection stays in the backlog; retrying at once
                // would spin.
                if !accept_failing {
                    tracing::warn!(
                        "cannot accept connections: {e}; retrying every 100 ms until it can"
                    );
                    accept_failing = true;
                }
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                }
            }
            Err(e) => {
                tracing::error!("cannot accept connections: {e}");
                return Err(e);
            }
        };
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                shared.observed.hit("max_connections");
                if !registry.evict_longest_waiting() {
                    tracing::debug!(
                        "every connection is busy at the cap of {}; the next waits",
                        limits.max_connections
                    );
                }
                tokio::select! {
                    () = &mut shutdown => break,
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(slot) => slot,
                        // Never: the semaphore is not closed.
                        Err(_) => break,
                    },
                }
            }
        };
        let entry = registry.add();
        tasks.spawn(connection(socket, entry, app.clone(), shared.clone(), slot));
    }
    drop(listener);
    registry.close_all();
    let deadline = limits.shutdown_timeout;
    let drained = tokio::time::timeout(deadline, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            "{} connection(s) still busy {} ms after shutdown began; closing them",
            tasks.len(),
            deadline.as_millis()
        );
        shared
            .observed
            .hits("shutdown_timeout_ms")
            .inc_by(tasks.len() as u64);
        tasks.abort_all();
    }
    Ok(())
}

/// Errors that pass once descriptors or memory are freed.
fn is_shortage(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Errors of one connection, not of the listener.
fn is_per_connection(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::Interrupted
    )
}

/// Serves one connection until its client leaves, a deadline passes, it is
/// evicted, or the server stops.
async fn connection<S>(
    socket: TcpStream,
    entry: connection::Registered,
    app: S,
    shared: Arc<Shared>,
    _slot: OwnedSemaphorePermit,
) where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    // hyper writes a response's head and body together, but a body sent in
    // parts would otherwise wait for the client's delayed ACK (Nagle).
    let _ = socket.set_nodelay(true);
    let conn = entry.conn.clone();
    let observed = &shared.observed;
    let _open = Counted::new(&observed.open);
    let service = {
        let conn = conn.clone();
        let shared = shared.clone();
        service_fn(move |request: Request<Incoming>| {
            let in_flight = conn.request_started();
            let app = app.clone();
            let shared = shared.clone();
            async move {
                let response = respond(request, app, &shared).await;
                Ok::<_, Infallible>(response.map(|body| Answer {
                    body,
                    _in_flight: in_flight,
                }))
            }
        })
    };
    let mut builder = http1::Builder::new();
    builder
        .max_buf_size(shared.limits.max_header_bytes)
        // The header and idle deadlines are the connection's own.
        .header_read_timeout(None);
    let http = builder.serve_connection(TokioIo::new(Watched::new(socket, conn.clone())), service);
    let mut http = pin!(http);
    let why = tokio::select! {
        served = http.as_mut() => {
            if let Err(e) = served {
                tracing::debug!("connection ended: {e}");
            }
            return;
        }
        why = conn.watchdog(shared.limits.timeouts) => why,
    };
    if let Some(timeout) = why.timeout() {
        observed.hit(timeout);
    }
    tracing::debug!("closing a connection: {why:?}");
    if why == Close::Shutdown && conn.is_busy() {
        // Finish the response in progress; the server's shutdown deadline
        // bounds this.
        http.as_mut().graceful_shutdown();
        let _ = http.await;
    }
}

/// A response body that ends its request when hyper drops it, after
/// writing it: until then the connection is busy, not waiting.
struct Answer {
    body: axum::body::Body,
    _in_flight: connection::InFlight,
}

impl http_body::Body for Answer {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    // Forwarded so that hyper writes a Content-Length, not chunks.
    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// One in a gauge for as long as it lives, however its task ends.
struct Counted(Gauge);

impl Counted {
    fn new(gauge: &Gauge) -> Counted {
        gauge.inc();
        Counted(gauge.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Reads the request's body within the limits, then hands the request to
/// `app`; a body refused is answered here, and the connection closed.
async fn respond<S>(request: Request<Incoming>, app: S, shared: &Shared) -> Response
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    let (parts, incoming) = request.into_parts();
    let read = match body::read(incoming, shared.limits.body, &shared.budget).await {
        Ok(read) => read,
        Err(refusal) => {
            if let Some(limit) = refusal.limit() {
                shared.observed.hit(limit);
            }
            let mut response = ApiError::new(refusal.status(), refusal.to_string()).into_response();
            // The rest of the body is never read, so the connection cannot
            // carry another request.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            if refusal.status() == axum::http::StatusCode::SERVICE_UNAVAILABLE {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            return response;
        }
    };
    let request = Request::from_parts(parts, axum::body::Body::from(read.bytes));
    let response = match app.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    // The body's memory is released once the handler is done with it.
    drop(read.reserved);
    response
}
