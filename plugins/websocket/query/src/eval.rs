//! Evaluating a query against one transaction or one block.
//!
//! A field may have many values (a transaction's keys, every output's
//! amount, every element of an array on a JSON path): a comparison holds if
//! it holds for any of them. A value of another type than the literal
//! (a string against a number, an object against anything) makes the
//! comparison false, whatever the operator, `!=` included. A field with no
//! value makes every comparison on it false, and EXISTS false.

use std::cmp::Ordering;

use serde_json::Value as Json;

use crate::fields::{Field, Root};
use crate::lexer::CmpOp;
use crate::query::{Check, Cond, Node, Number, Query, Value};

/// A transaction as queries see it. The summary's fields are read directly;
/// the JSON only for paths, so implementations should parse it on first use.
pub trait Transaction {
    /// The height of the block it was committed in.
    fn height(&self) -> u64;
    fn id(&self) -> &str;
    fn operation(&self) -> &str;
    /// The assets it is about (never empty).
    fn asset_ids(&self) -> &[String];
    /// Every output's `public_keys` and every input's `owners_before`.
    fn public_keys(&self) -> &[String];
    /// Its JSON; `None` if it cannot be read (then paths have no values).
    fn json(&self) -> Option<&Json>;
}

/// A block (or a rejected proposal) as queries see it.
pub trait Block {
    fn height(&self) -> u64;
    fn hash(&self) -> &str;
    /// Its transactions; for a rejected proposal, those rejected.
    fn transaction_count(&self) -> u64;
}

/// What a query is evaluated against.
#[derive(Copy, Clone)]
pub enum Subject<'a> {
    Transaction(&'a dyn Transaction),
    Block(&'a dyn Block),
}

/// One value of a field.
#[derive(Copy, Clone)]
enum Found<'a> {
    Str(&'a str),
    Int(u64),
    Json(&'a Json),
}

impl Query {
    /// Whether the subject matches. Fields of the other scope (a
    /// transaction's on a block) have no values.
    pub fn matches(&self, subject: Subject<'_>) -> bool {
        eval(&self.root, subject)
    }
}

fn eval(node: &Node, subject: Subject<'_>) -> bool {
    match node {
        Node::And(nodes) => nodes.iter().all(|n| eval(n, subject)),
        Node::Or(nodes) => nodes.iter().any(|n| eval(n, subject)),
        Node::Not(node) => !eval(node, subject),
        Node::Cond(cond) => holds(cond, subject),
    }
}

fn holds(cond: &Cond, subject: Subject<'_>) -> bool {
    let test = |found: Found<'_>| match &cond.test {
        Check::Exists => !matches!(found, Found::Json(Json::Null)),
        Check::Cmp(op, value) => compare(found, *op, value),
        Check::InStrings(strings) => {
            as_str(found).is_some_and(|s| strings.binary_search_by(|l| l.as_str().cmp(s)).is_ok())
        }
        Check::In(values) => values.iter().any(|v| compare(found, CmpOp::Eq, v)),
    };
    any_value(&cond.field, subject, test)
}

/// Whether `test` holds for any value of `field`.
fn any_value(field: &Field, subject: Subject<'_>, mut test: impl FnMut(Found<'_>) -> bool) -> bool {
    match (field, subject) {
        (Field::Height, Subject::Transaction(tx)) => test(Found::Int(tx.height())),
        (Field::Height, Subject::Block(block)) => test(Found::Int(block.height())),
        (Field::Hash, Subject::Block(block)) => test(Found::Str(block.hash())),
        (Field::TransactionCount, Subject::Block(block)) => {
            test(Found::Int(block.transaction_count()))
        }
        (_, Subject::Block(_)) => false,
        (Field::Hash | Field::TransactionCount, Subject::Transaction(_)) => false,
        (Field::Id, Subject::Transaction(tx)) => test(Found::Str(tx.id())),
        (Field::Operation, Subject::Transaction(tx)) => test(Found::Str(tx.operation())),
        (Field::AssetId, Subject::Transaction(tx)) => {
            tx.asset_ids().iter().any(|id| test(Found::Str(id)))
        }
        (Field::PublicKey, Subject::Transaction(tx)) => {
            tx.public_keys().iter().any(|key| test(Found::Str(key)))
        }
        (Field::OutputPublicKey, Subject::Transaction(tx)) => {
            walk_root(tx, Root::Output, &["public_keys"], &mut |v| {
                test(Found::Json(v))
            })
        }
        (Field::InputOwnerBefore, Subject::Transaction(tx)) => {
            walk_root(tx, Root::Input, &["owners_before"], &mut |v| {
                test(Found::Json(v))
            })
        }
        (Field::OutputAmount, Subject::Transaction(tx)) => {
            // BigchainDB writes amounts as strings of digits.
            walk_root(tx, Root::Output, &["amount"], &mut |v| match v {
                Json::String(s) => s.parse().is_ok_and(|n| test(Found::Int(n))),
                Json::Number(_) => test(Found::Json(v)),
                _ => false,
            })
        }
        (Field::Json(root, path), Subject::Transaction(tx)) => {
            walk_root(tx, *root, path, &mut |v| test(Found::Json(v)))
        }
    }
}

