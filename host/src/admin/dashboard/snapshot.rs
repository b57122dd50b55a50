//! What the page shows, as one JSON document made from the node's state:
//! the chain (from the metrics registry and the event log's newest
//! events), the plugins (as the admin API lists them), the streams (from
//! the plugins' own metrics) and health (the readiness checks). Plugin
//! configurations are never part of it: they hold tokens and passwords.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use eventhost_plugin_api::BLOCK_VALID;
use serde_json::{Value, json};

use super::history::{Counters, History};
use super::recent::Recent;
use super::streams;
use crate::api::{SourceHealth, readiness};
use crate::metrics::Metrics;
use crate::plugin_runtime::PluginRuntime;

/// Where the dashboard reads the node's state.
pub struct Sources {
    pub runtime: Arc<PluginRuntime>,
    pub health: SourceHealth,
}

impl Sources {
    fn metrics(&self) -> &Metrics {
        &self.runtime.services().metrics
    }
}

/// The counters sampled each second.
pub fn counters(sources: &Sources) -> Counters {
    let metrics = sources.metrics();
    let valid = vec![("type".to_owned(), BLOCK_VALID.name().to_owned())];
    Counters {
        blocks: metrics.events_published.get_or_create(&valid).get(),
        transactions: metrics.block_transactions.get_or_create(&valid).get(),
        messages: streams::messages(metrics),
    }
}

/// The snapshot the page renders.
pub fn build(sources: &Sources, history: &History, recent: &mut Recent) -> Value {
    let services = sources.runtime.services();
    let metrics = sources.metrics();
    let head = services.exchange.head();
    let records = sources.runtime.plugins().list();
    let loaded: BTreeSet<String> = records.iter().map(|r| r.name().to_owned()).collect();
    let log_error = recent
        .update(&services.exchange)
        .err()
        .map(|e| format!("cannot read the newest blocks from the event log: {e}"));
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    json!({
        "time_ms": now_ms,
        "version": env!("CARGO_PKG_VERSION"),
        "chain": {
            "height": metrics.head_height.get(),
            "head_seq": head,
            "blocks_per_s": history.rate(|c| c.blocks),
            "transactions_per_s": history.rate(|c| c.transactions),
            "sparkline": {
                "blocks_per_s": history.series(|c| c.blocks),
                "transactions_per_s": history.series(|c| c.transactions),
            },
            "recent": recent.newest_first(),
            "error": log_error,
        },
        "plugins": records.iter().map(|r| r.status(head)).collect::<Vec<_>>(),
        "streams": streams::section(metrics, history, &loaded),
        "health": readiness(&sources.health, &records).body,
    })
}
