//! The admin API: a listener of its own (`[admin] bind`, 127.0.0.1:9986 by
//! default) where an operator lists the plugins and loads, unloads,
//! reloads, restarts, pauses and resumes them while the node runs, reloads
//! the configuration, and reads a plugin's dead letters. JSON in and out;
//! a bearer token is required when `[admin] tokens` are set (and they must
//! be, when the listener is not on loopback).
//!
//! | route | does |
//! | --- | --- |
//! | `GET /admin/v1/plugins` | every plugin: state, library, checksum, load time, cursor, lag, restarts |
//! | `POST /admin/v1/plugins` | load: `{"name": "<entry in config.toml, read again>"}` or `{"entry": {<a [[plugins]] entry>}}` |
//! | `POST /admin/v1/plugins/{name}/{action}` | `unload`, `reload` (optionally `{"entry": {...}}`), `restart`, `pause`, `resume` |
//! | `GET /admin/v1/plugins/{name}/dead-letters` | the events the plugin kept failing on |
//! | `POST /admin/v1/config/reload` | re-reads config.toml and applies the difference (as SIGHUP does) |
//!
//! The same listener serves the dashboard ([`dashboard`]): `GET /`.

pub mod client;
pub mod dashboard;
mod reload;

use std::sync::{Arc, Mutex};

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router, middleware};
use serde::Deserialize;
use serde_json::{Value, json};
use sha3::{Digest, Sha3_256};
use subtle::ConstantTimeEq;

use crate::config::{Config, Secret};
use crate::plugin_runtime::{LifecycleError, PluginRuntime};

pub use reload::{ConfigChanges, reload_config};

/// What the admin handlers share.
pub struct Admin {
    pub runtime: Arc<PluginRuntime>,
    /// The configuration the node runs with; replaced by a config reload.
    pub config: Mutex<Config>,
    /// sha3-256 of each accepted token: only digests stay in memory,
    /// compared in constant time.
    tokens: Vec<[u8; 32]>,
}

impl Admin {
    pub fn new(runtime: Arc<PluginRuntime>, config: Config) -> Admin {
        let tokens = config.admin.tokens.iter().map(digest).collect();
        Admin {
            runtime,
            config: Mutex::new(config),
            tokens,
        }
    }

    fn config(&self) -> Config {
        self.config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn digest(token: &Secret) -> [u8; 32] {
    Sha3_256::digest(token.0.as_bytes()).into()
}

/// An error answer: `{"message", "status"}`, as the transaction API's.
struct AdminError(StatusCode, String);

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let body = json!({"message": self.1, "status": self.0.as_u16()});
        (self.0, Json(body)).into_response()
    }
}

impl From<LifecycleError> for AdminError {
    fn from(e: LifecycleError) -> AdminError {
        let status = match &e {
            LifecycleError::NotLoaded(_) => StatusCode::NOT_FOUND,
            LifecycleError::AlreadyLoaded(_) => StatusCode::CONFLICT,
            LifecycleError::Load(_)
            | LifecycleError::DidNotStart { .. }
            | LifecycleError::NotStarted { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            LifecycleError::Stopping => StatusCode::SERVICE_UNAVAILABLE,
            LifecycleError::Spawn { .. } | LifecycleError::Store(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        AdminError(status, e.to_string())
    }
}

/// The admin API's routes, and the dashboard's.
pub fn router(admin: Arc<Admin>, dashboard: Arc<dashboard::Dashboard>) -> Router {
    Router::new()
        .route("/admin/v1/plugins", get(list).post(load))
        .route("/admin/v1/plugins/{name}", get(show))
        .route("/admin/v1/plugins/{name}/dead-letters", get(dead_letters))
        .route("/admin/v1/plugins/{name}/{action}", post(act))
        .route("/admin/v1/config/reload", post(config_reload))
        .merge(dashboard::data(dashboard.clone()))
        .fallback(|| async { AdminError(StatusCode::NOT_FOUND, "no such admin route".into()) })
        .layer(middleware::from_fn_with_state(admin.clone(), authorize))
        // Added after the token check: the page itself holds no data.
        .merge(dashboard::page(dashboard))
        .with_state(admin)
}

/// Refuses a request without one of the configured tokens, as
/// `Authorization: Bearer <token>` (the scheme in any case, RFC 7235).
async fn authorize(State(admin): State<Arc<Admin>>, request: Request, next: Next) -> Response {
    if admin.tokens.is_empty() || presents_token(&admin.tokens, request.headers()) {
        return next.run(request).await;
    }
    let mut response = AdminError(
        StatusCode::UNAUTHORIZED,
        "the admin API needs `Authorization: Bearer <token>` with one of [admin] tokens".into(),
    )
    .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        "Bearer".parse().expect("a valid header"),
    );
    response
}

fn presents_token(tokens: &[[u8; 32]], headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some((scheme, token)) = value.trim().split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return false;
    }
    let presented: [u8; 32] = Sha3_256::digest(token.trim().as_bytes()).into();
    tokens
        .iter()
        .fold(false, |found, t| found | bool::from(t.ct_eq(&presented)))
}

async fn list(State(admin): State<Arc<Admin>>) -> Json<Value> {
    let head = admin.runtime.services().exchange.head();
    let plugins: Vec<Value> = admin
        .runtime
        .plugins()
        .list()
        .iter()
        .map(|r| r.status(head))
        .collect();
    Json(json!({"head": head, "plugins": plugins}))
}

async fn show(
    State(admin): State<Arc<Admin>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, AdminError> {
    let head = admin.runtime.services().exchange.head();
    admin
        .runtime
        .plugins()
        .get(&name)
        .map(|r| Json(r.status(head)))
        .ok_or_else(|| LifecycleError::NotLoaded(name).into())
}

/// What a load or reload names: an entry of config.toml, or an entry given whole.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Target {
    name: Option<String>,
    entry: Option<Value>,
}

fn body(bytes: &[u8]) -> Result<Target, AdminError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Target::default());
    }
    serde_json::from_slice(bytes).map_err(|e| {
        AdminError(
            StatusCode::BAD_REQUEST,
            format!("the body must be {{\"name\": ...}} or {{\"entry\": {{...}}}}: {e}"),
        )
    })
}

