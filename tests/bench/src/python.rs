//! Row 8, Python plugins: events per second delivered to a Python plugin
//! that only counts them (tests/fixtures/python, `counter`), and the CPU
//! time the node and the plugin's process spend per event, against the
//! native bench-sink plugin counting the same events, in the same run, in
//! alternating rounds; and a third plugin, the Python counter reading each
//! event's `data` (`counter_data`), to show what building the data costs.
//! All three run in process isolation, as Python plugins should.
//!
//! Each part is `eventhost replay FILE` of one-transaction blocks (a
//! builder-made CREATE) with one plugin, its event log on tmpfs where there
//! is one, as in row 6: the node writes the events to its log 256 per
//! commit and publishes them as fast as it can, the plugin's queue fills and
//! it catches up from the log. Each plugin writes `<events> <first> <last>`
//! when its queue closes: the rate is events over the time from the first
//! receipt to the last. The CPU time is the node's and its children's from
//! when the node logged that the plugin was ready (publishing starts then;
//! the few events handled before this process looks are in the count but
//! not the CPU time) until the node ended, per event, and the plugin
//! process's share of it: the replay's own work (parsing each line,
//! writing the log) is the same for all three plugins and is most of the
//! node's, so the plugin's share is where Python and native differ.
//!
//! The Python plugins run in the fixtures' virtualenv
//! (target/python-plugins/venv), made by tests/fixtures/python/setup.sh.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use eventhost::sources::ledger::builder::{self, Keypair};

use crate::report::{Figure, Row};
use crate::{SINK, median, sys};

/// How long a node may take to start, to deliver, to stop.
const STALL: Duration = Duration::from_secs(120);
/// Where the event log goes, if the machine has it: RAM.
const TMPFS: &str = "/dev/shm";

#[derive(Clone, Copy, PartialEq)]
enum Plugin {
    Native,
    Python,
    PythonData,
}

impl Plugin {
    fn name(self) -> &'static str {
        match self {
            Plugin::Native => "native",
            Plugin::Python => "python",
            Plugin::PythonData => "python, reading data",
        }
    }

    /// The `[[plugins]]` entry; the plugin writes `counter.txt`.
    fn entry(self, build: &Path, venv: &Path) -> String {
        let python = |module: &str| {
            format!(
                "library = \"python\"\n[plugins.config]\nmodule = \"eventhost_test_plugins.{module}\"\npython = {:?}\n",
                venv.display().to_string()
            )
        };
        let rest = match self {
            Plugin::Native => format!(
                "path = {:?}\n[plugins.config]\nsummary = \"counter.txt\"\n",
                build
                    .join(eventhost::plugin_runtime::library_file_name(SINK))
                    .display()
                    .to_string()
            ),
            Plugin::Python => python("counter"),
            Plugin::PythonData => python("counter_data"),
        };
        format!("[[plugins]]\nname = \"counter\"\nisolation = \"process\"\n{rest}")
    }
}

/// What one plugin measured in one round.
struct Round {
    events: u64,
    span: Duration,
    /// The node's and the plugin process's CPU time, and the plugin's alone.
    cpu: Duration,
    plugin_cpu: Duration,
}

impl Round {
    fn rate(&self) -> f64 {
        (self.events - 1) as f64 / self.span.as_secs_f64()
    }

    fn cpu_per_event_us(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.events as f64
    }

    fn plugin_cpu_per_event_us(&self) -> f64 {
        self.plugin_cpu.as_secs_f64() * 1e6 / self.events as f64
    }
}

pub fn run(build: &Path, quick: bool) -> anyhow::Result<Vec<Row>> {
    let (rounds, events) = if quick { (1, 20_000) } else { (5, 200_000) };
    let venv = venv(build)?;
    eprintln!(
        "[8 python] {rounds} round(s) of {events} events from a file as fast as they go, to a counting plugin: native, Python, Python reading each event's data"
    );
    let key = Keypair::from_seed([8; 32]);
    let tx = builder::create(
        &key,
        &[(key.public_key(), 1)],
        serde_json::json!({"bench": "python"}),
        serde_json::Value::Null,
    )
    .to_string();
    let plugins = [Plugin::Native, Plugin::Python, Plugin::PythonData];
    let mut results: Vec<Vec<Round>> = plugins.iter().map(|_| Vec::new()).collect();
    for round in 1..=rounds {
        for (i, plugin) in plugins.into_iter().enumerate() {
            let r = measure(build, &venv, plugin, events, &tx)
                .with_context(|| format!("the {} plugin", plugin.name()))?;
            eprintln!(
                "[8 python] round {round}/{rounds}: {}: {:.0} events/s, {:.1} µs CPU per event, {:.1} µs of it in the plugin's process",
                plugin.name(),
                r.rate(),
                r.cpu_per_event_us(),
                r.plugin_cpu_per_event_us()
            );
            results[i].push(r);
        }
    }
    let rate = |rounds: &[Round]| median(rounds.iter().map(Round::rate).collect());
    let cpu = |rounds: &[Round]| median(rounds.iter().map(Round::cpu_per_event_us).collect());
    let plugin_cpu =
        |rounds: &[Round]| median(rounds.iter().map(Round::plugin_cpu_per_event_us).collect());
    let [native, python, data] = [&results[0], &results[1], &results[2]];
    let on_tmpfs = if Path::new(TMPFS).is_dir() {
        "on tmpfs"
    } else {
        "on disk (no /dev/shm)"
    };
    let setup = format!(
        "`eventhost replay FILE` of {events} one-transaction blocks, the event log {on_tmpfs}, one plugin in process isolation; median of {rounds} alternating round(s)"
    );
    Ok(vec![
        Row {
            id: "8a",
            what: "Python plugin that only counts vs the native bench-sink counting: events/s delivered".into(),
            ours: Figure::Rate {
                per_second: rate(python),
                unit: "events",
            },
            baseline: Some(Figure::Rate {
                per_second: rate(native),
                unit: "events",
            }),
            target: None,
            peak_rss_kib: None,
            rss_of: "",
            notes: vec![format!(
                "{setup}; from the plugin's first receipt to its last; the Python counter reading each event's data (`event.data['height']`, the transaction JSON parsed into dicts): {:.0} events/s",
                rate(data)
            )],
        },
        Row {
            id: "8b",
            what: "Python counting plugin vs native: CPU time per event (node and plugin process)".into(),
            ours: Figure::micros(cpu(python), "event"),
            baseline: Some(Figure::micros(cpu(native), "event")),
            target: None,
            peak_rss_kib: None,
            rss_of: "",
            notes: vec![format!(
                "{setup}; /proc/PID/stat of the node with its reaped children, from the plugin's ready to the node's end; both include the replay parsing each line and writing it to the log; of it the plugin's process: {:.1} µs (Python), {:.1} µs (native); reading each event's data: {:.1} µs, {:.1} µs of it the plugin's",
                plugin_cpu(python),
                plugin_cpu(native),
                cpu(data),
                plugin_cpu(data)
            )],
        },
    ])
}

