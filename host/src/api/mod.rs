//! The BigchainDB/Planetmint-compatible HTTP API.
//!
//! Routes, status codes and JSON shapes follow BigchainDB 2.x, which the
//! Python drivers are written against; Planetmint's additions (`asset_ids`,
//! `streamedblocks`) are served too. Every route answers with and without a
//! trailing slash, and doubled slashes are merged, because the drivers send
//! both forms.

mod error;
mod params;
mod queries;
mod root;
mod status;
mod transactions;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{Method, Uri};
use axum::middleware;
use axum::routing::get;
use tokio::net::TcpListener;
use tower::Layer;
use tower::util::MapRequestLayer;
use tower_http::cors::CorsLayer;

pub use error::ApiError;

use crate::ledger::Ledger;
use crate::plugin_manager::{PluginRecord, Services};

/// What the handlers share.
pub struct Api {
    pub ledger: Arc<Ledger>,
    pub services: Services,
    pub plugins: Arc<[Arc<PluginRecord>]>,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
}

/// The API's routes.
pub fn router(api: Arc<Api>) -> Router {
    let max_body_bytes = api.max_body_bytes;
    Router::new()
        .route("/", get(root::index))
        .route("/api/v1", get(root::v1_index))
        .route(
            "/api/v1/transactions",
            get(transactions::list).post(transactions::post),
        )
        .route("/api/v1/transactions/{id}", get(transactions::get))
        .route("/api/v1/outputs", get(queries::outputs))
        .route("/api/v1/blocks", get(queries::blocks_of_transaction))
        .route("/api/v1/blocks/{height}", get(queries::block))
        .route("/api/v1/assets", get(queries::assets))
        .route("/api/v1/assets/{cid}", get(queries::assets_by_cid))
        .route("/api/v1/metadata", get(queries::metadata))
        .route("/api/v1/validators", get(queries::validators))
        .route("/api/v1/plugins", get(status::plugins))
        .route("/metrics", get(status::metrics))
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(CorsLayer::permissive())
        .layer(middleware::from_fn_with_state(api.clone(), status::measure))
        .with_state(api)
}

async fn unknown_route(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        format!("Not found: no endpoint {method} {}", uri.path()),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {}", uri.path()),
    )
}

/// `/api/v1/transactions/` and `/api//v1` route like `/api/v1/transactions`
/// and `/api/v1`. Routing happens before a router's own layers run, so this
/// wraps the router from outside.
fn normalize_path(mut request: Request) -> Request {
    let uri = request.uri();
    let path = uri.path();
    if path.len() > 1 && (path.ends_with('/') || path.contains("//")) {
        let mut clean = String::with_capacity(path.len());
        for segment in path.split('/').filter(|s| !s.is_empty()) {
            clean.push('/');
            clean.push_str(segment);
        }
        if clean.is_empty() {
            clean.push('/');
        }
        if let Some(query) = uri.query() {
            clean.push('?');
            clean.push_str(query);
        }
        let mut parts = uri.clone().into_parts();
        if let Ok(pq) = clean.parse() {
            parts.path_and_query = Some(pq);
            if let Ok(new) = Uri::from_parts(parts) {
                *request.uri_mut() = new;
            }
        }
    }
    request
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = MapRequestLayer::new(normalize_path).layer(router);
    axum::serve(listener, tower::make::Shared::new(app))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalized(uri: &str) -> String {
        let request = Request::builder()
            .uri(uri)
            .body(axum::body::Body::empty())
            .unwrap();
        normalize_path(request).uri().to_string()
    }

    #[test]
    fn trailing_and_doubled_slashes_route_like_the_plain_path() {
        assert_eq!(
            normalized("/api/v1/transactions/?mode=commit"),
            "/api/v1/transactions?mode=commit"
        );
        assert_eq!(normalized("/api/v1/assets//Qm1"), "/api/v1/assets/Qm1");
        assert_eq!(normalized("/api/v1/"), "/api/v1");
        assert_eq!(normalized("/"), "/");
        assert_eq!(normalized("/api/v1/blocks/3"), "/api/v1/blocks/3");
    }
}
