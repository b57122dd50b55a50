//! Runs one plugin, again and again while it fails and may be restarted.
//!
//! The supervisor subscribes the plugin to the exchange after its cursor
//! and hands the queue to its runner. When the run fails (an error, a
//! panic caught by `export_plugin!`, a crashed child process) what happens
//! is the entry's to say:
//! - an event the plugin failed on `max_event_failures` times in a row is
//!   poison: `poison = "halt"` stops the plugin and reports the event;
//!   `"skip"` records it in the plugin's dead-letter file and moves past it;
//! - otherwise `on_failure = "restart"` waits, with exponential backoff, and
//!   runs the plugin again on a new queue that starts after the last event
//!   it finished (so nothing is lost and nothing it finished comes again),
//!   until too many failures within a window; `"disable"` leaves it
//!   failed; `"stop-node"` stops the node.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use eventhost_plugin_api::Isolation;

use super::context::{HostServices, PluginContext};
use super::cursors::Cursors;
use super::dead_letters::DeadLetters;
use super::process::ProcessRunner;
use super::record::{Loudness, PluginRecord, State};
use super::runner::{Runner, ThreadRunner};
use crate::config::{OnFailure, Poison, RestartPolicy};
use crate::shutdown::StopRequest;

/// Wakes supervisors waiting to restart a plugin when the node stops.
#[derive(Default)]
pub(super) struct Stopping {
    stopping: Mutex<bool>,
    changed: Condvar,
}

impl Stopping {
    pub(super) fn set(&self) {
        *self.stopping.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.changed.notify_all();
    }

    pub(super) fn is_set(&self) -> bool {
        *self.stopping.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits `duration`; true if the node started stopping meanwhile.
    fn wait(&self, duration: Duration) -> bool {
        let stopping = self.stopping.lock().unwrap_or_else(|e| e.into_inner());
        let (stopping, _) = self
            .changed
            .wait_timeout_while(stopping, duration, |s| !*s)
            .unwrap_or_else(|e| e.into_inner());
        *stopping
    }
}

/// What a supervisor needs besides its plugin's record.
#[derive(Clone)]
pub(super) struct Supervision {
    pub(super) services: HostServices,
    pub(super) policy: RestartPolicy,
    pub(super) stopping: Arc<Stopping>,
    pub(super) cursors: Cursors,
    pub(super) dead_letters: DeadLetters,
    pub(super) stop_node: Arc<StopRequest>,
}

pub(super) struct Supervisor {
    pub(super) record: Arc<PluginRecord>,
    pub(super) with: Supervision,
}

/// The event a plugin keeps failing on, and how often it did.
struct Failing {
    seq: u64,
    times: u32,
}

impl Supervisor {
    pub(super) fn run(self, cursor: u64) {
        let end_state = self.supervise(cursor);
        self.record.mark_done();
        self.record.set_state(end_state);
    }

