//! The host's metrics, and the ones plugins report, in Prometheus text format.
//!
//! Host metrics are registered up front; plugin metrics are registered on
//! first use (plugins name them at run time) and carry a `plugin` label.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A metric's labels.
pub type Labels = Vec<(String, String)>;

/// Seconds, from 100 µs to ~13 s.
fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.0001, 2.0, 18)
}

fn histogram() -> Histogram {
    Histogram::new(latency_buckets())
}

/// Every metric the host and its plugins expose.
pub struct Metrics {
    registry: Mutex<Registry>,
    plugin_metrics: Mutex<HashMap<String, PluginMetric>>,
    /// Events published, by `type`.
    pub events_published: Family<Labels, Counter>,
    /// Transactions accepted, by `mode`.
    pub transactions_accepted: Family<Labels, Counter>,
    /// Transactions rejected, by `rule` and `stage` (admission or block).
    pub transactions_rejected: Family<Labels, Counter>,
    /// Time from cutting a block to having it durably written, in seconds.
    pub block_commit_seconds: Histogram,
    /// HTTP requests, by `method`, `route` and `status`.
    pub http_requests: Family<Labels, Counter>,
    /// HTTP request latency, by `method` and `route`, in seconds.
    pub http_request_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    /// Per plugin: events delivered, restarts, queue depth, lag behind the head.
    pub plugin_delivered: Family<Labels, Gauge>,
    pub plugin_restarts: Family<Labels, Gauge>,
    pub plugin_queue_depth: Family<Labels, Gauge>,
    pub plugin_lag: Family<Labels, Gauge>,
}

#[derive(Clone)]
enum PluginMetric {
    Counter(Family<Labels, Counter>),
    Gauge(Family<Labels, Gauge>),
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let metrics = Metrics {
            events_published: Family::default(),
            transactions_accepted: Family::default(),
            transactions_rejected: Family::default(),
            block_commit_seconds: histogram(),
            http_requests: Family::default(),
            http_request_seconds: Family::new_with_constructor(histogram),
            plugin_delivered: Family::default(),
            plugin_restarts: Family::default(),
            plugin_queue_depth: Family::default(),
            plugin_lag: Family::default(),
            registry: Mutex::new(Registry::default()),
            plugin_metrics: Mutex::new(HashMap::new()),
        };
        registry.register(
            "eventhost_events_published",
            "Events published, by type",
            metrics.events_published.clone(),
        );
        registry.register(
            "eventhost_transactions_accepted",
            "Transactions accepted by the HTTP API, by mode",
            metrics.transactions_accepted.clone(),
        );
        registry.register(
            "eventhost_transactions_rejected",
            "Transactions rejected, by rule and stage (admission or block)",
            metrics.transactions_rejected.clone(),
        );
        registry.register(
            "eventhost_block_commit_seconds",
            "Time from cutting a block to having it durably written",
            metrics.block_commit_seconds.clone(),
        );
        registry.register(
            "eventhost_http_requests",
            "HTTP requests, by method, route and status",
            metrics.http_requests.clone(),
        );
        registry.register(
            "eventhost_http_request_seconds",
            "HTTP request latency, by method and route",
            metrics.http_request_seconds.clone(),
        );
        registry.register(
            "eventhost_plugin_events_delivered",
            "Events handed to each plugin",
            metrics.plugin_delivered.clone(),
        );
        registry.register(
            "eventhost_plugin_restarts",
            "Times each plugin was restarted",
            metrics.plugin_restarts.clone(),
        );
        registry.register(
            "eventhost_plugin_queue_depth",
            "Events waiting in each plugin's queue",
            metrics.plugin_queue_depth.clone(),
        );
        registry.register(
            "eventhost_plugin_lag_events",
            "Events each plugin has not received yet",
            metrics.plugin_lag.clone(),
        );
        *metrics.registry.lock().unwrap_or_else(|e| e.into_inner()) = registry;
        metrics
    }

    /// Adds to a counter a plugin reports.
    pub fn plugin_counter(&self, plugin: &str, name: &str, labels: Labels, delta: u64) {
        if let Some(PluginMetric::Counter(family)) =
            self.plugin_metric(plugin, name, || PluginMetric::Counter(Family::default()))
        {
            family
                .get_or_create(&with_plugin(plugin, labels))
                .inc_by(delta);
        }
    }

    /// Sets a gauge a plugin reports.
    pub fn plugin_gauge(&self, plugin: &str, name: &str, labels: Labels, value: i64) {
        if let Some(PluginMetric::Gauge(family)) =
            self.plugin_metric(plugin, name, || PluginMetric::Gauge(Family::default()))
        {
            family
                .get_or_create(&with_plugin(plugin, labels))
                .set(value);
        }
    }

    /// The family of a plugin metric, registered on first use; `None` (and
    /// one warning) if the name is invalid or taken by another kind.
    fn plugin_metric(
        &self,
        plugin: &str,
        name: &str,
        new: impl FnOnce() -> PluginMetric,
    ) -> Option<PluginMetric> {
        // prometheus-client appends `_total` to counters itself.
        let name = name.strip_suffix("_total").unwrap_or(name);
        let mut known = self
            .plugin_metrics
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(metric) = known.get(name) {
            let wanted = new();
            return match (metric, &wanted) {
                (PluginMetric::Counter(_), PluginMetric::Counter(_))
                | (PluginMetric::Gauge(_), PluginMetric::Gauge(_)) => Some(metric.clone()),
                _ => None,
            };
        }
        if !valid_name(name) {
            tracing::warn!(
                plugin,
                "ignoring metric `{name}`: not a valid Prometheus metric name"
            );
            known.insert(name.to_owned(), new());
            return None;
        }
        let metric = new();
        let help = format!("Reported by plugin {plugin}");
        let mut registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        match &metric {
            PluginMetric::Counter(f) => registry.register(name, help, f.clone()),
            PluginMetric::Gauge(f) => registry.register(name, help, f.clone()),
        }
        known.insert(name.to_owned(), metric.clone());
        Some(metric)
    }

    /// Everything in Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &registry);
        out
    }
}

fn with_plugin(plugin: &str, mut labels: Labels) -> Labels {
    labels.insert(0, ("plugin".into(), plugin.into()));
    labels
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Shared handle.
pub type SharedMetrics = Arc<Metrics>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_metrics_are_registered_on_first_use_with_a_plugin_label() {
        let m = Metrics::new();
        m.plugin_counter(
            "ws",
            "ws_clients_closed_total",
            vec![("reason".into(), "slow".into())],
            2,
        );
        m.plugin_counter(
            "ws",
            "ws_clients_closed",
            vec![("reason".into(), "slow".into())],
            1,
        );
        m.plugin_gauge("ws", "ws_clients_connected", vec![], 7);
        m.plugin_gauge("ws", "ws_clients_closed", vec![], 1);
        m.plugin_counter("ws", "bad name!", vec![], 1);
        let text = m.encode();
        assert!(
            text.contains("ws_clients_closed_total{plugin=\"ws\",reason=\"slow\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("ws_clients_connected{plugin=\"ws\"} 7"),
            "{text}"
        );
        assert!(!text.contains("bad"), "{text}");
    }
}
