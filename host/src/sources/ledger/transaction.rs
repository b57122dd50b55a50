//! A transaction as BigchainDB 2.0 and Planetmint 3.0 clients send it,
//! checked against its version's schema, its id and its signatures: the
//! checks that need no ledger state.
//!
//! The JSON is kept as received: the id and the signatures are computed over
//! its canonical serialization, so the node must never re-encode it first.

use std::collections::BTreeSet;
use std::fmt;
use std::ops::Range;
use std::sync::OnceLock;

use eventhost_plugin_api::tx;
use serde_json::{Map, Value};
use sha3::{Digest, Sha3_256};

use super::canonical;
use super::conditions::{self, Condition, Details, Fulfillment};

/// Largest amount one output may carry, as BigchainDB allows.
pub const MAX_AMOUNT: u64 = 9_000_000_000_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// BigchainDB 2.x: `"asset": {...}`, metadata an object.
    V2,
    /// Planetmint: `"assets": [...]`, asset data and metadata strings (CIDs).
    V3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Transfer,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Transfer => "TRANSFER",
        }
    }
}

/// An output of an earlier transaction, as an input names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OutputRef {
    pub transaction_id: String,
    pub output_index: u32,
}

impl fmt::Display for OutputRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.transaction_id, self.output_index)
    }
}

#[derive(Debug, Clone)]
pub struct Input {
    pub fulfills: Option<OutputRef>,
    pub owners_before: Vec<String>,
    pub fulfillment: Fulfillment,
}

#[derive(Debug, Clone)]
pub struct Output {
    pub amount: u64,
    pub condition: Condition,
    /// Every Ed25519 key in the condition, base58: who can spend it.
    pub keys: Vec<String>,
}

/// A transaction that passed every check that needs no ledger state.
#[derive(Debug, Clone)]
pub struct Transaction {
    pub id: String,
    pub version: Version,
    pub operation: Operation,
    pub inputs: Vec<Input>,
    pub outputs: Vec<Output>,
    /// The asset(s) it moves: its own id for a CREATE, the named ids for a TRANSFER.
    pub asset_ids: Vec<String>,
    /// The transaction as received; private, read through [`Transaction::json`],
    /// so that `text` can never go stale.
    json: Value,
    /// `json` as the node stores, publishes and echoes it, serialized once:
    /// the API's answer, the block's event and the stored record each
    /// serialized it anew, three times per transaction (issue 21 item 5).
    text: OnceLock<String>,
}

/// The rule a transaction broke; names match BigchainDB's exception classes,
/// which clients see in error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    SchemaValidationError,
    ValidationError,
    InvalidHash,
    InvalidSignature,
    AmountError,
    DuplicateTransaction,
    InputDoesNotExist,
    DoubleSpend,
    AssetIdMismatch,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::SchemaValidationError => "SchemaValidationError",
            Rule::ValidationError => "ValidationError",
            Rule::InvalidHash => "InvalidHash",
            Rule::InvalidSignature => "InvalidSignature",
            Rule::AmountError => "AmountError",
            Rule::DuplicateTransaction => "DuplicateTransaction",
            Rule::InputDoesNotExist => "InputDoesNotExist",
            Rule::DoubleSpend => "DoubleSpend",
            Rule::AssetIdMismatch => "AssetIdMismatch",
        }
    }
}

/// Why a transaction was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub rule: Rule,
    pub message: String,
}

impl Rejected {
    pub fn new(rule: Rule, message: impl Into<String>) -> Rejected {
        Rejected {
            rule,
            message: message.into(),
        }
    }

    fn schema(message: impl Into<String>) -> Rejected {
        Rejected::new(Rule::SchemaValidationError, message)
    }
}

/// BigchainDB's wording, which clients and their logs already know.
impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.rule {
            Rule::SchemaValidationError => {
                write!(f, "Invalid transaction schema: {}", self.message)
            }
            rule => write!(
                f,
                "Invalid transaction ({}): {}",
                rule.as_str(),
                self.message
            ),
        }
    }
}

impl std::error::Error for Rejected {}

type Result<T> = std::result::Result<T, Rejected>;

