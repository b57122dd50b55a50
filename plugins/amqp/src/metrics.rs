//! What the plugin reports on the host's `/metrics` (the host adds
//! `plugin="<name>"`): whether the bridge is connected, how far it got, and
//! how much it holds, so that an outage shows on a dashboard, not only in
//! the log.

use std::sync::Arc;

use eventhost_plugin_api::Context;

pub struct Metrics {
    ctx: Arc<Context>,
}

impl Metrics {
    pub fn new(ctx: Arc<Context>) -> Metrics {
        Metrics { ctx }
    }

    /// `amqp_connected`: 1 while a connection is up, else 0.
    pub fn connected(&self, up: bool) {
        self.ctx.gauge("amqp_connected", &[], i64::from(up));
    }

    /// `amqp_connection_failures_total`: attempts that failed and connections lost.
    pub fn connection_failed(&self) {
        self.ctx.counter("amqp_connection_failures_total", &[], 1);
    }

    /// `amqp_messages_confirmed_total`: messages the broker confirmed.
    pub fn confirmed(&self, messages: usize) {
        let messages = u64::try_from(messages).unwrap_or(u64::MAX);
        self.ctx
            .counter("amqp_messages_confirmed_total", &[], messages);
    }

    /// `amqp_unconfirmed_events`: events received and not yet confirmed.
    pub fn unconfirmed(&self, events: usize) {
        let events = i64::try_from(events).unwrap_or(i64::MAX);
        self.ctx.gauge("amqp_unconfirmed_events", &[], events);
    }
}
