//! `eventhost new-plugin`: writes a plugin crate that builds wherever it is
//! put, against this checkout's plugin-api (or one from a registry), with a
//! configuration that loads it and a test that feeds it events in-process.
//!
//! The files are templates under `scaffold/`, with `@NAME@`-style
//! placeholders; the plugin guide (docs/plugins.md) shows the same `lib.rs`.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use eventhost_plugin_api::API_VERSION;

const CARGO_TOML: &str = include_str!("scaffold/Cargo.toml.tmpl");
const LIB_RS: &str = include_str!("scaffold/lib.rs.tmpl");
const TESTS_RS: &str = include_str!("scaffold/tests.rs.tmpl");
const CONFIG_TOML: &str = include_str!("scaffold/config.toml.tmpl");
const GITIGNORE: &str = include_str!("scaffold/gitignore.tmpl");
/// The sample events `replay` and the crate's test feed the plugin: the
/// fixture the host's own tests replay.
const EVENTS_JSONL: &str = include_str!("../../tests/fixtures/blocks.jsonl");

/// Where the plugin-api the crate depends on comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Api {
    /// A directory holding the plugin-api crate (this checkout's, or a vendored copy).
    Path(PathBuf),
    /// A version requirement, for plugin-api from a registry.
    Version(String),
}

impl Api {
    /// The plugin-api of the checkout this binary was built from.
    pub fn this_checkout() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap_or(Path::new("/"))
            .join("plugin-api")
    }

    /// The requirement that picks a plugin-api this host accepts: its own
    /// minor version (a newer one would be refused at load).
    pub fn default_requirement() -> String {
        format!("~{}.{}", API_VERSION.major, API_VERSION.minor)
    }
}

/// What to write.
#[derive(Debug, Clone)]
pub struct Request {
    /// The crate's name, which is also the plugin's name.
    pub name: String,
    /// The directory to create the crate in.
    pub parent: PathBuf,
    pub api: Api,
    /// The target directory cargo will build into (`CARGO_TARGET_DIR`), if
    /// not the crate's own `target/`.
    pub target_dir: Option<PathBuf>,
}

/// A plugin crate that was written.
#[derive(Debug)]
pub struct Created {
    /// The crate's directory (absolute).
    pub dir: PathBuf,
    /// The files written, relative to `dir`.
    pub files: Vec<&'static str>,
    /// The library `cargo build --release` makes (absolute).
    pub library: PathBuf,
    /// The plugin-api dependency, as written into Cargo.toml.
    pub api_dependency: String,
}

