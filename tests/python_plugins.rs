//! BigchainDB's Python event plugins on eventhost (issue 17): the real
//! binary, the python plugin library, and plugin packages pip-installed
//! into a virtualenv (tests/fixtures/python/setup.sh, run from here), each
//! plugin in a child process of its own. Transactions go through the HTTP
//! API; what the plugins print lands in the node's log, which the tests read.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use eventhost::sources::ledger::builder::{self, Keypair};
use eventhost::sources::ledger::transaction::OutputRef;
use serde_json::{Value, json};
use support::{Http, Running, Sandbox, build_dir, repo_root};

/// The virtualenv with the fixture plugins (target/python-plugins/venv),
/// made or brought up to date once per run of this file.
fn venv() -> &'static Path {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| {
        let venv = build_dir()
            .parent()
            .expect("target/ above the build directory")
            .join("python-plugins")
            .join("venv");
        let started = Instant::now();
        let status = Command::new("bash")
            .arg(repo_root().join("tests/fixtures/python/setup.sh"))
            .arg(&venv)
            .status()
            .expect("run tests/fixtures/python/setup.sh");
        assert!(
            status.success(),
            "tests/fixtures/python/setup.sh {} failed ({status}): it needs python3 with venv and pip, and PyPI for setuptools",
            venv.display()
        );
        eprintln!(
            "fixture venv ready in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        venv
    })
}

/// A `[[plugins]]` entry running a Python plugin (in process isolation,
/// the plugin's default); `target` is the `[plugins.config]` line naming it.
fn python_plugin(name: &str, target: &str) -> String {
    format!(
        "[[plugins]]\nname = {name:?}\nlibrary = \"python\"\n[plugins.config]\n{target}\npython = {:?}\n\n",
        venv().display().to_string()
    )
}

/// Writes the sandbox's configuration: the node on a free port, with room
/// for interpreters to start on a busy machine.
fn configure(s: &Sandbox, plugins: &str) {
    s.write(
        "config.toml",
        &format!(
            "[host]\nplugin_dirs = [{:?}]\ndata_dir = \"data\"\nshutdown_timeout_ms = 1000\nstartup_timeout_ms = 60000\nrestart_backoff_ms = 10\n\n[api]\nbind = \"127.0.0.1:0\"\n\n[admin]\nbind = \"127.0.0.1:0\"\n\n{plugins}",
            build_dir().display().to_string()
        ),
    );
}

/// Starts the node; the fixture plugins write their files into the sandbox.
fn start(s: &Sandbox) -> (Running, Http) {
    let dir = s.path("");
    let mut host = s.spawn_with_env(&["run"], &[("EVENTHOST_TEST_DIR", dir.to_str().unwrap())]);
    let http = host.http();
    (host, http)
}

fn id(tx: &Value) -> &str {
    tx["id"].as_str().expect("transaction id")
}

/// Commits `count` CREATEs, one block each; returns them.
fn commit_creates(http: &Http, seed: u8, count: usize) -> Vec<Value> {
    let key = Keypair::from_seed([seed; 32]);
    (0..count)
        .map(|i| {
            let tx = builder::create(&key, &[(key.public_key(), 1)], json!({"i": i}), Value::Null);
            let (status, body) = http.post("/api/v1/transactions?mode=commit", &tx.to_string());
            assert_eq!(status, 202, "{body}");
            tx
        })
        .collect()
}

/// The messages `plugin` wrote into the log, in order, with their levels.
fn plugin_lines(log: &str, plugin: &str) -> Vec<(String, String)> {
    let tag = format!(" plugin=\"{plugin}\"");
    log.lines()
        .filter(|l| l.contains(" eventhost::plugin: ") && l.ends_with(&tag))
        .map(|l| {
            let level = l.split_whitespace().nth(1).unwrap_or("").to_owned();
            let message = l.split(" eventhost::plugin: ").nth(1).unwrap();
            (level, message[..message.len() - tag.len()].to_owned())
        })
        .collect()
}