impl Transaction {
    /// Checks a transaction's schema, id and signatures.
    pub fn parse(json: Value) -> Result<Transaction> {
        let Value::Object(obj) = &json else {
            return Err(Rejected::schema("a transaction must be a JSON object"));
        };
        let (id, unsigned) = check_id(obj)?;
        let version = match obj.get("version") {
            Some(Value::String(v)) if v == "2.0" => Version::V2,
            Some(Value::String(v)) if v == "3.0" => Version::V3,
            Some(v) => {
                return Err(Rejected::schema(format!(
                    "version {v} is not supported: use \"2.0\" (BigchainDB) or \"3.0\" (Planetmint)"
                )));
            }
            None => return Err(Rejected::schema("'version' is a required property")),
        };
        let allowed: &[&str] = match version {
            Version::V2 => &[
                "id",
                "version",
                "operation",
                "inputs",
                "outputs",
                "asset",
                "metadata",
            ],
            Version::V3 => &[
                "id",
                "version",
                "operation",
                "inputs",
                "outputs",
                "assets",
                "metadata",
                "script",
            ],
        };
        for key in obj.keys() {
            if !allowed.contains(&key.as_str()) {
                return Err(Rejected::schema(format!(
                    "Additional properties are not allowed ('{key}' was unexpected)"
                )));
            }
        }
        let asset_key = match version {
            Version::V2 => "asset",
            Version::V3 => "assets",
        };
        for key in ["operation", "inputs", "outputs", asset_key, "metadata"] {
            if !obj.contains_key(key) {
                return Err(Rejected::schema(format!("'{key}' is a required property")));
            }
        }
        if obj.contains_key("script") {
            return Err(Rejected::new(
                Rule::ValidationError,
                "transactions with a `script` (zenroom) are not supported by this node",
            ));
        }
        let operation = match &obj["operation"] {
            Value::String(op) if op == "CREATE" => Operation::Create,
            Value::String(op) if op == "TRANSFER" => Operation::Transfer,
            Value::String(op) => {
                return Err(Rejected::schema(format!(
                    "operation `{op}` is not supported: use CREATE or TRANSFER"
                )));
            }
            other => {
                return Err(Rejected::schema(format!(
                    "operation {other} is not a string"
                )));
            }
        };
        let asset_ids = match version {
            Version::V2 => check_asset_v2(&obj["asset"], operation, &id)?,
            Version::V3 => check_assets_v3(&obj["assets"], operation, &id)?,
        };
        check_metadata(&obj["metadata"], version)?;
        if version == Version::V2 && operation == Operation::Create {
            check_key_names(&obj["asset"]["data"], "asset")?;
        }
        if version == Version::V2 {
            check_key_names(&obj["metadata"], "metadata")?;
        }
        let (inputs, owner_keys): (Vec<Input>, Vec<BTreeSet<[u8; 32]>>) =
            check_inputs(&obj["inputs"], operation)?.into_iter().unzip();
        let outputs = check_outputs(&obj["outputs"])?;
        let base = unsigned.signing_base();
        let tx = Transaction {
            id,
            version,
            operation,
            inputs,
            outputs,
            asset_ids,
            json,
            text: OnceLock::new(),
        };
        tx.check_signatures(&base, &owner_keys)?;
        Ok(tx)
    }

    /// Checks every input's fulfillment against `base`, the [`signing_base`];
    /// `owner_keys[i]` are input `i`'s owners_before, decoded.
    fn check_signatures(&self, base: &Sha3_256, owner_keys: &[BTreeSet<[u8; 32]>]) -> Result<()> {
        for (i, (input, owners)) in self.inputs.iter().zip(owner_keys).enumerate() {
            if self.operation == Operation::Create {
                // BigchainDB does not compare a CREATE's signers with its
                // owners_before; without it anyone could claim to be them.
                // Keys compare as bytes: a string that decodes to 32 bytes
                // is the one base58 spelling of them (see
                // `conditions::decode_key`), and encoding the signers'
                // keys to compare strings cost 1 µs per key (2% of row 2).
                let signers: BTreeSet<[u8; 32]> = input
                    .fulfillment
                    .signatures()
                    .into_iter()
                    .map(|(key, _)| key)
                    .collect();
                if signers != *owners {
                    return Err(Rejected::new(
                        Rule::InvalidSignature,
                        format!("input {i} is not signed by exactly its owners_before"),
                    ));
                }
            }
            let message = signed_message(base, input.fulfills.as_ref());
            if !input.fulfillment.verify(&message) {
                return Err(Rejected::new(
                    Rule::InvalidSignature,
                    format!("Transaction signature is invalid (input {i})."),
                ));
            }
        }
        Ok(())
    }

