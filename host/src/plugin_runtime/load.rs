//! Finding a plugin's library and checking that it is a plugin this host can run.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use abi_stable::StableAbi;
use abi_stable::abi_stability::abi_checking::check_layout_compatibility;
use abi_stable::library::{LibraryError, RawLibrary, RootModule, lib_header_from_path};
use abi_stable::std_types::{RResult, RStr};
use eventhost_plugin_api::{
    API_VERSION, ApiVersion, DECLARATIONS_SYMBOL, EventType, EventTypes, ExportedDeclarations,
    Isolation, PluginDeclarations, PluginModuleRef,
};

use crate::config::{Config, PluginEntry};

/// A library that passed every check.
#[derive(Clone)]
pub struct LoadedPlugin {
    pub entry: PluginEntry,
    /// The library file loaded: the one the entry resolves to, or a private
    /// copy of it made for a reload (see [`private_copy`]).
    pub file: PathBuf,
    /// The file the entry resolves to.
    pub origin: PathBuf,
    /// The library file's checksum (see [`LoadedPlugin::checksum`]).
    checksum: Arc<OnceLock<String>>,
    /// The private copy `file` is, if it is one: removed once no instance
    /// of the plugin can use it any more.
    copy: Option<Arc<PrivateCopy>>,
    pub module: PluginModuleRef,
    /// The plugin-api version the plugin was built against.
    pub api_version: ApiVersion,
    /// What it declares beyond its root module (since plugin-api 1.3).
    pub declarations: PluginDeclarations,
    /// What it will receive: the declared types, narrowed by the configuration.
    pub event_types: EventTypes,
    /// Where it runs: the entry's `isolation`, else the plugin's own default.
    pub isolation: Isolation,
    /// What the plugin's configuration check said of itself (may be empty).
    pub description: String,
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
        /// A Rust library (`.rlib`) of the same name beside one of them: the
        /// crate was built without `crate-type = ["cdylib"]`.
        rlib: Option<PathBuf>,
    },
    Missing {
        /// As in `NotFound`.
        rlib: Option<PathBuf>,
    },
    /// `path` is there but cannot be a library: a directory, a FIFO, a
    /// symlink loop, unreadable.
    NotAFile {
        detail: String,
    },
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
    BadDeclarations {
        detail: String,
    },
    MaskNotDeclared {
        configured: EventTypes,
        declared: EventTypes,
    },
    /// The plugin's own check refused its `[plugins.config]` table.
    BadConfig {
        /// `file:line:column` in config.toml, when found.
        at: Option<String>,
        problem: String,
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
            LoadErrorKind::NotFound { searched, rlib } => {
                let list: Vec<String> = searched.iter().map(|p| p.display().to_string()).collect();
                write!(f, "library not found; looked for {}; ", list.join(", "))?;
                match rlib {
                    Some(rlib) => write_only_rlib(f, rlib),
                    None => f.write_str("build it, or set `path` or `plugin_dirs`"),
                }
            }
            LoadErrorKind::Missing { rlib: None } => {
                f.write_str("file does not exist; check `path`")
            }
            LoadErrorKind::Missing { rlib: Some(rlib) } => {
                f.write_str("file does not exist; ")?;
                write_only_rlib(f, rlib)
            }
            LoadErrorKind::NotAFile { detail } => {
                write!(f, "{detail}; set `path` to the plugin's library file")
            }
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
                "declares event_types {declared:#x}, which is not a non-empty combination of the known event types ({})",
                EventType::known()
            ),
            LoadErrorKind::BadDeclarations { detail } => write!(
                f,
                "its plugin-api 1.3 declarations are unreadable ({detail}); rebuild it against a released plugin-api"
            ),
            LoadErrorKind::BadConfig { at, problem } => match at {
                Some(at) => write!(f, "its [plugins.config] is invalid at {at}: {problem}"),
                None => write!(f, "its [plugins.config] is invalid: {problem}"),
            },
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

