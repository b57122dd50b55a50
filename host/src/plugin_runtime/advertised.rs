//! The URLs plugins advertise to the host's clients (the HTTP API's root
//! lists the stream URLs a stream plugin offers).

use std::collections::BTreeMap;
use std::sync::Mutex;

/// The URLs plugins advertise, by name (`rel`).
#[derive(Default)]
pub struct Advertised {
    links: Mutex<BTreeMap<String, AdvertisedLink>>,
}

/// One advertised URL and the plugin that offers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvertisedLink {
    pub plugin: String,
    pub url: String,
}

impl Advertised {
    /// The URL advertised under `rel`, if a plugin did.
    pub fn get(&self, rel: &str) -> Option<AdvertisedLink> {
        self.links
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(rel)
            .cloned()
    }

    pub(super) fn set(&self, rel: &str, link: AdvertisedLink) {
        let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = links.get(rel).filter(|old| old.plugin != link.plugin) {
            tracing::warn!(
                plugin = %link.plugin,
                "plugin advertises `{rel}`, replacing the URL plugin `{}` advertised",
                old.plugin
            );
        }
        links.insert(rel.to_owned(), link);
    }

    /// Forgets what a plugin advertised, once it no longer runs.
    pub(super) fn remove_plugin(&self, plugin: &str) {
        let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        links.retain(|_, link| link.plugin != plugin);
    }
}
