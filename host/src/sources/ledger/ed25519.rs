//! Ed25519 signature checks, with the reference's verdicts.
//!
//! BigchainDB and Planetmint verify with PyNaCl, i.e. libsodium's
//! `crypto_sign_verify_detached`: S must be canonical (below ℓ), neither the
//! key A nor R may have small order, and R must be, byte for byte, the
//! encoding of [S]B − [k]A with k = SHA-512(R ‖ A ‖ M): the cofactorless
//! equation. ed25519-dalek's `verify_strict` decides the same way. Both are
//! held to libsodium's verdicts on the edge cases (small-order and
//! mixed-order keys and R, non-canonical encodings) in
//! tests/fixtures/vectors/ed25519-edge-cases.json.
//!
//! [`verify`] is `verify_strict` less one field exponentiation: it refuses a
//! small-order R by its encoding instead of decompressing R and multiplying
//! it by the cofactor. Only the 7 y-coordinates below (5 canonical, 2 not)
//! decode to small-order points, and any other R that is not the canonical
//! encoding of the recomputed point fails the byte comparison, as it does in
//! `verify_strict`. Decompressions and the final compression were a fifth of
//! the validation benchmark's samples (perf, tests/bench row 2); one of the
//! three is saved.
//!
//! Why one signature at a time and not ed25519-dalek's batch verification,
//! which costs 16–23 µs per signature in batches of 64–1,000 against
//! 43 µs for `verify_strict` (this machine, 2025): the batch equation is
//! cofactorless and checks a random combination Σ zᵢ·(Rᵢ − [Sᵢ]B + [kᵢ]Aᵢ)
//! = 0. A signer can put a torsion component into R (the fixture's
//! `r-mixed-order-*`): libsodium refuses it, while the batch accepts it
//! whenever zᵢ is a multiple of the torsion's order, which is 1 in 8 for an
//! order-8 point, and zᵢ is derived from the batch's own contents, so a
//! signer can grind a message until it passes
//! (`batch_verification_accepts_what_libsodium_refuses` shows one).
//! Screening every R and A for torsion first keeps the verdict but costs
//! a scalar multiplication by ℓ per point, 31 µs, which is more than the
//! batch saves; a random combination cannot stand in for that screen, as
//! each one only halves the chance that torsion components cancel. So the
//! verdict stays exact and the check stays single.

use std::sync::LazyLock;

use curve25519_dalek::constants::EIGHT_TORSION;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use sha2::{Digest, Sha512};

/// Whether `signature` (R ‖ S) is a valid signature of `message` by
/// `public_key`, as libsodium and `verify_strict` decide.
pub fn verify(public_key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
    let (r, s) = signature.split_at(32);
    let Ok(s) = <[u8; 32]>::try_from(s) else {
        return false;
    };
    let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(s)) else {
        return false;
    };
    if is_small_order_encoding(r) {
        return false;
    }
    let Some(a) = CompressedEdwardsY(*public_key).decompress() else {
        return false;
    };
    if a.is_small_order() {
        return false;
    }
    let mut hasher = Sha512::new();
    hasher.update(r);
    hasher.update(public_key);
    hasher.update(message);
    let k = Scalar::from_bytes_mod_order_wide(&hasher.finalize().into());
    EdwardsPoint::vartime_double_scalar_mul_basepoint(&k, &-a, &s)
        .compress()
        .as_bytes()
        == r
}

/// Whether `bytes` decode to a point of small order: their y-coordinate
/// (the sign bit aside) is one of the small-order points', canonical or
/// plus p.
fn is_small_order_encoding(bytes: &[u8]) -> bool {
    let mut y = [0u8; 32];
    y.copy_from_slice(bytes);
    y[31] &= 0x7f;
    SMALL_ORDER_Y.contains(&y)
}

