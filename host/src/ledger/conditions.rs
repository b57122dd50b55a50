//! Crypto-conditions (ED25519-SHA-256, THRESHOLD-SHA-256).
//!
//! An output locks its amount with `condition.details` (JSON); an input
//! unlocks it with a DER fulfillment (base64url). The input is valid when
//! the condition derived from the fulfillment equals the one derived from the
//! details and every signature in the fulfillment verifies. Derived
//! conditions are compared, never the `uri` strings the transaction carries:
//! BigchainDB never checks those either.
//!
//! Only the two types that details can describe are supported. A fulfillment
//! of any other type (preimage, prefix, RSA, zenroom) could never derive a
//! condition equal to an output's, and accepting one in a CREATE, whose
//! inputs BigchainDB checks without any condition, would let a preimage
//! fulfillment "sign" without a key. Such fulfillments are rejected while
//! parsing, naming the type. The encodings follow
//! draft-thomas-crypto-conditions-02 as cryptoconditions 0.8 implements it.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use ed25519_dalek::{Signature, VerifyingKey};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Type ids of the registered condition types; their DER tags are
/// `[id]` and their names appear in URIs and details.
const TYPE_NAMES: [&str; 6] = [
    "preimage-sha-256",
    "prefix-sha-256",
    "threshold-sha-256",
    "rsa-sha-256",
    "ed25519-sha-256",
    "zenroom-sha-256",
];

/// Type ids in the alphabetical order of their names, which is the order
/// cryptoconditions lists them in the `subtypes` URI parameter.
const TYPE_IDS_BY_NAME: [u8; 6] = [4, 1, 0, 3, 2, 5];

const ED25519_COST: u64 = 131_072;
/// Added to a threshold's cost once per subcondition, fulfilled or not.
const THRESHOLD_COST_PER_SUBCONDITION: u64 = 1024;
/// BigchainDB's `_fulfillment_from_details` raises ThresholdTooDeep for a
/// node at depth 100 (the root is depth 0). The same bound applies to DER
/// fulfillments so parsing recursion stays shallow, and a deeper fulfillment
/// could never match an output anyway.
const MAX_DEPTH: usize = 100;
/// The transaction schema bounds `threshold` to 1..=100.
const MAX_THRESHOLD: u64 = 100;

/// cryptoconditions strips the padding when it writes a fulfillment and
/// re-adds it before decoding, so both forms must be read. Non-zero trailing
/// bits are still rejected: they would give one fulfillment several strings
/// and thus one signed transaction several ids.
const BASE64URL_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a condition or fulfillment was refused; the messages are meant for
/// API clients, so they name the offending part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConditionError {
    #[error("fulfillment is not valid base64url")]
    Base64,
    #[error("fulfillment DER is malformed: {0}")]
    Der(&'static str),
    #[error("unsupported condition type `{0}`")]
    UnsupportedType(String),
    #[error("unknown condition type id {0}")]
    UnknownTypeId(u8),
    #[error("public key `{0}` is not base58 of 32 bytes")]
    PublicKey(String),
    #[error("threshold `{0}` is not an integer in 1..=100")]
    Threshold(String),
    #[error("threshold {threshold} exceeds {subconditions} subconditions")]
    ThresholdExceedsSubconditions {
        threshold: u16,
        subconditions: usize,
    },
    #[error("conditions nested deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("condition details are malformed: {0}")]
    Details(String),
}

/// The two supported types, as their DER tag numbers / type ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Threshold = 2,
    Ed25519 = 4,
}

impl Kind {
    /// Maps a DER choice tag to a supported type, naming unsupported ones.
    fn from_tag(tag: u8) -> Result<Kind, ConditionError> {
        if tag & 0xE0 != 0xA0 {
            return Err(ConditionError::Der(
                "expected a constructed context-specific type tag",
            ));
        }
        match tag & 0x1F {
            2 => Ok(Kind::Threshold),
            4 => Ok(Kind::Ed25519),
            id => Err(match TYPE_NAMES.get(usize::from(id)) {
                Some(name) => ConditionError::UnsupportedType((*name).to_owned()),
                None => ConditionError::UnknownTypeId(id),
            }),
        }
    }

    fn tag(self) -> u8 {
        0xA0 | self as u8
    }
}

