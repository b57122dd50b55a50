//! The HTTP upgrade: which stream a client asks for, with which filter, or
//! why it cannot have it.
//!
//! Everything is decided before the upgrade is accepted, so a wrong path or
//! filter is an HTTP error the client can read (404, 400), never a socket
//! that opens and stays silent. A client is in the hub by the time it
//! receives the `101 Switching Protocols`: it receives every message
//! published after its connect call returned, and a resuming client
//! (`?last_seen_event=`) whatever the log holds after the event it names.

use std::sync::Arc;

use eventhost_plugin_api::Context;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{
    Callback, ErrorResponse, Request, Response,
};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode, Uri, header};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::{Error as WsError, error::ProtocolError};

use crate::auth::{self, Admitted, Tokens};
use crate::config::Config;
use crate::filter::Filter;
use crate::hub::{Hub, Refusal, Subscription};
use crate::resume::{self, Replay};
use crate::state_delta;
use crate::stream::Stream;

/// An upgraded connection and the client's place in the hub.
pub struct Upgraded<S> {
    pub socket: WebSocketStream<S>,
    pub stream: Stream,
    pub subscription: Subscription,
    /// What to send from the log before the live messages, if resuming.
    pub replay: Option<Replay>,
}

/// Performs the upgrade on `io`. On failure the client has been told why
/// (when it can still be told) and the error says it for the log.
pub async fn accept<S>(
    mut io: S,
    hub: &Arc<Hub>,
    tokens: Option<&Tokens>,
    ctx: &Arc<Context>,
    settings: &Config,
) -> Result<Upgraded<S>, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let config = settings.websocket();
    let mut joined = None;
    let admission = Admission {
        hub,
        tokens,
        ctx,
        scabbard: (&settings.circuit_id, &settings.service_id),
        joined: &mut joined,
    };
    // The handshake borrows the socket, so that a request tungstenite
    // cannot take can still be answered on it.
    let outcome = tokio_tungstenite::accept_hdr_async_with_config(&mut io, admission, Some(config))
        .await
        .map(drop);
    match (outcome, joined) {
        (Ok(()), Some((stream, subscription, replay))) => Ok(Upgraded {
            // The handshake refuses bytes after the request, so nothing of
            // the client's is buffered in the stream it made: wrapping the
            // socket afresh loses nothing.
            socket: WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await,
            stream,
            subscription,
            replay,
        }),
        (Ok(()), None) => Err("upgraded without choosing a stream".into()),
        (Err(WsError::Http(response)), _) => Err(format!("refused with {}", response.status())),
        (Err(e), _) if answerable(&e) => {
            let body = format!("expected a WebSocket upgrade request: {e}\n");
            let response = plain_response(StatusCode::BAD_REQUEST, &body);
            let _ = io.write_all(response.as_bytes()).await;
            let _ = io.shutdown().await;
            Err(format!("not a WebSocket upgrade request: {e}"))
        }
        (Err(e), _) => Err(e.to_string()),
    }
}

/// Decides, from the request, which stream the client joins.
struct Admission<'a> {
    hub: &'a Arc<Hub>,
    tokens: Option<&'a Tokens>,
    ctx: &'a Arc<Context>,
    /// The scabbard stream's circuit and service ids.
    scabbard: (&'a str, &'a str),
    joined: &'a mut Option<(Stream, Subscription, Option<Replay>)>,
}

