//! The HTTP API's limits end to end (issue 14, items 2, 3, 7 and 9): the
//! real eventhost binary, attacked over loopback by raw TCP clients that do
//! what the attackers did, at a bounded scale (a few hundred
//! connections, a few seconds), with limits configured low so that each
//! one is hit quickly.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use eventhost::sources::ledger::builder::{self, Keypair};
use serde_json::json;
use support::{Http, Running, Sandbox, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A node with no plugins, `[api]` settings `api` added to its table.
struct Node {
    host: Running,
    http: Http,
    /// host:port of its HTTP API.
    addr: String,
    _sandbox: Sandbox,
}

fn config(s: &Sandbox, api: &str) {
    s.write(
        "config.toml",
        &format!(
            "[host]\nplugin_dirs = [{:?}]\nshutdown_timeout_ms = 500\nstartup_timeout_ms = 5000\n\n[api]\nbind = \"127.0.0.1:0\"\n{api}\n\n[admin]\nbind = \"127.0.0.1:0\"\n",
            support::build_dir().display().to_string()
        ),
    );
}

fn node(api: &str) -> Node {
    let sandbox = Sandbox::new();
    config(&sandbox, api);
    let mut host = sandbox.spawn(&["run"]);
    let http = host.http();
    let addr = http.base.trim_start_matches("http://").to_owned();
    Node {
        host,
        http,
        addr,
        _sandbox: sandbox,
    }
}

impl Node {
    /// The node's open file descriptors.
    fn descriptors(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.host.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// The value of a counter or gauge sample whose line starts with `series`.
    fn metric(&self, series: &str) -> f64 {
        let (status, text) = self.http.get("/metrics");
        assert_eq!(status, 200);
        let text = text.as_str().unwrap_or_default().to_owned();
        text.lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0.0)
    }

    fn limit_hits(&self, limit: &str) -> f64 {
        self.metric(&format!(
            "eventhost_http_limit_hits_total{{listener=\"api\",limit=\"{limit}\"}}"
        ))
    }

    /// GET from a thread, as a client that is not part of the attack.
    async fn get(&self, path: &str) -> (u16, Value) {
        let http = Http::new(&self.http.base);
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || http.get(&path))
            .await
            .unwrap()
    }
}

/// One HTTP response read off a raw connection.
#[derive(Debug)]
struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

async fn connect(addr: &str) -> TcpStream {
    TcpStream::connect(addr).await.expect("connect to the node")
}

/// Reads one response (its body by `Content-Length`); `None` if the
/// connection closed or failed first, or nothing came within `patience`.
async fn read_reply(stream: &mut TcpStream, patience: Duration) -> Option<Reply> {
    tokio::time::timeout(patience, async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let status = head.split_whitespace().nth(1)?.parse().ok()?;
        let mut reply = Reply {
            status,
            head,
            body: String::new(),
        };
        let length: usize = reply
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = buf[end..].to_vec();
        while body.len() < length {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => body.extend_from_slice(&chunk[..n]),
            }
        }
        reply.body = String::from_utf8_lossy(&body).into_owned();
        Some(reply)
    })
    .await
    .ok()
    .flatten()
}

/// Sends `request` on a new connection and reads the reply.
async fn exchange(addr: &str, request: &str) -> Reply {
    let mut stream = connect(addr).await;
    stream.write_all(request.as_bytes()).await.unwrap();
    read_reply(&mut stream, Duration::from_secs(20))
        .await
        .unwrap_or_else(|| panic!("no reply to {request:?}"))
}

