//! eventhost: a plugin host for ledger node events.
//!
//! Data flows one way: a source (today `replay`) hands events to the
//! [`host::Host`], which writes them to the event log in the [`store`] and
//! then publishes them through the [`exchange`] to each plugin's own queue;
//! the [`plugin_manager`] loads the plugins and runs each on its own thread.

pub mod api;
pub mod codec;
pub mod config;
pub mod exchange;
pub mod host;
pub mod ledger;
pub mod metrics;
pub mod plugin_manager;
pub mod process;
pub mod replay;
pub mod store;