/// Runs a lifecycle operation off the async workers: they take a while
/// (a plugin draining its queue, a library being read).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AdminError> + Send + 'static,
) -> Result<T, AdminError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AdminError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

async fn load(
    State(admin): State<Arc<Admin>>,
    bytes: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), AdminError> {
    let target = body(&bytes)?;
    blocking(move || {
        // A name is looked up in config.toml as it is now: an entry added
        // since the node started (or last reloaded its configuration) can
        // be loaded on its own.
        let config = match target.name {
            Some(_) => reload::read_config(&admin.config())?,
            None => admin.config(),
        };
        let entry = reload::entry_of(&config, target.name.as_deref(), target.entry)?;
        let plugin = reload::load_checked(&config, &entry)?;
        let record = admin.runtime.load(plugin)?;
        let head = admin.runtime.services().exchange.head();
        Ok((StatusCode::CREATED, Json(record.status(head))))
    })
    .await
}

async fn act(
    State(admin): State<Arc<Admin>>,
    Path((name, action)): Path<(String, String)>,
    bytes: axum::body::Bytes,
) -> Result<Json<Value>, AdminError> {
    let target = body(&bytes)?;
    blocking(move || {
        let runtime = &admin.runtime;
        let head = || runtime.services().exchange.head();
        let record = match action.as_str() {
            "unload" => {
                let cursor = runtime.unload(&name)?;
                return Ok(Json(json!({"name": name, "state": "unloaded", "cursor": cursor})));
            }
            "reload" => {
                let config = admin.config();
                let entry = match target.entry {
                    Some(entry) => reload::entry_of(&config, None, Some(entry))?,
                    None => runtime
                        .plugins()
                        .get(&name)
                        .map(|r| reload::running_entry(&config, &r.plugin.entry))
                        .ok_or_else(|| LifecycleError::NotLoaded(name.clone()))?,
                };
                if entry.name != name {
                    return Err(AdminError(
                        StatusCode::BAD_REQUEST,
                        format!("the entry is plugin `{}`, not `{name}`", entry.name),
                    ));
                }
                runtime.reload(reload::load_checked(&config, &entry)?)?
            }
            "restart" => runtime.restart(&name)?,
            "pause" => runtime.pause(&name, true)?,
            "resume" => runtime.pause(&name, false)?,
            other => {
                return Err(AdminError(
                    StatusCode::NOT_FOUND,
                    format!(
                        "no action `{other}`; the actions are unload, reload, restart, pause and resume"
                    ),
                ));
            }
        };
        Ok(Json(record.status(head())))
    })
    .await
}

async fn dead_letters(
    State(admin): State<Arc<Admin>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, AdminError> {
    blocking(move || {
        let letters = admin.runtime.dead_letters();
        let list = letters
            .list(&name)
            .map_err(|e| AdminError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        Ok(Json(json!({
            "plugin": name,
            "file": letters.file(&name).display().to_string(),
            "dead_letters": list,
        })))
    })
    .await
}

async fn config_reload(State(admin): State<Arc<Admin>>) -> Result<Json<Value>, AdminError> {
    blocking(move || {
        reload_config(&admin)
            .map(|changes| Json(changes.to_json()))
            .map_err(|e| AdminError(StatusCode::UNPROCESSABLE_ENTITY, e))
    })
    .await
}
