//! The command line's conveniences, through the real binary: progress and
//! summaries of long commands, the version line, shell completions and man
//! pages.

use std::process::Command;

use std::sync::Arc;

use eventhost::event_log::EventLog;
use eventhost::metrics::Metrics;
use eventhost::plugin_runtime::cursors::Cursors;
use eventhost::sources::ledger::builder::Keypair;
use eventhost::sources::ledger::chain_store::ChainStore;
use eventhost::sources::ledger::transaction::Transaction;
use eventhost::sources::ledger::{Ledger, LedgerConfig, Mode};
use eventhost::store::{STORE_FILE, Store};
use eventhost_plugin_api::{API_VERSION, BLOCK_VALID, Event};
use support::node::create;
use support::{Sandbox, eventhost_bin};

/// A data directory whose event log holds `count` events, for `events`.
fn data_dir_with_events(s: &Sandbox, count: u64) {
    std::fs::create_dir_all(s.path("data")).unwrap();
    let store = Arc::new(Store::open(&s.path("data").join(STORE_FILE)).unwrap());
    let (mut log, _) = EventLog::open(store, &Metrics::new()).unwrap();
    let events: Vec<Event> = (1..=count)
        .map(|height| Event {
            event_type: BLOCK_VALID,
            seq: 0,
            height,
            block_hash: format!("{height:064x}").into(),
            timestamp_ms: 1_732_521_600_000 + height,
            transactions: vec![format!("{{\"id\":\"tx{height}\"}}").into()].into(),
            rejections: Default::default(),
        })
        .collect();
    log.commit(events).unwrap();
}

/// A data directory whose ledger holds `count` blocks of one CREATE each,
/// committed by the real ledger, with the plugin cursors' table a node
/// makes, for `verify`.
fn data_dir_with_blocks(s: &Sandbox, count: u64) {
    std::fs::create_dir_all(s.path("data")).unwrap();
    let store = Arc::new(Store::open(&s.path("data").join(STORE_FILE)).unwrap());
    Cursors::open(store.clone()).unwrap();
    let metrics = Arc::new(Metrics::new());
    let (log, _exchange) = EventLog::open(store.clone(), &metrics).unwrap();
    let chain = ChainStore::open(store).unwrap();
    let config = LedgerConfig {
        max_block_size: 1,
        block_interval: std::time::Duration::ZERO,
    };
    let ledger = Ledger::start(chain, log, metrics, config).unwrap();
    let key = Keypair::from_seed([7; 32]);
    let mut last = None;
    for n in 0..count {
        let tx = create(&key, serde_json::json!({"n": n}));
        let mode = if n + 1 == count {
            Mode::Commit
        } else {
            Mode::Async
        };
        last = Some(ledger.submit(Transaction::parse(tx).unwrap(), mode));
    }
    // Blocks are committed in order: once the last is, all are.
    if let Some(last) = last {
        last.blocking_recv().unwrap();
    }
    ledger.shutdown(std::time::Duration::from_secs(5));
}

fn config_with_data(s: &Sandbox) {
    s.config("");
    s.edit_config(|text| text.replacen("[host]\n", "[host]\ndata_dir = \"data\"\n", 1));
}

/// The line of a command's `stderr` that holds `needle`: its summary.
fn summary<'a>(stderr: &'a str, needle: &str) -> &'a str {
    stderr
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no summary {needle:?} in:\n{stderr}"))
}

#[test]
fn events_ends_with_a_summary_on_stderr_and_only_events_on_stdout() {
    let s = Sandbox::new();
    config_with_data(&s);
    data_dir_with_events(&s, 2500);
    let run = s.run(&["events", "--from", "1001"]);
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    assert_eq!(run.stdout.lines().count(), 1500);
    assert!(run.stdout.lines().all(|l| l.starts_with("{\"type\":")));
    let summary = summary(&run.stderr, "events: printed");
    assert!(
        summary.contains("events: printed 1500 events in ") && summary.ends_with("/s)"),
        "{summary}"
    );
}

#[test]
fn replay_logs_progress_while_it_runs_and_a_summary() {
    let s = Sandbox::new();
    s.config("[[plugins]]\nname = \"printer\"\n[plugins.config]\noutput = \"out.txt\"\n");
    // 6 s at 20 events/s: one progress line (they come every 5 s).
    let events = s.events(120, 0);
    let run = s.run(&["replay", events.to_str().unwrap(), "--rate", "20"]);
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    let progress: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("replay: published") && l.contains(" of 120 events ("))
        .collect();
    assert_eq!(progress.len(), 1, "{}", run.stderr);
    assert!(progress[0].contains("s left)"), "{}", progress[0]);
    let summary = summary(&run.stderr, "replay: published 120 events in ");
    assert!(
        summary.ends_with("/s); waiting for plugins to finish"),
        "{summary}"
    );
}

/// Runs `eventhost <command>` on a terminal (a pseudo-terminal from
/// `script`), its stdout going to the sandbox's file `out`; checks it
/// succeeded and returns what the terminal showed.
fn on_a_terminal(s: &Sandbox, command: &str, out: &str) -> String {
    let command = format!(
        "{} --config {} {command} > {}",
        eventhost_bin().display(),
        s.path("config.toml").display(),
        s.path(out).display()
    );
    let run = Command::new("script")
        .args(["--quiet", "--return", "--command", &command, "/dev/null"])
        .env("RUST_LOG", "info")
        .output()
        .expect("run `script` (util-linux), which gives the command a terminal");
    let terminal = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(run.status.success(), "{terminal}");
    terminal
}

