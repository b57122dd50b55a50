//! The NATS JetStream bridge end to end: the real eventhost binary with the
//! real libnats, publishing to real nats-server processes on loopback (a
//! single JetStream server, or a 3-server cluster with a stream of 3
//! replicas), read back with a real client. Each test starts servers of its
//! own (tests/support/nats.rs), so the tests run in parallel.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use eventhost::sources::ledger::builder::Keypair;
use serde_json::json;
use support::bridge::{assert_same, transaction_message};
use support::nats::{self, Auth, Client, Cluster, Operator, Stored};
use support::node::{
    PATIENCE, SetOnDrop, count, create, double_spend, events, id, metric, post, post_concurrently,
    stop, stop_and_dump, wait_until,
};
use support::{Http, Running, Sandbox, Value};

/// A `[[plugins]]` entry for the nats plugin: `entry` goes in the entry,
/// `config` in its `[plugins.config]` table (after `servers`).
fn nats_plugin(name: &str, servers: &[String], entry: &str, config: &str) -> String {
    format!(
        "[[plugins]]\nname = {name:?}\nlibrary = \"nats\"\n{entry}\n[plugins.config]\nservers = {servers:?}\nreconnect_initial_ms = 100\nreconnect_max_ms = 400\n{config}\n\n"
    )
}

/// The messages the stream must hold for `events` in the block format:
/// one per event, its JSON form, with its coordinates in the headers.
fn block_messages(prefix: &str, events: &[Value]) -> Vec<Value> {
    events
        .iter()
        .map(|e| {
            let kind = match e["type"].as_str().unwrap() {
                "BLOCK_VALID" => "valid",
                _ => "invalid",
            };
            message(
                e,
                format!("{prefix}.block.{kind}"),
                e["seq"].to_string(),
                "block",
                e.clone(),
                None,
            )
        })
        .collect()
}

/// …in the transaction format: one per transaction of a valid block, one
/// block message per invalid block.
fn transaction_messages(prefix: &str, events: &[Value]) -> Vec<Value> {
    let mut messages = Vec::new();
    for e in events {
        if e["type"] != "BLOCK_VALID" {
            messages.extend(block_messages(prefix, std::slice::from_ref(e)));
            continue;
        }
        let txs = e["transactions"].as_array().unwrap();
        for (i, tx) in txs.iter().enumerate() {
            let (operation, body) = transaction_message(e, tx);
            messages.push(message(
                e,
                format!("{prefix}.tx.{operation}"),
                format!("{}:{i}", e["seq"]),
                "transaction",
                body,
                Some((i, txs.len())),
            ));
        }
    }
    messages
}

fn message(
    e: &Value,
    subject: String,
    msg_id: String,
    format: &str,
    payload: Value,
    tx: Option<(usize, usize)>,
) -> Value {
    let mut headers = json!({
        "Nats-Msg-Id": msg_id,
        "Content-Type": "application/json",
        "Eventhost-Format": format,
        "Eventhost-Seq": e["seq"].to_string(),
        "Eventhost-Type": e["type"],
        "Eventhost-Height": e["height"].to_string(),
        "Eventhost-Hash": e["hash"],
        "Eventhost-Timestamp-Ms": e["timestamp_ms"].to_string(),
    });
    if let Some((index, count)) = tx {
        headers["Eventhost-Tx-Index"] = json!(index.to_string());
        headers["Eventhost-Tx-Count"] = json!(count.to_string());
    }
    json!({"subject": subject, "headers": headers, "payload": payload})
}

fn shown(m: &Stored) -> Value {
    json!({"subject": m.subject, "headers": m.headers, "payload": m.payload})
}

/// Compares the stream with what it must hold, naming the first difference.
fn assert_stream_holds(what: &str, got: &[Stored], expected: &[Value]) {
    let got: Vec<Value> = got.iter().map(shown).collect();
    assert_same(what, &got, expected);
}

