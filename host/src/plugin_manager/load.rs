//! Finding a plugin's library and checking that it is a plugin this host can run.

use std::fmt;
use std::path::{Path, PathBuf};

use abi_stable::library::{LibraryError, RootModule, lib_header_from_path};
use eventhost_plugin_api::{API_VERSION, ApiVersion, EventTypes, PluginModuleRef};

use crate::config::PluginEntry;

/// A library that passed every check.
pub struct LoadedPlugin {
    pub entry: PluginEntry,
    pub file: PathBuf,
    pub module: PluginModuleRef,
    /// The plugin-api version the plugin was built against.
    pub api_version: ApiVersion,
    /// The name the library gives itself.
    pub declared_name: String,
    /// The events the library declares.
    pub declared_types: EventTypes,
    /// What it will receive: the declared types, narrowed by the configuration.
    pub event_types: EventTypes,
}

/// Why a configured plugin cannot be used. Each renders as one line that
/// names the plugin, the file, and what to do.
#[derive(Debug)]
pub struct LoadError {
    pub plugin: String,
    pub file: Option<PathBuf>,
    pub kind: LoadErrorKind,
}

#[derive(Debug)]
pub enum LoadErrorKind {
    NotFound {
        searched: Vec<PathBuf>,
    },
    Missing,
    NotALibrary {
        detail: String,
    },
    NotAPlugin {
        detail: String,
    },
    IncompatibleVersion {
        plugin_version: String,
    },
    LayoutMismatch {
        plugin_version: String,
    },
    InitFailed {
        detail: String,
    },
    BadMask {
        declared: u32,
    },
    MaskNotDeclared {
        configured: EventTypes,
        declared: EventTypes,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "plugin `{}`", self.plugin)?;
        if let Some(file) = &self.file {
            write!(f, " ({})", file.display())?;
        }
        f.write_str(": ")?;
        match &self.kind {
            LoadErrorKind::NotFound { searched } => {
                let list: Vec<String> = searched.iter().map(|p| p.display().to_string()).collect();
                write!(
                    f,
                    "library not found; looked for {}; build it, or set `path` or `plugin_dirs`",
                    list.join(", ")
                )
            }
            LoadErrorKind::Missing => f.write_str("file does not exist; check `path`"),
            LoadErrorKind::NotALibrary { detail } => {
                write!(f, "not a loadable shared library: {detail}")
            }
            LoadErrorKind::NotAPlugin { detail } => write!(
                f,
                "not an eventhost plugin ({detail}); plugins are cdylib crates that call eventhost_plugin_api::export_plugin!"
            ),
            LoadErrorKind::IncompatibleVersion { plugin_version } => write!(
                f,
                "built against plugin-api {plugin_version}, but this host (plugin-api {API_VERSION}) accepts plugin-api {}; rebuild the plugin against plugin-api {}.{}",
                API_VERSION.accepted_range(),
                API_VERSION.major,
                API_VERSION.minor
            ),
            LoadErrorKind::LayoutMismatch { plugin_version } => write!(
                f,
                "built against plugin-api {plugin_version}, but its plugin-api types differ from this host's plugin-api {API_VERSION} (a modified or mislabelled plugin-api); rebuild it against a released plugin-api (RUST_LOG=eventhost=debug shows the layout difference)"
            ),
            LoadErrorKind::InitFailed { detail } => write!(f, "failed to initialize: {detail}"),
            LoadErrorKind::BadMask { declared } => write!(
                f,
                "declares event_types {declared:#x}, which is not a non-empty combination of BLOCK_VALID (1) and BLOCK_INVALID (2)"
            ),
            LoadErrorKind::MaskNotDeclared {
                configured,
                declared,
            } => write!(
                f,
                "event_types = \"{configured}\" in the configuration asks for events the plugin does not declare (it declares {declared})"
            ),
        }
    }
}

impl std::error::Error for LoadError {}

