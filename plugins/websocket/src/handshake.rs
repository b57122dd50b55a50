//! The HTTP upgrade: which stream a client asks for, with which query,
//! from which position, or why it cannot have it.
//!
//! Everything is decided before the upgrade is accepted, so a wrong path,
//! query or position is an HTTP error the client can read (400, 404, 410,
//! 429…), never a socket that opens and stays silent. A client is in the
//! hub by the time it receives the `101 Switching Protocols`: it receives
//! every message published after its connect call returned, and a
//! resuming client whatever the log holds after its position. The same
//! port answers `GET /api/v1/streams` (see `index`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::server::{create_response, write_response};
use tokio_tungstenite::tungstenite::http::{
    HeaderName, HeaderValue, Method, Request, Response, StatusCode, header,
};

use crate::auth::{self, Admitted};
use crate::filter;
use crate::hub::{self, Subscription};
use crate::index;
use crate::metrics;
use crate::params::Params;
use crate::position::{self, Resolved};
use crate::quota::{Identity, Lease, Limit};
use crate::request;
use crate::resume::Replay;
use crate::server::Shared;
use crate::state_delta;
use crate::stream::Stream;

/// An upgraded connection and the client's place in the hub. The socket
/// speaks WebSocket frames from here on (see [`crate::wire`]).
pub struct Upgraded<S> {
    pub socket: S,
    pub stream: Stream,
    pub subscription: Subscription,
    /// What to send from the log before the live messages, if resuming
    /// (boxed: most clients are not).
    pub replay: Option<Box<Replay>>,
    /// What the client holds of its limits, and who it is.
    pub lease: Lease,
}

/// Reads the request on `io` and upgrades it. On failure the client has
/// been told why (when it can still be told) and the error says it for
/// the log.
pub async fn accept<S>(
    mut io: S,
    peer: SocketAddr,
    shared: &Arc<Shared>,
) -> Result<Upgraded<S>, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let config = &shared.config;
    let linger = config.close_timeout();
    let request = match request::read(&mut io, config.max_request_bytes).await {
        Ok(request) => request,
        Err(e) => {
            let Some((status, message)) = e.answer() else {
                return Err(format!("no request: {e}"));
            };
            shared.metrics.refused(match status {
                StatusCode::BAD_REQUEST => metrics::Refused::BadRequest,
                _ => metrics::Refused::TooLarge,
            });
            let answer = request::plain(status, &message, &[]);
            request::answer_and_close(&mut io, &answer, linger).await;
            return Err(format!("refused with {status}: {message}"));
        }
    };
    if request.uri().path() == index::PATH && !is_upgrade(&request) {
        let answer = stream_index(&request, shared).await;
        request::answer_and_close(&mut io, &answer, linger).await;
        return Err("asked for the stream index".into());
    }
    let response = match create_response(&request) {
        Ok(response) => response,
        Err(e) => {
            shared.metrics.refused(metrics::Refused::BadRequest);
            let message = format!("expected a WebSocket upgrade request: {e}");
            let answer = request::plain(StatusCode::BAD_REQUEST, &message, &[]);
            request::answer_and_close(&mut io, &answer, linger).await;
            return Err(message);
        }
    };
    match admit(&request, response, peer, shared).await {
        Ok(admitted) => {
            let mut head = Vec::new();
            write_response(&mut head, &admitted.response).map_err(|e| e.to_string())?;
            io.write_all(&head).await.map_err(|e| e.to_string())?;
            io.flush().await.map_err(|e| e.to_string())?;
            Ok(Upgraded {
                socket: io,
                stream: admitted.stream,
                subscription: admitted.subscription,
                replay: admitted.replay,
                lease: admitted.lease,
            })
        }
        Err(refusal) => {
            shared.metrics.refused(refusal.reason);
            let answer = request::plain(refusal.status, &refusal.message, &refusal.headers);
            request::answer_and_close(&mut io, &answer, linger).await;
            Err(format!(
                "refused with {}: {}",
                refusal.status, refusal.message
            ))
        }
    }
}

fn is_upgrade(request: &Request<()>) -> bool {
    request.headers().contains_key(header::UPGRADE)
}

/// A client that may have a stream.
struct Admission {
    stream: Stream,
    subscription: Subscription,
    replay: Option<Box<Replay>>,
    lease: Lease,
    /// The `101 Switching Protocols`, with the headers the stream adds.
    response: Response<()>,
}

