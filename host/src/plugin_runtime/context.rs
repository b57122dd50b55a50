//! The host's services to one plugin: configuration, logging, readiness,
//! advertised links, event-log reads and metrics. Implemented once, here.
//!
//! Each service is a plain method of [`PluginContext`] taking and returning
//! owned Rust values, and is listed once in the `host_services!` invocation
//! below, with its signature in plugin-api's `HostContext`. From that list
//! the macro in [`super::services`] derives everything else:
//! - thread mode: `impl HostContext for PluginContext`, which converts the
//!   FFI arguments and calls the method;
//! - process mode: the [`Call`] message (one variant per service), the
//!   child's `HostContext` ([`RemoteContext`]) that sends a `Call` (and
//!   waits for the answer when the service returns one), and
//!   [`PluginContext::dispatch`], which the host's side of the child runs
//!   on each `Call`, calling the same method.
//!
//! So a new service in plugin-api is a method here and a line in the list.

use std::sync::Arc;

use abi_stable::std_types::{RArc, ROption, RResult, RSlice, RStr, RString, RVec, Tuple2};
use eventhost_plugin_api::Event;
use eventhost_plugin_api::ffi::{LogLevel, SummarizedEvents};

use super::advertised::{Advertised, AdvertisedLink};
use super::record::{PluginRecord, State};
use super::services::{EventBatch, Level, SummaryBatch, host_services};
use crate::event_log::Reader;
use crate::exchange::Exchange;
use crate::metrics::{Labels, Metrics};

/// What the host shares with every plugin's context.
#[derive(Clone)]
pub struct HostServices {
    pub exchange: Arc<Exchange>,
    pub log: Reader,
    pub advertised: Arc<Advertised>,
    pub metrics: Arc<Metrics>,
}

/// One run of one plugin's context.
pub struct PluginContext {
    pub(super) name: String,
    pub(super) config_json: String,
    pub(super) record: Arc<PluginRecord>,
    pub(super) services: HostServices,
}

/// Writes a line a plugin logged into the host's log, tagged with its name.
fn log_line(plugin: &str, level: LogLevel, message: &str) {
    match level {
        LogLevel::Error => tracing::error!(target: "eventhost::plugin", plugin, "{message}"),
        LogLevel::Warn => tracing::warn!(target: "eventhost::plugin", plugin, "{message}"),
        LogLevel::Info => tracing::info!(target: "eventhost::plugin", plugin, "{message}"),
        LogLevel::Debug => tracing::debug!(target: "eventhost::plugin", plugin, "{message}"),
        LogLevel::Trace => tracing::trace!(target: "eventhost::plugin", plugin, "{message}"),
    }
}

impl PluginContext {
    pub(super) fn new(record: Arc<PluginRecord>, services: HostServices) -> PluginContext {
        PluginContext {
            name: record.name().to_owned(),
            config_json: record.plugin.entry.config.to_string(),
            record,
            services,
        }
    }

    fn log(&self, level: LogLevel, message: String) {
        log_line(&self.name, level, &message);
    }

    fn ready(&self) {
        tracing::info!(plugin = %self.name, "plugin ready");
        self.record.set_state(State::Running);
    }

    fn failed(&self, reason: String) {
        self.record
            .loudness(&reason)
            .log(&self.name, &format!("plugin reports failure: {reason}"));
        self.record.set_last_error(&reason);
        self.record.set_state(State::Failed(reason));
    }

    fn advertise(&self, rel: String, url: String) {
        tracing::info!(plugin = %self.name, "plugin advertises {rel} = {url}");
        self.services.advertised.set(
            &rel,
            AdvertisedLink {
                plugin: self.name.clone(),
                url,
            },
        );
    }

    fn read_events(&self, from: u64, max: u32) -> Result<EventBatch, String> {
        self.services
            .exchange
            .read_published(from, max as usize)
            .map(|events| EventBatch(events.into_iter().map(RArc::new).collect()))
            .map_err(|e| e.to_string())
    }

    fn head(&self) -> u64 {
        self.services.exchange.head()
    }

    fn read_summaries(&self, from: u64, max: u32) -> Result<SummaryBatch, String> {
        let log = &self.services.log;
        self.services
            .exchange
            .published(
                from,
                max as usize,
                |from, max| log.read_summaries(from, max),
                |(event, _)| event.seq,
            )
            .map(|read| {
                SummaryBatch(
                    read.into_iter()
                        .map(|(event, summaries)| (RArc::new(event), summaries))
                        .collect(),
                )
            })
            .map_err(|e| e.to_string())
    }

    fn find_event(&self, id: String) -> Option<u64> {
        self.services.log.find_event(&id).unwrap_or_else(|e| {
            tracing::error!(plugin = %self.name, "cannot look up event `{id}`: {e}");
            None
        })
    }

    fn counter_add(&self, name: String, labels: Labels, delta: u64) {
        self.services
            .metrics
            .plugin_counter(&self.name, &name, labels, delta);
    }

    fn gauge_set(&self, name: String, labels: Labels, value: i64) {
        self.services
            .metrics
            .plugin_gauge(&self.name, &name, labels, value);
    }
}

/// Each service: its arguments as plugin-api's `HostContext` takes them
/// `=>` as the method above takes them (and the socket carries them), then
/// its answer as `HostContext` returns it.
type LabelPairs<'a> = RSlice<'a, Tuple2<RStr<'a>, RStr<'a>>>;

host_services! {
    fn log(level: LogLevel => Level, message: RStr<'_> => String);
    fn ready();
    fn failed(reason: RStr<'_> => String);
    fn advertise(rel: RStr<'_> => String, url: RStr<'_> => String);
    fn read_events(from: u64 => u64, max: u32 => u32) -> RResult<RVec<RArc<Event>>, RString>;
    fn head() -> u64;
    fn find_event(id: RStr<'_> => String) -> ROption<u64>;
    fn counter_add(name: RStr<'_> => String, labels: LabelPairs<'_> => Labels, delta: u64 => u64);
    fn gauge_set(name: RStr<'_> => String, labels: LabelPairs<'_> => Labels, value: i64 => i64);
    fn read_summaries(from: u64 => u64, max: u32 => u32) -> RResult<SummarizedEvents, RString>;
}