/// Posts blocks of one CREATE each, in commit mode, until `stop` (or until
/// the node is gone), counting them in `posted`. For tests that need
/// traffic during a fault.
fn post_until(http: &Http, keys: &Keypair, stop: &AtomicBool, posted: &Mutex<usize>) {
    // Numbered across calls: a test that posts again after a restart must
    // not post the same transactions (400 DuplicateTransaction, CI).
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let http = Http::new(&http.base);
    loop {
        if stop.load(Ordering::Acquire) {
            return;
        }
        let i = NEXT.fetch_add(1, Ordering::Relaxed);
        let tx = create(keys, json!({"i": i}));
        let Some((status, reply)) =
            http.try_post("/api/v1/transactions?mode=commit", &tx.to_string())
        else {
            return;
        };
        assert_eq!(status, 202, "{reply}");
        *posted.lock().unwrap() += 1;
    }
}

/// The URL of the server the plugin's newest connection is to.
fn connected_server(host: &Running) -> String {
    let log = host.log();
    let line = log
        .lines()
        .rfind(|l| l.contains("stream `") && l.contains(", at nats://"))
        .unwrap_or_else(|| panic!("the plugin logged no connection:\n{log}"));
    let url = line.rsplit(", at ").next().unwrap();
    url.split_whitespace().next().unwrap().to_owned()
}

#[test]
fn every_event_is_in_the_stream_once_and_in_order_in_both_formats() {
    let secret = "pw-1f4e-in-the-environment";
    let auth = Auth::UserPassword("eventhost".into(), secret.into());
    let server = nats::single(&auth);
    let s = Sandbox::new();
    let login =
        "[plugins.config.auth]\nuser = \"eventhost\"\npassword_env = \"TEST_NATS_PASSWORD\"";
    s.config(&format!(
        "[ledger]\nmax_block_size = 2\n\n{}{}",
        nats_plugin(
            "nats-blocks",
            &[server.url()],
            "",
            &format!("stream = \"BLOCKS\"\nsubject_prefix = \"ledger\"\n{login}")
        ),
        nats_plugin(
            "nats-txs",
            &[server.url()],
            "",
            &format!(
                "stream = \"TXS\"\nsubject_prefix = \"txs\"\nformat = \"transaction\"\n{login}"
            )
        ),
    ));
    let mut host = s.spawn_with_env(&["run"], &[("TEST_NATS_PASSWORD", secret)]);
    let http = host.http();

    let alice = Keypair::from_seed([71; 32]);
    // A CREATE, then two spends of its one output: one is committed in a
    // TRANSFER, the other rejected in a BLOCK_INVALID.
    double_spend(&http, &alice, 1);
    // Blocks of at most two transactions: 600 CREATEs make 300 or more.
    let creates: Vec<Value> = (0..600).map(|i| create(&alice, json!({"n": i}))).collect();
    post_concurrently(&http, &creates, 4);
    let last = create(&alice, json!({"last": true}));
    post(&http, &last, "commit");

    // The last block is the last message of both streams once published.
    let client = Client::new(&server.url(), &auth);
    wait_until("both streams have the last block", || {
        client
            .last("BLOCKS")
            .is_some_and(|m| m.payload["transactions"][0]["id"] == id(&last))
            && client
                .last("TXS")
                .is_some_and(|m| m.payload["transaction_id"] == id(&last))
    });
    // The plugins' own metrics agree once the last acknowledgements are in.
    for (plugin, stream) in [("nats-blocks", "BLOCKS"), ("nats-txs", "TXS")] {
        let messages = client.count(stream) as f64;
        wait_until("the metrics count every message", || {
            metric(&http, "nats_messages_confirmed_total", plugin) == Some(messages)
        });
        assert_eq!(metric(&http, "nats_unconfirmed_events", plugin), Some(0.0));
        assert_eq!(metric(&http, "nats_connected", plugin), Some(1.0));
    }
    let log = stop(host);
    let events = events(&s);
    let valid = events.iter().filter(|e| e["type"] == "BLOCK_VALID").count();
    assert!(valid >= 300, "only {valid} blocks");
    assert!(events.iter().any(|e| e["type"] == "BLOCK_INVALID"));

    let blocks = client.read("BLOCKS");
    assert_stream_holds("BLOCKS", &blocks, &block_messages("ledger", &events));
    let txs = client.read("TXS");
    let expected = transaction_messages("txs", &events);
    assert_stream_holds("TXS", &txs, &expected);
    assert!(expected.iter().any(|m| m["subject"] == "txs.tx.transfer"));
    // The streams the plugin created, as configured.
    let info = client.stream_info("TXS").unwrap();
    assert_eq!(info.config.subjects, ["txs.>"]);
    assert_eq!(info.config.num_replicas, 1);
    assert!(!log.contains(secret), "the password was logged:\n{log}");
    assert_eq!(count(&log, "created stream `"), 2, "{log}");
}