/// On a terminal (a pseudo-terminal from `script`), with the output going
/// to a file, `events` draws a bar.
#[test]
fn events_draws_a_bar_on_a_terminal() {
    let s = Sandbox::new();
    config_with_data(&s);
    data_dir_with_events(&s, 3000);
    let terminal = on_a_terminal(&s, "events", "out.jsonl");
    assert!(
        terminal.contains("events: printed [") && terminal.contains("/3,000 events ("),
        "no bar in:\n{terminal:?}"
    );
    assert!(
        terminal.contains("events: printed 3000 events in "),
        "{terminal:?}"
    );
    let out = std::fs::read_to_string(s.path("out.jsonl")).unwrap();
    assert_eq!(out.lines().count(), 3000);
}

#[test]
fn verify_logs_a_summary_of_each_walk_and_its_verdict_on_stdout() {
    let s = Sandbox::new();
    config_with_data(&s);
    data_dir_with_blocks(&s, 60);
    let run = s.run(&["verify"]);
    assert_eq!(run.code(), Some(0), "{}{}", run.stdout, run.stderr);
    for walk in ["60 blocks", "60 events"] {
        let summary = summary(&run.stderr, &format!("verify: checked {walk} in "));
        assert!(summary.ends_with("/s)"), "{summary}");
    }
    // The verdict alone on stdout, the progress on stderr.
    assert_eq!(run.stdout.lines().count(), 1, "{}", run.stdout);
    assert!(
        run.stdout
            .contains(": 60 blocks, 60 transactions, 60 events, ")
            && run.stdout.ends_with(": no fault found\n"),
        "{}",
        run.stdout
    );
}

/// On a terminal, with its verdict going to a file, `verify` draws a bar
/// for each walk.
#[test]
fn verify_draws_a_bar_on_a_terminal() {
    let s = Sandbox::new();
    config_with_data(&s);
    data_dir_with_blocks(&s, 60);
    let terminal = on_a_terminal(&s, "verify", "verdict.txt");
    for walk in ["blocks", "events"] {
        assert!(
            terminal.contains("verify: checked [") && terminal.contains(&format!("/60 {walk} (")),
            "no bar for the {walk} in:\n{terminal:?}"
        );
        assert!(
            terminal.contains(&format!("verify: checked 60 {walk} in ")),
            "{terminal:?}"
        );
    }
    let verdict = std::fs::read_to_string(s.path("verdict.txt")).unwrap();
    assert!(verdict.ends_with("no fault found\n"), "{verdict}");
}

/// Runs `eventhost ARGS` without a configuration file (none of these
/// commands needs one) and returns its stdout.
fn eventhost_without_config(args: &[&str]) -> String {
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(eventhost_bin())
        .args(args)
        .current_dir(empty.path())
        .env_remove("EVENTHOST_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "eventhost {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn version_names_the_plugin_api_versions_it_loads() {
    let version = eventhost_without_config(&["--version"]);
    assert_eq!(
        version,
        format!("eventhost {}\n", eventhost::cli_docs::version())
    );
    assert!(
        version.ends_with(&format!(
            " (plugin-api {API_VERSION}: loads plugins built against plugin-api {}.0 through {}.{})\n",
            API_VERSION.major, API_VERSION.major, API_VERSION.minor
        )),
        "{version}"
    );
    assert_eq!(eventhost_without_config(&["-V"]), version);
}

/// The bash script, loaded into a real bash, completes subcommands and
/// their options.
#[test]
fn bash_completion_completes_subcommands_and_options() {
    let script = eventhost_without_config(&["completions", "bash"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("eventhost.bash");
    std::fs::write(&file, script).unwrap();
    let complete = |words: &str| {
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source {file:?} && COMP_WORDS=({words}) && COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)) && _eventhost eventhost \"${{COMP_WORDS[-1]}}\" \"${{COMP_WORDS[-2]}}\" && echo \"${{COMPREPLY[@]}}\""
            ))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    assert_eq!(complete("eventhost new"), "new-plugin");
    assert_eq!(complete("eventhost check"), "check-config");
    assert_eq!(
        complete("eventhost new-plugin --a"),
        "--api-path --api-version"
    );
    assert_eq!(complete("eventhost replay --ra"), "--rate");
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let script = eventhost_without_config(&["completions", shell]);
        assert!(
            script.contains("new-plugin") && script.contains("check-config"),
            "{shell}"
        );
    }
}

#[test]
fn man_pages_cover_every_command() {
    let page = eventhost_without_config(&["man"]);
    assert!(page.contains("\n.TH eventhost 1 "), "{page}");
    assert!(page.contains("\n.SH NAME\neventhost \\- "), "{page}");
    for command in [
        "run",
        "replay",
        "check\\-config",
        "events",
        "new\\-plugin",
        "completions",
    ] {
        assert!(page.contains(command), "{command} is missing from:\n{page}");
    }
    assert!(
        !page.contains("run\\-plugin"),
        "the hidden plugin-runner role is documented"
    );

    let dir = tempfile::tempdir().unwrap();
    let pages = dir.path().join("man1");
    eventhost_without_config(&["man", "--dir", pages.to_str().unwrap()]);
    let new_plugin = std::fs::read_to_string(pages.join("eventhost-new-plugin.1")).unwrap();
    assert!(
        new_plugin.contains(".TH eventhost-new-plugin 1 "),
        "{new_plugin}"
    );
    assert!(new_plugin.contains("\\-\\-api\\-version"), "{new_plugin}");
    for command in [
        "",
        "-run",
        "-replay",
        "-check-config",
        "-plugins",
        "-events",
        "-man",
    ] {
        assert!(
            pages.join(format!("eventhost{command}.1")).is_file(),
            "{command}"
        );
    }
}
