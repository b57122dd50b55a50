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

    /// What an edge node answers where the ledger node is needed: it has
    /// the ledger's events, not its transaction API or tables. 503, so that
    /// a client (or a load balancer in front of both) tries elsewhere.
    pub fn elsewhere(ledger_url: Option<&str>) -> ApiError {
        let send = match ledger_url {
            Some(url) => format!("send this request to the ledger node at {url}"),
            None => "send this request to the ledger node (this edge does not know its URL: set [source] ledger_url)".to_owned(),
        };
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "this is an edge node: it serves the ledger node's event streams, not its transactions, blocks or other tables; {send}"
            ),
        )
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

/// A storage failure is the node's, not the client's: logged in full,
/// answered 503 without internals.
impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> ApiError {
        ApiError::internal(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"message": self.message, "status": self.status.as_u16()});
        (self.status, Json(body)).into_response()
    }
}
