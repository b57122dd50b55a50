//! Read-only queries: outputs, blocks, assets, metadata, validators.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Api;
use super::error::ApiError;
use super::params;
use super::transactions::{QueryPairs, query};
use crate::sources::ledger::chain_store::{TextField, TxRecordWithId, words_of};

pub async fn outputs(
    State(api): State<Arc<Api>>,
    pairs: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    let mut p = query(pairs)?;
    let key = params::public_key(&p.required("public_key")?)?;
    let spent = p
        .optional("spent")?
        .map(|v| params::boolean("spent", &v))
        .transpose()?;
    p.finish()?;
    let chain = api.tables()?.chain.clone();
    let outputs = api
        .reads
        .heavy(move || Ok(chain.key_outputs(&key, spent)?))
        .await?;
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
    let chain = api.tables()?.chain.clone();
    let transactions = api
        .reads
        .light(move || match chain.block(height)? {
            Some(block) => Ok(chain.block_transactions(&block)?),
            None if height == 0 => Ok(Vec::new()),
            None => Err(ApiError::not_found()),
        })
        .await?;
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
    let chain = api.tables()?.chain.clone();
    let heights: Vec<u64> = api
        .reads
        .light(move || Ok(chain.transaction(&id)?))
        .await?
        .map(|tx| tx.height)
        .into_iter()
        .collect();
    Ok(Json(json!(heights)))
}

/// Most distinct words in one search: each is a cursor the search merges.
const MAX_SEARCH_WORDS: usize = 64;

fn search_params(api: &Api, pairs: QueryPairs) -> Result<(String, usize), ApiError> {
    let mut p = query(pairs)?;
    let search = p.required("search")?;
    let limit = params::limit(p.optional("limit")?, api.config.max_search_results)?;
    p.finish()?;
    if search.trim().is_empty() {
        return Err(ApiError::bad_request("text_search cannot be empty"));
    }
    let words: BTreeSet<String> = words_of(&search).collect();
    if words.len() > MAX_SEARCH_WORDS {
        return Err(ApiError::bad_request(format!(
            "search: {} distinct words; at most {MAX_SEARCH_WORDS} are searched for at once",
            words.len()
        )));
    }
    Ok((search, limit))
}

/// Runs a text search as a heavy read, within `[api] max_search_scan`,
/// and `answer` shapes its hits into the response's JSON, on the same
/// blocking thread: parsing and writing 1,000 hits is work too.
async fn search(
    api: &Api,
    field: TextField,
    query: String,
    limit: usize,
    answer: impl FnOnce(Vec<TxRecordWithId>) -> Result<Vec<Value>, ApiError> + Send + 'static,
) -> Result<Response, ApiError> {
    let chain = api.tables()?.chain.clone();
    let max_scan = api.config.max_search_scan;
    let body = api
        .reads
        .heavy(move || {
            let hits = chain.search(field, &query, limit, max_scan)?;
            serde_json::to_vec(&answer(hits)?).map_err(ApiError::internal)
        })
        .await?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

fn parse_stored(json: &str) -> Result<Value, ApiError> {
    serde_json::from_str(json).map_err(ApiError::internal)
}

/// `[{"data", "id"}]`: assets of CREATEs whose data contains a word of `search`.
pub async fn assets(State(api): State<Arc<Api>>, pairs: QueryPairs) -> Result<Response, ApiError> {
    let (query, limit) = search_params(&api, pairs)?;
    search(&api, TextField::Asset, query, limit, |hits| {
        hits.into_iter()
            .map(|hit| {
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
                Ok(json!({"data": data, "id": hit.id}))
            })
            .collect()
    })
    .await
}

/// Planetmint's `GET /api/v1/assets/{cid}`: the asset objects of the
/// transactions whose asset data is exactly `cid`, e.g. `[{"data": "Qm…"}]`.
pub async fn assets_by_cid(
    State(api): State<Arc<Api>>,
    Path(cid): Path<String>,
    pairs: QueryPairs,
) -> Result<Response, ApiError> {
    let mut p = query(pairs)?;
    let max = api.config.max_search_results;
    let limit = params::limit(p.optional("limit")?, max)?;
    p.finish()?;
    // The word index narrows the candidates; the match itself is exact.
    let wanted = Value::String(cid.clone());
    search(&api, TextField::Asset, cid, max, move |hits| {
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
            if out.len() >= limit {
                out.truncate(limit);
                break;
            }
        }
        Ok(out)
    })
    .await
}

/// `[{"id", "metadata"}]`: transactions whose metadata contains a word of `search`.
pub async fn metadata(
    State(api): State<Arc<Api>>,
    pairs: QueryPairs,
) -> Result<Response, ApiError> {
    let (query, limit) = search_params(&api, pairs)?;
    search(&api, TextField::Metadata, query, limit, |hits| {
        hits.into_iter()
            .map(|hit| {
                let tx = parse_stored(&hit.record.json)?;
                let metadata = tx.get("metadata").cloned().unwrap_or(Value::Null);
                Ok(json!({"id": hit.id, "metadata": metadata}))
            })
            .collect()
    })
    .await
}

/// A single node has no validator set to report.
pub async fn validators() -> Json<Value> {
    Json(json!([]))
}
