//! Changing plugins while the node runs (issue #16): the admin API and its
//! CLI, configuration reloads (SIGHUP and `admin reload-config`), reloads
//! under load with exactly-once checked from the plugin's own output, in
//! thread and in process mode, failure and poison policies, dead letters
//! and their re-drive, admin tokens, configuration checks located in
//! config.toml, and what a plugin author sees.
//!
//! The real binary and real plugin libraries: a counting plugin
//! (tests/fixtures/counter_plugin.rs) built outside the workspace as a
//! third party would, against this checkout's plugin-api, and rebuilt as
//! v2 at the same path while the node runs. Real HTTP over loopback.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use eventhost::sources::ledger::builder::{self, Keypair};
use serde_json::{Value, json};
use support::node::{PATIENCE, SetOnDrop, metric, wait_until};
use support::{
    ExternalPlugin, Finished, Http, Running, Sandbox, build_dir, build_external,
    build_external_rlib, repo_root,
};

const COUNTER_SOURCE: &str = include_str!("fixtures/counter_plugin.rs");

fn counter_source(version: &str) -> String {
    COUNTER_SOURCE.replace("@VERSION@", version)
}

fn external(name: &str, source: &str) -> Vec<PathBuf> {
    build_external(&[ExternalPlugin {
        name,
        source,
        api: repo_root().join("plugin-api"),
    }])
}

/// The counting plugin v1 most tests load (never rebuilt), and the crate
/// the reload test rebuilds (`lifecycle_switch`), as first built: one
/// cargo run for both.
fn built_v1() -> &'static (PathBuf, PathBuf) {
    static BUILT: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    BUILT.get_or_init(|| {
        let source = counter_source("v1");
        let api = repo_root().join("plugin-api");
        let built = build_external(&[
            ExternalPlugin {
                name: "lifecycle_counter",
                source: &source,
                api: api.clone(),
            },
            ExternalPlugin {
                name: "lifecycle_switch",
                source: &source,
                api,
            },
        ]);
        (built[0].clone(), built[1].clone())
    })
}

fn counter_lib() -> &'static Path {
    &built_v1().0
}

/// A loopback port free now, for an `[admin] bind` the CLI can find (port
/// 0 would be a different one at each start).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Writes config.toml: a `[host]` that stops and restarts quickly, `admin`
/// as the `[admin]` table's keys, then `plugins`.
fn write_config(s: &Sandbox, host: &str, admin: &str, plugins: &str) -> PathBuf {
    let mut keys = host.to_owned();
    for default in [
        "shutdown_timeout_ms = 2000",
        "startup_timeout_ms = 5000",
        "restart_backoff_ms = 10",
    ] {
        let key = default.split(' ').next().unwrap();
        if !host.contains(key) {
            keys = format!("{default}\n{keys}");
        }
    }
    s.write(
        "config.toml",
        &format!(
            "[host]\nplugin_dirs = [{:?}]\n{keys}\n\n[api]\nbind = \"127.0.0.1:0\"\n\n[admin]\n{admin}\n\n{plugins}",
            build_dir().display().to_string()
        ),
    )
}

/// A `[[plugins]]` entry of the counting plugin at `lib`: `keys` are the
/// entry's own, `config` goes into its `[plugins.config]` after `output`.
fn counter(name: &str, lib: &Path, output: &Path, keys: &str, config: &str) -> String {
    format!(
        "[[plugins]]\nname = {name:?}\npath = {lib:?}\n{keys}\n[plugins.config]\noutput = {output:?}\n{config}\n\n"
    )
}

/// A node started with `run`, its HTTP API and its admin API.
struct Node {
    host: Running,
    http: Http,
    admin: Http,
}

fn start(s: &Sandbox) -> Node {
    let mut host = s.spawn(&["run"]);
    let http = host.http();
    let line = host.wait_for_log_line("admin API on http://", PATIENCE);
    let address = line
        .split("admin API on ")
        .nth(1)
        .expect("the admin address")
        .trim();
    Node {
        host,
        http,
        admin: Http::new(address),
    }
}

/// `eventhost admin ARGS` with the sandbox's config.toml.
fn cli(s: &Sandbox, args: &[&str]) -> Finished {
    let mut all = vec!["admin"];
    all.extend_from_slice(args);
    s.run(&all)
}

/// The JSON `eventhost admin` printed; asserts it succeeded.
fn cli_ok(s: &Sandbox, args: &[&str]) -> Value {
    let out = cli(s, args);
    assert_eq!(
        out.code(),
        Some(0),
        "admin {args:?}: {}{}",
        out.stdout,
        out.stderr
    );
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

/// The plugin called `name` in the admin API's list, if loaded.
fn plugin(admin: &Http, name: &str) -> Option<Value> {
    let (status, list) = admin.get("/admin/v1/plugins");
    assert_eq!(status, 200, "{list}");
    list["plugins"]
        .as_array()
        .expect("a list of plugins")
        .iter()
        .find(|p| p["name"] == name)
        .cloned()
}

fn names(admin: &Http) -> Vec<String> {
    let (_, list) = admin.get("/admin/v1/plugins");
    list["plugins"]
        .as_array()
        .expect("a list of plugins")
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect()
}

fn head(admin: &Http) -> u64 {
    admin.get("/admin/v1/plugins").1["head"]
        .as_u64()
        .expect("head")
}

fn act(admin: &Http, name: &str, action: &str) -> (u16, Value) {
    admin.post(&format!("/admin/v1/plugins/{name}/{action}"), "")
}

/// One line of the counting plugin's output.
#[derive(Debug, Clone, PartialEq)]
struct Line {
    version: String,
    seq: u64,
    height: u64,
    at_us: u128,
}

fn lines(path: &Path) -> Vec<Line> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    // Only whole lines: the plugin may be writing the next one.
    let whole = text.rsplit_once('\n').map_or("", |(whole, _)| whole);
    whole
        .lines()
        .map(|l| {
            let mut parts = l.split(' ');
            let mut next = || parts.next().unwrap_or_else(|| panic!("short line {l:?}"));
            Line {
                version: next().to_owned(),
                seq: next().parse().unwrap(),
                height: next().parse().unwrap(),
                at_us: next().parse().unwrap(),
            }
        })
        .collect()
}

fn seqs(path: &Path) -> Vec<u64> {
    lines(path).iter().map(|l| l.seq).collect()
}

