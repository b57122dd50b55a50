//! Canonical JSON serialization, as the drivers' rapidjson writes it.
//!
//! Transaction ids and signing messages are SHA3-256 digests of
//! `rapidjson.dumps(tx, skipkeys=False, ensure_ascii=False, sort_keys=True)`,
//! so a single byte of difference from python-rapidjson (0.6 to 1.x all agree)
//! turns a valid transaction into one whose id and signatures do not check.
//! Python also decides how numbers come out: the server parses the body with
//! the stdlib `json` module, so integer literals become `int` and anything
//! with a fraction or exponent becomes a `float` that rapidjson writes the way
//! `repr()` does. This module therefore needs serde_json's
//! `arbitrary_precision` feature: it is the only way to see the literal text
//! and tell `1` from `1.0`.

use std::io::Write as _;

use serde_json::{Number, Value};

/// Appends `value` serialized exactly as python-rapidjson's dumps(sort_keys=True, ensure_ascii=False) does.
///
/// Object keys come out in UTF-8 byte order (rapidjson compares `std::string`s)
/// because serde_json's `Map` is a `BTreeMap<String, _>` that iterates in
/// exactly that order; enabling serde_json's `preserve_order` feature anywhere
/// in the build would silently break this, which a test guards against.
pub fn write(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(number) => write_number(number, out),
        Value::String(string) => write_string(string, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            out.push(b'{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(key, out);
                out.push(b':');
                write(item, out);
            }
            out.push(b'}');
        }
    }
}

/// [`write()`] into a fresh string, for callers that hash or compare text.
pub fn to_string(value: &Value) -> String {
    let mut out = Vec::with_capacity(1024);
    write(value, &mut out);
    // Only valid UTF-8 is ever appended: the input strings are `str`s and
    // everything else is ASCII.
    String::from_utf8(out).expect("canonical JSON is UTF-8")
}

/// rapidjson with `ensure_ascii=False` escapes only what JSON requires (the
/// quote, the backslash and C0 controls), uses the short forms where JSON has
/// them and upper-case hex otherwise; `/`, DEL and U+2028/U+2029 stay raw.
pub fn write_string(string: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push(b'"');
    let bytes = string.as_bytes();
    let mut unescaped_from = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        let short: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x0C => b"\\f",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1F => &[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xF)],
            ],
            _ => continue,
        };
        out.extend_from_slice(&bytes[unescaped_from..i]);
        out.extend_from_slice(short);
        unescaped_from = i + 1;
    }
    out.extend_from_slice(&bytes[unescaped_from..]);
    out.push(b'"');
}

/// Integer literals are Python `int`s and come out unchanged (arbitrary size),
/// except `-0`: an `int` has no negative zero. Every other literal is a Python
/// `float`, written the way `repr()` writes it.
fn write_number(number: &Number, out: &mut Vec<u8>) {
    let text = number.as_str();
    let magnitude = text.strip_prefix('-').unwrap_or(text);
    if magnitude.bytes().all(|b| b.is_ascii_digit()) {
        let text = if magnitude == "0" { "0" } else { text };
        out.extend_from_slice(text.as_bytes());
        return;
    }
    match text.parse::<f64>() {
        Ok(float) => write_float(float, out),
        // serde_json only builds numbers from valid JSON number text, which
        // always parses; writing the literal is the least surprising fallback.
        Err(_) => out.extend_from_slice(text.as_bytes()),
    }
}

