//! Driving a running node the way the bridge tests do: posting
//! transactions through the HTTP API, reading its metrics, and stopping it
//! to read its event log.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use eventhost::sources::ledger::builder::{self, Keypair};
use eventhost::sources::ledger::transaction::OutputRef;
use serde_json::{Value, json};

use crate::{Http, Running, Sandbox};

/// A guard against hangs only: a slow shared machine must not fail a test.
pub const PATIENCE: Duration = Duration::from_secs(300);

/// A transaction's id.
pub fn id(tx: &Value) -> String {
    tx["id"].as_str().expect("a transaction id").to_owned()
}

/// Posts `tx` in `mode` and asserts it was accepted.
pub fn post(http: &Http, tx: &Value, mode: &str) {
    let (status, reply) = http.post(
        &format!("/api/v1/transactions?mode={mode}"),
        &tx.to_string(),
    );
    assert_eq!(status, 202, "{reply}");
}

/// A CREATE by `keys` of one output of 1 to `keys`, with `data` as its asset.
pub fn create(keys: &Keypair, data: Value) -> Value {
    builder::create(keys, &[(keys.public_key(), 1)], data, Value::Null)
}

/// A coin, committed, then two spends of it posted at once: one of them
/// is rejected when its block is cut (a BLOCK_INVALID event). `n` tells
/// the coins of one test apart.
pub fn double_spend(http: &Http, keys: &Keypair, n: usize) {
    let coin = create(keys, json!({"coin": n}));
    post(http, &coin, "commit");
    for to in 0..2 {
        let spend = builder::transfer(
            &[(
                OutputRef {
                    transaction_id: id(&coin),
                    output_index: 0,
                },
                keys,
            )],
            &id(&coin),
            &[(keys.public_key(), 1)],
            json!({"n": n, "to": to}),
        );
        post(http, &spend, "async");
    }
}

/// Posts `txs` from `clients` concurrent clients, alternating async and commit.
pub fn post_concurrently(http: &Http, txs: &[Value], clients: usize) {
    std::thread::scope(|scope| {
        for (c, chunk) in txs.chunks(txs.len().div_ceil(clients)).enumerate() {
            let http = Http::new(&http.base);
            scope.spawn(move || {
                for (i, tx) in chunk.iter().enumerate() {
                    post(&http, tx, if (c + i) % 2 == 0 { "async" } else { "commit" });
                }
            });
        }
    });
}

/// Waits until `done`, checking every 20 ms; panics after [`PATIENCE`].
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The value of a plugin's metric on the host's `/metrics`.
pub fn metric(http: &Http, name: &str, plugin: &str) -> Option<f64> {
    let (status, text) = http.get("/metrics");
    assert_eq!(status, 200);
    let prefix = format!("{name}{{plugin=\"{plugin}\"}} ");
    text.as_str()?
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.parse().expect("a metric's value"))
}

/// Stops the host (SIGTERM), checks it exited cleanly, and returns its
/// event log as `eventhost events` prints it.
pub fn stop_and_dump(s: &Sandbox, host: Running) -> Vec<Value> {
    stop(host);
    events(s)
}

/// Stops the host (SIGTERM), checks it exited cleanly, and returns its log.
pub fn stop(host: Running) -> String {
    host.signal(libc::SIGTERM);
    let (status, _, log) = host.wait(PATIENCE);
    assert!(status.success(), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    log
}

/// The event log of a stopped host.
pub fn events(s: &Sandbox) -> Vec<Value> {
    let dump = s.run(&["events"]);
    assert_eq!(dump.code(), Some(0), "{}", dump.stderr);
    dump.stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("an event as JSON"))
        .collect()
}

/// How many times `needle` occurs in `log`.
pub fn count(log: &str, needle: &str) -> usize {
    log.matches(needle).count()
}

/// Sets the flag when dropped: a test's traffic thread watches it, so that
/// it stops also when an assertion fails (or a thread scope would wait
/// for it forever).
pub struct SetOnDrop<'a>(pub &'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}
