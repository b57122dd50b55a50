//! Runs BigchainDB event plugins written in Python, unchanged: one plugin
//! (a module with `event_types` and `run(queue)`, found by its entry point
//! in `bigchaindb.events` or `planetmint.events`, or by its module name)
//! per `[[plugins]]` entry, in a CPython embedded in the plugin's process.
//!
//! ```toml
//! [[plugins]]
//! name = "console_print"
//! library = "python"
//! # isolation = "thread"         # default "process": the interpreter and its GIL out of the host
//! [plugins.config]
//! entry_point = "console_print"  # or: module = "my_package.my_plugin"
//! python = "/opt/plugins-venv"   # default: $VIRTUAL_ENV, else python3 on PATH
//! log_level = "info"             # Python log records this severe and up reach the host's log
//! ```
//!
//! See docs/python-plugins.md.

mod config;
mod delivery;
mod describe;
mod embed;
mod event;
mod event_types;
mod host_log;
mod interpreter;
mod modules;
mod queue;
mod runner;

eventhost_plugin_api::export_plugin! {
    name: "python",
    // Every type: the Python module's own `event_types` narrows it (see delivery.rs).
    event_types: BLOCK_VALID | BLOCK_INVALID,
    run: runner::run,
    // check-config describes the plugin, or names what a start would refuse
    // (describe.rs).
    config: config::Config,
    // The interpreter and its GIL stay out of the host's process.
    isolation: eventhost_plugin_api::Isolation::PROCESS,
}
