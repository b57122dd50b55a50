//! Credentials as the plugin holds them: a string that has no `Debug` or
//! `Display` form, so that no log line, error or panic message can print
//! it by accident; only handing it to the client reads it.

use serde::Deserialize;

#[derive(Deserialize, Clone)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    /// The secret itself, to hand to the client, and nowhere else.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
