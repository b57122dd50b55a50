//! The root module every plugin library exports, and the macro that exports it.

use std::any::Any;
use std::fmt::Display;
use std::panic::{AssertUnwindSafe, catch_unwind};

use abi_stable::StableAbi;
use abi_stable::library::RootModule;
use abi_stable::package_version_strings;
use abi_stable::prefix_type::PrefixTypeTrait;
use abi_stable::sabi_types::VersionStrings;
use abi_stable::std_types::{RResult, RStr, RString};

use crate::context::Context;
use crate::event::EventTypes;
use crate::events::Events;
use crate::ffi::RunArgs;

/// What a plugin library declares. Its fields are fixed for every 1.x
/// version: new host services go into [`crate::ffi::HostContext`] instead.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModuleRef)))]
#[sabi(missing_field(panic))]
pub struct PluginModule {
    /// The plugin's own name, shown beside its configured name.
    pub name: RStr<'static>,
    /// The events the plugin can consume. A configuration may narrow it.
    pub event_types: EventTypes,
    /// Consumes the plugin's queue until the host shuts down. Returning early
    /// (with or without an error) ends the plugin's part in this host run.
    #[sabi(last_prefix_field)]
    pub run: extern "C" fn(RunArgs) -> RResult<(), RString>,
}

impl RootModule for PluginModuleRef {
    abi_stable::declare_root_module_statics! {PluginModuleRef}
    const BASE_NAME: &'static str = "eventhost_plugin";
    const NAME: &'static str = "eventhost plugin";
    // The plugin-api version the plugin was compiled against: the host reads
    // it before any layout check, to name both versions when they disagree.
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// The symbol abi_stable looks up in a library; `export_plugin!` defines it
/// itself so that plugin crates need no direct abi_stable dependency.
#[doc(hidden)]
#[macro_export]
macro_rules! __root_module_symbol {
    () => {
        "_1as_0lib_1header_0root_bmodule_bloader"
    };
}

/// Declares the plugin a library exports.
///
/// ```ignore
/// eventhost_plugin_api::export_plugin! {
///     name: "printer",
///     event_types: BLOCK_VALID | BLOCK_INVALID,
///     run: run,
/// }
/// ```
/// `run` is any `fn(Context, Events) -> Result<(), E>` with `E: Display`. A
/// panic inside it is caught here, on the plugin's side of the boundary, and
/// reported to the host as an error, so the host never unwinds through FFI.
#[macro_export]
macro_rules! export_plugin {
    (name: $name:expr, event_types: $event_types:expr, run: $run:path $(,)?) => {
        #[doc(hidden)]
        #[unsafe(export_name = $crate::__root_module_symbol!())]
        pub static __EVENTHOST_PLUGIN_HEADER: $crate::__private::LibHeader = {
            extern "C" fn run_guarded(
                args: $crate::ffi::RunArgs,
            ) -> $crate::__private::RResult<(), $crate::__private::RString> {
                $crate::__private::run_guarded(args, $run)
            }
            fn module() -> $crate::PluginModuleRef {
                #[allow(unused_imports)]
                use $crate::{BLOCK_INVALID, BLOCK_VALID};
                $crate::__private::new_module($name, $event_types, run_guarded)
            }
            extern "C" fn constructor() -> $crate::__private::RootModuleResult {
                $crate::__private::__call_root_module_loader(module)
            }
            // SAFETY: `constructor` returns the root module of type `PluginModuleRef`.
            unsafe {
                $crate::__private::LibHeader::from_constructor::<$crate::PluginModuleRef>(
                    constructor,
                    $crate::__private::CheckTypeLayout::Yes,
                )
            }
        };
    };
}

#[doc(hidden)]
pub fn new_module(
    name: &'static str,
    event_types: impl Into<EventTypes>,
    run: extern "C" fn(RunArgs) -> RResult<(), RString>,
) -> PluginModuleRef {
    PluginModule {
        name: RStr::from_str(name),
        event_types: event_types.into(),
        run,
    }
    .leak_into_prefix()
}

#[doc(hidden)]
pub fn run_guarded<E: Display>(
    args: RunArgs,
    run: impl FnOnce(Context, Events) -> Result<(), E>,
) -> RResult<(), RString> {
    let context = Context::new(args.context);
    let events = Events::new(args.queue);
    match catch_unwind(AssertUnwindSafe(move || run(context, events))) {
        Ok(Ok(())) => RResult::ROk(()),
        Ok(Err(e)) => RResult::RErr(e.to_string().into()),
        Err(payload) => RResult::RErr(format!("panicked: {}", panic_message(&*payload)).into()),
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(a panic payload that is not a string)"
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn root_module_symbol_is_abi_stables() {
        assert_eq!(
            crate::__root_module_symbol!(),
            abi_stable::library::ROOT_MODULE_LOADER_NAME
        );
    }
}
