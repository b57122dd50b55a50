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
//! Two threads share the work: the plugin's own thread (the intake) receives
//! from the host, which is blocking, and hands events to the publisher, a
//! task on a small tokio runtime that talks to the broker.

mod broker_url;
mod config;
mod link;
mod message;
mod metrics;
mod publisher;
mod window;

use std::sync::Arc;
use std::time::Duration;

use eventhost_plugin_api::prelude::*;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::publisher::Publisher;
use crate::window::{Slots, Window};

/// How often the intake, while waiting for an event, checks that the
/// publisher still runs (it stops early only if it panicked).
const CHECK_PUBLISHER_EVERY: Duration = Duration::from_millis(250);

fn run(ctx: Context, events: Events) -> Result<(), String> {
    let settings = ctx
        .config::<Config>()?
        .check(|var| std::env::var(var).ok())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(format!("plugin:{}:amqp", ctx.name()))
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the plugin's async runtime: {e}"))?;
    // An event is done once the broker confirmed it, not once received.
    events.use_explicit_acks();
    let (ctx, events) = (Arc::new(ctx), Arc::new(events));
    let slots = Slots::new(settings.max_unconfirmed_events);
    let (to_publisher, incoming) = mpsc::unbounded_channel();
    ctx.info(format_args!(
        "publishing {} messages to exchange `{}` ({}) at {}",
        settings.format.name(),
        settings.exchange,
        settings.exchange_type.name(),
        settings.broker
    ));
    let window = Window::new(slots.clone());
    let publisher = runtime
        .spawn(Publisher::new(settings, ctx.clone(), events.clone(), incoming, window).run());
    // Ready even before the broker answers: the host must not wait for it,
    // and the publisher keeps trying (and logging why it cannot connect).
    ctx.ready();
    'intake: while runtime.block_on(slots.take()) {
        let event = loop {
            match events.recv_timeout(CHECK_PUBLISHER_EVERY) {
                Ok(event) => break event,
                Err(RecvTimeoutError::Timeout) if !publisher.is_finished() => {}
                Err(_) => break 'intake,
            }
        };
        if to_publisher.send(event).is_err() {
            break;
        }
    }
    drop(to_publisher);
    let outcome = runtime.block_on(publisher);
    runtime.shutdown_background();
    outcome.map_err(|e| format!("the publisher stopped: {e}"))
}

export_plugin! {
    name: "amqp",
    event_types: BLOCK_VALID | BLOCK_INVALID,
    run: run,
}
