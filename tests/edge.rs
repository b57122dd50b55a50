//! Edge nodes end to end: a ledger node (the real eventhost binary) with
//! the real libnats publishing to real nats-server processes on loopback (a
//! 3-server cluster with a stream of 3 replicas, or a single server), and
//! edge nodes (`[source] kind = "nats"`) following that stream, serving it
//! with the real websocket plugin to real WebSocket clients. Transactions go
//! through the ledger's HTTP API. Each test starts servers and nodes of its
//! own, so the tests run in parallel.
//!
//! Timeouts here are hang guards, never speed limits.

use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use eventhost::sources::ledger::builder::Keypair;
use serde_json::json;
use support::nats::{self, Auth, Client, Cluster};
use support::node::{
    PATIENCE, SetOnDrop, count, create, double_spend, events, id, post, post_concurrently,
    wait_until,
};
use support::{Http, Running, Sandbox, Value};
use tokio_tungstenite::tungstenite::{self, Message};

const VALID_BLOCKS: &str = "/api/v1/streams/valid_blocks";
const INVALID_BLOCKS: &str = "/api/v1/streams/invalid_blocks";

/// The websocket plugin on a free port.
const WEBSOCKET: &str =
    "[[plugins]]\nname = \"websocket\"\n[plugins.config]\nbind = \"127.0.0.1:0\"\n\n";

/// The ledger node's nats plugin on `servers`; `config` goes in its table.
fn nats_plugin(servers: &[String], config: &str) -> String {
    format!(
        "[[plugins]]\nname = \"nats\"\n[plugins.config]\nservers = {servers:?}\nreconnect_initial_ms = 100\nreconnect_max_ms = 400\n{config}\n\n"
    )
}

/// An edge's `[source]` table: the stream on `servers`, as consumer
/// `durable`; `extra` goes in the table.
fn source(servers: &[String], durable: &str, extra: &str) -> String {
    format!(
        "[source]\nkind = \"nats\"\nservers = {servers:?}\ndurable = {durable:?}\nreconnect_initial_ms = 100\nreconnect_max_ms = 400\n{extra}\n\n"
    )
}

/// A node in a sandbox of its own, which the test can kill and start again.
struct Node {
    sandbox: Sandbox,
    running: Option<Running>,
}

impl Node {
    /// Starts `eventhost run` on `config` (after the sandbox's `[host]`).
    fn start(config: &str) -> Node {
        Node::start_with_env(config, &[])
    }

    fn start_with_env(config: &str, env: &[(&str, &str)]) -> Node {
        let sandbox = Sandbox::new();
        sandbox.config(config);
        let running = sandbox.spawn_with_env(&["run"], env);
        Node {
            sandbox,
            running: Some(running),
        }
    }

    fn running(&mut self) -> &mut Running {
        self.running.as_mut().expect("the node runs")
    }

    fn http(&mut self) -> Http {
        self.running().http()
    }

    fn log(&mut self) -> String {
        self.running().log()
    }

    fn wait_for_log(&mut self, needle: &str) {
        self.running().wait_for_log(needle, PATIENCE);
    }

    /// Where its websocket plugin listens.
    fn streams(&mut self) -> String {
        let line = self.running().wait_for_log_line("listening on ", PATIENCE);
        line.split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split(';').next())
            .expect("an address")
            .to_owned()
    }

    /// `kill -9`.
    fn kill(&mut self) {
        let running = self.running.take().expect("the node runs");
        running.signal(libc::SIGKILL);
        let _ = running.wait(PATIENCE);
    }

    fn restart(&mut self) {
        assert!(self.running.is_none(), "the node runs");
        self.running = Some(self.sandbox.spawn(&["run"]));
    }

    /// Stops it (SIGTERM), checks it exited cleanly, and returns its event
    /// log as `eventhost events` prints it.
    fn stop_and_dump(&mut self) -> Vec<Value> {
        support::node::stop(self.running.take().expect("the node runs"));
        events(&self.sandbox)
    }

    /// Waits for the node to exit by itself; returns its status code and log.
    fn exits(&mut self) -> (Option<i32>, String) {
        let (status, _, log) = self.running.take().expect("the node runs").wait(PATIENCE);
        (status.code(), log)
    }
}