/// What to do when a plugin crate was built as a Rust library only.
fn write_only_rlib(f: &mut fmt::Formatter<'_>, rlib: &Path) -> fmt::Result {
    write!(
        f,
        "only {} is there, a Rust library the host cannot load: add `crate-type = [\"cdylib\"]` to the [lib] table of the plugin's Cargo.toml and build it again",
        rlib.display()
    )
}

/// The `.rlib` cargo builds instead of `library` (a `lib<name>.so`) when
/// the crate has no `crate-type = ["cdylib"]`, if it is there.
fn rlib_beside(library: &Path) -> Option<PathBuf> {
    let name = library.file_name()?.to_str()?;
    let stem = name
        .strip_prefix(std::env::consts::DLL_PREFIX)?
        .strip_suffix(std::env::consts::DLL_SUFFIX)?;
    let rlib = library.with_file_name(format!("lib{stem}.rlib"));
    rlib.is_file().then_some(rlib)
}

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
        let not_a_file =
            |detail: String| error(Some(path.clone()), LoadErrorKind::NotAFile { detail });
        return match std::fs::metadata(path) {
            Ok(m) if m.is_file() => Ok(path.clone()),
            Ok(m) if m.is_dir() => Err(not_a_file("is a directory".into())),
            Ok(_) => Err(not_a_file(
                "is not a regular file (a FIFO, socket or device)".into(),
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(error(
                Some(path.clone()),
                LoadErrorKind::Missing {
                    rlib: rlib_beside(path),
                },
            )),
            Err(e) => Err(not_a_file(format!("cannot be read: {e}"))),
        };
    }
    let file_name = library_file_name(&entry.library);
    let searched: Vec<PathBuf> = dirs.iter().map(|d| d.join(&file_name)).collect();
    match searched.iter().find(|p| p.is_file()) {
        Some(found) => Ok(found.clone()),
        None => {
            let rlib = searched.iter().find_map(|p| rlib_beside(p));
            Err(error(None, LoadErrorKind::NotFound { searched, rlib }))
        }
    }
}

impl LoadedPlugin {
    /// `crc32:<hex>` of the library file loaded: which build runs. Read
    /// when first asked for (a library can be large; reading it at every
    /// load, a debug build's at that, cost seconds), then kept.
    pub fn checksum(&self) -> &str {
        self.checksum.get_or_init(|| {
            let mut crc = crc32fast::Hasher::new();
            match std::fs::File::open(&self.file)
                .and_then(|mut f| std::io::copy(&mut f, &mut HashWriter(&mut crc)))
            {
                Ok(_) => format!("crc32:{:08x}", crc.finalize()),
                Err(e) => format!("unreadable: {e}"),
            }
        })
    }
}

/// Feeds what is written to a CRC.
struct HashWriter<'a>(&'a mut crc32fast::Hasher);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Loads every configured plugin and checks its table, returning the ones
/// that passed and the errors.
pub fn load_all(config: &Config) -> (Vec<LoadedPlugin>, Vec<LoadError>) {
    let mut loaded = Vec::new();
    let mut failed = Vec::new();
    for entry in &config.plugins {
        match load(entry, &config.host.plugin_dirs).and_then(|p| check_config(config, p)) {
            Ok(p) => loaded.push(p),
            Err(e) => failed.push(e),
        }
    }
    (loaded, failed)
}

/// Runs the plugin's own check of its `[plugins.config]` table (since
/// plugin-api 1.3; older plugins accept any table here and check it when
/// they run); a problem is located in `config`'s file when the entry is
/// one of its `[[plugins]]` (`entry.index`). On success the
/// plugin's description of itself, if any, is in `description`.
pub fn check_config(config: &Config, mut plugin: LoadedPlugin) -> Result<LoadedPlugin, LoadError> {
    let table = plugin.entry.config.to_string();
    match (plugin.declarations.check_config)(RStr::from_str(&table)) {
        RResult::ROk(description) => {
            plugin.description = description.into_string();
            Ok(plugin)
        }
        RResult::RErr(problem) => {
            let at = plugin
                .entry
                .index
                .and_then(|index| config.locate_in_plugin_table(index, &problem.path))
                .map(|(line, column)| format!("{}:{line}:{column}", config.source.display()));
            Err(LoadError {
                plugin: plugin.entry.name.clone(),
                file: Some(plugin.file.clone()),
                kind: LoadErrorKind::BadConfig {
                    at,
                    problem: problem.to_string(),
                },
            })
        }
    }
}

