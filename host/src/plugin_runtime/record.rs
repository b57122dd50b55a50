//! One plugin's record: what it is and how it is doing, shared by its
//! supervisor, its context, the status API and the metrics.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::load::LoadedPlugin;
use crate::exchange::Progress;

/// Where a plugin is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// `run` was called; the plugin has not said it is ready yet.
    Starting,
    /// The plugin said it is ready.
    Running,
    /// `run` failed; it is called again after a backoff.
    Restarting,
    /// The plugin reported a failure, or failed too often to restart.
    Failed(String),
    /// `run` returned without error.
    Stopped,
}

impl State {
    /// Every state's name, as [`State::name`] gives them.
    pub const NAMES: [&'static str; 5] = ["starting", "running", "restarting", "failed", "stopped"];

    /// The state's name in the status API.
    pub fn name(&self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Running => "running",
            State::Restarting => "restarting",
            State::Failed(_) => "failed",
            State::Stopped => "stopped",
        }
    }
}

/// One configured plugin: what it is and how it is doing.
pub struct PluginRecord {
    pub plugin: LoadedPlugin,
    state: Mutex<State>,
    changed: Condvar,
    /// Its supervising thread has ended.
    done: AtomicBool,
    /// The progress of its current queue.
    progress: Mutex<Arc<Progress>>,
    restarts: AtomicU32,
    last_error: Mutex<Option<String>>,
    /// Events delivered by the queues of earlier runs.
    delivered_before: AtomicU64,
    /// When this instance was loaded, in ms since the Unix epoch.
    pub loaded_at_ms: u64,
    /// Delivery is held (`pause`); survives restarts of the plugin.
    paused: AtomicBool,
    /// The plugin is being unloaded: it is not restarted.
    stop: AtomicBool,
    /// Stopping it took too long: in process mode its child is killed.
    abandon: AtomicBool,
    /// Events moved to its dead-letter file.
    dead_letters: AtomicU64,
    /// It said it was ready at least once since it was loaded (set with
    /// `state`, under its lock): from then on its failures are the restart
    /// policy's business, not a failure to start.
    was_ready: AtomicBool,
    /// Someone waits for it to start ([`PluginRecord::wait_started`]) and
    /// reports how that went.
    watched: AtomicBool,
    /// The last failure logged, so that the same one again is not.
    last_logged: Mutex<Option<String>>,
}

/// How loudly a plugin's failure is logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Loudness {
    /// A failure of a running plugin, or one that nobody else reports.
    Error,
    /// A failure before the plugin was ever ready: whoever waits for it to
    /// start (the node at start, the admin API) reports the outcome.
    Warn,
    /// The same failure as the last one logged.
    Repeat,
}

impl Loudness {
    pub(super) fn log(self, plugin: &str, message: &str) {
        match self {
            Loudness::Error => tracing::error!(plugin = %plugin, "{message}"),
            Loudness::Warn => tracing::warn!(plugin = %plugin, "{message}"),
            Loudness::Repeat => tracing::debug!(plugin = %plugin, "{message} (again)"),
        }
    }
}

impl PluginRecord {
    /// What the status API (`GET /api/v1/plugins`) and the admin API show
    /// of the plugin, `head` being the newest published event.
    pub fn status(&self, head: u64) -> serde_json::Value {
        let plugin = &self.plugin;
        let progress = self.progress();
        let state = self.state();
        serde_json::json!({
            "name": self.name(),
            "state": state.name(),
            "failure": match &state { State::Failed(reason) => Some(reason.clone()), _ => None },
            "paused": self.is_paused(),
            "file": plugin.origin.display().to_string(),
            "loaded_from": plugin.file.display().to_string(),
            "checksum": plugin.checksum(),
            "loaded_at_ms": self.loaded_at_ms,
            "api_version": plugin.api_version.to_string(),
            "event_types": plugin.event_types.to_string(),
            "isolation": plugin.isolation.name(),
            "required": plugin.entry.required,
            "restarts": self.restarts(),
            "last_error": self.last_error(),
            "events_delivered": self.delivered_count(),
            "last_delivered_seq": progress.delivered(),
            "cursor": progress.finished(),
            "queue_depth": progress.queued(),
            "lag": head.saturating_sub(progress.delivered()),
            "dead_letters": self.dead_letters(),
        })
    }

    pub(super) fn new(plugin: LoadedPlugin) -> PluginRecord {
        PluginRecord {
            plugin,
            state: Mutex::new(State::Starting),
            changed: Condvar::new(),
            done: AtomicBool::new(false),
            progress: Mutex::new(Arc::new(Progress::default())),
            restarts: AtomicU32::new(0),
            last_error: Mutex::new(None),
            delivered_before: AtomicU64::new(0),
            loaded_at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            paused: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            abandon: AtomicBool::new(false),
            dead_letters: AtomicU64::new(0),
            was_ready: AtomicBool::new(false),
            watched: AtomicBool::new(true),
            last_logged: Mutex::new(None),
        }
    }

