//! Why a query was refused: a byte position in its text and what was
//! expected there.

use std::fmt;

/// A query that cannot be used, and where it goes wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// Byte offset into the query text (0 is its first byte).
    pub position: usize,
    /// What is wrong there, e.g. ``expected a value, found AND``.
    pub message: String,
}

impl Error {
    pub(crate) fn at(position: usize, message: String) -> Error {
        Error { position, message }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at byte {}: {}", self.position, self.message)
    }
}

impl std::error::Error for Error {}

/// A client's text, cut short enough to quote in an error message, with
/// control characters escaped so that the message stays one line.
pub fn shorten(text: &str) -> String {
    const MAX: usize = 80;
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == MAX {
            out.push('…');
            break;
        }
        if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_short_and_one_line() {
        assert_eq!(shorten("a\nb\u{2028}"), "a\\nb\\u{2028}");
        assert_eq!(shorten(&"é".repeat(100)), format!("{}…", "é".repeat(80)));
        assert_eq!(shorten("short"), "short");
    }
}
