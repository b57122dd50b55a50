//! The WebSocket event stream plugin, end to end: the real eventhost binary
//! running `replay -` with the real plugin library, real WebSocket clients
//! over loopback, and events written to the host's standard input once the
//! clients are connected.
//!
//! `tests/fixtures/stream_blocks.jsonl` holds the signed sample
//! transactions of BigchainDB's (2.0) and Planetmint's (3.0) HTTP API
//! documentation, in blocks; bigger runs use `support::transactions`.
//!
//! Timeouts here are hang guards, never speed limits.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use support::transactions::{
    Version, block_hash, block_invalid, block_valid, create, public_key, transfer, tx_id,
};
use support::ws::{
    HANG_GUARD, Host, INVALID_BLOCKS, VALID_BLOCKS, VALID_TRANSACTIONS, VALID_TX,
    assert_closed_with, commit_creates, connect_to, connect_with, next_json, read_to_close,
    start_node, take_json,
};
use support::{Sandbox, Value, repo_root};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};

fn tx_message(height: u64, id: &str, asset_ids: &[&str]) -> Value {
    json!({"height": height, "asset_id": asset_ids[0], "asset_ids": asset_ids, "transaction_id": id})
}

// The fixture's transactions and assets.
const BDB_CREATE: &str = "4957744b3ac54434b8270f2c854cc1040228c82ea4e72d66d2887a4d3e30b317";
const BDB_TRANSFER_1: &str = "79ef6803210c941903d63d08b40fa17f0a5a04f11ac0ff04451553a187d97a30";
const BDB_TRANSFER_2: &str = "1fec726a3b426498147f1a1f19a92c187d551a7f66db4b88d666d7dcc10e86a4";
const PM_CREATE: &str = "0fdeb547670bbea980389df53cf5a91e60159339084c6b0b5cc0b5494a679530";
const PM_TRANSFER_1: &str = "8d11fe2bd91c4747a41e0c3dbe1400c511175be42f008d6cff92cbfa9e04f799";
const PM_TRANSFER_2: &str = "45c929b66d1b10db6c3c3e6b1adddc0778b473fced4a1f403c2646b25f3fd983";

