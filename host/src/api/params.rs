//! Query parameters, checked the way BigchainDB checks them, with errors
//! that name the parameter.

use std::collections::BTreeMap;

use super::error::ApiError;
use crate::sources::ledger::transaction::Operation;

/// A request's query parameters; every one must be taken, or the request is
/// refused as naming an unknown parameter (a misspelt filter would
/// otherwise silently match everything).
pub struct Params {
    values: BTreeMap<String, Vec<String>>,
}

impl Params {
    pub fn new(pairs: Vec<(String, String)>) -> Params {
        let mut values: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in pairs {
            values.entry(k).or_default().push(v);
        }
        Params { values }
    }

    /// Every value of a repeatable parameter (also comma-separated).
    pub fn all(&mut self, name: &str) -> Vec<String> {
        self.values
            .remove(name)
            .unwrap_or_default()
            .iter()
            .flat_map(|v| v.split(','))
            .map(str::to_owned)
            .collect()
    }

    /// A single-valued parameter: given twice (`?mode=async&mode=commit`)
    /// it is refused, rather than one of the values silently winning.
    pub fn optional(&mut self, name: &str) -> Result<Option<String>, ApiError> {
        match self.values.remove(name) {
            None => Ok(None),
            Some(mut values) if values.len() == 1 => Ok(values.pop()),
            Some(values) => Err(ApiError::bad_request(format!(
                "{name}: given {} times ({}); give it once",
                values.len(),
                values
                    .iter()
                    .map(|v| format!("`{v}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    pub fn required(&mut self, name: &str) -> Result<String, ApiError> {
        self.optional(name)?.ok_or_else(|| {
            ApiError::bad_request(format!(
                "{name}: Missing required parameter in the query string"
            ))
        })
    }

    /// Refuses parameters nobody asked for.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.values.is_empty() {
            return Ok(());
        }
        let names: Vec<&str> = self.values.keys().map(String::as_str).collect();
        Err(ApiError::bad_request(format!(
            "Unknown arguments: {}",
            names.join(", ")
        )))
    }
}

pub fn txid(name: &str, value: &str) -> Result<String, ApiError> {
    if value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(value.to_ascii_lowercase())
    } else {
        Err(ApiError::bad_request(format!(
            "{name}: Invalid hash `{value}` (expected 64 hex digits)"
        )))
    }
}

pub fn operation(value: &str) -> Result<Operation, ApiError> {
    match value.to_ascii_uppercase().as_str() {
        "CREATE" => Ok(Operation::Create),
        "TRANSFER" => Ok(Operation::Transfer),
        _ => Err(ApiError::bad_request(format!(
            "operation: Operation must be \"CREATE\" or \"TRANSFER\", not `{value}`"
        ))),
    }
}

/// `true`/`false`, in any case: the Python drivers send `True`.
pub fn boolean(name: &str, value: &str) -> Result<bool, ApiError> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ApiError::bad_request(format!(
            "{name}: Boolean value must be \"true\" or \"false\", not `{value}`"
        ))),
    }
}

pub fn public_key(value: &str) -> Result<String, ApiError> {
    if eventhost_plugin_api::tx::is_public_key(value) {
        Ok(value.to_owned())
    } else {
        Err(ApiError::bad_request(format!(
            "public_key: Invalid base58 ed25519 key `{value}`"
        )))
    }
}

/// `limit=`: absent or 0 (BigchainDB's "no limit", which the drivers
/// send by default) and anything above `max` mean `max` (`[api]
/// max_search_results`).
pub fn limit(value: Option<String>, max: usize) -> Result<usize, ApiError> {
    let limit: usize = match value {
        None => 0,
        Some(v) => v.parse().map_err(|_| {
            ApiError::bad_request(format!("limit: `{v}` is not a non-negative integer"))
        })?,
    };
    Ok(if limit == 0 { max } else { limit.min(max) })
}
