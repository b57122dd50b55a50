//! The ledger end to end: the real eventhost binary, its HTTP API over
//! loopback, the printer plugin recording what was published.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use eventhost::sources::ledger::builder::{self, Keypair};
use eventhost::sources::ledger::transaction::{OutputRef, id_of};
use serde_json::json;
use support::{Http, Running, Sandbox, Value, read_jsonl};

fn printer_config(s: &Sandbox) {
    s.config(&format!(
        "[[plugins]]\nname = \"printer\"\n[plugins.config]\nformat = \"json\"\noutput = {:?}\n",
        s.path("events.jsonl")
    ));
}

fn start(s: &Sandbox) -> (Running, Http) {
    let mut host = s.spawn(&["run"]);
    let http = host.http();
    (host, http)
}

fn id(tx: &Value) -> &str {
    tx["id"].as_str().unwrap()
}

fn spend(tx: &Value, index: u32) -> OutputRef {
    OutputRef {
        transaction_id: id(tx).to_owned(),
        output_index: index,
    }
}

/// Waits until the printer recorded `count` events.
fn recorded(s: &Sandbox, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let events = if s.path("events.jsonl").exists() {
            read_jsonl(&s.path("events.jsonl"))
        } else {
            Vec::new()
        };
        if events.len() >= count || Instant::now() > deadline {
            return events;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn transactions_flow_from_the_http_api_to_the_plugins() {
    let s = Sandbox::new();
    printer_config(&s);
    let (host, http) = start(&s);
    let (alice, bob) = (Keypair::from_seed([7; 32]), Keypair::from_seed([8; 32]));

    let create = builder::create(
        &alice,
        &[(alice.public_key(), 10)],
        json!({"serial": "bike-42", "colour": "green"}),
        json!({"note": "first registration"}),
    );
    let (status, echo) = http.post("/api/v1/transactions/?mode=commit", &create.to_string());
    assert_eq!((status, &echo), (202, &create));
    let transfer = builder::transfer(
        &[(spend(&create, 0), &alice)],
        id(&create),
        &[(bob.public_key(), 4), (alice.public_key(), 6)],
        json!({"note": "sold four"}),
    );
    let (status, _) = http.post("/api/v1/transactions?mode=commit", &transfer.to_string());
    assert_eq!(status, 202);

    assert_eq!(
        http.get(&format!("/api/v1/transactions/{}", id(&transfer))),
        (200, transfer.clone())
    );
    let (_, history) = http.get(&format!("/api/v1/transactions?asset_id={}", id(&create)));
    assert_eq!(history, json!([create, transfer]));
    let (_, transfers) = http.get(&format!(
        "/api/v1/transactions?asset_id={}&operation=TRANSFER",
        id(&create)
    ));
    assert_eq!(transfers, json!([transfer]));
    let (_, unspent) = http.get(&format!(
        "/api/v1/outputs?public_key={}&spent=false",
        alice.public_key()
    ));
    assert_eq!(
        unspent,
        json!([{"transaction_id": id(&transfer), "output_index": 1}])
    );
    let (_, spent) = http.get(&format!(
        "/api/v1/outputs?public_key={}&spent=True",
        alice.public_key()
    ));
    assert_eq!(
        spent,
        json!([{"transaction_id": id(&create), "output_index": 0}])
    );
    assert_eq!(
        http.get(&format!("/api/v1/blocks?transaction_id={}", id(&transfer))),
        (200, json!([2]))
    );
    assert_eq!(
        http.get("/api/v1/blocks/2"),
        (200, json!({"height": 2, "transactions": [transfer]}))
    );
    assert_eq!(http.get("/api/v1/blocks/3").0, 404);
    let (_, assets) = http.get("/api/v1/assets?search=GREEN");
    assert_eq!(
        assets,
        json!([{"data": {"serial": "bike-42", "colour": "green"}, "id": id(&create)}])
    );
    let (_, metadata) = http.get("/api/v1/metadata/?search=sold&limit=1");
    assert_eq!(
        metadata,
        json!([{"id": id(&transfer), "metadata": {"note": "sold four"}}])
    );

    // A second spend of the same output, accepted asynchronously, is
    // rejected when its block is built.
    let again = builder::transfer(
        &[(spend(&create, 0), &alice)],
        id(&create),
        &[(alice.public_key(), 10)],
        json!({"note": "sold twice"}),
    );
    assert_eq!(http.post("/api/v1/transactions", &again.to_string()).0, 202);

    let events = recorded(&s, 3);
    let kinds: Vec<(&str, u64)> = events
        .iter()
        .map(|e| (e["type"].as_str().unwrap(), e["height"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [("BLOCK_VALID", 1), ("BLOCK_VALID", 2), ("BLOCK_INVALID", 3)]
    );
    assert_eq!(events[0]["transactions"], json!([create]));
    assert_eq!(events[1]["transactions"], json!([transfer]));
    assert_eq!(events[2]["transactions"], json!([again]));
    let reason = events[2]["rejections"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("DoubleSpend") && reason.contains(id(&transfer)),
        "{reason}"
    );
    assert_eq!(
        http.get(&format!("/api/v1/transactions/{}", id(&again))).0,
        404
    );
    drop(host);
}

/// A transaction with `edit` applied and its id recomputed, so that the
/// check that fails is the one the edit targets.
fn edited(tx: &Value, edit: impl Fn(&mut Value)) -> String {
    let mut tx = tx.clone();
    edit(&mut tx);
    tx["id"] = Value::String(id_of(&tx));
    tx.to_string()
}

#[test]
fn bad_input_gets_a_clear_error_never_a_500() {
    let s = Sandbox::new();
    printer_config(&s);
    let (host, http) = start(&s);
    let alice = Keypair::from_seed([9; 32]);
    let good = builder::create(
        &alice,
        &[(alice.public_key(), 1)],
        json!({"a": 1}),
        Value::Null,
    );
    let mut tampered = good.clone();
    tampered["metadata"] = json!({"sneaky": true});
    let forged = edited(&good, |tx| {
        let f = tx["inputs"][0]["fulfillment"].as_str().unwrap().to_owned();
        let flipped = if f.ends_with('A') { "B" } else { "A" };
        tx["inputs"][0]["fulfillment"] = Value::String(format!("{}{flipped}", &f[..f.len() - 1]));
    });
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "?mode=commit",
            "{not json".into(),
            400,
            "Failed to decode JSON object",
        ),
        ("", "[1, 2]".into(), 400, "must be a JSON object"),
        ("", "{}".into(), 400, "No transaction id found"),
        ("?mode=fast", good.to_string(), 400, "mode: Mode must be"),
        ("", tampered.to_string(), 400, "(InvalidHash)"),
        ("", forged, 400, "(InvalidSignature)"),
        (
            "",
            edited(&good, |tx| tx["colour"] = json!("red")),
            400,
            "'colour' was unexpected",
        ),
        (
            "",
            edited(&good, |tx| tx["outputs"][0]["amount"] = json!(1)),
            400,
            "outputs[0].amount must be a string",
        ),
        (
            "",
            edited(&good, |tx| tx["outputs"][0]["amount"] = json!("0")),
            400,
            "(AmountError)",
        ),
        (
            "",
            edited(&good, |tx| tx["version"] = json!("9.9")),
            400,
            "version \"9.9\" is not supported",
        ),
        (
            "",
            edited(&good, |tx| tx["operation"] = json!("BURN")),
            400,
            "operation `BURN` is not supported",
        ),
        (
            "",
            edited(&good, |tx| {
                tx["outputs"][0]["condition"]["details"]["type"] = json!("preimage-sha-256")
            }),
            400,
            "preimage-sha-256",
        ),
    ];
    for (query, body, status, message) in &cases {
        let (got, reply) = http.post(&format!("/api/v1/transactions{query}"), body);
        let text = reply["message"].as_str().unwrap_or_default();
        assert_eq!(got, *status, "{message}: {reply}");
        assert_eq!(reply["status"], json!(status), "{reply}");
        assert!(text.contains(message), "expected {message:?} in {text:?}");
    }
    let (status, reply) = oversized_post(&http.base, 2 * 1024 * 1024);
    assert_eq!(status, 413, "{reply}");
    assert!(reply.contains("max_body_bytes"), "{reply}");
    assert_eq!(http.get("/api/v1/blocks/abc").0, 400);
    assert_eq!(http.get("/api/v1/transactions/not-an-id").0, 404);
    assert_eq!(http.get("/api/v1/outputs").0, 400);
    assert_eq!(http.get("/api/v1/assets?search=").0, 400);
    // After all that, the node still works.
    assert_eq!(
        http.post("/api/v1/transactions?mode=commit", &good.to_string())
            .0,
        202
    );
    assert!(!host.log().contains("panicked"), "{}", host.log());
    host.signal(libc::SIGTERM);
    let (status, _, _) = host.wait(Duration::from_secs(20));
    assert!(status.success());
}

/// Declares a body of `len` bytes over a raw socket and sends a little more
/// than the node's 1 MiB limit of it. The node answers 413 once it has read
/// past the limit and closes without reading the rest; an HTTP client
/// library would fail writing the rest instead of reading the answer.
fn oversized_post(base: &str, len: usize) -> (u16, String) {
    use std::io::{Read, Write};
    let address = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let head = format!(
        "POST /api/v1/transactions HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    // Past the limit, not all of it: the rest never comes, and need not.
    let _ = stream.write_all(&vec![b' '; 1024 * 1024 + 64 * 1024]);
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, response)
}

#[test]
fn nothing_acknowledged_is_lost_across_kill_9() {
    let s = Sandbox::new();
    printer_config(&s);
    let (host, http) = start(&s);
    let alice = Keypair::from_seed([11; 32]);
    let txs: Vec<Value> = (0..400)
        .map(|i| {
            builder::create(
                &alice,
                &[(alice.public_key(), 1)],
                json!({"i": i}),
                Value::Null,
            )
        })
        .collect();

    // Post from four clients until the node dies under them.
    let acknowledged = std::sync::Mutex::new(Vec::new());
    let killed = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        for chunk in txs.chunks(100) {
            let (http, acknowledged, killed) = (Http::new(&http.base), &acknowledged, &killed);
            scope.spawn(move || {
                for tx in chunk {
                    if killed.load(std::sync::atomic::Ordering::Relaxed) {
                        return;
                    }
                    let mode = if tx["asset"]["data"]["i"].as_u64().unwrap() % 2 == 0 {
                        "async"
                    } else {
                        "commit"
                    };
                    let url = format!("{}/api/v1/transactions?mode={mode}", http.base);
                    let sent = ureq::post(&url)
                        .header("content-type", "application/json")
                        .send(tx.to_string());
                    if matches!(sent, Ok(r) if r.status().as_u16() == 202) {
                        acknowledged.lock().unwrap().push(id(tx).to_owned());
                    }
                }
            });
        }
        while acknowledged.lock().unwrap().len() < 150 {
            std::thread::sleep(Duration::from_millis(1));
        }
        host.signal(libc::SIGKILL);
        killed.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let (status, _, _) = host.wait(Duration::from_secs(10));
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    let acknowledged: BTreeSet<String> = acknowledged.into_inner().unwrap().into_iter().collect();
    eprintln!(
        "{} transactions acknowledged before kill -9",
        acknowledged.len()
    );

    let (host, http) = start(&s);
    // Transactions accepted but not yet in a block are committed after restart.
    let deadline = Instant::now() + Duration::from_secs(20);
    let missing = |http: &Http| -> Vec<String> {
        acknowledged
            .iter()
            .filter(|id| http.get(&format!("/api/v1/transactions/{id}")).0 != 200)
            .cloned()
            .collect()
    };
    while !missing(&http).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        missing(&http),
        Vec::<String>::new(),
        "acknowledged but lost"
    );

    // Heights are contiguous and no transaction is committed twice.
    let mut committed = Vec::new();
    let mut height = 1;
    loop {
        let (status, block) = http.get(&format!("/api/v1/blocks/{height}"));
        if status == 404 {
            break;
        }
        assert_eq!(status, 200);
        let txs = block["transactions"].as_array().unwrap();
        assert!(!txs.is_empty(), "block {height} is empty");
        committed.extend(txs.iter().map(|t| id(t).to_owned()));
        height += 1;
    }
    let unique: BTreeSet<&String> = committed.iter().collect();
    assert_eq!(
        unique.len(),
        committed.len(),
        "a transaction was committed twice"
    );
    assert!(acknowledged.iter().all(|id| unique.contains(id)));

    // The event log has no gap: one BLOCK_VALID per height, in order.
    host.signal(libc::SIGTERM);
    host.wait(Duration::from_secs(20));
    let dump = s.run(&["events"]);
    assert_eq!(dump.code(), Some(0), "{}", dump.stderr);
    let log: Vec<Value> = dump
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let seqs: Vec<u64> = log.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=log.len() as u64).collect::<Vec<_>>());
    let valid_heights: Vec<u64> = log
        .iter()
        .filter(|e| e["type"] == "BLOCK_VALID")
        .map(|e| e["height"].as_u64().unwrap())
        .collect();
    assert_eq!(valid_heights, (1..height).collect::<Vec<_>>());
    // The printer resumed from its cursor: it saw every event at least once.
    let printed: BTreeSet<u64> = read_jsonl(&s.path("events.jsonl"))
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(printed, seqs.iter().copied().collect());
}

