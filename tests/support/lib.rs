//! Shared helpers for the end-to-end tests: find the built binary and
//! plugin libraries, write configurations into a sandbox, run the host and
//! watch its log, and build plugin crates that live outside the workspace.
//!
//! The binary and the plugins must be built first (`cargo build --workspace`):
//! a test cannot run cargo on the target directory `cargo test` holds locked.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use serde_json::Value;

pub mod bridge;
pub mod broker;
pub mod browser;
pub mod nats;
pub mod node;
pub mod process;
pub mod transactions;
pub mod ws;

/// The workspace root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_owned()
}

/// The cargo output directory the tests were built into (`target/debug`).
pub fn build_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/<test binary>
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_owned()
}

fn built(file: &str) -> PathBuf {
    let path = build_dir().join(file);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace` before `cargo test`",
        path.display()
    );
    path
}

/// The eventhost binary.
pub fn eventhost_bin() -> PathBuf {
    built(&format!("eventhost{}", std::env::consts::EXE_SUFFIX))
}

/// The library file of a plugin built in the workspace.
pub fn plugin_lib(lib_name: &str) -> PathBuf {
    built(&format!(
        "{}{lib_name}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ))
}

/// A temporary directory holding one test's configuration and outputs.
pub struct Sandbox {
    dir: tempfile::TempDir,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox {
            dir: tempfile::Builder::new()
                .prefix("eventhost-test-")
                .tempdir()
                .expect("temp dir"),
        }
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// Writes `config.toml`: a `[host]` table that finds the workspace's
    /// plugins and stops quickly, followed by `plugins` (TOML text).
    pub fn config(&self, plugins: &str) -> PathBuf {
        let text = format!(
            "[host]\nplugin_dirs = [{:?}]\nshutdown_timeout_ms = 500\nstartup_timeout_ms = 5000\nrestart_backoff_ms = 10\n\n[api]\nbind = \"127.0.0.1:0\"\n\n[admin]\nbind = \"127.0.0.1:0\"\n\n{plugins}",
            build_dir().display().to_string()
        );
        self.write("config.toml", &text)
    }

    /// Rewrites the `config.toml` written by [`Sandbox::config`] with `edit`.
    pub fn edit_config(&self, edit: impl FnOnce(String) -> String) {
        let text = fs::read_to_string(self.path("config.toml")).expect("read config.toml");
        self.write("config.toml", &edit(text));
    }

    pub fn write(&self, relative: &str, text: &str) -> PathBuf {
        let path = self.path(relative);
        fs::write(&path, text).expect("write sandbox file");
        path
    }

    /// `eventhost --config <sandbox>/config.toml <args>`.
    pub fn eventhost(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(eventhost_bin());
        cmd.arg("--config")
            .arg(self.path("config.toml"))
            .args(args)
            .current_dir(self.dir.path())
            .env("RUST_LOG", "info")
            .env_remove("EVENTHOST_CONFIG");
        cmd
    }

    /// Runs eventhost to completion.
    pub fn run(&self, args: &[&str]) -> Finished {
        let output = self
            .eventhost(args)
            .stdin(Stdio::null())
            .output()
            .expect("run eventhost");
        Finished::from(output)
    }

    /// Starts eventhost in the background, its log going to a file.
    pub fn spawn(&self, args: &[&str]) -> Running {
        self.spawn_with_input(args, Stdio::null(), &[])
    }

    /// Like [`Sandbox::spawn`], with standard input a pipe the test writes
    /// to with [`Running::feed`]: `replay -` publishes each line as it comes.
    pub fn spawn_fed(&self, args: &[&str]) -> Running {
        self.spawn_with_input(args, Stdio::piped(), &[])
    }

    /// Like [`Sandbox::spawn`], with these environment variables set.
    pub fn spawn_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Running {
        self.spawn_with_input(args, Stdio::null(), env)
    }

    fn spawn_with_input(&self, args: &[&str], stdin: Stdio, env: &[(&str, &str)]) -> Running {
        let log = self.path("eventhost.log");
        let mut child = self
            .eventhost(args)
            .envs(env.iter().copied())
            .stdin(stdin)
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start eventhost");
        Running {
            input: child.stdin.take(),
            child,
            log,
            started: Instant::now(),
        }
    }

    /// Writes `count` events as JSON lines: heights 1..=count, every
    /// `invalid_every`-th one a BLOCK_INVALID (0: none).
    pub fn events(&self, count: u64, invalid_every: u64) -> PathBuf {
        let mut text = String::new();
        for height in 1..=count {
            let invalid = invalid_every != 0 && height % invalid_every == 0;
            let line = if invalid {
                serde_json::json!({
                    "type": "BLOCK_INVALID", "height": height, "hash": format!("{height:064x}"),
                    "transactions": [{"id": format!("bad{height}")}],
                    "rejections": [{"transaction_id": format!("bad{height}"), "reason": "double spend"}],
                })
            } else {
                serde_json::json!({
                    "type": "BLOCK_VALID", "height": height, "hash": format!("{height:064x}"),
                    "transactions": [{"id": format!("tx{height}"), "operation": "CREATE"}],
                })
            };
            text.push_str(&line.to_string());
            text.push('\n');
        }
        self.write("events.jsonl", &text)
    }
}

/// A finished eventhost run.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Finished {
    fn from(o: Output) -> Self {
        Finished {
            status: o.status,
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Finished {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Asserts that nothing panicked in the host, whatever the outcome.
    pub fn assert_no_host_panic(&self) {
        let host_panic = self
            .stderr
            .lines()
            .any(|l| l.contains("panicked") && !l.contains("plugin"));
        assert!(!host_panic, "the host panicked:\n{}", self.stderr);
    }
}

/// An eventhost process running in the background.
pub struct Running {
    child: Child,
    /// Its standard input, if started with [`Sandbox::spawn_fed`].
    input: Option<ChildStdin>,
    log: PathBuf,
    started: Instant,
}

impl Running {
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle`, or panics with the log.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) {
        self.wait_for_log_line(needle, timeout);
    }

    /// Waits until a line of the log contains `needle` and returns that
    /// line, or panics with the log.
    pub fn wait_for_log_line(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(line) = self.log().lines().find(|l| l.contains(needle)) {
                return line.to_owned();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "eventhost exited ({status}) before logging {needle:?}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "eventhost did not log {needle:?} within {timeout:?}:\n{}",
            self.log()
        );
    }

    /// The HTTP API of a host started with `run`, once it listens.
    pub fn http(&mut self) -> Http {
        const MARK: &str = "HTTP API on http://";
        self.wait_for_log(MARK, Duration::from_secs(30));
        let log = self.log();
        let address = log
            .split(MARK)
            .nth(1)
            .and_then(|rest| rest.split(|c: char| c == ';' || c.is_whitespace()).next())
            .expect("address after the mark")
            .to_owned();
        Http::new(&format!("http://{address}"))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Writes one line to the process's standard input (see [`Sandbox::spawn_fed`]).
    pub fn feed(&mut self, line: &str) {
        let input = self
            .input
            .as_mut()
            .expect("feed needs a process started with spawn_fed");
        writeln!(input, "{line}")
            .and_then(|()| input.flush())
            .unwrap_or_else(|e| panic!("eventhost's standard input: {e}\n{}", self.log()));
    }

    /// Closes the process's standard input: `replay -` then stops.
    pub fn end_input(&mut self) {
        self.input = None;
    }

    /// The process's resident memory in KiB (VmRSS in /proc/<pid>/status).
    pub fn rss_kib(&self) -> Option<u64> {
        process::rss_kib(self.child.id())
    }

    pub fn signal(&self, signal: i32) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal}) failed");
    }

    /// Waits for the process to exit; kills it and panics after `timeout`.
    /// Returns the exit status and the time since it was started.
    pub fn wait(mut self, timeout: Duration) -> (ExitStatus, Duration, String) {
        self.end_input();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for eventhost") {
                return (status, self.started.elapsed(), self.log());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("eventhost did not exit within {timeout:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A small HTTP client for the host's API: every status is returned, not
/// raised, so tests can assert on error responses.
pub struct Http {
    agent: ureq::Agent,
    pub base: String,
}

impl Http {
    pub fn new(base: &str) -> Http {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Http {
            agent,
            base: base.to_owned(),
        }
    }

    fn finish(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, Value) {
        let mut response = response.expect("HTTP request");
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().expect("response body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        Self::finish(self.agent.get(format!("{}{path}", self.base)).call())
    }

    pub fn post(&self, path: &str, body: &str) -> (u16, Value) {
        Self::finish(self.send_post(path, body))
    }

    /// Like [`Http::post`], but a request that gets no answer (the node
    /// was killed meanwhile) is `None` rather than a panic.
    pub fn try_post(&self, path: &str, body: &str) -> Option<(u16, Value)> {
        let response = self.send_post(path, body);
        response.is_ok().then(|| Self::finish(response))
    }

    /// The plugin `name` as `GET /api/v1/plugins` lists it.
    pub fn plugin(&self, name: &str) -> Value {
        let (status, list) = self.get("/api/v1/plugins");
        assert_eq!(status, 200, "{list}");
        list.as_array()
            .expect("a list of plugins")
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no plugin {name:?} in {list}"))
            .clone()
    }

    fn send_post(
        &self,
        path: &str,
        body: &str,
    ) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        self.agent
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .send(body)
    }
}

/// Reads a JSON-lines file.
pub fn read_jsonl(path: &Path) -> Vec<Value> {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// Reads a file of event sequence numbers, one a line, as the
/// misbehaving fixture plugin writes them; none while it does not exist.
pub fn read_seqs(path: &Path) -> Vec<u64> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| l.parse().expect("a sequence number"))
        .collect()
}

/// The `src/lib.rs` of the plugin author's guide (docs/plugins.md),
/// verbatim but for the indentation of the list item it stands in.
pub fn guide_plugin_source() -> String {
    let guide = fs::read_to_string(repo_root().join("docs/plugins.md")).expect("docs/plugins.md");
    let block = guide
        .split_once("<!-- plugin-guide: src/lib.rs")
        .expect("docs/plugins.md marks the guide's src/lib.rs")
        .1
        .split_once("```rust\n")
        .expect("the guide's src/lib.rs is a rust block")
        .1
        .split_once("```")
        .expect("the rust block ends")
        .0;
    block
        .trim_end()
        .lines()
        .map(|l| l.strip_prefix("   ").unwrap_or(l))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// A plugin crate to build outside the workspace.
pub struct ExternalPlugin<'a> {
    /// Crate (and library) name.
    pub name: &'a str,
    /// Its `src/lib.rs`.
    pub source: &'a str,
    /// The plugin-api directory it depends on by path.
    pub api: PathBuf,
}

/// Builds standalone plugin crates, the way a third party would: its own
/// Cargo.toml that depends on plugin-api by path, outside our workspace.
///
/// They share one target directory so that abi_stable is compiled once for
/// every test, and reuse the workspace's Cargo.lock so the dependency
/// versions match what the host was built with.
pub fn build_external(plugins: &[ExternalPlugin]) -> Vec<PathBuf> {
    let file = (std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX);
    build_crates(plugins, "cdylib", file)
}

/// Like [`build_external`], for a crate that forgot `crate-type =
/// ["cdylib"]`: cargo builds it as a Rust library only. Returns its `.rlib`.
pub fn build_external_rlib(plugin: &ExternalPlugin) -> PathBuf {
    build_crates(std::slice::from_ref(plugin), "rlib", ("lib", ".rlib")).remove(0)
}

/// Builds `plugins` with this `crate-type`; returns the library files, named
/// with this prefix and suffix.
fn build_crates(
    plugins: &[ExternalPlugin],
    crate_type: &str,
    (prefix, suffix): (&str, &str),
) -> Vec<PathBuf> {
    static LOCK: OnceLock<std::sync::Mutex<()>> = OnceLock::new();
    let _serial = LOCK.get_or_init(Default::default).lock();
    let target = repo_root().join("target").join("external-plugins");
    let work = tempfile::Builder::new()
        .prefix("eventhost-external-")
        .tempdir()
        .expect("temp dir");
    let mut members = Vec::new();
    for p in plugins {
        let dir = work.path().join(p.name);
        fs::create_dir_all(dir.join("src")).expect("crate dir");
        let manifest = format!(
            "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[lib]\ncrate-type = [\"{crate_type}\"]\n\n[dependencies]\neventhost-plugin-api = {{ path = {api:?} }}\nserde = {{ version = \"1\", features = [\"derive\"] }}\n",
            name = p.name,
            api = p.api.display().to_string(),
        );
        fs::write(dir.join("Cargo.toml"), manifest).expect("manifest");
        fs::write(dir.join("src/lib.rs"), p.source).expect("lib.rs");
        members.push(format!("{:?}", p.name));
    }
    fs::write(
        work.path().join("Cargo.toml"),
        format!(
            // The workspace's own debug profile (Cargo.toml): line tables
            // only, none for dependencies, for the disk's sake.
            "[workspace]\nresolver = \"2\"\nmembers = [{}]\n\n[profile.dev]\ndebug = \"line-tables-only\"\n\n[profile.dev.package.\"*\"]\ndebug = false\n",
            members.join(", ")
        ),
    )
    .expect("workspace manifest");
    fs::copy(
        repo_root().join("Cargo.lock"),
        work.path().join("Cargo.lock"),
    )
    .expect("Cargo.lock");
    let started = Instant::now();
    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .arg("build")
        .arg("--quiet")
        .current_dir(work.path())
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("run cargo");
    assert!(
        output.status.success(),
        "building external plugins failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!(
        "built {} external plugin(s) in {:.1}s",
        plugins.len(),
        started.elapsed().as_secs_f64()
    );
    plugins
        .iter()
        .map(|p| {
            target
                .join("debug")
                .join(format!("{prefix}{}{suffix}", p.name.replace('-', "_")))
        })
        .collect()
}

/// Copies the plugin-api crate to a temporary directory, applying `edit` to
/// each (relative path, text) of its files, so a test can build a plugin
/// against a changed API.
pub fn changed_plugin_api(edit: impl Fn(&str, String) -> String) -> tempfile::TempDir {
    let out = tempfile::Builder::new()
        .prefix("eventhost-api-")
        .tempdir()
        .expect("temp dir");
    let src = repo_root().join("plugin-api");
    copy_tree(&src, out.path(), Path::new(""), &edit);
    out
}

fn copy_tree(src: &Path, dst: &Path, rel: &Path, edit: &impl Fn(&str, String) -> String) {
    fs::create_dir_all(dst.join(rel)).expect("mkdir");
    for entry in fs::read_dir(src.join(rel)).expect("read_dir") {
        let entry = entry.expect("dir entry");
        let rel = rel.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(src, dst, &rel, edit);
        } else {
            let text = fs::read_to_string(src.join(&rel)).expect("read");
            let text = edit(&rel.to_string_lossy(), text);
            let mut f = fs::File::create(dst.join(&rel)).expect("create");
            f.write_all(text.as_bytes()).expect("write");
        }
    }
}
