//! Row 4's baseline: a bare tokio-tungstenite broadcast server, run as its
//! own process (`eventhost-bench bare-ws-server`) so that its CPU time and
//! memory are measured the way the node's are.
//!
//! It reads the blocks row 4 feeds the node (JSON lines on standard input,
//! in the form `eventhost replay` reads), turns each transaction into the
//! message the WebSocket plugin's `valid_transactions` stream sends,
//! serializes it once and hands it to every client through a
//! `tokio::sync::broadcast` channel. Each client's task writes what is
//! queued and flushes when nothing more is; another task reads what the
//! client sends. Nothing else: no event log, no filters, no keep-alive, no
//! slow-client policy. It stops at the end of its input.

use std::io::BufRead;

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// Messages a client may fall behind: the WebSocket plugin's default
/// `client_queue_capacity`.
const CAPACITY: usize = 10_000;

pub fn serve() -> anyhow::Result<()> {
    // As the WebSocket plugin does: a runtime with a worker per core.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        eprintln!("listening on {}", listener.local_addr()?);
        let (messages, _) = broadcast::channel::<Utf8Bytes>(CAPACITY);
        let subscribe = messages.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(client(tcp, subscribe.subscribe()));
            }
        });
        tokio::task::spawn_blocking(move || feed(&messages))
            .await
            .context("the input reader panicked")?
    })
}

/// Broadcasts the messages of every block on standard input, until it ends.
fn feed(messages: &broadcast::Sender<Utf8Bytes>) -> anyhow::Result<()> {
    for line in std::io::stdin().lock().lines() {
        let block: serde_json::Value = serde_json::from_str(&line?)?;
        let height = block["height"].as_u64().unwrap_or_default();
        for tx in block["transactions"].as_array().into_iter().flatten() {
            let id = tx["id"].as_str().context("a transaction without an id")?;
            let text = format!(
                r#"{{"height":{height},"asset_id":"{id}","asset_ids":["{id}"],"transaction_id":"{id}"}}"#
            );
            // No receiver yet is not an error: nobody is listening.
            let _ = messages.send(Utf8Bytes::from(text));
        }
    }
    Ok(())
}

/// A client: everything broadcast, written as it comes, flushed when
/// nothing more is queued; what it sends is read and dropped.
pub(crate) async fn client(tcp: TcpStream, mut messages: broadcast::Receiver<Utf8Bytes>) {
    let _ = tcp.set_nodelay(true);
    let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    let (mut sink, mut source) = ws.split();
    tokio::spawn(async move { while let Some(Ok(_)) = source.next().await {} });
    loop {
        let text = match messages.recv().await {
            Ok(text) => text,
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if sink.feed(Message::Text(text)).await.is_err() {
            return;
        }
        while let Ok(text) = messages.try_recv() {
            if sink.feed(Message::Text(text)).await.is_err() {
                return;
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
}