/// (height, transaction, its assets) of the fixture's valid blocks, in order.
const FIXTURE_TRANSACTIONS: [(u64, &str, &str); 6] = [
    (1, BDB_CREATE, BDB_CREATE),
    (2, BDB_TRANSFER_1, BDB_CREATE),
    (2, BDB_TRANSFER_2, BDB_CREATE),
    (3, PM_CREATE, PM_CREATE),
    (3, PM_TRANSFER_1, PM_CREATE),
    (3, PM_TRANSFER_2, PM_CREATE),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_transaction_dialects_carry_every_transaction_in_block_order() {
    let mut host = Host::start("");
    for (rel, path) in [
        ("streams", VALID_TRANSACTIONS),
        ("streams_v1", VALID_TX),
        ("streamedblocks", VALID_BLOCKS),
    ] {
        let advertised = format!("ws://localhost:{}{path}", host.port());
        host.running.wait_for_log(
            &format!("plugin advertises {rel} = {advertised}"),
            HANG_GUARD,
        );
    }
    let mut planetmint = host.connect(VALID_TRANSACTIONS).await;
    let mut bigchaindb_1 = host.connect(VALID_TX).await;

    let events = host.feed_fixture("stream_blocks.jsonl");
    let hash_at = |height: u64| {
        events
            .iter()
            .find(|e| e["type"] == "BLOCK_VALID" && e["height"] == height)
            .unwrap()["hash"]
            .clone()
    };
    for (height, id, asset) in FIXTURE_TRANSACTIONS {
        assert_eq!(
            next_json(&mut planetmint).await,
            tx_message(height, id, &[asset])
        );
        assert_eq!(
            next_json(&mut bigchaindb_1).await,
            json!({"tx_id": id, "asset_id": asset, "block_id": hash_at(height)})
        );
    }

    // A Planetmint TRANSFER of several assets: asset_id is the first.
    let (a, b) = (tx_id(1), tx_id(2));
    let (alice, bob) = (public_key(1), public_key(2));
    let multi = transfer(Version::V3, &tx_id(3), &[&a, &b], &a, &alice, &bob);
    host.feed(&block_valid(4, &[multi]));
    assert_eq!(
        next_json(&mut planetmint).await,
        tx_message(4, &tx_id(3), &[&a, &b])
    );
    assert_eq!(
        next_json(&mut bigchaindb_1).await,
        json!({"tx_id": tx_id(3), "asset_id": a, "block_id": block_hash(4)})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_streams_carry_valid_and_invalid_blocks() {
    let mut host = Host::start("");
    let mut valid = host.connect(VALID_BLOCKS).await;
    let mut invalid = host.connect(INVALID_BLOCKS).await;

    let events = host.feed_fixture("stream_blocks.jsonl");
    let valid_events = events.iter().filter(|e| e["type"] == "BLOCK_VALID");
    for event in valid_events {
        let ids: Vec<&Value> = event["transactions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|tx| &tx["id"])
            .collect();
        assert_eq!(
            next_json(&mut valid).await,
            json!({"height": event["height"], "hash": event["hash"], "transaction_ids": ids})
        );
    }
    let rejected = events
        .iter()
        .find(|e| e["type"] == "BLOCK_INVALID")
        .unwrap();
    assert_eq!(
        next_json(&mut invalid).await,
        json!({
            "height": 3,
            "hash": rejected["hash"],
            "rejected": [{
                "transaction_id": BDB_TRANSFER_1,
                "reason": "DoubleSpend: output 0 of transaction 4957744b3ac54434b8270f2c854cc1040228c82ea4e72d66d2887a4d3e30b317 is already spent",
            }],
        })
    );

    // Nothing else was sent: the next messages are the next blocks'.
    let tx = create(Version::V2, &tx_id(9), &public_key(9));
    host.feed(&block_invalid(4, &[(tx.clone(), "bad signature")]));
    host.feed(&block_valid(4, &[tx]));
    assert_eq!(next_json(&mut invalid).await["height"], 4);
    assert_eq!(
        next_json(&mut valid).await,
        json!({"height": 4, "hash": block_hash(4), "transaction_ids": [tx_id(9)]})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_pick_transactions_and_combine() {
    let mut host = Host::start("");
    let (alice, bob, carol) = (public_key(1), public_key(2), public_key(3));
    let [c1, c2, t1, t2, t3, m1, m2] = [1, 2, 3, 4, 5, 6, 7].map(tx_id);
    let query = |q: String| format!("{VALID_TRANSACTIONS}?{q}");
    // (query, ids expected in order); each list ends with its marker, m1 or m2.
    let cases: Vec<(String, Vec<&String>)> = vec![
        (
            query(format!("asset_id={c1}")),
            vec![&c1, &t1, &t2, &t3, &m1],
        ),
        (
            query(format!("asset_id={}", c1.to_uppercase())),
            vec![&c1, &t1, &t2, &t3, &m1],
        ),
        (
            query(format!("public_key={bob}")),
            vec![&c2, &t1, &t2, &t3, &m1],
        ),
        (query(format!("public_key={alice}")), vec![&c1, &t1, &m2]),
        (query("operation=CREATE".into()), vec![&c1, &c2, &m2]),
        (
            query(format!("operation=TRANSFER&asset_id={c2}")),
            vec![&t2, &m1],
        ),
        (
            query(format!(
                "asset_id={c1}&public_key={carol}&operation=TRANSFER"
            )),
            vec![&t2, &t3, &m1],
        ),
        (
            format!("{VALID_TX}?public_key={carol}"),
            vec![&t2, &t3, &m1],
        ),
    ];
    let mut clients = Vec::new();
    for (path, _) in &cases {
        clients.push(host.connect(path).await);
    }

    host.feed(&block_valid(
        1,
        &[
            create(Version::V2, &c1, &alice),
            create(Version::V3, &c2, &bob),
        ],
    ));
    host.feed(&block_valid(
        2,
        &[
            transfer(Version::V2, &t1, &[&c1], &c1, &alice, &bob),
            transfer(Version::V3, &t2, &[&c2, &c1], &c2, &bob, &carol),
        ],
    ));
    host.feed(&block_valid(
        3,
        &[transfer(Version::V2, &t3, &[&c1], &t1, &bob, &carol)],
    ));
    // Markers, so that each client's last expected message is the last
    // thing it can receive: m1 matches every filter but alice's and CREATE's.
    host.feed(&block_valid(
        4,
        &[
            transfer(Version::V3, &m1, &[&c1, &c2], &t3, &carol, &bob),
            create(Version::V2, &m2, &alice),
        ],
    ));

    for ((path, expected), client) in cases.iter().zip(&mut clients) {
        let mut got = Vec::new();
        for _ in expected {
            let message = next_json(client).await;
            let id = message
                .get("transaction_id")
                .or(message.get("tx_id"))
                .unwrap();
            got.push(id.as_str().unwrap().to_owned());
        }
        let expected: Vec<&str> = expected.iter().map(|id| id.as_str()).collect();
        assert_eq!(got, expected, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_and_malformed_filters_are_refused_at_the_upgrade() {
    let mut host = Host::start("");
    let upgrade = |target: &str| {
        format!(
            "GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
    };
    let cases = [
        (
            "/api/v1/streams/valid_txs".to_owned(),
            "404 Not Found",
            "no stream at /api/v1/streams/valid_txs; the streams are /api/v1/streams/valid_transactions, /api/v1/streams/valid_tx, /api/v1/streams/valid_blocks, /api/v1/streams/invalid_blocks, /scabbard/eventhost/ledger/ws/subscribe (and the index at /api/v1/streams)",
        ),
        (
            format!("{VALID_TRANSACTIONS}?asset_id=4957744b"),
            "400 Bad Request",
            "asset_id must be 64 hexadecimal digits (a transaction id), not `4957744b`",
        ),
        (
            format!("{VALID_TX}?public_key=0OIl"),
            "400 Bad Request",
            "public_key must be a base58 Ed25519 public key (43 or 44 characters, no 0, O, I or l), not `0OIl`",
        ),
        (
            format!("{VALID_TRANSACTIONS}?operation=BURN"),
            "400 Bad Request",
            "operation must be CREATE or TRANSFER, not `BURN`",
        ),
        (
            format!("{VALID_TRANSACTIONS}?operation=CREATE&colour=red"),
            "400 Bad Request",
            "unknown query parameter `colour` (the filters are q, asset_id, public_key and operation; the positions last_seen_event, from_height and from_time)",
        ),
        (
            format!("{VALID_BLOCKS}?operation=CREATE"),
            "400 Bad Request",
            "/api/v1/streams/valid_blocks takes no transaction filters, but got `operation` (its q filters by height, hash and transaction_count)",
        ),
    ];
    for (target, status, message) in &cases {
        let response = host.raw_http(&upgrade(target));
        assert!(
            response.starts_with(&format!("HTTP/1.1 {status}\r\n")),
            "{target}: {response}"
        );
        assert!(
            response.ends_with(&format!("\r\n\r\n{message}\n")),
            "{target}: {response}"
        );
        // What a WebSocket client library sees: a refused upgrade, not a socket.
        let tcp = TcpStream::connect(&host.address).await.unwrap();
        match host.upgrade(tcp, target).await {
            Err(tungstenite::Error::Http(response)) => {
                assert_eq!(response.status().to_string(), *status, "{target}")
            }
            other => panic!("{target}: expected a refused upgrade, got {other:?}"),
        }
    }

    // A plain HTTP request is told what the endpoint speaks.
    let response = host.raw_http(&format!(
        "GET {VALID_TX} HTTP/1.1\r\nHost: localhost\r\n\r\n"
    ));
    assert!(
        response.starts_with("HTTP/1.1 400 Bad Request\r\n")
            && response.contains("expected a WebSocket upgrade request"),
        "{response}"
    );

    // The plugin serves on.
    let mut client = host.connect(VALID_TRANSACTIONS).await;
    host.feed(&block_valid(
        1,
        &[create(Version::V2, &tx_id(1), &public_key(1))],
    ));
    assert_eq!(
        next_json(&mut client).await,
        tx_message(1, &tx_id(1), &[&tx_id(1)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_oversized_frames_close_only_their_sender() {
    let mut host = Host::start("max_message_bytes = 1024");
    let mut chatty = host.connect(VALID_TRANSACTIONS).await;
    let mut oversized = host.connect(VALID_TRANSACTIONS).await;
    let mut garbage = host.connect(VALID_TRANSACTIONS).await;
    let mut bystander = host.connect(VALID_TRANSACTIONS).await;

    // Messages from clients are ignored; pings are answered.
    chatty
        .send(Message::text("subscribe me to everything"))
        .await
        .unwrap();
    chatty
        .send(Message::binary(vec![0_u8; 1000]))
        .await
        .unwrap();
    chatty
        .send(Message::Ping(b"are you there".to_vec().into()))
        .await
        .unwrap();
    let pong = tokio::time::timeout(HANG_GUARD, chatty.next())
        .await
        .unwrap();
    assert!(
        matches!(&pong, Some(Ok(Message::Pong(p))) if p.as_ref() == b"are you there"),
        "{pong:?}"
    );

    oversized
        .send(Message::text("x".repeat(2000)))
        .await
        .unwrap();
    let (frame, messages) = read_to_close(&mut oversized).await;
    assert_closed_with(
        &frame,
        CloseCode::Size,
        "message too big: the limit is 1024 bytes",
    );
    assert!(messages.is_empty());

    // Not a WebSocket frame at all: reserved bits and opcode set.
    garbage.get_mut().write_all(&[0xff; 64]).await.unwrap();
    let (frame, _) = read_to_close(&mut garbage).await;
    assert_eq!(frame.code, CloseCode::Protocol, "{frame:?}");
    assert!(frame.reason.starts_with("protocol error: "), "{frame:?}");

    let mut newcomer = host.connect(VALID_TRANSACTIONS).await;
    host.feed(&block_valid(
        1,
        &[create(Version::V3, &tx_id(1), &public_key(1))],
    ));
    let expected = tx_message(1, &tx_id(1), &[&tx_id(1)]);
    for client in [&mut chatty, &mut bystander, &mut newcomer] {
        assert_eq!(next_json(client).await, expected);
    }
    let log = host.running.log();
    assert!(
        !log.contains("panicked") && !log.contains("plugin failed"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_closed_and_the_others_get_every_message() {
    const BLOCKS: u64 = 1000;
    const PER_BLOCK: u64 = 8;
    const MESSAGES: usize = (BLOCKS * PER_BLOCK) as usize;
    const QUEUE: usize = 1000;
    const IDLE: usize = 200;
    let mut host = Host::start(&format!(
        "client_queue_capacity = {QUEUE}\n\
         send_buffer_bytes = 16384\n\
         max_connections_per_address = 1000\n\
         # The stalled client reads only once the flow is over.\n\
         close_timeout_ms = 60000"
    ));
    let rss_start = host.running.rss_kib().unwrap();

    // Clients whose filter matches nothing: what an idle client costs.
    let mut idle = Vec::new();
    for _ in 0..IDLE {
        let path = format!("{VALID_TRANSACTIONS}?asset_id={}", "f".repeat(64));
        idle.push(host.connect(&path).await);
    }
    let rss_idle = host.running.rss_kib().unwrap();

    // The stalled client's socket has a small receive buffer, so that the
    // kernel cannot absorb the flow for it.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let address: std::net::SocketAddr = host.address.parse().unwrap();
    socket.connect(&address.into()).unwrap();
    socket.set_nonblocking(true).unwrap();
    let tcp = TcpStream::from_std(std::net::TcpStream::from(socket)).unwrap();
    let mut stalled = host.upgrade(tcp, VALID_TRANSACTIONS).await.unwrap();

    let mut readers = Vec::new();
    for _ in 0..2 {
        let mut client = host.connect(VALID_TRANSACTIONS).await;
        let progress = Arc::new(AtomicUsize::new(0));
        let read = progress.clone();
        let task = tokio::spawn(async move {
            let mut ids = Vec::new();
            while ids.len() < MESSAGES {
                ids.push(next_json(&mut client).await["transaction_id"].clone());
                read.store(ids.len(), Ordering::Relaxed);
            }
            ids
        });
        readers.push((task, progress));
    }

    // A reader is guaranteed every message as long as it keeps within its
    // queue, so the flow waits for the readers (not for the stalled client).
    let owner = public_key(1);
    for height in 0..BLOCKS {
        let txs: Vec<Value> = (height * PER_BLOCK..(height + 1) * PER_BLOCK)
            .map(|n| create(Version::V2, &tx_id(n), &owner))
            .collect();
        host.feed(&block_valid(height + 1, &txs));
        let fed = ((height + 1) * PER_BLOCK) as usize;
        let waited = std::time::Instant::now();
        while readers
            .iter()
            .any(|(_, read)| fed - read.load(Ordering::Relaxed) > QUEUE / 2)
        {
            assert!(waited.elapsed() < HANG_GUARD, "the readers stopped reading");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let expected: Vec<Value> = (0..MESSAGES as u64).map(|n| json!(tx_id(n))).collect();
    for (task, _) in readers {
        assert!(task.await.unwrap() == expected, "a reader missed messages");
    }
    let rss_end = host.running.rss_kib().unwrap();

    let (frame, received) = read_to_close(&mut stalled).await;
    assert_closed_with(
        &frame,
        CloseCode::Policy,
        &format!("client too slow: more than {QUEUE} messages behind"),
    );
    // What it did receive is the start of the stream, without gaps.
    let ids: Vec<Value> = received
        .iter()
        .map(|m| m["transaction_id"].clone())
        .collect();
    assert!(ids.len() < MESSAGES);
    assert!(
        ids == expected[..ids.len()],
        "the stalled client's messages have gaps"
    );
    let warning = host
        .running
        .wait_for_log_line("client too slow", HANG_GUARD);
    assert!(warning.contains("(slow clients so far: 1)"), "{warning}");

    eprintln!(
        "host RSS: {rss_start} KiB at start; {rss_idle} KiB with {IDLE} idle clients \
         (~{:.1} KiB each); {rss_end} KiB after {MESSAGES} messages to 2 readers and \
         1 stalled client (which received {} before it was closed)",
        (rss_idle.saturating_sub(rss_start)) as f64 / IDLE as f64,
        ids.len()
    );
    assert!(rss_end < 512 * 1024, "the host holds {rss_end} KiB");
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_answering_pings_is_closed() {
    let mut host = Host::start("ping_interval_ms = 200\npong_timeout_ms = 500");
    let mut silent = host.connect(VALID_BLOCKS).await;
    let mut live = host.connect(VALID_BLOCKS).await;
    // tungstenite answers pings while it reads: the live client keeps reading.
    let (tx, mut messages) = tokio::sync::mpsc::unbounded_channel();
    let live_reader = tokio::spawn(async move {
        let mut pings = 0;
        while let Some(Ok(message)) = live.next().await {
            match message {
                Message::Ping(_) => pings += 1,
                Message::Text(text) => tx.send(text).unwrap(),
                _ => {}
            }
        }
        pings
    });

    // The silent client reads nothing, so it answers no ping.
    let closing = host
        .running
        .wait_for_log_line("keepalive timeout: no pong within 500 ms", HANG_GUARD);
    assert!(closing.contains("closing client"), "{closing}");
    let (frame, _) = read_to_close(&mut silent).await;
    assert_closed_with(
        &frame,
        CloseCode::Error,
        "keepalive timeout: no pong within 500 ms",
    );

    // The live client was pinged all along, and is still served.
    host.feed(&block_valid(
        1,
        &[create(Version::V2, &tx_id(1), &public_key(1))],
    ));
    let text = tokio::time::timeout(HANG_GUARD, messages.recv())
        .await
        .unwrap()
        .unwrap();
    let block: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(block["transaction_ids"], json!([tx_id(1)]));
    drop(host);
    let pings = tokio::time::timeout(HANG_GUARD, live_reader)
        .await
        .unwrap()
        .unwrap();
    assert!(pings >= 2, "the live client saw {pings} pings");
}

#[test]
fn a_taken_port_or_a_bad_setting_fails_the_plugin_with_the_reason() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let cases = [
        (
            format!("bind = \"127.0.0.1:{port}\""),
            format!(
                "plugin `websocket` failed to start: cannot listen on 127.0.0.1:{port}: Address already in use"
            ),
        ),
        (
            "ping_interval = 5".to_owned(),
            "its [plugins.config] is invalid at ".to_owned(),
        ),
        (
            "client_queue_capacity = 0".to_owned(),
            ": `client_queue_capacity`: must be between 1 and 1000000, not 0".to_owned(),
        ),
    ];
    for (setting, message) in cases {
        let s = Sandbox::new();
        s.config(&format!(
            "[[plugins]]\nname = \"websocket\"\n[plugins.config]\n{setting}\n"
        ));
        let run = s.run(&["run"]);
        assert_eq!(run.code(), Some(3), "{setting}: {}", run.stderr);
        assert!(run.stderr.contains(&message), "{setting}: {}", run.stderr);
        // The host checks the table before it runs the plugin, and says where.
        if message.starts_with("its ") {
            assert!(
                run.stderr.contains("unknown field `ping_interval`"),
                "{}",
                run.stderr
            );
        }
        run.assert_no_host_panic();
    }
}

#[test]
fn the_default_configuration_serves_the_streams() {
    let out = std::process::Command::new(support::eventhost_bin())
        .arg("check-config")
        .arg(repo_root().join("config.toml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let row = stdout
        .lines()
        .find(|l| l.starts_with("websocket "))
        .unwrap_or_else(|| panic!("no websocket plugin in:\n{stdout}"));
    assert!(row.contains(" ok "), "{stdout}");
}

/// The transaction ids of `/valid_blocks` messages, in order.
fn block_transactions(blocks: &[Value]) -> Vec<String> {
    blocks
        .iter()
        .flat_map(|b| b["transaction_ids"].as_array().unwrap().clone())
        .map(|id| id.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reconnects_with_the_last_id_seen_misses_nothing_and_gets_nothing_twice() {
    const BLOCKS: u64 = 1000;
    const PER_BLOCK: u64 = 3;
    let mut host = Host::start("");
    let mut first = host.connect(VALID_BLOCKS).await;
    let address = host.address.clone();

    // The host publishes all along: the second session joins mid-flow, so
    // live messages queue up for it while it replays.
    let owner = public_key(1);
    let feeder = std::thread::spawn(move || {
        for height in 1..=BLOCKS {
            let txs: Vec<Value> = (0..PER_BLOCK)
                .map(|i| create(Version::V3, &tx_id(height * PER_BLOCK + i), &owner))
                .collect();
            host.feed(&block_valid(height, &txs));
            if height % 10 == 0 {
                // A rejected proposal now and then: in the log, not on this stream.
                host.feed(&block_invalid(height, &[(txs[0].clone(), "double spend")]));
            }
        }
        host
    });

    let before = take_json(&mut first, 400).await;
    drop(first);
    let last_seen = before.last().unwrap()["hash"].as_str().unwrap().to_owned();
    let url = format!("{VALID_BLOCKS}?last_seen_event={last_seen}");
    let tcp = TcpStream::connect(&address).await.unwrap();
    let (mut second, _) = tokio_tungstenite::client_async(format!("ws://{address}{url}"), tcp)
        .await
        .unwrap();
    let mut after = Vec::new();
    while after.last().is_none_or(|b: &Value| b["height"] != BLOCKS) {
        after.push(next_json(&mut second).await);
    }
    let host = feeder.join().unwrap();

    let expected: Vec<String> = (PER_BLOCK..(BLOCKS + 1) * PER_BLOCK).map(tx_id).collect();
    let mut union = block_transactions(&before);
    union.extend(block_transactions(&after));
    assert_eq!(
        union.len(),
        expected.len(),
        "missed or repeated transactions"
    );
    assert!(
        union == expected,
        "the sessions' transactions are not the flow, in order"
    );
    eprintln!(
        "first session: {} blocks; second, resumed after height {}: {} blocks",
        before.len(),
        before.last().unwrap()["height"],
        after.len()
    );

    // A height works as well as a hash; empty and 0 replay from the first
    // block; an id the log does not know is refused at the upgrade.
    let mut by_height = host
        .connect(&format!("{VALID_TX}?last_seen_event=999"))
        .await;
    let ids: Vec<Value> = take_json(&mut by_height, 3)
        .await
        .iter()
        .map(|m| m["tx_id"].clone())
        .collect();
    assert_eq!(ids, [3000, 3001, 3002].map(|n| json!(tx_id(n))));
    for from_first in ["", "0"] {
        let mut all = host
            .connect(&format!("{VALID_BLOCKS}?last_seen_event={from_first}"))
            .await;
        assert_eq!(next_json(&mut all).await["height"], 1);
    }
    let mut invalid = host
        .connect(&format!("{INVALID_BLOCKS}?last_seen_event=0"))
        .await;
    assert_eq!(next_json(&mut invalid).await["height"], 10);
    let unknown = "ab".repeat(32);
    let response = host.raw_http(&format!(
        "GET {VALID_BLOCKS}?last_seen_event={unknown} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    ));
    assert!(
        response.starts_with("HTTP/1.1 400 Bad Request\r\n")
            && response.contains(&format!(
                "last_seen_event `{unknown}` is not in the event log"
            )),
        "{response}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resumes_across_a_restart_of_the_host() {
    let sandbox = Sandbox::new();
    sandbox.config("[[plugins]]\nname = \"websocket\"\n[plugins.config]\nbind = \"127.0.0.1:0\"\n");
    let (running, http, address) = start_node(&sandbox);
    let mut first = connect_to(&address, VALID_TX).await;
    let mut committed = commit_creates(&http, 0..60);
    let before = take_json(&mut first, 25).await;
    drop(first);
    committed.extend(commit_creates(&http, 60..80));
    running.signal(libc::SIGTERM);
    let (status, _, log) = running.wait(HANG_GUARD);
    assert!(status.success(), "{log}");

    let (_running, http, address) = start_node(&sandbox);
    committed.extend(commit_creates(&http, 80..100));
    let last_seen = before.last().unwrap()["block_id"].as_str().unwrap();
    let mut second = connect_to(&address, &format!("{VALID_TX}?last_seen_event={last_seen}")).await;
    committed.extend(commit_creates(&http, 100..110));
    let after = take_json(&mut second, committed.len() - before.len()).await;

    let union: Vec<&str> = before
        .iter()
        .chain(&after)
        .map(|m| m["tx_id"].as_str().unwrap())
        .collect();
    assert_eq!(union, committed);
}

/// The messages of a resuming client of each of `paths`, `count` each.
async fn replay_all(address: &str, paths: &[(String, usize)]) -> Vec<Vec<Value>> {
    let mut replayed = Vec::new();
    for (path, count) in paths {
        let mut client = connect_to(address, path).await;
        replayed.push(take_json(&mut client, *count).await);
    }
    replayed
}

/// Replay renders from the summaries the host stored beside each event;
/// a log stored without them (by a host before plugin-api 1.4) reads them
/// from the transactions, and replays the very same messages, filtered
/// ones included, as live clients got.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_stored_without_summaries_replays_the_same_messages() {
    replays_the_same_with_and_without_summaries("thread").await;
}

/// The same, the plugin in a child process: the summaries cross the socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_in_a_child_process_replays_from_summaries_too() {
    replays_the_same_with_and_without_summaries("process").await;
}

async fn replays_the_same_with_and_without_summaries(isolation: &str) {
    const BLOCKS: usize = 12;
    let sandbox = Sandbox::new();
    sandbox.config(&format!(
        "[[plugins]]\nname = \"websocket\"\nisolation = \"{isolation}\"\n[plugins.config]\nbind = \"127.0.0.1:0\"\n"
    ));
    let (running, http, address) = start_node(&sandbox);
    let mut live_tx = connect_to(&address, VALID_TX).await;
    let mut live_blocks = connect_to(&address, VALID_BLOCKS).await;
    let committed = commit_creates(&http, 0..BLOCKS as u64);
    let live = [
        take_json(&mut live_tx, BLOCKS).await,
        take_json(&mut live_blocks, BLOCKS).await,
    ];
    let picked = &committed[5];
    let paths = [
        (format!("{VALID_TX}?last_seen_event=0"), BLOCKS),
        (format!("{VALID_BLOCKS}?last_seen_event=0"), BLOCKS),
        (format!("{VALID_TRANSACTIONS}?last_seen_event=0"), BLOCKS),
        (
            format!("{VALID_TRANSACTIONS}?last_seen_event=0&asset_id={picked}"),
            1,
        ),
    ];
    let stored = replay_all(&address, &paths).await;
    assert_eq!(stored[..2], live, "replayed as sent live");
    assert_eq!(stored[3][0], stored[2][5], "the filter picks its one");
    assert_eq!(stored[3][0]["transaction_id"], json!(picked));
    running.signal(libc::SIGTERM);
    let (status, _, log) = running.wait(HANG_GUARD);
    assert!(status.success(), "{log}");

    {
        let db = redb::Database::open(sandbox.path("data/eventhost.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        let summaries: redb::TableDefinition<u64, &[u8]> =
            redb::TableDefinition::new("event_summaries");
        assert!(txn.delete_table(summaries).unwrap(), "no summaries stored");
        txn.commit().unwrap();
    }
    let (_running, _, address) = start_node(&sandbox);
    assert_eq!(replay_all(&address, &paths).await, stored);
}

/// The replay rate: events per second from the log to one client. Not a
/// speed assertion, a measurement: `cargo test --test websocket -- --ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn measure_the_replay_rate() {
    const BLOCKS: u64 = 5_000;
    let mut host = Host::start("");
    let mut live = host.connect(VALID_BLOCKS).await;
    let owner = public_key(1);
    for height in 1..=BLOCKS {
        host.feed(&block_valid(
            height,
            &[create(Version::V2, &tx_id(height), &owner)],
        ));
    }
    // Everything is in the log once a live client saw the last block.
    while next_json(&mut live).await["height"] != BLOCKS {}

    let started = std::time::Instant::now();
    let mut replaying = host.connect(&format!("{VALID_TX}?last_seen_event=0")).await;
    let messages = take_json(&mut replaying, BLOCKS as usize).await;
    let elapsed = started.elapsed();
    assert_eq!(messages.last().unwrap()["tx_id"], json!(tx_id(BLOCKS)));
    eprintln!(
        "replayed {BLOCKS} events from the log to one client in {:.2} s: {:.0} events/s",
        elapsed.as_secs_f64(),
        BLOCKS as f64 / elapsed.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_are_required_in_any_accepted_form_and_never_logged() {
    const IN_CONFIG: &str = "config-token-7f3a9c";
    const IN_FILE: &str = "file-token-2b8e41";
    let sandbox = Sandbox::new();
    let file = sandbox.write("tokens", &format!("# stream clients\n{IN_FILE}\n\n"));
    let mut host = Host::start(&format!(
        "tokens = [{IN_CONFIG:?}]\ntokens_file = {:?}",
        file.display().to_string()
    ));
    let address = host.address.clone();

    for (headers, why) in [
        (vec![], "a bearer token is required"),
        (
            vec![("authorization", "Bearer wrong-token")],
            "the bearer token is not valid",
        ),
        (
            vec![("authorization", &format!("Basic {IN_CONFIG}") as &str)],
            "a bearer token is required",
        ),
        (
            vec![("sec-websocket-protocol", "bearer, wrong-token")],
            "the bearer token is not valid",
        ),
    ] {
        match connect_with(&address, VALID_BLOCKS, &headers).await {
            Err(tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 401, "{headers:?}");
                assert_eq!(response.headers()["www-authenticate"], "Bearer");
                let body = String::from_utf8(response.body().clone().unwrap()).unwrap();
                assert!(body.starts_with(why), "{headers:?}: {body}");
            }
            other => panic!("{headers:?}: expected 401, got {other:?}"),
        }
    }

    let bearer = format!("Bearer {IN_CONFIG}");
    // The scheme's name is case-insensitive (RFC 7235).
    let lowercase = format!("bearer {IN_FILE}");
    let cylinder = format!("Bearer Cylinder: {IN_FILE}");
    let subprotocols = format!("bearer, {IN_CONFIG}");
    let mut clients = Vec::new();
    for (name, value) in [
        ("authorization", &bearer),
        ("authorization", &lowercase),
        ("authorization", &cylinder),
        ("sec-websocket-protocol", &subprotocols),
    ] {
        let (ws, response) = connect_with(&address, VALID_BLOCKS, &[(name, value)])
            .await
            .unwrap_or_else(|e| panic!("{name}: {value}: {e}"));
        if name == "sec-websocket-protocol" {
            assert_eq!(response.headers()["sec-websocket-protocol"], "bearer");
        }
        clients.push(ws);
    }
    host.feed(&block_valid(
        1,
        &[create(Version::V2, &tx_id(1), &public_key(1))],
    ));
    for client in &mut clients {
        assert_eq!(next_json(client).await["height"], 1);
    }

    let log = host.running.log();
    for secret in [IN_CONFIG, IN_FILE, "wrong-token"] {
        assert!(!log.contains(secret), "the log holds a token:\n{log}");
    }
}

/// An output's address, as the README derives it.
fn output_address(tx_id: &str, index: u64) -> String {
    use sha3::{Digest, Sha3_256};
    let prefix = Sha3_256::digest(b"eventhost-output");
    let output = Sha3_256::digest(format!("{tx_id}:{index}").as_bytes());
    prefix[..3]
        .iter()
        .chain(&output)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scabbard_state_deltas_set_new_outputs_and_delete_spent_ones() {
    let mut host = Host::start("circuit_id = \"cnUMd-6YXUV\"\nservice_id = \"gsAA\"");
    let address = host.address.clone();
    let path = "/scabbard/cnUMd-6YXUV/gsAA/ws/subscribe";
    let (alice, bob) = (public_key(1), public_key(2));
    let created = create(Version::V2, &tx_id(1), &alice);
    let moved = transfer(
        Version::V2,
        &tx_id(2),
        &[&tx_id(1)],
        &tx_id(1),
        &alice,
        &bob,
    );
    host.feed(&block_valid(1, std::slice::from_ref(&created)));
    host.feed(&block_invalid(2, &[(moved.clone(), "bad signature")]));
    host.feed(&block_valid(2, std::slice::from_ref(&moved)));

    let set = |tx: &Value| {
        let value: Vec<u8> = serde_json::to_vec(&tx["outputs"][0]).unwrap();
        json!({"Set": {"key": output_address(tx["id"].as_str().unwrap(), 0), "value": value}})
    };
    let first = json!({"id": block_hash(1), "state_changes": [set(&created)]});
    let second = json!({"id": block_hash(2), "state_changes": [
        {"Delete": {"key": output_address(&tx_id(1), 0)}},
        set(&moved),
    ]});

    // Without last_seen_event: every event from the first, as scabbard does.
    let (mut all, response) = connect_with(&address, path, &[("splinterprotocolversion", "1")])
        .await
        .unwrap();
    assert_eq!(response.headers()["splinterprotocolversion"], "1");
    assert_eq!(
        take_json(&mut all, 2).await,
        [first.clone(), second.clone()]
    );
    // Resuming from the middle.
    let (mut resumed, response) = connect_with(
        &address,
        &format!("{path}?last_seen_event={}", block_hash(1)),
        &[],
    )
    .await
    .unwrap();
    assert_eq!(response.headers()["splinterprotocolversion"], "2");
    assert_eq!(next_json(&mut resumed).await, second);
    // Live, next.
    let third = create(Version::V3, &tx_id(3), &bob);
    host.feed(&block_valid(3, std::slice::from_ref(&third)));
    let expected = json!({"id": block_hash(3), "state_changes": [set(&third)]});
    assert_eq!(next_json(&mut all).await, expected);
    assert_eq!(next_json(&mut resumed).await, expected);

    for (target, headers, status) in [
        ("/scabbard/cnUMd-6YXUV/other/ws/subscribe", vec![], 404),
        ("/scabbard/eventhost/ledger/ws/subscribe", vec![], 404),
        (path, vec![("splinterprotocolversion", "3")], 400),
    ] {
        match connect_with(&address, target, &headers).await {
            Err(tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), status, "{target}")
            }
            other => panic!("{target}: expected {status}, got {other:?}"),
        }
    }
}
