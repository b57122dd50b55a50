//! A bridge plugin's `run`: the contract a broker implements ([`Broker`],
//! [`Link`]) and the two threads that move events to it.
//!
//! The plugin's own thread (the intake) receives from the host, which is
//! blocking, and hands events to the publisher, a task on a small tokio
//! runtime that talks to the broker, in batches of what the queue holds.
//! The intake takes a slot of the window before it receives each event, so
//! a broker that confirms nothing stops the intake, never the host.

use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use eventhost_plugin_api::{Context, Event, Events, RecvTimeoutError};
use tokio::sync::mpsc;

use crate::publisher::Publisher;
use crate::window::{Slots, Window};

/// Resolves once the broker confirmed one message (`Err` with the reason if
/// it refused it, or the confirmation cannot come any more).
pub type Confirmation = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// Why a connection could not be made.
pub enum ConnectError {
    /// Worth trying again after a while: the broker is down or unreachable,
    /// refused the login (credentials may be being rotated), …
    Retry(String),
    /// Trying again cannot help until the operator changes something (e.g.
    /// the broker's stream does not take the plugin's subjects): the plugin
    /// fails with this reason, and the host restarts it with its backoff.
    Fatal(String),
}

/// A broker the bridge can connect to.
pub trait Broker: Send + Sync + 'static {
    type Link: Link;

    /// The broker as shown in the log ("connected to …"), secrets redacted.
    fn describe(&self) -> String;

    /// Opens a connection and sets up what publishing needs (exchange,
    /// stream, …). `ctx` is the plugin's, for its name (shown in the
    /// broker's list of connections), its log and its metrics.
    fn connect(
        &self,
        ctx: &Arc<Context>,
    ) -> impl Future<Output = Result<Self::Link, ConnectError>> + Send;
}

/// One connection to the broker. A link is never repaired: when anything
/// goes wrong the publisher drops it and opens a new one.
pub trait Link: Send + 'static {
    /// Hands every message of `event` to the broker, in order, and returns
    /// their confirmations in the same order (none for an event that has no
    /// messages). The messages must come out the same every time, so that
    /// republishing after a reconnect or a restart repeats them exactly.
    fn publish(
        &mut self,
        event: &Event,
    ) -> impl Future<Output = Result<Vec<Confirmation>, String>> + Send;

    /// The next thing worth knowing about the connection; pending forever if
    /// there is nothing to report.
    fn notice(&mut self) -> impl Future<Output = Notice> + Send;

    /// Closes the connection politely; nothing is left to confirm.
    fn close(self) -> impl Future<Output = ()> + Send;
}

/// Something the broker or the connection reports while the link is up.
pub enum Notice {
    /// The link is unusable; the reason is fit for the log.
    Lost(String),
    /// Worth a warning in the log (e.g. the broker stopped accepting messages).
    Warn(String),
    /// Worth a line in the log (e.g. it resumed).
    Info(String),
}

/// The settings every bridge has, checked.
pub struct Settings {
    /// Events received but not yet confirmed; receiving pauses while this
    /// many are outstanding.
    pub max_unconfirmed_events: usize,
    pub reconnect_initial: Duration,
    pub reconnect_max: Duration,
    /// Prefix of the metric names, e.g. `nats`.
    pub metrics_prefix: &'static str,
}

impl Settings {
    /// Checks the keys every bridge's configuration has, naming the wrong one.
    pub fn check(
        max_unconfirmed_events: usize,
        reconnect_initial_ms: u64,
        reconnect_max_ms: u64,
        metrics_prefix: &'static str,
    ) -> Result<Settings, String> {
        if max_unconfirmed_events == 0 {
            return Err("`max_unconfirmed_events` must be at least 1".to_owned());
        }
        if max_unconfirmed_events > MAX_UNCONFIRMED_EVENTS {
            return Err(format!(
                "`max_unconfirmed_events` ({max_unconfirmed_events}) must be at most {MAX_UNCONFIRMED_EVENTS}"
            ));
        }
        if reconnect_initial_ms == 0 || reconnect_initial_ms > reconnect_max_ms {
            return Err(format!(
                "`reconnect_initial_ms` ({reconnect_initial_ms}) must be at least 1 and at most `reconnect_max_ms` ({reconnect_max_ms})"
            ));
        }
        if reconnect_max_ms > MAX_RECONNECT_MS {
            return Err(format!(
                "`reconnect_max_ms` ({reconnect_max_ms}) must be at most {MAX_RECONNECT_MS} (an hour)"
            ));
        }
        Ok(Settings {
            max_unconfirmed_events,
            reconnect_initial: Duration::from_millis(reconnect_initial_ms),
            reconnect_max: Duration::from_millis(reconnect_max_ms),
            metrics_prefix,
        })
    }
}