#[test]
fn a_cluster_server_killed_mid_flow_and_restarted_loses_nothing() {
    let mut cluster = Cluster::new();
    let s = Sandbox::new();
    s.config(&nats_plugin(
        "nats",
        &cluster.urls(),
        "queue_capacity = 8",
        "replicas = 3\nmax_unconfirmed_events = 16",
    ));
    let mut host = s.spawn(&["run"]);
    let http = host.http();
    host.wait_for_log("connected to", PATIENCE);
    let alice = Keypair::from_seed([81; 32]);
    let (stop_posting, posted) = (AtomicBool::new(false), Mutex::new(0));
    let count_posted = || *posted.lock().unwrap();
    std::thread::scope(|scope| {
        let _stop = SetOnDrop(&stop_posting);
        scope.spawn(|| post_until(&http, &alice, &stop_posting, &posted));
        wait_until("some blocks were published", || count_posted() >= 30);
        // The server the plugin is connected to goes, mid-flow.
        let url = connected_server(&host);
        let victim = cluster
            .servers
            .iter_mut()
            .find(|s| s.url() == url)
            .expect("the plugin's server is one of the cluster's");
        victim.kill();
        let at_kill = count_posted();
        host.wait_for_log("lost the connection to", PATIENCE);
        wait_until("the plugin reconnected to another server", || {
            count(&host.log(), "connected to") >= 2
        });
        wait_until("blocks were committed with a server down", || {
            count_posted() >= at_kill + 30
        });
        victim.start();
        victim.wait_healthy();
        let at_restart = count_posted();
        wait_until("blocks were committed after the restart", || {
            count_posted() >= at_restart + 30
        });
    });
    let last = create(&alice, json!({"last": true}));
    post(&http, &last, "commit");
    let client = Client::new(&cluster.servers[0].url(), &Auth::None);
    wait_until("the stream has the last block", || {
        client
            .last("EVENTHOST")
            .is_some_and(|m| m.payload["transactions"][0]["id"] == id(&last))
    });
    let events = stop_and_dump(&s, host);
    assert!(events.len() > 90, "{} events", events.len());
    let stored = client.read("EVENTHOST");
    assert_stream_holds("EVENTHOST", &stored, &block_messages("eventhost", &events));
    let info = client.stream_info("EVENTHOST").unwrap();
    assert_eq!(info.config.num_replicas, 3);
    // Every replica holds every message once more, the restarted one too.
    for server in &cluster.servers {
        let client = Client::new(&server.url(), &Auth::None);
        wait_until("the replica caught up", || {
            client.count("EVENTHOST") == events.len() as u64
        });
    }
}

