//! What eventhost's two sides of NATS JetStream share: the nats plugin,
//! which publishes a node's events to a stream, and edge nodes, which
//! follow such a stream (the host's `sources::upstream`). Both read the
//! same configuration keys and must agree on the messages, so each rule is
//! written once, here:
//! - [`header`]: the headers every message has (docs/scaling-out.md,
//!   "Subjects and messages");
//! - [`subject`]: the subjects of a prefix, and NATS's rules for subjects
//!   and stream names;
//! - [`servers`]: server URLs, checked (never with credentials in them);
//! - [`lookup`]: what JetStream's answers to lookups mean;
//! - [`credentials`] and [`secret`]: how to log in, from the configuration
//!   or the environment, without ever showing a secret.

pub mod credentials;
pub mod header;
pub mod lookup;
pub mod secret;
pub mod servers;
pub mod subject;

pub use credentials::{CredentialKeys, Credentials};
/// What one message carries, `block` or `transaction`: the bridges' own
/// (the amqp plugin offers the same two).
pub use plugin_support::Format;
pub use secret::Secret;
pub use subject::Subjects;
