//! Read-only queries: outputs, blocks, assets, metadata, validators.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Api;
use super::error::ApiError;
use super::params;
use super::transactions::{QueryPairs, query};
use crate::store::chain::TextField;

pub async fn outputs(
    State(api): State<Arc<Api>>,
    pairs: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    let mut p = query(pairs)?;
    let key = params::public_key(&p.required("public_key")?)?;
    let spent = p
        .optional("spent")
        .map(|v| params::boolean("spent", &v))
        .transpose()?;
    p.finish()?;
    let outputs = api
        .services
        .store
        .key_outputs(&key, spent)
        .map_err(ApiError::internal)?;
    Ok(Json(Value::Array(
        outputs
            .into_iter()
            .map(|(id, index)| json!({"transaction_id": id, "output_index": index}))
            .collect(),
    )))
}

/// `{"height", "transactions"}`, as BigchainDB serves it. Heights up to the
/// newest exist (0 is the empty genesis); beyond it, 404.
pub async fn block(
    State(api): State<Arc<Api>>,
    Path(height): Path<String>,
) -> Result<Response, ApiError> {
    let height: u64 = height
        .parse()
        .map_err(|_| ApiError::bad_request(format!("height: `{height}` is not a block height")))?;
    let transactions = match api
        .services
        .store
        .block(height)
        .map_err(ApiError::internal)?
    {
        Some(block) => api
            .services
            .store
            .block_transactions(&block)
            .map_err(ApiError::internal)?,
        None if height == 0 => Vec::new(),
        None => return Err(ApiError::not_found()),
    };
    let body = format!(
        "{{\"height\":{height},\"transactions\":{}}}",
        array_text(&transactions)
    );
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

fn array_text(items: &[String]) -> String {
    format!("[{}]", items.join(","))
}

/// The heights of the blocks holding a transaction: `[h]` or `[]`.
pub async fn blocks_of_transaction(
    State(api): State<Arc<Api>>,
    pairs: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    let mut p = query(pairs)?;
    let id = p.required("transaction_id")?;
    p.finish()?;
    let heights: Vec<u64> = api
        .services
        .store
        .transaction(&id)
        .map_err(ApiError::internal)?
        .map(|tx| tx.height)
        .into_iter()
        .collect();
    Ok(Json(json!(heights)))
}

fn search_params(pairs: QueryPairs) -> Result<(String, usize), ApiError> {
    let mut p = query(pairs)?;
    let search = p.required("search")?;
    let limit = params::limit(p.optional("limit"))?;
    p.finish()?;
    if search.trim().is_empty() {
        return Err(ApiError::bad_request("text_search cannot be empty"));
    }
    Ok((search, limit))
}

fn parse_stored(json: &str) -> Result<Value, ApiError> {
    serde_json::from_str(json).map_err(ApiError::internal)
}

/// `[{"data", "id"}]`: assets of CREATEs whose data contains a word of `search`.
pub async fn assets(
    State(api): State<Arc<Api>>,
    pairs: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    let (search, limit) = search_params(pairs)?;
    let hits = api
        .services
        .store
        .search(TextField::Asset, &search, limit)
        .map_err(ApiError::internal)?;
    let mut out = Vec::with_capacity(hits.len());
    for hit in hits {
        let tx = parse_stored(&hit.record.json)?;
        let data = tx
            .get("asset")
            .and_then(|a| a.get("data"))
            .or_else(|| {
                tx.get("assets")
                    .and_then(|a| a.get(0))
                    .and_then(|a| a.get("data"))
            })
            .cloned()
            .unwrap_or(Value::Null);
        out.push(json!({"data": data, "id": hit.id}));
    }
    Ok(Json(Value::Array(out)))
}

/// Planetmint's `GET /api/v1/assets/{cid}`: the asset objects of the
/// transactions whose asset data is exactly `cid`, e.g. `[{"data": "Qm…"}]`.
pub async fn assets_by_cid(
    State(api): State<Arc<Api>>,
    Path(cid): Path<String>,
    pairs: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    let mut p = query(pairs)?;
    let limit = params::limit(p.optional("limit"))?;
    p.finish()?;
    // The word index narrows the candidates; the match itself is exact.
    let hits = api
        .services
        .store
        .search(TextField::Asset, &cid, 0)
        .map_err(ApiError::internal)?;
    let wanted = Value::String(cid);
    let mut out = Vec::new();
    for hit in hits {
        let tx = parse_stored(&hit.record.json)?;
        let assets = match (tx.get("assets"), tx.get("asset")) {
            (Some(Value::Array(list)), _) => list.clone(),
            (_, Some(asset)) => vec![asset.clone()],
            _ => Vec::new(),
        };
        out.extend(
            assets
                .into_iter()
                .filter(|a| a.get("data") == Some(&wanted)),
        );
        if limit > 0 && out.len() >= limit {
            out.truncate(limit);
            break;
        }
    }
    Ok(Json(Value::Array(out)))
}

/// `[{"id", "metadata"}]`: transactions whose metadata contains a word of `search`.
pub async fn metadata(
    State(api): State<Arc<Api>>,
    pairs: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    let (search, limit) = search_params(pairs)?;
    let hits = api
        .services
        .store
        .search(TextField::Metadata, &search, limit)
        .map_err(ApiError::internal)?;
    let mut out = Vec::with_capacity(hits.len());
    for hit in hits {
        let tx = parse_stored(&hit.record.json)?;
        out.push(
            json!({"id": hit.id, "metadata": tx.get("metadata").cloned().unwrap_or(Value::Null)}),
        );
    }
    Ok(Json(Value::Array(out)))
}

/// A single node has no validator set to report.
pub async fn validators() -> Json<Value> {
    Json(json!([]))
}
