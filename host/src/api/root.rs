//! `GET /` and `GET /api/v1`: what the node serves, stream URLs included.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::{Api, Source};

/// The API this node implements is BigchainDB 2.x's, documented there.
const DOCS: &str = "https://docs.bigchaindb.com/projects/server/en/v2.2.2/";
const DOCS_V1: &str =
    "https://docs.bigchaindb.com/projects/server/en/v2.2.2/http-client-server-api.html";

/// The v1 object, with paths under `prefix`. Stream URLs appear only when a
/// loaded plugin advertises them: BigchainDB's clients look for `streams`
/// and `_links.streams_v1`, Planetmint's for `streams` and `streamedblocks`.
/// An edge node lists its own streams only, and where the ledger node is
/// (when configured): it serves none of the ledger's routes.
fn v1(api: &Api, prefix: &str) -> Value {
    let mut v1 = match &api.source {
        Source::Ledger(_) => json!({
            "assets": format!("{prefix}/assets/"),
            "blocks": format!("{prefix}/blocks/"),
            "docs": DOCS_V1,
            "metadata": format!("{prefix}/metadata/"),
            "outputs": format!("{prefix}/outputs/"),
            "transactions": format!("{prefix}/transactions/"),
            "validators": format!("{prefix}/validators"),
        }),
        Source::Edge(status) => json!({
            "docs": DOCS_V1,
            "ledger": status.ledger_url(),
        }),
    };
    for rel in ["streams", "streamedblocks"] {
        if let Some(link) = api.advertised.get(rel) {
            v1[rel] = Value::String(link.url);
        }
    }
    if let Some(link) = api.advertised.get("streams_v1") {
        v1["_links"] = json!({ "streams_v1": link.url });
    }
    v1
}

pub async fn index(State(api): State<Arc<Api>>) -> Json<Value> {
    let role = match api.source {
        Source::Ledger(_) => "ledger",
        Source::Edge(_) => "edge",
    };
    Json(json!({
        "api": { "v1": v1(&api, "/api/v1") },
        "docs": DOCS,
        "role": role,
        "software": "eventhost",
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

pub async fn v1_index(State(api): State<Arc<Api>>) -> Json<Value> {
    Json(v1(&api, ""))
}