/// Resolves, opens and checks the entry's library.
pub fn load(entry: &PluginEntry, dirs: &[PathBuf]) -> Result<LoadedPlugin, LoadError> {
    let file = resolve(entry, dirs)?;
    load_file(entry, file.clone(), file)
}

/// Where the private copies of a data directory's node go.
pub fn copies_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("plugin-libraries")
}

/// Like [`load`], from a fresh private copy of the library in `copies`:
/// the dynamic loader keeps a library it has loaded by its path, so a
/// library rebuilt at the same path would otherwise not be loaded again
/// (abi_stable never unloads one). Used for (re)loads at run time.
///
/// The copy is removed once the last instance that can use it is gone (a
/// thread-mode library stays mapped until the node exits all the same).
pub fn load_copy(
    entry: &PluginEntry,
    dirs: &[PathBuf],
    copies: &Path,
) -> Result<LoadedPlugin, LoadError> {
    let origin = resolve(entry, dirs)?;
    let (copy, checksum) = private_copy(&entry.name, &origin, copies).map_err(|e| LoadError {
        plugin: entry.name.clone(),
        file: Some(origin.clone()),
        kind: LoadErrorKind::NotAFile {
            detail: format!("cannot copy it into {}: {e}", copies.display()),
        },
    })?;
    let mut plugin = load_file(entry, copy.0.clone(), origin)?;
    plugin.copy = Some(Arc::new(copy));
    plugin.checksum = Arc::new(OnceLock::from(checksum));
    Ok(plugin)
}

/// A private copy of a library, removed when dropped.
#[derive(Debug)]
struct PrivateCopy(PathBuf);

impl Drop for PrivateCopy {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.0) {
            tracing::warn!(
                "cannot remove the unused library copy {}: {e}",
                self.0.display()
            );
        }
    }
}

/// Copies `origin` to a new file in `copies`, named after the plugin, this
/// process and a counter, keeping its extension; returns the copy and its
/// checksum, taken from the bytes copied (the file it loads, whatever
/// happens to `origin` meanwhile).
fn private_copy(
    name: &str,
    origin: &Path,
    copies: &Path,
) -> std::io::Result<(PrivateCopy, String)> {
    use std::io::{Read, Write};
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    std::fs::create_dir_all(copies)?;
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let ext = origin.extension().and_then(|e| e.to_str()).unwrap_or("so");
    let path = copies.join(format!("{name}.{}.{n}.{ext}", std::process::id()));
    let mut from = std::fs::File::open(origin)?;
    let copy = PrivateCopy(path);
    let mut to = std::fs::File::create(&copy.0)?;
    let mut crc = crc32fast::Hasher::new();
    let mut buffer = vec![0; 1 << 16];
    loop {
        let read = match from.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        crc.update(&buffer[..read]);
        to.write_all(&buffer[..read])?;
    }
    Ok((copy, format!("crc32:{:08x}", crc.finalize())))
}

/// Removes the copies in `copies` left by nodes that are no longer
/// running (a node killed before it could remove its own); those of a
/// running process (another command on the same configuration) stay.
pub fn remove_stale_copies(copies: &Path) {
    let Ok(entries) = std::fs::read_dir(copies) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        // <plugin>.<pid>.<n>.<ext>
        let pid = name
            .to_str()
            .and_then(|n| n.rsplit('.').nth(2))
            .and_then(|pid| pid.parse::<libc::pid_t>().ok());
        let Some(pid) = pid else { continue };
        // SAFETY: kill with signal 0 only checks that the process exists.
        let gone = unsafe { libc::kill(pid, 0) } != 0
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone && let Err(e) = std::fs::remove_file(entry.path()) {
            tracing::warn!(
                "cannot remove the stale library copy {}: {e}",
                entry.path().display()
            );
        }
    }
}

