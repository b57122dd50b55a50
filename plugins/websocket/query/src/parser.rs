//! The grammar, by recursive descent:
//!
//! ```text
//! query     = or EOF
//! or        = and { OR and }
//! and       = unary { AND unary }
//! unary     = NOT unary | '(' or ')' | condition
//! condition = path ( cmp literal
//!                  | [NOT] IN '(' literal { ',' literal } ')'
//!                  | EXISTS )
//! cmp       = '=' | '!=' | '<' | '<=' | '>' | '>='
//! literal   = string | number | TRUE | FALSE
//! ```
//!
//! Nesting (parentheses and NOT) is counted as it is parsed and refused past
//! the limit before it can deepen the recursion; so are terms.

use crate::error::Error;
use crate::lexer::{CmpOp, Kind, Token};
use crate::limits::Limits;

/// A parsed query, before its fields are resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Cond(Cond),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cond {
    pub path: String,
    /// Where the path starts.
    pub at: usize,
    pub test: Test,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    Cmp(CmpOp, Literal),
    In(Vec<Literal>),
    Exists,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Literal {
    pub value: LiteralValue,
    pub at: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LiteralValue {
    Str(String),
    /// The number's text, valid JSON number syntax.
    Num(String),
    Bool(bool),
}

/// Parses the tokens of a query (from [`crate::lexer::tokens`]).
pub fn parse(tokens: &[Token], limits: &Limits) -> Result<Expr, Error> {
    let mut parser = Parser {
        tokens,
        next: 0,
        depth: 0,
        terms: 0,
        limits,
    };
    let expr = parser.or()?;
    let end = parser.peek();
    if end.kind != Kind::End {
        let expected = if end.kind == Kind::Close {
            "AND, OR or the end of the query (this `)` closes no `(`)"
        } else {
            "AND, OR or the end of the query"
        };
        return Err(parser.expected(expected));
    }
    Ok(expr)
}

struct Parser<'a> {
    tokens: &'a [Token],
    next: usize,
    depth: usize,
    terms: usize,
    limits: &'a Limits,
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        // The token list always ends with `End`, which is never consumed.
        &self.tokens[self.next.min(self.tokens.len() - 1)]
    }

    fn bump(&mut self) -> Token {
        let token = self.peek().clone();
        if token.kind != Kind::End {
            self.next += 1;
        }
        token
    }

    fn expected(&self, what: &str) -> Error {
        let found = self.peek();
        Error::at(
            found.at,
            format!("expected {what}, found {}", found.kind.describe()),
        )
    }

    fn or(&mut self) -> Result<Expr, Error> {
        let mut operands = vec![self.and()?];
        while self.peek().kind == Kind::Or {
            self.bump();
            operands.push(self.and()?);
        }
        Ok(one_or(operands, Expr::Or))
    }

    fn and(&mut self) -> Result<Expr, Error> {
        let mut operands = vec![self.unary()?];
        while self.peek().kind == Kind::And {
            self.bump();
            operands.push(self.unary()?);
        }
        Ok(one_or(operands, Expr::And))
    }

    fn unary(&mut self) -> Result<Expr, Error> {
        match self.peek().kind {
            Kind::Not => {
                let at = self.bump().at;
                self.deeper(at)?;
                let inner = self.unary()?;
                self.depth -= 1;
                Ok(Expr::Not(Box::new(inner)))
            }
            Kind::Open => {
                let at = self.bump().at;
                self.deeper(at)?;
                let inner = self.or()?;
                if self.peek().kind != Kind::Close {
                    return Err(
                        self.expected(&format!("AND, OR or `)` to close the `(` at byte {at}"))
                    );
                }
                self.bump();
                self.depth -= 1;
                Ok(inner)
            }
            Kind::Path(_) => self.condition(),
            _ => Err(self.expected("a condition (a field, NOT or `(`)")),
        }
    }

    fn deeper(&mut self, at: usize) -> Result<(), Error> {
        self.depth += 1;
        if self.depth > self.limits.max_depth {
            return Err(Error::at(
                at,
                format!(
                    "the query nests deeper than {} levels of parentheses and NOT",
                    self.limits.max_depth
                ),
            ));
        }
        Ok(())
    }

    fn term(&mut self, at: usize) -> Result<(), Error> {
        self.terms += 1;
        if self.terms > self.limits.max_terms {
            return Err(Error::at(
                at,
                format!(
                    "the query has more than {} terms (comparisons, EXISTS and IN values)",
                    self.limits.max_terms
                ),
            ));
        }
        Ok(())
    }

    fn condition(&mut self) -> Result<Expr, Error> {
        let token = self.bump();
        let Kind::Path(path) = token.kind else {
            unreachable!("condition() is called on a path");
        };
        let at = token.at;
        let cond = |test| Cond {
            path: path.clone(),
            at,
            test,
        };
        match self.peek().kind {
            Kind::Cmp(op) => {
                self.bump();
                self.term(at)?;
                let literal = self.literal()?;
                Ok(Expr::Cond(cond(Test::Cmp(op, literal))))
            }
            Kind::Exists => {
                self.bump();
                self.term(at)?;
                Ok(Expr::Cond(cond(Test::Exists)))
            }
            Kind::In => {
                self.bump();
                Ok(Expr::Cond(cond(Test::In(self.list()?))))
            }
            Kind::Not => {
                self.bump();
                if self.peek().kind != Kind::In {
                    return Err(self.expected(&format!(
                        "IN after `{} NOT` (to negate a condition, write NOT before it)",
                        crate::error::shorten(&path)
                    )));
                }
                self.bump();
                let list = self.list()?;
                Ok(Expr::Not(Box::new(Expr::Cond(cond(Test::In(list))))))
            }
            _ => Err(self.expected(&format!(
                "=, !=, <, <=, >, >=, IN, NOT IN or EXISTS after `{}`",
                crate::error::shorten(&path)
            ))),
        }
    }

    fn list(&mut self) -> Result<Vec<Literal>, Error> {
        if self.peek().kind != Kind::Open {
            return Err(self.expected("`(` to open the IN list"));
        }
        self.bump();
        let mut items = Vec::new();
        loop {
            let at = self.peek().at;
            self.term(at)?;
            items.push(self.literal()?);
            match self.peek().kind {
                Kind::Comma => {
                    self.bump();
                }
                Kind::Close => {
                    self.bump();
                    return Ok(items);
                }
                _ => return Err(self.expected("`,` or `)` in the IN list")),
            }
        }
    }

    fn literal(&mut self) -> Result<Literal, Error> {
        let at = self.peek().at;
        let value = match &self.peek().kind {
            Kind::Str(s) => LiteralValue::Str(s.clone()),
            Kind::Num(n) => LiteralValue::Num(n.clone()),
            Kind::True => LiteralValue::Bool(true),
            Kind::False => LiteralValue::Bool(false),
            Kind::Path(p) => {
                return Err(Error::at(
                    at,
                    format!(
                        "expected a value ('text', a number, TRUE or FALSE), found `{}`: strings are written in single quotes",
                        crate::error::shorten(p)
                    ),
                ));
            }
            _ => return Err(self.expected("a value ('text', a number, TRUE or FALSE)")),
        };
        self.bump();
        Ok(Literal { value, at })
    }
}