/// What `plugin` printed: its INFO lines.
fn printed(log: &str, plugin: &str) -> Vec<String> {
    plugin_lines(log, plugin)
        .into_iter()
        .filter(|(level, _)| level == "INFO")
        .map(|(_, message)| message)
        .filter(|m| !m.starts_with("running "))
        .collect()
}

fn wait_until(
    host: &Running,
    what: &str,
    timeout: Duration,
    done: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let log = host.log();
        if done(&log) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting until {what}:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn heights(from: u64, to: u64) -> Vec<String> {
    (from..=to).map(|h| h.to_string()).collect()
}

fn stop(host: Running) -> String {
    host.signal(libc::SIGTERM);
    let (status, _, log) = host.wait(Duration::from_secs(30));
    assert!(
        status.success(),
        "the node did not stop cleanly ({status}):\n{log}"
    );
    log
}

#[test]
fn the_seeds_example_plugin_runs_unchanged_and_stops_cleanly() {
    let s = Sandbox::new();
    configure(
        &s,
        &python_plugin("console_print", "entry_point = \"console_print\""),
    );
    let (host, http) = start(&s);
    let log = host.log();
    // In a process of its own, without saying so in the configuration.
    assert!(
        log.contains("plugin process started plugin=console_print"),
        "{log}"
    );
    assert!(
        log.contains("running module events_plugin_example.plugin (entry point console_print of bigchaindb.events, package events-plugin-example 0.1.0), event_types 1 (BLOCK_VALID), python "),
        "{log}"
    );
    let creates = commit_creates(&http, 31, 4);
    // A double spend accepted asynchronously becomes a BLOCK_INVALID, which
    // the plugin (event_types = 1) does not subscribe to.
    let alice = Keypair::from_seed([31; 32]);
    let spend = OutputRef {
        transaction_id: id(&creates[0]).to_owned(),
        output_index: 0,
    };
    for note in ["first", "second"] {
        let tx = builder::transfer(
            &[(spend.clone(), &alice)],
            id(&creates[0]),
            &[(alice.public_key(), 1)],
            json!({"note": note}),
        );
        assert_eq!(
            http.post("/api/v1/transactions?mode=async", &tx.to_string())
                .0,
            202
        );
    }
    commit_creates(&http, 32, 1);
    wait_until(
        &host,
        "the plugin printed height 6",
        Duration::from_secs(30),
        |log| printed(log, "console_print").len() >= 6,
    );
    let log = stop(host);
    assert_eq!(printed(&log, "console_print"), heights(1, 6), "{log}");
    // Shutdown: get() raised eventhost.ShutDown, which ended run() cleanly.
    assert!(log.contains("plugin stopped plugin=console_print"), "{log}");
    for bad in ["Traceback", "KeyboardInterrupt", "plugin failed"] {
        assert!(!log.contains(bad), "{bad} in the log:\n{log}");
    }
}

/// The JSON an `inspect` plugin reported, in order.
fn inspected(log: &str) -> Vec<Value> {
    printed(log, "inspect")
        .iter()
        .filter_map(|m| m.strip_prefix("INSPECT "))
        .map(|j| serde_json::from_str(j).expect("inspect's JSON"))
        .collect()
}

#[test]
fn a_plugin_sees_the_queue_events_and_environment_as_documented() {
    let s = Sandbox::new();
    configure(
        &s,
        &python_plugin("inspect", "module = \"eventhost_test_plugins.inspect\""),
    );
    let (host, http) = start(&s);
    let log = wait_until(
        &host,
        "the plugin started",
        Duration::from_secs(30),
        |log| !inspected(log).is_empty(),
    );
    let start = &inspected(&log)[0];
    let venv = venv().canonicalize().unwrap();
    assert_eq!(
        start["prefix"],
        json!(venv.display().to_string()),
        "sys.prefix is the venv"
    );
    assert_eq!(
        start["executable"],
        json!(venv.join("bin/python3").display().to_string())
    );
    // get(timeout=0.2) on an empty queue waited, then raised queue.Empty.
    assert_eq!(start["empty_raised"], "Empty");
    assert_eq!(start["nowait_raised"], "Empty");
    assert_eq!(
        start["negative_timeout"],
        "'timeout' must be a non-negative number"
    );
    assert!(start["waited"].as_f64().unwrap() >= 0.19, "{start}");
    assert_eq!(
        (start["empty"].clone(), start["qsize"].clone()),
        (json!(true), json!(0))
    );
    // C extension modules load: the json scanner, ssl, decimal.
    assert_eq!(start["c_extensions"], json!([true, "OpenSSL", "2.20"]));
    // logging at INFO and up, stderr as warnings; DEBUG is below the default log_level.
    let lines = plugin_lines(&log, "inspect");
    assert!(
        lines.contains(&("INFO".into(), "inspect: logging works".into())),
        "{lines:?}"
    );
    assert!(
        lines.contains(&("WARN".into(), "stderr works".into())),
        "{lines:?}"
    );
    assert!(!log.contains("debug is below"), "{log}");

    // A valid block, another, then a double spend rejected at block time.
    let alice = Keypair::from_seed([33; 32]);
    let create = commit_creates(&http, 33, 1).remove(0);
    let spend = OutputRef {
        transaction_id: id(&create).to_owned(),
        output_index: 0,
    };
    let transfer = |note: &str| {
        builder::transfer(
            &[(spend.clone(), &alice)],
            id(&create),
            &[(alice.public_key(), 1)],
            json!({"note": note}),
        )
    };
    let (first, second) = (transfer("first"), transfer("second"));
    assert_eq!(
        http.post("/api/v1/transactions?mode=commit", &first.to_string())
            .0,
        202
    );
    assert_eq!(
        http.post("/api/v1/transactions?mode=async", &second.to_string())
            .0,
        202
    );
    let log = wait_until(
        &host,
        "the plugin saw 3 events",
        Duration::from_secs(30),
        |log| inspected(log).len() >= 4,
    );
    let events = &inspected(&log)[1..];
    let valid_keys = json!(["hash", "height", "timestamp_ms", "transactions"]);
    assert_eq!(
        events
            .iter()
            .map(|e| (
                e["type"].clone(),
                e["seq"].clone(),
                e["height"].clone(),
                e["keys"].clone()
            ))
            .collect::<Vec<_>>(),
        [
            (json!(1), json!(1), json!(1), valid_keys.clone()),
            (json!(1), json!(2), json!(2), valid_keys),
            (
                json!(2),
                json!(3),
                json!(3),
                json!([
                    "hash",
                    "height",
                    "rejections",
                    "timestamp_ms",
                    "transactions"
                ])
            ),
        ]
    );
    assert_eq!(events[0]["ids"], json!([id(&create)]));
    assert_eq!(events[1]["operations"], json!(["TRANSFER"]));
    assert_eq!(events[2]["ids"], json!([id(&second)]));
    let rejection = &events[2]["rejections"][0];
    assert_eq!(rejection["transaction_id"], json!(id(&second)));
    assert!(
        rejection["reason"]
            .as_str()
            .unwrap()
            .contains("DoubleSpend"),
        "{rejection}"
    );
    assert_eq!(events[0]["hash"].as_str().unwrap().len(), 64);
    assert_eq!(
        events[0]["same_data"],
        json!(true),
        "event.data is built once"
    );
    assert_eq!(
        events[0]["repr"],
        "Event(type=1, seq=1, height=1, transactions=1)"
    );
    stop(host);
}

#[test]
fn explicit_acknowledgements_follow_task_done_and_ack() {
    let s = Sandbox::new();
    configure(
        &s,
        &python_plugin("acks", "module = \"eventhost_test_plugins.acks\""),
    );
    let (host, http) = start(&s);
    commit_creates(&http, 34, 4);
    let log = wait_until(
        &host,
        "the plugin finished 4 events",
        Duration::from_secs(30),
        |log| {
            printed(log, "acks")
                .iter()
                .filter(|l| l.starts_with("done"))
                .count()
                >= 4
        },
    );
    assert_eq!(
        printed(&log, "acks"),
        [
            "done 1",
            "done 2",
            "refused: task_done() called too many times",
            "done 3",
            "done 4",
            "refused: task_done() called too many times"
        ]
    );
    // The host's cursor followed the acknowledgements: every event finished.
    let (_, plugins) = http.get("/api/v1/plugins");
    assert_eq!(plugins[0]["last_delivered_seq"], 4, "{plugins}");
    stop(host);
}

#[test]
fn a_plugin_that_raises_is_logged_with_its_traceback_restarted_and_loses_nothing() {
    let s = Sandbox::new();
    configure(
        &s,
        &python_plugin("raises", "module = \"eventhost_test_plugins.raises\""),
    );
    let (host, http) = start(&s);
    commit_creates(&http, 35, 5);
    let log = wait_until(
        &host,
        "the plugin finished height 5",
        Duration::from_secs(30),
        |log| printed(log, "raises").len() >= 5,
    );
    let expected: Vec<String> = (1..=5).map(|h| format!("finished height {h}")).collect();
    assert_eq!(
        printed(&log, "raises"),
        expected,
        "every height once, in order:\n{log}"
    );
    // One log entry, over several lines.
    let traceback = log
        .split(" ERROR eventhost::plugin: run(queue) raised an exception:\n")
        .nth(1)
        .and_then(|rest| rest.split(" plugin=\"raises\"\n").next())
        .unwrap_or_else(|| panic!("no traceback logged:\n{log}"));
    for part in [
        "Traceback (most recent call last):",
        "eventhost_test_plugins/raises.py",
        "in handle",
        "ValueError: cannot handle height 3",
    ] {
        assert!(
            traceback.contains(part),
            "{part:?} not in the traceback:\n{traceback}"
        );
    }
    assert!(
        log.contains("plugin failed: run(queue) raised ValueError: cannot handle height 3 (traceback above) plugin=raises"),
        "{log}"
    );
    let (_, plugins) = http.get("/api/v1/plugins");
    assert_eq!(
        (plugins[0]["restarts"].clone(), plugins[0]["state"].clone()),
        (json!(1), json!("running")),
        "{plugins}"
    );
    stop(host);
}

#[test]
fn sys_exit_with_a_failure_status_is_a_failure_and_the_event_comes_again() {
    let s = Sandbox::new();
    configure(
        &s,
        &python_plugin("exits", "module = \"eventhost_test_plugins.exits\""),
    );
    let (host, http) = start(&s);
    commit_creates(&http, 40, 1);
    let log = wait_until(
        &host,
        "the plugin failed twice",
        Duration::from_secs(30),
        |log| {
            log.matches("plugin failed: run(queue) called sys.exit(3) plugin=exits")
                .count()
                >= 2
        },
    );
    // Nothing finished the event: every new process got it again.
    assert!(
        log.contains("restarting the plugin in 10 ms, after event 0 plugin=exits"),
        "{log}"
    );
    assert!(!log.contains("Traceback"), "{log}");
    stop(host);
}

#[test]
fn a_plugin_that_never_reads_its_queue_holds_up_nobody() {
    let s = Sandbox::new();
    let plugins = python_plugin(
        "never_gets",
        "module = \"eventhost_test_plugins.never_gets\"",
    ) + &python_plugin("console_print", "entry_point = \"console_print\"")
        + "[[plugins]]\nname = \"printer\"\n[plugins.config]\noutput = \"printer.txt\"\n";
    configure(&s, &plugins);
    let (host, http) = start(&s);
    let started = Instant::now();
    commit_creates(&http, 36, 20);
    let printer = || std::fs::read_to_string(s.path("printer.txt")).unwrap_or_default();
    let log = wait_until(
        &host,
        "both other plugins saw 20 blocks",
        Duration::from_secs(30),
        |log| printed(log, "console_print").len() >= 20 && printer().lines().count() >= 20,
    );
    assert_eq!(printed(&log, "console_print"), heights(1, 20));
    assert_eq!(printer().lines().count(), 20, "{}", printer());
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "commits were held up"
    );
    let never = http.plugin("never_gets");
    assert_eq!(
        (never["state"].clone(), never["restarts"].clone()),
        (json!("running"), json!(0)),
        "{never}"
    );
    // At shutdown the plugin is abandoned after shutdown_timeout_ms, with its process.
    let stopping = Instant::now();
    host.signal(libc::SIGTERM);
    let (status, _, log) = host.wait(Duration::from_secs(30));
    assert!(status.success(), "{log}");
    assert!(
        stopping.elapsed() < Duration::from_secs(10),
        "took {:?}",
        stopping.elapsed()
    );
    assert!(log.contains("plugin stopped plugin=console_print"), "{log}");
}

