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
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::ed25519;

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

/// cryptoconditions writes fulfillments without padding and re-adds it
/// before decoding, so padded input decodes too (the transaction schema's
/// `^[a-zA-Z0-9_-]*$` keeps `=` out of transactions anyway). Non-zero
/// trailing bits, which Python ignores, are refused: a transaction's id
/// hashes the fulfillment string while its signatures do not cover it, so
/// each extra spelling lets anyone re-issue a signed transaction under a new
/// id, and no encoder produces them.
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
        match kind {
            "ed25519-sha-256" => {
                only_keys(object, &["type", "public_key"])?;
                let public_key = decode_public_key(required(object, "public_key")?)?;
                Ok(Details::Ed25519 { public_key })
            }
            "threshold-sha-256" => {
                only_keys(object, &["type", "threshold", "subconditions"])?;
                let threshold = required(object, "threshold")?;
                let threshold = match threshold.as_u64() {
                    Some(n @ 1..=MAX_THRESHOLD) => n as u16,
                    _ => return Err(ConditionError::Threshold(threshold.to_string())),
                };
                let Some(subconditions) = required(object, "subconditions")?.as_array() else {
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
            other => Err(ConditionError::UnsupportedType(other.to_owned())),
        }
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

    /// Every Ed25519 public key in details `json` that [`Details::from_json`]
    /// accepted, as the JSON spells it, in [`Details::public_keys`]' order:
    /// the texts encoding the keys would give (see [`decode_key`]), without
    /// encoding them (1 µs a key with bs58, 2% of validating a CREATE).
    pub fn key_texts(json: &Value) -> Vec<String> {
        fn collect(json: &Value, texts: &mut Vec<String>) {
            if let Some(Value::String(key)) = json.get("public_key") {
                texts.push(key.clone());
            } else if let Some(Value::Array(subconditions)) = json.get("subconditions") {
                for sub in subconditions {
                    collect(sub, texts);
                }
            }
        }
        let mut texts = Vec::new();
        collect(json, &mut texts);
        texts
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

fn details_error(message: impl Into<String>) -> ConditionError {
    ConditionError::Details(message.into())
}

fn only_keys(object: &Map<String, Value>, allowed: &[&str]) -> Result<(), ConditionError> {
    match object.keys().find(|key| !allowed.contains(&key.as_str())) {
        Some(key) => Err(details_error(format!("unknown key `{key}`"))),
        None => Ok(()),
    }
}

fn required<'a>(object: &'a Map<String, Value>, key: &str) -> Result<&'a Value, ConditionError> {
    object
        .get(key)
        .ok_or_else(|| details_error(format!("`{key}` is missing")))
}

fn decode_public_key(value: &Value) -> Result<[u8; 32], ConditionError> {
    let Some(encoded) = value.as_str() else {
        return Err(ConditionError::PublicKey(value.to_string()));
    };
    decode_key(encoded).ok_or_else(|| ConditionError::PublicKey(encoded.to_owned()))
}

/// The 32 bytes of a base58 Ed25519 public key, if `text` is one.
///
/// bs58 decodes like BigchainDB's `base58.b58decode` (leading `1`s are zero
/// bytes), except that Python also strips trailing whitespace; refusing that
/// keeps one spelling per key, which lookups by key string rely on. A text
/// that decodes to exactly 32 bytes is the one spelling of them, the one
/// bs58 encodes them to: its leading `1`s are their leading zero bytes and
/// the rest are the digits of the number the other bytes make, which has
/// no leading zero digit. So keys compare as bytes or as texts alike.
///
/// The verdicts are bs58's (`decode(text).onto(&mut [0; 32]) == Ok(32)`,
/// held to it by `decode_key_agrees_with_bs58`), the arithmetic is not:
/// bs58 multiplies every byte decoded so far by 58 for each digit, 5 k
/// instructions a key, and a CREATE has three keys (callgrind on row 2);
/// this adds five digits at a time into 32-bit limbs.
pub fn decode_key(text: &str) -> Option<[u8; 32]> {
    const ALPHABET: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    const DIGITS: [u8; 256] = {
        let mut digits = [u8::MAX; 256];
        let mut i = 0;
        while i < ALPHABET.len() {
            digits[ALPHABET[i] as usize] = i as u8;
            i += 1;
        }
        digits
    };
    let text = text.as_bytes();
    // 32 bytes take 43 or 44 base58 digits; anything longer cannot fit, and
    // is refused before decoding.
    if text.len() > 44 {
        return None;
    }
    let zeros = text.iter().take_while(|&&b| b == ALPHABET[0]).count();
    // The number the other digits make, least significant limb first: nine
    // limbs hold any 44 digits (58^44 < 2^288).
    let mut limbs = [0u32; 9];
    for chunk in text[zeros..].chunks(5) {
        let (mut value, mut scale) = (0u64, 1u64);
        for &b in chunk {
            let digit = DIGITS[usize::from(b)];
            if digit == u8::MAX {
                return None;
            }
            value = value * 58 + u64::from(digit);
            scale *= 58;
        }
        for limb in &mut limbs {
            let sum = u64::from(*limb) * scale + value;
            *limb = sum as u32;
            value = sum >> 32;
        }
    }
    let mut number = [0u8; 36];
    for (bytes, limb) in number.rchunks_exact_mut(4).zip(limbs) {
        bytes.copy_from_slice(&limb.to_be_bytes());
    }
    // Each leading `1` is a zero byte, then come the number's bytes, the
    // first of them not zero: 32 in all, or it is not a key.
    let significant = 36 - number.iter().take_while(|&&b| b == 0).count();
    if zeros + significant != 32 {
        return None;
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(&number[4..]);
    Some(key)
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
    /// them, and nothing may follow. cryptoconditions (pyasn1) lets
    /// non-minimal lengths and trailing bytes through; no encoder writes
    /// them, and refusing them removes re-spellings as for the base64
    /// trailing bits. The SET OF order is not enforced: cryptoconditions does
    /// not check it, other encoders may not sort, and the derived condition
    /// sorts anyway; `to_uri` gives the one canonical spelling.
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

    /// Whether every Ed25519 signature in the tree verifies over `message`
    /// (a 32-byte digest in our use), as the reference's libsodium decides
    /// (see [`super::ed25519`]). A threshold without subfulfillments proves
    /// nothing and fails.
    pub fn verify(&self, message: &[u8]) -> bool {
        match self {
            Fulfillment::Ed25519 {
                public_key,
                signature,
            } => ed25519::verify(public_key, message, signature),
            Fulfillment::Threshold {
                subfulfillments, ..
            } => {
                !subfulfillments.is_empty() && subfulfillments.iter().all(|sub| sub.verify(message))
            }
        }
    }

    /// Every (public key, signature) pair in the tree, depth-first.
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
    const UNKNOWN: ConditionError = ConditionError::Der("subtypes name an unknown type");
    match *contents {
        [0] => Ok(0),
        [unused @ 0..=7, octet] => {
            if octet & (1 << unused) == 0 || octet & ((1 << unused) - 1) != 0 {
                return Err(NOT_DER);
            }
            let types = octet.reverse_bits();
            if types >> TYPE_NAMES.len() != 0 {
                return Err(UNKNOWN);
            }
            Ok(types)
        }
        // More than one octet of bits: type ids beyond the registry.
        [_, _, _, ..] => Err(UNKNOWN),
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

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};
    use serde_json::json;
    use sha3::Sha3_256;

    use super::*;
    use crate::sources::ledger::canonical;

    fn fixture(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    fn threshold_vectors() -> Value {
        fixture(include_str!(
            "../../../tests/fixtures/cc-threshold-vectors.json"
        ))
    }

    fn unhex(hex: &str) -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    fn b64(der: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(der)
    }

    fn parse_hex(hex: &str) -> Result<Fulfillment, ConditionError> {
        Fulfillment::from_uri(&b64(&unhex(hex)))
    }

    fn condition_der(condition: &Condition) -> Vec<u8> {
        let mut der = Vec::new();
        condition.write_der(&mut der);
        der
    }

    fn ed25519_details(public_key_b58: &str) -> Value {
        json!({"type": "ed25519-sha-256", "public_key": public_key_b58})
    }

    fn threshold_details(threshold: u64, subconditions: Vec<Value>) -> Value {
        json!({"type": "threshold-sha-256", "threshold": threshold, "subconditions": subconditions})
    }

    /// The signing message of notes §2.5: SHA3-256 of the canonical form
    /// with `id` and every input's fulfillment null, followed by the spent
    /// output's transaction id and index for TRANSFER inputs.
    fn signing_message(tx: &Value, input: usize) -> [u8; 32] {
        let mut unsigned = tx.clone();
        unsigned["id"] = Value::Null;
        for each in unsigned["inputs"].as_array_mut().unwrap() {
            each["fulfillment"] = Value::Null;
        }
        let mut hasher = Sha3_256::new();
        hasher.update(canonical::to_string(&unsigned));
        let fulfills = &tx["inputs"][input]["fulfills"];
        if !fulfills.is_null() {
            hasher.update(fulfills["transaction_id"].as_str().unwrap());
            hasher.update(fulfills["output_index"].to_string());
        }
        hasher.finalize().into()
    }

    // Spec vectors 0004 (empty message) and 0015 (message "aaa") of
    // draft-thomas-crypto-conditions-02: the same key and condition.
    const SPEC_ED25519_CONDITION_URI: &str =
        "ni:///sha-256;eZI5q6j8T_fqv7xMROaei9_tmTMk4S7WR5Kr4onPHV8?fpt=ed25519-sha-256&cost=131072";
    const SPEC_ED25519_CONDITION_BINARY: &str =
        "A4278020799239ABA8FC4FF7EABFBC4C44E69E8BDFED993324E12ED64792ABE289CF1D5F8103020000";
    const SPEC_ED25519_FINGERPRINT_CONTENTS: &str =
        "30228020D75A980182B10AB7D54BFED3C964073A0EE172F3DAA62325AF021A68F707511A";
    const SPEC_ED25519_FULFILLMENTS: [(&str, &[u8]); 2] = [
        (
            "A4648020D75A980182B10AB7D54BFED3C964073A0EE172F3DAA62325AF021A68F707511A8140E5564300C360AC729086E2CC806E828A84877F1EB8E5D974D873E065224901555FB8821590A33BACC61E39701CF9B46BD25BF5F0595BBE24655141438E7A100B",
            b"",
        ),
        (
            "A4648020D75A980182B10AB7D54BFED3C964073A0EE172F3DAA62325AF021A68F707511A8140506A1EA68318E62D40635DAD043E1987EBC26E5B5C4406F7BDF85A73388FBFE5C245AC49F4770EBC787708270AA6A8769FEFE8930FD0EA1EE64B31407D769509",
            b"aaa",
        ),
    ];

    #[test]
    fn spec_ed25519_vectors() {
        for (fulfillment_hex, message) in SPEC_ED25519_FULFILLMENTS {
            let fulfillment = parse_hex(fulfillment_hex).unwrap();
            let condition = fulfillment.condition();
            assert_eq!(condition.uri(), SPEC_ED25519_CONDITION_URI);
            assert_eq!(
                condition_der(&condition),
                unhex(SPEC_ED25519_CONDITION_BINARY)
            );
            assert_eq!(
                condition.fingerprint,
                <[u8; 32]>::from(Sha256::digest(unhex(SPEC_ED25519_FINGERPRINT_CONTENTS)))
            );
            assert!(fulfillment.verify(message));
            assert!(!fulfillment.verify(b"aab"));
            assert_eq!(fulfillment.to_uri(), b64(&unhex(fulfillment_hex)));
        }
    }

    #[test]
    fn reference_threshold_vectors() {
        let vectors = threshold_vectors();
        let message = unhex(vectors["message_hex"].as_str().unwrap());
        let keys: Vec<Value> = vectors["public_keys_b58"]
            .as_array()
            .unwrap()
            .iter()
            .map(|key| ed25519_details(key.as_str().unwrap()))
            .collect();
        let cases = [
            ("ed25519", keys[0].clone()),
            ("threshold_2of2", threshold_details(2, keys[..2].to_vec())),
            (
                "threshold_1of2_signed_by_1",
                threshold_details(1, keys[..2].to_vec()),
            ),
            (
                "threshold_2of3_signed_by_0_2",
                threshold_details(2, keys.clone()),
            ),
        ];
        for (name, details) in cases {
            let vector = &vectors[name];
            let uri = vector["uri"].as_str().unwrap();
            let fulfillment =
                Fulfillment::from_uri(vector["fulfillment"].as_str().unwrap()).unwrap();
            let condition = fulfillment.condition();
            assert_eq!(condition.uri(), uri, "{name}");
            assert_eq!(
                condition_der(&condition),
                unhex(vector["condition_binary_hex"].as_str().unwrap()),
                "{name}"
            );
            let contents = unhex(vector["fingerprint_contents_hex"].as_str().unwrap());
            assert_eq!(
                condition.fingerprint,
                <[u8; 32]>::from(Sha256::digest(contents)),
                "{name}"
            );
            if let Some(cost) = vector["cost"].as_u64() {
                assert_eq!(condition.cost, cost, "{name}");
            }
            assert!(fulfillment.verify(&message), "{name}");
            assert!(!fulfillment.verify(b"another message"), "{name}");
            assert_eq!(fulfillment.to_uri(), vector["fulfillment"], "{name}");
            assert_eq!(
                Details::from_json(&details).unwrap().condition(),
                condition,
                "{name}"
            );
        }
    }

    #[test]
    fn reference_nested_and_wide_thresholds() {
        let vectors = fixture(include_str!(
            "../../../tests/fixtures/cc-nested-vectors.json"
        ));
        let message = unhex(vectors["message_hex"].as_str().unwrap());
        for name in ["nested", "wide"] {
            let vector = &vectors[name];
            let uri = vector["condition_uri"].as_str().unwrap();
            let details = Details::from_json(&vector["details"]).unwrap();
            assert_eq!(details.condition().uri(), uri, "{name}");
            let fulfillment =
                Fulfillment::from_uri(vector["fulfillment"].as_str().unwrap()).unwrap();
            assert_eq!(fulfillment.condition(), details.condition(), "{name}");
            assert!(fulfillment.verify(&message), "{name}");
            assert_eq!(fulfillment.to_uri(), vector["fulfillment"], "{name}");
        }
    }

    fn key(b58: &str) -> [u8; 32] {
        bs58::decode(b58).into_vec().unwrap().try_into().unwrap()
    }

    #[test]
    fn public_keys_are_listed_depth_first() {
        let keys = [
            "AKnL4NNf3DGWZJS6cPknBuEGnVsV4A4m5tgebLHaRSZ9",
            "9hSR6S7WPtxmTojgo6GG3k4yDPecgJY292j7xrsUGWBu",
            "GyGKxMyg1p9SsHfm15MkNUu1u9TN2JtTspcdmrtGUdse",
        ];
        let details = threshold_details(
            2,
            vec![
                threshold_details(1, vec![ed25519_details(keys[2]), ed25519_details(keys[0])]),
                ed25519_details(keys[1]),
            ],
        );
        let details = Details::from_json(&details).unwrap();
        assert_eq!(
            details.public_keys(),
            [key(keys[2]), key(keys[0]), key(keys[1])]
        );
        assert_eq!(
            Details::from_json(&ed25519_details(keys[1]))
                .unwrap()
                .public_keys(),
            [key(keys[1])]
        );
    }

    /// The keys' texts in the details are what encoding their bytes gives,
    /// in the same order, so outputs can list them without encoding.
    #[test]
    fn key_texts_are_the_encoded_public_keys() {
        let keys = [
            "AKnL4NNf3DGWZJS6cPknBuEGnVsV4A4m5tgebLHaRSZ9",
            "9hSR6S7WPtxmTojgo6GG3k4yDPecgJY292j7xrsUGWBu",
            "GyGKxMyg1p9SsHfm15MkNUu1u9TN2JtTspcdmrtGUdse",
            // Leading zero bytes are leading `1`s.
            "11111111111111111111111111111111",
            "1113ev7KArKmSeNWXoiX44de25oM4BcoUZHC9RfTFS",
        ];
        let json = threshold_details(
            2,
            vec![
                threshold_details(1, vec![ed25519_details(keys[2]), ed25519_details(keys[0])]),
                ed25519_details(keys[1]),
                threshold_details(2, vec![ed25519_details(keys[3]), ed25519_details(keys[4])]),
            ],
        );
        let encoded: Vec<String> = Details::from_json(&json)
            .unwrap()
            .public_keys()
            .iter()
            .map(|k| bs58::encode(k).into_string())
            .collect();
        assert_eq!(Details::key_texts(&json), encoded);
        assert_eq!(encoded, [keys[2], keys[0], keys[1], keys[3], keys[4]]);
        for text in keys {
            let key = decode_key(text).unwrap();
            assert_eq!(bs58::encode(key).into_string(), text);
        }
        // One more leading `1` is a 33rd byte; one fewer digit is 31 bytes.
        assert_eq!(
            decode_key("1AKnL4NNf3DGWZJS6cPknBuEGnVsV4A4m5tgebLHaRSZ9"),
            None
        );
        assert_eq!(decode_key("1111111111111111111111111111111"), None);
    }

    /// `decode_key` refuses and accepts what bs58 does, and decodes alike:
    /// keys of every length of leading zeros, random digit strings around
    /// 32 bytes' lengths, and characters outside the alphabet.
    #[test]
    fn decode_key_agrees_with_bs58() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        const ALPHABET: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
        let mut texts = Vec::new();
        for zeros in 0..=32 {
            let mut key = [0u8; 32];
            for byte in &mut key[zeros..] {
                *byte = next() as u8;
            }
            if zeros < 32 {
                key[zeros] |= 1 << (next() % 8);
            }
            texts.push(bs58::encode(key).into_string());
            texts.push(bs58::encode(&key[..31]).into_string());
            texts.push(format!("1{}", bs58::encode(key).into_string()));
        }
        for _ in 0..5_000 {
            let len = (next() % 48) as usize;
            let ones = (next() % 4) as usize;
            let mut text: String = (0..len)
                .map(|i| {
                    if i < ones {
                        '1'
                    } else {
                        char::from(ALPHABET[(next() % 58) as usize])
                    }
                })
                .collect();
            if next() % 8 == 0 && !text.is_empty() {
                let at = (next() as usize) % text.len();
                let bad = ["0", "O", "I", "l", " ", "+", "é", "\0"][(next() % 8) as usize];
                text.replace_range(at..=at, bad);
            }
            texts.push(text);
        }
        texts.push("JEKNVnkbo3jma5nREBBJCDoXFVeKkD56V3xKrvRmWxFG".into());
        texts.push("JEKNVnkbo3jma5nREBBJCDoXFVeKkD56V3xKrvRmWxFH".into());
        texts.push("zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz".into());
        let mut accepted = 0;
        for text in &texts {
            let mut expected = [0u8; 32];
            let expected =
                matches!(bs58::decode(text).onto(&mut expected), Ok(32)).then_some(expected);
            assert_eq!(decode_key(text), expected, "{text:?}");
            accepted += usize::from(expected.is_some());
        }
        assert!(accepted > 100, "{accepted} of {} were keys", texts.len());
    }

    #[test]
    fn sample_transactions_verify() {
        let samples = fixture(include_str!(
            "../../../tests/fixtures/ledger-sample-transactions.json"
        ));
        for family in ["bigchaindb", "planetmint"] {
            let create = &samples[family]["create"];
            let transfers = samples[family]["transfers"].as_array().unwrap();
            let chain: Vec<&Value> = std::iter::once(create).chain(transfers).collect();
            for (position, tx) in chain.iter().enumerate() {
                for output in tx["outputs"].as_array().unwrap() {
                    let details = Details::from_json(&output["condition"]["details"]).unwrap();
                    assert_eq!(details.condition().uri(), output["condition"]["uri"]);
                }
                let input = &tx["inputs"][0];
                let fulfillment =
                    Fulfillment::from_uri(input["fulfillment"].as_str().unwrap()).unwrap();
                let message = signing_message(tx, 0);
                assert!(fulfillment.verify(&message), "{family} tx {position}");
                let mut other = message;
                other[0] ^= 1;
                assert!(!fulfillment.verify(&other), "{family} tx {position}");
                let owner = key(input["owners_before"][0].as_str().unwrap());
                assert_eq!(fulfillment.signatures()[0].0, owner);
                if position > 0 {
                    // Each TRANSFER spends output 0 of its predecessor.
                    let spent = &chain[position - 1];
                    assert_eq!(input["fulfills"]["transaction_id"], spent["id"]);
                    let details =
                        Details::from_json(&spent["outputs"][0]["condition"]["details"]).unwrap();
                    assert_eq!(fulfillment.condition(), details.condition());
                }
            }
            // The last owner's signature cannot spend the first output.
            let last = transfers.last().unwrap();
            let fulfillment =
                Fulfillment::from_uri(last["inputs"][0]["fulfillment"].as_str().unwrap()).unwrap();
            let first_output =
                Details::from_json(&create["outputs"][0]["condition"]["details"]).unwrap();
            assert_ne!(fulfillment.condition(), first_output.condition());
        }
    }

    #[test]
    fn driver_vectors_verify() {
        let vectors = fixture(include_str!(
            "../../../tests/fixtures/ledger-driver-vectors.json"
        ));
        let vectors = vectors["vectors"].as_array().unwrap();
        let (mut valid, mut forged, mut mismatched) = (0, 0, 0);
        for vector in vectors {
            let name = vector["name"].as_str().unwrap();
            let tx = &vector["transaction"];
            for (index, expected) in vector["inputs"].as_array().unwrap().iter().enumerate() {
                let message = signing_message(tx, index);
                let hex: String = message.iter().map(|b| format!("{b:02x}")).collect();
                assert_eq!(hex, expected["message_sha3_256"], "{name}");
                let uri = tx["inputs"][index]["fulfillment"].as_str().unwrap();
                let fulfillment = Fulfillment::from_uri(uri).unwrap();
                assert_eq!(fulfillment.to_uri(), uri, "{name}");
                assert_eq!(
                    fulfillment.condition().uri(),
                    expected["fulfillment_condition_uri"],
                    "{name}"
                );
                assert_eq!(
                    Some(fulfillment.signatures().len() as u64),
                    expected["signature_count"].as_u64(),
                    "{name}"
                );
                let verifies = fulfillment.verify(&message);
                assert_eq!(
                    Some(verifies),
                    expected["signatures_verify"].as_bool(),
                    "{name}"
                );
                if verifies {
                    valid += 1;
                } else {
                    forged += 1;
                }
                if !expected["spent_details"].is_null() {
                    let details = Details::from_json(&expected["spent_details"]).unwrap();
                    let matches = details.condition() == fulfillment.condition();
                    assert_eq!(
                        Some(matches),
                        expected["spent_condition_matches"].as_bool(),
                        "{name}"
                    );
                    mismatched += usize::from(!matches);
                }
            }
            for output in vector["outputs"].as_array().unwrap() {
                let details = Details::from_json(&output["details"]).unwrap();
                assert_eq!(details.condition().uri(), output["uri"], "{name}");
            }
        }
        // Both outcomes must actually be exercised.
        assert!(
            valid >= 30 && forged >= 4 && mismatched >= 2,
            "{valid} {forged} {mismatched}"
        );
    }

    /// Rebuilds a fulfillment for the 2-of-2 and 2-of-3 reference outputs
    /// from their Ed25519 parts, which all sign the same message.
    fn reference_parts() -> (Vec<Details>, Vec<Fulfillment>, Vec<u8>) {
        let vectors = threshold_vectors();
        let keys: Vec<Details> = vectors["public_keys_b58"]
            .as_array()
            .unwrap()
            .iter()
            .map(|key| Details::from_json(&ed25519_details(key.as_str().unwrap())).unwrap())
            .collect();
        let mut signed = Vec::new();
        for name in ["threshold_2of2", "threshold_2of3_signed_by_0_2"] {
            let uri = vectors[name]["fulfillment"].as_str().unwrap();
            let Fulfillment::Threshold {
                subfulfillments, ..
            } = Fulfillment::from_uri(uri).unwrap()
            else {
                panic!("{name} is not a threshold");
            };
            signed.extend(subfulfillments);
        }
        // Order the signed leaves as the keys are ordered (0, 1, 2).
        let leaves = keys
            .iter()
            .map(|key| {
                signed
                    .iter()
                    .find(|leaf| leaf.condition() == key.condition())
                    .unwrap()
                    .clone()
            })
            .collect();
        let message = unhex(vectors["message_hex"].as_str().unwrap());
        (keys, leaves, message)
    }

    #[test]
    fn m_of_n_needs_exactly_m_subfulfillments() {
        let (keys, leaves, message) = reference_parts();
        let two_of_two = Details::Threshold {
            threshold: 2,
            subconditions: keys[..2].to_vec(),
        };
        let one_of_two = Details::Threshold {
            threshold: 1,
            subconditions: keys[..2].to_vec(),
        };
        let full = Fulfillment::Threshold {
            subfulfillments: leaves[..2].to_vec(),
            subconditions: vec![],
        };
        assert_eq!(full.condition(), two_of_two.condition());
        assert!(full.verify(&message));

        // One valid signature plus the other key's condition: every
        // signature present verifies, yet it only satisfies 1-of-2.
        let half = Fulfillment::Threshold {
            subfulfillments: vec![leaves[0].clone()],
            subconditions: vec![keys[1].condition()],
        };
        assert!(half.verify(&message));
        assert_ne!(half.condition(), two_of_two.condition());
        assert_eq!(half.condition(), one_of_two.condition());
        let reparsed = Fulfillment::from_uri(&half.to_uri()).unwrap();
        assert_ne!(reparsed.condition(), two_of_two.condition());

        // More signatures than the threshold is a different condition too
        // (cryptoconditions moves the surplus into subconditions).
        let two_of_three = Details::Threshold {
            threshold: 2,
            subconditions: keys.clone(),
        };
        let all_three = Fulfillment::Threshold {
            subfulfillments: leaves.clone(),
            subconditions: vec![],
        };
        assert!(all_three.verify(&message));
        assert_ne!(all_three.condition(), two_of_three.condition());
        let two_signed = Fulfillment::Threshold {
            subfulfillments: vec![leaves[2].clone(), leaves[1].clone()],
            subconditions: vec![keys[0].condition()],
        };
        assert_eq!(two_signed.condition(), two_of_three.condition());
        assert!(two_signed.verify(&message));

        // A forged signature keeps the condition but fails verification.
        let Fulfillment::Ed25519 {
            public_key,
            mut signature,
        } = leaves[1].clone()
        else {
            unreachable!()
        };
        signature[10] ^= 0x40;
        let forged = Fulfillment::Threshold {
            subfulfillments: vec![
                leaves[0].clone(),
                Fulfillment::Ed25519 {
                    public_key,
                    signature,
                },
            ],
            subconditions: vec![],
        };
        assert_eq!(forged.condition(), two_of_two.condition());
        assert!(!forged.verify(&message));
        assert_eq!(forged.signatures().len(), 2);
    }

    #[test]
    fn unsorted_sets_parse_and_reencode_sorted() {
        let vector = &threshold_vectors()["threshold_2of2"];
        let der = unhex(vector["fulfillment_hex"].as_str().unwrap());
        // a2 81 d1 a0 81 cc <leaf 102> <leaf 102> a1 00
        let mut swapped = der[..6].to_vec();
        swapped.extend_from_slice(&der[108..210]);
        swapped.extend_from_slice(&der[6..108]);
        swapped.extend_from_slice(&der[210..]);
        let fulfillment = Fulfillment::from_uri(&b64(&swapped)).unwrap();
        assert_eq!(fulfillment.condition().uri(), vector["uri"]);
        assert_eq!(fulfillment.to_uri(), vector["fulfillment"]);
    }

    #[test]
    fn padding_is_tolerated_but_not_required() {
        let vector = &threshold_vectors()["threshold_2of2"];
        let uri = vector["fulfillment"].as_str().unwrap();
        assert_eq!(uri.len() % 4, 3);
        assert_eq!(
            Fulfillment::from_uri(&format!("{uri}=")).unwrap(),
            Fulfillment::from_uri(uri).unwrap()
        );
    }

    fn ed25519_der() -> Vec<u8> {
        unhex(
            threshold_vectors()["ed25519"]["fulfillment_hex"]
                .as_str()
                .unwrap(),
        )
    }

    fn der_error(der: &[u8]) -> String {
        Fulfillment::from_uri(&b64(der)).unwrap_err().to_string()
    }

    #[test]
    fn malformed_fulfillments_are_rejected() {
        let base64_error = "fulfillment is not valid base64url";
        for bad in ["pGSA*IIqI", "pGSAI+qI", "a", "pGSAIIqI4910CfGV/VLb"] {
            assert_eq!(
                Fulfillment::from_uri(bad).unwrap_err().to_string(),
                base64_error,
                "{bad}"
            );
        }
        // Non-zero trailing bits: another spelling of the same bytes.
        let two_of_two = threshold_vectors()["threshold_2of2"]["fulfillment"]
            .as_str()
            .unwrap()
            .to_owned();
        let respelled = format!("{}B", &two_of_two[..two_of_two.len() - 1]);
        assert!(two_of_two.ends_with('A'));
        assert_eq!(
            Fulfillment::from_uri(&respelled).unwrap_err(),
            ConditionError::Base64
        );

        let der = ed25519_der();
        let malformed = |what: &str| format!("fulfillment DER is malformed: {what}");
        assert_eq!(der_error(&[]), malformed("truncated"));
        assert_eq!(der_error(&der[..der.len() - 1]), malformed("truncated"));
        assert_eq!(der_error(&der[..1]), malformed("truncated"));
        let mut trailing = der.clone();
        trailing.push(0);
        assert_eq!(
            der_error(&trailing),
            malformed("trailing bytes after the fulfillment")
        );

        // Public key of 31 bytes, signature of 63 bytes.
        let mut short_key = vec![0xA4, 0x63, 0x80, 0x1F];
        short_key.extend_from_slice(&der[5..]);
        assert_eq!(
            der_error(&short_key),
            malformed("expected a public key [0] of 32 bytes")
        );
        let mut short_signature = vec![0xA4, 0x63];
        short_signature.extend_from_slice(&der[2..36]);
        short_signature.extend_from_slice(&[0x81, 0x3F]);
        short_signature.extend_from_slice(&der[38..der.len() - 1]);
        assert_eq!(
            der_error(&short_signature),
            malformed("expected a signature [1] of 64 bytes")
        );
        // Fields swapped, an extra field, a wrong field tag.
        let mut swapped = vec![0xA4, 0x64];
        swapped.extend_from_slice(&der[36..]);
        swapped.extend_from_slice(&der[2..36]);
        assert_eq!(
            der_error(&swapped),
            malformed("expected a public key [0] of 32 bytes")
        );
        let mut extra = vec![0xA4, 0x66];
        extra.extend_from_slice(&der[2..]);
        extra.extend_from_slice(&[0x82, 0x00]);
        assert_eq!(der_error(&extra), malformed("unexpected extra field"));
        let mut universal = der.clone();
        universal[2] = 0x04;
        assert_eq!(
            der_error(&universal),
            malformed("expected a public key [0] of 32 bytes")
        );

        // Lengths: non-minimal long form, indefinite, absurd.
        let mut long_form = vec![0xA4, 0x81, 0x64];
        long_form.extend_from_slice(&der[2..]);
        assert_eq!(
            der_error(&long_form),
            malformed("length is not minimally encoded")
        );
        let mut padded_length = vec![0xA4, 0x82, 0x00, 0x64];
        padded_length.extend_from_slice(&der[2..]);
        assert_eq!(
            der_error(&padded_length),
            malformed("length is not minimally encoded")
        );
        let mut indefinite = vec![0xA4, 0x80];
        indefinite.extend_from_slice(&der[2..]);
        indefinite.extend_from_slice(&[0, 0]);
        assert_eq!(der_error(&indefinite), malformed("indefinite length"));
        assert_eq!(
            der_error(&[0xA4, 0x89, 1, 0, 0, 0, 0, 0, 0, 0, 0]),
            malformed("length too large")
        );
        assert_eq!(
            der_error(&[0xA4, 0x84, 0x7F, 0xFF, 0xFF, 0xFF]),
            malformed("truncated")
        );
        assert_eq!(
            der_error(&[0xBF, 0x04, 0x00]),
            malformed("multi-byte tags are not used")
        );
    }

    #[test]
    fn unsupported_types_are_named() {
        // Spec vectors 0000 (preimage), 0001 (prefix of preimage) and 0002
        // (threshold over a preimage), then RSA, zenroom and unknown ids.
        for (hex, error) in [
            ("A0028000", "unsupported condition type `preimage-sha-256`"),
            (
                "A10B8000810100A204A0028000",
                "unsupported condition type `prefix-sha-256`",
            ),
            (
                "A208A004A0028000A100",
                "unsupported condition type `preimage-sha-256`",
            ),
            ("A300", "unsupported condition type `rsa-sha-256`"),
            ("A500", "unsupported condition type `zenroom-sha-256`"),
            ("A700", "unknown condition type id 7"),
            ("A400", "fulfillment DER is malformed: truncated"),
            (
                "8400",
                "fulfillment DER is malformed: expected a constructed context-specific type tag",
            ),
            (
                "3000",
                "fulfillment DER is malformed: expected a constructed context-specific type tag",
            ),
        ] {
            assert_eq!(parse_hex(hex).unwrap_err().to_string(), error, "{hex}");
        }
        // A threshold listing a preimage condition among its subconditions.
        let leaf = ed25519_der();
        let preimage_condition = [
            &[0xA0, 0x25, 0x80, 0x20][..],
            &[0xE3; 32],
            &[0x81, 0x01, 0x00],
        ]
        .concat();
        let der = threshold_der(&[&leaf], &[&preimage_condition]);
        assert_eq!(
            der_error(&der),
            "unsupported condition type `preimage-sha-256`"
        );
    }

    fn threshold_der(subfulfillments: &[&[u8]], subconditions: &[&[u8]]) -> Vec<u8> {
        let mut body = Vec::new();
        write_tlv(&mut body, 0xA0, &subfulfillments.concat());
        write_tlv(&mut body, 0xA1, &subconditions.concat());
        let mut der = Vec::new();
        write_tlv(&mut der, 0xA2, &body);
        der
    }

    #[test]
    fn malformed_subconditions_are_rejected() {
        let leaf = ed25519_der();
        let condition = |cost: &[u8], subtypes: &[u8]| {
            let mut body = Vec::new();
            write_tlv(&mut body, 0x80, &[0x11; 32]);
            write_tlv(&mut body, 0x81, cost);
            write_tlv(&mut body, 0x82, subtypes);
            let mut der = Vec::new();
            write_tlv(&mut der, 0xA2, &body);
            der
        };
        let error = |cost: &[u8], subtypes: &[u8]| {
            der_error(&threshold_der(&[&leaf], &[&condition(cost, subtypes)]))
        };
        let malformed = |what: &str| format!("fulfillment DER is malformed: {what}");
        assert_eq!(
            der_error(&threshold_der(&[], &[])),
            malformed("threshold fulfillment has no subfulfillments")
        );
        assert_eq!(error(&[], &[3, 8]), malformed("empty INTEGER"));
        assert_eq!(error(&[0x80], &[3, 8]), malformed("negative cost"));
        assert_eq!(
            error(&[0, 1], &[3, 8]),
            malformed("INTEGER is not minimally encoded")
        );
        assert_eq!(
            error(&[1, 0, 0, 0, 0, 0, 0, 0, 0], &[3, 8]),
            malformed("cost exceeds 64 bits")
        );
        let not_der = malformed("subtypes BIT STRING is not DER");
        assert_eq!(error(&[1], &[]), not_der);
        assert_eq!(error(&[1], &[1]), not_der);
        assert_eq!(error(&[1], &[2, 8]), not_der, "trailing zero bit kept");
        assert_eq!(error(&[1], &[3, 9]), not_der, "unused bit set");
        assert_eq!(error(&[1], &[8, 0x80]), not_der);
        let unknown = malformed("subtypes name an unknown type");
        assert_eq!(error(&[1], &[0, 1]), unknown);
        assert_eq!(error(&[1], &[7, 8, 0x80]), unknown);

        // Well-formed oddities parse: the largest cost, the empty set and
        // every registered subtype, and they show in the parent's URI.
        let odd = Fulfillment::from_uri(&b64(&threshold_der(
            &[&leaf],
            &[
                &condition(
                    &[0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
                    &[2, 0xFC],
                ),
                &condition(&[1], &[0]),
            ],
        )))
        .unwrap();
        let Fulfillment::Threshold { subconditions, .. } = &odd else {
            unreachable!()
        };
        assert_eq!(subconditions[0].cost, u64::MAX);
        assert_eq!(subconditions[1].subtypes, 0);
        let uri = odd.condition().uri();
        assert!(uri.ends_with(&format!(
            "&cost={}&subtypes=ed25519-sha-256,prefix-sha-256,preimage-sha-256,rsa-sha-256,zenroom-sha-256",
            u64::MAX
        )), "{uri}");
        // Re-encoding sorts the set, so compare what the order cannot change.
        let reparsed = Fulfillment::from_uri(&odd.to_uri()).unwrap();
        assert_eq!(reparsed.condition(), odd.condition());
        assert_eq!(reparsed.to_uri(), odd.to_uri());
    }

    /// `levels` thresholds nested inside each other around one Ed25519 leaf.
    fn nested_fulfillment(levels: usize) -> Fulfillment {
        let leaf = Fulfillment::from_uri(&b64(&ed25519_der())).unwrap();
        (0..levels).fold(leaf, |inner, _| Fulfillment::Threshold {
            subfulfillments: vec![inner],
            subconditions: vec![],
        })
    }

    fn nested_details(levels: usize) -> Value {
        let leaf = ed25519_details("AKnL4NNf3DGWZJS6cPknBuEGnVsV4A4m5tgebLHaRSZ9");
        (0..levels).fold(leaf, |inner, _| threshold_details(1, vec![inner]))
    }

    #[test]
    fn nesting_is_limited_to_100_levels() {
        // 99 thresholds put the leaf at depth 99, the deepest allowed.
        let deepest = nested_fulfillment(99);
        let parsed = Fulfillment::from_uri(&deepest.to_uri()).unwrap();
        assert_eq!(parsed, deepest);
        let details = Details::from_json(&nested_details(99)).unwrap();
        assert_eq!(details.condition(), parsed.condition());
        assert!(parsed.verify(&unhex(threshold_vectors()["message_hex"].as_str().unwrap())));

        let too_deep = "conditions nested deeper than 100";
        let error = Fulfillment::from_uri(&nested_fulfillment(100).to_uri()).unwrap_err();
        assert_eq!(error.to_string(), too_deep);
        let error = Details::from_json(&nested_details(100)).unwrap_err();
        assert_eq!(error.to_string(), too_deep);
    }

    #[test]
    fn details_are_validated() {
        let key = "AKnL4NNf3DGWZJS6cPknBuEGnVsV4A4m5tgebLHaRSZ9";
        let error = |v: Value| Details::from_json(&v).unwrap_err().to_string();
        assert_eq!(
            error(json!({"type": "zenroom-sha-256", "public_key": key})),
            "unsupported condition type `zenroom-sha-256`"
        );
        assert_eq!(
            error(json!({"type": "preimage-sha-256"})),
            "unsupported condition type `preimage-sha-256`"
        );
        assert_eq!(
            error(json!({"type": "ed25519-sha-256", "public_key": key, "uri": "x"})),
            "condition details are malformed: unknown key `uri`"
        );
        assert_eq!(
            error(json!({"type": "ed25519-sha-256"})),
            "condition details are malformed: `public_key` is missing"
        );
        assert_eq!(
            error(json!({"public_key": key})),
            "condition details are malformed: `type` is missing or not a string"
        );
        assert_eq!(
            error(json!([key])),
            "condition details are malformed: details are not an object"
        );
        for bad_key in [
            json!("0OIl0OIl0OIl0OIl0OIl0OIl0OIl0OIl0OIl0OIl0OI"),
            // 31 and 33 bytes
            json!("4uQeVj5tqViQh7yWWGStvkEG1Zmhx6uasJtWCJziofL"),
            json!("JJEfe6DcPM2ziB2vfUWDV6aHVerXRGkv3TcyvJUNGHZz"),
            json!(""),
        ] {
            let text = bad_key.as_str().unwrap();
            assert_eq!(
                error(json!({"type": "ed25519-sha-256", "public_key": bad_key})),
                format!("public key `{text}` is not base58 of 32 bytes")
            );
        }
        assert_eq!(
            error(json!({"type": "ed25519-sha-256", "public_key": 7})),
            "public key `7` is not base58 of 32 bytes"
        );

        let leaf = ed25519_details(key);
        assert_eq!(
            error(threshold_details(3, vec![leaf.clone(), leaf.clone()])),
            "threshold 3 exceeds 2 subconditions"
        );
        // serde_json writes the exponent sign: `1e0` comes back as `1e+0`.
        for (bad, shown) in [
            ("0", "0"),
            ("101", "101"),
            ("-1", "-1"),
            ("2.0", "2.0"),
            ("1e0", "1e+0"),
            ("\"2\"", "\"2\""),
            ("null", "null"),
        ] {
            let mut details = threshold_details(1, vec![leaf.clone(), leaf.clone()]);
            details["threshold"] = serde_json::from_str(bad).unwrap();
            assert_eq!(
                error(details),
                format!("threshold `{shown}` is not an integer in 1..=100")
            );
        }
        let mut details = threshold_details(1, vec![leaf.clone()]);
        details["subconditions"] = leaf.clone();
        assert_eq!(
            error(details),
            "condition details are malformed: `subconditions` is not an array"
        );
        let mut details = threshold_details(1, vec![leaf.clone()]);
        details["public_key"] = json!(key);
        assert_eq!(
            error(details),
            "condition details are malformed: unknown key `public_key`"
        );
        // An error deep in the tree surfaces as is.
        let nested = threshold_details(1, vec![leaf.clone(), json!({"type": "rsa-sha-256"})]);
        assert_eq!(error(nested), "unsupported condition type `rsa-sha-256`");

        // The largest threshold the schema allows.
        let hundred = threshold_details(100, vec![leaf; 100]);
        let Details::Threshold { threshold, .. } = Details::from_json(&hundred).unwrap() else {
            unreachable!()
        };
        assert_eq!(threshold, 100);
    }

    /// A key whose point has small order verifies a trivial signature under
    /// the cofactorless equation; libsodium and `verify_strict` refuse it.
    #[test]
    fn small_order_keys_are_refused() {
        let identity = {
            let mut bytes = [0u8; 32];
            bytes[0] = 1;
            bytes
        };
        let mut signature = [0u8; 64];
        signature[..32].copy_from_slice(&identity);
        let fulfillment = Fulfillment::Ed25519 {
            public_key: identity,
            signature,
        };
        let key = VerifyingKey::from_bytes(&identity).unwrap();
        assert!(
            key.verify(b"anything", &Signature::from_bytes(&signature))
                .is_ok()
        );
        assert!(!fulfillment.verify(b"anything"));
    }

    /// `cargo test --release -p eventhost conditions -- --ignored --nocapture`
    #[test]
    #[ignore = "timing report, run in release mode"]
    fn time_ed25519_parse_condition_verify() {
        let samples = fixture(include_str!(
            "../../../tests/fixtures/ledger-sample-transactions.json"
        ));
        let tx = &samples["bigchaindb"]["create"];
        let uri = tx["inputs"][0]["fulfillment"].as_str().unwrap();
        let expected = Details::from_json(&tx["outputs"][0]["condition"]["details"])
            .unwrap()
            .condition();
        let message = signing_message(tx, 0);
        let rounds = 20_000;
        let started = Instant::now();
        for _ in 0..rounds {
            let fulfillment = Fulfillment::from_uri(std::hint::black_box(uri)).unwrap();
            assert_eq!(fulfillment.condition(), expected);
            assert!(fulfillment.verify(std::hint::black_box(&message)));
        }
        let each = started.elapsed() / rounds;
        let started = Instant::now();
        for _ in 0..rounds {
            let fulfillment = Fulfillment::from_uri(std::hint::black_box(uri)).unwrap();
            assert_eq!(fulfillment.condition(), expected);
        }
        let without_verify = started.elapsed() / rounds;
        println!(
            "ed25519 from_uri + condition + verify: {each:?} (from_uri + condition alone: {without_verify:?})"
        );
    }
}