    /// The JSON text of the transaction as stored (keys sorted, numbers as
    /// received), serialized on first use. It is left out of
    /// [`Transaction::parse`], which checks, so that the API's thread
    /// makes it for its answer and the ledger's thread reuses it.
    pub fn text(&self) -> &str {
        // serde_json's writer straight into the buffer: `Value`'s Display
        // makes the same text through core::fmt, a call per piece (the
        // driver's vectors, 854 bytes on average: 0.54 µs against 1.19).
        self.text.get_or_init(|| {
            serde_json::to_string(&self.json).expect("a JSON value always serializes")
        })
    }

    /// The transaction as received.
    pub fn json(&self) -> &Value {
        &self.json
    }

    /// The ids of the outputs this transaction spends.
    pub fn spends(&self) -> impl Iterator<Item = &OutputRef> {
        self.inputs.iter().filter_map(|i| i.fulfills.as_ref())
    }

    /// Every public key the transaction involves: its outputs' keys and its
    /// inputs' owners.
    pub fn public_keys(&self) -> BTreeSet<&str> {
        let outputs = self.outputs.iter().flat_map(|o| o.keys.iter());
        let owners = self.inputs.iter().flat_map(|i| i.owners_before.iter());
        outputs.chain(owners).map(String::as_str).collect()
    }

    /// The data of a CREATE's asset (2.0: `asset.data`, 3.0: `assets[0].data`).
    pub fn asset_data(&self) -> Option<&Value> {
        if self.operation != Operation::Create {
            return None;
        }
        let data = match self.version {
            Version::V2 => self.json.get("asset")?.get("data")?,
            Version::V3 => self.json.get("assets")?.get(0)?.get("data")?,
        };
        (!data.is_null()).then_some(data)
    }

    /// The transaction's metadata, unless null.
    pub fn metadata(&self) -> Option<&Value> {
        self.json.get("metadata").filter(|m| !m.is_null())
    }
}

/// The transaction id: sha3-256 of the canonical serialization of the
/// transaction object `json` with `"id": null`.
pub fn id_of(json: &Value) -> String {
    Unsigned::of_value(json).id()
}

/// The hasher state after the part of the signed message every input
/// shares: the canonical serialization with every fulfillment and the id
/// nulled. Inputs without a fulfillment are written as they are
/// ([`Transaction::parse`] refuses them before it checks signatures).
pub fn signing_base(json: &Value) -> Sha3_256 {
    Unsigned::of_value(json).signing_base()
}

/// The canonical serialization of a transaction with its id nulled (what
/// the id digests), and where each input's fulfillment lies in it.
///
/// The message the inputs sign is the same text with every fulfillment
/// nulled as well, so it is hashed from this text with `null` spliced in
/// where the fulfillments are, rather than serialized a second time from
/// a copy with the members nulled.
struct Unsigned {
    text: Vec<u8>,
    fulfillments: Vec<Range<usize>>,
}

impl Unsigned {
    /// Serializes `tx` with `"id": null` (the member added at its place if
    /// missing): [`canonical::write`] of that object, byte for byte.
    fn of(tx: &Map<String, Value>) -> Unsigned {
        let mut unsigned = Unsigned {
            text: Vec::with_capacity(1024),
            fulfillments: Vec::new(),
        };
        let out = &mut unsigned.text;
        out.push(b'{');
        let mut id_written = false;
        for (i, (key, value)) in tx.iter().enumerate() {
            if !id_written && key.as_str() >= "id" {
                id_written = true;
                out.extend_from_slice(if i > 0 {
                    b",\"id\":null"
                } else {
                    b"\"id\":null"
                });
                if key == "id" {
                    continue;
                }
            }
            if i > 0 || id_written {
                out.push(b',');
            }
            canonical::write_string(key, out);
            out.push(b':');
            match (key.as_str(), value) {
                ("inputs", Value::Array(inputs)) => {
                    write_inputs(inputs, out, &mut unsigned.fulfillments);
                }
                _ => canonical::write(value, out),
            }
        }
        if !id_written {
            out.extend_from_slice(if tx.is_empty() {
                b"\"id\":null"
            } else {
                b",\"id\":null"
            });
        }
        out.push(b'}');
        unsigned
    }

