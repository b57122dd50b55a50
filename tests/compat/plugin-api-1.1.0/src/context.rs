//! The plugin author's view of the host.

use std::fmt::Display;

use abi_stable::std_types::RStr;
use serde::de::DeserializeOwned;

use crate::ffi::{HostContextBox, LogLevel};

/// What the host gives a plugin besides its events: its configuration, the
/// host's log, and a way to report that it is ready or has failed.
///
/// `Context` is `Send + Sync`: share it (e.g. in an `Arc`) with threads the plugin starts.
pub struct Context {
    host: HostContextBox,
}

impl Context {
    pub(crate) fn new(host: HostContextBox) -> Self {
        Context { host }
    }

    /// The plugin's name in the host's configuration.
    pub fn name(&self) -> &str {
        self.host.plugin_name().as_str()
    }

    /// The plugin's `config` table from config.toml, as JSON text.
    pub fn config_json(&self) -> &str {
        self.host.config_json().as_str()
    }

    /// The plugin's `config` table, deserialized. Use `#[serde(deny_unknown_fields)]`
    /// so that a misspelt key is an error, not a silently ignored setting.
    pub fn config<T: DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_str(self.config_json())
            .map_err(|e| format!("invalid config for plugin `{}`: {e}", self.name()))
    }

    /// Tells the host that the plugin started and is consuming its queue.
    pub fn ready(&self) {
        self.host.ready();
    }

    /// Tells the host that the plugin cannot work; return from `run` after this.
    pub fn failed(&self, reason: impl Display) {
        self.host.failed(RStr::from_str(&reason.to_string()));
    }

    /// Since plugin-api 1.1. Offers `url` to the host's clients under the
    /// name `rel`: the HTTP API's root lists the stream URLs a stream plugin
    /// advertises (`streams`, `streams_v1`, `streamedblocks`).
    pub fn advertise(&self, rel: &str, url: &str) {
        self.host
            .advertise(RStr::from_str(rel), RStr::from_str(url));
    }

    /// Writes into the host's log, tagged with the plugin's name.
    pub fn log(&self, level: LogLevel, message: impl Display) {
        self.host.log(level, RStr::from_str(&message.to_string()));
    }

    pub fn error(&self, message: impl Display) {
        self.log(LogLevel::Error, message);
    }

    pub fn warn(&self, message: impl Display) {
        self.log(LogLevel::Warn, message);
    }

    pub fn info(&self, message: impl Display) {
        self.log(LogLevel::Info, message);
    }

    pub fn debug(&self, message: impl Display) {
        self.log(LogLevel::Debug, message);
    }

    pub fn trace(&self, message: impl Display) {
        self.log(LogLevel::Trace, message);
    }
}