/// The encodings of the y-coordinates of the 8 small-order points (5
/// distinct values: 1, −1, 0 and the two of order 8), and the non-canonical
/// y + p of those below 19 (0 and 1), which decode to the same points.
static SMALL_ORDER_Y: LazyLock<Vec<[u8; 32]>> = LazyLock::new(|| {
    let mut ys: Vec<[u8; 32]> = EIGHT_TORSION
        .iter()
        .map(|point| {
            let mut y = point.compress().to_bytes();
            y[31] &= 0x7f;
            y
        })
        .collect();
    ys.sort_unstable();
    ys.dedup();
    let plus_p: Vec<[u8; 32]> = ys
        .iter()
        .filter(|y| y[1..].iter().all(|&b| b == 0) && y[0] < 19)
        .map(|y| {
            // p = 2^255 − 19 is ed ff … ff 7f in little-endian.
            let mut sum = [0xff; 32];
            sum[0] = y[0] + 0xed;
            sum[31] = 0x7f;
            sum
        })
        .collect();
    ys.extend(plus_p);
    ys
});

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
    use serde_json::Value;

    fn unhex<const N: usize>(text: &str) -> [u8; N] {
        let bytes: Vec<u8> = (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect();
        bytes.try_into().unwrap()
    }

    fn verify_strict(public_key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
        VerifyingKey::from_bytes(public_key).is_ok_and(|key| {
            key.verify_strict(message, &Signature::from_bytes(signature))
                .is_ok()
        })
    }

    fn cases() -> Vec<Value> {
        let text = include_str!("../../../../tests/fixtures/vectors/ed25519-edge-cases.json");
        let file: Value = serde_json::from_str(text).unwrap();
        file["cases"].as_array().unwrap().clone()
    }

    #[test]
    fn small_order_encodings_are_the_seven_libsodium_lists() {
        assert_eq!(SMALL_ORDER_Y.len(), 7);
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(is_small_order_encoding(&identity));
        let mut minus_one = [0xff; 32];
        minus_one[0] = 0xec;
        minus_one[31] = 0x7f;
        assert!(is_small_order_encoding(&minus_one));
        minus_one[31] = 0xff;
        assert!(
            is_small_order_encoding(&minus_one),
            "the sign bit is ignored"
        );
        let mut p_plus_one = [0xff; 32];
        p_plus_one[0] = 0xee;
        p_plus_one[31] = 0x7f;
        assert!(is_small_order_encoding(&p_plus_one));
        let key = SigningKey::from_bytes(&[7; 32]).verifying_key().to_bytes();
        assert!(!is_small_order_encoding(&key));
    }

    /// libsodium's verdict (PyNaCl, tests/fixtures/vectors/gen_ed25519.py)
    /// on every edge case, for this check and for `verify_strict`.
    #[test]
    fn libsodium_verdicts() {
        let cases = cases();
        assert!(cases.len() >= 50);
        let mut accepted = 0;
        for case in &cases {
            let name = case["name"].as_str().unwrap();
            let key: [u8; 32] = unhex(case["public_key"].as_str().unwrap());
            let message: [u8; 32] = unhex(case["message"].as_str().unwrap());
            let signature: [u8; 64] = unhex(case["signature"].as_str().unwrap());
            let expected = case["libsodium_accepts"].as_bool().unwrap();
            assert_eq!(verify(&key, &message, &signature), expected, "{name}");
            assert_eq!(
                verify_strict(&key, &message, &signature),
                expected,
                "verify_strict: {name}"
            );
            accepted += usize::from(expected);
        }
        assert_eq!(accepted, 2, "the valid one and the exact mixed-order key");
    }

    /// Small pseudo-random numbers: the cases must be the same every run.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// Valid signatures, each damaged in one of the ways an attacker could
    /// choose: both checks agree on every one.
    #[test]
    fn agrees_with_verify_strict_on_damaged_signatures() {
        let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
        let small_order: Vec<[u8; 32]> = SMALL_ORDER_Y.clone();
        let (mut accepted, mut refused) = (0, 0);
        for i in 0..300u64 {
            let signer = SigningKey::from_bytes(&[(i % 251) as u8; 32]);
            let message = rng.next().to_le_bytes();
            let mut key = signer.verifying_key().to_bytes();
            let mut signature = signer.sign(&message).to_bytes();
            let bit = (rng.next() % 256) as usize;
            match i % 6 {
                0 => {}
                1 => signature[bit / 8] ^= 1 << (bit % 8),
                2 => signature[32 + bit / 8] ^= 1 << (bit % 8),
                3 => key[bit / 8] ^= 1 << (bit % 8),
                4 => {
                    let pick = &small_order[(rng.next() % 7) as usize];
                    signature[..32].copy_from_slice(pick);
                    signature[31] |= (rng.next() as u8) & 0x80;
                }
                _ => {
                    let pick = &small_order[(rng.next() % 7) as usize];
                    key.copy_from_slice(pick);
                }
            }
            let strict = verify_strict(&key, &message, &signature);
            assert_eq!(verify(&key, &message, &signature), strict, "case {i}");
            if strict {
                accepted += 1;
            } else {
                refused += 1;
            }
        }
        assert!(accepted >= 50 && refused >= 200, "{accepted} / {refused}");
    }

    /// Why the ledger does not batch: a signer who puts a torsion component
    /// into R gets a signature libsodium refuses, and ed25519-dalek's batch
    /// equation accepts it for about one message in eight.
    #[test]
    fn batch_verification_accepts_what_libsodium_refuses() {
        let signer = SigningKey::from_bytes(&[42; 32]);
        let key = signer.verifying_key();
        let a = signer.to_scalar();
        let torsion = EIGHT_TORSION[1];
        let mut passed = 0;
        for m in 0..64u64 {
            let message = m.to_le_bytes();
            let r = Scalar::from(1000 + m);
            let big_r = (EdwardsPoint::mul_base(&r) + torsion).compress();
            let mut hasher = Sha512::new();
            hasher.update(big_r.as_bytes());
            hasher.update(key.as_bytes());
            hasher.update(message);
            let k = Scalar::from_bytes_mod_order_wide(&hasher.finalize().into());
            let mut bytes = [0u8; 64];
            bytes[..32].copy_from_slice(big_r.as_bytes());
            bytes[32..].copy_from_slice((r + k * a).as_bytes());
            assert!(!verify(key.as_bytes(), &message, &bytes));
            let signature = Signature::from_bytes(&bytes);
            if ed25519_dalek::verify_batch(&[&message[..]], &[signature], &[key]).is_ok() {
                passed += 1;
            }
        }
        assert!(
            (1..=24).contains(&passed),
            "{passed} of 64 passed the batch equation"
        );
    }
}