    /// [`Unsigned::of`] a transaction object; anything else has no members
    /// but the id.
    fn of_value(json: &Value) -> Unsigned {
        match json {
            Value::Object(tx) => Unsigned::of(tx),
            _ => Unsigned::of(&Map::new()),
        }
    }

    /// The transaction id: lower-case hex of the text's sha3-256.
    fn id(&self) -> String {
        hex(&Sha3_256::digest(&self.text))
    }

    /// The hasher state after the text with every fulfillment nulled.
    fn signing_base(&self) -> Sha3_256 {
        let mut hasher = Sha3_256::new();
        let mut from = 0;
        for fulfillment in &self.fulfillments {
            hasher.update(&self.text[from..fulfillment.start]);
            hasher.update(b"null");
            from = fulfillment.end;
        }
        hasher.update(&self.text[from..]);
        hasher
    }
}

/// [`canonical::write`] of the `inputs` array, noting where each input
/// object's `fulfillment` value is written.
fn write_inputs(inputs: &[Value], out: &mut Vec<u8>, fulfillments: &mut Vec<Range<usize>>) {
    out.push(b'[');
    for (i, input) in inputs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let Value::Object(members) = input else {
            canonical::write(input, out);
            continue;
        };
        out.push(b'{');
        for (j, (key, value)) in members.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            canonical::write_string(key, out);
            out.push(b':');
            let start = out.len();
            canonical::write(value, out);
            if key == "fulfillment" {
                fulfillments.push(start..out.len());
            }
        }
        out.push(b'}');
    }
    out.push(b']');
}

/// The 32-byte message an input signs: the shared base, extended by the
/// spent output (`<txid><index>`) for a TRANSFER input.
pub fn signed_message(base: &Sha3_256, spent: Option<&OutputRef>) -> [u8; 32] {
    let mut hasher = base.clone();
    if let Some(spent) = spent {
        hasher.update(spent.transaction_id.as_bytes());
        hasher.update(spent.output_index.to_string().as_bytes());
    }
    hasher.finalize().into()
}

fn is_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The id the transaction claims, checked against its body, and the text
/// that checked it (which the signatures are checked against later).
fn check_id(tx: &Map<String, Value>) -> Result<(String, Unsigned)> {
    let proposed = match tx.get("id") {
        None | Some(Value::Null) => {
            return Err(Rejected::new(Rule::InvalidHash, "No transaction id found!"));
        }
        Some(Value::String(id)) => id,
        Some(other) => {
            return Err(Rejected::schema(format!("id {other} is not a string")));
        }
    };
    let unsigned = Unsigned::of(tx);
    let actual = unsigned.id();
    if *proposed != actual {
        return Err(Rejected::new(
            Rule::InvalidHash,
            format!(
                "The transaction's id '{proposed}' isn't equal to the hash of its body, i.e. it's not valid."
            ),
        ));
    }
    Ok((actual, unsigned))
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

fn object<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>> {
    v.as_object()
        .ok_or_else(|| Rejected::schema(format!("{what} must be an object, not {v}")))
}

fn only_keys(obj: &Map<String, Value>, allowed: &[&str], what: &str) -> Result<()> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(key) => Err(Rejected::schema(format!(
            "{what}: Additional properties are not allowed ('{key}' was unexpected)"
        ))),
        None => Ok(()),
    }
}

fn hash_field(v: Option<&Value>, what: &str) -> Result<String> {
    match v {
        Some(Value::String(s)) if is_hash(s) => Ok(s.clone()),
        Some(other) => Err(Rejected::schema(format!(
            "{what} must be 64 lower-case hex digits, not {other}"
        ))),
        None => Err(Rejected::schema(format!("{what} is required"))),
    }
}