#[test]
fn a_plugin_that_always_crashes_backs_off_then_is_reported_failed() {
    let s = Sandbox::new();
    s.config(&format!(
        "[[plugins]]\nname = \"printer\"\n[plugins.config]\nformat = \"json\"\noutput = {:?}\n\n[[plugins]]\nname = \"crashy\"\nlibrary = \"fixture_misbehaving\"\n[plugins.config]\nmode = \"panic\"\nat = 1\noutput = {:?}\n",
        s.path("events.jsonl"),
        s.path("crashy.txt"),
    ));
    let (mut host, http) = start(&s);
    let alice = Keypair::from_seed([12; 32]);
    let tx = builder::create(&alice, &[(alice.public_key(), 1)], Value::Null, Value::Null);
    assert_eq!(
        http.post("/api/v1/transactions?mode=commit", &tx.to_string())
            .0,
        202
    );
    host.wait_for_log("gave up after 5 failures", Duration::from_secs(30));

    let crashy = http.plugin("crashy");
    assert_eq!(crashy["state"], "failed", "{crashy}");
    assert_eq!(crashy["restarts"], 4, "{crashy}");
    assert_eq!(crashy["isolation"], "thread");
    assert_eq!(
        crashy["api_version"],
        eventhost_plugin_api::API_VERSION.to_string()
    );
    assert!(
        crashy["last_error"]
            .as_str()
            .unwrap()
            .contains("deliberate panic"),
        "{crashy}"
    );
    assert!(
        crashy["failure"]
            .as_str()
            .unwrap()
            .contains("gave up after 5 failures")
    );
    let printer = http.plugin("printer");
    assert_eq!(
        (printer["state"].as_str(), printer["lag"].as_u64()),
        (Some("running"), Some(0))
    );

    // The backoff doubled between the restarts.
    let log = host.log();
    let delays: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("restarting the plugin in"))
        .map(|l| {
            l.split("restarting the plugin in ")
                .nth(1)
                .unwrap()
                .split(',')
                .next()
                .unwrap()
        })
        .collect();
    assert_eq!(delays, ["10 ms", "20 ms", "40 ms", "80 ms"]);
    // The host is fine.
    let again = builder::create(
        &alice,
        &[(alice.public_key(), 1)],
        json!({"n": 2}),
        Value::Null,
    );
    assert_eq!(
        http.post("/api/v1/transactions?mode=commit", &again.to_string())
            .0,
        202
    );
    assert_eq!(recorded(&s, 2).len(), 2);
    assert!(
        std::fs::read_to_string(s.path("crashy.txt"))
            .unwrap_or_default()
            .is_empty()
    );
}
