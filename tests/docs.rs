//! The documentation cannot rot silently: every TOML block in README.md and
//! docs/*.md parses with the host's real configuration parser (Cargo
//! manifests as TOML) and the bundled plugins accept their tables in it,
//! every shell block is valid shell naming only real
//! `eventhost` subcommands, every relative link and anchor resolves, and
//! every page in docs/ is linked from the README. (tests/quickstart.sh runs
//! the README's quick start itself.)

use std::path::{Path, PathBuf};
use std::process::Command;

use eventhost::config::Config;
use support::{Sandbox, eventhost_bin, repo_root};

/// A fenced code block of a Markdown file.
struct Block {
    file: PathBuf,
    line: usize,
    lang: String,
    text: String,
}

fn pages() -> Vec<PathBuf> {
    let mut pages = vec![repo_root().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo_root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

fn blocks(file: &Path) -> Vec<Block> {
    let text = std::fs::read_to_string(file).unwrap();
    let mut out = Vec::new();
    let mut open: Option<(usize, String, String, Vec<String>)> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        match &mut open {
            None => {
                if let Some(lang) = trimmed.strip_prefix("```") {
                    open = Some((
                        i + 1,
                        lang.trim().to_owned(),
                        " ".repeat(indent),
                        Vec::new(),
                    ));
                }
            }
            Some((start, lang, prefix, lines)) => {
                if trimmed == "```" {
                    out.push(Block {
                        file: file.to_owned(),
                        line: *start,
                        lang: std::mem::take(lang),
                        text: lines.join("\n") + "\n",
                    });
                    open = None;
                } else {
                    lines.push(
                        line.strip_prefix(prefix.as_str())
                            .unwrap_or(line)
                            .to_owned(),
                    );
                }
            }
        }
    }
    assert!(
        open.is_none(),
        "{}: a code block is not closed",
        file.display()
    );
    out
}

fn all_blocks(lang: &str) -> Vec<Block> {
    pages()
        .iter()
        .flat_map(|p| blocks(p))
        .filter(|b| b.lang == lang)
        .collect()
}

fn place(b: &Block) -> String {
    let file = b.file.strip_prefix(repo_root()).unwrap_or(&b.file);
    format!("{}:{}", file.display(), b.line)
}

/// The bundled plugin a page's bare `[plugins.config]` table is for.
fn plugin_of_page(b: &Block) -> &'static str {
    match b.file.file_name().and_then(|n| n.to_str()) {
        Some("streams.md" | "stream-queries.md") => "websocket",
        Some("amqp.md") => "amqp",
        _ => panic!(
            "{}: a bare [plugins.config] on a page of no plugin",
            place(b)
        ),
    }
}