fn check_asset_v2(asset: &Value, operation: Operation, id: &str) -> Result<Vec<String>> {
    let obj = object(asset, "asset")?;
    match operation {
        Operation::Create => {
            only_keys(obj, &["data"], "asset of a CREATE")?;
            match obj.get("data") {
                Some(Value::Object(_) | Value::Null) => Ok(tx::asset_ids(id, [None::<String>])),
                Some(other) => Err(Rejected::schema(format!(
                    "asset.data must be an object or null, not {other}"
                ))),
                None => Err(Rejected::schema("asset.data is required in a CREATE")),
            }
        }
        Operation::Transfer => {
            only_keys(obj, &["id"], "asset of a TRANSFER")?;
            let declared = hash_field(obj.get("id"), "asset.id")?;
            Ok(tx::asset_ids(id, [Some(declared)]))
        }
    }
}

fn check_assets_v3(assets: &Value, operation: Operation, id: &str) -> Result<Vec<String>> {
    let list = match assets {
        Value::Null if operation == Operation::Create => {
            return Ok(tx::asset_ids(id, [None::<String>]));
        }
        Value::Array(list) if !list.is_empty() => list,
        other => {
            return Err(Rejected::schema(format!(
                "assets must be a non-empty array, not {other}"
            )));
        }
    };
    match operation {
        Operation::Create => {
            if list.len() != 1 {
                return Err(Rejected::schema("a CREATE has exactly one asset"));
            }
            let obj = object(&list[0], "assets[0]")?;
            only_keys(obj, &["data"], "assets[0] of a CREATE")?;
            match obj.get("data") {
                Some(Value::String(_) | Value::Null) => Ok(tx::asset_ids(id, [None::<String>])),
                Some(other) => Err(Rejected::schema(format!(
                    "assets[0].data must be a string (a CID) or null, not {other}"
                ))),
                None => Err(Rejected::schema("assets[0].data is required in a CREATE")),
            }
        }
        Operation::Transfer => {
            let declared = list
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    let what = format!("assets[{i}]");
                    let obj = object(a, &what)?;
                    only_keys(obj, &["id"], &what)?;
                    hash_field(obj.get("id"), &format!("{what}.id")).map(Some)
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(tx::asset_ids(id, declared))
        }
    }
}

fn check_metadata(metadata: &Value, version: Version) -> Result<()> {
    match (version, metadata) {
        (_, Value::Null) => Ok(()),
        (Version::V2, Value::Object(m)) if !m.is_empty() => Ok(()),
        (Version::V2, Value::Object(_)) => Err(Rejected::schema(
            "metadata {} does not have enough properties: use null for no metadata",
        )),
        (Version::V2, other) => Err(Rejected::schema(format!(
            "metadata must be an object or null, not {other}"
        ))),
        (Version::V3, Value::String(_)) => Ok(()),
        (Version::V3, other) => Err(Rejected::schema(format!(
            "metadata must be a string (a CID) or null, not {other}"
        ))),
    }
}

/// BigchainDB 2.x refuses key names MongoDB cannot store; clients may rely
/// on that, so this node refuses them too.
fn check_key_names(value: &Value, what: &str) -> Result<()> {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                if key.starts_with('$') || key.contains('.') || key.contains('\0') {
                    return Err(Rejected::new(
                        Rule::ValidationError,
                        format!(
                            "Invalid key name \"{key}\" in {what} object. The key name cannot contain characters \".\", \"$\" or null characters"
                        ),
                    ));
                }
                check_key_names(inner, what)?;
            }
            Ok(())
        }
        Value::Array(items) => items.iter().try_for_each(|v| check_key_names(v, what)),
        _ => Ok(()),
    }
}

/// A base58 Ed25519 public key: its text and its bytes.
fn base58_key<'a>(v: &'a Value, what: &str) -> Result<(&'a str, [u8; 32])> {
    match v {
        Value::String(s) => match conditions::decode_key(s) {
            Some(key) => Ok((s, key)),
            None => Err(Rejected::schema(format!(
                "{what} must be a base58 Ed25519 public key, not {v}"
            ))),
        },
        other => Err(Rejected::schema(format!(
            "{what} must be a base58 Ed25519 public key, not {other}"
        ))),
    }
}

