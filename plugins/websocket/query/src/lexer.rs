//! The query's words: paths, literals, operators and keywords, each with
//! the byte position it starts at, for error messages.

use crate::error::Error;

/// One token and where it is in the query text.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub kind: Kind,
    /// Byte offset of its first character.
    pub at: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// A field or a path: `operation`, `metadata.kind`, `output.amount`.
    Path(String),
    Str(String),
    /// A number's text, checked to be a number.
    Num(String),
    True,
    False,
    Cmp(CmpOp),
    And,
    Or,
    Not,
    In,
    Exists,
    Open,
    Close,
    Comma,
    End,
}

/// A comparison operator.
#[derive(Debug, Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }

    /// Whether the operator orders its operands (rather than testing equality).
    pub fn orders(self) -> bool {
        !matches!(self, CmpOp::Eq | CmpOp::Ne)
    }
}

impl Kind {
    /// How an error message names the token.
    pub fn describe(&self) -> String {
        match self {
            Kind::Path(p) => format!("`{}`", crate::error::shorten(p)),
            Kind::Str(s) => format!("the string '{}'", crate::error::shorten(s)),
            Kind::Num(n) => format!("the number {}", crate::error::shorten(n)),
            Kind::True => "TRUE".into(),
            Kind::False => "FALSE".into(),
            Kind::Cmp(op) => format!("`{}`", op.as_str()),
            Kind::And => "AND".into(),
            Kind::Or => "OR".into(),
            Kind::Not => "NOT".into(),
            Kind::In => "IN".into(),
            Kind::Exists => "EXISTS".into(),
            Kind::Open => "`(`".into(),
            Kind::Close => "`)`".into(),
            Kind::Comma => "`,`".into(),
            Kind::End => "the end of the query".into(),
        }
    }
}

/// Splits `text` into tokens, ending with [`Kind::End`].
pub fn tokens(text: &str) -> Result<Vec<Token>, Error> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let at = i;
        let kind = match c {
            b' ' | b'\t' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'(' => {
                i += 1;
                Kind::Open
            }
            b')' => {
                i += 1;
                Kind::Close
            }
            b',' => {
                i += 1;
                Kind::Comma
            }
            b'=' => {
                i += 1;
                Kind::Cmp(CmpOp::Eq)
            }
            b'!' if bytes.get(i + 1) == Some(&b'=') => {
                i += 2;
                Kind::Cmp(CmpOp::Ne)
            }
            b'<' | b'>' => {
                let or_equal = bytes.get(i + 1) == Some(&b'=');
                i += 1 + usize::from(or_equal);
                Kind::Cmp(match (c, or_equal) {
                    (b'<', false) => CmpOp::Lt,
                    (b'<', true) => CmpOp::Le,
                    (_, false) => CmpOp::Gt,
                    (_, true) => CmpOp::Ge,
                })
            }
            b'\'' => {
                let (string, end) = string(text, at)?;
                i = end;
                Kind::Str(string)
            }
            b'-' | b'0'..=b'9' => {
                let end = number_end(bytes, at);
                let n = &text[at..end];
                if !valid_number(n) {
                    return Err(Error::at(
                        at,
                        format!("`{}` is not a number", crate::error::shorten(n)),
                    ));
                }
                i = end;
                Kind::Num(n.to_owned())
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let end = path_end(bytes, at);
                let word = &text[at..end];
                i = end;
                if word.ends_with('.') || word.contains("..") {
                    return Err(Error::at(
                        at,
                        format!(
                            "`{}` is not a path: a path is names joined by single dots",
                            crate::error::shorten(word)
                        ),
                    ));
                }
                keyword(word).unwrap_or_else(|| Kind::Path(word.to_owned()))
            }
            b'"' => {
                return Err(Error::at(
                    at,
                    "strings are written in single quotes: 'text'".to_owned(),
                ));
            }
            _ => {
                let found: String = text[at..].chars().take(1).collect();
                return Err(Error::at(
                    at,
                    format!("unexpected character `{}`", crate::error::shorten(&found)),
                ));
            }
        };
        out.push(Token { kind, at });
    }
    out.push(Token {
        kind: Kind::End,
        at: text.len(),
    });
    Ok(out)
}

fn keyword(word: &str) -> Option<Kind> {
    const KEYWORDS: [(&str, Kind); 7] = [
        ("AND", Kind::And),
        ("OR", Kind::Or),
        ("NOT", Kind::Not),
        ("IN", Kind::In),
        ("EXISTS", Kind::Exists),
        ("TRUE", Kind::True),
        ("FALSE", Kind::False),
    ];
    KEYWORDS
        .into_iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(word))
        .map(|(_, kind)| kind)
}