/// A condition as the JSON `condition.details` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Details {
    Ed25519 {
        public_key: [u8; 32],
    },
    Threshold {
        threshold: u16,
        subconditions: Vec<Details>,
    },
}

impl Details {
    /// Reads `{"type":"ed25519-sha-256","public_key":<base58>}` or
    /// `{"type":"threshold-sha-256","threshold":n,"subconditions":[...]}`.
    /// Unknown keys are refused because the transaction schema has
    /// `additionalProperties: false` there.
    pub fn from_json(v: &Value) -> Result<Details, ConditionError> {
        Details::from_json_at(v, 0)
    }

    fn from_json_at(v: &Value, depth: usize) -> Result<Details, ConditionError> {
        if depth == MAX_DEPTH {
            return Err(ConditionError::TooDeep);
        }
        let Some(object) = v.as_object() else {
            return Err(details_error("details are not an object"));
        };
        let Some(kind) = object.get("type").and_then(Value::as_str) else {
            return Err(details_error("`type` is missing or not a string"));
        };
        let allowed: &[&str] = match kind {
            "ed25519-sha-256" => &["type", "public_key"],
            "threshold-sha-256" => &["type", "threshold", "subconditions"],
            other => return Err(ConditionError::UnsupportedType(other.to_owned())),
        };
        if let Some(key) = object.keys().find(|key| !allowed.contains(&key.as_str())) {
            return Err(details_error(&format!("unknown key `{key}`")));
        }
        let field = |name: &str| {
            object
                .get(name)
                .ok_or_else(|| details_error(&format!("`{name}` is missing")))
        };
        if kind == "ed25519-sha-256" {
            let public_key = field("public_key")?;
            let Some(encoded) = public_key.as_str() else {
                return Err(ConditionError::PublicKey(public_key.to_string()));
            };
            let mut decoded = [0u8; 32];
            return match bs58::decode(encoded).onto(&mut decoded) {
                Ok(32) => Ok(Details::Ed25519 {
                    public_key: decoded,
                }),
                _ => Err(ConditionError::PublicKey(encoded.to_owned())),
            };
        }
        let threshold = field("threshold")?;
        let threshold = match threshold.as_u64() {
            Some(n @ 1..=MAX_THRESHOLD) => n as u16,
            _ => return Err(ConditionError::Threshold(threshold.to_string())),
        };
        let Some(subconditions) = field("subconditions")?.as_array() else {
            return Err(details_error("`subconditions` is not an array"));
        };
        if usize::from(threshold) > subconditions.len() {
            return Err(ConditionError::ThresholdExceedsSubconditions {
                threshold,
                subconditions: subconditions.len(),
            });
        }
        let subconditions = subconditions
            .iter()
            .map(|sub| Details::from_json_at(sub, depth + 1))
            .collect::<Result<_, _>>()?;
        Ok(Details::Threshold {
            threshold,
            subconditions,
        })
    }

    pub fn condition(&self) -> Condition {
        match self {
            Details::Ed25519 { public_key } => Condition::ed25519(public_key),
            Details::Threshold {
                threshold,
                subconditions,
            } => Condition::threshold(
                usize::from(*threshold),
                subconditions.iter().map(Details::condition).collect(),
            ),
        }
    }

    /// Every Ed25519 public key in the tree, depth-first in order.
    pub fn public_keys(&self) -> Vec<[u8; 32]> {
        let mut keys = Vec::new();
        self.collect_public_keys(&mut keys);
        keys
    }

    fn collect_public_keys(&self, keys: &mut Vec<[u8; 32]>) {
        match self {
            Details::Ed25519 { public_key } => keys.push(*public_key),
            Details::Threshold { subconditions, .. } => {
                for sub in subconditions {
                    sub.collect_public_keys(keys);
                }
            }
        }
    }
}

fn details_error(message: &str) -> ConditionError {
    ConditionError::Details(message.to_owned())
}

/// What a fulfillment must match: equal conditions are interchangeable, so
/// equality of this struct is the whole "does this input unlock that output"
/// check apart from the signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    kind: Kind,
    fingerprint: [u8; 32],
    cost: u64,
    /// Bit `1 << id` for every type used below a threshold, the threshold
    /// type itself excluded (cryptoconditions' rule); 0 for Ed25519.
    subtypes: u8,
}

