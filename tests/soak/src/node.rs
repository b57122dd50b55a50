//! The node under test: the real `eventhost run` on the soak's
//! configuration, started, killed with SIGKILL or stopped with SIGTERM,
//! started again on the same data directory and ports. While it runs its
//! resident memory (and its plugin processes') is sampled from /proc, and
//! an exit nobody asked for is a violation.

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use support::process::{children, has_ended, rss_kib};

use crate::findings::Findings;
use crate::http::Api;

/// How long a started node may take to serve its API (it first opens the
/// store and starts every plugin; a busy shared machine is slow).
const START_PATIENCE: Duration = Duration::from_secs(60);

/// How long SIGTERM may take: the API's and the plugins' shutdown deadlines
/// (2 s each, the defaults the configuration keeps), the node's own grace
/// of 5 s beyond them (host/src/node.rs, STOP_GRACE), and slack for a busy
/// machine.
pub const STOP_PATIENCE: Duration = Duration::from_secs(15);

/// How long a plugin process may outlive its killed node.
const ORPHAN_PATIENCE: Duration = Duration::from_secs(10);

/// What the configuration is made of.
pub struct Settings {
    /// Where the release build is: `eventhost` and the plugin libraries.
    pub build: PathBuf,
    /// The run's directory: configuration, data, logs, plugin outputs.
    pub dir: PathBuf,
    pub api_port: u16,
    pub ws_port: u16,
    /// Of each flaky plugin, per event.
    pub panic_probability: f64,
    /// Of the websocket plugin: small, so that stalled clients are closed
    /// as too slow and resume.
    pub client_queue_capacity: u64,
}

/// A plugin whose output file the run checks.
pub struct Output {
    pub plugin: &'static str,
    pub path: PathBuf,
    pub format: Format,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The printer's `format = "json"`: one event per line, with its `seq`.
    PrinterJson,
    /// The misbehaving fixture's `flaky` mode: `<seq> <pid>` per line.
    SeqPid,
}

impl Settings {
    pub fn outputs(&self) -> Vec<Output> {
        vec![
            Output {
                plugin: "printer",
                path: self.dir.join("printer.jsonl"),
                format: Format::PrinterJson,
            },
            Output {
                plugin: "flaky-thread",
                path: self.dir.join("flaky-thread.txt"),
                format: Format::SeqPid,
            },
            Output {
                plugin: "flaky-process",
                path: self.dir.join("flaky-process.txt"),
                format: Format::SeqPid,
            },
        ]
    }

    /// Writes `config.toml`: the bundled websocket and printer plugins and
    /// two flaky instances of the misbehaving fixture (one on a thread of
    /// the node, one in a process of its own), every plugin required.
    pub fn write_config(&self) -> anyhow::Result<PathBuf> {
        let outputs = self.outputs();
        let p = self.panic_probability;
        let text = format!(
            r#"# Written by eventhost-soak.
[host]
data_dir = "data"
plugin_dirs = [{build:?}]
log = "info"
# The flaky plugins panic on purpose: restart them quickly, and never give up.
restart_backoff_ms = 20
restart_max_backoff_ms = 1000
restart_max_failures = 1000000

[api]
bind = "127.0.0.1:{api}"

[admin]
bind = "off"

# Small buffers and budgets, so that stalling clients are closed as too
# slow, resumers wait for replay memory, and a resumer that stalls is closed.
[[plugins]]
name = "websocket"
[plugins.config]
bind = "127.0.0.1:{ws}"
client_queue_capacity = {capacity}
send_buffer_bytes = 16384
replay_memory_bytes = 1048576
replay_stall_timeout_ms = 5000

[[plugins]]
name = "printer"
[plugins.config]
format = "json"
output = {printer:?}

[[plugins]]
name = "flaky-thread"
library = "fixture_misbehaving"
isolation = "thread"
[plugins.config]
mode = "flaky"
panic_probability = {p}
output = {thread:?}

[[plugins]]
name = "flaky-process"
library = "fixture_misbehaving"
isolation = "process"
[plugins.config]
mode = "flaky"
panic_probability = {p}
output = {process:?}
"#,
            build = self.build.display().to_string(),
            api = self.api_port,
            ws = self.ws_port,
            capacity = self.client_queue_capacity,
            printer = outputs[0].path.display().to_string(),
            thread = outputs[1].path.display().to_string(),
            process = outputs[2].path.display().to_string(),
        );
        let path = self.dir.join("config.toml");
        fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    }
}

