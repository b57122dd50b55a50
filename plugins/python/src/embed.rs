//! Starting CPython inside the plugin's process, as the configured
//! interpreter would start.
//!
//! Two things differ from a Python program linked to libpython:
//! - the host opens plugin libraries with `RTLD_LOCAL`, so libpython's
//!   symbols, loaded as this library's dependency, are invisible to the C
//!   extension modules Python loads later (`_json`, `_ssl`, ... are built
//!   expecting the interpreter's symbols to be global). libpython is made
//!   global (`dlopen(RTLD_NOLOAD | RTLD_GLOBAL)` of the file it was loaded
//!   from) before the interpreter starts;
//! - the interpreter must find the configured environment's standard
//!   library and site-packages: it is started with that interpreter's path
//!   as `sys.executable`, from which Python's own start-up finds a
//!   virtualenv's `pyvenv.cfg` and its prefixes, as when that executable runs.
//!
//! Python's signal handlers are not installed: the host handles signals,
//! and a plugin never sees KeyboardInterrupt.
//!
//! The configured interpreter must be the build of Python libpython comes
//! from, not only the same version: builds differ in which modules are
//! built into libpython and which are extension modules of their own
//! (Debian's libpython has `_socket` built in, pyenv's loads it from
//! lib-dynload), so one build's standard library fails in another's
//! libpython (`import ssl`: "PyCapsule_Import could not import module
//! _socket", seen with pyenv's 3.11.7 libpython and a Debian 3.11.2 venv).
//!
//! One interpreter per process, for good: CPython cannot be restarted. In
//! process isolation each plugin has a process of its own; in thread mode
//! the first Python plugin to start owns the host's interpreter.

use std::ffi::{CStr, CString, c_void};
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use pyo3::ffi;

use crate::interpreter::Probe;

/// The interpreter pyo3 linked this library against, for the advice to rebuild.
const BUILT_WITH: &str = env!("EVENTHOST_PYTHON_BUILT_WITH");

/// The interpreter this process runs, once started.
struct Running {
    executable: PathBuf,
    owner: String,
}

static RUNNING: Mutex<Option<Running>> = Mutex::new(None);

/// Why the interpreter cannot run the plugin.
#[derive(Debug)]
pub enum EmbedError {
    /// The configured interpreter is another Python version than libpython.
    VersionMismatch {
        python: PathBuf,
        version: String,
        libpython: String,
    },
    /// The configured interpreter is another build of the same version.
    OtherBuild {
        python: PathBuf,
        version: String,
        theirs: Option<PathBuf>,
        ours: PathBuf,
    },
    /// The loader does not say which file libpython is.
    Unlocated,
    /// libpython's symbols could not be made global.
    Promote(String),
    /// CPython's initialization failed.
    Init { python: PathBuf, detail: String },
    /// Thread mode: the host's interpreter already runs another environment
    /// or another plugin.
    Taken {
        owner: String,
        running: PathBuf,
        wanted: PathBuf,
    },
}

impl fmt::Display for EmbedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EmbedError::VersionMismatch {
                python,
                version,
                libpython,
            } => {
                let minor = |v: &str| v.splitn(3, '.').take(2).collect::<Vec<_>>().join(".");
                write!(
                    f,
                    "python {} is Python {version}, but this build of the python plugin embeds libpython {libpython} (built with {BUILT_WITH}): set `python` to a Python {} environment, or rebuild the plugin for Python {} (PYO3_PYTHON={} cargo build --release -p eventhost-python)",
                    python.display(),
                    minor(libpython),
                    minor(version),
                    python.display()
                )
            }
            EmbedError::OtherBuild {
                python,
                version,
                theirs,
                ours,
            } => write!(
                f,
                "python {} (Python {version}) is another build of Python than the libpython this plugin embeds ({}, built with {BUILT_WITH}){}: their standard libraries and extension modules do not mix; make the environment with {BUILT_WITH} (`{BUILT_WITH} -m venv DIR`), or rebuild the plugin for this Python (PYO3_PYTHON={} cargo build --release -p eventhost-python)",
                python.display(),
                ours.display(),
                match theirs {
                    Some(theirs) => format!("; its libpython is {}", theirs.display()),
                    None => "; it has no shared libpython".into(),
                },
                python.display()
            ),
            EmbedError::Unlocated => f.write_str(
                "the loader does not say which file holds libpython (dladdr of Py_InitializeFromConfig failed)",
            ),
            EmbedError::Promote(detail) => write!(
                f,
                "cannot make libpython's symbols global for Python's extension modules: {detail}"
            ),
            EmbedError::Init { python, detail } => write!(
                f,
                "the embedded Python (as {}) failed to start: {detail}",
                python.display()
            ),
            EmbedError::Taken {
                owner,
                running,
                wanted,
            } => write!(
                f,
                "this process already runs Python plugin `{owner}` (python {}); one process holds one Python interpreter, so this plugin (python {}) cannot run in thread mode beside it: remove `isolation = \"thread\"` from its [[plugins]] entry (process isolation is the default)",
                running.display(),
                wanted.display()
            ),
        }
    }
}

impl std::error::Error for EmbedError {}

/// The version of the libpython this library is linked to ("3.11.7").
pub fn libpython_version() -> String {
    // SAFETY: Py_GetVersion returns a static string and may be called
    // before the interpreter is initialized.
    let full = unsafe { CStr::from_ptr(ffi::Py_GetVersion()) };
    let full = full.to_string_lossy();
    full.split_whitespace().next().unwrap_or("").to_owned()
}

