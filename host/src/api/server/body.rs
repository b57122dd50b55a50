//! Request bodies, read whole before a request is routed, within three
//! limits: a size (`max_body_bytes`: a larger declared `Content-Length` is
//! refused before a byte of the body is read), a time from the end of the
//! head (`body_read_timeout`), and the memory all bodies being read may
//! hold together (`body_memory_bytes`).
//!
//! The memory is a budget of KiB permits. A body with a `Content-Length`
//! reserves all of it before reading, so that bodies waiting for memory
//! hold none; a chunked body reserves as its bytes arrive. A body that
//! cannot get its memory before its deadline is refused with 503: before
//! the budget, 600 clients each sending all but the last byte of a 1 MiB
//! body held 620 MB of the node's memory.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body as _, Incoming};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, timeout_at};

/// The limits one listener reads bodies within.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub max_bytes: usize,
    pub timeout: Duration,
}

/// The memory the bodies being read on one listener may hold together.
pub struct Budget {
    permits: Arc<Semaphore>,
    bytes: usize,
}

impl Budget {
    pub fn new(bytes: usize) -> Budget {
        Budget {
            permits: Arc::new(Semaphore::new(bytes.div_ceil(1024))),
            bytes,
        }
    }

    async fn reserve(&self, kib: u32, deadline: Instant) -> Result<Reserved, Refusal> {
        match timeout_at(deadline, self.permits.clone().acquire_many_owned(kib)).await {
            Ok(Ok(permit)) => Ok(Reserved(Some(permit))),
            // The semaphore is never closed; a deadline passed.
            Ok(Err(_)) | Err(_) => Err(Refusal::NoMemory {
                budget_bytes: self.bytes,
            }),
        }
    }
}

/// Bytes in the budget's unit; at most max_body_bytes (64 MiB) are asked
/// for at a time, well within a u32 of KiB.
fn kib(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX)
}

/// Memory reserved for a body; returned to the budget when dropped.
#[derive(Default)]
pub struct Reserved(Option<OwnedSemaphorePermit>);

impl Reserved {
    fn add(&mut self, more: Reserved) {
        match (&mut self.0, more.0) {
            (Some(held), Some(more)) => held.merge(more),
            (held, more) => *held = more.or(held.take()),
        }
    }
}

/// Why a body was not read; each is answered with its status and the
/// connection closed (the rest of the body is never read).
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error(
        "the request body is {declared} bytes; this node accepts at most {max} ([api] max_body_bytes)"
    )]
    Declared { declared: u64, max: usize },
    #[error(
        "the request body is larger than this node accepts ({max} bytes, [api] max_body_bytes)"
    )]
    TooLarge { max: usize },
    #[error("the request body did not arrive within {} ms ([api] body_read_timeout_ms)", .after.as_millis())]
    Timeout { after: Duration },
    #[error(
        "the node is reading as many request bodies as its memory for them allows ({budget_bytes} bytes, [api] body_memory_bytes); retry shortly"
    )]
    NoMemory { budget_bytes: usize },
    #[error("the request body could not be read: {0}")]
    Broken(hyper::Error),
}

impl Refusal {
    pub fn status(&self) -> axum::http::StatusCode {
        use axum::http::StatusCode;
        match self {
            Refusal::Declared { .. } | Refusal::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::Timeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Refusal::NoMemory { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::Broken(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// The setting whose limit was hit, as the metrics name it; `None`
    /// for a body that broke off (the client's doing, not a limit).
    pub fn limit(&self) -> Option<&'static str> {
        match self {
            Refusal::Declared { .. } | Refusal::TooLarge { .. } => Some("max_body_bytes"),
            Refusal::Timeout { .. } => Some("body_read_timeout_ms"),
            Refusal::NoMemory { .. } => Some("body_memory_bytes"),
            Refusal::Broken(_) => None,
        }
    }
}

/// A body read whole, and the memory it holds until dropped.
pub struct Read {
    pub bytes: Bytes,
    pub reserved: Reserved,
}

/// Reads `body` within `limits`, holding its bytes against `budget`.
pub async fn read(
    mut body: Incoming,
    limits: BodyLimits,
    budget: &Budget,
) -> Result<Read, Refusal> {
    if body.is_end_stream() {
        return Ok(Read {
            bytes: Bytes::new(),
            reserved: Reserved::default(),
        });
    }
    let deadline = Instant::now() + limits.timeout;
    let declared = body.size_hint().exact();
    let mut reserved = Reserved::default();
    if let Some(declared) = declared {
        if declared > limits.max_bytes as u64 {
            return Err(Refusal::Declared {
                declared,
                max: limits.max_bytes,
            });
        }
        reserved = budget.reserve(kib(declared), deadline).await?;
    }
    // Within max_bytes, so this allocation is bounded and reserved.
    let mut buf = Vec::with_capacity(declared.unwrap_or(0) as usize);
    loop {
        let frame = match timeout_at(deadline, body.frame()).await {
            Err(_) => {
                return Err(Refusal::Timeout {
                    after: limits.timeout,
                });
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(Refusal::Broken(e)),
            Ok(Some(Ok(frame))) => frame,
        };
        // Trailers carry nothing the API reads.
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let total = buf.len() + data.len();
        if total > limits.max_bytes {
            return Err(Refusal::TooLarge {
                max: limits.max_bytes,
            });
        }
        // Only a chunked body outgrows its buffer: a declared one was
        // given all its length. The budget is charged before allocating.
        if total > buf.capacity() {
            let grown = total.max(buf.capacity() * 2).min(limits.max_bytes);
            let more = kib(grown as u64) - kib(buf.capacity() as u64);
            reserved.add(budget.reserve(more, deadline).await?);
            buf.reserve_exact(grown - buf.len());
        }
        buf.extend_from_slice(&data);
    }
    Ok(Read {
        bytes: Bytes::from(buf),
        reserved,
    })
}
