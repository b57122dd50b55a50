//! Error responses: `{"message": "...", "status": N}`, as BigchainDB sends them.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An HTTP error whose message says what is wrong and with what.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "Not found")
    }

    /// A storage failure: logged in full, reported without internals.
    pub fn internal(e: impl std::fmt::Display) -> ApiError {
        tracing::error!("request failed: {e}");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the node cannot serve this request right now; see its log",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"message": self.message, "status": self.status.as_u16()});
        (self.status, Json(body)).into_response()
    }
}