fn wait_for_lines(path: &Path, count: usize) {
    wait_until(&format!("{} has {count} lines", path.display()), || {
        lines(path).len() >= count
    });
}

fn now_us() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros()
}

/// Commits `count` CREATEs, one block (one event) each.
fn commit(http: &Http, key: &Keypair, count: usize) {
    for _ in 0..count {
        let tx = builder::create(
            key,
            &[(key.public_key(), 1)],
            json!({"n": now_us().to_string()}),
            Value::Null,
        );
        let (status, body) = http.post("/api/v1/transactions?mode=commit", &tx.to_string());
        assert_eq!(status, 202, "{body}");
    }
}

fn key(seed: u8) -> Keypair {
    Keypair::from_seed([seed; 32])
}

fn crc32(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    format!("crc32:{:08x}", crc32fast::hash(&bytes))
}

/// Lets whatever is in flight settle: for checks that something did NOT
/// happen (a paused or unloaded plugin got nothing).
fn settle() {
    std::thread::sleep(Duration::from_millis(400));
}

fn stop(node: Node) -> String {
    support::node::stop(node.host)
}

#[test]
fn each_admin_operation_over_http_and_the_cli() {
    let started_ms = (now_us() / 1000) as u64;
    let s = Sandbox::new();
    let port = free_port();
    let lib = counter_lib();
    let out = s.path("counter.txt");
    let broken = s.path("broken");
    write_config(
        &s,
        "",
        &format!("bind = \"127.0.0.1:{port}\""),
        &(counter("counter", lib, &out, "", "explicit_acks = true")
            + &counter(
                "fragile",
                lib,
                &s.path("fragile.txt"),
                "on_failure = \"disable\"",
                &format!("fail_while = {broken:?}"),
            )),
    );
    let node = start(&s);
    let key = key(31);
    commit(&node.http, &key, 5);
    wait_for_lines(&out, 5);

    // list: state, library and checksum, load time, cursor, lag, restarts.
    let p = plugin(&node.admin, "counter").unwrap();
    assert_eq!(p["state"], "running", "{p}");
    assert_eq!(p["file"], lib.display().to_string(), "{p}");
    assert_eq!(p["checksum"], crc32(lib), "{p}");
    let loaded_at = p["loaded_at_ms"].as_u64().unwrap();
    assert!(loaded_at >= started_ms, "{p}");
    assert_eq!(
        (p["cursor"].as_u64(), p["lag"].as_u64()),
        (Some(5), Some(0))
    );
    assert_eq!(p["restarts"], 0);
    assert_eq!(p["isolation"], "thread");
    let listed = cli_ok(&s, &["list"]);
    assert_eq!(listed["head"], 5, "{listed}");
    assert_eq!(listed["plugins"][0]["name"], "counter", "{listed}");
    assert_eq!(listed["plugins"][0]["checksum"], crc32(lib), "{listed}");

    // pause: nothing delivered while paused; all of it after resume.
    let paused = cli_ok(&s, &["pause", "counter"]);
    assert_eq!(paused["paused"], true, "{paused}");
    commit(&node.http, &key, 3);
    settle();
    assert_eq!(seqs(&out).len(), 5, "delivered while paused");
    let p = plugin(&node.admin, "counter").unwrap();
    assert_eq!(
        (p["paused"].as_bool(), p["lag"].as_u64()),
        (Some(true), Some(3))
    );
    let (status, resumed) = act(&node.admin, "counter", "resume");
    assert_eq!(
        (status, &resumed["paused"]),
        (200, &json!(false)),
        "{resumed}"
    );
    wait_for_lines(&out, 8);

    // unload keeps the cursor; a later load (by name) resumes after it.
    let unloaded = cli_ok(&s, &["unload", "counter"]);
    assert_eq!(unloaded["cursor"], 8, "{unloaded}");
    assert!(plugin(&node.admin, "counter").is_none());
    commit(&node.http, &key, 4);
    settle();
    assert_eq!(seqs(&out).len(), 8, "delivered after unload");
    let (status, loaded) = node
        .admin
        .post("/admin/v1/plugins", r#"{"name": "counter"}"#);
    assert_eq!(status, 201, "{loaded}");
    assert_eq!(loaded["state"], "running", "{loaded}");
    wait_for_lines(&out, 12);
    assert_eq!(seqs(&out), (1..=12).collect::<Vec<_>>());

    // load a whole entry: a new instance starts with the next event.
    let out2 = s.path("counter2.txt");
    let entry = json!({"entry": {"name": "counter2", "path": lib, "config": {"output": out2}}});
    let (status, loaded) = node.admin.post("/admin/v1/plugins", &entry.to_string());
    assert_eq!(status, 201, "{loaded}");
    let (status, again) = node.admin.post("/admin/v1/plugins", &entry.to_string());
    assert_eq!(status, 409, "{again}");
    assert!(
        again["message"]
            .as_str()
            .unwrap()
            .contains("plugin `counter2` is already loaded"),
        "{again}"
    );
    let (status, unknown) = node
        .admin
        .post("/admin/v1/plugins", r#"{"name": "nosuch"}"#);
    assert_eq!(status, 404, "{unknown}");
    assert!(
        unknown["message"]
            .as_str()
            .unwrap()
            .contains("config.toml has no plugin `nosuch`"),
        "{unknown}"
    );
    // A name added to config.toml since the start: `load` reads the file.
    let out3 = s.path("counter3.txt");
    s.edit_config(|text| text + &counter("counter3", lib, &out3, "isolation = \"process\"", ""));
    let loaded = cli_ok(&s, &["load", "counter3"]);
    assert_eq!(
        (loaded["name"].as_str(), loaded["isolation"].as_str()),
        (Some("counter3"), Some("process")),
        "{loaded}"
    );
    commit(&node.http, &key, 2);
    wait_for_lines(&out2, 2);
    wait_for_lines(&out3, 2);
    wait_for_lines(&out, 14);
    assert_eq!(seqs(&out2), [13, 14]);
    assert_eq!(seqs(&out3), [13, 14]);
    // ...and through the CLI, from a file holding the entry; reloaded with
    // another entry (the same plugin acknowledging explicitly) too.
    let out4 = s.path("counter4.txt");
    let entry_file = s.write("entry.toml", &counter("counter4", lib, &out4, "", ""));
    let loaded = cli_ok(&s, &["load", "--entry", entry_file.to_str().unwrap()]);
    assert_eq!(loaded["state"], "running", "{loaded}");
    let changed = s.write(
        "entry2.toml",
        &counter("counter4", lib, &out4, "", "explicit_acks = true"),
    );
    let reloaded = cli_ok(
        &s,
        &["reload", "counter4", "--entry", changed.to_str().unwrap()],
    );
    assert_eq!(reloaded["state"], "running", "{reloaded}");
    let bad = cli(
        &s,
        &["load", "--entry", s.path("none.toml").to_str().unwrap()],
    );
    assert_eq!(bad.code(), Some(2));
    assert!(
        bad.stderr.contains("none.toml: cannot read it"),
        "{}",
        bad.stderr
    );

    // reload: a new instance (new load time), same library, no gap.
    let reloaded = cli_ok(&s, &["reload", "counter"]);
    assert!(
        reloaded["loaded_at_ms"].as_u64() > Some(loaded_at),
        "{reloaded}"
    );
    assert_eq!(reloaded["checksum"], crc32(lib), "{reloaded}");
    assert_eq!(reloaded["cursor"], 14, "{reloaded}");
    commit(&node.http, &key, 1);
    wait_for_lines(&out, 15);
    assert_eq!(seqs(&out), (1..=15).collect::<Vec<_>>());
    wait_for_lines(&out4, 1);
    assert_eq!(seqs(&out4), [15]);

    // restart after `failed`: the fault is fixed, the plugin runs again and
    // gets the event it failed on. Only once it has written event 15 may
    // the fault appear, or it fails on 15 instead (a CI run, loaded, did).
    wait_for_lines(&s.path("fragile.txt"), 15);
    std::fs::write(&broken, "").unwrap();
    commit(&node.http, &key, 1);
    wait_until("fragile failed", || {
        plugin(&node.admin, "fragile").unwrap()["state"] == "failed"
    });
    let p = plugin(&node.admin, "fragile").unwrap();
    assert!(
        p["failure"]
            .as_str()
            .unwrap()
            .contains("on_failure = \"disable\""),
        "{p}"
    );
    assert_eq!(p["cursor"], 15, "{p}");
    std::fs::remove_file(&broken).unwrap();
    let restarted = cli_ok(&s, &["restart", "fragile"]);
    assert_ne!(restarted["state"], "failed", "{restarted}");
    wait_for_lines(&s.path("fragile.txt"), 16);
    assert_eq!(seqs(&s.path("fragile.txt")), (1..=16).collect::<Vec<_>>());

    // Errors name the plugin and what to do.
    let missing = cli(&s, &["pause", "nosuch"]);
    assert_eq!(missing.code(), Some(1));
    assert!(
        missing.stderr.contains("404: no plugin `nosuch` is loaded"),
        "{}",
        missing.stderr
    );
    let (status, wrong) = act(&node.admin, "counter", "explode");
    assert_eq!(status, 404, "{wrong}");
    assert!(
        wrong["message"]
            .as_str()
            .unwrap()
            .contains("the actions are unload, reload, restart, pause and resume"),
        "{wrong}"
    );

    stop(node);
    // The node is not running: the CLI says so, and where it looked.
    let down = cli(&s, &["list"]);
    assert_eq!(down.code(), Some(1));
    let config = s.path("config.toml");
    assert!(
        down.stderr.contains(&format!(
            "cannot reach the admin API at http://127.0.0.1:{port}"
        )) && down.stderr.contains(&format!(
            "is the node running with {}? ([admin] bind)",
            config.display()
        )),
        "{}",
        down.stderr
    );
    assert_eq!(down.stderr.lines().count(), 1, "{}", down.stderr);
    for (bind, says) in [
        (
            "127.0.0.1:0",
            "port 0 is a different free port at each start",
        ),
        ("off", "this node has no admin API"),
    ] {
        write_config(&s, "", &format!("bind = {bind:?}"), "");
        let out = cli(&s, &["list"]);
        assert_eq!(out.code(), Some(1));
        assert!(out.stderr.contains(says), "{bind}: {}", out.stderr);
    }
}

#[test]
fn sighup_and_reload_config_apply_a_good_file_and_refuse_a_bad_one_whole() {
    let s = Sandbox::new();
    let port = free_port();
    let lib = counter_lib();
    let admin = format!("bind = \"127.0.0.1:{port}\"");
    let (a, b, c) = (s.path("a.txt"), s.path("b.txt"), s.path("c.txt"));
    write_config(
        &s,
        "",
        &admin,
        &(counter("a", lib, &a, "", "") + &counter("b", lib, &b, "", "")),
    );
    let mut node = start(&s);
    let key = key(32);
    commit(&node.http, &key, 3);
    wait_for_lines(&a, 3);
    wait_for_lines(&b, 3);
    let b_loaded = plugin(&node.admin, "b").unwrap()["loaded_at_ms"].clone();

    // a removed, b changed, c added; SIGHUP.
    let good = counter("b", lib, &b, "", "explicit_acks = true") + &counter("c", lib, &c, "", "");
    write_config(&s, "", &admin, &good);
    node.host.signal(libc::SIGHUP);
    let applied = node
        .host
        .wait_for_log_line("configuration reloaded from", PATIENCE);
    assert!(
        applied.contains(r#""loaded":["c"]"#)
            && applied.contains(r#""unloaded":["a"]"#)
            && applied.contains(r#""reloaded":["b"]"#),
        "{applied}"
    );
    assert_eq!(names(&node.admin), ["b", "c"]);
    let b_now = plugin(&node.admin, "b").unwrap();
    assert_ne!(b_now["loaded_at_ms"], b_loaded, "{b_now}");
    commit(&node.http, &key, 2);
    wait_for_lines(&b, 5);
    wait_for_lines(&c, 2);
    settle();
    assert_eq!(seqs(&a), [1, 2, 3], "an unloaded plugin got events");
    assert_eq!(seqs(&b), [1, 2, 3, 4, 5]);
    assert_eq!(seqs(&c), [4, 5]);

    // Bad files: refused whole, the running set stays as it was.
    let before = node.admin.get("/admin/v1/plugins").1["plugins"].clone();
    let changed_b = counter("b", lib, &b, "", "");
    let config = s.path("config.toml");
    // (host keys, plugins, the CLI's exit status, what it and the log say)
    let cases = [
        // Not TOML: the CLI cannot read its own address in it, and says
        // where the mistake is; SIGHUP has the node refuse it.
        (
            "",
            format!("{changed_b}[[plugins]\nname = \"d\"\n"),
            2,
            format!("{}:", config.display()),
        ),
        // A mistake outside [admin]: the node refuses it.
        (
            "store_cache_mb = 0",
            changed_b.clone(),
            1,
            "422: configuration".to_owned(),
        ),
        // A plugin that cannot load: the other changes are not applied.
        (
            "",
            format!(
                "{changed_b}{}",
                counter("d", &s.path("libmissing.so"), &s.path("d.txt"), "", "")
            ),
            1,
            format!(
                "422: plugin `d` ({}): file does not exist",
                s.path("libmissing.so").display()
            ),
        ),
    ];
    let mut refusals = 0;
    for (i, (host, plugins, code, says)) in cases.iter().enumerate() {
        write_config(&s, host, &admin, plugins);
        let refused = cli(&s, &["reload-config"]);
        assert_eq!(refused.code(), Some(*code), "{}", refused.stdout);
        assert!(refused.stderr.contains(says.as_str()), "{}", refused.stderr);
        // The node logs each refusal: the CLI's (when it got there), SIGHUP's.
        refusals += if *code == 1 { 2 } else { 1 };
        node.host.signal(libc::SIGHUP);
        wait_until("the refusals are logged", || {
            support::node::count(&node.host.log(), "configuration not reloaded") >= refusals
        });
        let logged = node
            .host
            .log()
            .lines()
            .filter(|l| l.contains("configuration not reloaded"))
            .all(|l| l.contains("ERROR"));
        assert!(logged, "{}", node.host.log());
        let after = node.admin.get("/admin/v1/plugins").1["plugins"].clone();
        let strip = |v: &Value| -> Vec<(Value, Value, Value)> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        p["name"].clone(),
                        p["loaded_at_ms"].clone(),
                        p["state"].clone(),
                    )
                })
                .collect()
        };
        assert_eq!(strip(&after), strip(&before), "case {i}");
    }
    stop(node);
}

/// What the switch from v1 to v2 looked like in one plugin's output.
struct Switch {
    /// The output's lines, each version in one run: v1s, then v2s.
    v1_last: Line,
    v2_first: Line,
    duplicates: usize,
}

/// Checks one output of the reload test: every event from 1 to `head` in
/// order, v1's lines then v2's, v2 starting right after v1's last (with
/// `exactly_once`) or at most at it (at-least-once: the ones handled
/// around the switch may come twice).
fn check_switch(path: &Path, head: u64, exactly_once: bool) -> Switch {
    let all = lines(path);
    let name = path.display();
    let v1_end = all
        .iter()
        .position(|l| l.version == "v2")
        .unwrap_or_else(|| panic!("{name}: no v2 line"));
    assert!(v1_end > 0, "{name}: no v1 line");
    assert!(
        all[v1_end..].iter().all(|l| l.version == "v2"),
        "{name}: v1 after v2"
    );
    let got: Vec<u64> = all.iter().map(|l| l.seq).collect();
    let mut distinct = got.clone();
    distinct.dedup();
    let duplicates = got.len() - distinct.len();
    if exactly_once {
        if got != (1..=head).collect::<Vec<_>>() {
            let first = got.iter().zip(1..).position(|(g, w)| *g != w);
            panic!(
                "{name}: {} lines for {head} events; first difference at line {first:?}: {:?}",
                got.len(),
                first.map(|i| &all[i.saturating_sub(2)..(i + 2).min(all.len())])
            );
        }
    } else {
        assert!(
            got.windows(2).all(|w| w[1] == w[0] || w[1] == w[0] + 1) && got[0] == 1,
            "{name}: a gap or a reordering: {got:?}"
        );
        assert_eq!(got.last(), Some(&head), "{name}");
    }
    let (v1_last, v2_first) = (all[v1_end - 1].clone(), all[v1_end].clone());
    if exactly_once {
        assert_eq!(v2_first.seq, v1_last.seq + 1, "{name}");
    } else {
        assert!(v2_first.seq <= v1_last.seq + 1, "{name}");
    }
    Switch {
        v1_last,
        v2_first,
        duplicates,
    }
}

/// Posts transactions one at a time (each committed before the next), up
/// to `max`, until told to stop: a steady flow of events.
fn traffic(base: &str, seed: u8, max: usize, stop: &AtomicBool) -> usize {
    let http = Http::new(base);
    let key = key(seed);
    let started = Instant::now();
    let mut sent = 0;
    while sent < max && !stop.load(Ordering::Acquire) && started.elapsed() < PATIENCE {
        commit(&http, &key, 1);
        sent += 1;
        std::thread::sleep(Duration::from_millis(2));
    }
    sent
}

#[test]
fn reload_and_unload_load_under_load_hand_over_exactly_once_in_thread_and_process_mode() {
    let s = Sandbox::new();
    let port = free_port();
    let lib = built_v1().1.clone();
    let v1 = crc32(&lib);
    // Thread and process mode; explicit acknowledgements and not; reload,
    // and unload + load.
    let modes = [
        ("thread", "isolation = \"thread\""),
        ("process", "isolation = \"process\""),
    ];
    let mut plugins = String::new();
    for (mode, isolation) in modes {
        plugins += &counter(
            &format!("rl_{mode}"),
            &lib,
            &s.path(&format!("rl_{mode}.txt")),
            isolation,
            "explicit_acks = true",
        );
        plugins += &counter(
            &format!("rl_{mode}_implicit"),
            &lib,
            &s.path(&format!("rl_{mode}_implicit.txt")),
            isolation,
            "",
        );
        plugins += &counter(
            &format!("ul_{mode}"),
            &lib,
            &s.path(&format!("ul_{mode}.txt")),
            isolation,
            "explicit_acks = true",
        );
    }
    write_config(&s, "", &format!("bind = \"127.0.0.1:{port}\""), &plugins);
    let node = start(&s);
    let stop_traffic = AtomicBool::new(false);
    let base = node.http.base.clone();
    std::thread::scope(|scope| {
        let _stop = SetOnDrop(&stop_traffic);
        let poster = scope.spawn(|| traffic(&base, 33, 5_000, &stop_traffic));
        for (mode, _) in modes {
            wait_for_lines(&s.path(&format!("ul_{mode}.txt")), 20);
        }
        for (mode, _) in modes {
            let (status, unloaded) = act(&node.admin, &format!("ul_{mode}"), "unload");
            assert_eq!(status, 200, "{unloaded}");
        }

        // v2, built at the same path while v1 runs and events flow.
        let rebuilt = external("lifecycle_switch", &counter_source("v2"));
        assert_eq!(rebuilt[0], lib);
        let v2 = crc32(&lib);
        assert_ne!(v1, v2);

        let mut figures = Vec::new();
        for (mode, _) in modes {
            for name in [format!("rl_{mode}"), format!("rl_{mode}_implicit")] {
                let asked = now_us();
                let (status, reloaded) = if mode == "process" && name.ends_with("implicit") {
                    (200, cli_ok(&s, &["reload", &name]))
                } else {
                    act(&node.admin, &name, "reload")
                };
                let answered = now_us();
                assert_eq!(status, 200, "{reloaded}");
                assert_eq!(reloaded["checksum"], v2.as_str(), "{reloaded}");
                assert_eq!(reloaded["file"], lib.display().to_string());
                figures.push((name, asked, answered));
            }
        }
        for (mode, _) in modes {
            let loaded = cli_ok(&s, &["load", &format!("ul_{mode}")]);
            assert_eq!(loaded["checksum"], v2.as_str(), "{loaded}");
        }
        // A reload that fails to start: the error is returned, and the
        // running instance goes on where it was.
        for (mode, isolation) in modes {
            let name = format!("rl_{mode}");
            let before = plugin(&node.admin, &name).unwrap()["loaded_at_ms"].clone();
            let entry = json!({"entry": {
                "name": name, "path": lib, "isolation": isolation.split('"').nth(1).unwrap(),
                "config": {"output": s.path(&format!("{name}.txt")), "explicit_acks": true, "fail_at_start": true},
            }});
            let (status, refused) = node.admin.post(
                &format!("/admin/v1/plugins/{name}/reload"),
                &entry.to_string(),
            );
            assert_eq!(status, 422, "{refused}");
            let message = refused["message"].as_str().unwrap();
            assert!(
                message.contains(&format!("plugin `{name}` did not start"))
                    && message.contains("v2 cannot start: fail_at_start is set")
                    && message.contains("the previous instance runs again"),
                "{message}"
            );
            let p = plugin(&node.admin, &name).unwrap();
            assert_eq!(p["checksum"], v2.as_str(), "{p}");
            assert_ne!(p["loaded_at_ms"], before, "{p}");
            let lines_now = lines(&s.path(&format!("{name}.txt"))).len();
            wait_for_lines(&s.path(&format!("{name}.txt")), lines_now + 10);
        }
        stop_traffic.store(true, Ordering::Release);
        let sent = poster.join().expect("the traffic thread");
        let head = head(&node.admin);
        assert!(head >= sent as u64, "{head} < {sent}");
        for name in names(&node.admin) {
            wait_for_lines(&s.path(&format!("{name}.txt")), head as usize);
        }

        for (mode, _) in modes {
            for (name, exactly_once) in [
                (format!("rl_{mode}"), true),
                (format!("ul_{mode}"), true),
                (format!("rl_{mode}_implicit"), false),
            ] {
                let switch = check_switch(&s.path(&format!("{name}.txt")), head, exactly_once);
                eprintln!(
                    "{name}: v1 handled up to event {}, v2 from event {}; {} event(s) twice",
                    switch.v1_last.seq, switch.v2_first.seq, switch.duplicates
                );
                if let Some((_, asked, answered)) = figures.iter().find(|f| f.0 == name) {
                    eprintln!(
                        "figure: {name}: reload asked -> v2's first event {:.1} ms (answer after {:.1} ms; v1's last event -> v2's first {:.1} ms)",
                        (switch.v2_first.at_us - asked) as f64 / 1000.0,
                        (answered - asked) as f64 / 1000.0,
                        (switch.v2_first.at_us - switch.v1_last.at_us) as f64 / 1000.0,
                    );
                }
            }
        }
        eprintln!("{head} events, {sent} transactions posted");
    });
    stop(node);
}

#[test]
fn thread_mode_reloads_leave_their_library_mapped_and_remove_their_copies() {
    const CYCLES: usize = 20;
    let s = Sandbox::new();
    let lib = counter_lib();
    let out = s.path("out.txt");
    write_config(
        &s,
        "",
        "bind = \"127.0.0.1:0\"",
        &counter("counter", lib, &out, "", ""),
    );
    let node = start(&s);
    let copies = s.path("data/plugin-libraries");
    let reload = || {
        let (status, body) = act(&node.admin, "counter", "reload");
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["state"], "running", "{body}");
        body
    };
    // The first reload allocates what every later one reuses.
    reload();
    let before = node.host.rss_kib().expect("the node's RSS");
    let started = Instant::now();
    let mut last = Value::Null;
    for _ in 0..CYCLES {
        last = reload();
    }
    let took = started.elapsed();
    let after = node.host.rss_kib().expect("the node's RSS");
    // Only the running instance's copy is left.
    let left: Vec<_> = std::fs::read_dir(&copies)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(
        last["loaded_from"]
            .as_str()
            .unwrap()
            .ends_with(left[0].to_str().unwrap()),
        "{last}"
    );
    // The deleted copies stay mapped (abi_stable never unloads a library).
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", node.host.pid())).unwrap();
    let mapped: std::collections::HashSet<&str> = maps
        .lines()
        .filter(|l| l.contains("plugin-libraries/counter."))
        .filter_map(|l| l.split_whitespace().nth(5))
        .collect();
    assert!(mapped.len() > CYCLES, "{mapped:?}");
    let size = std::fs::metadata(lib).unwrap().len() / 1024;
    eprintln!(
        "figure: thread-mode reload: {:.0} KiB of RSS per cycle ({before} KiB -> {after} KiB over {CYCLES} reloads of a {size} KiB library, {:.0} ms each)",
        after.saturating_sub(before) as f64 / CYCLES as f64,
        took.as_millis() as f64 / CYCLES as f64
    );
    stop(node);
    // A node killed with copies in place: the next start removes them.
    let node = start(&s);
    let (status, body) = act(&node.admin, "counter", "reload");
    assert_eq!(status, 200, "{body}");
    assert_eq!(std::fs::read_dir(&copies).unwrap().count(), 1);
    node.host.signal(libc::SIGKILL);
    node.host.wait(PATIENCE);
    let node = start(&s);
    let left = std::fs::read_dir(&copies).unwrap().count();
    assert_eq!(left, 0, "stale copies were left");
    stop(node);
}