/// One process of the node, from start to end.
struct Life {
    child: Child,
    started: Instant,
    serving: bool,
    /// Plugin processes seen among its children.
    children: BTreeSet<u32>,
}

/// Figures about the node's lives.
#[derive(Default)]
pub struct NodeStats {
    pub starts: u64,
    pub kills: u64,
    pub terminations: u64,
    pub unexpected_exits: u64,
    pub longest_stop: Duration,
    /// From start to serving, each time.
    pub start_times: Vec<Duration>,
    pub max_rss_kib: u64,
    pub max_plugin_process_rss_kib: u64,
    pub plugin_processes: u64,
}

/// The node under test.
pub struct Node {
    build: PathBuf,
    dir: PathBuf,
    config: PathBuf,
    log: PathBuf,
    outputs: Vec<PathBuf>,
    probe: Api,
    life: Option<Life>,
    /// The size of each output file when each life started: lines after
    /// one of these offsets were written by a later life.
    pub segments: Vec<Vec<u64>>,
    pub stats: NodeStats,
}

impl Node {
    pub fn new(settings: &Settings, config: PathBuf) -> Node {
        Node {
            build: settings.build.clone(),
            dir: settings.dir.clone(),
            config,
            log: settings.dir.join("node.log"),
            outputs: settings.outputs().into_iter().map(|o| o.path).collect(),
            probe: Api::new(settings.api_port, Duration::from_secs(2)),
            life: None,
            segments: Vec::new(),
            stats: NodeStats::default(),
        }
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// `eventhost --config <config> ARGS`, in the run's directory, without
    /// the caller's logging or configuration from the environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(self.build.join("eventhost"));
        command
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .current_dir(&self.dir)
            .env_remove("RUST_LOG")
            .env_remove("EVENTHOST_CONFIG")
            // The flaky plugins' deliberate panics, without a backtrace each.
            .env_remove("RUST_BACKTRACE")
            .stdin(Stdio::null());
        command
    }