#[test]
fn after_kill_9_the_node_restarts_and_the_plugin_resumes_after_its_cursor() {
    let s = Sandbox::new();
    configure(
        &s,
        &python_plugin("stalls", "module = \"eventhost_test_plugins.stalls\""),
    );
    let (host, http) = start(&s);
    commit_creates(&http, 37, 5);
    wait_until(
        &host,
        "the plugin stalled at height 3",
        Duration::from_secs(30),
        |log| printed(log, "stalls").contains(&"stalling at height 3".to_owned()),
    );
    // The cursor (after height 2) is written every 200 ms.
    std::thread::sleep(Duration::from_millis(600));
    host.signal(libc::SIGKILL);
    let (_, _, first) = host.wait(Duration::from_secs(10));
    assert_eq!(
        printed(&first, "stalls"),
        ["1", "2", "stalling at height 3"]
    );

    let (host, http) = start(&s);
    commit_creates(&http, 38, 1);
    let log = wait_until(
        &host,
        "the plugin printed height 6",
        Duration::from_secs(30),
        |log| printed(log, "stalls").len() >= 4,
    );
    assert!(
        log.contains("resuming after event 2 plugin=stalls"),
        "{log}"
    );
    assert_eq!(
        printed(&log, "stalls"),
        heights(3, 6),
        "3, 4 and 5 after the cursor, then 6"
    );
    stop(host);
}

