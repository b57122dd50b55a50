//! The subjects the plugin publishes on, and the NATS rules for subjects
//! and stream names: which characters they may hold, and whether a stream's
//! subject filter takes a subject.

use crate::Format;

/// The subjects of one configuration: `<prefix>.block.valid`,
/// `<prefix>.block.invalid`, `<prefix>.tx.<operation>`.
#[derive(Clone)]
pub struct Subjects {
    prefix: String,
    pub block_valid: String,
    pub block_invalid: String,
    format: Format,
}

/// Longest subject prefix: room for `.block.invalid` or `.tx.<operation>`
/// within the subject lengths NATS servers handle comfortably.
const MAX_PREFIX_LEN: usize = 200;

impl Subjects {
    pub fn new(prefix: &str, format: Format) -> Result<Subjects, String> {
        if prefix.len() > MAX_PREFIX_LEN {
            return Err(format!(
                "`subject_prefix` is {} bytes long; at most {MAX_PREFIX_LEN}",
                prefix.len()
            ));
        }
        let bad_token = prefix
            .split('.')
            .find(|t| t.is_empty() || !t.chars().all(subject_char));
        if let Some(token) = bad_token {
            return Err(format!(
                "`subject_prefix` `{prefix}` is not a NATS subject: the token `{token}` must be non-empty, without whitespace, `*` or `>`"
            ));
        }
        Ok(Subjects {
            block_valid: format!("{prefix}.block.valid"),
            block_invalid: format!("{prefix}.block.invalid"),
            prefix: prefix.to_owned(),
            format,
        })
    }

    /// A transaction message's subject; `operation` is a checked token
    /// (see `plugin_support::message::Kind::Transaction`).
    pub fn transaction(&self, operation: &str) -> String {
        format!("{}.tx.{operation}", self.prefix)
    }

    /// The prefix the subjects are under.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The filter a created stream gets: everything under the prefix.
    pub fn all(&self) -> String {
        format!("{}.>", self.prefix)
    }

    /// What a stream must take for every message of this format.
    pub fn published(&self) -> Vec<String> {
        match self.format {
            Format::Block => vec![self.block_valid.clone(), self.block_invalid.clone()],
            Format::Transaction => vec![self.transaction("*"), self.block_invalid.clone()],
        }
    }
}

/// A character NATS allows in a subject token, wildcards aside.
fn subject_char(c: char) -> bool {
    !c.is_whitespace() && c != '*' && c != '>' && c != '.'
}

/// NATS stream names: non-empty, no whitespace, `.`, `*`, `>`, or path
/// separators (the server names files after them).
pub fn check_stream_name(name: &str) -> Result<(), String> {
    check_name("stream", name)
}

/// The names of streams and consumers (the setting `key` holds `name`):
/// NATS's rules for both are the same.
pub fn check_name(key: &str, name: &str) -> Result<(), String> {
    let bad = |c: char| c.is_whitespace() || matches!(c, '.' | '*' | '>' | '/' | '\\');
    if name.is_empty() || name.len() > 255 || name.chars().any(bad) {
        return Err(format!(
            "`{key}` `{}` is not a NATS name: 1 to 255 characters, without whitespace, `.`, `*`, `>`, `/` or `\\`",
            name.escape_default()
        ));
    }
    Ok(())
}

/// Whether the subject filter `filter` (of a stream) takes every subject
/// `subject` matches: `*` takes one token, a final `>` one or more.
pub fn covers(filter: &str, subject: &str) -> bool {
    let mut filter = filter.split('.');
    let mut subject = subject.split('.');
    loop {
        match (filter.next(), subject.next()) {
            (Some(">"), Some(_)) => return filter.next().is_none(),
            (Some("*"), Some(s)) if s != ">" => {}
            (Some(f), Some(s)) if f == s && f != ">" => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subjects_of_each_format() {
        let s = Subjects::new("ledger.eu", Format::Block).unwrap();
        assert_eq!(
            s.published(),
            ["ledger.eu.block.valid", "ledger.eu.block.invalid"]
        );
        assert_eq!(s.all(), "ledger.eu.>");
        let s = Subjects::new("ledger.eu", Format::Transaction).unwrap();
        assert_eq!(s.published(), ["ledger.eu.tx.*", "ledger.eu.block.invalid"]);
        assert_eq!(s.transaction("create"), "ledger.eu.tx.create");
    }

    #[test]
    fn filters_cover_subjects_by_nats_rules() {
        let cases = [
            ("a.>", "a.block.valid", true),
            ("a.>", "a.tx.*", true),
            ("a.block.*", "a.block.valid", true),
            ("a.*.valid", "a.block.valid", true),
            ("a.block.valid", "a.block.valid", true),
            (">", "a.b", true),
            ("a.tx.create", "a.tx.*", false),
            ("a.block.*", "a.tx.*", false),
            ("a.>", "a", false),
            ("a.*", "a.b.c", false),
            ("b.>", "a.b", false),
            ("a.block", "a.block.valid", false),
            ("a.*", "a.>", false),
        ];
        for (filter, subject, expected) in cases {
            assert_eq!(covers(filter, subject), expected, "{filter} ⊇ {subject}");
        }
    }

    #[test]
    fn refuses_what_nats_refuses() {
        for prefix in ["", "a..b", "a.*", "a.>", "a b", ".a", "a."] {
            assert!(Subjects::new(prefix, Format::Block).is_err(), "{prefix:?}");
        }
        for name in ["", "a.b", "a*", "a>", "a/b", "a b"] {
            assert!(check_stream_name(name).is_err(), "{name:?}");
        }
        check_stream_name("EVENTHOST-eu_1").unwrap();
    }
}
