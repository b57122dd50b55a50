//! Reading a client's HTTP request head, at most `max_request_bytes` of
//! it, and answering requests that get no stream.
//!
//! The plugin reads the head itself (httparse, as tungstenite does) rather
//! than handing the socket to tungstenite's handshake: tungstenite gave up
//! on a long request without a word, and the client, still sending, saw
//! its connection reset instead of a status. Here an oversized request
//! line gets 414 and oversized headers 431, and the answer is followed by
//! a lingering close (the rest of the request is read and dropped, for a
//! bounded time) so that the client reads the answer, not a reset.

use std::time::Duration;

use bytes::BufMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::http::{
    HeaderName, HeaderValue, Request, StatusCode, Version, header,
};

/// Header fields a request may have.
const MAX_HEADERS: usize = 64;

/// What a lingering close reads and drops at most.
const LINGER_BYTES: usize = 1024 * 1024;

/// Room for a request head at first: a client's upgrade request is a few
/// hundred bytes.
const FIRST_READ: usize = 1024;

/// Why no request could be read.
#[derive(Debug)]
pub enum HeadError {
    /// The client left (or sent nothing) before the head was complete.
    Closed,
    /// The head is longer than the limit: `line` if the request line is.
    TooLong {
        line: bool,
        limit: usize,
    },
    TooManyHeaders,
    /// Not HTTP, or bytes after the head (a client may not send frames
    /// before the upgrade is answered).
    Malformed(String),
    Io(std::io::Error),
}

impl std::fmt::Display for HeadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self, self.answer()) {
            (HeadError::Io(e), _) => write!(f, "cannot read the request: {e}"),
            (_, Some((status, why))) => write!(f, "{status}: {why}"),
            (_, None) => f.write_str("the client sent no complete request"),
        }
    }
}

impl HeadError {
    /// The status and sentence to answer with, if the client still listens.
    pub fn answer(&self) -> Option<(StatusCode, String)> {
        match self {
            HeadError::Closed | HeadError::Io(_) => None,
            HeadError::TooLong { line: true, limit } => Some((
                StatusCode::URI_TOO_LONG,
                format!(
                    "request line too long: the request may be at most {limit} bytes (max_request_bytes); is the query too long?"
                ),
            )),
            HeadError::TooLong { line: false, limit } => Some((
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                format!(
                    "request header too large: the request may be at most {limit} bytes (max_request_bytes)"
                ),
            )),
            HeadError::TooManyHeaders => Some((
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                format!("too many header fields: at most {MAX_HEADERS}"),
            )),
            HeadError::Malformed(why) => Some((
                StatusCode::BAD_REQUEST,
                format!("expected a WebSocket upgrade request: {why}"),
            )),
        }
    }
}

/// Reads one request head from `io`.
pub async fn read<S: AsyncRead + Unpin>(
    io: &mut S,
    limit: usize,
) -> Result<Request<()>, HeadError> {
    // Read straight into the buffer, grown from a size most requests fit:
    // clients upgrading at once each hold it until their request is whole
    // (a crowd connecting at once, row 4c).
    let mut buf = Vec::with_capacity(limit.min(FIRST_READ));
    loop {
        if buf.len() >= limit {
            let line = !buf.windows(2).any(|w| w == b"\r\n");
            return Err(HeadError::TooLong { line, limit });
        }
        if buf.len() == buf.capacity() {
            buf.reserve(buf.len().min(limit - buf.len()));
        }
        let room = (buf.capacity() - buf.len()).min(limit - buf.len());
        let n = io
            .read_buf(&mut (&mut buf).limit(room))
            .await
            .map_err(HeadError::Io)?;
        if n == 0 {
            return Err(HeadError::Closed);
        }
        if let Some(request) = parse(&buf)? {
            return Ok(request);
        }
    }
}