    fn supervise(&self, mut cursor: u64) -> State {
        let record = &self.record;
        let entry = &record.plugin.entry;
        let name = record.name();
        let services = &self.with.services;
        let runner: Box<dyn Runner> = if record.plugin.isolation == Isolation::PROCESS {
            Box::new(ProcessRunner)
        } else {
            Box::new(ThreadRunner)
        };
        let mut failures: VecDeque<Instant> = VecDeque::new();
        let mut failing: Option<Failing> = None;
        let mut backoff = self.with.policy.initial_backoff;
        loop {
            if record.stop_requested() {
                return State::Stopped;
            }
            let queue = services.exchange.subscribe(
                name,
                record.plugin.event_types,
                entry.queue_capacity,
                cursor,
            );
            record.start_run(queue.progress());
            if record.stop_requested() {
                // Asked to stop between the check and the subscription.
                services.exchange.unsubscribe(&queue.progress());
            }
            let context = PluginContext::new(record.clone(), services.clone());
            let outcome = runner.run(context, queue);
            services.advertised.remove_plugin(name);
            let delivered = record.progress().delivered();
            cursor = record.end_run();
            let reason = match outcome {
                Ok(()) => {
                    tracing::info!(plugin = %name, "plugin stopped");
                    return State::Stopped;
                }
                Err(_) if record.stop_requested() => {
                    tracing::info!(plugin = %name, "plugin stopped (unloaded)");
                    return State::Stopped;
                }
                Err(reason) => reason.to_string(),
            };
            let loudness = record.loudness(&reason);
            loudness.log(name, &format!("plugin failed: {reason}"));
            record.set_last_error(&reason);

            // The event after the cursor, if the plugin had it, is the one
            // it was working on.
            let on = cursor + 1;
            if delivered >= on {
                failing = match failing {
                    Some(f) if f.seq == on => Some(Failing {
                        seq: on,
                        times: f.times + 1,
                    }),
                    _ => Some(Failing { seq: on, times: 1 }),
                };
            }
            let poison = failing
                .as_ref()
                .filter(|f| f.times >= entry.max_event_failures)
                .map(|f| (f.seq, f.times));
            if let (Some((seq, _)), Poison::Skip) = (poison, entry.poison) {
                match self.skip(seq, &reason) {
                    Ok(()) => {
                        cursor = seq;
                        failing = None;
                        failures.clear();
                        backoff = self.with.policy.initial_backoff;
                        record.count_restart();
                        record.set_state(State::Starting);
                        continue;
                    }
                    Err(e) => {
                        let why =
                            format!("cannot move event {seq} to the dead-letter file: {e}; halted");
                        tracing::error!(plugin = %name, "{why}");
                        return State::Failed(why);
                    }
                }
            }

            match entry.on_failure {
                OnFailure::Restart => {}
                OnFailure::Disable => {
                    let why =
                        format!("disabled after a failure (on_failure = \"disable\"): {reason}");
                    record.outcome_loudness().log(name, &why);
                    return State::Failed(why);
                }
                OnFailure::StopNode => {
                    let why =
                        format!("plugin `{name}` failed (on_failure = \"stop-node\"): {reason}");
                    tracing::error!(plugin = %name, "stopping the node: {why}");
                    self.with.stop_node.request(why.clone());
                    return State::Failed(why);
                }
            }
            let now = Instant::now();
            let window = self.with.policy.window;
            while failures
                .front()
                .is_some_and(|t| now.duration_since(*t) > window)
            {
                failures.pop_front();
            }
            if failures.is_empty() {
                backoff = self.with.policy.initial_backoff;
            }
            failures.push_back(now);
            if failures.len() >= self.with.policy.max_failures {
                let why = format!(
                    "gave up after {} failures within {} s; last: {reason}",
                    failures.len(),
                    window.as_secs()
                );
                record.outcome_loudness().log(name, &why);
                return State::Failed(why);
            }
            if let Some((seq, times)) = poison {
                let why = format!(
                    "halted: failed {times} times on event {seq} (poison = \"halt\"); last: {reason}"
                );
                record.outcome_loudness().log(name, &why);
                return State::Failed(why);
            }
            record.set_state(State::Restarting);
            // While the node stops, a failed plugin is restarted at once to
            // finish draining its queue (the shutdown deadline still holds).
            let delay = if self.with.stopping.is_set() {
                Duration::ZERO
            } else {
                backoff
            };
            let restarting = format!(
                "restarting the plugin in {} ms, after event {cursor}",
                delay.as_millis()
            );
            if loudness == Loudness::Repeat {
                tracing::debug!(plugin = %name, "{restarting}");
            } else {
                tracing::warn!(plugin = %name, "{restarting}");
            }
            self.with.stopping.wait(delay);
            backoff = (backoff * 2).min(self.with.policy.max_backoff);
            record.count_restart();
            record.set_state(State::Starting);
        }
    }

    /// Moves event `seq` to the plugin's dead-letter file and its cursor
    /// past it, durably, before the plugin runs again.
    fn skip(&self, seq: u64, error: &str) -> Result<(), String> {
        let name = self.record.name();
        let event = self
            .with
            .services
            .exchange
            .read_published(seq, 1)
            .map_err(|e| e.to_string())?
            .into_iter()
            .find(|e| e.seq == seq)
            .ok_or_else(|| format!("event {seq} is not in the event log"))?;
        self.with
            .dead_letters
            .record(name, &event, error)
            .map_err(|e| format!("{}: {e}", self.with.dead_letters.file(name).display()))?;
        self.with
            .cursors
            .save(&[(name, seq)])
            .map_err(|e| e.to_string())?;
        self.record.count_dead_letter();
        self.with
            .services
            .metrics
            .plugin_dead_letters
            .get_or_create(&vec![("plugin".to_owned(), name.to_owned())])
            .inc();
        tracing::warn!(
            plugin = %name,
            "event {seq} failed {} times: moved to {} (poison = \"skip\"); going on after it",
            self.record.plugin.entry.max_event_failures,
            self.with.dead_letters.file(name).display()
        );
        Ok(())
    }
}