    /// How loudly to log this failure (`reason`): an operator sees each
    /// failure once, as an error unless someone reports it; the same one
    /// again, with no ready in between (a plugin that cannot start), only
    /// in the debug log.
    pub(super) fn loudness(&self, reason: &str) -> Loudness {
        let mut last = self.last_logged.lock().unwrap_or_else(|e| e.into_inner());
        if last.as_deref() == Some(reason) {
            return Loudness::Repeat;
        }
        *last = Some(reason.to_owned());
        self.outcome_loudness()
    }

    /// How loudly to log how the plugin ended (gave up, disabled, halted).
    pub(super) fn outcome_loudness(&self) -> Loudness {
        if self.was_ready.load(Ordering::Acquire) || !self.watched.load(Ordering::Acquire) {
            Loudness::Error
        } else {
            Loudness::Warn
        }
    }

    /// Whether delivery to the plugin is held.
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// Holds or resumes delivery, now and across restarts.
    pub(super) fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::Release);
        self.progress().set_paused(paused);
    }

    /// Asks the plugin to stop for good: its queue ends after what it
    /// holds, and it is not restarted.
    pub(super) fn request_stop(&self, exchange: &crate::exchange::Exchange) {
        self.stop.store(true, Ordering::Release);
        exchange.unsubscribe(&self.progress());
    }

    pub(super) fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Gives up waiting for it to stop: a child process is killed.
    pub(super) fn abandon(&self) {
        self.abandon.store(true, Ordering::Release);
    }

    pub(super) fn abandoned(&self) -> bool {
        self.abandon.load(Ordering::Acquire)
    }

    /// Events moved to its dead-letter file since it was loaded.
    pub fn dead_letters(&self) -> u64 {
        self.dead_letters.load(Ordering::Acquire)
    }

    pub(super) fn count_dead_letter(&self) {
        self.dead_letters.fetch_add(1, Ordering::AcqRel);
    }

    pub fn name(&self) -> &str {
        &self.plugin.entry.name
    }

    pub fn state(&self) -> State {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(super) fn set_state(&self, state: State) {
        let mut current = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state == State::Running {
            self.was_ready.store(true, Ordering::Release);
            // A failure after this one is news, whatever it says.
            *self.last_logged.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
        *current = state;
        self.changed.notify_all();
    }

    /// How often `run` was called again after failing.
    pub fn restarts(&self) -> u32 {
        self.restarts.load(Ordering::Acquire)
    }

    /// The last failure, reported or returned.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(super) fn set_last_error(&self, error: &str) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error.to_owned());
    }

    /// Events delivered to the plugin in this host run, across restarts.
    pub fn delivered_count(&self) -> u64 {
        self.delivered_before.load(Ordering::Acquire) + self.progress().count()
    }

    /// How far its current queue got.
    pub fn progress(&self) -> Arc<Progress> {
        self.progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The plugin's supervisor has ended: it will not run again.
    pub(super) fn mark_done(&self) {
        self.done.store(true, Ordering::Release);
    }

    pub(super) fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// A new run of the plugin starts on a queue with this progress.
    pub(super) fn start_run(&self, progress: Arc<Progress>) {
        progress.set_paused(self.is_paused());
        *self.progress.lock().unwrap_or_else(|e| e.into_inner()) = progress;
    }

    /// The current run ended: keeps its count of delivered events, and
    /// returns the last event it finished.
    pub(super) fn end_run(&self) -> u64 {
        let progress = self.progress();
        self.delivered_before
            .fetch_add(progress.count(), Ordering::AcqRel);
        progress.finished()
    }

    pub(super) fn count_restart(&self) {
        self.restarts.fetch_add(1, Ordering::AcqRel);
    }

    /// Waits until the plugin has reported ready or stopped starting
    /// without it, or the deadline passes. A plugin that reported ready is
    /// `Running` here whatever happened since: one that then failed on an
    /// event while the node was still waiting for other plugins (the soak
    /// test found a kill -9 and restart make that likely: a flaky plugin
    /// catching up panicked 70 µs after its ready, and the node exited with
    /// status 3) is restarted by the policy, as it would be a moment later.
    /// Whoever loads a plugin waits for it and reports the outcome (see
    /// [`Loudness::Warn`]); a plugin is watched from its creation to the end
    /// of this wait.
    pub(super) fn wait_started(&self, deadline: Instant) -> State {
        let state = self.wait_started_watched(deadline);
        self.watched.store(false, Ordering::Release);
        state
    }

    fn wait_started_watched(&self, deadline: Instant) -> State {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while *state == State::Starting && !self.was_ready.load(Ordering::Acquire) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        if self.was_ready.load(Ordering::Acquire) {
            return State::Running;
        }
        state.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::State;

    #[test]
    fn every_state_is_named_in_names() {
        let states = [
            State::Starting,
            State::Running,
            State::Restarting,
            State::Failed("x".into()),
            State::Stopped,
        ];
        let names: Vec<&str> = states.iter().map(State::name).collect();
        assert_eq!(names, State::NAMES);
    }
}