/// A single-quoted string starting at `at`: its value and the offset after
/// its closing quote. `\'` is a quote and `\\` a backslash inside it.
fn string(text: &str, at: usize) -> Result<(String, usize), Error> {
    let mut value = String::new();
    let mut chars = text[at + 1..].char_indices();
    while let Some((offset, c)) = chars.next() {
        match c {
            '\'' => return Ok((value, at + 1 + offset + 1)),
            '\\' => match chars.next() {
                Some((_, escaped @ ('\'' | '\\'))) => value.push(escaped),
                Some((offset, other)) => {
                    return Err(Error::at(
                        at + 1 + offset,
                        format!(
                            "`\\{}` is not an escape: only \\' and \\\\ are",
                            crate::error::shorten(&other.to_string())
                        ),
                    ));
                }
                None => break,
            },
            c => value.push(c),
        }
    }
    Err(Error::at(
        at,
        "this string has no closing quote `'`".to_owned(),
    ))
}

fn number_end(bytes: &[u8], at: usize) -> usize {
    let mut end = at + 1;
    while end < bytes.len() {
        let c = bytes[end];
        let sign_after_exponent = (c == b'+' || c == b'-') && matches!(bytes[end - 1], b'e' | b'E');
        if c.is_ascii_alphanumeric() || c == b'.' || sign_after_exponent {
            end += 1;
        } else {
            break;
        }
    }
    end
}

/// JSON's number syntax: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
fn valid_number(n: &str) -> bool {
    let b = n.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    let int_start = i;
    let int = digits(&mut i);
    if int == 0 || (int > 1 && b[int_start] == b'0') {
        return false;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

fn path_end(bytes: &[u8], at: usize) -> usize {
    let mut end = at;
    while end < bytes.len()
        && (bytes[end].is_ascii_alphanumeric() || matches!(bytes[end], b'_' | b'-' | b'.'))
    {
        end += 1;
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<Kind> {
        tokens(text).unwrap().into_iter().map(|t| t.kind).collect()
    }

    #[test]
    fn words_operators_and_literals() {
        assert_eq!(
            kinds("metadata.kind='a\\'b' and NOT x.y-z>=-1.5e3"),
            [
                Kind::Path("metadata.kind".into()),
                Kind::Cmp(CmpOp::Eq),
                Kind::Str("a'b".into()),
                Kind::And,
                Kind::Not,
                Kind::Path("x.y-z".into()),
                Kind::Cmp(CmpOp::Ge),
                Kind::Num("-1.5e3".into()),
                Kind::End,
            ]
        );
        assert_eq!(
            kinds("a IN (1,2) OR b exists != < <= >"),
            [
                Kind::Path("a".into()),
                Kind::In,
                Kind::Open,
                Kind::Num("1".into()),
                Kind::Comma,
                Kind::Num("2".into()),
                Kind::Close,
                Kind::Or,
                Kind::Path("b".into()),
                Kind::Exists,
                Kind::Cmp(CmpOp::Ne),
                Kind::Cmp(CmpOp::Lt),
                Kind::Cmp(CmpOp::Le),
                Kind::Cmp(CmpOp::Gt),
                Kind::End,
            ]
        );
    }

    #[test]
    fn errors_say_where() {
        let err = |t: &str| tokens(t).unwrap_err();
        assert_eq!(err("a = 'open").position, 4);
        assert_eq!(err("a = \"x\"").position, 4);
        assert_eq!(err("a = 01").position, 4);
        assert_eq!(err("a = 1.").position, 4);
        assert_eq!(err("a = 1e").position, 4);
        assert_eq!(err("a ~ 1").position, 2);
        assert_eq!(err("a. = 1").position, 0);
        assert_eq!(err("a = 'x\\n'").position, 7);
        assert!(err("a ! 1").message.contains("unexpected character `!`"));
        assert!(err("é").message.contains("`é`"));
        // A control character after a backslash is quoted escaped: one line.
        assert_eq!(
            err("a = 'x\\\u{0}'").message,
            "`\\\\u{0}` is not an escape: only \\' and \\\\ are"
        );
    }

    #[test]
    fn numbers_follow_json() {
        for ok in ["0", "-0", "12", "1.5", "1e9", "1E+9", "-2.5e-3"] {
            assert!(valid_number(ok), "{ok}");
        }
        for bad in ["-", "01", "1.", ".5", "1e", "1x", "0x10", "--1"] {
            assert!(!valid_number(bad), "{bad}");
        }
    }
}
