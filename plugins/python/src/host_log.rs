//! The host's log as Python sees it: a callable taking a `logging` level
//! number and a message, which `print()` (through `sys.stdout` and
//! `sys.stderr`) and the `logging` handler of `eventhost.py` call.

use std::sync::Arc;

use eventhost_plugin_api::Context;
use eventhost_plugin_api::ffi::LogLevel;
use pyo3::prelude::*;

#[pyclass(frozen, module = "eventhost", name = "_HostLog")]
pub struct HostLog {
    ctx: Arc<Context>,
}

impl HostLog {
    pub fn new(ctx: Arc<Context>) -> HostLog {
        HostLog { ctx }
    }
}

/// The host's level for a `logging` level number: CRITICAL and ERROR are
/// errors, WARNING warnings, INFO info, DEBUG debug, anything lower trace.
pub fn host_level(python_level: i64) -> LogLevel {
    match python_level {
        40.. => LogLevel::Error,
        30..=39 => LogLevel::Warn,
        20..=29 => LogLevel::Info,
        10..=19 => LogLevel::Debug,
        _ => LogLevel::Trace,
    }
}

#[pymethods]
impl HostLog {
    fn __call__(&self, py: Python<'_>, level: i64, message: &str) {
        // In process isolation a log line is a write to the host's socket.
        py.detach(|| self.ctx.log(host_level(level), message));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_levels_map_to_the_hosts() {
        let levels: Vec<LogLevel> = [50, 40, 35, 30, 20, 10, 5, 0]
            .into_iter()
            .map(host_level)
            .collect();
        assert_eq!(
            levels,
            [
                LogLevel::Error,
                LogLevel::Error,
                LogLevel::Warn,
                LogLevel::Warn,
                LogLevel::Info,
                LogLevel::Debug,
                LogLevel::Trace,
                LogLevel::Trace
            ]
        );
    }
}