#[test]
fn a_misconfigured_python_plugin_stops_the_start_with_one_line_naming_the_problem() {
    let fake = Sandbox::new();
    // An interpreter of another Python version, as far as the plugin can tell.
    let other_python = fake.write(
        "python3",
        "#!/bin/sh\necho '{\"executable\": \"/opt/python3.99/bin/python3\", \"version\": [3, 99, 0]}'\n",
    );
    std::fs::set_permissions(
        &other_python,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let cases = [
        (
            python_plugin("missing", "entry_point = \"no_such_plugin\""),
            "no entry point named 'no_such_plugin' in bigchaindb.events or planetmint.events of the environment of ".to_owned(),
        ),
        (
            python_plugin("missing", "module = \"no_such_package.plugin\""),
            "no module named 'no_such_package.plugin' in the environment of ".to_owned(),
        ),
        (
            python_plugin("unknown", "module = \"eventhost_test_plugins.unknown_types\""),
            "module eventhost_test_plugins.unknown_types declares event_types = 5, with bits this host does not know (0x4; ".to_owned(),
        ),
        (
            format!("[[plugins]]\nname = \"other\"\nlibrary = \"python\"\n[plugins.config]\nmodule = \"m\"\npython = {:?}\n", other_python.display().to_string()),
            "python /opt/python3.99/bin/python3 is Python 3.99.0, but this build of the python plugin embeds libpython 3.".to_owned(),
        ),
        (
            python_plugin("typo", "modul = \"m\""),
            "unknown field `modul`, expected one of `entry_point`".to_owned(),
        ),
    ];
    for (plugins, expected) in cases {
        let s = Sandbox::new();
        configure(&s, &plugins);
        let run = s.run(&["run"]);
        assert_eq!(run.code(), Some(3), "{}", run.stderr);
        let line = run
            .stderr
            .lines()
            .find(|l| l.contains(&expected))
            .unwrap_or_else(|| panic!("no line with {expected:?}:\n{}", run.stderr));
        assert!(!line.contains('\n'));
        assert!(!run.stderr.contains("Traceback"), "{}", run.stderr);
        run.assert_no_host_panic();
    }
}

#[test]
fn in_thread_mode_the_hosts_one_interpreter_runs_one_python_plugin() {
    let s = Sandbox::new();
    // Two plugins in the host's process; they start at once, so either may
    // be the one that gets the interpreter.
    let thread_mode = |name: &str| {
        python_plugin(name, "entry_point = \"console_print\"").replace(
            "library = \"python\"\n",
            "library = \"python\"\nisolation = \"thread\"\nrequired = false\n",
        )
    };
    configure(&s, &(thread_mode("first") + &thread_mode("second")));
    let (host, http) = start(&s);
    let log = wait_until(
        &host,
        "one plugin was given up",
        Duration::from_secs(30),
        |log| log.contains("gave up after 5 failures"),
    );
    let gave_up = log.lines().find(|l| l.contains("gave up after")).unwrap();
    let (runs, refused) = if gave_up.ends_with("plugin=second") {
        ("first", "second")
    } else {
        ("second", "first")
    };
    commit_creates(&http, 39, 2);
    let log = wait_until(
        &host,
        "the plugin printed height 2",
        Duration::from_secs(30),
        |log| printed(log, runs).len() >= 2,
    );
    assert_eq!(printed(&log, runs), heights(1, 2));
    assert!(printed(&log, refused).is_empty(), "{log}");
    // No child process: the plugin runs on the host's thread.
    assert!(!log.contains("plugin process started"), "{log}");
    assert!(
        log.contains(&format!("gave up after 5 failures within 60 s; last: this process already runs Python plugin `{runs}`"))
            && log.contains("cannot run in thread mode beside it: remove `isolation = \"thread\"` from its [[plugins]] entry"),
        "{log}"
    );
    stop(host);
}

#[test]
fn check_config_shows_what_each_python_plugin_would_run_without_running_it() {
    let s = Sandbox::new();
    configure(
        &s,
        &(python_plugin("console_print", "entry_point = \"console_print\"")
            + &python_plugin(
                "unknown",
                "module = \"eventhost_test_plugins.unknown_types\"",
            )
            + &python_plugin("counter", "module = \"eventhost_test_plugins.counter\"")
            // Planetmint's group: the same lookup, after bigchaindb.events.
            + &python_plugin("planetmint", "entry_point = \"planetmint_counter\"")),
    );
    let run = s.run(&["check-config"]);
    assert_eq!(run.code(), Some(3), "{}\n{}", run.stdout, run.stderr);
    let venv = venv().display().to_string();
    let version = run
        .stdout
        .split(&format!("python {venv}/bin/python3 ("))
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("no interpreter version in:\n{}", run.stdout));
    assert!(
        run.stdout.lines().any(|l| l
            == format!("console_print: module events_plugin_example.plugin (entry point console_print of bigchaindb.events, package events-plugin-example 0.1.0), event_types 1 (BLOCK_VALID), python {venv}/bin/python3 ({version})")),
        "{}",
        run.stdout
    );
    // A plugin that imports eventhost at its top is checked with the
    // module's Python part (the benchmark's counter: it once failed here).
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with("counter: module eventhost_test_plugins.counter")),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.lines().any(|l| l.starts_with(
            "planetmint: module eventhost_test_plugins.counter (entry point planetmint_counter of planetmint.events, package eventhost-test-plugins "
        )),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.lines().any(|l| l.starts_with("error: plugin `unknown` (")
            && l.contains("its [plugins.config] is invalid at ")
            && l.contains("`module`: module eventhost_test_plugins.unknown_types declares event_types = 5, with bits this host does not know")),
        "{}",
        run.stdout
    );
    // In process isolation, the python plugin's default (the plugin whose
    // table fails its check shows no isolation: it will not run).
    let isolation: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.contains("libpython.so"))
        .filter_map(|l| {
            l.split_whitespace()
                .find(|w| ["process", "thread"].contains(w))
        })
        .collect();
    assert_eq!(
        isolation,
        ["process", "process", "process"],
        "{}",
        run.stdout
    );
    // Nothing ran: no plugin wrote to the sandbox, and the node never served.
    assert!(!run.stderr.contains("HTTP API on"), "{}", run.stderr);
}
