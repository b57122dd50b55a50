//! The WebSocket plugin's end-to-end tests' common parts: the host
//! publishing what a test feeds it (`replay -`) or running (`run`), with
//! the plugin on a free port, and real WebSocket and raw HTTP clients.
//!
//! Timeouts here are hang guards, never speed limits.

use std::io::{Read, Write};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::{Http, Running, Sandbox, Value, read_jsonl, repo_root};

/// How long anything may take before the test is declared hung.
pub const HANG_GUARD: Duration = Duration::from_secs(60);

pub const VALID_TRANSACTIONS: &str = "/api/v1/streams/valid_transactions";
pub const VALID_TX: &str = "/api/v1/streams/valid_tx";
pub const VALID_BLOCKS: &str = "/api/v1/streams/valid_blocks";
pub const INVALID_BLOCKS: &str = "/api/v1/streams/invalid_blocks";
pub const STATE_DELTAS: &str = "/scabbard/eventhost/ledger/ws/subscribe";

pub type Ws = WebSocketStream<TcpStream>;

/// The plugin's table with `settings` (TOML lines) added.
pub fn plugin(settings: &str) -> String {
    format!(
        "[[plugins]]\nname = \"websocket\"\n[plugins.config]\nbind = \"127.0.0.1:0\"\n{settings}\n"
    )
}

/// eventhost publishing what the test feeds it, with the websocket plugin
/// listening on a free port.
pub struct Host {
    pub running: Running,
    /// `127.0.0.1:<port>`, read from the plugin's log.
    pub address: String,
    pub sandbox: Sandbox,
}

impl Host {
    /// Starts the host; `settings` are extra lines for the plugin's config table.
    pub fn start(settings: &str) -> Host {
        let sandbox = Sandbox::new();
        sandbox.config(&plugin(settings));
        Host::start_in(sandbox)
    }

    /// Starts the host on the configuration already in `sandbox`.
    pub fn start_in(sandbox: Sandbox) -> Host {
        let mut running = sandbox.spawn_fed(&["replay", "-"]);
        let address = streams_address(&mut running);
        running.wait_for_log("plugin ready", HANG_GUARD);
        Host {
            running,
            address,
            sandbox,
        }
    }

    pub fn port(&self) -> &str {
        self.address.rsplit(':').next().unwrap()
    }

    pub fn feed(&mut self, line: &str) {
        self.running.feed(line);
    }

    /// Feeds every event of a fixture file and returns them.
    pub fn feed_fixture(&mut self, name: &str) -> Vec<Value> {
        let path = repo_root().join("tests/fixtures").join(name);
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            self.feed(line);
        }
        read_jsonl(&path)
    }

    pub async fn connect(&self, path: &str) -> Ws {
        connect_to(&self.address, path).await
    }

    /// The WebSocket handshake for `path` on a connected socket.
    pub async fn upgrade(&self, tcp: TcpStream, path: &str) -> Result<Ws, tungstenite::Error> {
        let url = format!("ws://{}{path}", self.address);
        let (ws, _) = tokio::time::timeout(HANG_GUARD, tokio_tungstenite::client_async(url, tcp))
            .await
            .expect("the upgrade hung")?;
        Ok(ws)
    }

    /// Sends `request` as raw bytes and returns the whole response, up to
    /// the server closing the connection.
    pub fn raw_http(&self, request: &str) -> String {
        raw_http(&self.address, request)
    }
}

/// The address the plugin logged it listens on.
fn streams_address(running: &mut Running) -> String {
    let line = running.wait_for_log_line("listening on ", HANG_GUARD);
    line.split("listening on ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned()
}

/// Sends `request` to `address` as raw bytes and returns the whole
/// response, up to the server closing the connection (a reset fails).
pub fn raw_http(address: &str, request: &str) -> String {
    let mut tcp = std::net::TcpStream::connect(address).unwrap();
    tcp.set_read_timeout(Some(HANG_GUARD)).unwrap();
    tcp.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response)
        .unwrap_or_else(|e| panic!("reading the response: {e} (so far: {response:?})"));
    response
}

/// An upgrade request for `target`, as raw HTTP.
pub fn upgrade_request(target: &str) -> String {
    format!(
        "GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
}

/// The status code and body of a raw HTTP response.
pub fn status_and_body(response: &str) -> (u16, &str) {
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {response:?}"));
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body)
}

/// The next data message as JSON; control frames are skipped.
pub async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let message = tokio::time::timeout(HANG_GUARD, ws.next())
            .await
            .expect("no message arrived");
        match message {
            Some(Ok(Message::Text(text))) => {
                return serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("not JSON: {text:?}: {e}"));
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

/// Reads `count` data messages.
pub async fn take_json(ws: &mut Ws, count: usize) -> Vec<Value> {
    let mut messages = Vec::with_capacity(count);
    while messages.len() < count {
        messages.push(next_json(ws).await);
    }
    messages
}

/// Reads up to the server's close frame: returns it and the data messages before it.
pub async fn read_to_close(ws: &mut Ws) -> (CloseFrame, Vec<Value>) {
    let mut messages = Vec::new();
    loop {
        let message = tokio::time::timeout(HANG_GUARD, ws.next())
            .await
            .expect("the server never closed the connection");
        match message {
            Some(Ok(Message::Text(text))) => messages.push(serde_json::from_str(&text).unwrap()),
            Some(Ok(Message::Close(Some(frame)))) => return (frame, messages),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!(
                "expected a close frame after {} messages, got {other:?}",
                messages.len()
            ),
        }
    }
}

pub fn assert_closed_with(frame: &CloseFrame, code: CloseCode, reason: &str) {
    assert_eq!(
        (frame.code, frame.reason.as_str()),
        (code, reason),
        "close frame"
    );
}

/// `eventhost run` in `sandbox`, its streams on a free port: the running
/// host, its HTTP API and the streams' address.
pub fn start_node(sandbox: &Sandbox) -> (Running, Http, String) {
    let mut running = sandbox.spawn(&["run"]);
    let http = running.http();
    let address = streams_address(&mut running);
    (running, http, address)
}

pub async fn connect_to(address: &str, path: &str) -> Ws {
    let tcp = TcpStream::connect(address).await.unwrap();
    let (ws, _) = tokio::time::timeout(
        HANG_GUARD,
        tokio_tungstenite::client_async(format!("ws://{address}{path}"), tcp),
    )
    .await
    .expect("the upgrade hung")
    .unwrap_or_else(|e| panic!("connecting to {path}: {e}"));
    ws
}

/// The upgrade for `path` with extra request headers.
pub async fn connect_with(
    address: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(Ws, tungstenite::handshake::client::Response), tungstenite::Error> {
    use tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{address}{path}")
        .into_client_request()
        .unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(
            tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    let tcp = TcpStream::connect(address).await.unwrap();
    tokio::time::timeout(HANG_GUARD, tokio_tungstenite::client_async(request, tcp))
        .await
        .expect("the upgrade hung")
}

/// Commits a CREATE per number in `range`, one block each; returns their ids.
pub fn commit_creates(http: &Http, range: std::ops::Range<u64>) -> Vec<String> {
    use eventhost::sources::ledger::builder::{self, Keypair};
    let key = Keypair::from_seed([3; 32]);
    range
        .map(|i| {
            let tx = builder::create(&key, &[(key.public_key(), 1)], json!({"i": i}), Value::Null);
            let (status, body) = http.post("/api/v1/transactions?mode=commit", &tx.to_string());
            assert_eq!(status, 202, "{body}");
            tx["id"].as_str().unwrap().to_owned()
        })
        .collect()
}
