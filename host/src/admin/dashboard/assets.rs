//! The page's files, embedded in the binary (nothing is fetched from
//! elsewhere: the page works on a network without internet access), and
//! the headers every dashboard response carries: a content security policy
//! that lets the page load and connect to this node only, run no inline
//! script and be framed by no other site (its buttons act on the node).

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/dashboard.js");
const STYLE: &str = include_str!("assets/dashboard.css");
const ICON: &str = include_str!("assets/favicon.svg");

const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                      connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The page and its files.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| file(INDEX, "text/html; charset=utf-8")))
        .route(
            "/dashboard/dashboard.js",
            get(|| file(SCRIPT, "text/javascript; charset=utf-8")),
        )
        .route(
            "/dashboard/dashboard.css",
            get(|| file(STYLE, "text/css; charset=utf-8")),
        )
        .route(
            "/dashboard/favicon.svg",
            get(|| file(ICON, "image/svg+xml")),
        )
}

async fn file(body: &'static str, content_type: &'static str) -> Response {
    // Revalidated on every load: a node upgraded in place serves new files
    // under the same names.
    let mut response = secured(([(header::CONTENT_TYPE, content_type)], body));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// A dashboard response that no cache keeps: snapshots and answers.
pub fn no_store(response: impl IntoResponse) -> Response {
    let mut response = secured(response);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn secured(response: impl IntoResponse) -> Response {
    let mut response = response.into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}