/// What an edge's `/health/ready` says of its stream.
fn upstream(http: &Http) -> (u16, Value) {
    let (status, body) = http.get("/health/ready");
    (status, body["checks"]["upstream"].clone())
}

/// The newest event a ledger node published: where its nats plugin is.
fn ledger_head(http: &Http) -> u64 {
    let (_, plugins) = http.get("/api/v1/plugins");
    let nats = &plugins[0];
    nats["last_delivered_seq"].as_u64().unwrap() + nats["lag"].as_u64().unwrap()
}

/// Waits until the edge's log holds event `head`.
fn wait_for_head(edge: &Http, head: u64) {
    wait_until("the edge has the ledger's newest event", || {
        upstream(edge).1["head"] == head
    });
}

/// Posts to the ledger until `stop`: a CREATE per block, and now and then
/// a double spend. Counts the posts in `posted`.
fn traffic(http: &Http, keys: &Keypair, stop: &AtomicBool, posted: &AtomicUsize) {
    let http = Http::new(&http.base);
    for i in 0.. {
        if stop.load(Ordering::Acquire) {
            return;
        }
        if i % 10 == 5 {
            double_spend(&http, keys, i);
        } else {
            post(&http, &create(keys, json!({"i": i})), "commit");
        }
        posted.fetch_add(1, Ordering::AcqRel);
    }
}

/// A WebSocket client of one stream of an edge, on a thread of its own:
/// it keeps every message, and when the connection drops (the edge was
/// killed) it connects again, to wherever the edge now listens, with the
/// last block it got as `last_seen_event`.
struct Watcher {
    seen: Arc<Mutex<Vec<Value>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<usize>>,
}

