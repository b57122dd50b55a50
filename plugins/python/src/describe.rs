//! What `eventhost check-config` shows of a Python plugin: which module it
//! runs, what it subscribes to, and the interpreter it runs in, found the
//! way a run finds them but without embedding anything in the caller's
//! process: the configured interpreter is asked, in a process of its own.

use std::path::Path;

use eventhost_plugin_api::{ConfigProblem, EventTypes, PluginConfig};

use crate::config::Config;
use crate::embed;
use crate::event_types::{show, subscription};
use crate::interpreter::{self, PluginProbe};

/// `check-config`: checks a configuration as a run would (the interpreter,
/// its build against libpython's, the plugin, its `event_types`) and
/// describes it, e.g. "module events_plugin_example.plugin (entry point
/// console_print of bigchaindb.events, package events-plugin-example
/// 0.1.0), event_types 1 (BLOCK_VALID), python /venv/bin/python3 (3.11.7)".
impl PluginConfig for Config {
    fn check(&self) -> Result<String, ConfigProblem> {
        // Where the interpreter came from: the table's `python`, or the
        // environment (the problem is then the table's as a whole).
        let python_key = if self.python.is_some() { "python" } else { "" };
        let at_python = |e: &dyn std::fmt::Display| ConfigProblem::at(python_key, e);
        let python = interpreter::locate(self.python.as_deref()).map_err(|e| at_python(&e))?;
        let probe = interpreter::probe(&python, Some(&self.target)).map_err(|e| at_python(&e))?;
        embed::check_build(&probe).map_err(|e| at_python(&e))?;
        let at_target = |e: &str| ConfigProblem::at(self.target.key(), e);
        match &probe.plugin {
            Some(PluginProbe::Found {
                origin,
                event_types,
            }) => {
                let types = subscription(*event_types, origin).map_err(|e| at_target(&e))?;
                Ok(summary(
                    origin,
                    types,
                    &probe.executable,
                    &probe.version_text(),
                ))
            }
            Some(PluginProbe::Error { error }) => Err(at_target(error)),
            None => Err(at_python(&format!(
                "{} said nothing of the plugin",
                probe.executable.display()
            ))),
        }
    }
}

/// The one-line description of a plugin, at check-config and at start.
pub fn summary(origin: &str, types: EventTypes, python: &Path, version: &str) -> String {
    format!(
        "{origin}, event_types {}, python {} ({version})",
        show(types),
        python.display()
    )
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use eventhost_plugin_api::config::check;

    use super::*;

    /// What the host's `check-config` gets for this table.
    fn describe(json: &str) -> Result<String, String> {
        check::<Config>(json).map_err(|e| e.to_string())
    }

    // These run python3 on PATH, which must be the Python version this
    // library was built for (as the build's own python3 is).

    #[test]
    fn a_module_with_run_is_described_with_the_interpreter_it_runs_in() {
        // subprocess has a run() and no event_types: a plugin of every event.
        let text = describe(r#"{"module": "subprocess"}"#).unwrap();
        let version = embed::libpython_version();
        assert!(
            text.starts_with(
                "module subprocess, event_types 3 (BLOCK_VALID | BLOCK_INVALID), python /"
            ) && text.ends_with(&format!(" ({version})")),
            "{text}"
        );
    }

    #[test]
    fn what_a_start_would_refuse_is_one_line() {
        assert_eq!(
            describe(r#"{"module": "json"}"#).unwrap_err(),
            "`module`: module json has no run(queue) function"
        );
        let missing = describe(r#"{"entry_point": "no_such_plugin"}"#).unwrap_err();
        assert!(
            missing.starts_with("`entry_point`: no entry point named 'no_such_plugin' in bigchaindb.events or planetmint.events of the environment of /"),
            "{missing}"
        );
        assert_eq!(
            describe(r#"{"module": "x", "entry_point": "y"}"#).unwrap_err(),
            "both `entry_point` and `module` are set: set one of them"
        );
    }

    /// `describe()` of a configuration whose interpreter is a script that
    /// says `answer` about itself.
    fn describe_with_interpreter(answer: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("python3");
        std::fs::write(&fake, format!("#!/bin/sh\necho '{answer}'\n")).unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        describe(&format!(
            r#"{{"module": "m", "python": {:?}}}"#,
            fake.display().to_string()
        ))
        .unwrap_err()
    }

    #[test]
    fn another_python_version_is_refused_before_the_plugin_is_looked_at() {
        let e = describe_with_interpreter(
            r#"{"executable": "/opt/py/bin/python3", "version": [3, 99, 1], "libpython": null}"#,
        );
        let libpython = embed::libpython_version();
        let minor: Vec<&str> = libpython.split('.').take(2).collect();
        assert_eq!(
            e,
            format!(
                "`python`: python /opt/py/bin/python3 is Python 3.99.1, but this build of the python plugin embeds libpython {libpython} (built with {}): set `python` to a Python {} environment, or rebuild the plugin for Python 3.99 (PYO3_PYTHON=/opt/py/bin/python3 cargo build --release -p eventhost-python)",
                env!("EVENTHOST_PYTHON_BUILT_WITH"),
                minor.join(".")
            )
        );
    }

    #[test]
    fn another_build_of_the_same_version_is_refused() {
        let version = embed::libpython_version();
        let v: Vec<&str> = version.split('.').collect();
        let e = describe_with_interpreter(&format!(
            r#"{{"executable": "/usr/bin/python3", "version": [{}, {}, 0], "libpython": "/usr/lib/libpython-elsewhere.so"}}"#,
            v[0], v[1]
        ));
        assert!(
            e.starts_with(&format!(
                "`python`: python /usr/bin/python3 (Python {}.{}.0) is another build of Python than the libpython this plugin embeds ({}, built with {}); its libpython is /usr/lib/libpython-elsewhere.so: their standard libraries and extension modules do not mix; make the environment with",
                v[0],
                v[1],
                embed::libpython_file().unwrap().display(),
                env!("EVENTHOST_PYTHON_BUILT_WITH")
            )),
            "{e}"
        );
    }
}
