//! `eventhost.Event`: what `queue.get()` returns, shaped like BigchainDB's
//! `bigchaindb.events.Event` (`.type`, `.data`), plus `.seq`.

use eventhost_plugin_api::{BLOCK_INVALID, SharedEvent};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyAny, PyDict, PyList};

/// One event. `.data` is built on first use and kept: a plugin that only
/// looks at `.type`, or only counts, never pays for turning the block's
/// transactions into Python objects.
#[pyclass(frozen, module = "eventhost", name = "Event")]
pub struct Event {
    inner: SharedEvent,
    data: PyOnceLock<Py<PyDict>>,
}

impl Event {
    pub fn new(inner: SharedEvent) -> Event {
        Event {
            inner,
            data: PyOnceLock::new(),
        }
    }

    pub fn seq(&self) -> u64 {
        self.inner.seq
    }
}

#[pymethods]
impl Event {
    /// The event's type: 1 (BLOCK_VALID) or 2 (BLOCK_INVALID).
    #[getter(r#type)]
    fn event_type(&self) -> u32 {
        self.inner.event_type.id()
    }

    /// The event's position in the host's event log (1, 2, 3, ... across
    /// both types): what `queue.ack(event)` acknowledges up to.
    #[getter(seq)]
    fn py_seq(&self) -> u64 {
        self.inner.seq
    }

    /// `{"height", "hash", "timestamp_ms", "transactions"}`, and for a
    /// BLOCK_INVALID also `"rejections"`: `[{"transaction_id", "reason"}]`.
    #[getter]
    fn data(&self, py: Python<'_>) -> PyResult<Py<PyDict>> {
        self.data
            .get_or_try_init(py, || Ok::<_, PyErr>(build_data(py, &self.inner)?.unbind()))
            .map(|data| data.clone_ref(py))
    }

    fn __repr__(&self) -> String {
        format!(
            "Event(type={}, seq={}, height={}, transactions={})",
            self.inner.event_type.id(),
            self.inner.seq,
            self.inner.height,
            self.inner.transactions.len()
        )
    }
}

static JSON_LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

fn build_data<'py>(
    py: Python<'py>,
    event: &eventhost_plugin_api::Event,
) -> PyResult<Bound<'py, PyDict>> {
    let data = PyDict::new(py);
    data.set_item("height", event.height)?;
    data.set_item("hash", event.block_hash.as_str())?;
    data.set_item("timestamp_ms", event.timestamp_ms)?;
    // The transactions are JSON text; one array for the C parser of the
    // json module is one call however many there are.
    let mut array = String::with_capacity(
        2 + event
            .transactions
            .iter()
            .map(|t| t.len() + 1)
            .sum::<usize>(),
    );
    array.push('[');
    for (i, tx) in event.transactions.iter().enumerate() {
        if i > 0 {
            array.push(',');
        }
        array.push_str(tx);
    }
    array.push(']');
    let loads = JSON_LOADS.get_or_try_init(py, || {
        Ok::<_, PyErr>(py.import("json")?.getattr("loads")?.unbind())
    })?;
    data.set_item("transactions", loads.bind(py).call1((array,))?)?;
    if event.event_type == BLOCK_INVALID {
        let rejections = PyList::empty(py);
        for r in event.rejections.iter() {
            let rejection = PyDict::new(py);
            rejection.set_item("transaction_id", r.transaction_id.as_str())?;
            rejection.set_item("reason", r.reason.as_str())?;
            rejections.append(rejection)?;
        }
        data.set_item("rejections", rejections)?;
    }
    Ok(data)
}