/// Whether the server has closed `stream` (end of stream or reset),
/// without waiting.
fn is_closed(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match stream.try_read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// Waits until the server closes `stream`, up to `patience`; how long it took.
async fn closed_within(stream: &mut TcpStream, patience: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut sink = [0u8; 4096];
    tokio::time::timeout(patience, async {
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_headers_are_closed_at_the_header_timeout_while_others_are_served() {
    let node = node("header_read_timeout_ms = 1000\nidle_timeout_ms = 60000\n");
    const SLOW: usize = 200;
    let started = Instant::now();
    let mut slow = Vec::new();
    for _ in 0..SLOW {
        let mut stream = connect(&node.addr).await;
        stream
            .write_all(b"GET /api/v1 HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        slow.push(stream);
    }
    // Each trickles one header every 200 ms for up to 5 s, and notes when
    // the server closed it.
    let trickles: Vec<_> = slow
        .into_iter()
        .map(|mut stream| {
            tokio::spawn(async move {
                for i in 0..25 {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    if is_closed(&stream) {
                        return Some(started.elapsed());
                    }
                    let header = format!("X-Trickle-{i}: 1\r\n");
                    if stream.write_all(header.as_bytes()).await.is_err() {
                        return Some(started.elapsed());
                    }
                }
                None
            })
        })
        .collect();
    // Meanwhile another client is answered.
    for _ in 0..3 {
        assert_eq!(node.get("/api/v1").await.0, 200);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for trickle in trickles {
        let closed = trickle.await.unwrap();
        let closed = closed.expect("a trickling connection stayed open for 5 s");
        assert!(
            closed >= Duration::from_millis(900),
            "closed after {closed:?}, before the 1 s header timeout"
        );
    }
    assert_eq!(node.get("/api/v1").await.0, 200);
    assert_eq!(node.limit_hits("header_read_timeout_ms"), SLOW as f64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_cap_the_connection_waiting_longest_makes_room() {
    const CAP: usize = 50;
    let node = node(&format!(
        "max_connections = {CAP}\nheader_read_timeout_ms = 60000\n"
    ));
    let before = node.descriptors();
    const SLOW: usize = 150;
    let mut slow = Vec::new();
    for _ in 0..SLOW {
        let mut stream = connect(&node.addr).await;
        stream.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        slow.push(stream);
        assert!(
            node.descriptors() <= before + CAP + 2,
            "the node holds {} descriptors, {before} before and a cap of {CAP}",
            node.descriptors()
        );
    }
    // A prompt client is answered now, not after the slow ones' 60 s.
    let (status, _) = node.get("/api/v1").await;
    assert_eq!(status, 200);
    // Every connection beyond the cap closed one that waited longer.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut open = SLOW;
    while Instant::now() < deadline {
        open = slow.iter().filter(|s| !is_closed(s)).count();
        if open <= CAP {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(open <= CAP, "{open} slow connections still open");
    assert!(
        slow[..CAP].iter().all(is_closed),
        "one of the oldest connections is still open while newer ones were closed"
    );
    assert!(node.limit_hits("max_connections") >= (SLOW - CAP) as f64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_connection_is_busy_the_next_waits_for_one_to_end() {
    const CAP: usize = 10;
    let node = node(&format!(
        "max_connections = {CAP}\nbody_read_timeout_ms = 2000\n"
    ));
    // Busy: each is reading a body that never completes.
    let mut busy = Vec::new();
    for _ in 0..CAP {
        let mut stream = connect(&node.addr).await;
        stream
            .write_all(b"POST /api/v1/transactions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"id\":")
            .await
            .unwrap();
        busy.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let asked = Instant::now();
    let (status, _) = node.get("/api/v1").await;
    let waited = asked.elapsed();
    assert_eq!(status, 200);
    for mut stream in busy {
        let reply = read_reply(&mut stream, Duration::from_secs(10))
            .await
            .expect("a slow body is answered");
        assert_eq!(reply.status, 408, "{reply:?}");
        assert!(reply.body.contains("body_read_timeout_ms"), "{reply:?}");
    }
    // It was held until a slow body's deadline freed a connection.
    assert!(
        waited >= Duration::from_millis(1000),
        "answered after {waited:?}, while every connection was busy"
    );
    assert!(node.limit_hits("max_connections") >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_the_node_within_the_shutdown_deadline_whatever_the_clients_do() {
    let node = node(
        "shutdown_timeout_ms = 1000\nheader_read_timeout_ms = 60000\nbody_read_timeout_ms = 60000\nidle_timeout_ms = 60000\n",
    );
    let mut clients = Vec::new();
    for i in 0..15 {
        let mut stream = connect(&node.addr).await;
        let start: &[u8] = match i % 3 {
            // Trickling a head.
            0 => b"GET / HTTP/1.1\r\nHost: x\r\n",
            // Stalled in a body.
            1 => b"POST /api/v1/transactions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{",
            // Idle after a request.
            _ => b"GET /api/v1 HTTP/1.1\r\nHost: x\r\n\r\n",
        };
        stream.write_all(start).await.unwrap();
        clients.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let Node {
        host,
        _sandbox: sandbox,
        ..
    } = node;
    host.signal(libc::SIGTERM);
    let signalled = Instant::now();
    let (status, _, log) = tokio::task::spawn_blocking(move || host.wait(Duration::from_secs(30)))
        .await
        .unwrap();
    let took = signalled.elapsed();
    assert!(status.success(), "{status}:\n{log}");
    // The clients' own timeouts are 60 s; the deadline is 1 s, and the
    // ledger and the (absent) plugins stop in well under the rest.
    assert!(
        took < Duration::from_secs(10),
        "stopping took {took:?}:\n{log}"
    );
    assert!(log.contains("still busy"), "{log}");
    drop((clients, sandbox));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_bodies_hold_no_more_memory_than_the_budget() {
    const MIB: usize = 1 << 20;
    const BUDGET: usize = 16 * MIB;
    const CLIENTS: usize = 200;
    let node = node(&format!(
        "max_body_bytes = {MIB}\nbody_memory_bytes = {BUDGET}\nbody_read_timeout_ms = 4000\n"
    ));
    let rss_before = node.host.rss_kib().unwrap();
    // Each sends all but the last byte of a 1 MiB body, then waits.
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let addr = node.addr.clone();
            tokio::spawn(async move {
                let mut stream = connect(&addr).await;
                let head = format!(
                    "POST /api/v1/transactions HTTP/1.1\r\nHost: x\r\nContent-Length: {MIB}\r\n\r\n"
                );
                stream.write_all(head.as_bytes()).await.unwrap();
                // Bodies waiting for memory are not read: the write may
                // block until the reply comes and the node closes.
                let body = vec![b' '; MIB - 1];
                let (mut reader, mut writer) = stream.into_split();
                let writing = tokio::spawn(async move {
                    let _ = writer.write_all(&body).await;
                    writer
                });
                let mut response = Vec::new();
                let _ = tokio::time::timeout(
                    Duration::from_secs(30),
                    reader.read_to_end(&mut response),
                )
                .await;
                writing.abort();
                let text = String::from_utf8_lossy(&response).into_owned();
                text.split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse::<u16>().ok())
                    .unwrap_or(0)
            })
        })
        .collect();
    let mut peak = rss_before;
    while !clients.iter().all(|c| c.is_finished()) {
        peak = peak.max(node.host.rss_kib().unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut statuses = Vec::new();
    for client in clients {
        statuses.push(client.await.unwrap());
    }
    let grew_mib = (peak.saturating_sub(rss_before)) as f64 / 1024.0;
    eprintln!(
        "RSS: {} MiB before, {} MiB at the peak, +{grew_mib:.1} MiB for {CLIENTS} stalled 1 MiB bodies (budget {} MiB)",
        rss_before / 1024,
        peak / 1024,
        BUDGET / MIB
    );
    let timed_out = statuses.iter().filter(|s| **s == 408).count();
    let no_memory = statuses.iter().filter(|s| **s == 503).count();
    // Those that got memory timed out reading (408); those still waiting
    // for it at their deadline got 503. How many of each depends on how
    // far apart their heads arrived.
    assert_eq!(timed_out + no_memory, CLIENTS, "{statuses:?}");
    // Without the budget this would be ~200 MiB; the budget plus each
    // connection's read buffer and task is well under 64.
    assert!(grew_mib < 64.0, "RSS grew by {grew_mib:.1} MiB");
    assert_eq!(
        node.limit_hits("body_read_timeout_ms") + node.limit_hits("body_memory_bytes"),
        CLIENTS as f64
    );
    // The node still takes a transaction.
    let alice = Keypair::from_seed([3; 32]);
    let tx = builder::create(
        &alice,
        &[(alice.public_key(), 1)],
        json!({"after": "the attack"}),
        Value::Null,
    );
    let http = Http::new(&node.http.base);
    let posted = tokio::task::spawn_blocking(move || {
        http.post("/api/v1/transactions?mode=commit", &tx.to_string())
    })
    .await
    .unwrap();
    assert_eq!(posted.0, 202, "{posted:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_requests_are_refused_before_they_are_read() {
    let node =
        node("max_body_bytes = 4096\nmax_header_bytes = 8192\nbody_read_timeout_ms = 60000\n");
    // Declared too large: 413 at once, not after the 60 s body deadline.
    let mut stream = connect(&node.addr).await;
    stream
        .write_all(b"POST /api/v1/transactions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 99999999999\r\n\r\n")
        .await
        .unwrap();
    let reply = read_reply(&mut stream, Duration::from_secs(20))
        .await
        .expect("a reply");
    assert_eq!(reply.status, 413, "{reply:?}");
    let body: Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(body["status"], 413);
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("99999999999") && message.contains("[api] max_body_bytes"),
        "{message}"
    );
    assert_eq!(reply.header("connection"), Some("close"));
    assert!(
        closed_within(&mut stream, Duration::from_secs(5))
            .await
            .is_some()
    );

    // Chunked, with no length declared: refused once past the limit.
    let mut stream = connect(&node.addr).await;
    stream
        .write_all(
            b"POST /api/v1/transactions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        .await
        .unwrap();
    let chunk = format!("800\r\n{}\r\n", " ".repeat(0x800));
    for _ in 0..3 {
        let _ = stream.write_all(chunk.as_bytes()).await;
    }
    let reply = read_reply(&mut stream, Duration::from_secs(20))
        .await
        .expect("a reply");
    assert_eq!(reply.status, 413, "{reply:?}");
    assert!(reply.body.contains("larger than"), "{reply:?}");

    // A head larger than max_header_bytes.
    let long = format!(
        "GET /api/v1 HTTP/1.1\r\nHost: x\r\nX-Long: {}\r\n\r\n",
        "a".repeat(10_000)
    );
    assert_eq!(exchange(&node.addr, &long).await.status, 431);
    assert_eq!(node.limit_hits("max_body_bytes"), 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_and_clients_that_do_not_read_are_closed_after_the_idle_timeout() {
    let node = node("idle_timeout_ms = 1000\n");
    // Kept alive after a response, then idle.
    let mut stream = connect(&node.addr).await;
    stream
        .write_all(b"GET /api/v1 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let reply = read_reply(&mut stream, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    let idle = closed_within(&mut stream, Duration::from_secs(10))
        .await
        .expect("an idle connection stayed open");
    assert!(idle >= Duration::from_millis(900), "closed after {idle:?}");

    // Connected, never sends anything.
    let mut silent = connect(&node.addr).await;
    assert!(
        closed_within(&mut silent, Duration::from_secs(10))
            .await
            .is_some()
    );

    // Pipelines requests but never reads the responses: once the socket is
    // full, the node's writes wait, and the connection is closed.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let addr: std::net::SocketAddr = node.addr.parse().unwrap();
    socket.connect(&addr.into()).unwrap();
    let std_stream: std::net::TcpStream = socket.into();
    std_stream.set_nonblocking(true).unwrap();
    let mut greedy = TcpStream::from_std(std_stream).unwrap();
    // 1.7 MB of requests whose 15 MB of answers no socket buffer holds.
    const SENT: usize = 50_000;
    let requests = "GET /api/v1 HTTP/1.1\r\nHost: x\r\n\r\n".repeat(SENT);
    let (mut reader, mut writer) = greedy.split();
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        writer.write_all(requests.as_bytes()),
    )
    .await;
    // The node fills the socket buffers (megabytes) at its own pace, then
    // waits to write for the idle timeout: watch for the close in its
    // metrics (two closes above), not on the socket, which is full.
    let deadline = Instant::now() + Duration::from_secs(30);
    while node.limit_hits("idle_timeout_ms") < 3.0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Now read what was sent before the close.
    let mut all = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), reader.read_to_end(&mut all)).await;
    assert!(read.is_ok(), "the connection stayed open");
    let answered = String::from_utf8_lossy(&all)
        .matches("HTTP/1.1 200")
        .count();
    assert!(answered < SENT, "all {SENT} were answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_labels_come_from_closed_sets_whatever_clients_send() {
    let node = node("");
    let (_, before) = node.http.get("/metrics");
    let before = before.as_str().unwrap().len();
    // Random methods (up to 1,000 characters) and paths, a few
    // connections each sending one request after another.
    let workers: Vec<_> = (0..4u64)
        .map(|w| {
            let addr = node.addr.clone();
            tokio::spawn(async move {
                let mut rng = w.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
                let mut next = move || {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng
                };
                let mut stream = connect(&addr).await;
                for i in 0..500 {
                    let len = 1 + (next() % 1000) as usize;
                    let method: String = (0..len)
                        .map(|_| (b'A' + (next() % 26) as u8) as char)
                        .collect();
                    let path = match i % 3 {
                        0 => format!("/{:x}/{:x}", next(), next()),
                        1 => format!("/api/v1/transactions/{:x}", next()),
                        _ => format!("/api/v1/blocks/{}", next() % 1000),
                    };
                    let request = format!("{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n");
                    stream.write_all(request.as_bytes()).await.unwrap();
                    let reply = read_reply(&mut stream, Duration::from_secs(20))
                        .await
                        .expect("a reply");
                    assert!(
                        [404, 405].contains(&reply.status),
                        "{method} {path}: {reply:?}"
                    );
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    let (_, text) = node.http.get("/metrics");
    let text = text.as_str().unwrap().to_owned();
    eprintln!(
        "/metrics: {before} bytes before 2,000 requests with random methods and paths, {} after",
        text.len()
    );
    assert!(
        text.len() < before + 16 * 1024,
        "the scrape grew from {before} to {} bytes",
        text.len()
    );
    let label_values = |label: &str| -> BTreeSet<String> {
        let key = format!("{label}=\"");
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .flat_map(|l| l.match_indices(&key).map(|(i, _)| &l[i + key.len()..]))
            .filter_map(|rest| rest.split('"').next())
            .map(str::to_owned)
            .collect()
    };
    let methods = label_values("method");
    let known: BTreeSet<String> = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "other",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert!(methods.is_subset(&known), "{methods:?}");
    assert!(methods.contains("other"), "{methods:?}");
    let routes = label_values("route");
    let templates: BTreeSet<String> = [
        "/",
        "/api/v1",
        "/api/v1/transactions",
        "/api/v1/transactions/{id}",
        "/api/v1/outputs",
        "/api/v1/blocks",
        "/api/v1/blocks/{height}",
        "/api/v1/assets",
        "/api/v1/assets/{cid}",
        "/api/v1/metadata",
        "/api/v1/validators",
        "/api/v1/plugins",
        "/health",
        "/health/ready",
        "/metrics",
        "unmatched",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert!(routes.is_subset(&templates), "{routes:?}");
    assert!(routes.contains("unmatched"), "{routes:?}");
    assert!(routes.contains("/api/v1/transactions/{id}"), "{routes:?}");
    assert!(routes.contains("/api/v1/blocks/{height}"), "{routes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_parameters_are_refused_and_cors_is_on_the_transaction_api_only() {
    let node = node("cors_origins = [\"https://wallet.example\"]\n");
    let reply = exchange(
        &node.addr,
        "POST /api/v1/transactions?mode=async&mode=commit HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
    )
    .await;
    assert_eq!(reply.status, 400);
    assert!(reply.body.contains("mode: given 2 times"), "{reply:?}");
    let reply = exchange(
        &node.addr,
        "GET /api/v1/metadata?search=a&limit=1&limit=2 HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert_eq!(reply.status, 400);
    assert!(reply.body.contains("limit: given 2 times"), "{reply:?}");

    let get = |path: &str, origin: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nOrigin: {origin}\r\n\r\n")
    };
    let allowed = exchange(&node.addr, &get("/api/v1", "https://wallet.example")).await;
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://wallet.example")
    );
    let other = exchange(&node.addr, &get("/api/v1", "https://evil.example")).await;
    assert_eq!(other.header("access-control-allow-origin"), None);
    let preflight = exchange(
        &node.addr,
        "OPTIONS /api/v1/transactions HTTP/1.1\r\nHost: x\r\nOrigin: https://wallet.example\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\n\r\n",
    )
    .await;
    assert_eq!(preflight.status, 200, "{preflight:?}");
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some("https://wallet.example")
    );
    for path in ["/metrics", "/api/v1/plugins"] {
        let reply = exchange(&node.addr, &get(path, "https://wallet.example")).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("access-control-allow-origin"), None, "{path}");
    }

    // By default, BigchainDB's: any origin, on the transaction API only.
    let default = self::node("");
    let any = exchange(
        &default.addr,
        &get("/api/v1/transactions/x", "https://a.example"),
    )
    .await;
    assert_eq!(any.header("access-control-allow-origin"), Some("*"));
    let metrics = exchange(&default.addr, &get("/metrics", "https://a.example")).await;
    assert_eq!(metrics.header("access-control-allow-origin"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_return_at_most_max_search_results_best_first() {
    let node = node("max_search_results = 3\n");
    let alice = Keypair::from_seed([5; 32]);
    let notes = [
        "hello there",
        "hello again",
        "hello once more",
        "and hello",
        "hello wide world",
    ];
    let mut ids = Vec::new();
    for note in notes {
        let tx = builder::create(
            &alice,
            &[(alice.public_key(), 1)],
            json!({"note": note}),
            json!({"note": note}),
        );
        ids.push(tx["id"].as_str().unwrap().to_owned());
        let http = Http::new(&node.http.base);
        let posted = tokio::task::spawn_blocking(move || {
            http.post("/api/v1/transactions?mode=commit", &tx.to_string())
        })
        .await
        .unwrap();
        assert_eq!(posted.0, 202);
    }
    let found = |path: &str| {
        let http = Http::new(&node.http.base);
        let path = path.to_owned();
        async move {
            let (status, body) = tokio::task::spawn_blocking(move || http.get(&path))
                .await
                .unwrap();
            assert_eq!(status, 200, "{body}");
            body.as_array()
                .unwrap()
                .iter()
                .map(|hit| hit["id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    // limit absent, 0 (the drivers' "all") or too high: the cap.
    for path in [
        "/api/v1/metadata?search=hello",
        "/api/v1/metadata?search=hello&limit=0",
        "/api/v1/metadata?search=hello&limit=1000",
    ] {
        assert_eq!(found(path).await, ids[..3], "{path}");
    }
    assert_eq!(found("/api/v1/assets?search=hello&limit=2").await, ids[..2]);
    // Most words matched first, then in commit order.
    assert_eq!(
        found("/api/v1/assets?search=wide+world+hello+again").await,
        [ids[4].clone(), ids[1].clone(), ids[0].clone()]
    );
    let many_words: String = (0..65).map(|i| format!("w{i} ")).collect();
    let reply = exchange(
        &node.addr,
        &format!(
            "GET /api/v1/assets?search={} HTTP/1.1\r\nHost: x\r\n\r\n",
            many_words.trim().replace(' ', "+")
        ),
    )
    .await;
    assert_eq!(reply.status, 400);
    assert!(reply.body.contains("65 distinct words"), "{reply:?}");
}

#[test]
fn api_settings_out_of_range_or_beyond_the_open_file_limit_are_refused() {
    for (setting, expected) in [
        (
            "max_connections = 0",
            "[api] max_connections = 0 is out of range",
        ),
        (
            "header_read_timeout_ms = 5",
            "[api] header_read_timeout_ms = 5 is out of range",
        ),
        (
            "max_body_bytes = 4096\nbody_memory_bytes = 1024",
            "at least max_body_bytes",
        ),
        ("cors_origins = [\"wallet\"]", "`wallet` is not an origin"),
    ] {
        let s = Sandbox::new();
        config(&s, &format!("{setting}\n"));
        let run = s.run(&["run"]);
        assert_eq!(run.code(), Some(2), "{setting}: {}", run.stderr);
        let errors: Vec<&str> = run.stderr.lines().filter(|l| l.contains("error")).collect();
        assert_eq!(errors.len(), 1, "{}", run.stderr);
        assert!(errors[0].contains(expected), "{setting}: {}", run.stderr);
    }
    // A cap that does not fit in half the open-file limit.
    let s = Sandbox::new();
    config(&s, "max_connections = 1000000\n");
    let run = s.run(&["run"]);
    assert_eq!(run.code(), Some(1), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("[api] max_connections = 1000000 does not fit the open-file limit"),
        "{}",
        run.stderr
    );
    run.assert_no_host_panic();
}
