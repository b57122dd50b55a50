//! `Fulfillment::from_uri` on arbitrary strings and on base64url of
//! arbitrary DER: never panics, and whatever parses re-encodes to a URI
//! that parses back to the same condition and encodes the same again.

#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use eventhost::sources::ledger::conditions::Fulfillment;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        check(text);
    }
    check(&URL_SAFE_NO_PAD.encode(data));
});

fn check(uri: &str) {
    let Ok(fulfillment) = Fulfillment::from_uri(uri) else {
        return;
    };
    let condition = fulfillment.condition();
    let _ = (condition.uri(), fulfillment.verify(&[0; 32]));
    let canonical = fulfillment.to_uri();
    let reparsed = Fulfillment::from_uri(&canonical).expect("to_uri output parses");
    assert_eq!(reparsed.condition(), condition);
    assert_eq!(reparsed.to_uri(), canonical);
    if canonical == uri {
        assert_eq!(reparsed, fulfillment);
    }
    assert_eq!(reparsed.signatures().len(), fulfillment.signatures().len());
}