fn load_file(
    entry: &PluginEntry,
    file: PathBuf,
    origin: PathBuf,
) -> Result<LoadedPlugin, LoadError> {
    let error = |kind| LoadError {
        plugin: entry.name.clone(),
        file: Some(file.clone()),
        kind,
    };
    let (module, api_version) = open_library(&entry.name, &file)?;
    let declarations = read_declarations(&file, api_version)
        .map_err(|detail| error(LoadErrorKind::BadDeclarations { detail }))?;

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
        origin,
        checksum: Arc::default(),
        copy: None,
        api_version,
        isolation: entry.isolation.unwrap_or(declarations.isolation),
        description: String::new(),
        declarations,
        event_types,
        module,
        file,
    })
}

/// The declarations a plugin built against plugin-api 1.3 or later exports
/// beside its root module, checked against this host's layout of them; the
/// defaults for an older plugin.
fn read_declarations(file: &Path, version: ApiVersion) -> Result<PluginDeclarations, String> {
    if version.minor < 3 {
        return Ok(PluginDeclarations::DEFAULT);
    }
    // The library is already loaded (and never unloaded): this only finds
    // it again. Leaked for the same reason the root module's is.
    let library = RawLibrary::load_at(file).map_err(|e| first_line(&e.to_string()))?;
    let library: &'static RawLibrary = Box::leak(Box::new(library));
    let mut symbol = DECLARATIONS_SYMBOL.as_bytes().to_vec();
    symbol.push(0);
    // SAFETY: a plugin-api 1.3 plugin exports an `ExportedDeclarations`
    // static under this name (`export_plugin!`); its layout field is read
    // first and checked before anything else of it is used.
    let exported: &'static ExportedDeclarations = unsafe {
        *library
            .get::<&'static ExportedDeclarations>(&symbol)
            .map_err(|e| first_line(&e.to_string()))?
    };
    check_layout_compatibility(<PluginDeclarations as StableAbi>::LAYOUT, exported.layout)
        .map_err(|e| {
            tracing::debug!(file = %file.display(), "declarations layout check failed:\n{e}");
            "its layout differs from this host's".to_owned()
        })?;
    Ok(exported.declarations)
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
            isolation: None,
            ack_timeout: std::time::Duration::from_secs(1),
            on_failure: crate::config::OnFailure::Restart,
            poison: crate::config::Poison::Halt,
            max_event_failures: 3,
            config: serde_json::json!({}),
            index: Some(0),
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
    fn a_crate_built_without_cdylib_is_named_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = vec![dir.path().to_owned()];
        let without = resolve(&entry("x", None), &dirs).unwrap_err().to_string();
        assert!(!without.contains("cdylib"), "{without}");
        let rlib = dir.path().join("libx.rlib");
        std::fs::write(&rlib, b"").unwrap();
        for err in [
            resolve(&entry("x", None), &dirs).unwrap_err(),
            resolve(
                &entry("x", Some(&dir.path().join(library_file_name("x")))),
                &[],
            )
            .unwrap_err(),
        ] {
            let text = err.to_string();
            assert!(
                text.contains(&format!("only {} is there", rlib.display()))
                    && text.contains("add `crate-type = [\"cdylib\"]`"),
                "{text}"
            );
        }
    }

    #[test]
    fn a_path_that_is_not_a_file_says_what_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let err = |path: &Path| {
            resolve(&entry("x", Some(path)), &[])
                .unwrap_err()
                .to_string()
        };
        assert!(
            err(dir.path()).contains("is a directory"),
            "{}",
            err(dir.path())
        );
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(
            err(&fifo).contains("is not a regular file"),
            "{}",
            err(&fifo)
        );
        let looped = dir.path().join("loop");
        std::os::unix::fs::symlink(&looped, &looped).unwrap();
        assert!(err(&looped).contains("cannot be read"), "{}", err(&looped));
        assert!(err(&dir.path().join("none")).contains("file does not exist"));
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
