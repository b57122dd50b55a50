//! `GET /health` (liveness: the process serves) and `GET /health/ready`
//! (readiness: the ledger commits to its store, or on an edge node the
//! edge follows its stream and is at most `ready_max_lag` events behind
//! it; and every required plugin runs), each 200 or 503 with a JSON body
//! naming what is wrong, for a load balancer, an orchestrator or systemd
//! to act on. The same checks feed `eventhost_ready` on `/metrics` and the
//! dashboard's health panel.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::Api;
use crate::plugin_runtime::{PluginRecord, State as PluginState};
use crate::sources::ledger::LedgerStatus;
use crate::sources::upstream;

/// The node answers: it is alive.
pub async fn live() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Whether the node can do its work now, check by check.
pub struct Readiness {
    pub ok: bool,
    /// `{"status", "checks": {"ledger" or "upstream", "plugins"}, "problems"}`.
    pub body: Value,
}

/// The node's source, as readiness checks it.
#[derive(Clone)]
pub enum SourceHealth {
    /// A ledger node: its ledger commits to its store.
    Ledger(Arc<LedgerStatus>),
    /// An edge node: it follows its stream, at most `ready_max_lag` behind.
    Upstream(Arc<upstream::Status>),
}

impl SourceHealth {
    /// The check's name in `checks`, what it shows, and its problem.
    fn check(&self) -> (&'static str, Value, Option<String>) {
        match self {
            SourceHealth::Ledger(status) => {
                let problem = status.problem();
                let check = json!({"ok": problem.is_none(), "problem": problem});
                ("ledger", check, problem)
            }
            SourceHealth::Upstream(status) => ("upstream", status.check(), status.problem()),
        }
    }
}

/// The readiness checks: the source works, and every required plugin runs.
pub fn readiness(source: &SourceHealth, records: &[Arc<PluginRecord>]) -> Readiness {
    let mut problems = Vec::new();
    let (name, source, problem) = source.check();
    problems.extend(problem);
    let mut plugins = serde_json::Map::new();
    for record in records {
        let state = record.state();
        let running = state == PluginState::Running;
        let required = record.plugin.entry.required;
        if required && !running {
            let why = match &state {
                PluginState::Failed(reason) => format!(": {reason}"),
                _ => String::new(),
            };
            problems.push(format!(
                "required plugin `{}` is {}{why}",
                record.name(),
                state.name()
            ));
        }
        plugins.insert(
            record.name().to_owned(),
            json!({"state": state.name(), "required": required, "ok": running || !required}),
        );
    }
    let ok = problems.is_empty();
    let body = json!({
        "status": if ok { "ok" } else { "failing" },
        "checks": {
            name: source,
            "plugins": plugins,
        },
        "problems": problems,
    });
    Readiness { ok, body }
}

/// `GET /health/ready`: 200 or 503, with the checks.
pub async fn ready(State(api): State<Arc<Api>>) -> (StatusCode, Json<Value>) {
    let readiness = readiness(&api.source.health(), &api.plugins.list());
    let status = if readiness.ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(readiness.body))
}