#[test]
fn failure_policies_restart_disable_and_stop_the_node_and_ready_reports_a_required_plugin() {
    let s = Sandbox::new();
    let lib = counter_lib();
    let broken = s.path("broken");
    let fail_while = format!("fail_while = {broken:?}");
    write_config(
        &s,
        "restart_max_failures = 1000\nrestart_max_backoff_ms = 100",
        "bind = \"127.0.0.1:0\"",
        &(counter(
            "restarter",
            lib,
            &s.path("restarter.txt"),
            // Not poison however often it fails on the event.
            "required = false\nmax_event_failures = 1000",
            &fail_while,
        ) + &counter(
            "disabled",
            lib,
            &s.path("disabled.txt"),
            "on_failure = \"disable\"",
            &fail_while,
        )),
    );
    let node = start(&s);
    assert_eq!(node.http.get("/health/ready").0, 200);
    let key = key(34);
    commit(&node.http, &key, 2);
    wait_for_lines(&s.path("restarter.txt"), 2);
    std::fs::write(&broken, "").unwrap();
    commit(&node.http, &key, 1);
    wait_until("disabled failed and restarter restarted twice", || {
        plugin(&node.admin, "disabled").unwrap()["state"] == "failed"
            && plugin(&node.admin, "restarter").unwrap()["restarts"].as_u64() >= Some(2)
    });
    let (status, ready) = node.http.get("/health/ready");
    assert_eq!(status, 503, "{ready}");
    let problems = ready["problems"].to_string();
    assert!(
        problems.contains("required plugin `disabled` is failed: disabled after a failure (on_failure = \\\"disable\\\"): v1 fails while"),
        "{ready}"
    );
    assert!(
        !problems.contains("restarter"),
        "an optional plugin: {ready}"
    );
    // The fault goes away: the restarting plugin catches up, exactly once;
    // the disabled one stays failed until restarted.
    std::fs::remove_file(&broken).unwrap();
    wait_for_lines(&s.path("restarter.txt"), 3);
    assert_eq!(seqs(&s.path("restarter.txt")), [1, 2, 3]);
    settle();
    assert_eq!(plugin(&node.admin, "disabled").unwrap()["state"], "failed");
    assert_eq!(node.http.get("/health/ready").0, 503);
    cli_ok_at(&node.admin, "disabled", "restart");
    wait_for_lines(&s.path("disabled.txt"), 3);
    wait_until("ready again", || node.http.get("/health/ready").0 == 200);
    stop(node);

    // stop-node: the node stops, with status 3 and the reason.
    let s = Sandbox::new();
    write_config(
        &s,
        "",
        "bind = \"127.0.0.1:0\"",
        &counter(
            "auditor",
            lib,
            &s.path("audit.txt"),
            "on_failure = \"stop-node\"",
            "explicit_acks = true\nfail_on_heights = [3]",
        ),
    );
    let node = start(&s);
    let http = Http::new(&node.http.base);
    for _ in 0..3 {
        let tx = builder::create(
            &key,
            &[(key.public_key(), 1)],
            json!({"n": now_us().to_string()}),
            Value::Null,
        );
        // The last one may meet a node that is already stopping.
        let _ = http.try_post("/api/v1/transactions?mode=commit", &tx.to_string());
    }
    let (status, _, log) = node.host.wait(PATIENCE);
    assert_eq!(status.code(), Some(3), "{log}");
    let heights: Vec<u64> = lines(&s.path("audit.txt"))
        .iter()
        .map(|l| l.height)
        .collect();
    assert!(!heights.contains(&3), "{heights:?}");
    let reason = log
        .lines()
        .rev()
        .find(|l| l.contains("ERROR"))
        .unwrap_or_default();
    assert!(
        reason
            .contains("plugin `auditor` failed (on_failure = \"stop-node\"): v1 refuses height 3"),
        "{log}"
    );
}

