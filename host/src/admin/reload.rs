//! Loading plugins named at run time, and applying a changed config.toml
//! (`eventhost admin reload-config`, SIGHUP): what was added is loaded, what
//! was removed is unloaded, what changed is reloaded. Every new or changed
//! entry is loaded and checked before anything is applied, so a file with
//! an error is refused as a whole and the running set stays as it was.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{Admin, AdminError};
use crate::config::{Config, PluginEntry};
use crate::plugin_runtime::{self, LifecycleError, LoadedPlugin};

/// Loads `entry`'s library from a private copy and runs the plugin's check
/// of its table.
pub(super) fn load_checked(
    config: &Config,
    entry: &PluginEntry,
) -> Result<LoadedPlugin, LifecycleError> {
    let copies = plugin_runtime::copies_dir(&config.host.data_dir);
    let plugin = plugin_runtime::load_copy(entry, &config.host.plugin_dirs, &copies)?;
    Ok(plugin_runtime::check_config(config, plugin)?)
}

/// config.toml as it is now on disk.
pub(super) fn read_config(current: &Config) -> Result<Config, AdminError> {
    Config::load(&current.source)
        .map_err(|e| AdminError(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))
}

/// The entry a request names: one of config.toml's by `name`, or one given
/// whole as JSON (the keys of a `[[plugins]]` entry; relative paths are
/// relative to config.toml's directory).
pub(super) fn entry_of(
    config: &Config,
    name: Option<&str>,
    entry: Option<Value>,
) -> Result<PluginEntry, AdminError> {
    match (name, entry) {
        (Some(name), None) => config
            .plugins
            .iter()
            .find(|p| p.name == name)
            .cloned()
            .ok_or_else(|| {
                AdminError(
                    StatusCode::NOT_FOUND,
                    format!(
                        "{} has no plugin `{name}`; give the entry whole as {{\"entry\": {{...}}}}",
                        config.source.display()
                    ),
                )
            }),
        (None, Some(entry)) => {
            let bad = |why: String| AdminError(StatusCode::BAD_REQUEST, format!("entry: {why}"));
            let table: toml::Table =
                serde_json::from_value(entry).map_err(|e| bad(e.to_string()))?;
            let document = toml::Table::from_iter([(
                "plugins".to_owned(),
                toml::Value::Array(vec![toml::Value::Table(table)]),
            )]);
            let text = toml::to_string(&document).map_err(|e| bad(e.to_string()))?;
            let mut parsed = Config::parse(&text, &config.source).map_err(|e| bad(e.message))?;
            let mut entry = parsed.plugins.pop().ok_or_else(|| bad("no entry".into()))?;
            // Not an entry of config.toml: its problems have no line there.
            entry.index = None;
            Ok(entry)
        }
        _ => Err(AdminError(
            StatusCode::BAD_REQUEST,
            "name the plugin: {\"name\": \"<entry in config.toml>\"} or {\"entry\": {...}}".into(),
        )),
    }
}

/// What a configuration reload did.
#[derive(Default, Debug)]
pub struct ConfigChanges {
    pub loaded: Vec<String>,
    pub unloaded: Vec<String>,
    pub reloaded: Vec<String>,
    pub unchanged: Vec<String>,
    /// Changes that could not be applied, each with why.
    pub failed: Vec<String>,
    /// Tables whose changes take effect only at the next start.
    pub restart_needed: Vec<&'static str>,
}

impl ConfigChanges {
    pub fn to_json(&self) -> Value {
        json!({
            "loaded": self.loaded,
            "unloaded": self.unloaded,
            "reloaded": self.reloaded,
            "unchanged": self.unchanged,
            "failed": self.failed,
            "restart_needed": self.restart_needed,
        })
    }
}

/// The entry a reload by name runs again: the running one, as config.toml
/// has it when it is still the same there (so that a problem the new
/// library finds in its table is located in the file).
pub(super) fn running_entry(config: &Config, running: &PluginEntry) -> PluginEntry {
    config
        .plugins
        .iter()
        .find(|p| same(p, running))
        .cloned()
        .unwrap_or_else(|| PluginEntry {
            index: None,
            ..running.clone()
        })
}

/// Two entries configure the same plugin instance the same way (their
/// place in the file aside).
fn same(a: &PluginEntry, b: &PluginEntry) -> bool {
    a == &PluginEntry {
        index: a.index,
        ..b.clone()
    }
}

/// Re-reads config.toml and applies what changed to the plugins. Returns
/// the error, one line, when the file cannot be used: nothing changed
/// then. Either way the outcome is logged.
pub fn reload_config(admin: &Admin) -> Result<ConfigChanges, String> {
    let reloaded = apply_config(admin);
    if let Err(e) = &reloaded {
        tracing::error!("configuration not reloaded, the plugins run on as they were: {e}");
    }
    reloaded
}

fn apply_config(admin: &Admin) -> Result<ConfigChanges, String> {
    let current = admin.config();
    let new = Config::load(&current.source).map_err(|e| e.to_string())?;
    let runtime = &admin.runtime;
    let running = runtime.plugins().list();
    let mut changes = ConfigChanges::default();

    // Everything new or changed must load and pass its checks first.
    let mut to_load = Vec::new();
    let mut to_reload = Vec::new();
    for entry in &new.plugins {
        let old = running.iter().find(|r| r.name() == entry.name);
        match old {
            Some(old) if same(&old.plugin.entry, entry) => {
                changes.unchanged.push(entry.name.clone())
            }
            Some(_) => to_reload.push(load_checked(&new, entry).map_err(|e| e.to_string())?),
            None => to_load.push(load_checked(&new, entry).map_err(|e| e.to_string())?),
        }
    }
    for record in &running {
        if !new.plugins.iter().any(|p| p.name == record.name()) {
            match runtime.unload(record.name()) {
                Ok(_) => changes.unloaded.push(record.name().to_owned()),
                Err(e) => changes.failed.push(e.to_string()),
            }
        }
    }
    for plugin in to_reload {
        let name = plugin.entry.name.clone();
        match runtime.reload(plugin) {
            Ok(_) => changes.reloaded.push(name),
            Err(e) => changes.failed.push(e.to_string()),
        }
    }
    for plugin in to_load {
        let name = plugin.entry.name.clone();
        match runtime.load(plugin) {
            Ok(_) => changes.loaded.push(name),
            Err(e) => changes.failed.push(e.to_string()),
        }
    }
    for (table, changed) in [
        (
            "[host]",
            format!("{:?}", current.host) != format!("{:?}", new.host),
        ),
        (
            "[api]",
            format!("{:?}", current.api) != format!("{:?}", new.api),
        ),
        (
            "[ledger]",
            format!("{:?}", current.ledger) != format!("{:?}", new.ledger),
        ),
        (
            "[source]",
            format!("{:?}", current.upstream) != format!("{:?}", new.upstream),
        ),
        ("[admin]", current.admin != new.admin),
    ] {
        if changed {
            changes.restart_needed.push(table);
        }
    }
    tracing::info!(
        "configuration reloaded from {}: {}",
        new.source.display(),
        changes.to_json()
    );
    if !changes.restart_needed.is_empty() {
        tracing::warn!(
            "changes to {} take effect at the next start",
            changes.restart_needed.join(", ")
        );
    }
    *admin.config.lock().unwrap_or_else(|e| e.into_inner()) = new;
    Ok(changes)
}
