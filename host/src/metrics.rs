//! The host's metrics, and the ones plugins report, in Prometheus text format.
//!
//! Host metrics are registered up front; plugin metrics are registered on
//! first use (plugins name them at run time) and carry a `plugin` label.
//!
//! Every series lives until the process ends, so every label value must
//! come from a closed set. The host's own labels do (event types, modes,
//! rules, route templates, known methods, limits' names); what plugins
//! report is bounded here instead: at most [`MAX_PLUGIN_METRICS`] names,
//! [`MAX_SERIES`] label sets per name and [`MAX_LABEL_BYTES`] of labels per
//! set, beyond which samples are dropped with one warning.

use std::collections::{HashMap, HashSet};
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

/// Registers each listed field of `metrics` under its name and help text.
macro_rules! register {
    ($registry:ident, $metrics:ident; $($field:ident: $name:literal, $help:literal;)*) => {
        $($registry.register($name, $help, $metrics.$field.clone());)*
    };
}

/// Every metric the host and its plugins expose.
pub struct Metrics {
    registry: Mutex<Registry>,
    plugin_metrics: Mutex<PluginMetrics>,
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
    /// Open HTTP connections, by `listener`.
    pub http_connections: Family<Labels, Gauge>,
    /// Times a listener enforced a limit, by `listener` and `limit` (the
    /// setting's name).
    pub http_limit_hits: Family<Labels, Counter>,
    /// Per plugin: events delivered, restarts, queue depth, lag behind the head.
    pub plugin_delivered: Family<Labels, Gauge>,
    pub plugin_restarts: Family<Labels, Gauge>,
    pub plugin_queue_depth: Family<Labels, Gauge>,
    pub plugin_lag: Family<Labels, Gauge>,
    /// Per plugin: events moved to its dead-letter file.
    pub plugin_dead_letters: Family<Labels, Counter>,
    /// Per plugin and `state` (each of [`State::NAMES`]): 1 for the
    /// plugin's state, 0 for the others.
    ///
    /// [`State::NAMES`]: crate::plugin_runtime::State::NAMES
    pub plugin_state: Family<Labels, Gauge>,
    /// The height of the newest valid block published.
    pub head_height: Gauge,
    /// Transactions in the blocks published, by event `type`: committed
    /// (BLOCK_VALID) and rejected at block time (BLOCK_INVALID).
    pub block_transactions: Family<Labels, Counter>,
    /// 1 when `GET /health/ready` would answer 200, else 0.
    pub ready: Gauge,
    /// Events dropped from the event log by retention.
    pub events_pruned: Counter,
    /// Per plugin: events pruned from the log before the plugin read them.
    pub plugin_events_missed: Family<Labels, Counter>,
}

/// Metric names plugins may register, together.
pub const MAX_PLUGIN_METRICS: usize = 256;
/// Label sets one plugin metric may have.
pub const MAX_SERIES: usize = 1000;
/// Bytes of one label set's names and values.
pub const MAX_LABEL_BYTES: usize = 1024;

/// The metrics plugins named so far.
#[derive(Default)]
struct PluginMetrics {
    by_name: HashMap<String, PluginMetric>,
    /// Whether the warning that no more names are taken was given.
    full_warned: bool,
}

struct PluginMetric {
    family: PluginFamily,
    /// False for an invalid name: remembered, never exposed.
    exposed: bool,
    series: HashSet<Labels>,
    /// Whether a warning about dropped samples was given.
    warned: bool,
}

#[derive(Clone)]
enum PluginFamily {
    Counter(Family<Labels, Counter>),
    Gauge(Family<Labels, Gauge>),
}

/// Which kind of metric a plugin reports a sample of.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PluginKind {
    Counter,
    Gauge,
}

impl PluginFamily {
    fn new(kind: PluginKind) -> PluginFamily {
        match kind {
            PluginKind::Counter => PluginFamily::Counter(Family::default()),
            PluginKind::Gauge => PluginFamily::Gauge(Family::default()),
        }
    }

    fn kind(&self) -> PluginKind {
        match self {
            PluginFamily::Counter(_) => PluginKind::Counter,
            PluginFamily::Gauge(_) => PluginKind::Gauge,
        }
    }
}

