//! How the plugin logs in: user and password, a token, an nkey seed or a
//! creds file (JWT and seed), each from the configuration or from an
//! environment variable named there, so that secrets need not sit in
//! config.toml. Errors name the setting or the variable, never the value.

use std::path::PathBuf;

use async_nats::ConnectOptions;
use serde::Deserialize;

use crate::secret::Secret;

/// The credential keys of the configuration table, as written.
#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct CredentialKeys {
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub password_env: Option<String>,
    pub token: Option<Secret>,
    pub token_env: Option<String>,
    pub nkey_seed: Option<Secret>,
    pub nkey_seed_env: Option<String>,
    pub creds_file: Option<PathBuf>,
    pub creds_file_env: Option<String>,
}

/// A checked way to log in.
#[derive(Clone)]
pub enum Credentials {
    None,
    UserPassword { user: String, password: Secret },
    Token(Secret),
    NkeySeed(Secret),
    CredsFile(PathBuf),
}

impl Credentials {
    /// At most one method; each value from the key or the variable its
    /// `_env` key names (looked up with `env`), not both.
    pub fn check(
        keys: CredentialKeys,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<Credentials, String> {
        let password = secret("password", keys.password, keys.password_env, env)?;
        let token = secret("token", keys.token, keys.token_env, env)?;
        let seed = secret("nkey_seed", keys.nkey_seed, keys.nkey_seed_env, env)?;
        let creds_file = match (keys.creds_file, keys.creds_file_env) {
            (Some(_), Some(_)) => {
                return Err("set either `creds_file` or `creds_file_env`, not both".to_owned());
            }
            (Some(path), None) => Some(path),
            (None, Some(var)) => Some(PathBuf::from(from_env("creds_file_env", &var, env)?)),
            (None, None) => None,
        };
        let methods = [
            keys.user.is_some() || password.is_some(),
            token.is_some(),
            seed.is_some(),
            creds_file.is_some(),
        ];
        if methods.iter().filter(|m| **m).count() > 1 {
            return Err(
                "set one way to log in: `user` and `password`, `token`, `nkey_seed` or `creds_file` (or their `_env` forms)"
                    .to_owned(),
            );
        }
        if let Some(seed) = seed {
            // Checked now, so that a wrong seed is a clear error at start
            // rather than a failed handshake at every attempt.
            nkeys::KeyPair::from_seed(seed.expose()).map_err(|_| {
                "`nkey_seed` is not a valid NATS nkey seed (a user seed starts with `SU`)"
                    .to_owned()
            })?;
            return Ok(Credentials::NkeySeed(seed));
        }
        Ok(match (keys.user, password, token, creds_file) {
            (Some(user), Some(password), _, _) => Credentials::UserPassword { user, password },
            (Some(_), None, _, _) => {
                return Err("`user` needs `password` (or `password_env`)".into());
            }
            (None, Some(_), _, _) => return Err("`password` needs `user`".into()),
            (None, None, Some(token), _) => Credentials::Token(token),
            (None, None, None, Some(path)) => Credentials::CredsFile(path),
            (None, None, None, None) => Credentials::None,
        })
    }

    /// How they are shown: the method and user, never a secret.
    pub fn describe(&self) -> String {
        match self {
            Credentials::None => "no credentials".to_owned(),
            Credentials::UserPassword { user, .. } => format!("user `{user}`"),
            Credentials::Token(_) => "a token".to_owned(),
            Credentials::NkeySeed(_) => "an nkey".to_owned(),
            Credentials::CredsFile(path) => format!("the creds file {}", path.display()),
        }
    }

    /// Connection options that log in this way.
    pub async fn options(&self) -> Result<ConnectOptions, String> {
        let options = ConnectOptions::new();
        Ok(match self {
            Credentials::None => options,
            Credentials::UserPassword { user, password } => {
                options.user_and_password(user.clone(), password.expose().to_owned())
            }
            Credentials::Token(token) => options.token(token.expose().to_owned()),
            Credentials::NkeySeed(seed) => options.nkey(seed.expose().to_owned()),
            Credentials::CredsFile(path) => {
                // Read at each connection, so that a renewed file is used.
                // The client's error names the file, not its contents.
                options
                    .credentials_file(path)
                    .await
                    .map_err(|e| format!("cannot use the creds file: {e}"))?
            }
        })
    }
}

/// A secret from `key` or from the variable `key_env` names.
fn secret(
    key: &str,
    value: Option<Secret>,
    var: Option<String>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Option<Secret>, String> {
    match (value, var) {
        (Some(_), Some(_)) => Err(format!("set either `{key}` or `{key}_env`, not both")),
        (Some(value), None) if value.is_empty() => Err(format!("`{key}` is empty")),
        (Some(value), None) => Ok(Some(value)),
        (None, Some(var)) => Ok(Some(Secret::new(from_env(
            &format!("{key}_env"),
            &var,
            env,
        )?))),
        (None, None) => Ok(None),
    }
}

fn from_env(key: &str, var: &str, env: &impl Fn(&str) -> Option<String>) -> Result<String, String> {
    env(var)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("`{key}` names the environment variable {var}, which is not set"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(table: serde_json::Value, env: &[(&str, &str)]) -> Result<Credentials, String> {
        let keys: CredentialKeys = serde_json::from_value(table).map_err(|e| e.to_string())?;
        let env = |name: &str| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        };
        Credentials::check(keys, &env)
    }

    #[test]
    fn each_method_from_the_table_or_the_environment() {
        let seed = nkeys::KeyPair::new_user().seed().unwrap();
        let env = [("PW", "hunter2"), ("SEED", seed.as_str())];
        let cases = [
            (serde_json::json!({}), "no credentials"),
            (
                serde_json::json!({"user": "bob", "password": "hunter2"}),
                "user `bob`",
            ),
            (
                serde_json::json!({"user": "bob", "password_env": "PW"}),
                "user `bob`",
            ),
            (serde_json::json!({"token_env": "PW"}), "a token"),
            (serde_json::json!({"nkey_seed_env": "SEED"}), "an nkey"),
            (
                serde_json::json!({"creds_file": "/etc/nats/user.creds"}),
                "the creds file /etc/nats/user.creds",
            ),
        ];
        for (table, shown) in cases {
            let credentials = check(table.clone(), &env).unwrap();
            assert_eq!(credentials.describe(), shown, "{table}");
        }
        let Credentials::UserPassword { password, .. } =
            check(serde_json::json!({"user": "u", "password_env": "PW"}), &env).unwrap()
        else {
            panic!("user and password");
        };
        assert_eq!(password.expose(), "hunter2");
    }

    #[test]
    fn mistakes_are_named_without_the_secret() {
        let env = [("EMPTY", "")];
        let cases = [
            (serde_json::json!({"user": "u"}), "`user` needs `password`"),
            (
                serde_json::json!({"password": "hunter2"}),
                "`password` needs `user`",
            ),
            (
                serde_json::json!({"token": "hunter2", "token_env": "T"}),
                "not both",
            ),
            (
                serde_json::json!({"token": "hunter2", "user": "u", "password": "hunter2"}),
                "one way to log in",
            ),
            (
                serde_json::json!({"password_env": "MISSING", "user": "u"}),
                "MISSING, which is not set",
            ),
            (
                serde_json::json!({"token_env": "EMPTY"}),
                "EMPTY, which is not set",
            ),
            (serde_json::json!({"token": ""}), "`token` is empty"),
            (
                serde_json::json!({"nkey_seed": "hunter2"}),
                "not a valid NATS nkey seed",
            ),
            (
                serde_json::json!({"passwd": "hunter2"}),
                "unknown field `passwd`",
            ),
        ];
        for (table, expected) in cases {
            let err = check(table.clone(), &env).err().unwrap();
            assert!(err.contains(expected), "{table}: {err}");
            assert!(!err.contains("hunter2"), "{table}: {err}");
        }
    }
}
