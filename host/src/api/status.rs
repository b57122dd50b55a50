//! What an operator watches: `GET /api/v1/plugins`, `GET /metrics`, and
//! the request metrics behind the latter.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Api;
use crate::plugin_manager::{self, State as PluginState};

/// Counts and times every request, by the route it matched.
pub async fn measure(State(api): State<Arc<Api>>, request: Request, next: Next) -> Response {
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let metrics = &api.services.metrics;
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

/// Every metric, in the OpenMetrics text format Prometheus scrapes.
pub async fn metrics(State(api): State<Arc<Api>>) -> Response {
    let services = &api.services;
    plugin_manager::report(&api.plugins, services.exchange.head(), &services.metrics);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        services.metrics.encode(),
    )
        .into_response()
}

/// Each plugin: what it is, its state, and how far behind it is.
pub async fn plugins(State(api): State<Arc<Api>>) -> Json<Value> {
    let head = api.services.exchange.head();
    let list = api
        .plugins
        .iter()
        .map(|record| {
            let plugin = &record.plugin;
            let progress = record.progress();
            let state = record.state();
            json!({
                "name": record.name(),
                "file": plugin.file.display().to_string(),
                "api_version": plugin.api_version.to_string(),
                "event_types": plugin.event_types.to_string(),
                "isolation": plugin.entry.isolation.name(),
                "state": state.name(),
                "failure": match &state { PluginState::Failed(reason) => Some(reason.clone()), _ => None },
                "restarts": record.restarts(),
                "last_error": record.last_error(),
                "events_delivered": record.delivered_count(),
                "last_delivered_seq": progress.delivered(),
                "queue_depth": progress.queued(),
                "lag": head.saturating_sub(progress.delivered()),
            })
        })
        .collect();
    Json(Value::Array(list))
}
