//! The AMQP bridge: publishes each block event to an exchange of an AMQP
//! 0.9.1 broker (RabbitMQ), the integration BigchainDB's event API was made
//! public for. Messages are persistent and sent with publisher confirms; an
//! event is acknowledged to the host only once the broker confirmed all its
//! messages, so nothing is lost across broker outages or host restarts
//! (delivery is at-least-once; `message_id` identifies repeats).
//!
//! ```toml
//! [[plugins]]
//! name = "amqp"
//! # event_types = "BLOCK_VALID"        # the host narrows what the plugin receives
//! [plugins.config]
//! url_env = "EVENTHOST_AMQP_URL"       # or url = "amqp://user:password@host:5672/%2f"
//! exchange = "eventhost"               # declared durable if absent
//! exchange_type = "topic"              # direct, fanout, topic or headers
//! format = "block"                     # or "transaction": one message per transaction
//! ```
//! See the README for every key and the message contract.
//!
//! The publishing core (the intake thread, the window of unconfirmed
//! events, acks to the host in order, reconnecting with backoff) is
//! `eventhost-plugin-support`'s, shared with the nats plugin; this crate
//! says how to talk to an AMQP broker.

mod broker_url;
mod config;
mod link;
mod message;

use eventhost_plugin_api::prelude::*;

use crate::config::Config;
use crate::link::Amqp;

fn run(ctx: Context, events: Events) -> Result<(), String> {
    let (settings, bridge) = ctx
        .config::<Config>()?
        .check(|var| std::env::var(var).ok())?;
    let what = format!(
        "{} messages to exchange `{}` ({})",
        settings.format.name(),
        settings.exchange,
        settings.exchange_type.name(),
    );
    let broker = Amqp::new(settings);
    plugin_support::bridge::run(ctx, events, bridge, broker, what)
}

export_plugin! {
    name: "amqp",
    event_types: BLOCK_VALID | BLOCK_INVALID,
    run: run,
}
