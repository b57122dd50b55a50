//! The plugin's `[plugins.config]` table: which Python plugin to run, and in
//! which Python environment.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

/// A checked configuration. Deserializing it checks what the table alone
/// can tell (one plugin named, names well formed); its
/// [`PluginConfig::check`] (in describe.rs) checks it against the
/// environment, for `check-config`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Raw")]
pub struct Config {
    pub target: Target,
    /// A virtualenv directory or a Python executable; `None`: the default rule
    /// of [`crate::interpreter::locate`].
    pub python: Option<PathBuf>,
    /// The least severe Python log records that reach the host's log.
    pub log_level: LogLevel,
}

/// Which Python plugin to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An entry point's name in the group `bigchaindb.events` or
    /// `planetmint.events`, as BigchainDB's `events_plugins` listed it.
    EntryPoint(String),
    /// A module to import.
    Module(String),
}

impl Target {
    /// The configuration key that names it.
    pub fn key(&self) -> &'static str {
        match self {
            Target::EntryPoint(_) => "entry_point",
            Target::Module(_) => "module",
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Target::EntryPoint(name) | Target::Module(name) => name,
        }
    }
}

/// The `logging` levels, by their names in Python.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Debug,
    #[default]
    Info,
    Warning,
    Error,
    Critical,
}

impl LogLevel {
    /// The level's number in Python's `logging`.
    pub fn number(self) -> u32 {
        match self {
            LogLevel::Debug => 10,
            LogLevel::Info => 20,
            LogLevel::Warning => 30,
            LogLevel::Error => 40,
            LogLevel::Critical => 50,
        }
    }
}

/// What is wrong with a table of the right keys and types, as one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// Neither `entry_point` nor `module`, or both.
    NoSingleTarget { both: bool },
    /// An empty or malformed name.
    BadName { key: &'static str, value: String },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::NoSingleTarget { both: false } => f.write_str(
                "no Python plugin named: set `entry_point` (a name in the bigchaindb.events or planetmint.events entry-point group) or `module` (a module to import)",
            ),
            ConfigError::NoSingleTarget { both: true } => {
                f.write_str("both `entry_point` and `module` are set: set one of them")
            }
            ConfigError::BadName { key, value } => write!(
                f,
                "{key} = {value:?} is not a Python {}",
                if *key == "module" {
                    "module name (dotted identifiers, e.g. my_package.my_plugin)"
                } else {
                    "entry-point name (e.g. console_print)"
                }
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    entry_point: Option<String>,
    module: Option<String>,
    python: Option<PathBuf>,
    #[serde(default)]
    log_level: LogLevel,
}

impl TryFrom<Raw> for Config {
    type Error = ConfigError;

    fn try_from(raw: Raw) -> Result<Config, ConfigError> {
        let target = match (raw.entry_point, raw.module) {
            (Some(name), None) => {
                // Entry-point names are free text in packaging metadata, but
                // never empty and never spread over lines.
                if name.trim().is_empty() || name.contains(['\n', '=']) {
                    return Err(ConfigError::BadName {
                        key: "entry_point",
                        value: name,
                    });
                }
                Target::EntryPoint(name)
            }
            (None, Some(module)) => {
                let dotted = !module.is_empty()
                    && module.split('.').all(|part| {
                        let mut chars = part.chars();
                        chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
                            && chars.all(|c| c.is_alphanumeric() || c == '_')
                    });
                if !dotted {
                    return Err(ConfigError::BadName {
                        key: "module",
                        value: module,
                    });
                }
                Target::Module(module)
            }
            (None, None) => return Err(ConfigError::NoSingleTarget { both: false }),
            (Some(_), Some(_)) => return Err(ConfigError::NoSingleTarget { both: true }),
        };
        Ok(Config {
            target,
            python: raw.python,
            log_level: raw.log_level,
        })
    }
}

#[cfg(test)]
mod tests {
    use eventhost_plugin_api::config::parse;

    use super::*;

    fn refused(json: &str) -> String {
        parse::<Config>(json).unwrap_err().to_string()
    }

    #[test]
    fn an_entry_point_or_a_module() {
        let c: Config = parse(r#"{"entry_point": "console_print"}"#).unwrap();
        assert_eq!(c.target, Target::EntryPoint("console_print".into()));
        assert_eq!((c.python, c.log_level), (None, LogLevel::Info));
        let c: Config = parse(
            r#"{"module": "my_package.my_plugin", "python": "/opt/venv", "log_level": "debug"}"#,
        )
        .unwrap();
        assert_eq!(c.target, Target::Module("my_package.my_plugin".into()));
        assert_eq!(
            (c.target.key(), c.target.name()),
            ("module", "my_package.my_plugin")
        );
        assert_eq!(c.python, Some(PathBuf::from("/opt/venv")));
        assert_eq!(c.log_level.number(), 10);
    }

    #[test]
    fn exactly_one_target() {
        assert!(refused("{}").starts_with("no Python plugin named: set `entry_point`"));
        assert_eq!(
            refused(r#"{"entry_point": "a", "module": "b"}"#),
            "both `entry_point` and `module` are set: set one of them"
        );
    }

    #[test]
    fn bad_names_and_keys_are_named() {
        for module in ["", "a..b", "1abc", "my-plugin", "a.b "] {
            let e = refused(&format!(r#"{{"module": {module:?}}}"#));
            assert!(e.contains("is not a Python module name"), "{module}: {e}");
        }
        assert!(refused(r#"{"entry_point": " "}"#).contains("entry-point name"));
        let e = refused(r#"{"entry_point": "x", "pyhton": "/v"}"#);
        assert!(e.starts_with("unknown field `pyhton`"), "{e}");
        let e = refused(r#"{"entry_point": "x", "log_level": "loud"}"#);
        assert!(e.starts_with("`log_level`: unknown variant `loud`"), "{e}");
    }
}
