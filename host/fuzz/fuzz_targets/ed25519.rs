//! `ledger::ed25519::verify` against ed25519-dalek's `verify_strict` on
//! arbitrary (key, message, signature) triples: the same verdict on every
//! one. The seeds are libsodium's edge cases
//! (tests/fixtures/vectors/ed25519-edge-cases.json: small-order and
//! mixed-order keys and R, non-canonical encodings), which the fuzzer
//! mutates.

#![no_main]

use ed25519_dalek::{Signature, VerifyingKey};
use eventhost::sources::ledger::ed25519;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((key, rest)) = data.split_first_chunk::<32>() else {
        return;
    };
    let Some((signature, message)) = rest.split_first_chunk::<64>() else {
        return;
    };
    let strict = VerifyingKey::from_bytes(key).is_ok_and(|key| {
        key.verify_strict(message, &Signature::from_bytes(signature))
            .is_ok()
    });
    assert_eq!(ed25519::verify(key, message, signature), strict);
});
