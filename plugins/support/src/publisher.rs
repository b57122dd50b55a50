//! Publishes the events the intake hands over and acknowledges each to the
//! host only once the broker confirmed every message of it, so the plugin's
//! durable cursor never passes an unconfirmed event.
//!
//! When the broker cannot be reached or the connection drops, the publisher
//! reconnects with exponential backoff and publishes the whole window again,
//! oldest first: messages may repeat across a reconnect (consumers, or the
//! broker itself, tell them apart by their ids), none is missing, and the
//! order holds because one connection publishes everything in event order.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use eventhost_plugin_api::{Context, Events, SharedEvent};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::{Instant, sleep_until, timeout_at};

use crate::bridge::{Broker, Confirmation, ConnectError, Link, Notice, Settings};
use crate::metrics::Metrics;
use crate::window::Window;

/// Longest wait for a connection to open (TCP, handshake, declarations):
/// a guard against a broker address that swallows packets.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Once the host shuts down, how long a connected publisher may still wait
/// for confirmations (a disconnected one stops at once). Events left
/// unconfirmed are published again after the host restarts, from the
/// plugin's cursor.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

pub struct Publisher<B: Broker> {
    settings: Settings,
    broker: B,
    ctx: Arc<Context>,
    metrics: Metrics,
    events: Arc<Events>,
    incoming: UnboundedReceiver<Vec<SharedEvent>>,
    window: Window,
    /// Set once the host closed the plugin's queue: the time to stop at.
    stop_at: Option<Instant>,
}

/// A message handed to the broker, awaiting its confirmation.
struct Sent {
    seq: u64,
    /// On its event's last message, whose confirmation completes the event:
    /// how many messages the event has. An event without messages has one
    /// `Sent` with no confirmation.
    completes: Option<usize>,
    confirm: Option<Confirmation>,
}

impl<B: Broker> Publisher<B> {
    pub fn new(
        settings: Settings,
        broker: B,
        ctx: Arc<Context>,
        events: Arc<Events>,
        incoming: UnboundedReceiver<Vec<SharedEvent>>,
        window: Window,
    ) -> Publisher<B> {
        Publisher {
            metrics: Metrics::new(ctx.clone(), settings.metrics_prefix),
            settings,
            broker,
            ctx,
            events,
            incoming,
            window,
            stop_at: None,
        }
    }

    /// Runs until the host has shut down and the window is confirmed (or the
    /// shutdown grace is over). `Err` if the broker cannot be used at all.
    pub async fn run(mut self) -> Result<(), String> {
        let broker = self.broker.describe();
        let mut backoff = self.backoff();
        self.metrics.connected(false);
        self.metrics.unconfirmed(0);
        while !self.done() {
            let deadline = self.deadline(Instant::now() + CONNECT_TIMEOUT);
            let opened = timeout_at(deadline, self.broker.connect(&self.ctx)).await;
            let reason = match opened {
                Ok(Ok(mut link)) => {
                    let again = match self.window.len() {
                        0 => String::new(),
                        n => format!("; publishing {n} unconfirmed event(s) again"),
                    };
                    self.ctx.info(format_args!("connected to {broker}{again}"));
                    self.metrics.connected(true);
                    let opened_at = Instant::now();
                    let (outcome, progressed) = self.pump(&mut link).await;
                    self.metrics.connected(false);
                    // A link that fails at once (say, the broker refuses every
                    // message) must not make the publisher spin.
                    if progressed || opened_at.elapsed() >= self.settings.reconnect_max {
                        backoff = self.backoff();
                    }
                    match outcome {
                        Ok(()) => {
                            link.close().await;
                            break;
                        }
                        Err(reason) => format!("lost the connection to {broker}: {reason}"),
                    }
                }
                Ok(Err(ConnectError::Retry(e))) => format!("cannot connect to {broker}: {e}"),
                Ok(Err(ConnectError::Fatal(e))) => {
                    self.metrics.connection_failed();
                    self.ctx.error(format_args!("{e}"));
                    self.warn_unconfirmed("stopping");
                    return Err(e);
                }
                Err(_) => format!(
                    "cannot connect to {broker}: no answer within {} s",
                    CONNECT_TIMEOUT.as_secs()
                ),
            };
            self.metrics.connection_failed();
            let delay = backoff.next().unwrap_or(self.settings.reconnect_max);
            let waiting = match self.window.len() {
                0 => String::new(),
                n => format!("; {n} event(s) await confirmation"),
            };
            self.ctx.warn(format_args!(
                "{reason}; retrying in {} ms{waiting}",
                delay.as_millis()
            ));
            self.wait(delay).await;
        }
        self.warn_unconfirmed("stopping");
        Ok(())
    }

