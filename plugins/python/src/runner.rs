//! One run of one Python plugin: find the interpreter, start it, load the
//! plugin, call its `run(queue)`, and turn how that ended into what the host
//! understands (a clean stop, or a failure it restarts).

use std::fmt;
use std::sync::Arc;

use eventhost_plugin_api::{Context, Events};
use pyo3::exceptions::PySystemExit;
use pyo3::prelude::*;
use pyo3::types::{IntoPyDict, PyTuple};

use crate::config::{Config, Target};
use crate::describe::summary;
use crate::embed::{self, EmbedError};
use crate::event_types::subscription;
use crate::host_log::HostLog;
use crate::interpreter::{self, InterpreterError};
use crate::modules;
use crate::queue::Queue;

/// Why a run ended other than cleanly.
#[derive(Debug)]
pub enum RunError {
    /// The `[plugins.config]` table, as the host words it.
    Config(String),
    Interpreter(InterpreterError),
    Embed(EmbedError),
    /// The plugin is not there, or is not a plugin (`locate.NotAPlugin`),
    /// or subscribes to events this host does not know.
    NotAPlugin(String),
    /// Python code raised: importing the plugin, or its `run`. The
    /// traceback is in the log already.
    Raised {
        during: String,
        exception: String,
    },
    /// `run` called `sys.exit` with a failure status.
    Exited {
        status: String,
    },
}

impl RunError {
    /// Whether running again cannot help until the configuration or the
    /// environment changes.
    fn is_setup(&self) -> bool {
        !matches!(self, RunError::Raised { .. } | RunError::Exited { .. })
    }
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Config(e) => f.write_str(e),
            RunError::Interpreter(e) => e.fmt(f),
            RunError::Embed(e) => e.fmt(f),
            RunError::NotAPlugin(why) => f.write_str(why),
            RunError::Raised { during, exception } => {
                write!(f, "{during} raised {exception} (traceback above)")
            }
            RunError::Exited { status } => write!(f, "run(queue) called sys.exit({status})"),
        }
    }
}

impl From<InterpreterError> for RunError {
    fn from(e: InterpreterError) -> Self {
        RunError::Interpreter(e)
    }
}

impl From<EmbedError> for RunError {
    fn from(e: EmbedError) -> Self {
        RunError::Embed(e)
    }
}

/// The plugin's `run` for the host.
pub fn run(ctx: Context, events: Events) -> Result<(), String> {
    let ctx = Arc::new(ctx);
    run_plugin(&ctx, events).map_err(|e| {
        let reason = e.to_string();
        if e.is_setup() {
            ctx.failed(&reason);
        }
        reason
    })
}

fn run_plugin(ctx: &Arc<Context>, events: Events) -> Result<(), RunError> {
    // Only the table: the check against the environment (describe.rs)
    // would import the plugin in a process of its own, and the run imports
    // it here anyway.
    let config: Config = ctx.config().map_err(RunError::Config)?;
    let python = interpreter::locate(config.python.as_deref())?;
    // Only the interpreter describes itself here; the plugin is imported
    // in the embedded interpreter, once, below.
    let probe = interpreter::probe(&python, None)?;
    embed::start(ctx.name(), &probe)?;
    Python::attach(|py| {
        let setup = |e: PyErr| raised(py, ctx, "starting the plugin's Python side", e);
        let eventhost = modules::eventhost(py).map_err(setup)?;
        let log = Bound::new(py, HostLog::new(ctx.clone())).map_err(setup)?;
        eventhost
            .call_method1("_route_output", (log, config.log_level.number()))
            .map_err(setup)?;
        let plugin = find(py, ctx, &config.target)?;
        let types =
            subscription(plugin.event_types, &plugin.origin).map_err(RunError::NotAPlugin)?;
        ctx.info(format_args!(
            "running {}",
            summary(
                &plugin.origin,
                types,
                &probe.executable,
                &probe.version_text()
            )
        ));
        let shut_down = modules::shut_down(py).map_err(setup)?;
        let queue =
            Bound::new(py, Queue::new(events, types, shut_down.clone().unbind())).map_err(setup)?;
        ctx.ready();
        let outcome = plugin.run.call1((queue,));
        // A last line printed without its newline still reaches the log.
        let _ = eventhost.call_method0("_flush_output");
        match outcome {
            Ok(_) => Ok(()),
            Err(e) if e.is_instance(py, &shut_down) => Ok(()),
            Err(e) if e.is_instance_of::<PySystemExit>(py) => exited(py, &e),
            Err(e) => Err(raised(py, ctx, "run(queue)", e)),
        }
    })
}

/// A plugin, found and imported.
struct Found<'py> {
    origin: String,
    event_types: Option<i64>,
    run: Bound<'py, PyAny>,
}

/// Finds and imports the plugin (`locate.find`), and reads what it declares.
fn find<'py>(py: Python<'py>, ctx: &Context, target: &Target) -> Result<Found<'py>, RunError> {
    let (kind, name) = (target.key(), target.name());
    let during = format!("importing {} {name:?}", kind.replace('_', " "));
    let locate = modules::locate(py).map_err(|e| raised(py, ctx, &during, e))?;
    let found = (|| {
        let (plugin, origin): (Bound<PyAny>, String) = locate
            .call_method("find", (), Some(&[(kind, name)].into_py_dict(py)?))?
            .extract()?;
        let (event_types, run) = locate
            .call_method1("declared", (&plugin, &origin))?
            .extract()?;
        Ok::<_, PyErr>(Found {
            origin,
            event_types,
            run,
        })
    })();
    found.map_err(|e| {
        let not_a_plugin = locate.getattr("NotAPlugin");
        if not_a_plugin.is_ok_and(|class| e.is_instance(py, &class)) {
            RunError::NotAPlugin(e.value(py).to_string())
        } else {
            raised(py, ctx, &during, e)
        }
    })
}

/// `run` raised SystemExit: a clean end for `sys.exit()` and `sys.exit(0)`.
fn exited(py: Python<'_>, e: &PyErr) -> Result<(), RunError> {
    match e.value(py).getattr("code").ok().filter(|c| !c.is_none()) {
        None => Ok(()),
        Some(code) if code.extract::<i64>().is_ok_and(|c| c == 0) => Ok(()),
        Some(code) => Err(RunError::Exited {
            status: code.repr().map(|r| r.to_string()).unwrap_or_default(),
        }),
    }
}

/// Logs a Python exception with its traceback, and says what raised what.
fn raised(py: Python<'_>, ctx: &Context, during: &str, e: PyErr) -> RunError {
    let formatted = py.import("traceback").and_then(|tb| {
        let args = PyTuple::new(
            py,
            [
                e.get_type(py).into_any(),
                e.value(py).clone().into_any(),
                e.traceback(py)
                    .map_or_else(|| py.None().into_bound(py), |t| t.into_any()),
            ],
        )?;
        let lines: Vec<String> = tb
            .call_method1("format_exception", args.clone())?
            .extract()?;
        let last: Vec<String> = tb
            .call_method1(
                "format_exception_only",
                (args.get_item(0)?, args.get_item(1)?),
            )?
            .extract()?;
        Ok::<_, PyErr>((lines.concat(), last.concat()))
    });
    let (traceback, exception) = match formatted {
        Ok((traceback, last)) => (traceback, last.trim().to_owned()),
        Err(_) => (String::new(), e.to_string()),
    };
    ctx.error(format_args!(
        "{during} raised an exception:\n{}",
        traceback.trim_end()
    ));
    RunError::Raised {
        during: during.to_owned(),
        exception,
    }
}
