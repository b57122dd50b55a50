//! What an operator watches: `GET /api/v1/plugins`, `GET /metrics`, and
//! the request metrics behind the latter.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::Api;
use crate::plugin_runtime;

/// Counts and times every request, by the route it matched. Every label
/// comes from a closed set: a label taken from the request as sent (30,000
/// requests with random 1,000-character methods) grew the node by 90 MB
/// for good, one series each.
pub async fn measure(State(api): State<Arc<Api>>, request: Request, next: Next) -> Response {
    let method = method_label(request.method()).to_owned();
    // Route templates (`/api/v1/transactions/{id}`), never request paths.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let metrics = &api.metrics;
    metrics
        .http_request_seconds
        .get_or_create(&vec![
            ("method".into(), method.clone()),
            ("route".into(), route.clone()),
        ])
        .observe(started.elapsed().as_secs_f64());
    metrics
        .http_requests
        .get_or_create(&vec![
            ("method".into(), method),
            ("route".into(), route),
            ("status".into(), response.status().as_u16().to_string()),
        ])
        .inc();
    response
}

/// The method's name if it is one of HTTP's (RFC 9110, and PATCH), else
/// `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::CONNECT => "CONNECT",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// Every metric, in the OpenMetrics text format Prometheus scrapes.
pub async fn metrics(State(api): State<Arc<Api>>) -> Response {
    let plugins = api.plugins.list();
    plugin_runtime::report(&plugins, api.exchange.head(), &api.metrics);
    let ready = super::readiness(&api.source.health(), &plugins).ok;
    api.metrics.ready.set(i64::from(ready));
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        api.metrics.encode(),
    )
        .into_response()
}

/// Each plugin: what it is, its state, and how far behind it is (the
/// admin API's list shows the same).
pub async fn plugins(State(api): State<Arc<Api>>) -> Json<Value> {
    let head = api.exchange.head();
    Json(Value::Array(
        api.plugins.list().iter().map(|r| r.status(head)).collect(),
    ))
}