impl Callback for Admission<'_> {
    fn on_request(
        self,
        request: &Request,
        mut response: Response,
    ) -> Result<Response, ErrorResponse> {
        // Before anything else: an unauthenticated client learns nothing.
        if let Some(tokens) = self.tokens {
            match tokens.admit(request) {
                Ok(Admitted::Header) => {}
                Ok(Admitted::Subprotocol) => {
                    response.headers_mut().insert(
                        header::SEC_WEBSOCKET_PROTOCOL,
                        HeaderValue::from_static(auth::SUBPROTOCOL),
                    );
                }
                Err(why) => {
                    let mut refusal = Refused(StatusCode::UNAUTHORIZED, why.into()).into_response();
                    refusal
                        .headers_mut()
                        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                    return Err(refusal);
                }
            }
        }
        let (circuit, service) = self.scabbard;
        let (stream, filter) =
            route(request.uri(), circuit, service).map_err(Refused::into_response)?;
        let bad_request = |message| Refused(StatusCode::BAD_REQUEST, message).into_response();
        if stream == Stream::StateDeltas {
            let asked = request.headers().get(state_delta::VERSION_HEADER);
            let version = state_delta::protocol_version(asked.map(HeaderValue::to_str))
                .map_err(bad_request)?;
            response
                .headers_mut()
                .insert(state_delta::VERSION_HEADER, HeaderValue::from(version));
        }
        let query = request.uri().query().unwrap_or("");
        let mut requested = resume::requested(query).map_err(bad_request)?;
        // Scabbard sends every event from the first to a client that names none.
        if stream == Stream::StateDeltas {
            requested.get_or_insert_default();
        }
        let after = requested
            .map(|id| resume::resolve(self.ctx, &id))
            .transpose()
            .map_err(bad_request)?;
        let replay =
            after.map(|after| Replay::new(self.ctx.clone(), stream, filter.clone(), after));
        // Joined before the log is read: see `resume`.
        let subscription = self.hub.subscribe(stream, filter).map_err(|refusal| {
            let message = match refusal {
                Refusal::Full(max) => format!("too many clients: this server takes at most {max}"),
                Refusal::Closed => "the server is shutting down".into(),
            };
            Refused(StatusCode::SERVICE_UNAVAILABLE, message).into_response()
        })?;
        *self.joined = Some((stream, subscription, replay));
        Ok(response)
    }
}

/// Why a request cannot have a stream: an HTTP status and a sentence.
#[derive(Debug)]
struct Refused(StatusCode, String);

/// The stream and filter a request's path and query ask for.
fn route(uri: &Uri, circuit: &str, service: &str) -> Result<(Stream, Filter), Refused> {
    let stream = Stream::from_path(uri.path(), circuit, service).ok_or_else(|| {
        let scabbard = format!("/scabbard/{circuit}/{service}/ws/subscribe");
        let paths: Vec<&str> = Stream::ALL
            .iter()
            .map(|s| match s {
                Stream::StateDeltas => &scabbard,
                s => s.path(),
            })
            .collect();
        Refused(
            StatusCode::NOT_FOUND,
            format!(
                "no stream at {}; the streams are {}",
                uri.path(),
                paths.join(", ")
            ),
        )
    })?;
    let filter = Filter::parse(stream, uri.query().unwrap_or(""))
        .map_err(|message| Refused(StatusCode::BAD_REQUEST, message))?;
    Ok((stream, filter))
}

/// Whether a failed handshake left a client that waits for an answer: it
/// sent a request tungstenite could not take (no upgrade headers, a wrong
/// method, malformed HTTP), as opposed to leaving or being answered already.
fn answerable(e: &WsError) -> bool {
    match e {
        WsError::Protocol(ProtocolError::HandshakeIncomplete) => false,
        WsError::Protocol(_) | WsError::HttpFormat(_) | WsError::Capacity(_) => true,
        _ => false,
    }
}

impl Refused {
    /// The response tungstenite writes in place of the upgrade.
    fn into_response(self) -> ErrorResponse {
        let Refused(status, message) = self;
        let body = format!("{message}\n");
        let mut response = ErrorResponse::new(None);
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        *response.body_mut() = Some(body);
        response
    }
}

/// The same refusal, written by hand for the requests tungstenite gives up on.
fn plain_response(status: StatusCode, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(uri: &str) -> (StatusCode, String) {
        let Refused(status, message) = route(&uri.parse().unwrap(), "c", "s").unwrap_err();
        (status, message)
    }

    #[test]
    fn routes_paths_and_filters() {
        let (stream, _) = route(
            &"/api/v1/streams/valid_tx?operation=CREATE".parse().unwrap(),
            "c",
            "s",
        )
        .unwrap();
        assert_eq!(stream, Stream::ValidTx);
        let (status, body) = refused("/api/v1/streams/nope");
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body.starts_with("no stream at /api/v1/streams/nope; the streams are /api/v1/streams/valid_transactions, "), "{body}");
        let (status, body) = refused("/api/v1/streams/valid_transactions?asset_id=1");
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.starts_with("asset_id must be"), "{body}");
    }

    #[test]
    fn a_plain_response_is_well_formed() {
        let text = plain_response(StatusCode::BAD_REQUEST, "why\n");
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
        assert!(
            text.ends_with("Content-Length: 4\r\nConnection: close\r\n\r\nwhy\n"),
            "{text}"
        );
    }
}
