//! A checked query: fields resolved, literals checked and normalized, and
//! its normal form, the text clients with the same query share.

use std::cmp::Ordering;
use std::fmt::Write;

use crate::error::{Error, shorten};
use crate::fields::{Field, Scope};
use crate::lexer::{self, CmpOp};
use crate::limits::Limits;
use crate::parser::{self, Expr, Literal, LiteralValue, Test};

/// A query, ready to evaluate.
#[derive(Debug, Clone)]
pub struct Query {
    pub(crate) root: Node,
    scope: Scope,
    normal: String,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
    Cond(Cond),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Cond {
    pub field: Field,
    pub test: Check,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Check {
    Cmp(CmpOp, Value),
    /// Strings, sorted and without duplicates, for a binary search.
    InStrings(Vec<String>),
    /// Values of mixed types, or numbers and booleans.
    In(Vec<Value>),
    Exists,
}

/// A literal, checked.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Str(String),
    Num(Number),
    Bool(bool),
}

#[derive(Debug, Copy, Clone, PartialEq)]
pub(crate) enum Number {
    Int(i128),
    Float(f64),
}

impl Number {
    pub fn compare(self, other: Number) -> Option<Ordering> {
        match (self, other) {
            (Number::Int(a), Number::Int(b)) => Some(a.cmp(&b)),
            (a, b) => a.as_f64().partial_cmp(&b.as_f64()),
        }
    }

    fn as_f64(self) -> f64 {
        match self {
            Number::Int(n) => n as f64,
            Number::Float(f) => f,
        }
    }
}

impl Query {
    /// Parses and checks `text` for streams of `scope`.
    pub fn parse(text: &str, scope: Scope, limits: &Limits) -> Result<Query, Error> {
        if text.len() > limits.max_bytes {
            return Err(Error::at(
                limits.max_bytes,
                format!(
                    "the query is {} bytes long; the limit is {}",
                    text.len(),
                    limits.max_bytes
                ),
            ));
        }
        let tokens = lexer::tokens(text)?;
        let expr = parser::parse(&tokens, limits)?;
        Ok(Query::from_node(check(expr, scope)?, scope))
    }

    /// `field = value`: what the query parameters `asset_id`, `public_key`
    /// and `operation` mean. The error says what is wrong with the value.
    pub fn equals(field: &str, value: &str, scope: Scope) -> Result<Query, String> {
        let field = Field::resolve(field, scope)?;
        let value = field.check_string(Some(CmpOp::Eq), value)?;
        let cond = Node::Cond(Cond {
            field,
            test: Check::Cmp(CmpOp::Eq, Value::Str(value)),
        });
        Ok(Query::from_node(cond, scope))
    }

    /// A query that matches what every one of `queries` matches; `None` if
    /// there are none.
    pub fn all(queries: Vec<Query>) -> Option<Query> {
        let scope = queries.first()?.scope;
        let nodes = queries.into_iter().map(|q| q.root).collect();
        Some(Query::from_node(Node::And(nodes), scope))
    }

    fn from_node(node: Node, scope: Scope) -> Query {
        let root = normalize(node);
        let mut normal = String::new();
        print(&root, &mut normal);
        Query {
            root,
            scope,
            normal,
        }
    }

    /// The query's normal form: keywords in upper case, fields by their
    /// main names, literals normalized, operands of AND and OR flattened,
    /// sorted and without duplicates. Queries with the same normal form
    /// select the same messages, and it parses back to the same query.
    pub fn normal_form(&self) -> &str {
        &self.normal
    }

    pub fn scope(&self) -> Scope {
        self.scope
    }