/// Python's `float.__repr__`: the shortest digit string that round-trips,
/// in positional notation when the decimal exponent is in -4..16 (with at
/// least one digit after the point) and as `d.ddde±XX` otherwise. Python's
/// `json` turns literals too large for a double into infinities, which
/// rapidjson writes as `Infinity`.
fn write_float(float: f64, out: &mut Vec<u8>) {
    if float.is_infinite() {
        let text: &[u8] = if float < 0.0 {
            b"-Infinity"
        } else {
            b"Infinity"
        };
        out.extend_from_slice(text);
        return;
    }
    // Rust's `{:e}` already produces the shortest round-trip digits (e.g.
    // `-1.5e-7`, `1e16`, `-0e0`); format them into `out`, pick the digits
    // and exponent out and rewrite them in Python's layout. This avoids a
    // heap allocation per number.
    let start = out.len();
    write!(out, "{float:e}").expect("writing to a Vec cannot fail");
    let mut digits = [0u8; 17];
    let mut digit_count = 0;
    let mut exponent = 0i32;
    let mut exponent_negative = false;
    let mut in_exponent = false;
    for &byte in &out[start..] {
        match byte {
            b'e' => in_exponent = true,
            b'-' if in_exponent => exponent_negative = true,
            b'0'..=b'9' if in_exponent => exponent = exponent * 10 + i32::from(byte - b'0'),
            b'0'..=b'9' => {
                digits[digit_count] = byte;
                digit_count += 1;
            }
            _ => {}
        }
    }
    if exponent_negative {
        exponent = -exponent;
    }
    // Rust rounds an exact tie between two shortest candidates up, Python
    // (David Gay's dtoa) to the even one: 2**-25 is 2.9802322387695313e-08
    // in Rust and 2.9802322387695312e-08 in Python. Just below a power of
    // two the lower candidate may not read back as `float` (2**-24 stays
    // ...063 in both), so it is only taken when it round-trips; ties are
    // rare enough for that check to allocate.
    let last = digit_count - 1;
    if (digits[last] - b'0') % 2 == 1 && is_midpoint_below(float, &digits[..digit_count], exponent)
    {
        digits[last] -= 1;
        let mantissa: String = digits[..digit_count]
            .iter()
            .map(|&d| char::from(d))
            .collect();
        let candidate = format!("{mantissa}e{}", exponent + 1 - digit_count as i32);
        if candidate.parse() != Ok(float.abs()) {
            digits[last] += 1;
        }
    }
    out.truncate(start);
    if float.is_sign_negative() {
        out.push(b'-');
    }
    let digits = &digits[..digit_count];
    if !(-4..16).contains(&exponent) {
        out.push(digits[0]);
        if digits.len() > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        out.push(b'e');
        out.push(if exponent < 0 { b'-' } else { b'+' });
        let exponent = exponent.unsigned_abs();
        if exponent >= 100 {
            out.push(b'0' + (exponent / 100) as u8);
        }
        out.push(b'0' + (exponent / 10 % 10) as u8);
        out.push(b'0' + (exponent % 10) as u8);
    } else if exponent >= 0 {
        let integer_digits = exponent as usize + 1;
        if digits.len() <= integer_digits {
            out.extend_from_slice(digits);
            out.resize(out.len() + integer_digits - digits.len(), b'0');
            out.extend_from_slice(b".0");
        } else {
            out.extend_from_slice(&digits[..integer_digits]);
            out.push(b'.');
            out.extend_from_slice(&digits[integer_digits..]);
        }
    } else {
        out.extend_from_slice(b"0.");
        out.resize(out.len() + (-exponent - 1) as usize, b'0');
        out.extend_from_slice(digits);
    }
}

