//! The plugin author's view of the host.

use std::fmt::Display;

use abi_stable::std_types::{RResult, RSlice, RStr, Tuple2};
use serde::de::DeserializeOwned;

use crate::config::PluginConfig;
use crate::events::SharedEvent;
use crate::ffi::{HostContextBox, LogLevel};
use crate::summaries::SummarizedEvent;

fn ffi_labels<'a>(labels: &[(&'a str, &'a str)]) -> Vec<Tuple2<RStr<'a>, RStr<'a>>> {
    labels
        .iter()
        .map(|(k, v)| Tuple2(RStr::from_str(k), RStr::from_str(v)))
        .collect()
}

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
    /// Since 1.3 the error names the key (`` `limits.max`: … ``) and never
    /// quotes a string value of the table (it may be a secret).
    pub fn config<T: DeserializeOwned>(&self) -> Result<T, String> {
        crate::config::parse(self.config_json())
            .map_err(|e| format!("invalid config for plugin `{}`: {e}", self.name()))
    }

    /// Since plugin-api 1.3. The plugin's `config` table, deserialized and
    /// checked by [`PluginConfig::check`], the same check `check-config`
    /// runs; the error is worded like [`Context::config`]'s.
    pub fn checked_config<T: PluginConfig>(&self) -> Result<T, String> {
        let config: T = self.config()?;
        config
            .check()
            .map_err(|e| format!("invalid config for plugin `{}`: {e}", self.name()))?;
        Ok(config)
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

    /// Since plugin-api 1.2. Up to `max` events from the host's event log,
    /// starting at sequence number `from`: to send a resuming client what it
    /// missed. Read in batches; the log may be long.
    pub fn read_events(&self, from: u64, max: usize) -> Result<Vec<SharedEvent>, String> {
        let max = u32::try_from(max).unwrap_or(u32::MAX);
        match self.host.read_events(from, max) {
            RResult::ROk(events) => Ok(events.into_vec()),
            RResult::RErr(e) => Err(e.into_string()),
        }
    }

    /// Since plugin-api 1.4. Like [`Context::read_events`], with each
    /// event's transactions as their summaries (id, operation, assets,
    /// keys) instead of their JSON: the host stored them when it committed
    /// the event, so neither side decodes nor parses the transactions. For
    /// a stream that needs no more of a transaction than its summary.
    pub fn read_summaries(&self, from: u64, max: usize) -> Result<Vec<SummarizedEvent>, String> {
        let max = u32::try_from(max).unwrap_or(u32::MAX);
        let events = match self.host.read_summaries(from, max) {
            RResult::ROk(events) => events,
            RResult::RErr(e) => return Err(e.into_string()),
        };
        Ok(events
            .into_iter()
            .map(|Tuple2(event, encoded)| SummarizedEvent { event, encoded })
            .collect())
    }

    /// Since plugin-api 1.2. The sequence number of the newest published event.
    pub fn head(&self) -> u64 {
        self.host.head()
    }

    /// Since plugin-api 1.2. The sequence number of the event for a block
    /// hash, or for the BLOCK_VALID event of a height.
    pub fn find_event(&self, id: &str) -> Option<u64> {
        self.host.find_event(RStr::from_str(id)).into_option()
    }

    /// Since plugin-api 1.2. Adds `delta` to the counter `name` (with these
    /// labels) on the host's metrics endpoint; the host adds `plugin="..."`.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)], delta: u64) {
        let labels = ffi_labels(labels);
        self.host
            .counter_add(RStr::from_str(name), RSlice::from_slice(&labels), delta);
    }

    /// Since plugin-api 1.2. Sets the gauge `name` (with these labels) on
    /// the host's metrics endpoint.
    pub fn gauge(&self, name: &str, labels: &[(&str, &str)], value: i64) {
        let labels = ffi_labels(labels);
        self.host
            .gauge_set(RStr::from_str(name), RSlice::from_slice(&labels), value);
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
