//! The operator's live view on the admin listener: `GET /` serves a page
//! (HTML, CSS and a little JavaScript, embedded in the binary: it works
//! offline) that shows the chain, the plugins with their admin actions,
//! the streams and the node's health, updated once a second by one
//! server-sent event stream, `GET /dashboard/events`.
//!
//! Authentication. The page and its assets hold no data and are served to
//! anyone who can reach the listener; everything with data or effect (the
//! event stream, the admin API the page's buttons call) is behind the admin
//! API's bearer token when `[admin] tokens` are set. The page learns whether
//! a token is needed from `GET /dashboard/auth`, asks for it once, keeps it
//! in the tab's `sessionStorage` and sends it as `Authorization: Bearer`.
//! Browsers' `EventSource` cannot send that header, so the page reads the
//! stream with `fetch` and parses the SSE framing itself (a dozen lines).
//! The alternative, a short-lived signed ticket in the stream's URL, would
//! put a credential into URLs (history, logs, `Referer`) and need a signing
//! key and a clock; the header needs neither, and nothing new to verify:
//! the same middleware checks it as for every admin route.

mod assets;
mod history;
mod recent;
mod sampler;
mod snapshot;
mod streams;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tokio::sync::watch;

use sampler::{Control, Snapshot, Wake};
pub use snapshot::Sources;

/// Event streams open at once. The admin listener takes 64 connections;
/// this leaves room for the admin API itself when pages are left open.
const MAX_STREAMS: usize = 32;

/// The dashboard of one node.
pub struct Dashboard {
    snapshots: watch::Receiver<Snapshot>,
    watching: Arc<AtomicUsize>,
    /// The sampler thread's control; `None` once stopped, or if it could
    /// not start.
    control: Mutex<Option<Control>>,
    token_required: bool,
}

impl Dashboard {
    /// Starts the dashboard's sampler thread. If the thread cannot start,
    /// the error is logged and the page says the node has no live view.
    pub fn start(sources: Sources, token_required: bool) -> Arc<Dashboard> {
        let (tx, snapshots) = watch::channel(None);
        let watching = Arc::new(AtomicUsize::new(0));
        let control = sampler::spawn(sources, tx, watching.clone())
            .inspect_err(|e| tracing::error!("cannot start the dashboard's thread: {e}"))
            .ok();
        Arc::new(Dashboard {
            snapshots,
            watching,
            control: Mutex::new(control),
            token_required,
        })
    }

    /// Stops the sampler; open event streams end.
    pub fn stop(&self) {
        let control = self
            .control
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(control) = control {
            control.stop();
        }
    }

    fn wake(&self) -> bool {
        let control = self.control.lock().unwrap_or_else(|e| e.into_inner());
        control
            .as_ref()
            .is_some_and(|c| c.wake.send(Wake::Now).is_ok())
    }
}

/// The routes with data: behind the admin token.
pub fn data<S>(dashboard: Arc<Dashboard>) -> Router<S> {
    Router::new()
        .route("/dashboard/events", get(events))
        .with_state(dashboard)
}

/// The page, its assets, and whether it needs a token: open to whoever
/// reaches the listener.
pub fn page<S>(dashboard: Arc<Dashboard>) -> Router<S> {
    assets::routes()
        .route("/dashboard/auth", get(auth))
        .with_state(dashboard)
}

async fn auth(State(dashboard): State<Arc<Dashboard>>) -> Response {
    assets::no_store(axum::Json(
        json!({"token_required": dashboard.token_required}),
    ))
}

/// One open stream, counted while it lives.
struct Watching(Arc<AtomicUsize>);

impl Watching {
    fn open(count: &Arc<AtomicUsize>) -> Option<Watching> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_STREAMS).then_some(n + 1)
            })
            .ok()
            .map(|_| Watching(count.clone()))
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn unavailable(message: String) -> Response {
    let body = json!({"message": message, "status": 503});
    (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
}

/// `GET /dashboard/events`: a snapshot as soon as the stream opens, then
/// one a second, each a server-sent event whose data is the JSON snapshot.
async fn events(State(dashboard): State<Arc<Dashboard>>) -> Response {
    let Some(watching) = Watching::open(&dashboard.watching) else {
        return unavailable(format!(
            "{MAX_STREAMS} dashboard pages are open on this node already; close one"
        ));
    };
    let mut snapshots = dashboard.snapshots.clone();
    snapshots.mark_unchanged();
    if !dashboard.wake() {
        return unavailable(
            "the dashboard is not running on this node (see its log); the admin API works".into(),
        );
    }
    let stream = futures_util::stream::unfold(
        (snapshots, watching),
        |(mut snapshots, watching)| async move {
            loop {
                // Ends when the sampler stops (the node is stopping).
                snapshots.changed().await.ok()?;
                let latest = snapshots.borrow_and_update().clone();
                if let Some(json) = latest {
                    let event = Event::default().data(&*json);
                    return Some((Ok::<_, Infallible>(event), (snapshots, watching)));
                }
            }
        },
    );
    assets::no_store(Sse::new(stream))
}
