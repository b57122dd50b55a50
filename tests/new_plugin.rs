//! `eventhost new-plugin`, as a newcomer uses it: the real binary writes a
//! plugin crate outside the workspace, the two commands it prints build the
//! plugin with cargo and run it with `eventhost replay`, and the plugin
//! receives the events; the crate's own test passes; the guide in
//! docs/plugins.md shows the `src/lib.rs` it writes.

use std::path::Path;
use std::process::Command;

use support::{eventhost_bin, guide_plugin_source, repo_root};

/// The shared target directory of the plugins the tests build outside the
/// workspace (so abi_stable is compiled once for all of them).
fn external_target() -> std::path::PathBuf {
    repo_root().join("target").join("external-plugins")
}

fn new_plugin(args: &[&str]) -> std::process::Output {
    Command::new(eventhost_bin())
        .arg("new-plugin")
        .args(args)
        .env("CARGO_TARGET_DIR", external_target())
        .env_remove("EVENTHOST_CONFIG")
        // No configuration file is needed, even from a directory without one.
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run eventhost new-plugin")
}

/// Runs a command line `new-plugin` printed, in a shell, as a user would.
fn run_printed(line: &str, cwd: &Path) -> std::process::Output {
    Command::new("sh")
        .arg("-c")
        .arg(line)
        .current_dir(cwd)
        .env("CARGO_TARGET_DIR", external_target())
        // The dependencies are in cargo's cache: no network needed.
        .env("CARGO_NET_OFFLINE", "true")
        .env("RUST_LOG", "info")
        .output()
        .expect("run a printed command")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_scaffolded_plugin_builds_outside_the_workspace_and_receives_events() {
    let parent = tempfile::Builder::new()
        .prefix("eventhost-new-plugin-")
        .tempdir()
        .unwrap();
    assert!(!parent.path().starts_with(repo_root()));
    let made = new_plugin(&[
        "scaffolded",
        "--dir",
        parent.path().join("plugins").to_str().unwrap(),
    ]);
    let stdout = text(&made.stdout);
    assert_eq!(
        made.status.code(),
        Some(0),
        "{stdout}{}",
        text(&made.stderr)
    );
    let dir = parent
        .path()
        .join("plugins/scaffolded")
        .canonicalize()
        .unwrap();

    let lib_rs = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap();
    assert_eq!(
        lib_rs.replace("\"scaffolded\"", "\"hello\""),
        guide_plugin_source(),
        "docs/plugins.md shows another src/lib.rs than new-plugin writes"
    );

    // The two commands it printed, run as printed.
    let build = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("cargo build"))
        .unwrap_or_else(|| panic!("no build command in:\n{stdout}"));
    let run = stdout
        .lines()
        .find(|l| l.contains(" --config ") && l.contains(" replay "))
        .unwrap_or_else(|| panic!("no run command in:\n{stdout}"));
    let built = run_printed(build, parent.path());
    assert!(built.status.success(), "{build}:\n{}", text(&built.stderr));
    let replayed = run_printed(run, parent.path());
    let log = text(&replayed.stderr);
    assert_eq!(replayed.status.code(), Some(0), "{run}:\n{log}");
    let received: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("plugin=\"scaffolded\"") && l.contains(" at height "))
        .map(|l| l.split("eventhost::plugin: ").nth(1).unwrap_or(l))
        .collect();
    assert_eq!(
        received,
        [
            "BLOCK_VALID at height 1 with 1 transactions plugin=\"scaffolded\"",
            "BLOCK_VALID at height 2 with 2 transactions plugin=\"scaffolded\"",
            "BLOCK_INVALID at height 3 with 1 transactions plugin=\"scaffolded\"",
            "BLOCK_VALID at height 3 with 3 transactions plugin=\"scaffolded\"",
        ],
        "{log}"
    );

    // Its own test feeds it the same events in-process.
    let tested = run_printed("cargo test --quiet", &dir);
    assert!(
        tested.status.success(),
        "{}{}",
        text(&tested.stdout),
        text(&tested.stderr)
    );
    assert!(
        text(&tested.stdout).contains("1 passed"),
        "{}",
        text(&tested.stdout)
    );

    // Never overwrites.
    let again = new_plugin(&[
        "scaffolded",
        "--dir",
        parent.path().join("plugins").to_str().unwrap(),
    ]);
    assert_eq!(again.status.code(), Some(2));
    assert_eq!(
        text(&again.stderr),
        format!(
            "error: {} already exists; new-plugin never overwrites: choose another NAME or --dir\n",
            dir.display()
        )
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("src/lib.rs")).unwrap(),
        lib_rs
    );
}

#[test]
fn a_registry_plugin_api_and_bad_names() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().to_str().unwrap();
    let made = new_plugin(&["from_registry", "--dir", dir, "--api-version"]);
    assert_eq!(made.status.code(), Some(0), "{}", text(&made.stderr));
    let manifest = std::fs::read_to_string(parent.path().join("from_registry/Cargo.toml")).unwrap();
    let api = eventhost_plugin_api::API_VERSION;
    assert!(
        manifest.contains(&format!(
            "eventhost-plugin-api = \"~{}.{}\"",
            api.major, api.minor
        )),
        "{manifest}"
    );

    let bad = new_plugin(&["no good", "--dir", dir]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).starts_with("error: `no good` is not a usable plugin name"),
        "{}",
        text(&bad.stderr)
    );
    assert!(!parent.path().join("no good").exists());
}
