//! Inputs the fuzz targets (host/fuzz, see docs/fuzzing.md) found failing,
//! kept as tests of the fixed behaviour so they stay fixed without the
//! fuzzer.

use std::path::Path;

use eventhost::config::Config;

fn config_error(text: &str) -> String {
    Config::parse(text, Path::new("/etc/eventhost/config.toml"))
        .unwrap_err()
        .to_string()
}

/// Found by the `config` target: a plugin name holding a carriage return,
/// configured twice, split the error message across two lines.
#[test]
fn config_errors_quoting_a_name_with_a_control_character_stay_on_one_line() {
    let found =
        "[[plugins]]\nname = \"pl\\ribraryrinter\"\n[[plugins]]\nname = \"pl\\ribraryrinter\"\n";
    assert_eq!(
        config_error(found),
        "configuration /etc/eventhost/config.toml: plugin `pl\\ribraryrinter` is configured twice \
         (plugins entries #1 and #2); give each entry a unique `name` (use `library` to load one \
         library twice)"
    );
    // The same through the other messages that quote the file: toml's own
    // (an unknown key) and event_types', with C1 and escape characters.
    assert_eq!(
        config_error("\"a\\nb\" = 1\n"),
        "configuration /etc/eventhost/config.toml:1:1: unknown field `a\\nb`, \
         expected one of `host`, `api`, `ledger`, `source`, `admin`, `plugins`"
    );
    assert_eq!(
        config_error("[[plugins]]\nname = \"a\\u0085\"\nevent_types = \"\\u001b[31mX\\u2028Y\"\n"),
        "configuration /etc/eventhost/config.toml: plugin `a\\u{85}`: event_types: \
         `\\u{1b}[31mX\\u{2028}Y` is not an event type (expected BLOCK_VALID, BLOCK_INVALID, 1, 2 or 3)"
    );
}