/// The file the loader loaded libpython from (for a libpython linked in
/// statically: this library's own file).
pub fn libpython_file() -> Result<PathBuf, EmbedError> {
    // SAFETY: dladdr is given the address of a function in a loaded
    // library and a Dl_info to fill; dli_fname, when set, is the loader's
    // NUL-terminated path.
    unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        let symbol = ffi::Py_InitializeFromConfig as *const c_void;
        if libc::dladdr(symbol, &mut info) == 0 || info.dli_fname.is_null() {
            return Err(EmbedError::Unlocated);
        }
        Ok(PathBuf::from(std::ffi::OsStr::from_bytes(
            CStr::from_ptr(info.dli_fname).to_bytes(),
        )))
    }
}

/// Whether the probed interpreter is the build of Python libpython comes
/// from (see the module's doc); a different version is named as such.
pub fn check_build(probe: &Probe) -> Result<(), EmbedError> {
    let libpython = libpython_version();
    let (major, minor, _) = probe.version;
    if !libpython.starts_with(&format!("{major}.{minor}.")) {
        return Err(EmbedError::VersionMismatch {
            python: probe.executable.clone(),
            version: probe.version_text(),
            libpython,
        });
    }
    let ours = libpython_file()?;
    let same_file = |theirs: &Path| match (theirs.canonicalize(), ours.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if probe.libpython.as_deref().is_some_and(same_file) {
        Ok(())
    } else {
        Err(EmbedError::OtherBuild {
            python: probe.executable.clone(),
            version: probe.version_text(),
            theirs: probe.libpython.clone(),
            ours,
        })
    }
}

/// Starts the interpreter for `plugin` as `probe`'s executable, unless it
/// already runs (for this plugin: a restart in thread mode).
pub fn start(plugin: &str, probe: &Probe) -> Result<(), EmbedError> {
    check_build(probe)?;
    let mut running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(running) = &*running {
        return if running.owner == plugin && running.executable == probe.executable {
            Ok(())
        } else {
            Err(EmbedError::Taken {
                owner: running.owner.clone(),
                running: running.executable.clone(),
                wanted: probe.executable.clone(),
            })
        };
    }
    make_libpython_global()?;
    initialize(&probe.executable).map_err(|detail| EmbedError::Init {
        python: probe.executable.clone(),
        detail,
    })?;
    *running = Some(Running {
        executable: probe.executable.clone(),
        owner: plugin.to_owned(),
    });
    Ok(())
}

fn make_libpython_global() -> Result<(), EmbedError> {
    let file = libpython_file()?;
    let path = CString::new(file.as_os_str().as_bytes())
        .map_err(|_| EmbedError::Promote(format!("{}: a NUL byte in the path", file.display())))?;
    // SAFETY: dlopen of a library that is loaded already (RTLD_NOLOAD), by
    // the path the loader reported; the handle is never closed, so
    // libpython stays for the life of the process, as it would anyway.
    unsafe {
        let handle = libc::dlopen(
            path.as_ptr(),
            libc::RTLD_NOW | libc::RTLD_GLOBAL | libc::RTLD_NOLOAD,
        );
        if handle.is_null() {
            let why = libc::dlerror();
            let why = if why.is_null() {
                "unknown error".into()
            } else {
                CStr::from_ptr(why).to_string_lossy()
            };
            return Err(EmbedError::Promote(format!("{}: {why}", file.display())));
        }
    }
    Ok(())
}

fn initialize(executable: &Path) -> Result<(), String> {
    let exe = CString::new(executable.as_os_str().as_bytes())
        .map_err(|_| "the interpreter's path has a NUL byte".to_owned())?;
    // SAFETY: the documented sequence of CPython's PyConfig API, on a config
    // initialized by PyConfig_InitPythonConfig and cleared once; called once
    // per process (under RUNNING's lock).
    unsafe {
        let mut config = std::mem::MaybeUninit::<ffi::PyConfig>::uninit();
        ffi::PyConfig_InitPythonConfig(config.as_mut_ptr());
        let config = config.as_mut_ptr();
        (*config).install_signal_handlers = 0;
        (*config).parse_argv = 0;
        let mut status =
            ffi::PyConfig_SetBytesString(config, &raw mut (*config).program_name, exe.as_ptr());
        if ffi::PyStatus_Exception(status) == 0 {
            status =
                ffi::PyConfig_SetBytesString(config, &raw mut (*config).executable, exe.as_ptr());
        }
        if ffi::PyStatus_Exception(status) == 0 {
            status = ffi::Py_InitializeFromConfig(config);
        }
        ffi::PyConfig_Clear(config);
        if ffi::PyStatus_Exception(status) != 0 {
            return Err(status_text(status));
        }
        // Initialization leaves this thread holding the GIL: let it go, so
        // that any thread (this one included) takes it when it needs it.
        ffi::PyEval_SaveThread();
    }
    Ok(())
}

/// # Safety
/// `status` came from CPython.
unsafe fn status_text(status: ffi::PyStatus) -> String {
    let text = |p: *const std::ffi::c_char| {
        // SAFETY: CPython's status strings are static, NUL-terminated.
        (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    };
    // SAFETY: as the caller promised.
    if unsafe { ffi::PyStatus_IsExit(status) } != 0 {
        return format!("it asked to exit with status {}", status.exitcode);
    }
    match (text(status.func), text(status.err_msg)) {
        (Some(func), Some(msg)) => format!("{func}: {msg}"),
        (None, Some(msg)) => msg,
        _ => "no reason given".into(),
    }
}