#[test]
fn every_toml_block_parses_with_the_real_parsers() {
    let blocks = all_blocks("toml");
    assert!(blocks.len() >= 5, "found only {} TOML blocks", blocks.len());
    let mut plugin_tables = 0;
    for b in &blocks {
        let is_manifest = b.text.contains("[lib]") || b.text.contains("[dependencies]");
        if is_manifest {
            toml::from_str::<toml::Table>(&b.text)
                .unwrap_or_else(|e| panic!("{}: not TOML: {e}", place(b)));
            continue;
        }
        // A plugin's own table alone is shown under an entry of its own.
        let text = if b.text.trim_start().starts_with("[plugins.config]") {
            format!("[[plugins]]\nname = \"{}\"\n{}", plugin_of_page(b), b.text)
        } else {
            b.text.clone()
        };
        let config = Config::parse(&text, Path::new("/etc/eventhost/config.toml"))
            .unwrap_or_else(|e| panic!("{}: {e}", place(b)));
        // The host hands each plugin its table; the bundled plugins parse
        // theirs when they start. Run them on it, listening on loopback.
        let bundled: Vec<&str> = config
            .plugins
            .iter()
            .filter(|p| {
                p.path.is_none()
                    && ["printer", "websocket", "amqp", "nats"].contains(&p.library.as_str())
            })
            .map(|p| p.name.as_str())
            .collect();
        if bundled.is_empty() {
            continue;
        }
        let entries = &text[text.find("[[plugins]]").unwrap()..];
        let entries = entries
            .lines()
            .map(|l| {
                if l.starts_with("bind = ") {
                    "bind = \"127.0.0.1:0\""
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let s = Sandbox::new();
        s.config(&entries);
        let events = s.write("none.jsonl", "");
        let run = s.run(&["replay", events.to_str().unwrap()]);
        assert!(
            !run.stderr.contains("invalid config for plugin"),
            "{}: a bundled plugin refuses its table:\n{}",
            place(b),
            run.stderr
        );
        for name in bundled {
            assert!(
                run.stderr
                    .lines()
                    .any(|l| l.contains("plugin loaded") && l.contains(&format!("plugin={name} "))),
                "{}: {name} did not run:\n{}",
                place(b),
                run.stderr
            );
            plugin_tables += 1;
        }
    }
    assert!(plugin_tables >= 3, "only {plugin_tables} plugin tables run");
}

/// The repository's own config.toml, too.
#[test]
fn the_shipped_config_toml_parses() {
    Config::load(&repo_root().join("config.toml")).unwrap();
}

#[test]
fn every_shell_block_is_valid_shell_naming_real_subcommands() {
    let blocks = all_blocks("sh");
    assert!(
        blocks.len() >= 8,
        "found only {} shell blocks",
        blocks.len()
    );
    let mut subcommands = std::collections::BTreeSet::new();
    for b in &blocks {
        let check = Command::new("bash")
            .args(["-n", "-c", &b.text])
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "{}: {}",
            place(b),
            String::from_utf8_lossy(&check.stderr)
        );
        for line in b.text.lines() {
            let line = line.split(" #").next().unwrap_or(line);
            for (i, _) in line.match_indices("eventhost ") {
                // Only the command itself, not a path or a word ending in it.
                let before = line[..i].chars().last();
                if before.is_some_and(|c| !(c == ' ' || c == '(' || c == '|' || c == ';')) {
                    continue;
                }
                let word = line[i + "eventhost ".len()..]
                    .split_whitespace()
                    .next()
                    .unwrap_or("");
                let is_word = word.starts_with(|c: char| c.is_ascii_lowercase())
                    && word.chars().all(|c| c.is_ascii_lowercase() || c == '-');
                if is_word {
                    subcommands.insert((word.to_owned(), place(b)));
                }
            }
        }
    }
    assert!(
        subcommands.iter().any(|(s, _)| s == "run"),
        "{subcommands:?}"
    );
    for (subcommand, at) in subcommands {
        let help = Command::new(eventhost_bin())
            .args([subcommand.as_str(), "--help"])
            .output()
            .unwrap();
        assert!(
            help.status.success(),
            "{at}: `eventhost {subcommand}` is not a command: {}",
            String::from_utf8_lossy(&help.stderr)
        );
    }
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces
/// as hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap();
    let mut in_code = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            out.push(anchor(line.trim_start_matches('#')));
        }
    }
    out
}

#[test]
fn every_link_resolves_and_every_page_is_linked_from_the_readme() {
    let mut checked = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        for (i, _) in text.match_indices("](") {
            let target = &text[i + 2..];
            let target = &target[..target.find(')').unwrap()];
            if target.starts_with("http://") || target.starts_with("https://") {
                continue;
            }
            let (path, fragment) = target.split_once('#').unwrap_or((target, ""));
            let file = if path.is_empty() {
                page.clone()
            } else {
                page.parent().unwrap().join(path)
            };
            assert!(
                file.exists(),
                "{}: link to {target}: no such file",
                page.display()
            );
            if !fragment.is_empty() {
                assert!(
                    anchors(&file).iter().any(|a| a == fragment),
                    "{}: link to {target}: no such heading in {}",
                    page.display(),
                    file.display()
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} links");
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    for page in pages().iter().skip(1) {
        let name = page.file_name().unwrap().to_str().unwrap();
        assert!(
            readme.contains(&format!("](docs/{name})")),
            "README.md does not link docs/{name}"
        );
    }
}