impl Watcher {
    fn start(address: Arc<Mutex<String>>, path: &'static str) -> Watcher {
        let seen = Arc::new(Mutex::new(Vec::<Value>::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (kept, stopped) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut sessions = 0;
            while !stopped.load(Ordering::Acquire) {
                let last = kept
                    .lock()
                    .unwrap()
                    .last()
                    .map_or("0".to_owned(), |m: &Value| {
                        m["hash"].as_str().unwrap().to_owned()
                    });
                let address = address.lock().unwrap().clone();
                let Ok(mut ws) = connect(&address, &format!("{path}?last_seen_event={last}"))
                else {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                };
                sessions += 1;
                while !stopped.load(Ordering::Acquire) {
                    match ws.read() {
                        Ok(Message::Text(text)) => kept
                            .lock()
                            .unwrap()
                            .push(serde_json::from_str(&text).expect("a JSON message")),
                        Ok(_) => {}
                        Err(tungstenite::Error::Io(e))
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) => {}
                        Err(_) => break,
                    }
                }
            }
            sessions
        });
        Watcher {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn seen(&self) -> Vec<Value> {
        self.seen.lock().unwrap().clone()
    }

    /// Stops the client; returns how many connections it made.
    fn finish(mut self) -> usize {
        self.stop.store(true, Ordering::Release);
        self.thread
            .take()
            .unwrap()
            .join()
            .expect("the client thread")
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

type Ws = tungstenite::WebSocket<TcpStream>;

/// A WebSocket client of `path`; reads time out every 100 ms.
fn connect(address: &str, path: &str) -> Result<Ws, String> {
    let tcp = TcpStream::connect(address).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let (ws, _) =
        tungstenite::client(format!("ws://{address}{path}"), tcp).map_err(|e| e.to_string())?;
    ws.get_ref()
        .set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| e.to_string())?;
    Ok(ws)
}

/// The next `n` data messages of `ws`.
fn take(ws: &mut Ws, n: usize) -> Vec<Value> {
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + PATIENCE;
    while got.len() < n {
        assert!(std::time::Instant::now() < deadline, "no message came");
        match ws.read() {
            Ok(Message::Text(text)) => got.push(serde_json::from_str(&text).unwrap()),
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("the stream broke: {e}"),
        }
    }
    got
}

/// The `/valid_blocks` messages the events of a log make.
fn valid_blocks(events: &[Value]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e["type"] == "BLOCK_VALID")
        .map(|e| {
            let ids: Vec<Value> = e["transactions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["id"].clone())
                .collect();
            json!({"height": e["height"], "hash": e["hash"], "transaction_ids": ids})
        })
        .collect()
}

/// The `/invalid_blocks` messages the events of a log make.
fn invalid_blocks(events: &[Value]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e["type"] == "BLOCK_INVALID")
        .map(|e| json!({"height": e["height"], "hash": e["hash"], "rejected": e["rejections"]}))
        .collect()
}

/// The URL of the server the ledger's nats plugin is connected to.
fn plugins_server(ledger: &mut Node) -> String {
    let log = ledger.log();
    let line = log
        .lines()
        .rfind(|l| l.contains("stream `") && l.contains(", at nats://"))
        .unwrap_or_else(|| panic!("the plugin logged no connection:\n{log}"));
    line.rsplit(", at ")
        .next()
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn two_edges_hold_the_ledgers_log_event_for_event_through_a_server_kill_and_an_edge_kill() {
    let mut cluster = Cluster::new();
    let urls = cluster.urls();
    let mut ledger = Node::start(&format!(
        "[ledger]\nmax_block_size = 2\n\n{}",
        nats_plugin(&urls, "replicas = 3")
    ));
    let http = ledger.http();
    ledger.wait_for_log("created stream `EVENTHOST`");
    let ledger_url = format!("ledger_url = {:?}", http.base);
    let mut edges: Vec<Node> = ["edge-a", "edge-b"]
        .iter()
        .map(|durable| {
            Node::start(&format!(
                "{}{WEBSOCKET}",
                source(&urls, durable, &ledger_url)
            ))
        })
        .collect();
    let addresses: Vec<Arc<Mutex<String>>> = edges
        .iter_mut()
        .map(|edge| Arc::new(Mutex::new(edge.streams())))
        .collect();
    // Two clients per edge, from the first event on, for the whole run.
    let watchers: Vec<(Watcher, Watcher)> = addresses
        .iter()
        .map(|a| {
            (
                Watcher::start(a.clone(), VALID_BLOCKS),
                Watcher::start(a.clone(), INVALID_BLOCKS),
            )
        })
        .collect();

    let alice = Keypair::from_seed([131; 32]);
    let (stop_posting, posted) = (AtomicBool::new(false), AtomicUsize::new(0));
    let at_least = |n: usize| wait_until("enough posts", || posted.load(Ordering::Acquire) >= n);
    std::thread::scope(|scope| {
        let _stop = SetOnDrop(&stop_posting);
        scope.spawn(|| traffic(&http, &alice, &stop_posting, &posted));
        at_least(30);
        // The server the ledger's plugin publishes to goes, mid-flow.
        let url = plugins_server(&mut ledger);
        let victim = cluster.servers.iter_mut().find(|s| s.url() == url).unwrap();
        victim.kill();
        ledger.wait_for_log("lost the connection to");
        at_least(posted.load(Ordering::Acquire) + 20);
        victim.start();
        victim.wait_healthy();
        at_least(posted.load(Ordering::Acquire) + 20);
        // Edge A is killed mid-flow, then started again on its store.
        edges[0].kill();
        at_least(posted.load(Ordering::Acquire) + 20);
        edges[0].restart();
        *addresses[0].lock().unwrap() = edges[0].streams();
        at_least(posted.load(Ordering::Acquire) + 20);
    });
    let last = create(&alice, json!({"last": true}));
    post(&http, &last, "commit");
    let head = ledger_head(&http);
    for edge in &mut edges {
        let edge_http = edge.http();
        wait_for_head(&edge_http, head);
        let (status, check) = upstream(&edge_http);
        assert_eq!(
            (status, &check["following"]),
            (200, &json!(true)),
            "{check}"
        );
    }
    let expected = ledger.stop_and_dump();
    assert_eq!(expected.last().unwrap()["seq"], head);
    let invalid = expected
        .iter()
        .filter(|e| e["type"] == "BLOCK_INVALID")
        .count();
    assert!(invalid >= 5, "only {invalid} BLOCK_INVALID events");

    // Every client got every event of its stream once, in order: edge A's
    // across its kill, resuming with the last block it had seen.
    for (i, (valid, invalid)) in watchers.into_iter().enumerate() {
        let (want_valid, want_invalid) = (valid_blocks(&expected), invalid_blocks(&expected));
        wait_until("the clients have every block", || {
            valid.seen().len() >= want_valid.len() && invalid.seen().len() >= want_invalid.len()
        });
        assert!(valid.seen() == want_valid, "edge {i}: valid_blocks differ");
        assert!(
            invalid.seen() == want_invalid,
            "edge {i}: invalid_blocks differ"
        );
        let sessions = valid.finish();
        assert_eq!(sessions, if i == 0 { 2 } else { 1 }, "edge {i}'s sessions");
        invalid.finish();
    }
    // Each edge's log is the ledger's, event for event: sequence numbers,
    // heights, hashes, timestamps, transactions.
    for (i, edge) in edges.iter_mut().enumerate() {
        let log = edge.log();
        let got = edge.stop_and_dump();
        assert_eq!(got.len(), expected.len(), "edge {i}: events");
        assert!(got == expected, "edge {i}'s log is not the ledger's");
        assert!(
            count(&log, "edge: following stream `EVENTHOST`") >= 1,
            "{log}"
        );
    }
    eprintln!(
        "{} events ({invalid} BLOCK_INVALID) on the ledger and on both edges",
        expected.len()
    );
}

#[test]
fn a_client_reads_half_the_stream_from_one_edge_and_the_rest_from_the_other() {
    let server = nats::single(&Auth::None);
    let urls = [server.url()];
    let mut ledger = Node::start(&format!(
        "[ledger]\nmax_block_size = 1\n\n{}",
        nats_plugin(&urls, "")
    ));
    let http = ledger.http();
    let ledger_url = format!("ledger_url = {:?}", http.base);
    let mut a = Node::start(&format!(
        "{}{WEBSOCKET}",
        source(&urls, "edge-a", &ledger_url)
    ));
    let alice = Keypair::from_seed([141; 32]);
    let txs: Vec<Value> = (0..150).map(|i| create(&alice, json!({"i": i}))).collect();
    post_concurrently(&http, &txs, 4);
    // Half were posted in async mode: wait for their blocks.
    wait_until("every transaction is committed", || {
        ledger_head(&http) == 150
    });
    let head = 150;
    // Edge B starts once they are all in the stream: it catches up from
    // the stream's first event, with progress in its log. Edge C starts
    // at stream message 100.
    let mut b = Node::start(&format!(
        "{}{WEBSOCKET}",
        source(&urls, "edge-b", &ledger_url)
    ));
    let mut c = Node::start(&source(&urls, "edge-c", "start_sequence = 100"));
    let (a_http, b_http) = (a.http(), b.http());
    wait_for_head(&a_http, head);
    wait_for_head(&b_http, head);
    wait_for_head(&c.http(), head);
    b.wait_for_log("edge: caught up on");
    let caught_up = b.log();
    assert!(
        caught_up.contains(&format!("edge: caught up on {head} events in ")),
        "{caught_up}"
    );

    let (a_streams, b_streams) = (a.streams(), b.streams());
    let mut first = connect(&a_streams, &format!("{VALID_BLOCKS}?last_seen_event=0")).unwrap();
    let half = take(&mut first, 75);
    drop(first);
    let last_seen = half.last().unwrap()["hash"].as_str().unwrap().to_owned();
    let mut second = connect(
        &b_streams,
        &format!("{VALID_BLOCKS}?last_seen_event={last_seen}"),
    )
    .unwrap();
    let mut rest = take(&mut second, head as usize - 75);
    // Then live, on the same connection.
    let more: Vec<Value> = (0..5).map(|i| create(&alice, json!({"more": i}))).collect();
    for tx in &more {
        post(&http, tx, "commit");
    }
    rest.extend(take(&mut second, 5));
    drop(second);

    // The edge is no ledger: it names the ledger node instead.
    let elsewhere = format!(
        "this is an edge node: it serves the ledger node's event streams, not its transactions, blocks or other tables; send this request to the ledger node at {}",
        http.base
    );
    let (status, body) = b_http.post("/api/v1/transactions?mode=commit", &txs[0].to_string());
    assert_eq!(
        (status, body["message"].as_str()),
        (503, Some(elsewhere.as_str()))
    );
    for path in [
        format!("/api/v1/transactions/{}", id(&txs[0])),
        "/api/v1/blocks/1".to_owned(),
        format!("/api/v1/outputs?public_key={}", alice.public_key()),
        "/api/v1/assets?search=x".to_owned(),
    ] {
        let (status, body) = b_http.get(&path);
        assert_eq!(
            (status, body["message"].as_str()),
            (503, Some(elsewhere.as_str())),
            "{path}"
        );
    }
    let (status, root) = b_http.get("/");
    assert_eq!(status, 200);
    assert_eq!(root["role"], "edge");
    let v1 = &root["api"]["v1"];
    assert_eq!(v1["ledger"], json!(http.base));
    let port = b_streams.rsplit(':').next().unwrap();
    assert_eq!(
        v1["streams"],
        format!("ws://localhost:{port}/api/v1/streams/valid_transactions")
    );
    assert!(v1.get("transactions").is_none(), "{root}");
    // The edge knows the stream's newest event (it looks every second).
    wait_until("the edge knows the stream's newest event", || {
        upstream(&b_http).1["stream_last"] == head + 5
    });
    let (status, check) = upstream(&b_http);
    assert_eq!(status, 200, "{check}");
    assert_eq!(
        (&check["following"], &check["behind"]),
        (&json!(true), &json!(0)),
        "{check}"
    );

    wait_for_head(&c.http(), head + 5);
    let expected = ledger.stop_and_dump();
    let mut union = half;
    union.extend(rest);
    assert!(
        union == valid_blocks(&expected),
        "the two sessions are not the stream, once, in order"
    );
    for edge in [&mut a, &mut b] {
        assert!(edge.stop_and_dump() == expected);
    }
    let started_late = c.stop_and_dump();
    assert_eq!(started_late[0]["seq"], 100);
    assert!(started_late[..] == expected[99..]);
    // `eventhost verify` knows an edge's store: events, no blocks.
    for edge in [&a, &b, &c] {
        let verified = edge.sandbox.run(&["verify"]);
        assert_eq!(
            verified.code(),
            Some(0),
            "{}{}",
            verified.stdout,
            verified.stderr
        );
        assert!(
            verified.stdout.contains("no fault found"),
            "{}",
            verified.stdout
        );
    }
}

#[test]
fn an_edge_whose_consumer_ran_ahead_of_its_log_places_it_right_after_its_newest_event() {
    let server = nats::single(&Auth::None);
    let urls = [server.url()];
    let client = Client::new(&server.url(), &Auth::None);
    let mut ledger = Node::start(&nats_plugin(&urls, ""));
    let http = ledger.http();
    let alice = Keypair::from_seed([171; 32]);
    let commit = |from: usize, n: usize| {
        for i in from..from + n {
            post(&http, &create(&alice, json!({"i": i})), "commit");
        }
    };
    commit(0, 5);
    let mut edge = Node::start(&source(&urls, "edge", ""));
    let edge_http = edge.http();
    wait_for_head(&edge_http, ledger_head(&http));

    // While the edge follows, another client pulls from its consumer and
    // never acknowledges: those messages went to "a connection that is
    // gone". The edge sees the events after them first, and places its
    // consumer after its newest event again.
    let stolen = std::thread::scope(|scope| {
        let thief = scope
            .spawn(|| client.pull_unacknowledged("EVENTHOST", "edge", 3, Duration::from_secs(5)));
        std::thread::sleep(Duration::from_millis(300));
        commit(5, 20);
        thief.join().unwrap()
    });
    commit(25, 2);
    wait_for_head(&edge_http, ledger_head(&http));
    let log = edge.log();
    if !stolen.is_empty() {
        assert!(
            log.contains("placing the consumer after event "),
            "{stolen:?}:\n{log}"
        );
        assert!(log.contains("creating it again"), "{log}");
    }

    // Stopped, the edge's consumer delivers to someone else: the restarted
    // edge finds it ahead of its log and places it again.
    support::node::stop(edge.running.take().unwrap());
    commit(27, 10);
    let stolen_while_down =
        client.pull_unacknowledged("EVENTHOST", "edge", 4, Duration::from_secs(2));
    assert_eq!(stolen_while_down.len(), 4);
    edge.restart();
    let edge_http = edge.http();
    commit(37, 3);
    wait_for_head(&edge_http, ledger_head(&http));
    let log = edge.log();
    assert!(
        log.contains("and this edge committed up to")
            && log.contains("messages went to a connection that is gone; creating it again"),
        "{log}"
    );
    let expected = ledger.stop_and_dump();
    assert_eq!(expected.len(), 40);
    assert!(
        edge.stop_and_dump() == expected,
        "the edge's log is not the ledger's"
    );
    eprintln!(
        "messages taken from the running edge's consumer: {stolen:?}; from the stopped one's: {stolen_while_down:?}"
    );
}

#[test]
fn unreachable_servers_wrong_credentials_and_a_missing_stream_are_retried_and_nothing_is_lost() {
    let secret = "edge-pw-7a1c";
    let auth = Auth::UserPassword("edge".into(), secret.into());
    let server = nats::single(&auth);
    let urls = [server.url()];
    let login =
        |password: &str| format!("[source.auth]\nuser = \"edge\"\npassword_env = {password:?}\n");
    let env = [
        ("RIGHT_PASSWORD", secret),
        ("WRONG_PASSWORD", "not-it-3f9e"),
    ];
    let mut nowhere = Node::start(&source(&["nats://127.0.0.1:1".to_owned()], "e1", ""));
    let mut refused = Node::start_with_env(&source(&urls, "e2", &login("WRONG_PASSWORD")), &env);
    // The stream does not exist yet: the ledger below creates it.
    let mut early = Node::start_with_env(
        &source(
            &urls,
            "e3",
            &format!(
                "stream = \"LATER\"\nsubject_prefix = \"later\"\n{}",
                login("RIGHT_PASSWORD")
            ),
        ),
        &env,
    );
    let retries = |node: &mut Node, reason: &str| {
        node.running().wait_for_log("retrying in 400 ms", PATIENCE);
        let log = node.log();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("edge: cannot follow stream"))
            .collect();
        assert!(lines.len() >= 3, "{log}");
        assert!(
            lines[0].ends_with("retrying in 100 ms") && lines[1].ends_with("retrying in 200 ms"),
            "{log}"
        );
        assert!(
            lines.iter().all(|l| l.contains(reason)),
            "{reason:?} not in every line:\n{log}"
        );
        log
    };
    retries(
        &mut nowhere,
        "nats://127.0.0.1:1: IO error: Connection refused",
    );
    let log = retries(&mut refused, "authorization violation");
    assert!(log.contains(&format!("{}: ", server.url())), "{log}");
    retries(&mut early, "stream `LATER` does not exist (yet)");
    for node in [&mut nowhere, &mut refused, &mut early] {
        let http = node.http();
        let (status, check) = upstream(&http);
        assert_eq!(status, 503, "{check}");
        assert!(
            check["problem"]
                .as_str()
                .unwrap()
                .starts_with("not following stream `"),
            "{check}"
        );
        // Meanwhile the edge serves, and points at the ledger it does not know.
        let (status, body) = http.post("/api/v1/transactions", "{}");
        assert_eq!(status, 503);
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .ends_with("set [source] ledger_url)"),
            "{body}"
        );
        let (_, health) = http.get("/health/ready");
        assert!(!health.to_string().contains("not-it-3f9e"), "{health}");
    }

