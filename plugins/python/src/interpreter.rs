//! Which Python interpreter a plugin runs in, and what it is: asked of the
//! interpreter itself, in a process of its own, before anything is embedded.
//!
//! The rule: `python` in the configuration (a virtualenv's directory or an
//! interpreter's file), else the virtualenv in `$VIRTUAL_ENV`, else the first
//! `python3` on `PATH`.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::config::Target;

/// The Python side of finding a plugin (see the file's docstring).
pub const LOCATE_PY: &str = include_str!("python/locate.py");
/// The `eventhost` module's Python part, which plugins import.
pub const EVENTHOST_PY: &str = include_str!("python/eventhost.py");

/// How long the interpreter may take to describe itself and the plugin
/// (which imports the plugin's module, whose code may do anything).
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

/// What the interpreter says about itself.
#[derive(Debug, Clone, Deserialize)]
pub struct Probe {
    /// `sys.executable`: the interpreter's real path, not a shim's.
    pub executable: PathBuf,
    pub version: (u32, u32, u32),
    /// Its build's libpython (`LIBDIR`/`INSTSONAME`), if it says.
    pub libpython: Option<PathBuf>,
    /// The plugin, if the probe was asked about one.
    pub plugin: Option<PluginProbe>,
}

impl Probe {
    pub fn version_text(&self) -> String {
        let (major, minor, micro) = self.version;
        format!("{major}.{minor}.{micro}")
    }
}

/// What the interpreter found of the plugin.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PluginProbe {
    Found {
        origin: String,
        event_types: Option<i64>,
    },
    Error {
        error: String,
    },
}

/// Why the interpreter could not be found or could not describe itself.
#[derive(Debug)]
pub enum InterpreterError {
    /// `python` names neither an interpreter nor a virtualenv.
    NotAnInterpreter { path: PathBuf, source: &'static str },
    /// The interpreter could not be started.
    CannotStart { python: PathBuf, detail: String },
    /// It ran, but did not describe itself.
    ProbeFailed { python: PathBuf, detail: String },
}

impl fmt::Display for InterpreterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InterpreterError::NotAnInterpreter { path, source } => write!(
                f,
                "{source} {} is neither a Python interpreter nor a virtualenv (a directory with bin/python3)",
                path.display()
            ),
            InterpreterError::CannotStart { python, detail } => write!(
                f,
                "cannot run the Python interpreter {}: {detail}; set `python` in [plugins.config] to a virtualenv or an interpreter",
                python.display()
            ),
            InterpreterError::ProbeFailed { python, detail } => write!(
                f,
                "the Python interpreter {} did not describe itself: {detail}",
                python.display()
            ),
        }
    }
}

impl std::error::Error for InterpreterError {}

/// The interpreter to run, by the rule in the module's doc.
pub fn locate(configured: Option<&Path>) -> Result<PathBuf, InterpreterError> {
    let (path, source) = match configured {
        Some(path) => (path.to_owned(), "`python` ="),
        None => match std::env::var_os("VIRTUAL_ENV").filter(|v| !v.is_empty()) {
            Some(venv) => (PathBuf::from(venv), "$VIRTUAL_ENV ="),
            // Found on PATH when it is run.
            None => return Ok(PathBuf::from("python3")),
        },
    };
    if path.is_file() {
        return Ok(path);
    }
    ["bin/python3", "bin/python"]
        .iter()
        .map(|exe| path.join(exe))
        .find(|exe| exe.is_file())
        .ok_or(InterpreterError::NotAnInterpreter { path, source })
}

/// Runs `python` on [`LOCATE_PY`]: the interpreter describes itself, and,
/// with a `target`, finds the plugin and reads its `event_types` (importing
/// its module in that separate process).
pub fn probe(python: &Path, target: Option<&Target>) -> Result<Probe, InterpreterError> {
    let mut command = Command::new(python);
    command.arg("-c").arg(LOCATE_PY);
    if let Some(target) = target {
        // locate.py takes the key and the name (`module my_package.plugin`),
        // and the source of the `eventhost` module the plugin may import.
        command.args([target.key(), target.name(), EVENTHOST_PY]);
    }
    let output = run_bounded(&mut command, PROBE_TIMEOUT).map_err(|detail| {
        InterpreterError::CannotStart {
            python: python.to_owned(),
            detail,
        }
    })?;
    let failed = |detail: String| InterpreterError::ProbeFailed {
        python: python.to_owned(),
        detail,
    };
    if !output.success {
        let last = output.stderr.lines().rev().find(|l| !l.trim().is_empty());
        return Err(failed(format!(
            "it exited with {}: {}",
            output.status,
            last.unwrap_or("(nothing on stderr)")
        )));
    }
    // The description is the last line: whatever came before it is the plugin's.
    let line = output.stdout.lines().rev().find(|l| !l.trim().is_empty());
    serde_json::from_str(line.unwrap_or(""))
        .map_err(|e| failed(format!("unreadable answer ({e}): {:?}", line.unwrap_or(""))))
}

struct Output {
    success: bool,
    status: String,
    stdout: String,
    stderr: String,
}

/// Runs `command` to its end, killing it after `timeout`.
fn run_bounded(command: &mut Command, timeout: Duration) -> Result<Output, String> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    // Read both pipes as they fill, or a chatty child would block on a full one.
    let read = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut text);
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = read(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = read(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "it did not answer within {} s (killed)",
                    timeout.as_secs()
                ));
            }
            Err(e) => return Err(e.to_string()),
        }
    };
    Ok(Output {
        success: status.success(),
        status: status.to_string(),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_without_an_interpreter_is_named() {
        let dir = std::env::temp_dir();
        let e = locate(Some(&dir)).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "`python` = {} is neither a Python interpreter nor a virtualenv (a directory with bin/python3)",
                dir.display()
            )
        );
    }

    #[test]
    fn an_interpreter_that_does_not_exist_cannot_start() {
        let e = probe(Path::new("/nonexistent/python3"), None).unwrap_err();
        assert!(
            e.to_string().starts_with(
                "cannot run the Python interpreter /nonexistent/python3: No such file"
            ),
            "{e}"
        );
    }

    #[test]
    fn something_that_is_not_python_does_not_describe_itself() {
        let e = probe(Path::new("/bin/false"), None).unwrap_err();
        assert!(
            e.to_string().starts_with(
                "the Python interpreter /bin/false did not describe itself: it exited with exit status: 1"
            ),
            "{e}"
        );
    }

    #[test]
    fn python3_on_path_describes_itself() {
        let probe = probe(&locate(None).unwrap(), None).unwrap();
        assert!(probe.executable.is_absolute(), "{probe:?}");
        assert_eq!(probe.version.0, 3);
        assert!(probe.plugin.is_none());
    }
}
