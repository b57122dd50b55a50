//! `eventhost run` as the benchmarks start it: the real binary on a
//! configuration in a directory of the benchmark's, its log in a file,
//! waited for until it serves, stopped as an operator would (SIGTERM), and
//! killed if the benchmark fails before that.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The node binary on `dir/config.toml`, run in `dir`, without the
/// caller's logging or configuration from the environment.
pub fn eventhost(build: &Path, dir: &Path) -> Command {
    let mut command =
        Command::new(build.join(format!("eventhost{}", std::env::consts::EXE_SUFFIX)));
    command
        .arg("--config")
        .arg(dir.join("config.toml"))
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env_remove("EVENTHOST_CONFIG")
        .stdin(Stdio::null());
    command
}

/// A running `eventhost run`.
pub struct Node {
    child: Child,
    log: PathBuf,
}

impl Node {
    /// Starts `eventhost run` on `dir/config.toml`, its log in `dir/node.log`,
    /// and waits up to `patience` until its HTTP API listens, which it does
    /// once every plugin has started.
    pub fn start(build: &Path, dir: &Path, patience: Duration) -> anyhow::Result<Node> {
        let mut command = eventhost(build, dir);
        command.arg("run");
        Node::spawn(command, &dir.join("node.log"), patience)
    }

    /// Starts `command`, a server that logs as the node does (row 3h's
    /// bare server), its log in `log`, and waits up to `patience` until it
    /// logs that its HTTP API listens.
    pub fn spawn(mut command: Command, log: &Path, patience: Duration) -> anyhow::Result<Node> {
        let program = Path::new(command.get_program()).display().to_string();
        let child = command
            .stdout(Stdio::null())
            .stderr(fs::File::create(log)?)
            .spawn()
            .with_context(|| format!("cannot start {program}"))?;
        let mut node = Node {
            child,
            log: log.to_owned(),
        };
        let deadline = Instant::now() + patience;
        loop {
            let log = node.log();
            if log.contains("HTTP API on http://") {
                return Ok(node);
            }
            if let Some(status) = node.child.try_wait()? {
                bail!("{program} exited ({status}) before serving:\n{log}");
            }
            if Instant::now() > deadline {
                bail!("{program} did not serve within {patience:?}:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The address after `mark` in the log, e.g. where a plugin listens.
    pub fn logged_address(&self, mark: &str) -> anyhow::Result<String> {
        crate::logged_address(&self.log(), mark)
            .with_context(|| format!("the node did not log `{mark}`:\n{}", self.log()))
    }

    /// Stops the node as an operator would (SIGTERM) and checks that it
    /// exits cleanly within `patience`.
    pub fn stop(mut self, patience: Duration) -> anyhow::Result<()> {
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + patience;
        loop {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!("eventhost exited with {status}:\n{}", self.log());
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("eventhost did not stop within {patience:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