/// The fixtures' virtualenv, made or brought up to date.
fn venv(build: &Path) -> anyhow::Result<PathBuf> {
    let venv = build
        .parent()
        .context("the build directory has no parent")?
        .join("python-plugins")
        .join("venv");
    let setup = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/python/setup.sh");
    let status = Command::new("bash")
        .arg(&setup)
        .arg(&venv)
        .status()
        .with_context(|| format!("cannot run {}", setup.display()))?;
    if !status.success() {
        bail!(
            "{} {} failed ({status}): it needs python3 with venv and pip",
            setup.display(),
            venv.display()
        );
    }
    Ok(venv)
}

fn measure(
    build: &Path,
    venv: &Path,
    plugin: Plugin,
    events: u64,
    tx: &str,
) -> anyhow::Result<Round> {
    let mut dir = tempfile::Builder::new();
    dir.prefix("eventhost-bench-python-");
    let dir = if Path::new(TMPFS).is_dir() {
        dir.tempdir_in(TMPFS)?
    } else {
        dir.tempdir()?
    };
    fs::write(
        dir.path().join("config.toml"),
        format!(
            "[host]\n{}\nlog = \"info\"\nstartup_timeout_ms = 60000\n\n{}",
            crate::plugin_dirs_line(build),
            plugin.entry(build, venv)
        ),
    )?;
    let file = dir.path().join("events.jsonl");
    let mut out = std::io::BufWriter::new(fs::File::create(&file)?);
    for height in 1..=events {
        writeln!(
            out,
            "{{\"type\":\"BLOCK_VALID\",\"height\":{height},\"hash\":\"{height:064x}\",\"transactions\":[{tx}]}}"
        )?;
    }
    out.flush()?;
    drop(out);
    let log = dir.path().join("node.log");
    let mut node = crate::node::eventhost(build, dir.path())
        .arg("replay")
        .arg(&file)
        .env("TMPDIR", dir.path())
        .env("EVENTHOST_TEST_DIR", dir.path())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log)?)
        .spawn()
        .context("cannot start eventhost replay")?;
    let read_log = || fs::read_to_string(&log).unwrap_or_default();
    let pid = node.id();
    let deadline = Instant::now() + STALL;
    let outcome = (|| {
        while !read_log().contains("plugin ready") {
            if sys::has_ended(pid) || Instant::now() > deadline {
                bail!("the plugin did not start:\n{}", read_log());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let node_before = sys::process_tree_cpu_time(pid).context("the node's CPU time")?;
        let plugin_before: Duration = sys::children(pid)
            .into_iter()
            .filter_map(sys::process_cpu_time)
            .sum();
        // The node ends once the plugin has received everything; its CPU
        // time is read then, before it is reaped: its own, and its reaped
        // child's (the plugin's process).
        while !sys::has_ended(pid) {
            if Instant::now() > deadline {
                bail!(
                    "eventhost replay did not finish within {STALL:?}:\n{}",
                    read_log()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let tree = sys::process_tree_cpu_time(pid).context("the node's CPU time")?;
        let own = sys::process_cpu_time(pid).context("the node's CPU time")?;
        Ok((
            tree.saturating_sub(node_before + plugin_before),
            tree.saturating_sub(own).saturating_sub(plugin_before),
        ))
    })();
    if outcome.is_err() {
        let _ = node.kill();
    }
    let status = node.wait()?;
    let (cpu, plugin_cpu) = outcome?;
    if !status.success() {
        bail!("eventhost replay exited with {status}:\n{}", read_log());
    }
    let summary = fs::read_to_string(dir.path().join("counter.txt"))
        .with_context(|| format!("the plugin wrote no counter.txt:\n{}", read_log()))?;
    let fields: Vec<u128> = summary
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("a bad counter.txt: {summary:?}"))?;
    let [count, first, last] = fields[..] else {
        bail!("a bad counter.txt: {summary:?}");
    };
    if count != u128::from(events) {
        bail!(
            "the plugin received {count} events, not {events}:\n{}",
            read_log()
        );
    }
    Ok(Round {
        events,
        span: Duration::from_nanos(u64::try_from(last.saturating_sub(first))?),
        cpu,
        plugin_cpu,
    })
}
