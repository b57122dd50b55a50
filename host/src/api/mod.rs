//! The BigchainDB/Planetmint-compatible HTTP API.
//!
//! Routes, status codes and JSON shapes follow BigchainDB 2.x, which the
//! Python drivers are written against; Planetmint's additions (`asset_ids`,
//! `streamedblocks`) are served too. Every route answers with and without a
//! trailing slash, and doubled slashes are merged, because the drivers send
//! both forms.

mod error;
mod health;
mod params;
mod queries;
mod reads;
mod root;
pub mod server;
mod status;
mod transactions;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, Method, Uri};
use axum::middleware;
use axum::routing::get;
use tokio::net::TcpListener;
use tower::Layer;
use tower::util::MapRequestLayer;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};

pub use error::ApiError;
pub use health::{Readiness, SourceHealth, readiness};
pub use reads::Reads;

use crate::config::ApiConfig;
use crate::exchange::Exchange;
use crate::metrics::Metrics;
use crate::plugin_runtime::{Advertised, Plugins};
use crate::sources::ledger::Ledger;
use crate::sources::ledger::chain_store::ChainStore;
use crate::sources::upstream;

/// What the handlers share.
pub struct Api {
    /// A ledger node's tables, or an edge node's stream.
    pub source: Source,
    /// For the head of the event log.
    pub exchange: Arc<Exchange>,
    /// The stream URLs plugins advertise, for the API's root.
    pub advertised: Arc<Advertised>,
    pub metrics: Arc<Metrics>,
    pub plugins: Arc<Plugins>,
    /// The `[api]` table.
    pub config: ApiConfig,
    /// Runs store reads off the async workers.
    pub reads: Reads,
}

/// Where the node's events come from, as far as the API cares.
pub enum Source {
    /// A ledger node: it takes transactions and keeps the chain.
    Ledger(Tables),
    /// An edge node: it has the ledger node's event log and nothing else
    /// of it, so the routes that need the ledger point clients there.
    Edge(Arc<upstream::Status>),
}

/// A ledger node's transaction API and its tables.
pub struct Tables {
    pub ledger: Arc<Ledger>,
    /// The committed chain, which the queries read.
    pub chain: ChainStore,
}

impl Source {
    /// What readiness checks of it.
    pub fn health(&self) -> SourceHealth {
        match self {
            Source::Ledger(tables) => SourceHealth::Ledger(tables.ledger.status().clone()),
            Source::Edge(status) => SourceHealth::Upstream(status.clone()),
        }
    }
}

impl Api {
    /// The ledger's tables; on an edge node, the answer that sends the
    /// client to the ledger node (every route that needs them answers
    /// that, before looking at the request).
    pub fn tables(&self) -> Result<&Tables, ApiError> {
        match &self.source {
            Source::Ledger(tables) => Ok(tables),
            Source::Edge(status) => Err(ApiError::elsewhere(status.ledger_url())),
        }
    }
}

/// The API's routes: the transaction API, with the CORS headers
/// `[api] cors_origins` asks for (BigchainDB allows every origin), and the
/// operational routes, without: a browser page on another site has no
/// business reading a node's metrics or plugin states.
pub fn router(api: Arc<Api>) -> Router {
    let ledger = Router::new()
        .route(
            "/api/v1/transactions",
            get(transactions::list).post(transactions::post),
        )
        .route("/api/v1/transactions/{id}", get(transactions::get))
        .route("/api/v1/outputs", get(queries::outputs))
        .route("/api/v1/blocks", get(queries::blocks_of_transaction))
        .route("/api/v1/blocks/{height}", get(queries::block))
        .route("/api/v1/assets", get(queries::assets))
        .route("/api/v1/assets/{cid}", get(queries::assets_by_cid))
        .route("/api/v1/metadata", get(queries::metadata))
        .route("/api/v1/validators", get(queries::validators))
        .route_layer(middleware::from_fn_with_state(api.clone(), ledger_only));
    let mut transactions = Router::new()
        .route("/", get(root::index))
        .route("/api/v1", get(root::v1_index))
        .merge(ledger)
        // Set before CORS wraps the routes, so that a preflight (OPTIONS)
        // reaches the CORS layer rather than this fallback.
        .method_not_allowed_fallback(method_not_allowed);
    if let Some(cors) = cors(&api.config.cors_origins) {
        transactions = transactions.layer(cors);
    }
    let operations = Router::new()
        .route("/api/v1/plugins", get(status::plugins))
        .route("/health", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/metrics", get(status::metrics))
        .method_not_allowed_fallback(method_not_allowed);
    transactions
        .merge(operations)
        .fallback(unknown_route)
        // The server reads bodies within `[api] max_body_bytes` before
        // routing (server::body); axum's own default limit would refuse
        // a larger setting.
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(api.clone(), status::measure))
        .with_state(api)
}