impl Condition {
    /// The fingerprint is SHA-256 of `SEQUENCE { publicKey [0] OCTET STRING }`.
    fn ed25519(public_key: &[u8; 32]) -> Condition {
        let mut contents = [0u8; 36];
        contents[..4].copy_from_slice(&[0x30, 0x22, 0x80, 0x20]);
        contents[4..].copy_from_slice(public_key);
        Condition {
            kind: Kind::Ed25519,
            fingerprint: Sha256::digest(contents).into(),
            cost: ED25519_COST,
            subtypes: 0,
        }
    }

    /// The fingerprint is SHA-256 of `SEQUENCE { threshold [0] INTEGER,
    /// subconditions [1] SET OF Condition }`, and the cost is the sum of the
    /// `threshold` largest subcondition costs plus 1024 per subcondition.
    /// Costs saturate: only parsed conditions can carry costs that large and
    /// those can never equal a condition derived from (bounded) details.
    fn threshold(threshold: usize, subconditions: Vec<Condition>) -> Condition {
        let mut encoded: Vec<Vec<u8>> = subconditions
            .iter()
            .map(|sub| {
                let mut der = Vec::with_capacity(48);
                sub.write_der(&mut der);
                der
            })
            .collect();
        encoded.sort_unstable();
        let mut body = Vec::with_capacity(8 + encoded.iter().map(Vec::len).sum::<usize>());
        write_unsigned(&mut body, 0x80, threshold as u64);
        write_tlv(&mut body, 0xA1, &encoded.concat());
        let mut contents = Vec::with_capacity(body.len() + 4);
        write_tlv(&mut contents, 0x30, &body);

        let mut costs: Vec<u64> = subconditions.iter().map(|sub| sub.cost).collect();
        costs.sort_unstable_by(|a, b| b.cmp(a));
        let cost = costs
            .iter()
            .take(threshold)
            .fold(0u64, |sum, cost| sum.saturating_add(*cost))
            .saturating_add(THRESHOLD_COST_PER_SUBCONDITION.saturating_mul(costs.len() as u64));
        let subtypes = subconditions
            .iter()
            .fold(0, |types, sub| types | 1 << sub.kind as u8 | sub.subtypes)
            & !(1 << Kind::Threshold as u8);
        Condition {
            kind: Kind::Threshold,
            fingerprint: Sha256::digest(&contents).into(),
            cost,
            subtypes,
        }
    }

    /// `ni:///sha-256;<fingerprint>?fpt=<type>&cost=<n>[&subtypes=<a,b>]`,
    /// the form outputs carry in `condition.uri`.
    pub fn uri(&self) -> String {
        let mut uri = String::with_capacity(128);
        uri.push_str("ni:///sha-256;");
        URL_SAFE_NO_PAD.encode_string(self.fingerprint, &mut uri);
        uri.push_str("?fpt=");
        uri.push_str(TYPE_NAMES[self.kind as usize]);
        uri.push_str("&cost=");
        uri.push_str(&self.cost.to_string());
        if self.kind == Kind::Threshold {
            uri.push_str("&subtypes=");
            let names = TYPE_IDS_BY_NAME
                .iter()
                .filter(|&&id| self.subtypes & 1 << id != 0)
                .map(|&id| TYPE_NAMES[usize::from(id)]);
            for (i, name) in names.enumerate() {
                if i > 0 {
                    uri.push(',');
                }
                uri.push_str(name);
            }
        }
        uri
    }

    /// `[type] SEQUENCE { fingerprint [0], cost [1] INTEGER[, subtypes [2] BIT STRING] }`,
    /// the binary form a threshold lists and fingerprints.
    fn write_der(&self, out: &mut Vec<u8>) {
        let mut body = Vec::with_capacity(48);
        write_tlv(&mut body, 0x80, &self.fingerprint);
        write_unsigned(&mut body, 0x81, self.cost);
        if self.kind == Kind::Threshold {
            // Named-bit BIT STRING: bit n is type id n counted from the most
            // significant bit, and DER drops trailing zero bits, so the
            // unused-bit count follows from the highest type id present.
            match self.subtypes {
                0 => write_tlv(&mut body, 0x82, &[0]),
                bits => {
                    let highest = 7 - bits.leading_zeros() as u8;
                    let octet = bits.reverse_bits();
                    write_tlv(&mut body, 0x82, &[7 - highest, octet]);
                }
            }
        }
        write_tlv(out, self.kind.tag(), &body);
    }