    /// Whether evaluating the query needs the transaction's JSON (paths
    /// into asset, metadata, outputs and inputs), not only its summary.
    pub fn needs_json(&self) -> bool {
        fn needs(node: &Node) -> bool {
            match node {
                Node::And(nodes) | Node::Or(nodes) => nodes.iter().any(needs),
                Node::Not(node) => needs(node),
                Node::Cond(cond) => cond.field.needs_json(),
            }
        }
        needs(&self.root)
    }
}

/// Resolves the fields of a parsed query and checks its literals.
fn check(expr: Expr, scope: Scope) -> Result<Node, Error> {
    Ok(match expr {
        Expr::And(exprs) => Node::And(check_all(exprs, scope)?),
        Expr::Or(exprs) => Node::Or(check_all(exprs, scope)?),
        Expr::Not(expr) => Node::Not(Box::new(check(*expr, scope)?)),
        Expr::Cond(cond) => {
            let field = Field::resolve(&cond.path, scope).map_err(|e| Error::at(cond.at, e))?;
            let test = match cond.test {
                Test::Exists => Check::Exists,
                Test::Cmp(op, literal) => Check::Cmp(op, value(&field, Some(op), literal)?),
                Test::In(literals) => {
                    let mut values = literals
                        .into_iter()
                        .map(|l| value(&field, None, l))
                        .collect::<Result<Vec<_>, _>>()?;
                    if values.iter().all(|v| matches!(v, Value::Str(_))) {
                        let mut strings: Vec<String> = values
                            .into_iter()
                            .filter_map(|v| match v {
                                Value::Str(s) => Some(s),
                                _ => None,
                            })
                            .collect();
                        strings.sort();
                        strings.dedup();
                        Check::InStrings(strings)
                    } else {
                        values.sort_by_cached_key(literal_text);
                        values.dedup();
                        Check::In(values)
                    }
                }
            };
            Node::Cond(Cond { field, test })
        }
    })
}

fn check_all(exprs: Vec<Expr>, scope: Scope) -> Result<Vec<Node>, Error> {
    exprs.into_iter().map(|e| check(e, scope)).collect()
}

fn value(field: &Field, op: Option<CmpOp>, literal: Literal) -> Result<Value, Error> {
    let at = literal.at;
    let value = match literal.value {
        LiteralValue::Str(s) => {
            Value::Str(field.check_string(op, &s).map_err(|e| Error::at(at, e))?)
        }
        LiteralValue::Num(text) => {
            field.check_number(&text).map_err(|e| Error::at(at, e))?;
            Value::Num(number(&text).ok_or_else(|| {
                Error::at(at, format!("the number {} is out of range", shorten(&text)))
            })?)
        }
        LiteralValue::Bool(b) => {
            if op.is_some_and(CmpOp::orders) {
                return Err(Error::at(
                    at,
                    "TRUE and FALSE can only be compared with = and !=".into(),
                ));
            }
            field.check_bool().map_err(|e| Error::at(at, e))?;
            Value::Bool(b)
        }
    };
    Ok(value)
}

/// A number's value; integers exactly (within ±2^127), others as f64.
fn number(text: &str) -> Option<Number> {
    if !text.contains(['.', 'e', 'E'])
        && let Ok(n) = text.parse::<i128>()
    {
        return Some(Number::Int(n));
    }
    let f: f64 = text.parse().ok()?;
    if !f.is_finite() {
        return None;
    }
    // An integral value prints, and so compares, as an integer.
    if f.fract() == 0.0 && f.abs() < 1e38 {
        return Some(Number::Int(f as i128));
    }
    Some(Number::Float(f))
}

/// Flattens nested AND and OR, drops double negations, and sorts and
/// deduplicates operands: cheap conditions (no JSON) first, then by text.
fn normalize(node: Node) -> Node {
    match node {
        Node::Not(inner) => match normalize(*inner) {
            Node::Not(twice) => *twice,
            inner => Node::Not(Box::new(inner)),
        },
        Node::And(nodes) => flatten(nodes, true),
        Node::Or(nodes) => flatten(nodes, false),
        cond => cond,
    }
}

fn flatten(nodes: Vec<Node>, and: bool) -> Node {
    let mut operands = Vec::new();
    for node in nodes.into_iter().map(normalize) {
        match node {
            Node::And(inner) if and => operands.extend(inner),
            Node::Or(inner) if !and => operands.extend(inner),
            node => operands.push(node),
        }
    }
    let mut keyed: Vec<(bool, String, Node)> = operands
        .into_iter()
        .map(|node| {
            let mut text = String::new();
            print(&node, &mut text);
            (node_needs_json(&node), text, node)
        })
        .collect();
    keyed.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    keyed.dedup_by(|a, b| a.1 == b.1);
    let mut operands: Vec<Node> = keyed.into_iter().map(|(_, _, node)| node).collect();
    if operands.len() == 1 {
        return operands.pop().expect("one operand");
    }
    if and {
        Node::And(operands)
    } else {
        Node::Or(operands)
    }
}

fn node_needs_json(node: &Node) -> bool {
    match node {
        Node::And(nodes) | Node::Or(nodes) => nodes.iter().any(node_needs_json),
        Node::Not(node) => node_needs_json(node),
        Node::Cond(cond) => cond.field.needs_json(),
    }
}

fn print(node: &Node, out: &mut String) {
    match node {
        Node::And(nodes) => join(nodes, " AND ", out, |n| matches!(n, Node::Or(_))),
        Node::Or(nodes) => join(nodes, " OR ", out, |_| false),
        Node::Not(inner) => {
            out.push_str("NOT ");
            let group = matches!(**inner, Node::And(_) | Node::Or(_));
            if group {
                out.push('(');
            }
            print(inner, out);
            if group {
                out.push(')');
            }
        }
        Node::Cond(Cond { field, test }) => {
            out.push_str(&field.name());
            match test {
                Check::Exists => out.push_str(" EXISTS"),
                Check::Cmp(op, value) => {
                    let _ = write!(out, " {} {}", op.as_str(), literal_text(value));
                }
                Check::InStrings(strings) => {
                    let items: Vec<String> = strings.iter().map(|s| quote(s)).collect();
                    let _ = write!(out, " IN ({})", items.join(", "));
                }
                Check::In(values) => {
                    let items: Vec<String> = values.iter().map(literal_text).collect();
                    let _ = write!(out, " IN ({})", items.join(", "));
                }
            }
        }
    }
}

fn join(nodes: &[Node], separator: &str, out: &mut String, group: impl Fn(&Node) -> bool) {
    for (i, node) in nodes.iter().enumerate() {
        if i > 0 {
            out.push_str(separator);
        }
        if group(node) {
            out.push('(');
            print(node, out);
            out.push(')');
        } else {
            print(node, out);
        }
    }
}

fn literal_text(value: &Value) -> String {
    match value {
        Value::Str(s) => quote(s),
        Value::Num(Number::Int(n)) => n.to_string(),
        // `{:?}` prints the shortest text that parses back to the same f64.
        Value::Num(Number::Float(f)) => format!("{f:?}"),
        Value::Bool(true) => "TRUE".into(),
        Value::Bool(false) => "FALSE".into(),
    }
}

fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4957744b3ac54434b8270f2c854cc1040228c82ea4e72d66d2887a4d3e30b317";

