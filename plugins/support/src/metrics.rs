//! What a bridge reports on the host's `/metrics` (the host adds
//! `plugin="<name>"`), each name under the broker's prefix (`amqp_…`,
//! `nats_…`): whether it is connected, how far it got, and how much it
//! holds, so that an outage shows on a dashboard, not only in the log.

use std::sync::Arc;

use eventhost_plugin_api::Context;

pub struct Metrics {
    ctx: Arc<Context>,
    names: Names,
}

/// The metric names, made once: a bridge reports a few samples per burst
/// of confirmations, and formatting the names each time showed in the
/// nats benchmark's profile (row 7a).
struct Names {
    connected: String,
    connection_failures: String,
    publish_errors: String,
    messages_confirmed: String,
    unconfirmed_events: String,
}

impl Metrics {
    pub fn new(ctx: Arc<Context>, prefix: &'static str) -> Metrics {
        let name = |suffix: &str| format!("{prefix}_{suffix}");
        Metrics {
            ctx,
            names: Names {
                connected: name("connected"),
                connection_failures: name("connection_failures_total"),
                publish_errors: name("publish_errors_total"),
                messages_confirmed: name("messages_confirmed_total"),
                unconfirmed_events: name("unconfirmed_events"),
            },
        }
    }

    /// `<prefix>_connected`: 1 while a connection is up, else 0.
    pub fn connected(&self, up: bool) {
        self.ctx.gauge(&self.names.connected, &[], i64::from(up));
    }

    /// `<prefix>_connection_failures_total`: attempts that failed and connections lost.
    pub fn connection_failed(&self) {
        self.ctx.counter(&self.names.connection_failures, &[], 1);
    }

    /// `<prefix>_publish_errors_total`: messages the broker refused, or whose
    /// handing over or confirmation failed (each ends the connection, and
    /// the window is published again).
    pub fn publish_failed(&self) {
        self.ctx.counter(&self.names.publish_errors, &[], 1);
    }

    /// `<prefix>_messages_confirmed_total`: messages the broker confirmed.
    pub fn confirmed(&self, messages: usize) {
        let messages = u64::try_from(messages).unwrap_or(u64::MAX);
        self.ctx
            .counter(&self.names.messages_confirmed, &[], messages);
    }

    /// `<prefix>_unconfirmed_events`: events received and not yet confirmed
    /// (the backlog).
    pub fn unconfirmed(&self, events: usize) {
        let events = i64::try_from(events).unwrap_or(i64::MAX);
        self.ctx.gauge(&self.names.unconfirmed_events, &[], events);
    }
}
