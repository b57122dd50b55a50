//! `POST /api/v1/transactions`, `GET /api/v1/transactions/{id}` and
//! `GET /api/v1/transactions?asset_id=`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::Api;
use super::error::ApiError;
use super::params::{self, Params};
use crate::sources::ledger::transaction::Transaction;
use crate::sources::ledger::{LedgerError, Mode, Outcome};

pub(super) type QueryPairs = Result<Query<Vec<(String, String)>>, QueryRejection>;

pub(super) fn query(pairs: QueryPairs) -> Result<Params, ApiError> {
    pairs
        .map(|Query(pairs)| Params::new(pairs))
        .map_err(|e| ApiError::bad_request(format!("malformed query string: {e}")))
}

fn mode(value: Option<String>) -> Result<Mode, ApiError> {
    match value.as_deref() {
        None | Some("async") => Ok(Mode::Async),
        Some("sync") => Ok(Mode::Sync),
        Some("commit") => Ok(Mode::Commit),
        Some(other) => Err(ApiError::bad_request(format!(
            "mode: Mode must be \"async\", \"sync\" or \"commit\", not `{other}`"
        ))),
    }
}

/// A JSON array of stored transaction JSON texts, without re-parsing them.
pub(super) fn json_array(items: &[String]) -> Response {
    let mut body = String::with_capacity(2 + items.iter().map(|i| i.len() + 1).sum::<usize>());
    body.push('[');
    body.push_str(&items.join(","));
    body.push(']');
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Bodies up to this size are validated on the HTTP worker itself.
const INLINE_CHECK_BYTES: usize = 2048;

pub async fn post(
    State(api): State<Arc<Api>>,
    pairs: QueryPairs,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let tables = api.tables()?;
    let mut params = query(pairs)?;
    let mode = mode(params.optional("mode")?)?;
    params.finish()?;
    // The server read the body within [api] max_body_bytes already.
    let body = body.map_err(|e| ApiError::new(e.status(), format!("request body: {e}")))?;
    let json: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("Failed to decode JSON object: {e}")))?;
    // A body this small holds a signature or two, checked in well under
    // 100 µs: on the I/O thread, that is cheaper than the hop to the
    // blocking pool, which under load is a wait for a CPU. Larger ones,
    // with many signatures, are checked off the I/O threads.
    let checked = if body.len() <= INLINE_CHECK_BYTES {
        Transaction::parse(json)
    } else {
        tokio::task::spawn_blocking(move || Transaction::parse(json))
            .await
            .map_err(ApiError::internal)?
    };
    let metrics = &api.metrics;
    let rejected = |rule: &str| {
        metrics
            .transactions_rejected
            .get_or_create(&vec![
                ("rule".to_owned(), rule.to_owned()),
                ("stage".to_owned(), "admission".to_owned()),
            ])
            .inc();
    };
    let tx = checked.map_err(|r| {
        rejected(r.rule.as_str());
        ApiError::bad_request(r.to_string())
    })?;
    // Serialized here, off the ledger's thread, which reuses it.
    let echo = tx.text().to_owned();
    let outcome = tables
        .ledger
        .submit(tx, mode)
        .await
        .unwrap_or_else(|_| Outcome::Unavailable(Arc::new(LedgerError::Stopped)));
    match outcome {
        Outcome::Accepted | Outcome::Committed { .. } => {
            let mode = format!("{mode:?}").to_lowercase();
            metrics
                .transactions_accepted
                .get_or_create(&vec![("mode".to_owned(), mode)])
                .inc();
            Ok((
                StatusCode::ACCEPTED,
                [(header::CONTENT_TYPE, "application/json")],
                echo,
            )
                .into_response())
        }
        Outcome::Rejected(r) => {
            rejected(r.rule.as_str());
            Err(ApiError::bad_request(r.to_string()))
        }
        Outcome::Unavailable(reason) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            reason.to_string(),
        )),
    }
}

pub async fn get(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let chain = api.tables()?.chain.clone();
    match api.reads.light(move || Ok(chain.transaction(&id)?)).await? {
        Some(tx) => Ok(([(header::CONTENT_TYPE, "application/json")], tx.json).into_response()),
        None => Err(ApiError::not_found()),
    }
}

/// BigchainDB's `asset_id=` and Planetmint's repeatable `asset_ids=`.
pub async fn list(State(api): State<Arc<Api>>, pairs: QueryPairs) -> Result<Response, ApiError> {
    let mut params = query(pairs)?;
    let mut assets: Vec<String> = params
        .optional("asset_id")?
        .into_iter()
        .chain(params.all("asset_ids"))
        .map(|a| params::txid("asset_id", &a))
        .collect::<Result<_, _>>()?;
    assets.dedup();
    if assets.is_empty() {
        return Err(ApiError::bad_request(
            "asset_id: Missing required parameter in the query string",
        ));
    }
    let operation = params
        .optional("operation")?
        .map(|op| params::operation(&op))
        .transpose()?;
    let last_only = params
        .optional("last_tx")?
        .map(|v| params::boolean("last_tx", &v))
        .transpose()?
        .unwrap_or(false);
    params.finish()?;
    let chain = api.tables()?.chain.clone();
    let found = api
        .reads
        .heavy(move || {
            let mut found = Vec::new();
            for asset in &assets {
                found.extend(chain.asset_transactions(asset, operation, last_only)?);
            }
            Ok(found)
        })
        .await?;
    Ok(json_array(&found))
}