/// Why no crate was written; each names the thing and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error(
        "`{0}` is not a usable plugin name: use ASCII letters, digits, `_` and `-`, starting with a letter (at most 64)"
    )]
    BadName(String),
    #[error("{0} already exists; new-plugin never overwrites: choose another NAME or --dir")]
    Exists(PathBuf),
    #[error(
        "no plugin-api crate at {0} (this binary was built from a checkout that is gone or moved): give --api-path DIR (a copy of plugin-api/) or --api-version to use a registry"
    )]
    NoPluginApi(PathBuf),
    #[error("{0} is not valid UTF-8, so it cannot be written into Cargo.toml")]
    NotUtf8(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl ScaffoldError {
    /// True when the request itself is wrong (exit status 2), not the machine.
    pub fn is_usage(&self) -> bool {
        !matches!(self, ScaffoldError::Io { .. })
    }
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> ScaffoldError + '_ {
    move |source| ScaffoldError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Checks a plugin name: a crate name cargo accepts, which is also a
/// library file name on every platform.
fn check_name(name: &str) -> Result<(), ScaffoldError> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && name.len() <= 64;
    if ok {
        Ok(())
    } else {
        Err(ScaffoldError::BadName(name.to_owned()))
    }
}

/// A path as a TOML basic string (quoted and escaped).
fn toml_string(path: &Path) -> Result<String, ScaffoldError> {
    let text = path
        .to_str()
        .ok_or_else(|| ScaffoldError::NotUtf8(path.to_owned()))?;
    Ok(toml::Value::String(text.to_owned()).to_string())
}

fn absolute(path: &Path) -> Result<PathBuf, ScaffoldError> {
    std::path::absolute(path).map_err(io_error(path))
}

/// Writes the crate `parent/name`, refusing to touch an existing directory.
pub fn create(request: &Request) -> Result<Created, ScaffoldError> {
    check_name(&request.name)?;
    let api_dependency = match &request.api {
        Api::Path(dir) => {
            if !dir.join("Cargo.toml").is_file() {
                return Err(ScaffoldError::NoPluginApi(dir.clone()));
            }
            let dir = dir.canonicalize().map_err(io_error(dir))?;
            format!("{{ path = {} }}", toml_string(&dir)?)
        }
        Api::Version(requirement) => toml::Value::String(requirement.clone()).to_string(),
    };
    fs::create_dir_all(&request.parent).map_err(io_error(&request.parent))?;
    let parent = request
        .parent
        .canonicalize()
        .map_err(io_error(&request.parent))?;
    let dir = parent.join(&request.name);
    // create_dir, not create_dir_all: an existing directory is an error,
    // even one created since the check.
    fs::create_dir(&dir).map_err(|source| match source.kind() {
        io::ErrorKind::AlreadyExists => ScaffoldError::Exists(dir.clone()),
        _ => ScaffoldError::Io {
            path: dir.clone(),
            source,
        },
    })?;
    let lib = request.name.replace('-', "_");
    let target = match &request.target_dir {
        Some(target) => absolute(target)?,
        None => dir.join("target"),
    };
    let library = target.join("release").join(format!(
        "{}{lib}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    let fill = |template: &str| {
        template
            .replace("@NAME@", &request.name)
            .replace("@LIB@", &lib)
    };
    let files: [(&'static str, String); 6] = [
        (
            "Cargo.toml",
            fill(CARGO_TOML).replace("@API@", &api_dependency),
        ),
        ("src/lib.rs", fill(LIB_RS)),
        ("src/tests.rs", fill(TESTS_RS)),
        (
            "config.toml",
            fill(CONFIG_TOML).replace("@LIBRARY@", &toml_string(&library)?),
        ),
        ("events.jsonl", EVENTS_JSONL.to_owned()),
        (".gitignore", GITIGNORE.to_owned()),
    ];
    fs::create_dir(dir.join("src")).map_err(io_error(&dir.join("src")))?;
    for (file, text) in &files {
        let path = dir.join(file);
        fs::write(&path, text).map_err(io_error(&path))?;
    }
    Ok(Created {
        files: files.iter().map(|(file, _)| *file).collect(),
        dir,
        library,
        api_dependency,
    })
}

impl Created {
    /// What `new-plugin` prints: what was written, and the commands that
    /// build the plugin and run it (`eventhost` being how to call this
    /// binary), ready to paste into a shell.
    pub fn summary(&self, eventhost: &str) -> String {
        let file = |name: &str| shell_word(&self.dir.join(name).display().to_string());
        let mut out = String::new();
        let _ = writeln!(out, "created the plugin crate {}:", self.dir.display());
        let _ = writeln!(out, "  {}", self.files.join(", "));
        let _ = writeln!(out, "  plugin-api: {}", self.api_dependency);
        let _ = writeln!(out, "build it, then run it on the sample events:");
        let _ = writeln!(
            out,
            "  cargo build --release --manifest-path {}",
            file("Cargo.toml")
        );
        let _ = writeln!(
            out,
            "  {} --config {} replay {}",
            shell_word(eventhost),
            file("config.toml"),
            file("events.jsonl")
        );
        let _ = writeln!(
            out,
            "its test (`cargo test` there) feeds it the events in-process; its config.toml's [[plugins]]"
        );
        let _ = writeln!(
            out,
            "entry loads {} in any configuration.",
            self.library.display()
        );
        out
    }
}

/// `word` as one word for a POSIX shell: as is when that is safe, else
/// single-quoted.
fn shell_word(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+:@%,=".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(parent: &Path, name: &str, api: Api) -> Request {
        Request {
            name: name.into(),
            parent: parent.to_owned(),
            api,
            target_dir: None,
        }
    }

    #[test]
    fn printed_paths_survive_the_shell() {
        assert_eq!(shell_word("/tmp/a-b/c_d.toml"), "/tmp/a-b/c_d.toml");
        assert_eq!(shell_word("/tmp/my plugins"), "'/tmp/my plugins'");
        assert_eq!(shell_word("/tmp/it's"), r"'/tmp/it'\''s'");
    }

    #[test]
    fn names_must_be_crate_and_file_names() {
        for good in ["hello", "my-plugin", "p2_x"] {
            check_name(good).unwrap();
        }
        for bad in ["", "2x", "a b", "../x", "a/b", "é", &"x".repeat(65)] {
            let e = check_name(bad).unwrap_err().to_string();
            assert!(e.contains("not a usable plugin name"), "{bad}: {e}");
        }
    }

    #[test]
    fn writes_every_template_with_nothing_left_unfilled() {
        let parent = tempfile::tempdir().unwrap();
        let made = create(&request(
            parent.path(),
            "my-plugin",
            Api::Path(Api::this_checkout()),
        ))
        .unwrap();
        for file in &made.files {
            let text = fs::read_to_string(made.dir.join(file)).unwrap();
            assert!(!text.contains("@NAME@") && !text.contains("@LIB"), "{file}");
            assert!(
                !text.contains("@API@") && !text.contains("@LIBRARY@"),
                "{file}"
            );
        }
        let manifest: toml::Table =
            toml::from_str(&fs::read_to_string(made.dir.join("Cargo.toml")).unwrap()).unwrap();
        let api = &manifest["dependencies"]["eventhost-plugin-api"]["path"];
        assert_eq!(
            Path::new(api.as_str().unwrap()),
            Api::this_checkout().canonicalize().unwrap()
        );
        assert_eq!(manifest["lib"]["crate-type"][0].as_str(), Some("cdylib"));
        assert!(made.library.ends_with(format!(
            "target/release/{}my_plugin{}",
            std::env::consts::DLL_PREFIX,
            std::env::consts::DLL_SUFFIX
        )));
        let config =
            crate::config::Config::load(&made.dir.join("config.toml")).expect("config loads");
        assert_eq!(config.plugins[0].name, "my-plugin");
        assert_eq!(
            config.plugins[0].path.as_deref(),
            Some(made.library.as_path())
        );
    }

    #[test]
    fn a_registry_dependency_is_a_version_requirement() {
        let parent = tempfile::tempdir().unwrap();
        let made = create(&request(
            parent.path(),
            "x",
            Api::Version(Api::default_requirement()),
        ))
        .unwrap();
        let manifest: toml::Table =
            toml::from_str(&fs::read_to_string(made.dir.join("Cargo.toml")).unwrap()).unwrap();
        assert_eq!(
            manifest["dependencies"]["eventhost-plugin-api"].as_str(),
            Some(format!("~{}.{}", API_VERSION.major, API_VERSION.minor).as_str())
        );
    }

    #[test]
    fn never_overwrites_and_names_what_is_missing() {
        let parent = tempfile::tempdir().unwrap();
        fs::create_dir(parent.path().join("taken")).unwrap();
        fs::write(parent.path().join("taken/keep"), "mine").unwrap();
        let e = create(&request(
            parent.path(),
            "taken",
            Api::Path(Api::this_checkout()),
        ))
        .unwrap_err();
        assert!(matches!(e, ScaffoldError::Exists(_)), "{e}");
        assert!(e.to_string().contains("already exists"), "{e}");
        assert_eq!(
            fs::read_to_string(parent.path().join("taken/keep")).unwrap(),
            "mine"
        );

        let e = create(&request(
            parent.path(),
            "fresh",
            Api::Path(parent.path().join("nowhere")),
        ))
        .unwrap_err();
        assert!(e.to_string().contains("--api-path"), "{e}");
        assert!(!parent.path().join("fresh").exists());
    }
}