/// The CORS layer for `origins` (checked by the configuration): `["*"]`
/// is BigchainDB's permissive CORS, `[]` none at all.
fn cors(origins: &[String]) -> Option<CorsLayer> {
    match origins {
        [] => None,
        [any] if any == "*" => Some(CorsLayer::permissive()),
        listed => {
            let origins = listed
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect::<Vec<_>>();
            Some(
                CorsLayer::new()
                    .allow_origin(AllowOrigin::list(origins))
                    .allow_methods(Any)
                    .allow_headers(Any)
                    .expose_headers(Any),
            )
        }
    }
}

/// The ledger's routes on an edge node: the pointer to the ledger node,
/// whatever the request's parameters or body.
async fn ledger_only(
    axum::extract::State(api): axum::extract::State<Arc<Api>>,
    request: Request,
    next: middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match api.tables() {
        Ok(_) => next.run(request).await,
        Err(elsewhere) => elsewhere.into_response(),
    }
}

async fn unknown_route(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        format!("Not found: no endpoint {method} {}", uri.path()),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {}", uri.path()),
    )
}

/// `/api/v1/transactions/` and `/api//v1` route like `/api/v1/transactions`
/// and `/api/v1`. Routing happens before a router's own layers run, so this
/// wraps the router from outside.
fn normalize_path(mut request: Request) -> Request {
    let uri = request.uri();
    let path = uri.path();
    if path.len() > 1 && (path.ends_with('/') || path.contains("//")) {
        let mut clean = String::with_capacity(path.len());
        for segment in path.split('/').filter(|s| !s.is_empty()) {
            clean.push('/');
            clean.push_str(segment);
        }
        if clean.is_empty() {
            clean.push('/');
        }
        if let Some(query) = uri.query() {
            clean.push('?');
            clean.push_str(query);
        }
        let mut parts = uri.clone().into_parts();
        if let Ok(pq) = clean.parse() {
            parts.path_and_query = Some(pq);
            if let Ok(new) = Uri::from_parts(parts) {
                *request.uri_mut() = new;
            }
        }
    }
    request
}

/// The limits `[api]` sets for the API's listener. Raises the process's
/// open-file limit to sizes the connection cap from it; a configured cap
/// that does not fit is an error.
pub fn limits(config: &ApiConfig) -> Result<server::Limits, server::descriptors::CapError> {
    let files = server::descriptors::OpenFiles::raise();
    Ok(server::Limits {
        max_connections: files.connection_cap(config.max_connections)?,
        max_header_bytes: config.max_header_bytes,
        body: server::BodyLimits {
            max_bytes: config.max_body_bytes,
            timeout: config.body_read_timeout,
        },
        body_memory_bytes: config.body_memory_bytes,
        timeouts: server::Timeouts {
            idle: config.idle_timeout,
            header: config.header_read_timeout,
        },
        shutdown_timeout: config.shutdown_timeout,
    })
}

