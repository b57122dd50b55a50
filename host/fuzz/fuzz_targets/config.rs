//! Text → `Config::parse`: never panics, and every error it reports is one
//! non-empty line that names the file, as `check-config` and the logs show it.

#![no_main]

use std::path::Path;

use eventhost::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(error) = Config::parse(text, Path::new("/fuzz/config.toml")) {
        let shown = error.to_string();
        // `configuration FILE: message`, or `configuration FILE:LINE:COLUMN:
        // message` when the error has a place in the file.
        let (file, message) = shown
            .strip_prefix("configuration /fuzz/config.toml")
            .and_then(|rest| {
                rest.strip_prefix(": ").or_else(|| {
                    let (place, message) = rest.strip_prefix(':')?.split_once(": ")?;
                    let (line, column) = place.split_once(':')?;
                    (line.parse::<u32>().is_ok() && column.parse::<u32>().is_ok())
                        .then_some(message)
                })
            })
            .map(|message| ("/fuzz/config.toml", message))
            .unwrap_or(("", ""));
        assert!(!file.is_empty(), "does not name the file: {shown:?}");
        assert!(!message.trim().is_empty(), "empty message: {shown:?}");
        assert!(
            !shown.chars().any(eventhost_fuzz::breaks_line),
            "not one line: {shown:?}"
        );
    }
});
