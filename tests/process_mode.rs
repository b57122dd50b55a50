//! Plugins in child processes (`isolation = "process"`): the real binary,
//! real child processes, real crashes.

use std::time::{Duration, Instant};

use eventhost::sources::ledger::builder::{self, Keypair};
use serde_json::{Value, json};
use support::{Http, Running, Sandbox, read_jsonl, read_seqs};

fn start(s: &Sandbox) -> (Running, Http) {
    let mut host = s.spawn(&["run"]);
    let http = host.http();
    (host, http)
}

/// Commits `count` CREATEs, one block each.
fn commit_creates(http: &Http, seed: u8, count: usize) {
    let key = Keypair::from_seed([seed; 32]);
    for i in 0..count {
        let tx = builder::create(&key, &[(key.public_key(), 1)], json!({"i": i}), Value::Null);
        let (status, body) = http.post("/api/v1/transactions?mode=commit", &tx.to_string());
        assert_eq!(status, 202, "{body}");
    }
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn pids_in_log(log: &str) -> Vec<u32> {
    log.lines()
        .filter(|l| l.contains("plugin process started"))
        .filter_map(|l| {
            l.split("pid=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

fn alive(pid: u32) -> bool {
    !support::process::has_ended(pid)
}

#[test]
fn a_plugin_that_segfaults_is_restarted_and_sees_every_event_once_in_order() {
    let s = Sandbox::new();
    s.config(&format!(
        "[[plugins]]\nname = \"segv\"\nlibrary = \"fixture_misbehaving\"\nisolation = \"process\"\n[plugins.config]\nmode = \"segfault\"\nat = 10\noutput = {:?}\n",
        s.path("seen.txt")
    ));
    let (host, http) = start(&s);
    commit_creates(&http, 21, 35);
    wait_until(
        "the plugin saw every event",
        Duration::from_secs(30),
        || read_seqs(&s.path("seen.txt")).len() >= 35,
    );
    assert_eq!(read_seqs(&s.path("seen.txt")), (1..=35).collect::<Vec<_>>());

    let log = host.log();
    let crashes = log
        .lines()
        .filter(|l| l.contains("plugin failed") && l.contains("killed by signal 11 (SIGSEGV)"))
        .count();
    assert_eq!(crashes, 3, "{log}");
    let (_, plugins) = http.get("/api/v1/plugins");
    let segv = &plugins[0];
    assert_eq!(
        (segv["isolation"].as_str(), segv["state"].as_str()),
        (Some("process"), Some("running"))
    );
    assert_eq!(segv["restarts"], 3);
    assert!(
        segv["last_error"].as_str().unwrap().contains("SIGSEGV"),
        "{segv}"
    );
    // The host itself is fine.
    assert_eq!(http.get("/").0, 200);
    let pids = pids_in_log(&log);
    assert_eq!(pids.len(), 4, "{log}");
    host.signal(libc::SIGTERM);
    let (status, _, log) = host.wait(Duration::from_secs(20));
    assert!(status.success(), "{log}");
    assert!(
        pids.iter().all(|pid| !alive(*pid)),
        "a plugin process outlived the host"
    );
}

#[test]
fn a_plugin_that_panics_in_process_mode_is_contained_the_same_way() {
    let s = Sandbox::new();
    s.config(&format!(
        "[[plugins]]\nname = \"panicky\"\nlibrary = \"fixture_misbehaving\"\nisolation = \"process\"\n[plugins.config]\nmode = \"panic\"\nat = 4\noutput = {:?}\n",
        s.path("seen.txt")
    ));
    let (host, http) = start(&s);
    commit_creates(&http, 22, 8);
    wait_until(
        "the plugin saw every event",
        Duration::from_secs(30),
        || read_seqs(&s.path("seen.txt")).len() >= 8,
    );
    assert_eq!(read_seqs(&s.path("seen.txt")), (1..=8).collect::<Vec<_>>());
    assert!(
        host.log().contains("panicked: deliberate panic"),
        "{}",
        host.log()
    );
}

#[test]
fn kill_9_of_the_host_leaves_no_plugin_process_and_the_next_start_resumes() {
    let s = Sandbox::new();
    s.config(&format!(
        "[[plugins]]\nname = \"printer\"\nisolation = \"process\"\n[plugins.config]\nformat = \"json\"\noutput = {:?}\n",
        s.path("events.jsonl")
    ));
    let (mut host, http) = start(&s);
    host.wait_for_log("plugin process started", Duration::from_secs(20));
    commit_creates(&http, 23, 5);
    let child = pids_in_log(&host.log())[0];
    assert!(alive(child));
    host.signal(libc::SIGKILL);
    host.wait(Duration::from_secs(10));
    wait_until(
        "the plugin process is gone",
        Duration::from_secs(10),
        || !alive(child),
    );

    let (host, http) = start(&s);
    commit_creates(&http, 24, 5);
    // At least once across the crash (lines may repeat), none missing.
    let seen = || -> std::collections::BTreeSet<u64> {
        read_jsonl(&s.path("events.jsonl"))
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect()
    };
    wait_until("the printer caught up", Duration::from_secs(30), || {
        seen().len() >= 10
    });
    assert_eq!(seen(), (1..=10).collect());
    drop(host);
}

/// The plugin's cursor survives its process's crash exactly: the child
/// moves it, in memory it shares with the host, before the plugin gets its
/// next event, so events that travelled many to a frame are finished one
/// by one. A plugin that catches up with a backlog (frames of up to 256
/// events) and dies of SIGSEGV at the 100th event of each run, before
/// recording it, has recorded every event exactly once in the end, and
/// each restart resumed at the event it died on.
#[test]
fn a_plugin_that_dies_mid_frame_finished_each_event_once_and_resumes_where_it_died() {
    const EVENTS: u64 = 300;
    let s = Sandbox::new();
    // A backlog the plugin has not finished: it never reads in this run.
    s.config(
        "[[plugins]]\nname = \"batchy\"\nlibrary = \"fixture_misbehaving\"\nisolation = \"process\"\n[plugins.config]\nmode = \"never_read\"\n",
    );
    let (host, http) = start(&s);
    commit_creates(&http, 25, EVENTS as usize);
    host.signal(libc::SIGTERM);
    host.wait(Duration::from_secs(20));

    s.config(&format!(
        "[[plugins]]\nname = \"batchy\"\nlibrary = \"fixture_misbehaving\"\nisolation = \"process\"\n[plugins.config]\nmode = \"segfault\"\nat = 100\noutput = {:?}\n",
        s.path("seen.txt")
    ));
    let (host, _http) = start(&s);
    wait_until(
        "the plugin recorded every event",
        Duration::from_secs(60),
        || read_seqs(&s.path("seen.txt")).len() >= EVENTS as usize,
    );
    // None twice (a cursor that lagged behind the plugin would repeat the
    // events of the frame it died in), none missing.
    assert_eq!(
        read_seqs(&s.path("seen.txt")),
        (1..=EVENTS).collect::<Vec<_>>()
    );
    let log = host.log();
    let crashed_at: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split("crashing at event ").nth(1))
        .map(|rest| rest.split_whitespace().next().unwrap_or(""))
        .collect();
    assert_eq!(crashed_at, ["100", "199", "298"], "{log}");
    host.signal(libc::SIGTERM);
    let (status, _, log) = host.wait(Duration::from_secs(20));
    assert!(status.success(), "{log}");
}
