//! The JetStream stream the plugin publishes to: created when absent, from
//! the configuration; used as it is when present, once its subjects are
//! known to take every subject the plugin publishes on.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use plugin_support::ConnectError;
use serde::Deserialize;

use nats_common::lookup::stream_not_found;
use nats_common::subject::{Subjects, covers};

/// How a created stream is set up.
#[derive(Clone)]
pub struct StreamSettings {
    pub name: String,
    pub subjects: Vec<String>,
    pub replicas: usize,
    pub retention: Retention,
    pub storage: Storage,
    /// Zero: no limit.
    pub max_age: Duration,
    /// -1: no limit.
    pub max_bytes: i64,
    pub duplicate_window: Duration,
}

#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Retention {
    /// Kept until `max_age`/`max_bytes` say otherwise: what edge nodes and
    /// any number of consumers need.
    Limits,
    /// Kept while a consumer has yet to acknowledge it.
    Interest,
    /// Removed once one consumer acknowledged it.
    WorkQueue,
}

#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    File,
    Memory,
}

impl StreamSettings {
    fn config(&self) -> stream::Config {
        stream::Config {
            name: self.name.clone(),
            subjects: self.subjects.clone(),
            num_replicas: self.replicas,
            retention: match self.retention {
                Retention::Limits => stream::RetentionPolicy::Limits,
                Retention::Interest => stream::RetentionPolicy::Interest,
                Retention::WorkQueue => stream::RetentionPolicy::WorkQueue,
            },
            storage: match self.storage {
                Storage::File => stream::StorageType::File,
                Storage::Memory => stream::StorageType::Memory,
            },
            max_age: self.max_age,
            max_bytes: self.max_bytes,
            duplicate_window: self.duplicate_window,
            ..Default::default()
        }
    }

    /// Makes sure the stream exists and takes `subjects`' messages, and
    /// says what it found or did (for the log).
    pub async fn ensure(
        &self,
        js: &jetstream::Context,
        subjects: &Subjects,
    ) -> Result<String, ConnectError> {
        let name = &self.name;
        match js.get_stream(name).await {
            Ok(mut stream) => {
                let info = stream.info().await.map_err(|e| {
                    ConnectError::Retry(format!("cannot read stream `{name}`: {e}"))
                })?;
                let config = &info.config;
                let missing: Vec<String> = subjects
                    .published()
                    .into_iter()
                    .filter(|s| !config.subjects.iter().any(|f| covers(f, s)))
                    .collect();
                if !missing.is_empty() {
                    return Err(ConnectError::Fatal(format!(
                        "stream `{name}` exists, but its subjects {:?} do not take {missing:?}, which this plugin publishes on: add them to the stream, or set `stream` or `subject_prefix` to match it",
                        config.subjects
                    )));
                }
                Ok(format!(
                    "using the existing stream `{name}` (subjects {:?}, {} replica(s), {} message(s))",
                    config.subjects, config.num_replicas, info.state.messages
                ))
            }
            Err(e) if stream_not_found(&e) => {
                js.create_stream(self.config()).await.map_err(|e| {
                    ConnectError::Retry(format!("cannot create stream `{name}`: {e}"))
                })?;
                Ok(format!(
                    "created stream `{name}` (subjects {:?}, {} replica(s))",
                    self.subjects, self.replicas
                ))
            }
            Err(e) => Err(ConnectError::Retry(format!(
                "cannot look up stream `{name}`: {e}"
            ))),
        }
    }
}