    fn tx(text: &str) -> Result<Query, Error> {
        Query::parse(text, Scope::Transactions, &Limits::default())
    }

    #[test]
    fn the_normal_form_is_shared_by_equivalent_spellings() {
        let a = tx(&format!(
            "operation='transfer' and (asset_ids in ('{}', '{ID}') AND height >= 1e2)",
            ID.to_uppercase()
        ))
        .unwrap();
        let b = tx(&format!(
            "height>=100 AND asset_id IN ('{ID}') AND operation = 'TRANSFER'"
        ))
        .unwrap();
        assert_eq!(a.normal_form(), b.normal_form());
        assert_eq!(
            a.normal_form(),
            format!("asset_id IN ('{ID}') AND height >= 100 AND operation = 'TRANSFER'")
        );
        let c = tx("NOT NOT metadata.kind = 'a\\'b' OR NOT (x.y EXISTS OR height < 2.5)");
        // `x` is no field: the error points at it.
        assert_eq!(c.unwrap_err().position, 39);
        let c =
            tx("NOT NOT metadata.kind = 'a\\'b' OR NOT (asset.y EXISTS OR height < 2.5)").unwrap();
        assert_eq!(
            c.normal_form(),
            "NOT (height < 2.5 OR asset.y EXISTS) OR metadata.kind = 'a\\'b'"
        );
        // The normal form parses back to itself.
        for q in [&a, &b, &c] {
            assert_eq!(tx(q.normal_form()).unwrap().normal_form(), q.normal_form());
        }
    }

    #[test]
    fn equality_parameters_are_queries() {
        let p = Query::equals("asset_id", &ID.to_uppercase(), Scope::Transactions).unwrap();
        assert_eq!(
            p.normal_form(),
            tx(&format!("asset_id = '{ID}'")).unwrap().normal_form()
        );
        assert_eq!(
            Query::equals("asset_id", "abc", Scope::Transactions).unwrap_err(),
            "asset_id must be 64 hexadecimal digits (a transaction id), not `abc`"
        );
        let all = Query::all(vec![
            Query::equals("operation", "create", Scope::Transactions).unwrap(),
            tx("height > 3").unwrap(),
        ])
        .unwrap();
        assert_eq!(all.normal_form(), "height > 3 AND operation = 'CREATE'");
        assert!(Query::all(vec![]).is_none());
    }

    #[test]
    fn checks_say_where_and_what() {
        let cases = [
            (
                "height = 'x'",
                9,
                "height is a number: compare it with a number, not the string 'x'",
            ),
            (
                "id = 5",
                5,
                "id is a string: compare it with a string in single quotes, not the number 5",
            ),
            (
                "metadata.ok > TRUE",
                14,
                "TRUE and FALSE can only be compared with = and !=",
            ),
            (
                "height = TRUE",
                9,
                "height is never TRUE or FALSE: only paths into asset, metadata, output and input hold booleans",
            ),
            ("height > 1e999", 9, "the number 1e999 is out of range"),
            (
                "operation IN ('CREATE', 'burn')",
                24,
                "operation must be CREATE or TRANSFER, not `burn`",
            ),
        ];
        for (text, position, message) in cases {
            let err = tx(text).unwrap_err();
            assert_eq!(
                (err.position, err.message.as_str()),
                (position, message),
                "{text}"
            );
        }
        let long = "a".repeat(5000);
        let err = tx(&long).unwrap_err();
        assert_eq!(err.position, 4096);
        assert_eq!(
            err.message,
            "the query is 5000 bytes long; the limit is 4096"
        );
        let err =
            Query::parse("operation = 'CREATE'", Scope::Blocks, &Limits::default()).unwrap_err();
        assert!(err.message.starts_with("unknown field `operation`"));
    }

    #[test]
    fn needs_json_only_for_paths() {
        assert!(
            !tx("operation = 'CREATE' OR height > 1")
                .unwrap()
                .needs_json()
        );
        assert!(tx("NOT output.amount > 1").unwrap().needs_json());
    }
}