    // The ledger comes; the waiting edge takes every event it publishes.
    let mut ledger = Node::start_with_env(
        &format!(
            "[ledger]\nmax_block_size = 2\n\n{}",
            nats_plugin(
                &urls,
                "stream = \"LATER\"\nsubject_prefix = \"later\"\n[plugins.config.auth]\nuser = \"edge\"\npassword_env = \"RIGHT_PASSWORD\""
            )
        ),
        &env,
    );
    let http = ledger.http();
    let alice = Keypair::from_seed([151; 32]);
    for i in 0..20 {
        post(&http, &create(&alice, json!({"i": i})), "commit");
    }
    double_spend(&http, &alice, 99);
    post(&http, &create(&alice, json!({"last": true})), "commit");
    let head = ledger_head(&http);
    wait_for_head(&early.http(), head);
    let expected = ledger.stop_and_dump();
    assert!(
        early.stop_and_dump() == expected,
        "the late edge's log is not the ledger's"
    );
    for node in [&mut nowhere, &mut refused] {
        let log = node.log();
        assert!(node.stop_and_dump().is_empty());
        assert!(
            !log.contains(secret) && !log.contains("not-it-3f9e"),
            "a password was logged:\n{log}"
        );
    }
}

#[test]
fn a_stream_an_edge_cannot_follow_stops_it_with_the_reason() {
    let server = nats::single(&Auth::None);
    let urls = [server.url()];
    let client = Client::new(&server.url(), &Auth::None);
    client.create_stream("OTHER", &["other.>"], 1);
    // One ledger, three streams: the block format with every event, the
    // transaction format, and the block format without BLOCK_INVALID.
    let mut ledger = Node::start(&format!(
        "[ledger]\nmax_block_size = 2\n\n{}{}{}",
        nats_plugin(&urls, "stream = \"BLOCKS\"\nsubject_prefix = \"blocks\""),
        nats_plugin(
            &urls,
            "stream = \"TXS\"\nsubject_prefix = \"txs\"\nformat = \"transaction\""
        )
        .replace("name = \"nats\"", "name = \"nats-txs\"\nlibrary = \"nats\""),
        nats_plugin(&urls, "stream = \"VALID\"\nsubject_prefix = \"valid\"").replace(
            "name = \"nats\"",
            "name = \"nats-valid\"\nlibrary = \"nats\"\nevent_types = \"BLOCK_VALID\"",
        )
    ));
    let http = ledger.http();
    let alice = Keypair::from_seed([161; 32]);
    post(&http, &create(&alice, json!({"first": true})), "commit");
    double_spend(&http, &alice, 1);
    post(&http, &create(&alice, json!({"after": true})), "commit");
    let head = ledger_head(&http);
    wait_until("every stream has the last block", || {
        ["BLOCKS", "VALID", "TXS"].iter().all(|s| {
            client
                .last(s)
                .is_some_and(|m| m.headers["Eventhost-Seq"] == head.to_string())
        })
    });

    let cases = [
        (
            "stream = \"OTHER\"",
            "stream `OTHER` takes the subjects [\"other.>\"], not [\"eventhost.block.valid\", \"eventhost.block.invalid\"]",
        ),
        (
            "stream = \"TXS\"\nsubject_prefix = \"txs\"",
            "stream `TXS` holds messages of the `transaction` format (message ",
        ),
        (
            "stream = \"VALID\"\nsubject_prefix = \"valid\"",
            "are not in the stream (removed by its max_age or max_bytes before this edge read them, or never published",
        ),
    ];
    let mut edges: Vec<Node> = cases
        .iter()
        .enumerate()
        .map(|(i, (table, _))| Node::start(&source(&urls, &format!("e{i}"), table)))
        .collect();
    // The good stream, for comparison: the edge follows it to the end.
    let mut good = Node::start(&source(
        &urls,
        "good",
        "stream = \"BLOCKS\"\nsubject_prefix = \"blocks\"",
    ));
    for (edge, (_, reason)) in edges.iter_mut().zip(cases) {
        let (code, log) = edge.exits();
        assert_eq!(code, Some(1), "{log}");
        let line = log
            .lines()
            .find(|l| l.contains("ERROR") && l.contains("edge: cannot follow"))
            .unwrap_or_else(|| panic!("no error line:\n{log}"));
        assert!(line.contains(reason), "{reason:?} not in:\n{log}");
        assert!(
            log.contains("stopping the node: it cannot follow its stream"),
            "{log}"
        );
        assert!(
            log.contains("the edge stopped following its stream: "),
            "{log}"
        );
        assert_eq!(count(&log, "edge: cannot follow"), 1, "retried:\n{log}");
    }
    wait_for_head(&good.http(), head);
    let expected = ledger.stop_and_dump();
    assert!(good.stop_and_dump() == expected);
    // The gap's edge kept what came before the gap, and nothing after it.
    let first_invalid = expected
        .iter()
        .position(|e| e["type"] == "BLOCK_INVALID")
        .unwrap();
    let gapped = events(&edges[2].sandbox);
    assert!(gapped[..] == expected[..first_invalid], "{gapped:?}");
    let log = std::fs::read_to_string(edges[2].sandbox.path("eventhost.log")).unwrap();
    let missing = expected[first_invalid]["seq"].as_u64().unwrap();
    assert!(
        log.contains(&format!(
            "events {missing} to {missing} are not in the stream"
        )),
        "{log}"
    );
}

