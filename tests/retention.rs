//! The event log's retention, end to end: old events are dropped in the
//! background, never past a required plugin's cursor; an optional plugin
//! left behind is told what it missed and goes on.

use std::time::{Duration, Instant};

use eventhost::sources::ledger::builder::{self, Keypair};
use serde_json::{Value, json};
use support::{Http, Running, Sandbox, read_jsonl};

fn config(s: &Sandbox, printer_required: bool) {
    s.config(&format!(
        "[host.event_log_retention]\nmax_age_s = 1\ncheck_interval_ms = 200\n\n\
         [[plugins]]\nname = \"printer\"\nrequired = {printer_required}\nqueue_capacity = 1\n\
         [plugins.config]\nformat = \"json\"\noutput = {:?}\n",
        s.path("printed.jsonl")
    ));
}

/// `config` puts [host.event_log_retention] after the [host] table's own
/// keys, so its header ends [host]: a sub-table is fine there.
fn commit(http: &Http, n: u64) {
    let key = Keypair::from_seed([21; 32]);
    let tx = builder::create(&key, &[(key.public_key(), 1)], json!({"n": n}), Value::Null);
    let (status, body) = http.post("/api/v1/transactions?mode=commit", &tx.to_string());
    assert_eq!(status, 202, "{body}");
}

fn admin(host: &mut Running) -> Http {
    let line = host.wait_for_log_line("admin API on http://", Duration::from_secs(20));
    let address = line
        .split("admin API on ")
        .nth(1)
        .unwrap()
        .trim()
        .to_owned();
    Http::new(&address)
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn printed_seqs(s: &Sandbox) -> Vec<u64> {
    if !s.path("printed.jsonl").exists() {
        return Vec::new();
    }
    read_jsonl(&s.path("printed.jsonl"))
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect()
}

#[test]
fn old_events_are_dropped_but_never_past_a_required_plugins_cursor() {
    let s = Sandbox::new();
    config(&s, true);
    let mut host = s.spawn(&["run"]);
    let http = host.http();
    let admin = admin(&mut host);
    // The printer is paused: its cursor stays at event 1, so nothing after
    // it may go, however old.
    commit(&http, 1);
    wait_until("the printer printed event 1", || printed_seqs(&s) == [1]);
    let (status, body) = admin.post("/admin/v1/plugins/printer/pause", "");
    assert_eq!(status, 200, "{body}");
    for n in 2..=4 {
        commit(&http, n);
    }
    std::thread::sleep(Duration::from_millis(1_500));
    commit(&http, 5);
    host.wait_for_log(
        "event log retention: dropped events 1 to 1",
        Duration::from_secs(10),
    );
    std::thread::sleep(Duration::from_millis(600));
    assert!(
        !host.log().contains("dropped events 2"),
        "pruned past the paused required plugin:\n{}",
        host.log()
    );
    // Resumed, it gets every event after its cursor; then the old ones go.
    assert_eq!(admin.post("/admin/v1/plugins/printer/resume", "").0, 200);
    wait_until("the printer caught up", || {
        printed_seqs(&s) == [1, 2, 3, 4, 5]
    });
    std::thread::sleep(Duration::from_millis(1_200));
    commit(&http, 6);
    host.wait_for_log("the log now starts at event", Duration::from_secs(10));
    wait_until("events 2 to 5 were dropped", || {
        host.log().contains("dropped events 2 to")
    });
    host.signal(libc::SIGTERM);
    host.wait(Duration::from_secs(15));

    let events = s.run(&["events"]);
    assert_eq!(events.code(), Some(0), "{}", events.stderr);
    let seqs: Vec<u64> = events
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert!(seqs.len() < 6 && seqs.last() == Some(&6), "{seqs:?}");
    // The blocks stay; a pruned log is no damage.
    let verify = s.run(&["verify"]);
    assert_eq!(verify.code(), Some(0), "{}{}", verify.stdout, verify.stderr);
    assert!(verify.stdout.contains("6 blocks"), "{}", verify.stdout);
}

#[test]
fn an_optional_plugin_left_behind_is_told_what_it_missed_and_goes_on() {
    let s = Sandbox::new();
    config(&s, false);
    let mut host = s.spawn(&["run"]);
    let http = host.http();
    let admin = admin(&mut host);
    commit(&http, 1);
    wait_until("the printer printed event 1", || printed_seqs(&s) == [1]);
    assert_eq!(admin.post("/admin/v1/plugins/printer/pause", "").0, 200);
    for n in 2..=4 {
        commit(&http, n);
    }
    std::thread::sleep(Duration::from_millis(1_500));
    commit(&http, 5);
    // Not protected: everything but the newest event may go.
    host.wait_for_log("the log now starts at event 5", Duration::from_secs(10));
    assert_eq!(admin.post("/admin/v1/plugins/printer/resume", "").0, 200);
    host.wait_for_log("plugin missed events", Duration::from_secs(10));
    wait_until("the printer went on", || {
        printed_seqs(&s).last() == Some(&5)
    });
    let (_, metrics) = http.get("/metrics");
    let metrics = metrics.as_str().unwrap_or_default().to_owned();
    assert!(
        metrics.lines().any(|l| l
            .starts_with("eventhost_plugin_events_missed_total{plugin=\"printer\"}")
            && !l.ends_with(" 0")),
        "{metrics}"
    );
    host.signal(libc::SIGTERM);
    host.wait(Duration::from_secs(15));
}

#[test]
fn a_stream_position_older_than_the_log_is_refused_with_410_and_the_oldest_available() {
    let s = Sandbox::new();
    s.config(&format!(
        "[host.event_log_retention]\nmax_age_s = 1\ncheck_interval_ms = 200\n\n{}",
        support::ws::plugin("")
    ));
    let mut host = s.spawn(&["run"]);
    let http = host.http();
    let line = host.wait_for_log_line("listening on ", Duration::from_secs(30));
    let streams = line
        .split("listening on ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .unwrap()
        .to_owned();
    for n in 1..=3 {
        commit(&http, n);
    }
    std::thread::sleep(Duration::from_millis(1_500));
    commit(&http, 4);
    host.wait_for_log("the log now starts at event 4", Duration::from_secs(10));

    // Each way of naming a position: a height, a time, and the height of
    // the last event a client saw.
    for position in [
        "from_height=1",
        "from_time=2020-01-01T00:00:00Z",
        "last_seen_event=1",
    ] {
        let gone = support::ws::raw_http(
            &streams,
            &support::ws::upgrade_request(&format!("/api/v1/streams/valid_blocks?{position}")),
        );
        assert!(gone.starts_with("HTTP/1.1 410"), "{position}: {gone}");
        assert!(gone.contains("oldest"), "{position}: {gone}");
    }
    let (status, index) = Http::new(&format!("http://{streams}")).get("/api/v1/streams");
    assert_eq!(status, 200, "{index}");
    assert!(index.to_string().contains("\"seq\":4"), "{index}");
    host.signal(libc::SIGTERM);
    host.wait(Duration::from_secs(15));
}
