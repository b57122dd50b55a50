//! This plugin's own Python code in the embedded interpreter: the
//! `eventhost` module plugins see (`python/eventhost.py` plus the `Queue`
//! and `Event` classes), and the plugin finder (`python/locate.py`), each
//! created once per interpreter.

use std::ffi::{CStr, CString};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyModule, PyType};

use crate::event::Event;
use crate::interpreter::{EVENTHOST_PY, LOCATE_PY};
use crate::queue::Queue;

static EVENTHOST: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
static LOCATE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

fn load<'py>(
    py: Python<'py>,
    source: &str,
    file: &CStr,
    name: &CStr,
) -> PyResult<Bound<'py, PyModule>> {
    let source = CString::new(source)?;
    PyModule::from_code(py, &source, file, name)
}

/// The `eventhost` module (also in `sys.modules`, for `import eventhost`).
pub fn eventhost(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    EVENTHOST
        .get_or_try_init(py, || {
            let module = load(py, EVENTHOST_PY, c"<eventhost>/eventhost.py", c"eventhost")?;
            module.add_class::<Queue>()?;
            module.add_class::<Event>()?;
            Ok::<_, PyErr>(module.unbind())
        })
        .map(|m| m.bind(py))
}

/// `eventhost.ShutDown`.
pub fn shut_down(py: Python<'_>) -> PyResult<Bound<'_, PyType>> {
    Ok(eventhost(py)?.getattr("ShutDown")?.cast_into()?)
}

/// The plugin finder, `locate.py`.
pub fn locate(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    LOCATE
        .get_or_try_init(py, || {
            Ok::<_, PyErr>(
                load(
                    py,
                    LOCATE_PY,
                    c"<eventhost>/locate.py",
                    c"_eventhost_locate",
                )?
                .unbind(),
            )
        })
        .map(|m| m.bind(py))
}
