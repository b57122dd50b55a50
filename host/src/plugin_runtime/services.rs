//! The machinery behind the one list of host services in [`super::context`]:
//! how each service's arguments and answer cross plugin-api's FFI types and,
//! in process mode, the socket to the plugin's child process.
//!
//! Every type a service takes or returns has an owned Rust form, which the
//! service's method in `PluginContext` uses and which travels over the
//! socket in postcard ([`Arg`] for arguments, [`Answer`] for results).

use std::sync::Arc;

use abi_stable::std_types::{RArc, ROption, RResult, RSlice, RStr, RString, RVec, Tuple2};
use eventhost_plugin_api::ffi::{LogLevel, SummarizedEvents};
use eventhost_plugin_api::{Event, SharedEvent};
use serde::de::{self, DeserializeOwned};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::codec;
use crate::metrics::Labels;

/// An argument of a service, in its owned form.
pub trait Arg {
    type Owned;
    fn to_owned_arg(&self) -> Self::Owned;
}

impl Arg for u64 {
    type Owned = u64;
    fn to_owned_arg(&self) -> u64 {
        *self
    }
}

impl Arg for u32 {
    type Owned = u32;
    fn to_owned_arg(&self) -> u32 {
        *self
    }
}

impl Arg for i64 {
    type Owned = i64;
    fn to_owned_arg(&self) -> i64 {
        *self
    }
}

impl Arg for RStr<'_> {
    type Owned = String;
    fn to_owned_arg(&self) -> String {
        self.to_string()
    }
}