/// Why a request gets no stream: an HTTP status, a sentence, and the metric.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    message: String,
    reason: metrics::Refused,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Refusal {
    fn new(status: StatusCode, message: String) -> Refusal {
        let reason = match status {
            StatusCode::UNAUTHORIZED => metrics::Refused::Unauthorized,
            StatusCode::NOT_FOUND => metrics::Refused::NotFound,
            StatusCode::GONE => metrics::Refused::Gone,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::FORBIDDEN => metrics::Refused::Limit,
            StatusCode::SERVICE_UNAVAILABLE => metrics::Refused::Unavailable,
            _ => metrics::Refused::BadRequest,
        };
        Refusal {
            status,
            message,
            reason,
            headers: Vec::new(),
        }
    }

    fn bad(message: String) -> Refusal {
        Refusal::new(StatusCode::BAD_REQUEST, message)
    }
}

/// Who is asking: the identity its token stands for, or a 401.
fn authenticate(
    request: &Request<()>,
    response: &mut Response<()>,
    shared: &Shared,
) -> Result<Identity, Refusal> {
    let Some(tokens) = &shared.tokens else {
        return Ok(Identity::ANONYMOUS);
    };
    match tokens.admit(request) {
        Ok((Admitted::Header, identity)) => Ok(identity),
        Ok((Admitted::Subprotocol, identity)) => {
            response.headers_mut().insert(
                header::SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_static(auth::SUBPROTOCOL),
            );
            Ok(identity)
        }
        Err(why) => {
            let mut refusal = Refusal::new(StatusCode::UNAUTHORIZED, why.into());
            refusal
                .headers
                .push((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
            Err(refusal)
        }
    }
}

/// Decides, from the request, which stream the client joins, and joins it.
async fn admit(
    request: &Request<()>,
    mut response: Response<()>,
    peer: SocketAddr,
    shared: &Arc<Shared>,
) -> Result<Admission, Refusal> {
    // Before anything else: an unauthenticated client learns nothing.
    let identity = authenticate(request, &mut response, shared)?;
    let config = &shared.config;
    let stream = route(request, &config.circuit_id, &config.service_id)?;
    let params = Params::parse(request.uri().query().unwrap_or("")).map_err(Refusal::bad)?;
    let query = filter::query(stream, &params, &config.query_limits()).map_err(Refusal::bad)?;
    let start = position::requested(&params, stream).map_err(Refusal::bad)?;
    if stream == Stream::StateDeltas {
        let asked = request.headers().get(state_delta::VERSION_HEADER);
        let version =
            state_delta::protocol_version(asked.map(HeaderValue::to_str)).map_err(Refusal::bad)?;
        response
            .headers_mut()
            .insert(state_delta::VERSION_HEADER, HeaderValue::from(version));
    }
    let normal_form = query.as_ref().map_or("", |q| q.normal_form());
    let lease = shared
        .quotas
        .admit(identity, peer.ip(), stream, normal_form)
        .map_err(|exceeded| limited(shared, exceeded))?;
    let resolved = resolve(shared, start).await?;
    if let Resolved::After(after) = resolved {
        let depth = shared.ctx.head().saturating_sub(after);
        lease
            .check_replay(depth)
            .map_err(|exceeded| limited(shared, exceeded))?;
    }
    // Joined before the log is read: see `resume`.
    let subscription = shared.hub.subscribe(stream, query).map_err(|refusal| {
        let message = match refusal {
            hub::Refusal::Full(max) => format!("too many clients: this server takes at most {max}"),
            hub::Refusal::TooManyQueries(max) => format!(
                "too many distinct queries: this server evaluates at most {max} at once (max_distinct_queries); use a query already in use, or none"
            ),
            hub::Refusal::Closed => "the server is shutting down".into(),
        };
        Refusal::new(StatusCode::SERVICE_UNAVAILABLE, message)
    })?;
    let replay = match resolved {
        Resolved::Live => None,
        Resolved::After(after) => Some(Box::new(Replay::new(
            shared.ctx.clone(),
            stream,
            subscription.query.clone(),
            after,
            shared.budget.clone(),
            &shared.metrics,
        ))),
    };
    Ok(Admission {
        stream,
        subscription,
        replay,
        lease,
        response,
    })
}

/// The refusal for a limit: 403 for a replay too deep (asking again will
/// not help), 429 for the others (it will, once clients leave).
fn limited(shared: &Shared, exceeded: crate::quota::Exceeded) -> Refusal {
    shared.metrics.limit_hit(exceeded.identity, exceeded.limit);
    let status = match exceeded.limit {
        Limit::ReplayDepth => StatusCode::FORBIDDEN,
        _ => StatusCode::TOO_MANY_REQUESTS,
    };
    Refusal::new(status, exceeded.message)
}

/// Resolves a position against the log, off the async workers (it reads a
/// few events).
async fn resolve(shared: &Arc<Shared>, start: position::Start) -> Result<Resolved, Refusal> {
    if start == position::Start::Live {
        return Ok(Resolved::Live);
    }
    let ctx = shared.ctx.clone();
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let resolved = tokio::task::spawn_blocking(move || position::resolve(&*ctx, &start, now_ms))
        .await
        .map_err(|e| position::Refused::Unreadable(e.to_string()));
    match resolved.and_then(|r| r) {
        Ok(resolved) => Ok(resolved),
        Err(position::Refused::BadRequest(message)) => Err(Refusal::bad(message)),
        Err(position::Refused::Gone(message)) => Err(Refusal::new(StatusCode::GONE, message)),
        Err(position::Refused::Unreadable(why)) => {
            shared.ctx.error(format_args!(
                "cannot read the event log for a position: {why}"
            ));
            Err(Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot read the event log; try again later".into(),
            ))
        }
    }
}

/// The stream a request's path names.
fn route(request: &Request<()>, circuit: &str, service: &str) -> Result<Stream, Refusal> {
    let path = request.uri().path();
    Stream::from_path(path, circuit, service).ok_or_else(|| {
        let scabbard = format!("/scabbard/{circuit}/{service}/ws/subscribe");
        let paths: Vec<&str> = Stream::ALL
            .iter()
            .map(|s| match s {
                Stream::StateDeltas => &scabbard,
                s => s.path(),
            })
            .collect();
        Refusal::new(
            StatusCode::NOT_FOUND,
            format!(
                "no stream at {}; the streams are {} (and the index at {})",
                filter::shorten(path),
                paths.join(", "),
                index::PATH
            ),
        )
    })
}

/// The answer to a plain request for the stream index.
async fn stream_index(request: &Request<()>, shared: &Arc<Shared>) -> Vec<u8> {
    if request.method() != Method::GET {
        return request::plain(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("{} answers GET only", index::PATH),
            &[(header::ALLOW, HeaderValue::from_static("GET"))],
        );
    }
    let mut ignored = Response::new(());
    if let Err(refusal) = authenticate(request, &mut ignored, shared) {
        shared.metrics.refused(refusal.reason);
        return request::plain(refusal.status, &refusal.message, &refusal.headers);
    }
    let (ctx, base, scabbard) = (
        shared.ctx.clone(),
        shared.base_url.clone(),
        (
            shared.config.circuit_id.clone(),
            shared.config.service_id.clone(),
        ),
    );
    let rendered = tokio::task::spawn_blocking(move || {
        index::render(&*ctx, &base, (&scabbard.0, &scabbard.1))
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r);
    match rendered {
        Ok(json) => request::json(&json),
        Err(why) => {
            shared.ctx.error(format_args!(
                "cannot read the event log for the stream index: {why}"
            ));
            request::plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot read the event log; try again later",
                &[],
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(uri: &str) -> Refusal {
        let request = Request::builder().uri(uri).body(()).unwrap();
        route(&request, "c", "s").unwrap_err()
    }

    #[test]
    fn routes_paths() {
        let request = Request::builder()
            .uri("/api/v1/streams/valid_tx?operation=CREATE")
            .body(())
            .unwrap();
        assert_eq!(route(&request, "c", "s").unwrap(), Stream::ValidTx);
        let refusal = refused("/api/v1/streams/nope");
        assert_eq!(refusal.status, StatusCode::NOT_FOUND);
        assert_eq!(refusal.reason, metrics::Refused::NotFound);
        assert!(refusal.message.starts_with("no stream at /api/v1/streams/nope; the streams are /api/v1/streams/valid_transactions, "), "{}", refusal.message);
    }
}
