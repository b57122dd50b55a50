//! Bytes → the process-mode framing, both directions: reading never panics
//! nor allocates past the frame limit, and whatever a reader accepts, a
//! writer writes back to the same bytes.

#![no_main]

use eventhost::plugin_runtime::process::frame::{Reader, ToChild, ToHost, Writer};
use libfuzzer_sys::fuzz_target;

/// The frame a writer makes of `message`.
fn encoded<T: serde::Serialize>(message: &T) -> Vec<u8> {
    let mut wire = Vec::new();
    Writer::new(&mut wire)
        .send(message)
        .expect("a decoded message encodes");
    wire
}

fn round_trips<T>(data: &[u8])
where
    T: serde::Serialize + for<'de> serde::Deserialize<'de>,
{
    let mut input = Reader::new(data);
    // Every frame in the input, until its end or the first error. Events
    // have no `PartialEq` (they are shared FFI values): a message read
    // back from its own frame must encode to the same bytes.
    while let Ok(Some(message)) = input.read::<T>() {
        let wire = encoded(&message);
        let again: T = Reader::new(wire.as_slice())
            .read()
            .expect("re-read")
            .expect("one frame");
        assert_eq!(encoded(&again), wire);
    }
}

fuzz_target!(|data: &[u8]| {
    round_trips::<ToHost>(data);
    round_trips::<ToChild>(data);
});
