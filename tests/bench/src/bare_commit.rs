//! Row 3h's server: the commit path with nothing but its duties, run as a
//! process of its own (`eventhost-bench bare-commit-server`) so that its
//! CPU time is measured the way the node's is, and driven by the same
//! clients as rows 3a and 3d.
//!
//! What it does, and all it does: axum on a tokio runtime with a worker
//! per core (threads named `http`, as the node's) takes
//! `POST /api/v1/transactions?mode=…`, parses the body and checks it with
//! the node's own `Transaction::parse` (row 2's work), and hands it to one
//! thread (`ledger`) that takes whatever has arrived as a block, writes the
//! block's transactions' JSON as one value under its height in one redb
//! table (row 3g's write, durable), sends each transaction's
//! `valid_transactions` message to every WebSocket client through a
//! `tokio::sync::broadcast` channel, and answers the block's `mode=commit`
//! requests. `mode=async` is answered 202 once checked. No ledger state (no
//! duplicate or double-spend check), no indexes, no event log, no plugins,
//! no metrics, no limits: what any node serving this API over HTTP, with a
//! durable block and a stream, cannot do with less. The gap between it and
//! the node is the node's; what it costs itself bounds the targets of 3d
//! and 3f from below.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use eventhost::sources::ledger::transaction::Transaction;
use redb::{Database, TableDefinition};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_tungstenite::tungstenite::Utf8Bytes;

const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");

/// Messages a WebSocket client may fall behind: the WebSocket plugin's
/// default `client_queue_capacity`.
const CAPACITY: usize = 10_000;

/// A checked transaction on its way to a block, with the request waiting
/// for the block if it asked for `mode=commit`.
struct Queued {
    tx: Transaction,
    committed: Option<oneshot::Sender<()>>,
}

/// What the server shares between its HTTP workers.
struct Shared {
    queue: mpsc::UnboundedSender<Queued>,
    /// Transactions committed so far, and when the last block was (ns
    /// since the epoch): what `GET /committed` answers.
    committed: AtomicU64,
    blocks: AtomicU64,
    last_ns: AtomicU64,
}

/// Serves until SIGTERM, its store in `dir`; logs `HTTP API on http://ADDR`
/// and `websocket on ADDR` to standard error.
pub fn serve(dir: &std::path::Path) -> anyhow::Result<()> {
    let db = Database::create(dir.join("bare-commit.redb"))
        .with_context(|| format!("create a redb database in {}", dir.display()))?;
    let (queue, queued) = mpsc::unbounded_channel();
    let (messages, _) = broadcast::channel::<Utf8Bytes>(CAPACITY);
    let shared = Arc::new(Shared {
        queue,
        committed: AtomicU64::new(0),
        blocks: AtomicU64::new(0),
        last_ns: AtomicU64::new(0),
    });
    {
        let (shared, messages) = (shared.clone(), messages.clone());
        std::thread::Builder::new()
            .name("ledger".into())
            .spawn(move || {
                if let Err(e) = commit_blocks(&db, queued, &messages, &shared) {
                    eprintln!("error: the ledger thread stopped: {e:#}");
                }
            })?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("http")
        .build()?;
    runtime.block_on(async {
        let streams = TcpListener::bind("127.0.0.1:0").await?;
        eprintln!("websocket on {}", streams.local_addr()?);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = streams.accept().await {
                tokio::spawn(crate::bare_ws::client(tcp, messages.subscribe()));
            }
        });
        let api = TcpListener::bind("127.0.0.1:0").await?;
        eprintln!("HTTP API on http://{}", api.local_addr()?);
        let router = Router::new()
            .route("/api/v1/transactions", post(post_transaction))
            .route("/committed", get(committed))
            .with_state(shared);
        // Stopped as the node is (SIGTERM), it exits cleanly.
        let mut term = signal(SignalKind::terminate())?;
        tokio::select! {
            served = axum::serve(api, router) => served?,
            _ = term.recv() => {}
        }
        anyhow::Ok(())
    })
}

#[derive(serde::Deserialize)]
struct Mode {
    mode: Option<String>,
}

async fn post_transaction(
    State(shared): State<Arc<Shared>>,
    Query(Mode { mode }): Query<Mode>,
    body: Bytes,
) -> Response {
    let tx = match serde_json::from_slice(&body)
        .map_err(|e| e.to_string())
        .and_then(|json| Transaction::parse(json).map_err(|e| e.to_string()))
    {
        Ok(tx) => tx,
        Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    let echo = tx.text().to_owned();
    let (committed, wait) = match mode.as_deref() {
        Some("commit") => {
            let (done, wait) = oneshot::channel();
            (Some(done), Some(wait))
        }
        _ => (None, None),
    };
    if shared.queue.send(Queued { tx, committed }).is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "the ledger stopped").into_response();
    }
    if let Some(wait) = wait
        && wait.await.is_err()
    {
        return (StatusCode::SERVICE_UNAVAILABLE, "the block failed").into_response();
    }
    (
        StatusCode::ACCEPTED,
        [(header::CONTENT_TYPE, "application/json")],
        echo,
    )
        .into_response()
}

/// `transactions blocks last_ns`.
async fn committed(State(shared): State<Arc<Shared>>) -> String {
    format!(
        "{} {} {}",
        shared.committed.load(Ordering::Acquire),
        shared.blocks.load(Ordering::Acquire),
        shared.last_ns.load(Ordering::Acquire)
    )
}

/// The ledger thread: a block of whatever has arrived, written durably,
/// then published and answered.
fn commit_blocks(
    db: &Database,
    mut queued: mpsc::UnboundedReceiver<Queued>,
    messages: &broadcast::Sender<Utf8Bytes>,
    shared: &Shared,
) -> anyhow::Result<()> {
    let mut height = 0u64;
    let mut block = Vec::new();
    let mut value = Vec::new();
    while let Some(first) = queued.blocking_recv() {
        block.push(first);
        while let Ok(next) = queued.try_recv() {
            block.push(next);
        }
        height += 1;
        value.clear();
        for q in &block {
            value.extend_from_slice(q.tx.text().as_bytes());
        }
        let txn = db.begin_write()?;
        txn.open_table(BLOCKS)?.insert(height, value.as_slice())?;
        txn.commit()?;
        for q in block.drain(..) {
            let id = &q.tx.id;
            let asset = q.tx.asset_ids.first().unwrap_or(id);
            let text = format!(
                r#"{{"height":{height},"asset_id":"{asset}","asset_ids":["{asset}"],"transaction_id":"{id}"}}"#
            );
            // No receiver yet is not an error: nobody is listening.
            let _ = messages.send(Utf8Bytes::from(text));
            if let Some(done) = q.committed {
                let _ = done.send(());
            }
            shared.committed.fetch_add(1, Ordering::AcqRel);
        }
        shared.blocks.fetch_add(1, Ordering::AcqRel);
        shared
            .last_ns
            .store(crate::commit::now_ns() as u64, Ordering::Release);
    }
    Ok(())
}
