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

use crate::config::{ConfigProblem, PluginConfig};
use crate::context::Context;
use crate::event::EventTypes;
use crate::events::Events;
use crate::ffi::RunArgs;

/// What a plugin library declares. Its fields are fixed for every 1.x
/// version (abi_stable's layout check lets a host read a root module with
/// *more* fields than it knows, never fewer, so a field appended here would
/// lock every older plugin out of a newer host). Later declarations are
/// exported beside it: see [`PluginDeclarations`].
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

/// The symbol under which a plugin built against plugin-api 1.3 or later
/// exports its [`PluginDeclarations`]. Plugins built before 1.3 lack it,
/// and a host then uses [`PluginDeclarations::DEFAULT`].
pub const DECLARATIONS_SYMBOL: &str = crate::__declarations_symbol!();

/// The symbol's name as a literal, for `export_name`.
#[doc(hidden)]
#[macro_export]
macro_rules! __declarations_symbol {
    () => {
        "eventhost_plugin_declarations_1_3"
    };
}

/// Since 1.3. What a plugin declares beyond [`PluginModule`]. Frozen like
/// it: a later minor version that adds declarations exports a struct of
/// its own under a symbol of its own.
#[repr(C)]
#[derive(StableAbi, Copy, Clone)]
pub struct PluginDeclarations {
    /// Checks a `[plugins.config]` table (as JSON) without running the
    /// plugin: `Ok` with a short description for `check-config` (may be
    /// empty), or the problem.
    pub check_config: extern "C" fn(RStr<'_>) -> RResult<RString, ConfigProblem>,
    /// Where the plugin runs when its `[[plugins]]` entry names no `isolation`.
    pub isolation: Isolation,
}

impl PluginDeclarations {
    /// What a plugin built before 1.3 declares: any table passes the check
    /// (its `run` still checks it), and it runs on a thread.
    pub const DEFAULT: PluginDeclarations = PluginDeclarations {
        check_config: accept_any_config,
        isolation: Isolation::THREAD,
    };
}

/// [`PluginDeclarations`] as exported, with its layout so that the host can
/// check it against its own before reading it.
#[repr(C)]
pub struct ExportedDeclarations {
    pub layout: &'static abi_stable::type_layout::TypeLayout,
    pub declarations: PluginDeclarations,
}

impl ExportedDeclarations {
    #[doc(hidden)]
    pub const fn new(declarations: PluginDeclarations) -> ExportedDeclarations {
        ExportedDeclarations {
            layout: <PluginDeclarations as StableAbi>::LAYOUT,
            declarations,
        }
    }
}

/// Since 1.3. Where a plugin runs: a thread of the host, or a child process.
/// A plugin that embeds a runtime the host should not share (an
/// interpreter, a large C library) declares [`Isolation::PROCESS`].
#[repr(transparent)]
#[derive(StableAbi, Copy, Clone, Debug, PartialEq, Eq, Default)]
pub struct Isolation(u8);

impl Isolation {
    /// On a thread of the host: fastest; a crash takes the host down.
    pub const THREAD: Isolation = Isolation(0);
    /// In a child process: a crash takes only the plugin down.
    pub const PROCESS: Isolation = Isolation(1);

    /// `thread` or `process` (another value, from a newer plugin-api, reads
    /// as thread).
    pub fn name(self) -> &'static str {
        if self == Isolation::PROCESS {
            "process"
        } else {
            "thread"
        }
    }
}

extern "C" fn accept_any_config(_: RStr<'_>) -> RResult<RString, ConfigProblem> {
    RResult::ROk(RString::new())
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
///     config: Config,                  // optional, since 1.3: a PluginConfig type
///     isolation: Isolation::PROCESS,   // optional, since 1.3: the default isolation
/// }
/// ```
/// `run` is any `fn(Context, Events) -> Result<(), E>` with `E: Display`. A
/// panic inside it is caught here, on the plugin's side of the boundary, and
/// reported to the host as an error, so the host never unwinds through FFI.
/// With `config`, the host checks each entry's table against the type (and
/// its [`crate::PluginConfig::check`]) before running the plugin.
#[macro_export]
macro_rules! export_plugin {
    (
        name: $name:expr,
        event_types: $event_types:expr,
        run: $run:path
        $(, config: $config:ty)?
        $(, isolation: $isolation:expr)?
        $(,)?
    ) => {
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

        #[doc(hidden)]
        #[unsafe(export_name = $crate::__declarations_symbol!())]
        pub static __EVENTHOST_PLUGIN_DECLARATIONS: $crate::ExportedDeclarations = {
            extern "C" fn check_config(
                json: $crate::__private::RStr<'_>,
            ) -> $crate::__private::RResult<$crate::__private::RString, $crate::ConfigProblem> {
                $crate::__private::check_guarded::<$crate::__config_type!($($config)?)>(json)
            }
            #[allow(unused_imports)]
            use $crate::Isolation;
            $crate::ExportedDeclarations::new($crate::PluginDeclarations {
                check_config,
                isolation: $crate::__isolation!($($isolation)?),
            })
        };
    };
}

/// The default isolation of a plugin that declares none: a thread.
#[doc(hidden)]
#[macro_export]
macro_rules! __isolation {
    () => {
        $crate::Isolation::THREAD
    };
    ($isolation:expr) => {
        $isolation
    };
}

/// The configuration type of a plugin that declares none: any table.
#[doc(hidden)]
#[macro_export]
macro_rules! __config_type {
    () => {
        $crate::__private::AnyConfig
    };
    ($config:ty) => {
        $config
    };
}

/// Accepts any table: for plugins that declare no configuration type.
#[doc(hidden)]
#[derive(serde::Deserialize)]
pub struct AnyConfig {}

impl PluginConfig for AnyConfig {}

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

/// Runs a configuration check, catching a panic in the plugin's own
/// `check` so it cannot unwind into the host.
#[doc(hidden)]
pub fn check_guarded<T: PluginConfig>(json: RStr<'_>) -> RResult<RString, ConfigProblem> {
    match catch_unwind(AssertUnwindSafe(|| {
        crate::config::check::<T>(json.as_str())
    })) {
        Ok(Ok(description)) => RResult::ROk(description.into()),
        Ok(Err(problem)) => RResult::RErr(problem),
        Err(payload) => RResult::RErr(ConfigProblem::at(
            "",
            format!("the plugin's check panicked: {}", panic_message(&*payload)),
        )),
    }
}

/// Runs the plugin's `run`, catching its panics, on a thread of the
/// plugin's own named `plugin <name>`: a plugin library carries its own
/// copy of the standard library, which knows nothing of the host's name for
/// the host's thread, so a panic there would say `thread '<unnamed>'`.
#[doc(hidden)]
pub fn run_guarded<E: Display>(
    args: RunArgs,
    run: impl FnOnce(Context, Events) -> Result<(), E> + Send + 'static,
) -> RResult<(), RString> {
    let context = Context::new(args.context);
    let events = Events::new(args.queue);
    let name = format!("plugin {}", context.name());
    let guarded = move || match catch_unwind(AssertUnwindSafe(move || run(context, events))) {
        Ok(Ok(())) => RResult::ROk(()),
        Ok(Err(e)) => RResult::RErr(e.to_string().into()),
        Err(payload) => RResult::RErr(format!("panicked: {}", panic_message(&*payload)).into()),
    };
    match std::thread::Builder::new().name(name).spawn(guarded) {
        Ok(thread) => thread
            .join()
            .unwrap_or_else(|_| RResult::RErr("the plugin's thread panicked".into())),
        Err(e) => RResult::RErr(format!("cannot start the plugin's thread: {e}").into()),
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
