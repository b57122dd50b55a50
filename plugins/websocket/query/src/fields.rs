//! What a query can name: the fields of a transaction or of a block, the
//! paths into a transaction's JSON, and which values each may be compared with.

use eventhost_plugin_api::tx::is_public_key;

use crate::error::shorten;
use crate::lexer::CmpOp;

/// Which messages a query selects: transactions (`valid_transactions`,
/// `valid_tx`) or blocks (`valid_blocks`, `invalid_blocks`, state deltas).
#[derive(Debug, Copy, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    Transactions,
    Blocks,
}

/// A field a condition tests.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    /// The transaction's id.
    Id,
    Operation,
    /// Any of the assets the transaction is about.
    AssetId,
    /// Any key of an output's `public_keys` or an input's `owners_before`.
    PublicKey,
    /// The block's height (transaction and block streams).
    Height,
    /// Any key of any output's `public_keys`.
    OutputPublicKey,
    /// Any output's `amount`, read as an integer.
    OutputAmount,
    /// Any key of any input's `owners_before`.
    InputOwnerBefore,
    /// A path into the transaction's JSON.
    Json(Root, Vec<String>),
    /// The block's hash.
    Hash,
    /// Transactions in the block (for a rejected proposal, those rejected).
    TransactionCount,
}

/// Where a JSON path starts.
#[derive(Debug, Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Root {
    /// `asset` (BigchainDB 2.0) or each of `assets` (Planetmint 3.0).
    Asset,
    Metadata,
    /// Each of `outputs`.
    Output,
    /// Each of `inputs`.
    Input,
}

impl Root {
    fn name(self) -> &'static str {
        match self {
            Root::Asset => "asset",
            Root::Metadata => "metadata",
            Root::Output => "output",
            Root::Input => "input",
        }
    }
}

/// What a field's values are, and so which literals it is compared with.
#[derive(Debug, Copy, Clone, PartialEq, Eq)]
enum Kind {
    /// 64 hex digits, compared in lower case.
    Hex64(&'static str),
    PublicKey,
    Operation,
    Integer,
    /// Whatever the JSON holds.
    Json,
}

const TRANSACTION_FIELDS: &str = "id, operation, asset_id, public_key, height, output.public_key, output.amount, input.owner_before, and paths under asset., metadata., output. and input.";
const BLOCK_FIELDS: &str = "height, hash and transaction_count";

impl Field {
    /// The field a path names in `scope`, or why none.
    pub fn resolve(path: &str, scope: Scope) -> Result<Field, String> {
        let field = match scope {
            Scope::Transactions => match path {
                "id" => Some(Field::Id),
                "operation" => Some(Field::Operation),
                "asset_id" | "asset_ids" => Some(Field::AssetId),
                "public_key" | "public_keys" => Some(Field::PublicKey),
                "height" => Some(Field::Height),
                "output.public_key"
                | "output.public_keys"
                | "outputs.public_key"
                | "outputs.public_keys" => Some(Field::OutputPublicKey),
                "output.amount" | "outputs.amount" => Some(Field::OutputAmount),
                "input.owner_before"
                | "input.owners_before"
                | "inputs.owner_before"
                | "inputs.owners_before" => Some(Field::InputOwnerBefore),
                _ => json_path(path),
            },
            Scope::Blocks => match path {
                "height" => Some(Field::Height),
                "hash" => Some(Field::Hash),
                "transaction_count" => Some(Field::TransactionCount),
                _ => None,
            },
        };
        field.ok_or_else(|| {
            let (streams, fields) = match scope {
                Scope::Transactions => ("transaction", TRANSACTION_FIELDS),
                Scope::Blocks => ("block", BLOCK_FIELDS),
            };
            format!(
                "unknown field `{}`: the fields of {streams} streams are {fields}",
                shorten(path)
            )
        })
    }

    /// The field's name in a query's normal form.
    pub fn name(&self) -> String {
        match self {
            Field::Id => "id".into(),
            Field::Operation => "operation".into(),
            Field::AssetId => "asset_id".into(),
            Field::PublicKey => "public_key".into(),
            Field::Height => "height".into(),
            Field::OutputPublicKey => "output.public_key".into(),
            Field::OutputAmount => "output.amount".into(),
            Field::InputOwnerBefore => "input.owner_before".into(),
            Field::Json(root, path) => {
                let mut name = root.name().to_owned();
                for segment in path {
                    name.push('.');
                    name.push_str(segment);
                }
                name
            }
            Field::Hash => "hash".into(),
            Field::TransactionCount => "transaction_count".into(),
        }
    }

    /// Whether testing the field needs the transaction's JSON parsed.
    pub fn needs_json(&self) -> bool {
        matches!(
            self,
            Field::Json(..)
                | Field::OutputPublicKey
                | Field::OutputAmount
                | Field::InputOwnerBefore
        )
    }

    fn kind(&self) -> Kind {
        match self {
            Field::Id => Kind::Hex64("a transaction id"),
            Field::AssetId => Kind::Hex64("a transaction id"),
            Field::Hash => Kind::Hex64("a block hash"),
            Field::PublicKey | Field::OutputPublicKey | Field::InputOwnerBefore => Kind::PublicKey,
            Field::Operation => Kind::Operation,
            Field::Height | Field::TransactionCount | Field::OutputAmount => Kind::Integer,
            Field::Json(..) => Kind::Json,
        }
    }

