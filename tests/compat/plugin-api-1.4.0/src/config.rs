//! Since plugin-api 1.3. A plugin's configuration table, checked before the
//! plugin runs.
//!
//! A plugin that names its configuration type in `export_plugin!`
//! (`config: MyConfig`) lets the host check an entry's `[plugins.config]`
//! table without running the plugin: `eventhost check-config`, and the
//! admin API's `load` and `reload`, refuse a misspelt key or a bad value
//! with the key's position in config.toml, instead of the plugin failing
//! once it runs.

use std::fmt;

use abi_stable::StableAbi;
use abi_stable::std_types::RString;
use serde::de::DeserializeOwned;

/// What is wrong with a configuration table, and where.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The key the problem is at, dotted from the plugin's table
    /// (`limits.max_clients`, `tokens[2]`); empty for the table itself.
    pub path: RString,
    /// What is wrong, in words an operator can act on. Never quotes the
    /// value of a secret.
    pub message: RString,
}

impl ConfigProblem {
    /// A problem with the value at `path` (empty: the whole table).
    pub fn at(path: &str, message: impl fmt::Display) -> ConfigProblem {
        ConfigProblem {
            path: path.into(),
            message: message.to_string().into(),
        }
    }
}

/// `` `path`: message ``. An unknown key's path is the key itself, which
/// its message already names, so it is shown under the table holding it.
impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.message.starts_with("unknown field") {
            self.path.rsplit_once('.').map_or("", |(table, _)| table)
        } else {
            &self.path
        };
        if path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "`{path}`: {}", self.message)
        }
    }
}

impl std::error::Error for ConfigProblem {}

/// A plugin's configuration type: deserialized from its `[plugins.config]`
/// table (use `#[serde(deny_unknown_fields)]` so that a misspelt key is an
/// error), then checked beyond its types.
pub trait PluginConfig: DeserializeOwned {
    /// Checks values the types cannot (ranges, files that must exist,
    /// settings that go together). `Ok` carries a short description that
    /// `eventhost check-config` shows beside the plugin, or an empty string.
    fn check(&self) -> Result<String, ConfigProblem> {
        Ok(String::new())
    }
}

/// Deserializes a configuration table given as JSON; an error names the
/// key it is at, and never quotes a string value from the table: serde
/// words a refused string as `invalid type: string "<the value>"`, and the
/// value may be a secret (`tokens = "s3cr3t"` where a list belongs), so it
/// is replaced by its kind. Errors reach logs and the unauthenticated
/// status API.
pub fn parse<T: DeserializeOwned>(json: &str) -> Result<T, ConfigProblem> {
    // The host hands over valid JSON; a syntax error names only a position.
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| ConfigProblem::at("", e))?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        ConfigProblem::at(&path, redact_strings(&e.into_inner().to_string()))
    })
}

/// Replaces each `string "…"` (serde's wording of an unexpected string, the
/// value written as a Rust string literal) with `a string`.
fn redact_strings(message: &str) -> String {
    const MARK: &str = "string \"";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(MARK) {
        out.push_str(&rest[..at]);
        let quoted = &rest[at + MARK.len()..];
        let mut escaped = false;
        let end = quoted.char_indices().find(|&(_, c)| {
            let closes = c == '"' && !escaped;
            escaped = c == '\\' && !escaped;
            closes
        });
        match end {
            Some((end, _)) => {
                out.push_str("a string");
                rest = &quoted[end + 1..];
            }
            None => {
                out.push_str("a string");
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Parses and checks: what the host's check calls through `export_plugin!`.
pub fn check<T: PluginConfig>(json: &str) -> Result<String, ConfigProblem> {
    parse::<T>(json)?.check()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        #[allow(dead_code)]
        format: String,
        #[serde(default)]
        limits: Limits,
    }

    #[derive(Deserialize, Debug, Default)]
    #[serde(deny_unknown_fields)]
    struct Limits {
        #[serde(default)]
        max: u32,
    }

    impl PluginConfig for Sample {
        fn check(&self) -> Result<String, ConfigProblem> {
            if self.limits.max > 10 {
                return Err(ConfigProblem::at("limits.max", "must be at most 10"));
            }
            Ok(format!("format {}", self.format))
        }
    }

    #[test]
    fn errors_name_the_key() {
        let unknown = parse::<Sample>(r#"{"formt":"x"}"#).unwrap_err();
        assert_eq!(unknown.path, "formt", "the position of the typo");
        assert!(
            unknown.to_string().starts_with("unknown field `formt`"),
            "{unknown}"
        );
        let nested = parse::<Sample>(r#"{"format":"x","limits":{"maxx":1}}"#).unwrap_err();
        assert!(
            nested
                .to_string()
                .starts_with("`limits`: unknown field `maxx`"),
            "{nested}"
        );
        let nested = parse::<Sample>(r#"{"format":"x","limits":{"max":"many"}}"#).unwrap_err();
        assert_eq!(nested.path, "limits.max");
        assert!(nested.to_string().starts_with("`limits.max`: invalid type"));
        let checked = check::<Sample>(r#"{"format":"x","limits":{"max":11}}"#).unwrap_err();
        assert_eq!(checked.to_string(), "`limits.max`: must be at most 10");
        assert_eq!(check::<Sample>(r#"{"format":"x"}"#).unwrap(), "format x");
    }

    #[test]
    fn refused_strings_are_not_quoted() {
        #[derive(Deserialize, Debug)]
        struct Secret {
            #[allow(dead_code)]
            tokens: Vec<String>,
        }
        let e = parse::<Secret>(r#"{"tokens":"s3cr\"et"}"#).unwrap_err();
        assert_eq!(e.path, "tokens");
        assert!(!e.message.contains("s3cr"), "{e}");
        assert!(
            e.message
                .contains("invalid type: a string, expected a sequence"),
            "{e}"
        );
        assert_eq!(redact_strings("x string \"a\\\"b\" y"), "x a string y");
    }
}