fn walk_root<S: AsRef<str>>(
    tx: &dyn Transaction,
    root: Root,
    path: &[S],
    test: &mut dyn FnMut(&Json) -> bool,
) -> bool {
    let Some(json) = tx.json() else {
        return false;
    };
    let starts: [Option<&Json>; 2] = match root {
        // BigchainDB 2.0's `asset`, Planetmint 3.0's `assets`.
        Root::Asset => [json.get("asset"), json.get("assets")],
        Root::Metadata => [json.get("metadata"), None],
        Root::Output => [json.get("outputs"), None],
        Root::Input => [json.get("inputs"), None],
    };
    starts
        .into_iter()
        .flatten()
        .any(|start| walk(start, path, test))
}

/// Follows `path` from `value`: an array anywhere on the way, or at its
/// end, stands for each of its elements.
fn walk<S: AsRef<str>>(value: &Json, path: &[S], test: &mut dyn FnMut(&Json) -> bool) -> bool {
    match (value, path) {
        (Json::Array(items), _) => items.iter().any(|item| walk(item, path, test)),
        (value, []) => test(value),
        (Json::Object(map), [key, rest @ ..]) => map
            .get(key.as_ref())
            .is_some_and(|next| walk(next, rest, test)),
        _ => false,
    }
}

fn as_str(found: Found<'_>) -> Option<&str> {
    match found {
        Found::Str(s) => Some(s),
        Found::Json(Json::String(s)) => Some(s),
        _ => None,
    }
}

fn as_number(found: Found<'_>) -> Option<Number> {
    match found {
        Found::Int(n) => Some(Number::Int(i128::from(n))),
        Found::Json(Json::Number(n)) => n
            .as_i64()
            .map(|n| Number::Int(i128::from(n)))
            .or_else(|| n.as_u64().map(|n| Number::Int(i128::from(n))))
            .or_else(|| n.as_f64().map(Number::Float)),
        _ => None,
    }
}