    /// Starts a new life of the node; it serves a little later (see [`Node::tick`]).
    pub fn start(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(self.life.is_none(), "the node is already running");
        self.segments.push(
            self.outputs
                .iter()
                .map(|p| crate::outputs::whole_lines_len(p))
                .collect(),
        );
        self.stats.starts += 1;
        let mut log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("cannot open {}", self.log.display()))?;
        writeln!(log, "=== eventhost-soak: start {} ===", self.stats.starts)?;
        let mut command = self.command(&["run"]);
        command.stdout(Stdio::null()).stderr(log);
        // SAFETY: prctl in the child before exec touches no memory of ours.
        // The node dies with this driver (however it ends), so that a
        // driver stopped half-way leaves no node running.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command.spawn().context("cannot start eventhost")?;
        self.life = Some(Life {
            child,
            started: Instant::now(),
            serving: false,
            children: BTreeSet::new(),
        });
        Ok(())
    }

    pub fn is_running(&self) -> bool {
        self.life.is_some()
    }

    pub fn is_serving(&self) -> bool {
        self.life.as_ref().is_some_and(|l| l.serving)
    }

    /// How long the current life has lasted.
    pub fn age(&self) -> Duration {
        self.life
            .as_ref()
            .map_or(Duration::ZERO, |l| l.started.elapsed())
    }

    /// Watches the node once: memory, plugin processes, whether it serves
    /// yet, whether it exited by itself (a violation: it is only ever
    /// killed or stopped by this driver). Returns the node's RSS in KiB.
    pub fn tick(&mut self, findings: &Findings) -> Option<u64> {
        let life = self.life.as_mut()?;
        match life.child.try_wait() {
            Ok(Some(status)) => {
                let tail = log_tail(&self.log);
                findings.violation(format!(
                    "the node exited by itself ({}) after {:.1} s; the end of its log:\n{tail}",
                    describe(status),
                    life.started.elapsed().as_secs_f64()
                ));
                self.stats.unexpected_exits += 1;
                self.life = None;
                return None;
            }
            Ok(None) => {}
            Err(e) => {
                findings.violation(format!("cannot wait for the node: {e}"));
                return None;
            }
        }
        let pid = life.child.id();
        let rss = rss_kib(pid);
        if let Some(rss) = rss {
            self.stats.max_rss_kib = self.stats.max_rss_kib.max(rss);
        }
        for child in children(pid) {
            if life.children.insert(child) {
                self.stats.plugin_processes += 1;
            }
            if let Some(rss) = rss_kib(child) {
                self.stats.max_plugin_process_rss_kib =
                    self.stats.max_plugin_process_rss_kib.max(rss);
            }
        }
        if !life.serving {
            if matches!(self.probe.get("/health"), Ok((200, _))) {
                life.serving = true;
                self.stats.start_times.push(life.started.elapsed());
            } else if life.started.elapsed() > START_PATIENCE {
                findings.violation(format!(
                    "the node did not serve within {} s of starting; the end of its log:\n{}",
                    START_PATIENCE.as_secs(),
                    log_tail(&self.log)
                ));
                self.kill(findings);
            }
        }
        rss
    }

    /// `kill -9`, then waits until its plugin processes are gone too.
    pub fn kill(&mut self, findings: &Findings) {
        let Some(mut life) = self.life.take() else {
            return;
        };
        signal(life.child.id(), libc::SIGKILL);
        let _ = life.child.wait();
        self.stats.kills += 1;
        wait_for_orphans(&life.children, findings);
    }

    /// SIGTERM: the node must exit with status 0 within [`STOP_PATIENCE`].
    /// Returns how long it took.
    pub fn terminate(&mut self, findings: &Findings) -> Duration {
        let Some(mut life) = self.life.take() else {
            return Duration::ZERO;
        };
        let asked = Instant::now();
        signal(life.child.id(), libc::SIGTERM);
        let status = loop {
            match life.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if asked.elapsed() < STOP_PATIENCE => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => break None,
            }
        };
        let took = asked.elapsed();
        self.stats.terminations += 1;
        self.stats.longest_stop = self.stats.longest_stop.max(took);
        match status {
            Some(status) if status.success() => {}
            Some(status) => findings.violation(format!(
                "the node exited with {} on SIGTERM; the end of its log:\n{}",
                describe(status),
                log_tail(&self.log)
            )),
            None => {
                findings.violation(format!(
                    "the node did not stop within {} s of SIGTERM; killed it. The end of its log:\n{}",
                    STOP_PATIENCE.as_secs(),
                    log_tail(&self.log)
                ));
                signal(life.child.id(), libc::SIGKILL);
                let _ = life.child.wait();
            }
        }
        wait_for_orphans(&life.children, findings);
        took
    }
}

impl Drop for Node {
    /// A driver that fails half-way leaves no node behind.
    fn drop(&mut self) {
        if let Some(mut life) = self.life.take() {
            let _ = life.child.kill();
            let _ = life.child.wait();
        }
    }
}

fn signal(pid: u32, signal: i32) {
    // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
    unsafe { libc::kill(pid as libc::pid_t, signal) };
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("status {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        _ => status.to_string(),
    }
}

/// Plugin processes end with their node (their socket closes; on Linux
/// the kernel also kills them): waits until none of `pids` is an eventhost
/// process any more.
fn wait_for_orphans(pids: &BTreeSet<u32>, findings: &Findings) {
    let alive = |pid: &&u32| {
        fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains("eventhost"))
            && !has_ended(**pid)
    };
    let deadline = Instant::now() + ORPHAN_PATIENCE;
    while pids.iter().any(|p| alive(&p)) {
        if Instant::now() > deadline {
            let left: Vec<&u32> = pids.iter().filter(alive).collect();
            findings.violation(format!(
                "plugin process(es) {left:?} outlived their node by {} s",
                ORPHAN_PATIENCE.as_secs()
            ));
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The last lines of the node's log, for a violation's message.
pub fn log_tail(path: &Path) -> String {
    const TAIL: u64 = 3000;
    let Ok(mut file) = fs::File::open(path) else {
        return String::from("(no log)");
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(TAIL)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(12)..].join("\n")
}
