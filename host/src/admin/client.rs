//! `eventhost admin ...`: the admin API from the command line, at the
//! address and with the token of the node's own config.toml.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::config::AdminConfig;

/// What the command asks the node.
pub enum Request<'a> {
    List,
    /// Load the entry of config.toml of this name.
    Load(&'a str),
    /// Load this entry, given whole (see [`entry_file`]).
    LoadEntry(Value),
    /// An action on a plugin, with a whole entry for `reload`.
    Act {
        name: &'a str,
        action: &'a str,
        entry: Option<Value>,
    },
    DeadLetters(&'a str),
    ReloadConfig,
}

/// The one `[[plugins]]` entry of a TOML file (written as in config.toml,
/// `[[plugins]]` header and all, or as that entry's keys alone), as the
/// admin API takes it: `{"entry": {...}}`.
pub fn entry_file(path: &Path) -> Result<Value, String> {
    let file = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{file}: cannot read it: {e}"))?;
    let mut table: toml::Table = toml::from_str(&text).map_err(|e| format!("{file}: {e}"))?;
    let entry = match table.remove("plugins") {
        Some(toml::Value::Array(mut entries)) if entries.len() == 1 && table.is_empty() => {
            entries.remove(0)
        }
        Some(_) => {
            return Err(format!(
                "{file}: holds more than one plugin entry; give it one [[plugins]] entry"
            ));
        }
        None => toml::Value::Table(table),
    };
    let entry = serde_json::to_value(entry).map_err(|e| format!("{file}: {e}"))?;
    Ok(serde_json::json!({ "entry": entry }))
}

/// Sends the request to the node whose configuration file `source` has
/// this `[admin]` table; the answer's JSON, or an error that says what to do.
pub fn send(source: &Path, admin: &AdminConfig, request: Request<'_>) -> Result<Value, String> {
    let bind = &admin.bind;
    if bind == "off" {
        return Err(format!(
            "{} sets [admin] bind = \"off\": this node has no admin API",
            source.display()
        ));
    }
    if bind.rsplit_once(':').is_some_and(|(_, port)| port == "0") {
        return Err(format!(
            "{} sets [admin] bind = \"{bind}\": port 0 is a different free port at each start, so this command cannot find the node; set a fixed port",
            source.display()
        ));
    }
    let base = format!("http://{bind}");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        // Unloading waits for the plugin to drain; reloading for it to start.
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into();
    let (method, path, body) = match request {
        Request::List => ("GET", "/admin/v1/plugins".to_owned(), None),
        Request::Load(name) => (
            "POST",
            "/admin/v1/plugins".to_owned(),
            Some(serde_json::json!({"name": name}).to_string()),
        ),
        Request::LoadEntry(entry) => (
            "POST",
            "/admin/v1/plugins".to_owned(),
            Some(entry.to_string()),
        ),
        Request::Act {
            name,
            action,
            entry,
        } => (
            "POST",
            format!("/admin/v1/plugins/{name}/{action}"),
            Some(entry.map_or_else(String::new, |e| e.to_string())),
        ),
        Request::DeadLetters(name) => (
            "GET",
            format!("/admin/v1/plugins/{name}/dead-letters"),
            None,
        ),
        Request::ReloadConfig => (
            "POST",
            "/admin/v1/config/reload".to_owned(),
            Some(String::new()),
        ),
    };
    let url = format!("{base}{path}");
    let token = admin.tokens.first().map(|t| format!("Bearer {}", t.0));
    let response = match body {
        None => {
            let mut req = agent.get(&url);
            if let Some(token) = &token {
                req = req.header("authorization", token);
            }
            req.call()
        }
        Some(body) => {
            let mut req = agent.post(&url).header("content-type", "application/json");
            if let Some(token) = &token {
                req = req.header("authorization", token);
            }
            req.send(body)
        }
    };
    let mut response = response.map_err(|e| {
        format!(
            "cannot reach the admin API at {base} ({e}): is the node running with {}? ([admin] bind)",
            source.display()
        )
    })?;
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("{method} {url}: unreadable answer: {e}"))?;
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if status >= 400 {
        let message = value["message"]
            .as_str()
            .map_or_else(|| value.to_string(), str::to_owned);
        return Err(format!("{method} {path}: {status}: {message}"));
    }
    Ok(value)
}
