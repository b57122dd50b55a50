//! How one run of a plugin is carried out: on a thread of the host
//! ([`ThreadRunner`]) or in a child process
//! ([`super::process::ProcessRunner`]). Both hand the plugin the same
//! [`PluginContext`] services and the same [`Queue`].

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::RResult;
use eventhost_plugin_api::ffi::{HostContext_TO, HostQueue_TO, RunArgs};

use super::context::PluginContext;
use crate::exchange::Queue;

/// Why a run of a plugin ended other than by `run` returning `Ok`.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// `run` returned an error or panicked; the plugin's own words.
    #[error("{0}")]
    Plugin(String),
    #[error("cannot make the plugin's socket: {0}")]
    Socket(std::io::Error),
    #[error("cannot make the plugin's shared cursor: {0}")]
    Cursor(std::io::Error),
    #[error("cannot start the plugin process: {0}")]
    Spawn(std::io::Error),
    #[error("cannot talk to the plugin process: {0}")]
    Talk(std::io::Error),
    /// The child ended without saying how `run` ended.
    #[error("the plugin process {0}")]
    Ended(String),
    #[error(
        "stopped acknowledging: no event finished for {timeout_ms} ms (at event {finished}, {received} received)"
    )]
    Stuck {
        timeout_ms: u128,
        finished: u64,
        received: u64,
    },
}

/// Carries out one run of a plugin: returns when `run` returns.
pub trait Runner {
    fn run(&self, context: PluginContext, queue: Queue) -> Result<(), RunError>;
}

/// Runs the plugin on the supervising thread itself.
pub struct ThreadRunner;

impl Runner for ThreadRunner {
    fn run(&self, context: PluginContext, queue: Queue) -> Result<(), RunError> {
        let run = context.record.plugin.module.run();
        match run(RunArgs::new(
            HostContext_TO::from_value(context, TD_Opaque),
            HostQueue_TO::from_value(queue, TD_Opaque),
        )) {
            RResult::ROk(()) => Ok(()),
            RResult::RErr(reason) => Err(RunError::Plugin(reason.into_string())),
        }
    }
}