/// The file name a library called `name` has on this platform.
pub fn library_file_name(name: &str) -> String {
    format!(
        "{}{name}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

/// Where the entry's library is: its `path`, or the first match in `dirs`.
pub fn resolve(entry: &PluginEntry, dirs: &[PathBuf]) -> Result<PathBuf, LoadError> {
    let error = |file: Option<PathBuf>, kind| LoadError {
        plugin: entry.name.clone(),
        file,
        kind,
    };
    if let Some(path) = &entry.path {
        return if path.is_file() {
            Ok(path.clone())
        } else {
            Err(error(Some(path.clone()), LoadErrorKind::Missing))
        };
    }
    let file_name = library_file_name(&entry.library);
    let searched: Vec<PathBuf> = dirs.iter().map(|d| d.join(&file_name)).collect();
    match searched.iter().find(|p| p.is_file()) {
        Some(found) => Ok(found.clone()),
        None => Err(error(None, LoadErrorKind::NotFound { searched })),
    }
}

/// Resolves, opens and checks the entry's library.
pub fn load(entry: &PluginEntry, dirs: &[PathBuf]) -> Result<LoadedPlugin, LoadError> {
    let file = resolve(entry, dirs)?;
    let error = |kind| LoadError {
        plugin: entry.name.clone(),
        file: Some(file.clone()),
        kind,
    };
    let (module, api_version) = open_library(&entry.name, &file)?;

    let declared = module.event_types();
    if declared.is_empty() || EventTypes::from_bits(declared.bits()).is_err() {
        return Err(error(LoadErrorKind::BadMask {
            declared: declared.bits(),
        }));
    }
    let event_types = match entry.event_types {
        None => declared,
        Some(configured) if declared.is_superset(configured) => configured,
        Some(configured) => {
            return Err(error(LoadErrorKind::MaskNotDeclared {
                configured,
                declared,
            }));
        }
    };
    Ok(LoadedPlugin {
        entry: entry.clone(),
        api_version,
        declared_name: module.name().as_str().to_owned(),
        declared_types: declared,
        event_types,
        module,
        file,
    })
}

/// Opens a plugin library and checks that it is a plugin this host can run:
/// its plugin-api version, then the layout of every type that crosses the
/// boundary. Returns its root module and the version it was built against.
pub fn open_library(plugin: &str, file: &Path) -> Result<(PluginModuleRef, ApiVersion), LoadError> {
    let error = |kind| LoadError {
        plugin: plugin.to_owned(),
        file: Some(file.to_owned()),
        kind,
    };
    let header = lib_header_from_path(file).map_err(|e| error(open_error(e)))?;
    let consts = header.root_mod_consts();
    if consts.name().as_str() != PluginModuleRef::NAME {
        return Err(error(LoadErrorKind::NotAPlugin {
            detail: format!(
                "it exports the abi_stable root module of `{}`",
                consts.name()
            ),
        }));
    }
    let plugin_version = header.version_strings().version.as_str().to_owned();
    let api_version = match ApiVersion::parse(&plugin_version) {
        Some(v) if API_VERSION.accepts(v) => v,
        _ => return Err(error(LoadErrorKind::IncompatibleVersion { plugin_version })),
    };

    let module = header
        .init_root_module::<PluginModuleRef>()
        .map_err(|e| match e {
            LibraryError::AbiInstability(details) => {
                tracing::debug!(plugin, "layout check failed:\n{details}");
                error(LoadErrorKind::LayoutMismatch {
                    plugin_version: plugin_version.clone(),
                })
            }
            other => error(LoadErrorKind::InitFailed {
                detail: first_line(&other.to_string()),
            }),
        })?;

    Ok((module, api_version))
}

fn open_error(e: LibraryError) -> LoadErrorKind {
    match e {
        LibraryError::OpenError { err, .. } => LoadErrorKind::NotALibrary {
            detail: first_line(&err.to_string()),
        },
        LibraryError::GetSymbolError { .. } => LoadErrorKind::NotAPlugin {
            detail: "it exports no plugin root module".into(),
        },
        other => LoadErrorKind::NotAPlugin {
            detail: first_line(&other.to_string()),
        },
    }
}

fn first_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("unknown error")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn entry(name: &str, path: Option<&Path>) -> PluginEntry {
        PluginEntry {
            name: name.into(),
            library: name.into(),
            path: path.map(Path::to_owned),
            required: true,
            event_types: None,
            queue_capacity: 1,
            isolation: crate::config::Isolation::Thread,
            ack_timeout: std::time::Duration::from_secs(1),
            config: serde_json::json!({}),
        }
    }

    #[test]
    fn looks_in_each_directory_in_order() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let dirs = vec![a.path().to_owned(), b.path().to_owned()];
        let err = resolve(&entry("x", None), &dirs).unwrap_err().to_string();
        assert!(err.contains(&a.path().join(library_file_name("x")).display().to_string()));
        assert!(err.contains(&b.path().join(library_file_name("x")).display().to_string()));
        std::fs::write(b.path().join(library_file_name("x")), b"").unwrap();
        assert_eq!(
            resolve(&entry("x", None), &dirs).unwrap(),
            b.path().join(library_file_name("x"))
        );
    }

    #[test]
    fn a_file_that_is_not_a_library_is_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("libjunk.so");
        std::fs::write(&path, b"not elf").unwrap();
        let err = load(&entry("junk", Some(&path)), &[]).err().unwrap();
        assert!(
            matches!(err.kind, LoadErrorKind::NotALibrary { .. }),
            "{err}"
        );
        let text = err.to_string();
        assert!(text.starts_with("plugin `junk` ("), "{text}");
        assert_eq!(text.lines().count(), 1);
    }
}