/// Serves the API on `listener` within `limits` until `shutdown` resolves,
/// then stops within `limits.shutdown_timeout`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: server::Limits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    tracing::info!(
        "HTTP API limits: {} connections, {} bytes of bodies in flight",
        limits.max_connections,
        limits.body_memory_bytes
    );
    let app = MapRequestLayer::new(normalize_path).layer(router);
    let observed = server::Observed::new(metrics, "api");
    server::serve(listener, app, limits, observed, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_log::EventLog;
    use crate::sources::ledger::builder::{self, Keypair};
    use crate::store::Store;
    use axum::body::Body;
    use axum::http::StatusCode;
    use serde_json::{Value, json};
    use tower::ServiceExt;

    /// The API's router on a ledger of its own, in this process.
    struct Served {
        _dir: tempfile::TempDir,
        router: Router,
    }

    fn served() -> Served {
        served_with(ApiConfig::default())
    }

    fn served_with(config: ApiConfig) -> Served {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("s.redb")).unwrap());
        let metrics = Arc::new(Metrics::new());
        let (log, exchange) = EventLog::open(store.clone(), &metrics).unwrap();
        let chain = ChainStore::open(store).unwrap();
        let ledger =
            Ledger::start(chain.clone(), log, metrics.clone(), Default::default()).unwrap();
        let router = router(Arc::new(Api {
            source: Source::Ledger(Tables {
                ledger: Arc::new(ledger),
                chain,
            }),
            exchange,
            advertised: Arc::new(Advertised::default()),
            metrics,
            plugins: Arc::new(Plugins::default()),
            config,
            reads: Reads::new(None),
        }));
        Served { _dir: dir, router }
    }

    /// The API of an edge node that follows stream `S` of the ledger at
    /// `ledger_url`; its status, to drive.
    fn served_edge(ledger_url: Option<&str>) -> (Served, Arc<upstream::Status>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("s.redb")).unwrap());
        let metrics = Arc::new(Metrics::new());
        let (_log, exchange) = EventLog::open(store, &metrics).unwrap();
        let status = Arc::new(upstream::Status::new(
            "S",
            ledger_url.map(str::to_owned),
            10,
            0,
            metrics.register_upstream(),
        ));
        let router = router(Arc::new(Api {
            source: Source::Edge(status.clone()),
            exchange,
            advertised: Arc::new(Advertised::default()),
            metrics,
            plugins: Arc::new(Plugins::default()),
            config: ApiConfig::default(),
            reads: Reads::new(None),
        }));
        (Served { _dir: dir, router }, status)
    }

    impl Served {
        async fn call(
            &self,
            method: Method,
            uri: &str,
            body: Option<&Value>,
        ) -> (StatusCode, Value) {
            let request = Request::builder()
                .method(method)
                .uri(uri)
                .header("content-type", "application/json")
                .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
                .unwrap();
            let response = self.router.clone().oneshot(request).await.unwrap();
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            (status, value)
        }
    }

    #[tokio::test]
    async fn a_committed_transaction_is_served_by_every_query() {
        let api = served();
        let alice = Keypair::from_seed([7; 32]);
        let tx = builder::create(
            &alice,
            &[(alice.public_key(), 3)],
            json!({"kind": "invoice"}),
            Value::Null,
        );
        let id = tx["id"].as_str().unwrap();

        let (status, echo) = api
            .call(Method::POST, "/api/v1/transactions?mode=commit", Some(&tx))
            .await;
        assert_eq!((status, &echo), (StatusCode::ACCEPTED, &tx));
        let (status, got) = api
            .call(Method::GET, &format!("/api/v1/transactions/{id}"), None)
            .await;
        assert_eq!((status, got), (StatusCode::OK, tx.clone()));
        let (_, block) = api.call(Method::GET, "/api/v1/blocks/1", None).await;
        assert_eq!(block["transactions"][0]["id"], id);
        let (_, heights) = api
            .call(
                Method::GET,
                &format!("/api/v1/blocks?transaction_id={id}"),
                None,
            )
            .await;
        assert_eq!(heights, json!([1]));
        let (_, outputs) = api
            .call(
                Method::GET,
                &format!("/api/v1/outputs?public_key={}", alice.public_key()),
                None,
            )
            .await;
        assert_eq!(outputs, json!([{"transaction_id": id, "output_index": 0}]));
        let (_, assets) = api
            .call(Method::GET, "/api/v1/assets?search=invoice", None)
            .await;
        assert_eq!(assets[0]["id"], id);

        let (status, again) = api
            .call(Method::POST, "/api/v1/transactions?mode=commit", Some(&tx))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            again["message"]
                .as_str()
                .unwrap()
                .contains("DuplicateTransaction"),
            "{again}"
        );
    }

    #[tokio::test]
    async fn an_edge_sends_clients_to_the_ledger_and_says_whether_it_follows() {
        let (edge, status) = served_edge(Some("https://ledger.example.com:9984"));
        let elsewhere = json!({
            "message": "this is an edge node: it serves the ledger node's event streams, not its transactions, blocks or other tables; send this request to the ledger node at https://ledger.example.com:9984",
            "status": 503,
        });
        // Before looking at the request: a malformed one gets the same answer.
        for (method, uri) in [
            (Method::POST, "/api/v1/transactions?mode=commit"),
            (Method::POST, "/api/v1/transactions?mode=fast"),
            (Method::GET, "/api/v1/transactions/abc"),
            (Method::GET, "/api/v1/blocks/x"),
            (Method::GET, "/api/v1/outputs?public_key=x"),
            (Method::GET, "/api/v1/metadata?search="),
            (Method::GET, "/api/v1/validators"),
        ] {
            let (status, body) = edge.call(method.clone(), uri, Some(&json!({}))).await;
            assert_eq!(
                (status, &body),
                (StatusCode::SERVICE_UNAVAILABLE, &elsewhere),
                "{method} {uri}"
            );
        }
        let (_, root) = edge.call(Method::GET, "/", None).await;
        assert_eq!(root["role"], "edge");
        assert_eq!(
            root["api"]["v1"],
            json!({"docs": root["api"]["v1"]["docs"], "ledger": "https://ledger.example.com:9984"})
        );
        let (code, health) = edge.call(Method::GET, "/health/ready", None).await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(health["checks"]["upstream"]["following"], false);
        status.set_following();
        status.set_stream_last(5);
        let (code, health) = edge.call(Method::GET, "/health/ready", None).await;
        assert_eq!(
            (code, &health["status"]),
            (StatusCode::OK, &json!("ok")),
            "{health}"
        );
        assert_eq!(health["checks"]["upstream"]["behind"], 5);

        let (unknown, _) = served_edge(None);
        let (_, body) = unknown
            .call(Method::POST, "/api/v1/transactions", None)
            .await;
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .ends_with("(this edge does not know its URL: set [source] ledger_url)"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn bad_requests_are_answered_with_what_is_wrong() {
        let api = served();
        let (status, body) = api
            .call(
                Method::POST,
                "/api/v1/transactions?mode=fast",
                Some(&json!({})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["status"], 400);
        assert!(
            body["message"].as_str().unwrap().contains("not `fast`"),
            "{body}"
        );
        let (status, body) = api.call(Method::GET, "/api/v1/nothing", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(
            body["message"],
            "Not found: no endpoint GET /api/v1/nothing"
        );
        let (status, _) = api.call(Method::DELETE, "/api/v1/transactions", None).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        let (status, body) = api
            .call(Method::GET, "/api/v1/outputs?public_key=x", None)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            body["message"].as_str().unwrap().contains("Invalid base58"),
            "{body}"
        );
        let (status, body) = api.call(Method::GET, "/api/v1/blocks/9", None).await;
        assert_eq!(
            (status, body["status"].clone()),
            (StatusCode::NOT_FOUND, json!(404))
        );
    }

    #[tokio::test]
    async fn searches_rank_by_words_matched_within_their_bounds() {
        let bounded = served_with(ApiConfig {
            max_search_scan: 3,
            ..ApiConfig::default()
        });
        let unbounded = served();
        let alice = Keypair::from_seed([9; 32]);
        let mut ids = Vec::new();
        for (i, note) in ["alpha", "alpha beta", "beta", "beta alpha gamma"]
            .into_iter()
            .enumerate()
        {
            let tx = builder::create(
                &alice,
                &[(alice.public_key(), 1)],
                json!({"i": i}),
                json!({"note": note}),
            );
            ids.push(tx["id"].clone());
            for api in [&bounded, &unbounded] {
                let (status, _) = api
                    .call(Method::POST, "/api/v1/transactions?mode=commit", Some(&tx))
                    .await;
                assert_eq!(status, StatusCode::ACCEPTED);
            }
        }
        // Most words first, then in commit order.
        assert_eq!(
            found(&unbounded, "/api/v1/metadata?search=alpha+beta").await,
            [&ids[1], &ids[3], &ids[0], &ids[2]].map(Clone::clone)
        );
        assert_eq!(
            found(&unbounded, "/api/v1/metadata?search=beta+alpha&limit=1").await,
            [ids[1].clone()]
        );
        // Three index entries read: alpha of the first, alpha and beta of
        // the second; the best of those.
        assert_eq!(
            found(&bounded, "/api/v1/metadata?search=alpha+beta").await,
            [ids[1].clone(), ids[0].clone()]
        );
    }

    /// The ids a search answers with.
    async fn found(api: &Served, uri: &str) -> Vec<Value> {
        let (status, hits) = api.call(Method::GET, uri, None).await;
        assert_eq!(status, StatusCode::OK, "{hits}");
        hits.as_array()
            .unwrap()
            .iter()
            .map(|h| h["id"].clone())
            .collect()
    }

    fn normalized(uri: &str) -> String {
        let request = Request::builder()
            .uri(uri)
            .body(axum::body::Body::empty())
            .unwrap();
        normalize_path(request).uri().to_string()
    }

    #[test]
    fn trailing_and_doubled_slashes_route_like_the_plain_path() {
        assert_eq!(
            normalized("/api/v1/transactions/?mode=commit"),
            "/api/v1/transactions?mode=commit"
        );
        assert_eq!(normalized("/api/v1/assets//Qm1"), "/api/v1/assets/Qm1");
        assert_eq!(normalized("/api/v1/"), "/api/v1");
        assert_eq!(normalized("/"), "/");
        assert_eq!(normalized("/api/v1/blocks/3"), "/api/v1/blocks/3");
    }
}
