//! The NATS JetStream bridge: publishes each event the host delivers to a
//! JetStream stream, one message per block or per transaction, with a
//! `Nats-Msg-Id` derived from the event's sequence number so that the
//! stream stores each event once, even when the plugin publishes it again
//! after a reconnect or a crash of the node. An event is acknowledged to
//! the host only once the stream acknowledged every message of it.
//!
//! ```toml
//! [[plugins]]
//! name = "nats"
//! [plugins.config]
//! servers = ["nats://127.0.0.1:4222"]   # or servers_env = "EVENTHOST_NATS_SERVERS"
//! stream = "EVENTHOST"                  # created when absent, with the settings below
//! subject_prefix = "eventhost"          # <prefix>.block.valid, .block.invalid, .tx.<operation>
//! format = "block"                      # or "transaction"
//! replicas = 1
//! [plugins.config.auth]                 # optional: user/password, token, nkey_seed or creds_file
//! user = "eventhost"
//! password_env = "EVENTHOST_NATS_PASSWORD"
//! ```
//! docs/scaling-out.md has every key, the message contract and what each
//! failure does.
//!
//! The publishing core (intake thread, window of unconfirmed events, acks
//! to the host in order, reconnecting with backoff) is
//! `eventhost-plugin-support`'s, shared with the amqp plugin; this crate
//! says how to talk to NATS.

mod config;
mod link;
mod message;
mod stream;

use eventhost_plugin_api::prelude::*;

use crate::config::Config;
use crate::link::Nats;

fn run(ctx: Context, events: Events) -> Result<(), String> {
    let (settings, bridge) = ctx
        .config::<Config>()?
        .check(|var| std::env::var(var).ok())?;
    let what = format!(
        "{} messages on {}",
        settings.format.name(),
        settings.subjects.all()
    );
    plugin_support::bridge::run(ctx, events, bridge, Nats::new(settings), what)
}

export_plugin! {
    name: "nats",
    event_types: BLOCK_VALID | BLOCK_INVALID,
    run: run,
    // check-config checks the table (and the variables it names) as a start would.
    config: Config,
}