#[test]
fn a_node_killed_between_publish_and_ack_republishes_and_the_stream_drops_the_repeats() {
    let server = nats::single(&Auth::None);
    let client = Client::new(&server.url(), &Auth::None);
    let s = Sandbox::new();
    s.config(&nats_plugin("nats", &[server.url()], "", ""));
    let alice = Keypair::from_seed([91; 32]);
    let mut host = s.spawn(&["run"]);
    // The host's durable cursor of the plugin follows its acks, written
    // every 200 ms: a node killed while it publishes has events in the
    // stream after its cursor, unless the kill fell right after a write.
    // So: kill it mid-flow, and read the cursor it resumes from; until
    // there is such a gap (at most a few tries), again.
    let (stored, resumed_after) = (1..=10)
        .find_map(|_| {
            let http = host.http();
            host.wait_for_log("connected to", PATIENCE);
            let (stop_posting, posted) = (AtomicBool::new(false), Mutex::new(0));
            let target = client.count("EVENTHOST") + 50;
            std::thread::scope(|scope| {
                let _stop = SetOnDrop(&stop_posting);
                scope.spawn(|| post_until(&http, &alice, &stop_posting, &posted));
                wait_until("50 more events are stored", || {
                    client.count("EVENTHOST") >= target
                });
                host.signal(libc::SIGKILL);
            });
            // What the node had sent may still arrive: let the stream settle.
            let mut stored = client.count("EVENTHOST");
            loop {
                std::thread::sleep(std::time::Duration::from_millis(300));
                let now = client.count("EVENTHOST");
                if now == stored {
                    break;
                }
                stored = now;
            }
            let last = client.last("EVENTHOST").expect("a message");
            let stored: u64 = last.headers["Eventhost-Seq"].parse().unwrap();
            host = s.spawn(&["run"]);
            let line = host.wait_for_log_line("resuming after event", PATIENCE);
            let cursor: u64 = line
                .split("resuming after event ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no cursor in {line}"));
            assert!(cursor <= stored, "the cursor passed what the stream has");
            (cursor < stored).then_some((stored, cursor))
        })
        .expect("ten kills, each right after the cursor was written");

    // The restarted plugin publishes every event after its cursor again:
    // the stream acknowledges those it has as duplicates, without storing them.
    let http = host.http();
    let last = create(&alice, json!({"last": true}));
    post(&http, &last, "commit");
    wait_until("the stream has the last block", || {
        client
            .last("EVENTHOST")
            .is_some_and(|m| m.payload["transactions"][0]["id"] == id(&last))
    });
    let expected = (stored - resumed_after) as f64;
    wait_until("the plugin counted the duplicates", || {
        metric(&http, "nats_duplicates_total", "nats") >= Some(expected)
    });
    assert_eq!(
        metric(&http, "nats_duplicates_total", "nats"),
        Some(expected)
    );
    let events = stop_and_dump(&s, host);
    let stored_now = client.read("EVENTHOST");
    assert_stream_holds(
        "EVENTHOST",
        &stored_now,
        &block_messages("eventhost", &events),
    );
    eprintln!(
        "{} events; the node was killed with events {}..={stored} in the stream but not acknowledged; they were published again and dropped",
        events.len(),
        resumed_after + 1
    );
}

/// `(announced retry delay in ms)` of each failed connection attempt the
/// plugin logged.
fn retry_delays(log: &str, plugin: &str) -> Vec<u64> {
    log.lines()
        .filter(|l| l.contains(&format!("plugin=\"{plugin}\"")) && l.contains("cannot connect"))
        .map(|l| {
            let delay = l.split("retrying in ").nth(1).unwrap();
            delay.split(' ').next().unwrap().parse().unwrap()
        })
        .collect()
}

fn plugin_lines<'a>(log: &'a str, plugin: &str, needle: &str) -> Vec<&'a str> {
    log.lines()
        .filter(|l| l.contains(&format!("plugin=\"{plugin}\"")) && l.contains(needle))
        .collect()
}

