//! What a soak run found: its violations, each of which fails the run.
//! Every part of the run reports here, from any thread; each violation is
//! also printed as it is found, so that a long run shows trouble when it
//! happens.

use std::sync::Mutex;

/// Violations kept in full; beyond this many only their count grows, so
/// that a run that goes badly wrong cannot exhaust the driver's memory.
const KEPT: usize = 200;

#[derive(Default)]
pub struct Findings {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    violations: Vec<String>,
    dropped: usize,
}

impl Findings {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Something the node must never do happened.
    pub fn violation(&self, what: impl Into<String>) {
        let what = what.into();
        eprintln!("soak: VIOLATION: {what}");
        let mut state = self.state();
        if state.violations.len() < KEPT {
            state.violations.push(what);
        } else {
            state.dropped += 1;
        }
    }

    pub fn violation_count(&self) -> usize {
        let state = self.state();
        state.violations.len() + state.dropped
    }

    /// The violations, and how many more were not kept.
    pub fn report(&self) -> (Vec<String>, usize) {
        let state = self.state();
        (state.violations.clone(), state.dropped)
    }
}