    /// Checks a string compared with the field by `op` (`None`: in an IN
    /// list), and returns it in normal form: ids and hashes in lower case,
    /// operations in upper case.
    pub fn check_string(&self, op: Option<CmpOp>, value: &str) -> Result<String, String> {
        let name = self.name();
        let equality = op.is_none_or(|op| !op.orders());
        match self.kind() {
            Kind::Integer => Err(format!(
                "{name} is a number: compare it with a number, not the string '{}'",
                shorten(value)
            )),
            Kind::Hex64(what) if equality => {
                if value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
                    Ok(value.to_ascii_lowercase())
                } else {
                    Err(format!(
                        "{name} must be 64 hexadecimal digits ({what}), not `{}`",
                        shorten(value)
                    ))
                }
            }
            Kind::Hex64(_) => Ok(value.to_ascii_lowercase()),
            Kind::PublicKey if equality => {
                if is_public_key(value) {
                    Ok(value.to_owned())
                } else {
                    Err(format!(
                        "{name} must be a base58 Ed25519 public key (43 or 44 characters, no 0, O, I or l), not `{}`",
                        shorten(value)
                    ))
                }
            }
            Kind::Operation if equality => {
                // BigchainDB's query parameters accept the operation in any case.
                ["CREATE", "TRANSFER"]
                    .into_iter()
                    .find(|op| op.eq_ignore_ascii_case(value))
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        format!(
                            "{name} must be CREATE or TRANSFER, not `{}`",
                            shorten(value)
                        )
                    })
            }
            Kind::PublicKey | Kind::Operation | Kind::Json => Ok(value.to_owned()),
        }
    }

    /// Checks that a number may be compared with the field.
    pub fn check_number(&self, text: &str) -> Result<(), String> {
        match self.kind() {
            Kind::Integer | Kind::Json => Ok(()),
            _ => Err(format!(
                "{} is a string: compare it with a string in single quotes, not the number {}",
                self.name(),
                shorten(text)
            )),
        }
    }

    /// Checks that TRUE or FALSE may be compared with the field.
    pub fn check_bool(&self) -> Result<(), String> {
        match self.kind() {
            Kind::Json => Ok(()),
            _ => Err(format!(
                "{} is never TRUE or FALSE: only paths into asset, metadata, output and input hold booleans",
                self.name()
            )),
        }
    }
}

/// `asset.…`, `metadata.…`, `output.…`, `input.…` (or the plural of each).
fn json_path(path: &str) -> Option<Field> {
    let mut segments = path.split('.');
    let root = match segments.next()? {
        "asset" | "assets" => Root::Asset,
        "metadata" => Root::Metadata,
        "output" | "outputs" => Root::Output,
        "input" | "inputs" => Root::Input,
        _ => return None,
    };
    Some(Field::Json(root, segments.map(str::to_owned).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_per_scope() {
        let tx = |p| Field::resolve(p, Scope::Transactions);
        assert_eq!(tx("asset_ids"), Ok(Field::AssetId));
        assert_eq!(tx("outputs.public_keys"), Ok(Field::OutputPublicKey));
        assert_eq!(
            tx("metadata.kind"),
            Ok(Field::Json(Root::Metadata, vec!["kind".into()]))
        );
        assert_eq!(tx("assets"), Ok(Field::Json(Root::Asset, vec![])));
        assert_eq!(
            tx("output.condition.details.type").unwrap().name(),
            "output.condition.details.type"
        );
        let err = tx("colour").unwrap_err();
        assert!(
            err.starts_with(
                "unknown field `colour`: the fields of transaction streams are id, operation"
            ),
            "{err}"
        );
        assert!(
            Field::resolve("operation", Scope::Blocks)
                .unwrap_err()
                .ends_with("the fields of block streams are height, hash and transaction_count")
        );
        assert_eq!(Field::resolve("hash", Scope::Blocks), Ok(Field::Hash));
        assert!(tx("hash").is_err());
    }

    #[test]
    fn literals_are_checked_and_normalized() {
        let asset = Field::AssetId;
        let id = "4957744B3AC54434B8270F2C854CC1040228C82EA4E72D66D2887A4D3E30B317";
        assert_eq!(
            asset.check_string(Some(CmpOp::Eq), id),
            Ok(id.to_ascii_lowercase())
        );
        assert_eq!(
            asset.check_string(None, "4957744b").unwrap_err(),
            "asset_id must be 64 hexadecimal digits (a transaction id), not `4957744b`"
        );
        assert_eq!(asset.check_string(Some(CmpOp::Ge), "AB"), Ok("ab".into()));
        assert_eq!(
            Field::Operation.check_string(Some(CmpOp::Eq), "transfer"),
            Ok("TRANSFER".into())
        );
        assert_eq!(
            Field::Operation.check_string(None, "BURN").unwrap_err(),
            "operation must be CREATE or TRANSFER, not `BURN`"
        );
        assert!(
            Field::PublicKey
                .check_string(None, "0OIl")
                .unwrap_err()
                .starts_with("public_key must be a base58 Ed25519 public key")
        );
        assert!(Field::Height.check_string(None, "1").is_err());
        assert!(Field::Height.check_number("1").is_ok());
        assert!(Field::Id.check_number("1").is_err());
        assert!(Field::Height.check_bool().is_err());
        assert!(Field::Json(Root::Metadata, vec![]).check_bool().is_ok());
    }
}
