//! `eventhost.Queue`: the queue a plugin's `run(queue)` receives, with the
//! part of `multiprocessing.Queue` (and `JoinableQueue`) that BigchainDB's
//! plugins use: `get(block=True, timeout=None)`, `get_nowait()`, `empty()`,
//! `qsize()`, `task_done()`, plus `ack(event)`.
//!
//! Every wait on the host's queue releases the GIL, so the plugin's other
//! threads run meanwhile.

use std::sync::{Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use eventhost_plugin_api::{EventTypes, Events, RecvTimeoutError, SharedEvent};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

use crate::delivery::Delivery;
use crate::event::Event;

/// The most events `qsize()` counts: it takes waiting events from the host
/// to count them, and holding more would only grow the plugin's memory.
pub const QSIZE_LIMIT: usize = 1024;

#[pyclass(frozen, module = "eventhost", name = "Queue")]
pub struct Queue {
    events: Events,
    delivery: Mutex<Delivery>,
    /// Held while taking events from the host, so that concurrent `get()`s
    /// hand events out in order.
    receiving: Mutex<()>,
    /// `eventhost.ShutDown`.
    shut_down: Py<PyType>,
}

/// How long `get()` waits.
#[derive(Clone, Copy)]
enum Wait {
    Not,
    For(Duration),
    Forever,
}

/// What a wait on the host's queue gave.
enum Next {
    Event(SharedEvent),
    Empty,
    Closed,
}

static QUEUE_EMPTY: PyOnceLock<Py<PyType>> = PyOnceLock::new();

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The state stays consistent across a panic: every change is one call.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Queue {
    pub fn new(events: Events, wanted: EventTypes, shut_down: Py<PyType>) -> Queue {
        events.use_explicit_acks();
        Queue {
            events,
            delivery: Mutex::new(Delivery::new(wanted)),
            receiving: Mutex::new(()),
            shut_down,
        }
    }

    /// Tells the host how far the plugin got, if that moved.
    fn report(&self, delivery: &mut Delivery) {
        if let Some(seq) = delivery.finish() {
            self.events.ack(seq);
        }
    }

    fn next(&self, wait: Wait) -> Next {
        let _receiving = lock(&self.receiving);
        {
            let mut delivery = lock(&self.delivery);
            delivery.asked_for_next();
            let handed = delivery.hand_out();
            self.report(&mut delivery);
            if let Some(event) = handed {
                return Next::Event(event);
            }
        }
        let deadline = match wait {
            Wait::For(timeout) => Instant::now().checked_add(timeout),
            Wait::Not => Some(Instant::now()),
            Wait::Forever => None,
        };
        loop {
            let received = match deadline {
                None => self.events.recv().ok_or(RecvTimeoutError::Closed),
                Some(deadline) => self
                    .events
                    .recv_timeout(deadline.saturating_duration_since(Instant::now())),
            };
            let event = match received {
                Ok(event) => event,
                Err(RecvTimeoutError::Timeout) => return Next::Empty,
                Err(RecvTimeoutError::Closed) => return Next::Closed,
            };
            let mut delivery = lock(&self.delivery);
            delivery.take(event);
            let handed = delivery.hand_out();
            self.report(&mut delivery);
            if let Some(event) = handed {
                return Next::Event(event);
            }
        }
    }

    /// Takes the events the host has ready, without waiting, until `limit`
    /// wait to be handed out; returns how many wait. A `get()` blocked in
    /// another thread means there are none.
    fn look_ahead(&self, limit: usize) -> usize {
        let _receiving = match self.receiving.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => return 0,
        };
        loop {
            let waiting = lock(&self.delivery).waiting();
            if waiting >= limit {
                return waiting;
            }
            match self.events.recv_timeout(Duration::ZERO) {
                Ok(event) => {
                    let mut delivery = lock(&self.delivery);
                    delivery.take(event);
                    self.report(&mut delivery);
                }
                Err(_) => return waiting,
            }
        }
    }

    fn get_waiting(&self, py: Python<'_>, wait: Wait) -> PyResult<Event> {
        match py.detach(|| self.next(wait)) {
            Next::Event(event) => Ok(Event::new(event)),
            Next::Empty => {
                let empty = QUEUE_EMPTY.import(py, "queue", "Empty")?;
                Err(PyErr::from_type(empty.clone(), ()))
            }
            Next::Closed => Err(PyErr::from_type(
                self.shut_down.bind(py).clone(),
                "the host is shutting down and every event was received: return from run()",
            )),
        }
    }
}

#[pymethods]
impl Queue {
    /// The next event. Waits while there is none: without limit, for
    /// `timeout` seconds (then raises `queue.Empty`), or not at all with
    /// `block=False`. Raises `eventhost.ShutDown` once the host shuts down
    /// and every event for the plugin was received.
    #[pyo3(signature = (block = true, timeout = None))]
    fn get(&self, py: Python<'_>, block: bool, timeout: Option<f64>) -> PyResult<Event> {
        let wait = match (block, timeout) {
            (false, _) => Wait::Not,
            (true, None) => Wait::Forever,
            (true, Some(seconds)) if seconds.is_nan() || seconds < 0.0 => {
                return Err(PyValueError::new_err(
                    "'timeout' must be a non-negative number",
                ));
            }
            // Longer than a Duration holds: as good as forever.
            (true, Some(seconds)) => Duration::try_from_secs_f64(seconds)
                .map(Wait::For)
                .unwrap_or(Wait::Forever),
        };
        self.get_waiting(py, wait)
    }

    /// `get(block=False)`.
    fn get_nowait(&self, py: Python<'_>) -> PyResult<Event> {
        self.get_waiting(py, Wait::Not)
    }

    /// Whether no event is ready now.
    fn empty(&self, py: Python<'_>) -> bool {
        py.detach(|| self.look_ahead(1)) == 0
    }

    /// How many events are ready now (counting at most 1024).
    fn qsize(&self, py: Python<'_>) -> usize {
        py.detach(|| self.look_ahead(QSIZE_LIMIT))
    }

    /// The oldest event `get()` returned and not yet done is done. The
    /// first call makes the plugin acknowledge every event itself: from
    /// then on asking for the next no longer finishes the previous one.
    fn task_done(&self) -> PyResult<()> {
        let mut delivery = lock(&self.delivery);
        delivery
            .task_done()
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        self.report(&mut delivery);
        Ok(())
    }

    /// `event` and every event returned before it are done; like
    /// `task_done()`, the first call makes the plugin acknowledge events itself.
    fn ack(&self, event: PyRef<'_, Event>) -> PyResult<()> {
        let mut delivery = lock(&self.delivery);
        delivery
            .ack_through(event.seq())
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        self.report(&mut delivery);
        Ok(())
    }
}