fn compare(found: Found<'_>, op: CmpOp, value: &Value) -> bool {
    let ordering = match value {
        Value::Str(literal) => as_str(found).map(|s| s.cmp(literal.as_str())),
        Value::Num(literal) => as_number(found).and_then(|n| n.compare(*literal)),
        Value::Bool(literal) => match found {
            Found::Json(Json::Bool(b)) => Some(if b == literal {
                Ordering::Equal
            } else {
                Ordering::Less
            }),
            _ => None,
        },
    };
    ordering.is_some_and(|ordering| match op {
        CmpOp::Eq => ordering == Ordering::Equal,
        CmpOp::Ne => ordering != Ordering::Equal,
        CmpOp::Lt => ordering == Ordering::Less,
        CmpOp::Le => ordering != Ordering::Greater,
        CmpOp::Gt => ordering == Ordering::Greater,
        CmpOp::Ge => ordering != Ordering::Less,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Limits, Scope};

    const A: &str = "4957744b3ac54434b8270f2c854cc1040228c82ea4e72d66d2887a4d3e30b317";
    const B: &str = "0fdeb547670bbea980389df53cf5a91e60159339084c6b0b5cc0b5494a679530";
    const ALICE: &str = "4K9sWUMFwTgaDGPfdynrbxWqWS6sWmKbZoTjxLtVUibD";
    const BOB: &str = "JEAkEJqLbbgDRAtMm8YAjGp759Aq2qTn9eaEHUj2XePE";

    struct Tx {
        height: u64,
        operation: String,
        asset_ids: Vec<String>,
        public_keys: Vec<String>,
        json: Option<Json>,
    }

    impl Transaction for Tx {
        fn height(&self) -> u64 {
            self.height
        }
        fn id(&self) -> &str {
            B
        }
        fn operation(&self) -> &str {
            &self.operation
        }
        fn asset_ids(&self) -> &[String] {
            &self.asset_ids
        }
        fn public_keys(&self) -> &[String] {
            &self.public_keys
        }
        fn json(&self) -> Option<&Json> {
            self.json.as_ref()
        }
    }

    struct Blk;

    impl Block for Blk {
        fn height(&self) -> u64 {
            7
        }
        fn hash(&self) -> &str {
            A
        }
        fn transaction_count(&self) -> u64 {
            3
        }
    }

    fn transfer() -> Tx {
        let json = serde_json::json!({
            "id": B, "operation": "TRANSFER",
            "asset": {"id": A},
            "metadata": {"kind": "invoice", "total": 12.5, "paid": false, "tags": ["a", ["b"]],
                         "lines": [{"sku": "x", "n": 2}, {"sku": "y", "n": 30}], "none": null},
            "inputs": [{"owners_before": [ALICE], "fulfills": {"transaction_id": A, "output_index": 0}}],
            "outputs": [{"public_keys": [BOB], "amount": "5"}, {"public_keys": [ALICE], "amount": "20"}],
        });
        Tx {
            height: 7,
            operation: "TRANSFER".into(),
            asset_ids: vec![A.into()],
            public_keys: vec![BOB.into(), ALICE.into(), ALICE.into()],
            json: Some(json),
        }
    }

    fn matches(text: &str, tx: &Tx) -> bool {
        Query::parse(text, Scope::Transactions, &Limits::default())
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .matches(Subject::Transaction(tx))
    }

    #[test]
    fn each_form_on_a_transaction() {
        let tx = transfer();
        let yes = [
            "operation = 'TRANSFER'".to_owned(),
            format!("asset_id IN ('{B}', '{A}')"),
            format!("public_key = '{ALICE}'"),
            "height >= 7 AND height < 8".into(),
            format!("id = '{B}' AND id > '0'"),
            format!("output.public_key = '{BOB}' AND output.amount >= 10"),
            "output.amount IN (5, 6)".into(),
            format!("input.owner_before = '{ALICE}'"),
            format!("input.fulfills.transaction_id = '{A}' AND input.fulfills.output_index = 0"),
            format!("asset.id = '{A}'"),
            "metadata.kind = 'invoice'".into(),
            "metadata.total > 12 AND metadata.total <= 12.5".into(),
            "metadata.paid = FALSE AND metadata.paid != TRUE".into(),
            "metadata.tags = 'b'".into(),
            "metadata.lines.sku = 'y' AND metadata.lines.n > 10".into(),
            "metadata.kind EXISTS AND NOT metadata.missing EXISTS AND NOT metadata.none EXISTS"
                .into(),
            "metadata.kind IN ('bill', 'invoice') AND metadata.kind NOT IN ('x')".into(),
            "metadata EXISTS".into(),
            "NOT (operation = 'CREATE' OR height < 7)".into(),
        ];
        for q in &yes {
            assert!(matches(q, &tx), "should match: {q}");
        }
        let no = [
            "operation = 'CREATE'".to_owned(),
            format!("asset_id = '{B}'"),
            "height > 7".into(),
            "output.amount > 20".into(),
            // Type mismatches are false, whatever the operator.
            "metadata.kind = 1".into(),
            "metadata.kind != 1".into(),
            "metadata.total = '12.5'".into(),
            "metadata.lines = 'x'".into(),
            "metadata.paid = 0".into(),
            "metadata.missing != 'x'".into(),
            "hash_of_nothing.x EXISTS".replace("hash_of_nothing", "asset"),
        ];
        for q in &no {
            assert!(!matches(q, &tx), "should not match: {q}");
        }
    }

    #[test]
    fn paths_see_planetmint_assets_and_unreadable_json_has_no_values() {
        let mut tx = transfer();
        tx.json = Some(serde_json::json!({"assets": [{"id": A}, {"id": B}]}));
        assert!(matches(&format!("asset.id = '{B}'"), &tx));
        tx.json = None;
        assert!(!matches("metadata EXISTS", &tx));
        assert!(matches(
            "NOT metadata EXISTS AND operation = 'TRANSFER'",
            &tx
        ));
    }

    #[test]
    fn block_fields_on_blocks() {
        let q = |text: &str| {
            Query::parse(text, Scope::Blocks, &Limits::default())
                .unwrap()
                .matches(Subject::Block(&Blk))
        };
        assert!(q(&format!(
            "height = 7 AND hash = '{}' AND transaction_count >= 3",
            A.to_uppercase()
        )));
        assert!(!q("transaction_count > 3"));
        // A transaction query has no values on a block.
        let tx_query = Query::parse("height = 7", Scope::Transactions, &Limits::default()).unwrap();
        assert!(tx_query.matches(Subject::Block(&Blk)));
        let tx_query = Query::parse(
            "operation != 'CREATE'",
            Scope::Transactions,
            &Limits::default(),
        )
        .unwrap();
        assert!(!tx_query.matches(Subject::Block(&Blk)));
    }
}