/// One series of a plugin metric.
enum PluginSeries {
    Counter(Counter),
    Gauge(Gauge),
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
            http_connections: Family::default(),
            http_limit_hits: Family::default(),
            plugin_delivered: Family::default(),
            plugin_restarts: Family::default(),
            plugin_queue_depth: Family::default(),
            plugin_lag: Family::default(),
            plugin_dead_letters: Family::default(),
            plugin_state: Family::default(),
            head_height: Gauge::default(),
            block_transactions: Family::default(),
            ready: Gauge::default(),
            events_pruned: Counter::default(),
            plugin_events_missed: Family::default(),
            registry: Mutex::new(Registry::default()),
            plugin_metrics: Mutex::new(PluginMetrics::default()),
        };
        register! {
            registry, metrics;
            events_published: "eventhost_events_published", "Events published, by type";
            transactions_accepted: "eventhost_transactions_accepted",
                "Transactions accepted by the HTTP API, by mode";
            transactions_rejected: "eventhost_transactions_rejected",
                "Transactions rejected, by rule and stage (admission or block)";
            block_commit_seconds: "eventhost_block_commit_seconds",
                "Time from cutting a block to having it durably written";
            http_requests: "eventhost_http_requests", "HTTP requests, by method, route and status";
            http_request_seconds: "eventhost_http_request_seconds",
                "HTTP request latency, by method and route";
            http_connections: "eventhost_http_connections", "Open HTTP connections, by listener";
            http_limit_hits: "eventhost_http_limit_hits",
                "Times an HTTP listener enforced a limit, by listener and limit (the setting's name)";
            plugin_delivered: "eventhost_plugin_events_delivered", "Events handed to each plugin";
            plugin_restarts: "eventhost_plugin_restarts", "Times each plugin was restarted";
            plugin_queue_depth: "eventhost_plugin_queue_depth",
                "Events waiting in each plugin's queue";
            plugin_lag: "eventhost_plugin_lag_events", "Events each plugin has not received yet";
            plugin_dead_letters: "eventhost_plugin_dead_letters",
                "Events moved to each plugin's dead-letter file";
            plugin_state: "eventhost_plugin_state",
                "Each plugin's state: 1 for the state it is in, 0 for the others";
            head_height: "eventhost_head_height", "Height of the newest valid block published";
            block_transactions: "eventhost_block_transactions",
                "Transactions in the blocks published, by event type (BLOCK_VALID: committed, BLOCK_INVALID: rejected)";
            ready: "eventhost_ready", "1 when GET /health/ready answers 200 (the node can do its work), else 0";
            events_pruned: "eventhost_events_pruned", "Events dropped from the event log by retention";
            plugin_events_missed: "eventhost_plugin_events_missed",
                "Events pruned from the event log before each plugin read them";
        }
        *metrics.registry.lock().unwrap_or_else(|e| e.into_inner()) = registry;
        metrics
    }

    /// Adds to a counter a plugin reports.
    pub fn plugin_counter(&self, plugin: &str, name: &str, labels: Labels, delta: u64) {
        if let Some(PluginSeries::Counter(counter)) =
            self.plugin_series(plugin, name, labels, PluginKind::Counter)
        {
            counter.inc_by(delta);
        }
    }

    /// Sets a gauge a plugin reports.
    pub fn plugin_gauge(&self, plugin: &str, name: &str, labels: Labels, value: i64) {
        if let Some(PluginSeries::Gauge(gauge)) =
            self.plugin_series(plugin, name, labels, PluginKind::Gauge)
        {
            gauge.set(value);
        }
    }

    /// The series of a plugin metric, the metric registered on first use;
    /// `None` (with one warning) if the name is invalid, taken by another
    /// kind, or beyond the bounds.
    fn plugin_series(
        &self,
        plugin: &str,
        name: &str,
        labels: Labels,
        kind: PluginKind,
    ) -> Option<PluginSeries> {
        // prometheus-client appends `_total` to counters itself.
        let name = name.strip_suffix("_total").unwrap_or(name);
        let mut known = self
            .plugin_metrics
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // The family is made only for a new name: a bridge plugin reports a
        // few samples per event, and making one per call was an allocation
        // each (the nats benchmark, row 7a).
        if !known.by_name.contains_key(name) {
            if known.by_name.len() >= MAX_PLUGIN_METRICS {
                if !known.full_warned {
                    known.full_warned = true;
                    tracing::warn!(
                        plugin,
                        "ignoring metric `{name}` and any other new one: plugins have named {MAX_PLUGIN_METRICS} metrics already"
                    );
                }
                return None;
            }
            let wanted = PluginFamily::new(kind);
            let exposed = valid_name(name);
            if exposed {
                let help = format!("Reported by plugin {plugin}");
                let mut registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
                match &wanted {
                    PluginFamily::Counter(f) => registry.register(name, help, f.clone()),
                    PluginFamily::Gauge(f) => registry.register(name, help, f.clone()),
                }
            } else {
                tracing::warn!(
                    plugin,
                    "ignoring metric `{name}`: not a valid Prometheus metric name"
                );
            }
            known.by_name.insert(
                name.to_owned(),
                PluginMetric {
                    family: wanted,
                    exposed,
                    series: HashSet::new(),
                    warned: false,
                },
            );
        }
        let metric = known.by_name.get_mut(name)?;
        if !metric.exposed || metric.family.kind() != kind {
            return None;
        }
        let labels = with_plugin(plugin, labels);
        if !metric.series.contains(&labels) {
            let refused = if metric.series.len() >= MAX_SERIES {
                Some(format!("it has {MAX_SERIES} label sets already"))
            } else if label_bytes(&labels) > MAX_LABEL_BYTES {
                Some(format!("its labels are over {MAX_LABEL_BYTES} bytes"))
            } else if let Some((bad, _)) = labels.iter().find(|(n, _)| !valid_label_name(n)) {
                Some(format!("`{bad}` is not a valid label name"))
            } else {
                None
            };
            if let Some(why) = refused {
                if !metric.warned {
                    metric.warned = true;
                    tracing::warn!(
                        plugin,
                        "dropping samples of metric `{name}` with new labels: {why}"
                    );
                }
                return None;
            }
            metric.series.insert(labels.clone());
        }
        Some(match &metric.family {
            PluginFamily::Counter(f) => PluginSeries::Counter(f.get_or_create(&labels).clone()),
            PluginFamily::Gauge(f) => PluginSeries::Gauge(f.get_or_create(&labels).clone()),
        })
    }

    /// Every series of the plugin metric `name` (with or without its
    /// `_total`), each with its labels (`plugin` first) and value: what
    /// the dashboard shows of what plugins report.
    pub fn plugin_samples(&self, name: &str) -> Vec<(Labels, f64)> {
        let name = name.strip_suffix("_total").unwrap_or(name);
        let known = self
            .plugin_metrics
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let Some(metric) = known.by_name.get(name).filter(|m| m.exposed) else {
            return Vec::new();
        };
        metric
            .series
            .iter()
            .map(|labels| {
                let value = match &metric.family {
                    PluginFamily::Counter(f) => f.get_or_create(labels).get() as f64,
                    PluginFamily::Gauge(f) => f.get_or_create(labels).get() as f64,
                };
                (labels.clone(), value)
            })
            .collect()
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

fn label_bytes(labels: &Labels) -> usize {
    labels.iter().map(|(n, v)| n.len() + v.len()).sum()
}

/// A Prometheus label name: like a metric name, without colons.
fn valid_label_name(name: &str) -> bool {
    !name.contains(':') && valid_name(name)
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// An edge node's view of the stream it follows; registered only by the
/// upstream source ([`Metrics::register_upstream`]), so a ledger node does
/// not show them.
#[derive(Clone, Default)]
pub struct UpstreamMetrics {
    /// 1 while the edge follows its stream, else 0.
    pub following: Gauge,
    /// Events the stream holds that the edge has not committed yet.
    pub behind: Gauge,
    /// Messages of events the log had already (redeliveries), skipped.
    pub repeats_skipped: Counter,
    /// Times the edge restarted its consumer right after its own head.
    pub consumer_resets: Counter,
    /// Failed connections and sessions (each one retried).
    pub connection_failures: Counter,
}

impl Metrics {
    /// Registers an edge node's metrics and returns them.
    pub fn register_upstream(&self) -> UpstreamMetrics {
        let metrics = UpstreamMetrics::default();
        let mut registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        register! {
            registry, metrics;
            following: "eventhost_upstream_following",
                "1 while this edge node follows its stream, else 0";
            behind: "eventhost_upstream_behind_events",
                "Events the stream holds that this edge has not committed yet";
            repeats_skipped: "eventhost_upstream_repeats_skipped",
                "Messages of events this edge had already, skipped";
            consumer_resets: "eventhost_upstream_consumer_resets",
                "Times this edge restarted its consumer right after its own head";
            connection_failures: "eventhost_upstream_connection_failures",
                "Failed connections to the stream, each retried";
        }
        metrics
    }
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

        let mut closed = m.plugin_samples("ws_clients_closed_total");
        closed.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            closed,
            [(
                vec![
                    ("plugin".to_owned(), "ws".to_owned()),
                    ("reason".to_owned(), "slow".to_owned())
                ],
                3.0
            )]
        );
        assert_eq!(
            m.plugin_samples("ws_clients_connected"),
            [(vec![("plugin".to_owned(), "ws".to_owned())], 7.0)]
        );
        assert!(m.plugin_samples("bad name!").is_empty());
        assert!(m.plugin_samples("never_reported").is_empty());
    }

    #[test]
    fn what_plugins_report_is_bounded() {
        let m = Metrics::new();
        for i in 0..MAX_SERIES + 500 {
            let labels = vec![("client".to_owned(), format!("c{i}"))];
            m.plugin_counter("ws", "ws_sent_total", labels, 1);
        }
        m.plugin_gauge("ws", "ws_long", vec![("k".into(), "v".repeat(2000))], 1);
        m.plugin_gauge("ws", "ws_odd", vec![("a\"b".into(), "v".into())], 1);
        for i in 0..MAX_PLUGIN_METRICS + 100 {
            m.plugin_gauge("ws", &format!("ws_g{i}"), vec![], 1);
        }
        let text = m.encode();
        let series = text
            .lines()
            .filter(|l| l.starts_with("ws_sent_total{"))
            .count();
        assert_eq!(series, MAX_SERIES);
        assert!(!text.contains("ws_long{"), "{text}");
        assert!(!text.contains("ws_odd{"), "{text}");
        let known = m.plugin_metrics.lock().unwrap().by_name.len();
        assert_eq!(known, MAX_PLUGIN_METRICS);
        // A series seen before still counts.
        m.plugin_counter(
            "ws",
            "ws_sent_total",
            vec![("client".into(), "c0".into())],
            1,
        );
        assert!(
            m.encode()
                .contains("ws_sent_total{plugin=\"ws\",client=\"c0\"} 2")
        );
    }
}
