//! The stable ABI that eventhost plugins build against.
//!
//! A plugin is a `cdylib` that depends on this crate alone. It declares which
//! events it wants and a `run` function that consumes them from its own queue:
//!
//! ```
//! use eventhost_plugin_api::prelude::*;
//!
//! fn run(ctx: Context, events: Events) -> Result<(), String> {
//!     ctx.ready();
//!     for event in &events {
//!         ctx.info(format_args!("{} at height {}", event.event_type, event.height));
//!     }
//!     Ok(())
//! }
//!
//! export_plugin! {
//!     name: "hello",
//!     event_types: BLOCK_VALID | BLOCK_INVALID,
//!     run: run,
//! }
//! ```
//!
//! The host checks, when it loads the library, that the plugin was built
//! against a compatible version of this crate ([`ApiVersion::accepts`]) and
//! that the layout of every type crossing the boundary matches its own.

pub mod config;
mod context;
mod event;
mod events;
pub mod ffi;
mod json;
mod module;
pub mod summaries;
pub mod tx;
mod version;

pub use config::{ConfigProblem, PluginConfig};
pub use context::Context;
pub use event::{
    BLOCK_INVALID, BLOCK_VALID, Event, EventType, EventTypes, ParseEventTypesError, Rejection,
};
pub use events::{Events, RecvTimeoutError, SharedEvent};
pub use module::{
    DECLARATIONS_SYMBOL, ExportedDeclarations, Isolation, PluginDeclarations, PluginModule,
    PluginModuleRef,
};
pub use version::{API_VERSION, ApiVersion};

/// Everything a plugin usually needs.
pub mod prelude {
    pub use crate::{
        BLOCK_INVALID, BLOCK_VALID, ConfigProblem, Context, Event, EventType, EventTypes, Events,
        Isolation, PluginConfig, RecvTimeoutError, SharedEvent, export_plugin,
    };
}

#[doc(hidden)]
pub mod __private {
    pub use crate::module::{AnyConfig, check_guarded, new_module, run_guarded};
    pub use abi_stable::library::{
        __call_root_module_loader, CheckTypeLayout, LibHeader, RootModuleResult,
    };
    pub use abi_stable::std_types::{RResult, RStr, RString};
}
