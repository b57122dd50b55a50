//! What crosses the boundary between the host and a plugin.
//!
//! Plugin authors never use this module directly: [`crate::Context`] and
//! [`crate::Events`] wrap it. The host implements [`HostContext`] and
//! [`HostQueue`] and hands them to the plugin's `run` in [`RunArgs`].
//!
//! # Versioning
//! abi_stable's layout check rejects a plugin whose view of a prefix type has
//! fewer fields than the host's, and a `#[sabi_trait]` vtable is such a type.
//! Checked normally, every method a minor version appends here would lock out
//! every plugin built before it. So the two host objects are opaque to the
//! layout check and versioned by the rule in [`crate::ApiVersion::accepts`]:
//! methods are only ever appended (after the `last_prefix_field` of 1.0), a
//! plugin built against 1.N only calls methods that exist in 1.N, and a host
//! only loads plugins whose minor version is not newer than its own. The data
//! types that cross the boundary stay under the layout check through
//! [`RunArgs::checked_types`]; that list cannot grow within 1.x (it is part
//! of `RunArgs`' layout), so methods added in a minor version use only those
//! types and abi_stable's own (`RVec`, `ROption`, `RResult`, `Tuple2`, ...).

// abi_stable 0.11's `#[sabi_trait]` expands to impls inside a const block,
// which the `non_local_definitions` lint (newer than abi_stable) flags.
#![allow(non_local_definitions)]

use std::marker::PhantomData;

use abi_stable::StableAbi;
use abi_stable::sabi_trait;
use abi_stable::std_types::{RArc, RBox, ROption, RResult, RSlice, RStr, RString, RVec, Tuple2};

use crate::event::Event;

/// Severity of a message a plugin writes into the host's log.
#[repr(u8)]
#[derive(StableAbi, Copy, Clone, Debug, PartialEq, Eq)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// What one receive on a plugin's queue produced.
#[repr(u8)]
#[derive(StableAbi)]
pub enum Received {
    /// The next event the plugin subscribed to.
    Event(RArc<Event>),
    /// Nothing arrived within the timeout; the queue is still open.
    Timeout,
    /// The host is shutting down and the queue is drained: `run` should return.
    Closed,
}

/// The host's services for one plugin (implemented by the host).
#[sabi_trait]
pub trait HostContext: Send + Sync {
    /// The plugin's name in the host's configuration.
    fn plugin_name(&self) -> RStr<'_>;

    /// The plugin's own `config` table from config.toml, as JSON (`{}` if none).
    fn config_json(&self) -> RStr<'_>;

    /// Writes a message into the host's log, tagged with the plugin's name.
    fn log(&self, level: LogLevel, message: RStr<'_>);

    /// The plugin finished starting and is consuming its queue.
    fn ready(&self);

    /// The plugin cannot work; `run` is expected to return soon.
    #[sabi(last_prefix_field)]
    fn failed(&self, reason: RStr<'_>);

    /// Since 1.1. Offers a URL the host shows its clients under the name
    /// `rel` (e.g. the stream URLs in the HTTP API's root). A later call with
    /// the same `rel` replaces the URL.
    fn advertise(&self, rel: RStr<'_>, url: RStr<'_>);

    /// Since 1.2. Up to `max` events of the host's event log with a sequence
    /// number of at least `from`, in order.
    fn read_events(&self, from: u64, max: u32) -> RResult<RVec<RArc<Event>>, RString>;

    /// Since 1.2. The sequence number of the newest published event.
    fn head(&self) -> u64;

    /// Since 1.2. The sequence number of a block's event: `id` is a block
    /// hash (of a BLOCK_VALID or a BLOCK_INVALID event) or a height (its
    /// BLOCK_VALID event).
    fn find_event(&self, id: RStr<'_>) -> ROption<u64>;

    /// Since 1.2. Adds `delta` to a counter the host exposes on its metrics
    /// endpoint as `name{plugin="<plugin>", labels...}`.
    fn counter_add(
        &self,
        name: RStr<'_>,
        labels: RSlice<'_, Tuple2<RStr<'_>, RStr<'_>>>,
        delta: u64,
    );

    /// Since 1.2. Sets a gauge the host exposes likewise.
    fn gauge_set(&self, name: RStr<'_>, labels: RSlice<'_, Tuple2<RStr<'_>, RStr<'_>>>, value: i64);

    /// Since 1.4. Like [`HostContext::read_events`], but each event comes
    /// with its `transactions` left empty and, beside it, their summaries
    /// in the encoding of [`crate::summaries`].
    ///
    /// The default reads the events whole and summarizes them: a host
    /// stores the summaries and overrides it; the default keeps a plugin's
    /// stand-in host from before 1.4 (`eventhost new`'s tests have one)
    /// building, since adding a required method to a trait its users
    /// implement would break them within a minor version.
    fn read_summaries(&self, from: u64, max: u32) -> RResult<SummarizedEvents, RString> {
        match self.read_events(from, max) {
            RResult::ROk(events) => RResult::ROk(crate::summaries::from_events(events)),
            RResult::RErr(e) => RResult::RErr(e),
        }
    }
}

/// Since 1.4. What [`HostContext::read_summaries`] reads: each event (its
/// `transactions` empty) with its transactions' summaries, encoded as
/// [`crate::summaries`] says.
pub type SummarizedEvents = RVec<Tuple2<RArc<Event>, RString>>;

/// One plugin's own event queue (implemented by the host).
///
/// The host keeps, per plugin, a durable cursor: the last event the plugin
/// finished. After a restart the plugin receives every event after it.
#[sabi_trait]
pub trait HostQueue: Send + Sync {
    /// Waits up to `timeout_ms` (`u64::MAX`: without limit) for the next
    /// event. Unless explicit acknowledgements are on, calling it finishes
    /// every event received before.
    #[sabi(last_prefix_field)]
    fn recv(&self, timeout_ms: u64) -> Received;

    /// Since 1.1. From now on only [`HostQueue::ack`] finishes events.
    fn use_explicit_acks(&self);

    /// Since 1.1. Every received event up to and including `seq` is finished.
    fn ack(&self, seq: u64);
}

/// The host's context object as it crosses the boundary.
pub type HostContextBox = HostContext_TO<'static, RBox<()>>;
/// The host's queue object as it crosses the boundary.
pub type HostQueueBox = HostQueue_TO<'static, RBox<()>>;

/// The one argument of a plugin's `run`.
#[repr(C)]
#[derive(StableAbi)]
pub struct RunArgs {
    #[sabi(unsafe_opaque_field)]
    pub context: HostContextBox,
    #[sabi(unsafe_opaque_field)]
    pub queue: HostQueueBox,
    /// Keeps the data types used by the opaque objects under the layout check.
    pub checked_types: PhantomData<(Received, LogLevel)>,
}

impl RunArgs {
    pub fn new(context: HostContextBox, queue: HostQueueBox) -> Self {
        RunArgs {
            context,
            queue,
            checked_types: PhantomData,
        }
    }
}