/// An action over HTTP that must succeed.
fn cli_ok_at(admin: &Http, name: &str, action: &str) -> Value {
    let (status, body) = act(admin, name, action);
    assert_eq!(status, 200, "{action} {name}: {body}");
    body
}

#[test]
fn poison_events_halt_a_plugin_or_go_to_its_dead_letters_and_replay_re_drives_them() {
    let s = Sandbox::new();
    let port = free_port();
    let lib = counter_lib();
    let key = key(35);
    // The third event's height: blocks are numbered from the node's first.
    let poison_height = 3;
    let poisoned = format!("explicit_acks = true\nfail_on_heights = [{poison_height}]");
    let mut plugins = counter(
        "halter",
        lib,
        &s.path("halter.txt"),
        "poison = \"halt\"\nmax_event_failures = 2\nrequired = false",
        &poisoned,
    );
    for (name, isolation) in [("skipper", "thread"), ("skipper_p", "process")] {
        plugins += &counter(
            name,
            lib,
            &s.path(&format!("{name}.txt")),
            &format!("poison = \"skip\"\nmax_event_failures = 2\nisolation = \"{isolation}\""),
            &poisoned,
        );
    }
    write_config(&s, "", &format!("bind = \"127.0.0.1:{port}\""), &plugins);
    let node = start(&s);
    commit(&node.http, &key, 5);
    wait_for_lines(&s.path("skipper.txt"), 4);
    wait_for_lines(&s.path("skipper_p.txt"), 4);
    wait_until("halter halted", || {
        plugin(&node.admin, "halter").unwrap()["state"] == "failed"
    });

    // halt: the plugin stops at the event, which is named.
    let halter = plugin(&node.admin, "halter").unwrap();
    let failure = halter["failure"].as_str().unwrap();
    assert!(
        failure.contains("halted: failed 2 times on event 3 (poison = \"halt\")")
            && failure.contains(&format!("v1 refuses height {poison_height}")),
        "{halter}"
    );
    assert_eq!(halter["cursor"], 2, "{halter}");
    assert_eq!(seqs(&s.path("halter.txt")), [1, 2]);

    // skip: recorded, counted, the cursor past it, the plugin goes on.
    for name in ["skipper", "skipper_p"] {
        assert_eq!(
            seqs(&s.path(&format!("{name}.txt"))),
            [1, 2, 4, 5],
            "{name}"
        );
        let p = plugin(&node.admin, name).unwrap();
        assert_eq!(
            (
                p["state"].as_str(),
                p["cursor"].as_u64(),
                p["dead_letters"].as_u64()
            ),
            (Some("running"), Some(5), Some(1)),
            "{p}"
        );
        assert_eq!(
            metric(&node.http, "eventhost_plugin_dead_letters_total", name),
            Some(1.0),
            "{name}"
        );
        let file = s.path(&format!("data/dead-letter/{name}.jsonl"));
        let letters = support::read_jsonl(&file);
        assert_eq!(letters.len(), 1, "{letters:?}");
        let letter = &letters[0];
        assert_eq!(
            (
                letter["seq"].as_u64(),
                letter["height"].as_u64(),
                letter["type"].as_str()
            ),
            (Some(3), Some(poison_height), Some("BLOCK_VALID")),
            "{letter}"
        );
        assert_eq!(letter["transactions"].as_array().map(Vec::len), Some(1));
        assert_eq!(letter["dead_letter"]["plugin"], name);
        assert!(
            letter["dead_letter"]["error"]
                .as_str()
                .unwrap()
                .contains(&format!("v1 refuses height {poison_height}")),
            "{letter}"
        );
        let listed = cli_ok(&s, &["dead-letters", name]);
        assert_eq!(listed["file"], file.display().to_string(), "{listed}");
        assert_eq!(listed["dead_letters"], json!(letters), "{listed}");
    }
    let none = cli_ok(&s, &["dead-letters", "halter"]);
    assert_eq!(none["dead_letters"], json!([]), "{none}");
    commit(&node.http, &key, 1);
    wait_for_lines(&s.path("skipper.txt"), 5);
    stop(node);

    // Re-drive: the dead-letter file replayed to the fixed plugin.
    let redriven = s.path("redriven.txt");
    s.write(
        "redrive.toml",
        &counter("skipper", lib, &redriven, "", "explicit_acks = true"),
    );
    let file = s.path("data/dead-letter/skipper.jsonl");
    let replay = s
        .eventhost(&["replay", file.to_str().unwrap()])
        .arg("--config")
        .arg(s.path("redrive.toml"))
        .output()
        .expect("run eventhost replay");
    let stderr = String::from_utf8_lossy(&replay.stderr);
    assert_eq!(replay.status.code(), Some(0), "{stderr}");
    let redone = lines(&redriven);
    assert_eq!(redone.len(), 1, "{redone:?}");
    assert_eq!(redone[0].height, poison_height);
}