    fn read_der(reader: &mut DerReader<'_>) -> Result<Condition, ConditionError> {
        let (tag, contents) = reader.read()?;
        let kind = Kind::from_tag(tag)?;
        let mut body = DerReader(contents);
        let fingerprint = body.read_array(0x80, "expected a fingerprint [0] of 32 bytes")?;
        let cost = read_unsigned(body.read_expecting(0x81, "expected a cost [1]")?)?;
        let subtypes = match kind {
            Kind::Threshold => read_subtypes(body.read_expecting(0x82, "expected subtypes [2]")?)?,
            Kind::Ed25519 => 0,
        };
        body.finish()?;
        Ok(Condition {
            kind,
            fingerprint,
            cost,
            subtypes,
        })
    }
}

/// A signed fulfillment as a transaction input carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fulfillment {
    Ed25519 {
        public_key: [u8; 32],
        signature: [u8; 64],
    },
    Threshold {
        subfulfillments: Vec<Fulfillment>,
        subconditions: Vec<Condition>,
    },
}

impl Fulfillment {
    /// Parses the base64url DER string of an input's `fulfillment`. Lengths
    /// must be definite and minimal, fields exactly as the schema orders
    /// them, and nothing may follow. The SET OF order is not enforced: the
    /// derived condition sorts anyway, and cryptoconditions' decoder does not
    /// check it either.
    pub fn from_uri(s: &str) -> Result<Fulfillment, ConditionError> {
        let der = BASE64URL_ANY_PADDING
            .decode(s)
            .map_err(|_| ConditionError::Base64)?;
        let mut reader = DerReader(&der);
        let fulfillment = Fulfillment::read_der(&mut reader, 0)?;
        if !reader.0.is_empty() {
            return Err(ConditionError::Der("trailing bytes after the fulfillment"));
        }
        Ok(fulfillment)
    }

    /// The condition this fulfillment satisfies. A threshold's threshold is
    /// the number of subfulfillments it carries (cryptoconditions' decoder
    /// does the same), so an m-of-n output can only be matched by exactly m
    /// subfulfillments plus the n - m remaining subconditions.
    pub fn condition(&self) -> Condition {
        match self {
            Fulfillment::Ed25519 { public_key, .. } => Condition::ed25519(public_key),
            Fulfillment::Threshold {
                subfulfillments,
                subconditions,
            } => Condition::threshold(
                subfulfillments.len(),
                subfulfillments
                    .iter()
                    .map(Fulfillment::condition)
                    .chain(subconditions.iter().cloned())
                    .collect(),
            ),
        }
    }

    /// Whether every Ed25519 signature in the tree verifies over `message` (32-byte digest in our use).
    ///
    /// Uses `verify_strict` because the reference checks signatures with
    /// PyNaCl, i.e. libsodium's `crypto_sign_verify_detached`, which rejects
    /// non-canonical S, small-order public keys and R, and compares the
    /// recomputed R byte for byte — all of which `verify_strict` does too,
    /// while plain `verify` accepts small-order keys. (libsodium also rejects
    /// non-canonical encodings of large-order keys; nobody knows the secret
    /// key of such a point, so no signature under one can verify anyway.)
    /// A threshold without subfulfillments proves nothing and fails.
    pub fn verify(&self, message: &[u8]) -> bool {
        match self {
            Fulfillment::Ed25519 {
                public_key,
                signature,
            } => VerifyingKey::from_bytes(public_key).is_ok_and(|key| {
                key.verify_strict(message, &Signature::from_bytes(signature))
                    .is_ok()
            }),
            Fulfillment::Threshold {
                subfulfillments, ..
            } => {
                !subfulfillments.is_empty() && subfulfillments.iter().all(|sub| sub.verify(message))
            }
        }
    }

    /// Every (public key, signature) pair, for batch verification.
    ///
    /// A batch that passes is not the same verdict as [`Fulfillment::verify`]:
    /// ed25519-dalek's batch equation does not reject small-order keys or R
    /// (a key of all zeros with R = identity and S = 0 passes it), so weak
    /// keys (`VerifyingKey::is_weak`) must be refused before batching.
    pub fn signatures(&self) -> Vec<([u8; 32], [u8; 64])> {
        let mut pairs = Vec::new();
        self.collect_signatures(&mut pairs);
        pairs
    }