#[test]
fn check_config_names_a_wrong_source_key_and_shows_the_source_without_its_secret() {
    let s = Sandbox::new();
    s.config("[source]\nkind = \"nats\"\ndurable = \"e\"\nbatch_size = 5\n");
    let out = s.run(&["check-config"]);
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("config.toml:"), "{}", out.stderr);
    assert!(
        out.stderr.contains("unknown field `batch_size`"),
        "{}",
        out.stderr
    );
    s.config("[source]\nkind = \"kafka\"\n");
    let out = s.run(&["check-config"]);
    assert_eq!(out.code(), Some(2));
    assert!(
        out.stderr
            .contains("unknown variant `kafka`, expected `ledger` or `nats`"),
        "{}",
        out.stderr
    );
    s.config("[source]\nkind = \"nats\"\n");
    let out = s.run(&["check-config"]);
    assert!(
        out.stderr.contains("[source]: `durable` is missing"),
        "{}",
        out.stderr
    );

    // The credentials come from the environment, when they are needed.
    s.config("[source]\nkind = \"nats\"\ndurable = \"e\"\n[source.auth]\ntoken_env = \"TEST_EDGE_TOKEN\"\n");
    let out = s.run(&["check-config"]);
    assert_eq!(out.code(), Some(2), "{}", out.stdout);
    assert!(
        out.stdout.contains("[source.auth]: `token_env` names the environment variable TEST_EDGE_TOKEN, which is not set"),
        "{}",
        out.stdout
    );
    let out = s
        .eventhost(&["check-config"])
        .env("TEST_EDGE_TOKEN", "tok-5e1f-secret")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains(
            "source: stream `EVENTHOST` on nats://127.0.0.1:4222 (consumer `e`), as a token"
        ),
        "{stdout}"
    );
    assert!(!stdout.contains("tok-5e1f-secret"));
    // Commands that do not follow the stream need no secret.
    assert_eq!(s.run(&["plugins"]).code(), Some(0));
}