/// A request to the admin API with this `Authorization` header, if any.
fn authorized(base: &str, authorization: Option<&str>) -> (u16, String, Option<String>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut request = agent.get(format!("{base}/admin/v1/plugins"));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let mut response = request.call().expect("an answer");
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let status = response.status().as_u16();
    (
        status,
        response.body_mut().read_to_string().unwrap(),
        challenge,
    )
}

#[test]
fn the_admin_api_refuses_requests_without_a_token_and_a_reachable_bind_without_tokens() {
    let s = Sandbox::new();
    let port = free_port();
    let (t1, t2) = (
        "first-token-0123456789abcdef",
        "second-token-from-the-file-42",
    );
    s.write("tokens.txt", &format!("# admin tokens\n{t2}\n"));
    write_config(
        &s,
        "",
        &format!("bind = \"127.0.0.1:{port}\"\ntokens = [{t1:?}]\ntokens_file = \"tokens.txt\""),
        &counter("counter", counter_lib(), &s.path("out.txt"), "", ""),
    );
    let node = start(&s);
    let base = &node.admin.base;
    for (authorization, accepted) in [
        (None, false),
        (Some(format!("Bearer {}", t1.replace('0', "1"))), false),
        (Some(format!("Basic {t1}")), false),
        (Some(t1.to_owned()), false),
        (Some(format!("Bearer {t1}")), true),
        (Some(format!("bearer {t1}")), true),
        (Some(format!("BEARER {t2}")), true),
    ] {
        let (status, body, challenge) = authorized(base, authorization.as_deref());
        if accepted {
            assert_eq!(status, 200, "{authorization:?}: {body}");
        } else {
            assert_eq!(status, 401, "{authorization:?}: {body}");
            assert_eq!(challenge.as_deref(), Some("Bearer"));
            assert!(
                body.contains("needs `Authorization: Bearer <token>`"),
                "{body}"
            );
            assert!(!body.contains(t1) && !body.contains(t2), "{body}");
        }
    }
    // The CLI sends the config's token.
    assert_eq!(cli_ok(&s, &["list"])["plugins"][0]["name"], "counter");
    let log = stop(node);
    assert!(!log.contains(t1) && !log.contains(t2), "a token in the log");

    // A bind other hosts can reach needs tokens: refused at start.
    write_config(&s, "", "bind = \"0.0.0.0:0\"", "");
    let refused = s.run(&["run"]);
    assert_eq!(refused.code(), Some(2), "{}", refused.stderr);
    assert!(
        refused.stderr.contains(
            "[admin] bind = \"0.0.0.0:0\" can be reached from other hosts, so it needs tokens (`tokens` or `tokens_file`); or bind it to 127.0.0.1"
        ),
        "{}",
        refused.stderr
    );
    write_config(&s, "", "bind = \"127.0.0.1:0\"\ntokens = [\"short\"]", "");
    let short = s.run(&["run"]);
    assert_eq!(short.code(), Some(2), "{}", short.stderr);
    assert!(
        short
            .stderr
            .contains("[admin] token #1 is shorter than 16 characters")
    );
    assert!(!short.stderr.contains("\"short\""), "{}", short.stderr);
}