    /// Says which events are left unconfirmed, if any.
    fn warn_unconfirmed(&self, doing: &str) {
        if !self.window.is_empty() {
            self.ctx.warn(format_args!(
                "{doing} with {} event(s) unconfirmed (from seq {}); they are published again after the host restarts",
                self.window.len(),
                self.window.iter().next().map_or(0, |e| e.seq)
            ));
        }
    }

    fn backoff(&self) -> ExponentialBackoff {
        ExponentialBuilder::default()
            .with_min_delay(self.settings.reconnect_initial)
            .with_max_delay(self.settings.reconnect_max)
            .without_max_times()
            .build()
    }

    /// Whether the host has shut down and nothing more can be done.
    fn done(&self) -> bool {
        self.stop_at
            .is_some_and(|at| self.window.is_empty() || Instant::now() >= at)
    }

    /// `at`, or the time to stop if that is sooner.
    fn deadline(&self, at: Instant) -> Instant {
        self.stop_at.map_or(at, |stop| stop.min(at))
    }

    /// The host closed the plugin's queue: stop after `grace`.
    fn host_closed(&mut self, grace: Duration) {
        self.stop_at = Some(Instant::now() + grace);
    }

    /// Publishes the window, then new events as they come, until the link
    /// fails (`Err` with the reason) or the host has shut down (`Ok`).
    /// Also says whether any event was confirmed.
    async fn pump(&mut self, link: &mut B::Link) -> (Result<(), String>, bool) {
        let mut sent = VecDeque::new();
        let mut progressed = false;
        for event in self.window.iter() {
            if let Err(e) = self.send(link, event, &mut sent).await {
                return (Err(e), progressed);
            }
        }
        let outcome = loop {
            if self.done() {
                break Ok(());
            }
            let stop_at = self.stop_at;
            tokio::select! {
                confirmed = confirmations(&mut sent), if !sent.is_empty() => {
                    let (burst, failed) = match confirmed {
                        Ok(burst) => (burst, None),
                        Err((burst, e)) => (burst, Some(e)),
                    };
                    if let Some(seq) = burst.last_event {
                        // One acknowledgement and one update of each
                        // metric per burst: the host's cursor takes the
                        // highest, and per event they were a tenth of the
                        // plugin's CPU (row 7a).
                        self.window.confirm_oldest(burst.events);
                        self.events.ack(seq);
                        // In this order, so that a reader who sees the
                        // count sees the window it left.
                        self.metrics.unconfirmed(self.window.len());
                        progressed = true;
                    }
                    if burst.messages > 0 {
                        self.metrics.confirmed(burst.messages);
                    }
                    if let Some(e) = failed {
                        self.metrics.publish_failed();
                        break Err(e);
                    }
                }
                received = self.incoming.recv(), if self.stop_at.is_none() => match received {
                    Some(batch) => {
                        let mut failed = None;
                        for event in batch {
                            if failed.is_none() {
                                failed = self.send(link, &event, &mut sent).await.err();
                            }
                            // Its slot is taken: it joins the window even
                            // when the link failed, to go out again.
                            self.window.push(event);
                        }
                        self.metrics.unconfirmed(self.window.len());
                        if let Some(e) = failed {
                            self.metrics.publish_failed();
                            break Err(e);
                        }
                    }
                    None => self.host_closed(SHUTDOWN_GRACE),
                },
                notice = link.notice() => match notice {
                    Notice::Lost(reason) => break Err(reason),
                    Notice::Warn(text) => self.ctx.warn(text),
                    Notice::Info(text) => self.ctx.info(text),
                },
                () = sleep_until_some(stop_at) => {}
            }
        };
        (outcome, progressed)
    }