#[test]
fn unreachable_servers_and_wrong_credentials_are_logged_and_retried_while_the_host_runs() {
    let secret = "not-the-password-9c2e";
    let guarded = nats::single(&Auth::UserPassword("eventhost".into(), "right".into()));
    let user = nkeys::KeyPair::new_user();
    let by_nkey = nats::single(&Auth::Nkey(user.public_key()));
    let s = Sandbox::new();
    s.config(&format!(
        "{}{}{}",
        nats_plugin(
            "bad-login",
            &[guarded.url()],
            "",
            "[plugins.config.auth]\nuser = \"eventhost\"\npassword_env = \"TEST_NATS_PASSWORD\""
        ),
        nats_plugin("nowhere", &["nats://127.0.0.1:1".to_owned()], "", ""),
        nats_plugin(
            "nkey",
            &[by_nkey.url()],
            "",
            "[plugins.config.auth]\nnkey_seed_env = \"TEST_NATS_SEED\""
        ),
    ));
    let seed = user.seed().unwrap();
    let mut host = s.spawn_with_env(
        &["run"],
        &[("TEST_NATS_PASSWORD", secret), ("TEST_NATS_SEED", &seed)],
    );
    let http = host.http();
    // All three started, and the node works without the two that cannot connect.
    assert_eq!(count(&host.log(), "plugin ready"), 3, "{}", host.log());
    let alice = Keypair::from_seed([101; 32]);
    post(&http, &create(&alice, json!({"a": 1})), "commit");
    wait_until("each failing plugin failed five times", || {
        let log = host.log();
        retry_delays(&log, "bad-login").len() >= 5 && retry_delays(&log, "nowhere").len() >= 5
    });
    for plugin in ["bad-login", "nowhere"] {
        assert_eq!(metric(&http, "nats_connected", plugin), Some(0.0));
        let failures = metric(&http, "nats_connection_failures_total", plugin);
        assert!(failures >= Some(5.0), "{plugin}: {failures:?}");
        assert_eq!(metric(&http, "nats_unconfirmed_events", plugin), Some(1.0));
        let delays = retry_delays(&host.log(), plugin);
        assert_eq!(&delays[..5], [100, 200, 400, 400, 400], "{plugin}");
    }
    // The nkey logged in and published the block.
    wait_until("the nkey plugin confirmed the block", || {
        metric(&http, "nats_unconfirmed_events", "nkey") == Some(0.0)
    });
    assert_eq!(metric(&http, "nats_connected", "nkey"), Some(1.0));

    let log = host.log();
    for (plugin, reason) in [
        ("bad-login", "authorization violation"),
        ("nowhere", "refused"),
    ] {
        let lines = plugin_lines(&log, plugin, "cannot connect");
        let port = if plugin == "nowhere" {
            "nats://127.0.0.1:1".to_owned()
        } else {
            guarded.url()
        };
        for line in &lines {
            assert!(
                line.contains(&port),
                "{plugin}: the server is not named: {line}"
            );
            assert!(line.to_lowercase().contains(reason), "{plugin}: {line}");
        }
    }
    let (status, plugins) = http.get("/api/v1/plugins");
    assert_eq!(status, 200);
    for text in [&log, &plugins.to_string()] {
        assert!(!text.contains(secret), "the password shows:\n{text}");
        assert!(!text.contains(&seed), "the nkey seed shows:\n{text}");
    }
    stop(host);
}