/// The inputs, each with its owners_before decoded.
fn check_inputs(inputs: &Value, operation: Operation) -> Result<Vec<(Input, BTreeSet<[u8; 32]>)>> {
    let Value::Array(list) = inputs else {
        return Err(Rejected::schema(format!(
            "inputs must be an array, not {inputs}"
        )));
    };
    match operation {
        Operation::Create if list.len() != 1 => {
            return Err(Rejected::schema("a CREATE has exactly one input"));
        }
        Operation::Transfer if list.is_empty() => {
            return Err(Rejected::schema("a TRANSFER has at least one input"));
        }
        _ => {}
    }
    list.iter()
        .enumerate()
        .map(|(i, input)| {
            let what = format!("inputs[{i}]");
            let obj = object(input, &what)?;
            only_keys(obj, &["owners_before", "fulfillment", "fulfills"], &what)?;
            let mut owner_keys = BTreeSet::new();
            let owners_before = match obj.get("owners_before") {
                Some(Value::Array(keys)) if !keys.is_empty() => keys
                    .iter()
                    .map(|k| {
                        let (text, key) = base58_key(k, &format!("{what}.owners_before"))?;
                        owner_keys.insert(key);
                        Ok(text.to_owned())
                    })
                    .collect::<Result<Vec<_>>>()?,
                _ => {
                    return Err(Rejected::schema(format!(
                        "{what}.owners_before must be a non-empty array of public keys"
                    )));
                }
            };
            let fulfills = match (operation, obj.get("fulfills")) {
                (Operation::Create, Some(Value::Null)) => None,
                (Operation::Create, _) => {
                    return Err(Rejected::schema(format!(
                        "{what}.fulfills must be null in a CREATE"
                    )));
                }
                (Operation::Transfer, Some(Value::Object(f))) => {
                    only_keys(
                        f,
                        &["transaction_id", "output_index"],
                        &format!("{what}.fulfills"),
                    )?;
                    let output_index = f
                        .get("output_index")
                        .and_then(Value::as_u64)
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| {
                            Rejected::schema(format!(
                                "{what}.fulfills.output_index must be a non-negative integer"
                            ))
                        })?;
                    Some(OutputRef {
                        transaction_id: hash_field(
                            f.get("transaction_id"),
                            &format!("{what}.fulfills.transaction_id"),
                        )?,
                        output_index,
                    })
                }
                (Operation::Transfer, _) => {
                    return Err(Rejected::schema(format!(
                        "{what}.fulfills must name the output a TRANSFER spends"
                    )));
                }
            };
            let fulfillment = match obj.get("fulfillment") {
                Some(Value::String(uri)) => {
                    let fulfillment = Fulfillment::from_uri(uri).map_err(|e| {
                        Rejected::new(
                            Rule::InvalidSignature,
                            format!("Fulfillment URI couldn't been parsed ({what}: {e})"),
                        )
                    })?;
                    // The id covers the fulfillment text but no signature
                    // does: a reordered DER set would give anyone a second
                    // id for the same signed transaction. The drivers always
                    // write the canonical form.
                    if fulfillment.to_uri() != *uri {
                        return Err(Rejected::new(
                            Rule::InvalidSignature,
                            format!("{what}.fulfillment is not in canonical DER form"),
                        ));
                    }
                    fulfillment
                }
                Some(Value::Object(_)) => {
                    return Err(Rejected::new(
                        Rule::InvalidSignature,
                        format!(
                            "{what} is not signed: its fulfillment is a condition, not a signature"
                        ),
                    ));
                }
                _ => {
                    return Err(Rejected::schema(format!(
                        "{what}.fulfillment must be a signed fulfillment string"
                    )));
                }
            };
            Ok((
                Input {
                    fulfills,
                    owners_before,
                    fulfillment,
                },
                owner_keys,
            ))
        })
        .collect()
}

