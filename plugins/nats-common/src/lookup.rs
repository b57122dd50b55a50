//! What JetStream's answers to lookups mean.

use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::{GetStreamError, GetStreamErrorKind};

/// Whether looking a stream up failed because there is no such stream
/// (rather than because the server could not answer).
pub fn stream_not_found(e: &GetStreamError) -> bool {
    matches!(
        e.kind(),
        GetStreamErrorKind::JetStream(err) if err.error_code() == ErrorCode::STREAM_NOT_FOUND
    )
}