    fn collect_signatures(&self, pairs: &mut Vec<([u8; 32], [u8; 64])>) {
        match self {
            Fulfillment::Ed25519 {
                public_key,
                signature,
            } => pairs.push((*public_key, *signature)),
            Fulfillment::Threshold {
                subfulfillments, ..
            } => {
                for sub in subfulfillments {
                    sub.collect_signatures(pairs);
                }
            }
        }
    }

    /// The canonical string for this fulfillment (DER SETs sorted, no
    /// padding), as cryptoconditions' `serialize_uri` writes it.
    pub fn to_uri(&self) -> String {
        let mut der = Vec::with_capacity(128);
        self.write_der(&mut der);
        URL_SAFE_NO_PAD.encode(der)
    }

    fn write_der(&self, out: &mut Vec<u8>) {
        match self {
            Fulfillment::Ed25519 {
                public_key,
                signature,
            } => {
                let mut body = Vec::with_capacity(100);
                write_tlv(&mut body, 0x80, public_key);
                write_tlv(&mut body, 0x81, signature);
                write_tlv(out, Kind::Ed25519.tag(), &body);
            }
            Fulfillment::Threshold {
                subfulfillments,
                subconditions,
            } => {
                let mut body = Vec::new();
                write_tlv(
                    &mut body,
                    0xA0,
                    &sorted_set(subfulfillments, Fulfillment::write_der),
                );
                write_tlv(
                    &mut body,
                    0xA1,
                    &sorted_set(subconditions, Condition::write_der),
                );
                write_tlv(out, Kind::Threshold.tag(), &body);
            }
        }
    }

    fn read_der(reader: &mut DerReader<'_>, depth: usize) -> Result<Fulfillment, ConditionError> {
        if depth == MAX_DEPTH {
            return Err(ConditionError::TooDeep);
        }
        let (tag, contents) = reader.read()?;
        let kind = Kind::from_tag(tag)?;
        let mut body = DerReader(contents);
        let fulfillment = match kind {
            Kind::Ed25519 => Fulfillment::Ed25519 {
                public_key: body.read_array(0x80, "expected a public key [0] of 32 bytes")?,
                signature: body.read_array(0x81, "expected a signature [1] of 64 bytes")?,
            },
            Kind::Threshold => {
                let mut fulfillments =
                    DerReader(body.read_expecting(0xA0, "expected subfulfillments [0]")?);
                let mut conditions =
                    DerReader(body.read_expecting(0xA1, "expected subconditions [1]")?);
                let mut subfulfillments = Vec::new();
                while !fulfillments.0.is_empty() {
                    subfulfillments.push(Fulfillment::read_der(&mut fulfillments, depth + 1)?);
                }
                if subfulfillments.is_empty() {
                    return Err(ConditionError::Der(
                        "threshold fulfillment has no subfulfillments",
                    ));
                }
                let mut subconditions = Vec::new();
                while !conditions.0.is_empty() {
                    subconditions.push(Condition::read_der(&mut conditions)?);
                }
                Fulfillment::Threshold {
                    subfulfillments,
                    subconditions,
                }
            }
        };
        body.finish()?;
        Ok(fulfillment)
    }
}

/// DER SET OF: the elements' encodings in ascending byte order. X.690 pads
/// the shorter encoding with zeros when comparing, but one complete TLV is
/// never a prefix of another, so plain slice order is the same.
fn sorted_set<T>(items: &[T], write: impl Fn(&T, &mut Vec<u8>)) -> Vec<u8> {
    let mut encoded: Vec<Vec<u8>> = items
        .iter()
        .map(|item| {
            let mut der = Vec::new();
            write(item, &mut der);
            der
        })
        .collect();
    encoded.sort_unstable();
    encoded.concat()
}

fn write_tlv(out: &mut Vec<u8>, tag: u8, contents: &[u8]) {
    out.push(tag);
    let len = contents.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(contents);
}

/// A non-negative INTEGER in its minimal two's-complement form.
fn write_unsigned(out: &mut Vec<u8>, tag: u8, value: u64) {
    let bytes = value.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count().min(7);
    if bytes[skip] & 0x80 != 0 {
        let mut padded = [0u8; 9];
        padded[1 + skip..].copy_from_slice(&bytes[skip..]);
        write_tlv(out, tag, &padded[skip..]);
    } else {
        write_tlv(out, tag, &bytes[skip..]);
    }
}