/// The `file:line:column` of the first occurrence of `needle` in `path`.
fn position(path: &Path, needle: &str) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let (line, column) = text
        .lines()
        .enumerate()
        .find_map(|(i, l)| l.find(needle).map(|c| (i + 1, c + 1)))
        .unwrap_or_else(|| panic!("{needle} not in {}", path.display()));
    format!("{}:{line}:{column}", path.display())
}

#[test]
fn a_plugins_table_is_checked_in_check_config_load_and_reload_with_its_line_and_column() {
    let s = Sandbox::new();
    let port = free_port();
    let lib = counter_lib();
    let admin = format!("bind = \"127.0.0.1:{port}\"");
    let good = counter("good", lib, &s.path("good.txt"), "", "");
    let typo = counter(
        "typo",
        lib,
        &s.path("typo.txt"),
        "required = false",
        "explicit_ack = true",
    );
    let config = write_config(&s, "", &admin, &(good.clone() + &typo));
    let at = position(&config, "explicit_ack");
    let says = format!("its [plugins.config] is invalid at {at}: unknown field `explicit_ack`");

    let check = s.run(&["check-config"]);
    assert_eq!(check.code(), Some(3), "{}", check.stdout);
    assert!(check.stdout.contains(&says), "{}", check.stdout);

    let node = start(&s);
    assert_eq!(names(&node.admin), ["good"]);
    assert!(node.host.log().contains(&says), "{}", node.host.log());
    // load (by name, from the file).
    let load = cli(&s, &["load", "typo"]);
    assert_eq!(load.code(), Some(1));
    assert!(
        load.stderr.contains("422") && load.stderr.contains(&says),
        "{}",
        load.stderr
    );
    // reload with a whole entry: no line in config.toml to point at, the
    // key named.
    let entry = json!({"entry": {"name": "good", "path": lib, "config": {"output": s.path("good.txt"), "delay": 1}}});
    let (status, refused) = node
        .admin
        .post("/admin/v1/plugins/good/reload", &entry.to_string());
    assert_eq!(status, 422, "{refused}");
    let message = refused["message"].as_str().unwrap();
    assert!(
        message.contains("its [plugins.config] is invalid: unknown field `delay`")
            && !message.contains("config.toml:"),
        "{message}"
    );
    // reload-config with the running plugin's table changed.
    let changed = counter(
        "good",
        lib,
        &s.path("good.txt"),
        "",
        "delay_ms = 1\nexplicit_acks = \"yes\"",
    );
    let config = write_config(&s, "", &admin, &changed);
    let at = position(&config, "explicit_acks");
    let refused = cli(&s, &["reload-config"]);
    assert_eq!(refused.code(), Some(1));
    assert!(
        refused.stderr.contains(&format!("its [plugins.config] is invalid at {at}: `explicit_acks`: invalid type: a string, expected a boolean")),
        "{}",
        refused.stderr
    );
    assert_eq!(plugin(&node.admin, "good").unwrap()["state"], "running");
    stop(node);
}