fn one_or(mut operands: Vec<Expr>, many: fn(Vec<Expr>) -> Expr) -> Expr {
    if operands.len() == 1 {
        operands.pop().expect("one operand")
    } else {
        many(operands)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lexer::tokens;

    fn parse_with(text: &str, limits: &Limits) -> Result<Expr, Error> {
        parse(&tokens(text)?, limits)
    }

    fn parse_text(text: &str) -> Result<Expr, Error> {
        parse_with(text, &Limits::default())
    }

    fn cond(path: &str, at: usize, test: Test) -> Expr {
        Expr::Cond(Cond {
            path: path.into(),
            at,
            test,
        })
    }

    fn num(n: &str, at: usize) -> Literal {
        Literal {
            value: LiteralValue::Num(n.into()),
            at,
        }
    }

    #[test]
    fn and_binds_tighter_than_or_and_not_tighter_than_and() {
        let e = parse_text("a = 1 OR NOT b EXISTS AND (c = 2 OR c = 3)").unwrap();
        assert_eq!(
            e,
            Expr::Or(vec![
                cond("a", 0, Test::Cmp(CmpOp::Eq, num("1", 4))),
                Expr::And(vec![
                    Expr::Not(Box::new(cond("b", 13, Test::Exists))),
                    Expr::Or(vec![
                        cond("c", 27, Test::Cmp(CmpOp::Eq, num("2", 31))),
                        cond("c", 36, Test::Cmp(CmpOp::Eq, num("3", 40))),
                    ]),
                ]),
            ])
        );
        assert_eq!(
            parse_text("x NOT IN (1)").unwrap(),
            Expr::Not(Box::new(cond("x", 0, Test::In(vec![num("1", 10)]))))
        );
    }

    #[test]
    fn errors_name_the_position_and_what_was_expected() {
        let cases = [
            (
                "",
                0,
                "expected a condition (a field, NOT or `(`), found the end of the query",
            ),
            (
                "a",
                1,
                "expected =, !=, <, <=, >, >=, IN, NOT IN or EXISTS after `a`, found the end of the query",
            ),
            (
                "a = ",
                4,
                "expected a value ('text', a number, TRUE or FALSE), found the end of the query",
            ),
            (
                "a = b",
                4,
                "expected a value ('text', a number, TRUE or FALSE), found `b`: strings are written in single quotes",
            ),
            (
                "a = 1 b = 2",
                6,
                "expected AND, OR or the end of the query, found `b`",
            ),
            (
                "a = 1)",
                5,
                "expected AND, OR or the end of the query (this `)` closes no `(`), found `)`",
            ),
            (
                "(a = 1",
                6,
                "expected AND, OR or `)` to close the `(` at byte 0, found the end of the query",
            ),
            (
                "a IN 1",
                5,
                "expected `(` to open the IN list, found the number 1",
            ),
            (
                "a IN (1 2)",
                8,
                "expected `,` or `)` in the IN list, found the number 2",
            ),
            (
                "a IN ()",
                6,
                "expected a value ('text', a number, TRUE or FALSE), found `)`",
            ),
            (
                "a NOT EXISTS",
                6,
                "expected IN after `a NOT` (to negate a condition, write NOT before it), found EXISTS",
            ),
            (
                "AND",
                0,
                "expected a condition (a field, NOT or `(`), found AND",
            ),
        ];
        for (text, position, message) in cases {
            let err = parse_text(text).unwrap_err();
            assert_eq!(
                (err.position, err.message.as_str()),
                (position, message),
                "{text}"
            );
        }
    }

    #[test]
    fn depth_and_terms_are_limited_before_recursing_further() {
        let limits = Limits {
            max_depth: 3,
            max_terms: 4,
            ..Limits::default()
        };
        assert!(parse_with("((NOT a = 1))", &limits).is_ok());
        let err = parse_with("(((NOT a = 1)))", &limits).unwrap_err();
        assert_eq!(err.position, 3);
        assert!(err.message.contains("deeper than 3"), "{}", err.message);
        assert!(parse_with("a IN (1, 2, 3) AND b = 1", &limits).is_ok());
        let err = parse_with("a IN (1, 2, 3) AND b = 1 OR c EXISTS", &limits).unwrap_err();
        assert_eq!(err.position, 28);
        assert!(err.message.contains("more than 4 terms"), "{}", err.message);
        // Deep nesting fails cleanly, without exhausting the stack.
        let deep = "(".repeat(100_000);
        assert!(parse_text(&deep).unwrap_err().message.contains("deeper"));
        let nots = "NOT ".repeat(100_000);
        assert!(parse_text(&nots).unwrap_err().message.contains("deeper"));
    }
}