#[test]
fn a_stream_whose_subjects_do_not_match_fails_the_plugin_with_a_clear_error() {
    let token = "token-5d1a-secret";
    let auth = Auth::Token(token.into());
    let server = nats::single(&auth);
    let client = Client::new(&server.url(), &auth);
    client.create_stream("EVENTHOST", &["other.>"], 1);
    let s = Sandbox::new();
    s.config(&nats_plugin(
        "nats",
        &[server.url()],
        "required = false",
        "[plugins.config.auth]\ntoken_env = \"TEST_NATS_TOKEN\"",
    ));
    let mut host = s.spawn_with_env(&["run"], &[("TEST_NATS_TOKEN", token)]);
    let http = host.http();
    let failed = || {
        let (_, plugins) = http.get("/api/v1/plugins");
        plugins[0]["state"] == "failed"
    };
    wait_until("the plugin is reported failed", failed);
    let (_, plugins) = http.get("/api/v1/plugins");
    let last_error = plugins[0]["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let expected = "stream `EVENTHOST` exists, but its subjects [\"other.>\"] do not take [\"eventhost.block.valid\", \"eventhost.block.invalid\"]";
    assert!(last_error.contains(expected), "{plugins}");
    // The node runs on without it.
    let alice = Keypair::from_seed([111; 32]);
    post(&http, &create(&alice, json!({"a": 1})), "commit");
    let log = stop(host);
    assert!(log.contains(expected), "{log}");
    for text in [&log, &plugins.to_string()] {
        assert!(!text.contains(token), "the token shows:\n{text}");
    }
    // The stream is as it was: the plugin never changes an existing stream.
    let info = client.stream_info("EVENTHOST").unwrap();
    assert_eq!(info.config.subjects, ["other.>"]);
    assert_eq!(info.state.messages, 0);
}

#[test]
fn a_creds_file_logs_in_to_a_server_with_decentralized_auth() {
    let operator = Operator::new();
    let auth = Auth::Operator(operator.clone());
    let server = nats::single(&auth);
    let s = Sandbox::new();
    let creds = operator.user_creds();
    let path = s.write("eventhost.creds", &creds);
    s.config(&nats_plugin(
        "nats",
        &[server.url()],
        "",
        "[plugins.config.auth]\ncreds_file_env = \"TEST_NATS_CREDS\"",
    ));
    let mut host = s.spawn_with_env(&["run"], &[("TEST_NATS_CREDS", path.to_str().unwrap())]);
    let http = host.http();
    let alice = Keypair::from_seed([121; 32]);
    let last = create(&alice, json!({"last": true}));
    post(&http, &create(&alice, json!({"first": true})), "commit");
    post(&http, &last, "commit");
    let client = Client::new(&server.url(), &auth);
    wait_until("the stream has the last block", || {
        client
            .last("EVENTHOST")
            .is_some_and(|m| m.payload["transactions"][0]["id"] == id(&last))
    });
    let log = stop(host);
    let stored = client.read("EVENTHOST");
    assert_stream_holds(
        "EVENTHOST",
        &stored,
        &block_messages("eventhost", &events(&s)),
    );
    let seed = creds.lines().find(|l| l.starts_with("SU")).unwrap();
    assert!(
        !log.contains(seed),
        "the creds file's seed was logged:\n{log}"
    );
    assert!(log.contains("the creds file"), "{log}");
}

#[test]
fn check_config_names_the_wrong_key_and_never_a_secret() {
    let s = Sandbox::new();
    let servers = ["nats://127.0.0.1:4222".to_owned()];
    s.config(&format!(
        "{}{}{}",
        nats_plugin("range", &servers, "", "replicas = 9"),
        nats_plugin(
            "in-url",
            &["nats://bob:hunter2@127.0.0.1:4222".to_owned()],
            "",
            ""
        ),
        nats_plugin(
            "fine",
            &servers,
            "",
            "stream = \"LEDGER\"\n[plugins.config.auth]\nuser = \"bob\"\npassword_env = \"TEST_NATS_PASSWORD\""
        ),
    ));
    let out = s
        .eventhost(&["check-config"])
        .env("TEST_NATS_PASSWORD", "hunter2")
        .output()
        .expect("run eventhost check-config");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(3), "{text}");
    for expected in [
        "plugin `range` (",
        "its [plugins.config] is invalid at ",
        "config.toml:17:10: `replicas` (9) must be 1 to 5",
        "plugin `in-url` (",
        "config.toml:27:10: server 1 carries credentials in its URL",
        "fine: block messages on eventhost.> to stream `LEDGER`, user `bob`",
    ] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }
    assert!(!text.contains("hunter2"), "{text}");
}