/// Costs are INTEGERs: refuse negative and non-minimal encodings and values
/// beyond u64, which no real condition has.
fn read_unsigned(contents: &[u8]) -> Result<u64, ConditionError> {
    match contents {
        [] => Err(ConditionError::Der("empty INTEGER")),
        [first, ..] if first & 0x80 != 0 => Err(ConditionError::Der("negative cost")),
        [0, second, ..] if second & 0x80 == 0 => {
            Err(ConditionError::Der("INTEGER is not minimally encoded"))
        }
        _ => {
            let magnitude = contents.strip_prefix(&[0]).unwrap_or(contents);
            if magnitude.len() > 8 {
                return Err(ConditionError::Der("cost exceeds 64 bits"));
            }
            Ok(magnitude.iter().fold(0, |n, &b| n << 8 | u64::from(b)))
        }
    }
}

/// The subtypes BIT STRING in its DER form (no trailing zero bits, unused
/// bits zero), limited to the registered type ids.
fn read_subtypes(contents: &[u8]) -> Result<u8, ConditionError> {
    const NOT_DER: ConditionError = ConditionError::Der("subtypes BIT STRING is not DER");
    match *contents {
        [0] => Ok(0),
        [unused @ 0..=7, octet] => {
            if octet & (1 << unused) == 0 || octet & ((1 << unused) - 1) != 0 {
                return Err(NOT_DER);
            }
            let types = octet.reverse_bits();
            if usize::from(7 - types.leading_zeros() as u8) >= TYPE_NAMES.len() {
                return Err(ConditionError::Der("subtypes name an unknown type"));
            }
            Ok(types)
        }
        [_, _, ..] if contents.len() > 2 => {
            Err(ConditionError::Der("subtypes name an unknown type"))
        }
        _ => Err(NOT_DER),
    }
}

/// A cursor over DER bytes.
struct DerReader<'a>(&'a [u8]);

impl<'a> DerReader<'a> {
    /// One tag-length-value with a single-byte tag and a definite,
    /// minimally encoded length that fits the remaining input.
    fn read(&mut self) -> Result<(u8, &'a [u8]), ConditionError> {
        const TRUNCATED: ConditionError = ConditionError::Der("truncated");
        let [tag, first, rest @ ..] = self.0 else {
            return Err(TRUNCATED);
        };
        if tag & 0x1F == 0x1F {
            return Err(ConditionError::Der("multi-byte tags are not used"));
        }
        let (len, rest) = match *first {
            len @ 0..0x80 => (usize::from(len), rest),
            0x80 => return Err(ConditionError::Der("indefinite length")),
            0x81..=0x84 => {
                let (len_bytes, rest) = rest
                    .split_at_checked(usize::from(first & 0x7F))
                    .ok_or(TRUNCATED)?;
                let len = len_bytes.iter().fold(0, |n, &b| n << 8 | usize::from(b));
                if len_bytes[0] == 0 || len < 0x80 {
                    return Err(ConditionError::Der("length is not minimally encoded"));
                }
                (len, rest)
            }
            _ => return Err(ConditionError::Der("length too large")),
        };
        let (contents, rest) = rest.split_at_checked(len).ok_or(TRUNCATED)?;
        self.0 = rest;
        Ok((*tag, contents))
    }

    fn read_expecting(&mut self, tag: u8, what: &'static str) -> Result<&'a [u8], ConditionError> {
        match self.read() {
            Ok((found, contents)) if found == tag => Ok(contents),
            Ok(_) => Err(ConditionError::Der(what)),
            Err(error) => Err(error),
        }
    }

    /// A primitive field of exactly `N` bytes (keys, signatures, fingerprints).
    fn read_array<const N: usize>(
        &mut self,
        tag: u8,
        what: &'static str,
    ) -> Result<[u8; N], ConditionError> {
        self.read_expecting(tag, what)?
            .try_into()
            .map_err(|_| ConditionError::Der(what))
    }

    fn finish(&self) -> Result<(), ConditionError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ConditionError::Der("unexpected extra field"))
        }
    }
}