fn check_outputs(outputs: &Value) -> Result<Vec<Output>> {
    let list = match outputs {
        Value::Array(list) if !list.is_empty() => list,
        other => {
            return Err(Rejected::schema(format!(
                "outputs must be a non-empty array, not {other}"
            )));
        }
    };
    list.iter()
        .enumerate()
        .map(|(i, output)| {
            let what = format!("outputs[{i}]");
            let obj = object(output, &what)?;
            only_keys(obj, &["amount", "condition", "public_keys"], &what)?;
            let amount = check_amount(obj.get("amount"), &what)?;
            match obj.get("public_keys") {
                Some(Value::Array(keys)) => keys
                    .iter()
                    .try_for_each(|k| base58_key(k, &format!("{what}.public_keys")).map(drop))?,
                _ => {
                    return Err(Rejected::schema(format!(
                        "{what}.public_keys must be an array of public keys"
                    )));
                }
            }
            let condition = object(
                obj.get("condition").unwrap_or(&Value::Null),
                &format!("{what}.condition"),
            )?;
            only_keys(condition, &["details", "uri"], &format!("{what}.condition"))?;
            let details = Details::from_json(condition.get("details").unwrap_or(&Value::Null))
                .map_err(|e| {
                    Rejected::new(
                        Rule::ValidationError,
                        format!("{what}.condition.details: {e}"),
                    )
                })?;
            let derived = details.condition();
            match condition.get("uri") {
                Some(Value::String(uri)) if *uri == derived.uri() => {}
                Some(Value::String(uri)) => {
                    return Err(Rejected::new(
                        Rule::ValidationError,
                        format!(
                            "{what}.condition.uri {uri} does not match its details, which give {}",
                            derived.uri()
                        ),
                    ));
                }
                _ => {
                    return Err(Rejected::schema(format!(
                        "{what}.condition.uri must be a string"
                    )));
                }
            }
            Ok(Output {
                amount,
                keys: Details::key_texts(condition.get("details").unwrap_or(&Value::Null)),
                condition: derived,
            })
        })
        .collect()
}