/// The largest window: what a tokio semaphore can count, with room to spare.
pub const MAX_UNCONFIRMED_EVENTS: usize = 1 << 20;

/// The longest wait between reconnection attempts: an hour. Longer would
/// leave an outage unnoticed in the log, and far larger values overflow
/// the backoff's arithmetic.
pub const MAX_RECONNECT_MS: u64 = 3_600_000;

/// How often the intake, while waiting for an event, checks that the
/// publisher still runs (it stops early only if it failed or panicked).
const CHECK_PUBLISHER_EVERY: Duration = Duration::from_millis(250);

/// Most events the intake hands the publisher at once. Handing them over
/// one by one woke the publisher's thread per event, and the intake per
/// confirmation: a wake-up is a system call on each side (row 7a).
const INTAKE_BATCH: usize = 64;

/// Runs the bridge until the host shuts down: publishes every event the
/// host delivers through `broker` and acks each once confirmed. `Err` if
/// the broker reported a [`ConnectError::Fatal`], or the runtime failed.
pub fn run<B: Broker>(
    ctx: Context,
    events: Events,
    settings: Settings,
    broker: B,
    what: impl Display,
) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(format!("plugin:{}:{}", ctx.name(), settings.metrics_prefix))
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the plugin's async runtime: {e}"))?;
    // An event is done once the broker confirmed it, not once received.
    events.use_explicit_acks();
    let (ctx, events) = (Arc::new(ctx), Arc::new(events));
    let slots = Slots::new(settings.max_unconfirmed_events);
    let (to_publisher, incoming) = mpsc::unbounded_channel();
    ctx.info(format_args!("publishing {what} at {}", broker.describe()));
    let window = Window::new(slots.clone());
    let publisher = runtime.spawn(
        Publisher::new(
            settings,
            broker,
            ctx.clone(),
            events.clone(),
            incoming,
            window,
        )
        .run(),
    );
    // Ready even before the broker answers: the host must not wait for it,
    // and the publisher keeps trying (and logging why it cannot connect).
    ctx.ready();
    'intake: loop {
        let room = runtime.block_on(slots.take_up_to(INTAKE_BATCH));
        if room == 0 {
            break;
        }
        let first = loop {
            match events.recv_timeout(CHECK_PUBLISHER_EVERY) {
                Ok(event) => break event,
                Err(RecvTimeoutError::Timeout) if !publisher.is_finished() => {}
                Err(_) => break 'intake,
            }
        };
        // What else the queue holds already, without waiting: a closed
        // queue is seen by the blocking receive above next time.
        let mut batch = Vec::with_capacity(room);
        batch.push(first);
        while batch.len() < room {
            match events.recv_timeout(Duration::ZERO) {
                Ok(event) => batch.push(event),
                Err(_) => break,
            }
        }
        slots.give_back(room - batch.len());
        if to_publisher.send(batch).is_err() {
            break;
        }
    }
    drop(to_publisher);
    let outcome = runtime.block_on(publisher);
    runtime.shutdown_background();
    outcome.map_err(|e| format!("the publisher stopped: {e}"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_setting_that_is_wrong() {
        let cases = [
            (0, 500, 30_000, "max_unconfirmed_events"),
            (2_000_000, 500, 30_000, "at most 1048576"),
            (256, 0, 30_000, "reconnect_initial_ms"),
            (256, 5_000, 100, "reconnect_initial_ms"),
            (
                256,
                500,
                3_600_001,
                "`reconnect_max_ms` (3600001) must be at most 3600000",
            ),
        ];
        for (window, initial, max, expected) in cases {
            let err = Settings::check(window, initial, max, "x").err().unwrap();
            assert!(err.contains(expected), "{err}");
        }
        let s = Settings::check(1, 1, 1, "x").unwrap();
        assert_eq!(s.reconnect_max, Duration::from_millis(1));
    }
}