    /// Publishes every message of `event`, recording what to await.
    async fn send(
        &self,
        link: &mut B::Link,
        event: &SharedEvent,
        sent: &mut VecDeque<Sent>,
    ) -> Result<(), String> {
        let confirms = link.publish(event).await?;
        let count = confirms.len();
        if count == 0 {
            sent.push_back(Sent {
                seq: event.seq,
                completes: Some(0),
                confirm: None,
            });
        }
        for (index, confirm) in confirms.into_iter().enumerate() {
            sent.push_back(Sent {
                seq: event.seq,
                completes: (index + 1 == count).then_some(count),
                confirm: Some(confirm),
            });
        }
        Ok(())
    }

    /// Waits `delay` before reconnecting, taking in new events meanwhile.
    async fn wait(&mut self, delay: Duration) {
        let until = self.deadline(Instant::now() + delay);
        loop {
            tokio::select! {
                () = sleep_until(until) => return,
                received = self.incoming.recv(), if self.stop_at.is_none() => match received {
                    Some(batch) => {
                        self.window.extend(batch);
                        self.metrics.unconfirmed(self.window.len());
                    }
                    // Not connected: nothing to wait for.
                    None => return self.host_closed(Duration::ZERO),
                },
            }
        }
    }
}

/// Sleeps until `at`, or forever if it is `None`.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// What a burst of confirmations completed.
#[derive(Default)]
struct Burst {
    /// Events whose every message is confirmed, oldest first.
    events: usize,
    /// The newest of them.
    last_event: Option<u64>,
    messages: usize,
}

impl Burst {
    /// Takes the oldest sent message, now confirmed.
    fn take(&mut self, sent: &mut VecDeque<Sent>) {
        if let Some(s) = sent.pop_front() {
            if s.confirm.is_some() {
                self.messages += 1;
            }
            if s.completes.is_some() {
                self.events += 1;
                self.last_event = Some(s.seq);
            }
        }
    }
}

/// Awaits the oldest outstanding confirmation, then takes every one after
/// it that has come already. Confirmations are taken in publishing order,
/// so an event is complete when its last message is. A refusal ends the
/// burst: `Err` with what was confirmed before it, and the reason.
async fn confirmations(sent: &mut VecDeque<Sent>) -> Result<Burst, (Burst, String)> {
    let mut burst = Burst::default();
    let Some(oldest) = sent.front_mut() else {
        return Ok(burst);
    };
    if let Some(confirm) = oldest.confirm.as_mut() {
        let seq = oldest.seq;
        if let Err(e) = confirm.await {
            return Err((burst, refused(seq, e)));
        }
    }
    burst.take(sent);
    while let Some(next) = sent.front_mut() {
        if let Some(confirm) = next.confirm.as_mut() {
            // A look without waiting: a confirmation that has not come yet
            // is awaited, with a real waker, at the next call.
            let mut look = std::task::Context::from_waker(Waker::noop());
            match Pin::new(confirm).poll(&mut look) {
                Poll::Pending => break,
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => {
                    let seq = next.seq;
                    return Err((burst, refused(seq, e)));
                }
            }
        }
        burst.take(sent);
    }
    Ok(burst)
}

fn refused(seq: u64, e: String) -> String {
    format!("a message of event {seq} was not confirmed: {e}")
}