fn check_amount(amount: Option<&Value>, what: &str) -> Result<u64> {
    let text = match amount {
        Some(Value::String(s))
            if (1..=20).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) =>
        {
            s
        }
        Some(other) => {
            return Err(Rejected::schema(format!(
                "{what}.amount must be a string of 1 to 20 digits, not {other}"
            )));
        }
        None => return Err(Rejected::schema(format!("{what}.amount is required"))),
    };
    match text.parse::<u64>() {
        Ok(0) => Err(Rejected::new(
            Rule::AmountError,
            format!("`amount` must be greater than 0 ({what})"),
        )),
        Ok(n) if n <= MAX_AMOUNT => Ok(n),
        _ => Err(Rejected::new(
            Rule::AmountError,
            format!("`amount` must be <= {MAX_AMOUNT} ({what})"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use curve25519_dalek::constants::EIGHT_TORSION;
    use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
    use curve25519_dalek::scalar::Scalar;
    use curve25519_dalek::traits::Identity as _;
    use ed25519_dalek::SigningKey;
    use serde_json::json;
    use sha2::{Digest as _, Sha512};

    use super::*;
    use crate::sources::ledger::builder::{self, Keypair};

    const SEED: [u8; 32] = [9; 32];

    /// A CREATE owned and signed by `public_key`, with a signature made by
    /// `sign` from the message the input signs; its id matches.
    fn create_signed_by(public_key: [u8; 32], sign: impl FnOnce(&[u8; 32]) -> [u8; 64]) -> Value {
        let owner = bs58::encode(public_key).into_string();
        let mut tx = builder::create(
            &Keypair::from_seed(SEED),
            &[(&owner, 1)],
            json!({"weak": true}),
            Value::Null,
        );
        tx["inputs"][0]["owners_before"] = json!([owner]);
        let message = signed_message(&signing_base(&tx), None);
        let fulfillment = Fulfillment::Ed25519 {
            public_key,
            signature: sign(&message),
        };
        tx["inputs"][0]["fulfillment"] = Value::String(fulfillment.to_uri());
        tx["id"] = Value::String(id_of(&tx));
        tx
    }

    /// S = r + k·a for R = `big_r` and the key of [`SEED`]: what makes
    /// [S]B − [k]A equal R's prime-order part.
    fn signature_with_r(message: &[u8; 32], r: Scalar, big_r: EdwardsPoint) -> [u8; 64] {
        let signer = SigningKey::from_bytes(&SEED);
        let big_r = big_r.compress();
        let mut hasher = Sha512::new();
        hasher.update(big_r.as_bytes());
        hasher.update(signer.verifying_key().as_bytes());
        hasher.update(message);
        let k = Scalar::from_bytes_mod_order_wide(&hasher.finalize().into());
        let mut signature = [0u8; 64];
        signature[..32].copy_from_slice(big_r.as_bytes());
        signature[32..].copy_from_slice((r + k * signer.to_scalar()).as_bytes());
        signature
    }

    fn assert_invalid_signature(tx: Value) {
        let rejected = Transaction::parse(tx).unwrap_err();
        assert_eq!(rejected.rule, Rule::InvalidSignature, "{rejected}");
        assert!(
            rejected.message.contains("signature is invalid"),
            "{rejected}"
        );
    }

    #[test]
    fn an_honest_signature_passes() {
        let key = SigningKey::from_bytes(&SEED).verifying_key().to_bytes();
        let tx = create_signed_by(key, |message| {
            let r = Scalar::from(77u8);
            signature_with_r(message, r, EdwardsPoint::mul_base(&r))
        });
        Transaction::parse(tx).unwrap();
    }

    /// The identity key, R = identity and S = 0 satisfy the cofactorless
    /// equation for every message; libsodium refuses small-order keys.
    #[test]
    fn a_small_order_key_is_refused() {
        let identity = CompressedEdwardsY::identity().to_bytes();
        let tx = create_signed_by(identity, |_| {
            let mut signature = [0u8; 64];
            signature[..32].copy_from_slice(&identity);
            signature
        });
        assert_invalid_signature(tx);
    }

    /// R = identity with S = k·a satisfies the equation exactly;
    /// libsodium refuses a small-order R.
    #[test]
    fn a_small_order_r_is_refused() {
        let key = SigningKey::from_bytes(&SEED).verifying_key().to_bytes();
        let tx = create_signed_by(key, |message| {
            signature_with_r(message, Scalar::ZERO, EdwardsPoint::default())
        });
        assert_invalid_signature(tx);
    }

    /// R with a torsion component: what a batch equation could let through.
    #[test]
    fn a_mixed_order_r_is_refused() {
        let key = SigningKey::from_bytes(&SEED).verifying_key().to_bytes();
        for torsion in &EIGHT_TORSION[1..] {
            let tx = create_signed_by(key, |message| {
                let r = Scalar::from(1234u16);
                signature_with_r(message, r, EdwardsPoint::mul_base(&r) + torsion)
            });
            assert_invalid_signature(tx);
        }
    }

    /// What the id and the signatures digest, serialized once with the
    /// fulfillments spliced out, is the canonical serialization of a copy
    /// with the members nulled, whatever the shape around them.
    #[test]
    fn the_spliced_texts_are_the_nulled_copies() {
        let signed = builder::create(
            &Keypair::from_seed(SEED),
            &[(Keypair::from_seed(SEED).public_key(), 1)],
            json!({"a": [1, 2.5, "\u{1}é"]}),
            json!({"z": null}),
        );
        let shapes = [
            signed.clone(),
            json!({}),
            json!({"zz": 1}),
            json!({"a": 1}),
            json!({"id": "x", "inputs": 3}),
            json!({"inputs": [1, {"fulfillment": "f"}, {"x": 1, "fulfillment": {"y": 2}}, {"owners_before": []}], "version": "2.0"}),
            json!({"hh": {"inputs": [{"fulfillment": "f"}]}, "ii": [], "inputs": [{"fulfillment": "a"}, {"fulfillment": "b"}]}),
        ];
        for shape in shapes {
            let mut copy = shape.clone();
            copy["id"] = Value::Null;
            assert_eq!(
                Unsigned::of_value(&shape).text,
                canonical::to_string(&copy).into_bytes()
            );
            assert_eq!(
                id_of(&shape),
                hex(&Sha3_256::digest(canonical::to_string(&copy)))
            );
            if let Some(Value::Array(inputs)) = copy.get_mut("inputs") {
                for input in inputs.iter_mut().filter_map(Value::as_object_mut) {
                    if let Some(fulfillment) = input.get_mut("fulfillment") {
                        *fulfillment = Value::Null;
                    }
                }
            }
            assert_eq!(
                signing_base(&shape).finalize(),
                Sha3_256::digest(canonical::to_string(&copy))
            );
        }
        assert_eq!(
            id_of(&Value::Null),
            hex(&Sha3_256::digest(b"{\"id\":null}"))
        );
    }
}