impl Arg for RSlice<'_, Tuple2<RStr<'_>, RStr<'_>>> {
    type Owned = Labels;
    fn to_owned_arg(&self) -> Labels {
        self.iter()
            .map(|Tuple2(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

/// [`LogLevel`]'s serde form, derived (plugin-api's type has none).
#[derive(Serialize, Deserialize)]
#[serde(remote = "LogLevel")]
enum LogLevelDef {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// A [`LogLevel`] on the wire.
#[derive(Serialize, Deserialize)]
pub struct Level(#[serde(with = "LogLevelDef")] pub LogLevel);

impl Arg for LogLevel {
    type Owned = Level;
    fn to_owned_arg(&self) -> Level {
        Level(*self)
    }
}

impl From<Level> for LogLevel {
    fn from(level: Level) -> LogLevel {
        level.0
    }
}

/// What a service answers, in its owned form and as plugin-api returns it.
pub trait Answer: Sized {
    type Owned: Serialize + DeserializeOwned;
    /// Whether a plugin in a child process waits for the answer: services
    /// that answer nothing are sent and forgotten.
    const AWAITED: bool = true;
    fn into_ffi(owned: Self::Owned) -> Self;
    /// What the plugin gets when the host did not answer (it is gone).
    fn unanswered() -> Self;
}

impl Answer for () {
    type Owned = ();
    const AWAITED: bool = false;
    fn into_ffi((): ()) {}
    fn unanswered() {}
}

impl Answer for u64 {
    type Owned = u64;
    fn into_ffi(owned: u64) -> u64 {
        owned
    }
    fn unanswered() -> u64 {
        0
    }
}

impl Answer for ROption<u64> {
    type Owned = Option<u64>;
    fn into_ffi(owned: Option<u64>) -> Self {
        owned.into()
    }
    fn unanswered() -> Self {
        ROption::RNone
    }
}

impl Answer for RResult<RVec<RArc<Event>>, RString> {
    type Owned = Result<EventBatch, String>;
    fn into_ffi(owned: Result<EventBatch, String>) -> Self {
        match owned {
            Ok(EventBatch(events)) => RResult::ROk(events.into()),
            Err(e) => RResult::RErr(e.into()),
        }
    }
    fn unanswered() -> Self {
        RResult::RErr("the host did not answer".into())
    }
}

/// Events as a service answers them, and as the host sends a plugin's
/// queue to its child process. On the wire each is its sequence number and
/// the event log's own binary form ([`codec`]), not field by field.
#[derive(Debug)]
pub struct EventBatch(pub Vec<SharedEvent>);

impl Serialize for EventBatch {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut records = serializer.serialize_seq(Some(self.0.len()))?;
        let mut buf = Vec::new();
        for event in &self.0 {
            codec::encode_event(event, &mut buf);
            records.serialize_element(&(event.seq, serde_bytes::Bytes::new(&buf)))?;
        }
        records.end()
    }
}

impl<'de> Deserialize<'de> for EventBatch {
    /// Decodes each record where it lies in the message: postcard reads
    /// from a slice, so the records are borrowed, not copied.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let records = Vec::<(u64, &'de serde_bytes::Bytes)>::deserialize(deserializer)?;
        records
            .into_iter()
            .map(|(seq, record)| {
                codec::decode_event(seq, record)
                    .map(RArc::new)
                    .map_err(de::Error::custom)
            })
            .collect::<Result<_, _>>()
            .map(EventBatch)
    }
}

impl Answer for RResult<SummarizedEvents, RString> {
    type Owned = Result<SummaryBatch, String>;
    fn into_ffi(owned: Result<SummaryBatch, String>) -> Self {
        match owned {
            Ok(SummaryBatch(events)) => RResult::ROk(
                events
                    .into_iter()
                    .map(|(event, summaries)| Tuple2(event, summaries.into()))
                    .collect(),
            ),
            Err(e) => RResult::RErr(e.into()),
        }
    }
    fn unanswered() -> Self {
        RResult::RErr("the host did not answer".into())
    }
}

/// Events without their transactions, each with its transactions'
/// summaries (plugin-api's `summaries` encoding), as `read_summaries`
/// answers them. On the wire each is its sequence number, the event log's
/// binary form of the event ([`codec`]) and the summaries.
#[derive(Debug)]
pub struct SummaryBatch(pub Vec<(SharedEvent, String)>);

impl Serialize for SummaryBatch {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut records = serializer.serialize_seq(Some(self.0.len()))?;
        let mut buf = Vec::new();
        for (event, summaries) in &self.0 {
            codec::encode_event(event, &mut buf);
            records.serialize_element(&(
                event.seq,
                serde_bytes::Bytes::new(&buf),
                summaries.as_str(),
            ))?;
        }
        records.end()
    }
}

impl<'de> Deserialize<'de> for SummaryBatch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let records = Vec::<(u64, &'de serde_bytes::Bytes, String)>::deserialize(deserializer)?;
        records
            .into_iter()
            .map(|(seq, record, summaries)| {
                codec::decode_event(seq, record)
                    .map(|event| (RArc::new(event), summaries))
                    .map_err(de::Error::custom)
            })
            .collect::<Result<_, _>>()
            .map(SummaryBatch)
    }
}

/// How a plugin's child process reaches the host: [`RemoteContext`] is the
/// plugin's `HostContext` there, and sends each call through it.
pub trait Remote: Send + Sync {
    fn plugin_name(&self) -> &str;
    fn config_json(&self) -> &str;
    /// Sends one encoded call; when `awaited`, waits for the encoded
    /// answer, `None` if the host does not give one.
    fn call(&self, call: Vec<u8>, awaited: bool) -> Option<Vec<u8>>;
}

/// The plugin's `HostContext` in a child process.
pub struct RemoteContext<R>(pub Arc<R>);

/// Derives, from one list of services (each with its signature in
/// plugin-api's `HostContext`), the thread-mode `HostContext` of
/// `PluginContext`, the process-mode `Call` message with
/// `PluginContext::dispatch`, and the child's `RemoteContext`. See
/// [`super::context`].
macro_rules! host_services {
    ($(fn $name:ident($($arg:ident: $ty:ty => $owned:ty),* $(,)?) $(-> $ret:ty)?;)*) => {
        /// One service call from a plugin in a child process.
        #[allow(non_camel_case_types)]
        #[derive(serde::Serialize, serde::Deserialize)]
        pub enum Call {
            $($name { $($arg: $owned),* },)*
        }

        impl eventhost_plugin_api::ffi::HostContext for PluginContext {
            fn plugin_name(&self) -> RStr<'_> {
                RStr::from_str(&self.name)
            }

            fn config_json(&self) -> RStr<'_> {
                RStr::from_str(&self.config_json)
            }

            $(
                fn $name(&self, $($arg: $ty),*) $(-> $ret)? {
                    let answer = PluginContext::$name(
                        self,
                        $($crate::plugin_runtime::services::Arg::to_owned_arg(&$arg).into()),*
                    );
                    $crate::plugin_runtime::services::into_ffi::<$crate::plugin_runtime::services::answer_type!($($ret)?)>(answer)
                }
            )*
        }

        impl PluginContext {
            /// Carries out a call from the plugin's child process; returns
            /// the encoded answer for the services that answer.
            pub(crate) fn dispatch(&self, call: Call) -> Option<Vec<u8>> {
                match call {
                    $(Call::$name { $($arg),* } => {
                        let answer = PluginContext::$name(self, $($arg.into()),*);
                        $crate::plugin_runtime::services::encode_answer::<$crate::plugin_runtime::services::answer_type!($($ret)?)>(&answer)
                    })*
                }
            }
        }

        impl<R: $crate::plugin_runtime::services::Remote>
            eventhost_plugin_api::ffi::HostContext
            for $crate::plugin_runtime::services::RemoteContext<R>
        {
            fn plugin_name(&self) -> RStr<'_> {
                RStr::from_str(self.0.plugin_name())
            }

            fn config_json(&self) -> RStr<'_> {
                RStr::from_str(self.0.config_json())
            }

            $(
                fn $name(&self, $($arg: $ty),*) $(-> $ret)? {
                    let call = Call::$name {
                        $($arg: $crate::plugin_runtime::services::Arg::to_owned_arg(&$arg)),*
                    };
                    $crate::plugin_runtime::services::remote_call::<$crate::plugin_runtime::services::answer_type!($($ret)?), R>(&self.0, &call)
                }
            )*
        }
    };
}

pub(crate) use host_services;

/// A service's answer type: `()` when it declares none.
macro_rules! answer_type {
    () => {
        ()
    };
    ($ret:ty) => {
        $ret
    };
}

pub(crate) use answer_type;

/// A service method's owned answer as plugin-api returns it.
pub fn into_ffi<A: Answer>(owned: A::Owned) -> A {
    A::into_ffi(owned)
}

/// The answer to a call from a child process, encoded, if it is awaited.
pub fn encode_answer<A: Answer>(owned: &A::Owned) -> Option<Vec<u8>> {
    A::AWAITED
        .then(|| postcard::to_allocvec(owned).expect("answers are plain data, which always encode"))
}

/// Sends a call from a child process and turns the answer into what
/// plugin-api returns.
pub fn remote_call<A: Answer, R: Remote>(remote: &R, call: &impl Serialize) -> A {
    let call = postcard::to_allocvec(call).expect("calls are plain data, which always encode");
    let answer = remote.call(call, A::AWAITED);
    if !A::AWAITED {
        return A::unanswered();
    }
    answer
        .and_then(|bytes| postcard::from_bytes::<A::Owned>(&bytes).ok())
        .map_or_else(A::unanswered, A::into_ffi)
}
