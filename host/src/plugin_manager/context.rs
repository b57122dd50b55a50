//! The host's side of a plugin's `HostContext`: configuration, logging,
//! readiness, advertised links, event-log reads and metrics.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use abi_stable::std_types::{RArc, ROption, RResult, RSlice, RStr, RString, RVec, Tuple2};
use eventhost_plugin_api::Event;
use eventhost_plugin_api::ffi::{HostContext, LogLevel};

use super::{PluginRecord, State};
use crate::exchange::Exchange;
use crate::metrics::Metrics;
use crate::store::Store;

/// The URLs plugins advertise to the host's clients, by name (`rel`).
#[derive(Default)]
pub struct Advertised {
    links: Mutex<BTreeMap<String, Link>>,
}

/// One advertised URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub plugin: String,
    pub url: String,
}

impl Advertised {
    /// The URL advertised under `rel`, if a plugin did.
    pub fn get(&self, rel: &str) -> Option<Link> {
        self.links
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(rel)
            .cloned()
    }

    pub(crate) fn set(&self, rel: &str, link: Link) {
        let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = links.get(rel).filter(|old| old.plugin != link.plugin) {
            tracing::warn!(
                plugin = %link.plugin,
                "plugin advertises `{rel}`, replacing the URL plugin `{}` advertised",
                old.plugin
            );
        }
        links.insert(rel.to_owned(), link);
    }

    /// Forgets what a plugin advertised, once it no longer runs.
    pub(super) fn remove_plugin(&self, plugin: &str) {
        let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        links.retain(|_, link| link.plugin != plugin);
    }
}

/// Writes a line a plugin logged into the host's log, tagged with its name.
pub(crate) fn log_line(plugin: &str, level: LogLevel, message: &str) {
    match level {
        LogLevel::Error => tracing::error!(target: "eventhost::plugin", plugin, "{message}"),
        LogLevel::Warn => tracing::warn!(target: "eventhost::plugin", plugin, "{message}"),
        LogLevel::Info => tracing::info!(target: "eventhost::plugin", plugin, "{message}"),
        LogLevel::Debug => tracing::debug!(target: "eventhost::plugin", plugin, "{message}"),
        LogLevel::Trace => tracing::trace!(target: "eventhost::plugin", plugin, "{message}"),
    }
}

/// What every plugin's context shares.
#[derive(Clone)]
pub struct Services {
    pub store: Arc<Store>,
    pub exchange: Arc<Exchange>,
    pub advertised: Arc<Advertised>,
    pub metrics: Arc<Metrics>,
}

/// One run of one plugin's context.
pub(super) struct PluginContext {
    pub record: Arc<PluginRecord>,
    pub config_json: String,
    pub services: Services,
}

/// A metric's labels as they cross the boundary, owned.
pub(crate) fn labels(pairs: RSlice<'_, Tuple2<RStr<'_>, RStr<'_>>>) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|Tuple2(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl HostContext for PluginContext {
    fn plugin_name(&self) -> RStr<'_> {
        RStr::from_str(self.record.name())
    }

    fn config_json(&self) -> RStr<'_> {
        RStr::from_str(&self.config_json)
    }

    fn log(&self, level: LogLevel, message: RStr<'_>) {
        log_line(self.record.name(), level, message.as_str());
    }

    fn ready(&self) {
        tracing::info!(plugin = %self.record.name(), "plugin ready");
        self.record.set_state(State::Running);
    }

    fn failed(&self, reason: RStr<'_>) {
        tracing::error!(plugin = %self.record.name(), "plugin reports failure: {reason}");
        self.record.set_last_error(reason.as_str());
        self.record.set_state(State::Failed(reason.to_string()));
    }

    fn advertise(&self, rel: RStr<'_>, url: RStr<'_>) {
        tracing::info!(plugin = %self.record.name(), "plugin advertises {rel} = {url}");
        self.services.advertised.set(
            rel.as_str(),
            Link {
                plugin: self.record.name().to_owned(),
                url: url.to_string(),
            },
        );
    }

    fn read_events(&self, from: u64, max: u32) -> RResult<RVec<RArc<Event>>, RString> {
        match self.services.exchange.read_published(from, max as usize) {
            Ok(events) => RResult::ROk(events.into_iter().map(RArc::new).collect()),
            Err(e) => RResult::RErr(e.to_string().into()),
        }
    }

    fn head(&self) -> u64 {
        self.services.exchange.head()
    }

    fn find_event(&self, id: RStr<'_>) -> ROption<u64> {
        match self.services.store.find_event(id.as_str()) {
            Ok(found) => found.into(),
            Err(e) => {
                tracing::error!(plugin = %self.record.name(), "cannot look up event `{id}`: {e}");
                ROption::RNone
            }
        }
    }

    fn counter_add(
        &self,
        name: RStr<'_>,
        pairs: RSlice<'_, Tuple2<RStr<'_>, RStr<'_>>>,
        delta: u64,
    ) {
        self.services.metrics.plugin_counter(
            self.record.name(),
            name.as_str(),
            labels(pairs),
            delta,
        );
    }

    fn gauge_set(&self, name: RStr<'_>, pairs: RSlice<'_, Tuple2<RStr<'_>, RStr<'_>>>, value: i64) {
        self.services
            .metrics
            .plugin_gauge(self.record.name(), name.as_str(), labels(pairs), value);
    }
}
