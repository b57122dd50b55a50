//! The broker-independent core of eventhost's bridge plugins (amqp, nats):
//! what it takes to move the host's events to a broker without losing one.
//!
//! A plugin names its broker by implementing [`Broker`] (connect) and
//! [`Link`] (one connection: publish an event's messages, report trouble)
//! and hands it to [`bridge::run`], which does the rest the same way for
//! every broker:
//!
//! - the intake: the plugin's own thread receives from the host (blocking)
//!   and hands events to an async publisher;
//! - the window: at most `max_unconfirmed_events` events received and not
//!   yet confirmed; receiving pauses while it is full;
//! - acknowledgement: an event is acked to the host, in order, only once the
//!   broker confirmed every message of it (explicit acks, so the host's
//!   durable cursor never passes an unconfirmed event);
//! - reconnection with exponential backoff, publishing the whole window
//!   again, oldest first, on every new connection;
//! - metrics under the broker's prefix (`<prefix>_connected`, …);
//! - which messages an event becomes ([`message`]), the same for every
//!   broker.
//!
//! It is an rlib linked into each plugin, not a plugin: it depends on
//! `eventhost-plugin-api` alone, like the plugins themselves.

pub mod bridge;
mod format;
pub mod message;
mod metrics;
mod publisher;
#[cfg(any(test, feature = "test-support"))]
pub mod test_support;
pub mod transaction;
mod window;

pub use bridge::{Broker, Confirmation, ConnectError, Link, Notice, Settings};
pub use format::Format;