/// The request, if `buf` holds a whole head.
fn parse(buf: &[u8]) -> Result<Option<Request<()>>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let length = match parsed.parse(buf) {
        Ok(httparse::Status::Partial) => return Ok(None),
        Ok(httparse::Status::Complete(length)) => length,
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyHeaders),
        Err(e) => return Err(HeadError::Malformed(format!("not an HTTP request: {e}"))),
    };
    if length < buf.len() {
        return Err(HeadError::Malformed(
            "the client sent data before the upgrade was answered".into(),
        ));
    }
    let malformed = |what: &str| HeadError::Malformed(what.to_owned());
    let version = match parsed.version {
        Some(1) => Version::HTTP_11,
        _ => Version::HTTP_10,
    };
    let mut request = Request::builder()
        .method(parsed.method.ok_or_else(|| malformed("no method"))?)
        .uri(parsed.path.ok_or_else(|| malformed("no path"))?)
        .version(version);
    for h in parsed.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| malformed("a header name is not valid"))?;
        let value = HeaderValue::from_bytes(h.value)
            .map_err(|_| malformed("a header value is not valid"))?;
        request = request.header(name, value);
    }
    request
        .body(())
        .map(Some)
        .map_err(|e| HeadError::Malformed(format!("the request line is not valid: {e}")))
}

/// A plain-text answer: `status`, `body` and a line break, then close.
pub fn plain(status: StatusCode, body: &str, extra: &[(HeaderName, HeaderValue)]) -> Vec<u8> {
    let body = format!("{body}\n");
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in extra {
        head.push_str(&format!(
            "{name}: {}\r\n",
            value.to_str().unwrap_or_default()
        ));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body.as_bytes());
    bytes
}

/// A JSON answer with status 200, then close.
pub fn json(body: &str) -> Vec<u8> {
    let mut bytes = format!(
        "HTTP/1.1 200 OK\r\n{}: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        header::CONTENT_TYPE,
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(body.as_bytes());
    bytes
}

/// Writes `answer` and closes the connection once the client has had
/// `linger` to finish sending and read it: the rest of its request is read
/// and dropped, so that the kernel does not reset the connection under
/// the answer.
pub async fn answer_and_close<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    answer: &[u8],
    linger: Duration,
) {
    if io.write_all(answer).await.is_err() || io.flush().await.is_err() {
        return;
    }
    let _ = io.shutdown().await;
    let drain = async {
        // On the heap: on the stack it would be part of every upgrade's
        // task, refused or not.
        let mut chunk = vec![0u8; 4096];
        let mut dropped = 0;
        while dropped < LINGER_BYTES {
            match io.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => dropped += n,
            }
        }
    };
    let _ = tokio::time::timeout(linger, drain).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn head(bytes: &[u8], limit: usize) -> Result<Request<()>, HeadError> {
        let mut io = bytes;
        read(&mut io, limit).await
    }

    #[tokio::test]
    async fn reads_a_request_and_refuses_what_is_too_long() {
        let ok = head(
            b"GET /a?q=1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n",
            1024,
        )
        .await
        .unwrap();
        assert_eq!(ok.uri().query(), Some("q=1"));
        assert_eq!(ok.headers()["upgrade"], "websocket");

        let long_line = format!("GET /a?q={} HTTP/1.1\r\n\r\n", "x".repeat(2000));
        let err = head(long_line.as_bytes(), 1024).await.unwrap_err();
        assert!(
            matches!(
                err,
                HeadError::TooLong {
                    line: true,
                    limit: 1024
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.answer().unwrap().0, StatusCode::URI_TOO_LONG);

        let long_header = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "x".repeat(2000));
        let err = head(long_header.as_bytes(), 1024).await.unwrap_err();
        assert_eq!(
            err.answer().unwrap().0,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );

        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "X: y\r\n".repeat(100));
        let err = head(many.as_bytes(), 4096).await.unwrap_err();
        assert!(matches!(err, HeadError::TooManyHeaders), "{err:?}");

        let err = head(b"GET / HTTP/1.1\r\n\r\n\x81\x00", 1024)
            .await
            .unwrap_err();
        assert!(err.answer().unwrap().1.contains("data before the upgrade"));
        assert!(matches!(
            head(b"GET / HT", 1024).await.unwrap_err(),
            HeadError::Closed
        ));
        let err = head(b"\x16\x03\x01 hello\r\n\r\n", 1024).await.unwrap_err();
        assert_eq!(err.answer().unwrap().0, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn a_plain_answer_is_well_formed() {
        let text = String::from_utf8(plain(StatusCode::BAD_REQUEST, "why", &[])).unwrap();
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
        assert!(
            text.ends_with("Content-Length: 4\r\nConnection: close\r\n\r\nwhy\n"),
            "{text}"
        );
    }
}