/// Whether `float` lies exactly halfway between the decimal `digits` (the
/// first one worth `10^exponent`) and the same digits with the last one
/// decremented. That midpoint is `n × 10^scale` with `n = 10 × digits - 5`
/// odd, so it equals `float = odd × 2^exp2` exactly when the powers of two
/// agree and the odd parts do once the powers of five are moved across.
fn is_midpoint_below(float: f64, digits: &[u8], exponent: i32) -> bool {
    let n = digits
        .iter()
        .fold(0u128, |n, digit| n * 10 + u128::from(digit - b'0'))
        * 10
        - 5;
    let scale = exponent - digits.len() as i32;
    let bits = float.abs().to_bits();
    let (mantissa, exp2) = match bits >> 52 {
        0 => (bits, -1074),
        biased => (bits & ((1 << 52) - 1) | 1 << 52, biased as i32 - 1075),
    };
    let zeros = mantissa.trailing_zeros();
    let (odd, exp2) = (u128::from(mantissa >> zeros), exp2 + zeros as i32);
    let fives = 5u128.checked_pow(scale.unsigned_abs());
    exp2 == scale
        && if scale >= 0 {
            fives.and_then(|fives| n.checked_mul(fives)) == Some(odd)
        } else {
            fives.and_then(|fives| odd.checked_mul(fives)) == Some(n)
        }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use serde_json::{Value, json};
    use sha3::{Digest, Sha3_256};

    use super::*;

    fn canonical(json_text: &str) -> String {
        to_string(&serde_json::from_str(json_text).unwrap())
    }

    fn fixture(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    fn sha3_hex(text: &str) -> String {
        Sha3_256::digest(text.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The id rule of notes §2.4: the hash of the transaction with `id` null.
    fn computed_id(tx: &Value) -> String {
        let mut tx = tx.clone();
        tx["id"] = Value::Null;
        sha3_hex(&to_string(&tx))
    }

    #[test]
    fn keys_are_sorted_by_utf8_bytes_whatever_the_input_order() {
        // Fails if serde_json's `preserve_order` feature gets enabled by any
        // crate in the build: `Map` would then keep insertion order.
        assert_eq!(
            canonical(r#"{"z":1,"ﬀ":2,"𝒜":3,"é":4,"b":5,"aa":6,"a":7,"B":8,"":9}"#),
            r#"{"":9,"B":8,"a":7,"aa":6,"b":5,"z":1,"é":4,"ﬀ":2,"𝒜":3}"#
        );
        let mut built = serde_json::Map::new();
        built.insert("b".into(), json!(1));
        built.insert("a".into(), json!(2));
        assert_eq!(to_string(&Value::Object(built)), r#"{"a":2,"b":1}"#);
    }

    #[test]
    fn output_is_compact_and_keeps_array_order() {
        assert_eq!(
            canonical(
                "{ \"l\" : [ 3 , 1 , {\"y\": null, \"x\": [true, false]} , [] , {} ] ,\n \"k\" : \"v\" }"
            ),
            r#"{"k":"v","l":[3,1,{"x":[true,false],"y":null},[],{}]}"#
        );
    }

    #[test]
    fn write_appends_to_existing_bytes() {
        let mut out = b"prefix:".to_vec();
        write(&json!({"a": [1, "x"]}), &mut out);
        assert_eq!(out, br#"prefix:{"a":[1,"x"]}"#);
    }

    #[test]
    fn strings_are_escaped_like_rapidjson() {
        // Expected output from python-rapidjson 0.6.3 (same in 1.25).
        let mut input = (0u8..0x20).map(char::from).collect::<String>();
        input.push_str("\"\\/\u{7f}\u{2028}\u{2029}é😀 end");
        let expected = concat!(
            r#"{"s":"\u0000\u0001\u0002\u0003\u0004\u0005\u0006\u0007\b\t\n\u000B\f\r"#,
            r#"\u000E\u000F\u0010\u0011\u0012\u0013\u0014\u0015\u0016\u0017\u0018\u0019"#,
            r#"\u001A\u001B\u001C\u001D\u001E\u001F\"\\/"#,
            "\u{7f}\u{2028}\u{2029}é😀 end\"}"
        );
        assert_eq!(to_string(&json!({ "s": input })), expected);
        assert_eq!(canonical(r#""\u001f\/""#), r#""\u001F/""#);
    }

    #[test]
    fn numbers_are_written_as_python_reprs() {
        let fixture = fixture(include_str!(
            "../../../tests/fixtures/canonical-numbers.json"
        ));
        let cases = fixture["cases"].as_array().unwrap();
        assert!(cases.len() >= 520);
        for case in cases {
            let (literal, expected) = (case[0].as_str().unwrap(), case[1].as_str().unwrap());
            assert_eq!(canonical(literal), expected, "literal {literal}");
        }
        for (literal, expected) in [
            ("100.0", "100.0"),
            ("0.0001", "0.0001"),
            ("1e-05", "1e-05"),
            ("1e16", "1e+16"),
            ("1.5e300", "1.5e+300"),
            ("-0.0", "-0.0"),
            ("1e-100", "1e-100"),
            ("-0", "0"),
            ("1e400", "Infinity"),
            ("-1e400", "-Infinity"),
        ] {
            assert_eq!(canonical(literal), expected, "literal {literal}");
        }
        // Numbers built in Rust rather than parsed keep the int/float split.
        assert_eq!(
            to_string(&json!([1, -2, 1.0, 0.5, 1e16])),
            "[1,-2,1.0,0.5,1e+16]"
        );
    }

    #[test]
    fn sample_transaction_ids_are_hashes_of_the_canonical_form() {
        let samples = fixture(include_str!(
            "../../../tests/fixtures/ledger-sample-transactions.json"
        ));
        let mut checked = 0;
        for family in ["bigchaindb", "planetmint"] {
            let transfers = samples[family]["transfers"].as_array().unwrap();
            for tx in std::iter::once(&samples[family]["create"]).chain(transfers) {
                assert_eq!(computed_id(tx), tx["id"].as_str().unwrap(), "{family}");
                checked += 1;
            }
        }
        assert_eq!(checked, 6);
    }

    #[test]
    fn driver_vectors_serialize_byte_for_byte() {
        let vectors = fixture(include_str!(
            "../../../tests/fixtures/ledger-driver-vectors.json"
        ));
        let vectors = vectors["vectors"].as_array().unwrap();
        assert!(vectors.len() >= 40);
        for vector in vectors {
            let name = vector["name"].as_str().unwrap();
            let mut tx = vector["transaction"].clone();
            tx["id"] = Value::Null;
            assert_eq!(to_string(&tx), vector["serialization_for_id"], "{name}");
            assert_eq!(sha3_hex(&to_string(&tx)), vector["computed_id"], "{name}");
            for input in tx["inputs"].as_array_mut().unwrap() {
                input["fulfillment"] = Value::Null;
            }
            assert_eq!(
                to_string(&tx),
                vector["serialization_for_signing"],
                "{name}"
            );
        }
    }

    /// `cargo test --release -p eventhost canonical -- --ignored --nocapture`
    #[test]
    #[ignore = "timing report, run in release mode"]
    fn time_to_string_of_a_typical_transaction() {
        let samples = fixture(include_str!(
            "../../../tests/fixtures/ledger-sample-transactions.json"
        ));
        let vectors = fixture(include_str!(
            "../../../tests/fixtures/ledger-driver-vectors.json"
        ));
        let edge_cases = vectors["vectors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "bigchaindb-2.0/create-serialization-edge-cases")
            .unwrap();
        for (label, tx) in [
            ("sample TRANSFER", &samples["bigchaindb"]["transfers"][0]),
            ("escapes, floats, non-ASCII", &edge_cases["transaction"]),
        ] {
            let rounds = 200_000;
            let started = Instant::now();
            let mut total = 0;
            for _ in 0..rounds {
                total += std::hint::black_box(to_string(std::hint::black_box(tx))).len();
            }
            let elapsed = started.elapsed();
            println!(
                "canonical::to_string, {label}, {} bytes: {:.0} ns",
                total / rounds,
                elapsed.as_nanos() as f64 / rounds as f64
            );
        }
    }
}
