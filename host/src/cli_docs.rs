//! What the command line says about itself, generated from its clap
//! definition so that it cannot drift from it: the version line, shell
//! completions and man pages.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::Command;
use clap_complete::Shell;
use eventhost_plugin_api::API_VERSION;

/// `eventhost --version`: the host's version and the plugin-api versions of
/// the plugins it loads, which is what a plugin author needs to know.
pub fn version() -> String {
    format!(
        "{} (plugin-api {API_VERSION}: loads plugins built against plugin-api {})",
        env!("CARGO_PKG_VERSION"),
        API_VERSION.accepted_range()
    )
}

/// Writes the completion script for `shell` to `out`.
pub fn completions(command: &mut Command, shell: Shell, out: &mut dyn Write) {
    let name = command.get_name().to_owned();
    clap_complete::generate(shell, command, name, out);
}

/// Why man pages could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ManError {
    #[error("cannot write the man page: {0}")]
    Stdout(#[source] io::Error),
    #[error("cannot write man pages into {dir}: {source}")]
    Dir {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The man page of the command (section 1) to `out`, or with `dir`, one page
/// per command and subcommand into that directory (made if missing).
pub fn man(command: Command, dir: Option<&Path>, out: &mut dyn Write) -> Result<(), ManError> {
    match dir {
        None => clap_mangen::Man::new(command)
            .render(out)
            .map_err(ManError::Stdout),
        Some(dir) => std::fs::create_dir_all(dir)
            .and_then(|()| clap_mangen::generate_to(command, dir))
            .map_err(|source| ManError::Dir {
                dir: dir.to_owned(),
                source,
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_names_the_accepted_plugin_api_range() {
        let v = version();
        assert!(v.starts_with(env!("CARGO_PKG_VERSION")), "{v}");
        assert!(
            v.contains(&format!("plugin-api {API_VERSION}:"))
                && v.contains(&format!(
                    "built against plugin-api {}.0 through {}.{}",
                    API_VERSION.major, API_VERSION.major, API_VERSION.minor
                )),
            "{v}"
        );
    }
}
