//! The event streams as the dashboard shows them: clients connected per
//! stream, messages per second, clients closed for being slow. The
//! websocket plugin reports these itself (`ctx.gauge`, `ctx.counter`, once
//! a second); the dashboard reads them from the node's metrics registry,
//! the same series `/metrics` serves, by the names below. Any plugin that
//! reports them under these names is shown, one table per plugin instance.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::history::{History, StreamKey};
use crate::metrics::{Labels, Metrics};

/// Gauge, by `stream`: clients connected now.
pub const CLIENTS: &str = "websocket_clients";
/// Counter, by `stream` and `token` (a token's name): messages sent.
pub const MESSAGES: &str = "websocket_messages_sent_total";
/// Counter, by `reason`: connections ended; `slow` ones were closed for
/// not reading what they were sent.
pub const CLOSED: &str = "websocket_clients_closed_total";
pub const SLOW: &str = "slow";

fn label<'a>(labels: &'a Labels, name: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Series of `metric` by (plugin, `by` label), summed over other labels.
fn by(metrics: &Metrics, metric: &str, by: &str) -> BTreeMap<StreamKey, f64> {
    let mut out = BTreeMap::new();
    for (labels, value) in metrics.plugin_samples(metric) {
        if let (Some(plugin), Some(key)) = (label(&labels, "plugin"), label(&labels, by)) {
            *out.entry((plugin.to_owned(), key.to_owned())).or_default() += value;
        }
    }
    out
}

/// Messages sent so far, by stream: sampled into the history each second.
pub fn messages(metrics: &Metrics) -> BTreeMap<StreamKey, u64> {
    by(metrics, MESSAGES, "stream")
        .into_iter()
        .map(|(k, v)| (k, v as u64))
        .collect()
}

/// Each loaded plugin that reports streams: its streams, and how many
/// clients it closed for being slow.
pub fn section(metrics: &Metrics, history: &History, loaded: &BTreeSet<String>) -> Vec<Value> {
    let clients = by(metrics, CLIENTS, "stream");
    let closed = by(metrics, CLOSED, "reason");
    let mut plugins: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    let known: BTreeSet<&StreamKey> = clients
        .keys()
        .chain(
            history
                .latest()
                .map_or_else(Vec::new, |c| c.messages.keys().collect()),
        )
        .collect();
    for key in known {
        let (plugin, stream) = key;
        if !loaded.contains(plugin) {
            continue;
        }
        let rate = history.rate(|c| c.messages.get(key).copied().unwrap_or(0));
        plugins.entry(plugin).or_default().push(json!({
            "stream": stream,
            "clients": clients.get(key).copied().unwrap_or(0.0),
            "messages_per_s": rate,
        }));
    }
    plugins
        .into_iter()
        .map(|(plugin, streams)| {
            let slow = closed
                .get(&(plugin.to_owned(), SLOW.to_owned()))
                .copied()
                .unwrap_or(0.0);
            json!({"plugin": plugin, "closed_slow": slow, "streams": streams})
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::dashboard::history::Counters;
    use std::time::{Duration, Instant};

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn streams_of_loaded_plugins_with_rates_summed_over_tokens() {
        let m = Metrics::new();
        m.plugin_gauge("ws", CLIENTS, labels(&[("stream", "valid_blocks")]), 3);
        m.plugin_gauge(
            "ws",
            CLIENTS,
            labels(&[("stream", "valid_transactions")]),
            1,
        );
        m.plugin_gauge("gone", CLIENTS, labels(&[("stream", "valid_blocks")]), 9);
        m.plugin_counter("ws", CLOSED, labels(&[("reason", "slow")]), 2);
        m.plugin_counter("ws", CLOSED, labels(&[("reason", "client")]), 5);
        let mut history = History::default();
        let start = Instant::now();
        for (s, sent) in [(0, 0), (1, 10)] {
            for token in ["alice", "bob"] {
                let l = labels(&[("stream", "valid_blocks"), ("token", token)]);
                m.plugin_counter("ws", MESSAGES, l, sent);
            }
            history.record(
                start + Duration::from_secs(s),
                Counters {
                    messages: messages(&m),
                    ..Counters::default()
                },
            );
        }
        let loaded = BTreeSet::from(["ws".to_owned()]);
        let section = section(&m, &history, &loaded);
        assert_eq!(
            Value::Array(section),
            json!([{"plugin": "ws", "closed_slow": 2.0, "streams": [
                {"stream": "valid_blocks", "clients": 3.0, "messages_per_s": 20.0},
                {"stream": "valid_transactions", "clients": 1.0, "messages_per_s": 0.0},
            ]}])
        );
        assert!(super::section(&m, &history, &BTreeSet::new()).is_empty());
    }
}