#[test]
fn what_a_plugin_author_sees() {
    let s = Sandbox::new();
    let lib = counter_lib();
    let mut plugins = String::new();
    for (name, isolation) in [("panicky", "thread"), ("panicky_p", "process")] {
        plugins += &counter(
            name,
            lib,
            &s.path(&format!("{name}.txt")),
            &format!("isolation = \"{isolation}\"\non_failure = \"disable\"\nrequired = false"),
            "panic_on_heights = [1]",
        );
    }
    plugins += &counter(
        "sleepy",
        lib,
        &s.path("sleepy.txt"),
        "",
        "never_ready = true",
    );
    plugins += &counter(
        "broken",
        lib,
        &s.path("broken.txt"),
        "required = false",
        "fail_at_start = true",
    );
    write_config(
        &s,
        "startup_timeout_ms = 1000",
        "bind = \"127.0.0.1:0\"",
        &plugins,
    );
    let node = start(&s);
    let log = node.host.log();
    // The ready timeout says what to check.
    let timeout = log
        .lines()
        .find(|l| l.contains("has not reported ready"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        timeout.contains("sleepy")
            && timeout.contains("after 1000 ms (startup_timeout_ms)")
            && timeout.contains("Did its `run` call `ctx.ready()`?"),
        "{timeout}"
    );
    // An optional plugin that cannot start: one error line, with its state.
    let broken: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("broken"))
        .collect();
    assert_eq!(broken.len(), 1, "{log}");
    assert!(
        broken[0].contains("v1 cannot start: fail_at_start is set")
            && broken[0].contains("required = false"),
        "{}",
        broken[0]
    );
    // Panics name the plugin's thread, in both modes.
    commit(&node.http, &key(36), 1);
    for name in ["panicky", "panicky_p"] {
        wait_until(&format!("{name} failed"), || {
            plugin(&node.admin, name).unwrap()["state"] == "failed"
        });
        let log = node.host.log();
        // `thread 'plugin panicky' (<id>) panicked at ...` (Rust >= 1.89
        // shows the thread's id too).
        let named = format!("thread 'plugin {name}' ");
        assert!(
            log.lines()
                .any(|l| l.starts_with(&named) && l.contains("panicked at")),
            "{log}"
        );
    }
    // Not `stop`: this log has the plugins' panics in it.
    node.host.signal(libc::SIGTERM);
    let (status, _, log) = node.host.wait(PATIENCE);
    assert!(status.success(), "{log}");
    assert_eq!(support::node::count(&log, "panicked at"), 2, "{log}");

    // A crate built without `crate-type = ["cdylib"]`.
    let rlib = build_external_rlib(&ExternalPlugin {
        name: "lifecycle_rlib_only",
        source: &counter_source("v1"),
        api: repo_root().join("plugin-api"),
    });
    let s = Sandbox::new();
    s.write(
        "config.toml",
        &format!(
            "[host]\nplugin_dirs = [{:?}]\n[admin]\nbind = \"off\"\n[[plugins]]\nname = \"lifecycle_rlib_only\"\n",
            rlib.parent().unwrap()
        ),
    );
    let check = s.run(&["check-config"]);
    assert_eq!(check.code(), Some(3), "{}", check.stdout);
    assert!(
        check.stdout.contains(&format!(
            "only {} is there, a Rust library the host cannot load: add `crate-type = [\"cdylib\"]` to the [lib] table of the plugin's Cargo.toml",
            rlib.display()
        )),
        "{}",
        check.stdout
    );

    // replay exits non-zero when a required plugin failed and missed events.
    let s = Sandbox::new();
    write_config(
        &s,
        "",
        "bind = \"off\"",
        &counter(
            "required",
            lib,
            &s.path("out.txt"),
            "on_failure = \"disable\"",
            "fail_on_heights = [2]",
        ),
    );
    let events = s.events(5, 0);
    let replay = s.run(&["replay", events.to_str().unwrap()]);
    assert_eq!(replay.code(), Some(3), "{}", replay.stderr);
    assert!(
        replay
            .stderr
            .contains("required plugin failed and missed events after 1 of 5"),
        "{}",
        replay.stderr
    );
}
