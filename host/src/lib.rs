//! eventhost: a ledger node and plugin host for its events.
//!
//! Data flows one way, and the modules follow it:
//! - [`sources`]: where events come from: the [`sources::ledger`], which
//!   commits transactions in blocks, a [`sources::replay`] of a recording,
//!   or an [`sources::upstream`] stream an edge node follows (NATS
//!   JetStream, fed by a ledger node's nats plugin);
//! - [`event_log`]: the one door: each event is numbered and written to the
//!   [`store`] durably, then published;
//! - [`exchange`]: hands each published event to every subscribed plugin's
//!   own queue, and feeds a plugin that fell behind from the log;
//! - [`plugin_runtime`]: loads the plugins and runs each one on a thread or
//!   in a child process, with the same host services and cursors either way.
//!
//! [`wakeups`] asks the scheduler to run a woken plugin thread promptly.
//!
//! [`node`] puts them together with the HTTP [`api`] and the [`admin`] API; [`verify`] walks a
//! store for damage; `main.rs` is the command line.

pub mod admin;
pub mod api;
pub mod cli_docs;
pub mod codec;
pub mod config;
pub mod event_log;
pub mod exchange;
pub mod metrics;
pub mod node;
pub mod plugin_runtime;
pub mod progress;
pub mod scaffold;
pub mod shutdown;
pub mod sources;
pub mod store;
pub mod verify;
pub mod wakeups;
