//! Bytes → the process-mode framing, both directions: reading never panics
//! nor allocates past the frame limit, and whatever a reader accepts, a
//! writer writes back to the same message.

#![no_main]

use eventhost::process::frame::{self, ToChild, ToHost};
use libfuzzer_sys::fuzz_target;

fn round_trips<T>(data: &[u8])
where
    T: serde::Serialize + for<'de> serde::Deserialize<'de> + PartialEq + std::fmt::Debug,
{
    let mut input = data;
    // Every frame in the input, until its end or the first error.
    while let Ok(Some(message)) = frame::read::<T>(&mut input) {
        let mut wire = Vec::new();
        frame::write(&mut wire, &message).expect("a decoded message encodes");
        let again: T = frame::read(&mut wire.as_slice())
            .expect("re-read")
            .expect("one frame");
        assert_eq!(again, message);
    }
}

fuzz_target!(|data: &[u8]| {
    round_trips::<ToHost>(data);
    round_trips::<ToChild>(data);
});
