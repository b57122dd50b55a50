//! The messages between the host and a plugin running in a child process,
//! and their framing: a 4-byte little-endian length, then the message in
//! postcard. Events travel in the event log's own binary form.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

/// Larger frames are refused: a corrupt length must not make a reader
/// allocate gigabytes. An event of a full block stays far below it.
pub const MAX_FRAME: usize = 64 * 1024 * 1024;

/// From the host to the child.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToChild {
    /// First message: which plugin to run and its configuration table.
    Init {
        name: String,
        library: String,
        config_json: String,
    },
    /// The next event of the plugin's queue, in `codec` form. As bytes,
    /// not a sequence of `u8`: the same on the wire in postcard, but one
    /// copy instead of a call per byte (about a third of process mode's
    /// extra CPU per event in benchmark row 6).
    Event {
        seq: u64,
        #[serde(with = "serde_bytes")]
        record: Vec<u8>,
    },
    /// The queue is drained and closed: `run` should return.
    Close,
    /// The answer to a request the child made.
    Reply { id: u64, reply: Reply },
}

/// Answers to the child's requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    Events(Result<Vec<(u64, Vec<u8>)>, String>),
    Head(u64),
    Found(Option<u64>),
}

/// From the child to the host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToHost {
    Ready,
    Failed(String),
    /// Levels as in `LogLevel`: 0 error .. 4 trace.
    Log {
        level: u8,
        message: String,
    },
    Advertise {
        rel: String,
        url: String,
    },
    /// Every event up to and including `seq` is finished: the plugin's cursor.
    Finished(u64),
    Counter {
        name: String,
        labels: Vec<(String, String)>,
        delta: u64,
    },
    Gauge {
        name: String,
        labels: Vec<(String, String)>,
        value: i64,
    },
    ReadEvents {
        id: u64,
        from: u64,
        max: u32,
    },
    Head {
        id: u64,
    },
    FindEvent {
        id: u64,
        key: String,
    },
    /// `run` returned: `None` for success, else the error.
    Exit(Option<String>),
}

/// Writes one framed message and flushes it.
pub fn write<T: Serialize>(out: &mut impl Write, message: &T) -> io::Result<()> {
    feed(out, message)?;
    out.flush()
}

/// Writes one framed message into `out` without flushing it.
pub fn feed<T: Serialize>(out: &mut impl Write, message: &T) -> io::Result<()> {
    let body = postcard::to_allocvec(message).map_err(io::Error::other)?;
    let len = u32::try_from(body.len())
        .ok()
        .filter(|n| *n as usize <= MAX_FRAME)
        .ok_or_else(|| io::Error::other(format!("frame of {} bytes is too large", body.len())))?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(&body)
}

/// Reads one framed message; `Ok(None)` at a clean end of stream.
pub fn read<T: for<'de> Deserialize<'de>>(input: &mut impl Read) -> io::Result<Option<T>> {
    let mut len = [0u8; 4];
    match input.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds the {MAX_FRAME}-byte limit"),
        ));
    }
    let mut body = vec![0u8; len];
    input.read_exact(&mut body)?;
    postcard::from_bytes(&body)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("malformed frame: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_through_the_framing() {
        let messages = vec![
            ToHost::Ready,
            ToHost::Finished(42),
            ToHost::Counter {
                name: "x".into(),
                labels: vec![("a".into(), "b".into())],
                delta: 3,
            },
            ToHost::Exit(Some("boom".into())),
        ];
        let mut wire = Vec::new();
        for m in &messages {
            write(&mut wire, m).unwrap();
        }
        let mut input = wire.as_slice();
        let mut back = Vec::new();
        while let Some(m) = read::<ToHost>(&mut input).unwrap() {
            back.push(m);
        }
        assert_eq!(back, messages);
    }

    #[test]
    fn an_events_record_is_on_the_wire_as_a_sequence_of_bytes_would_be() {
        #[derive(Serialize)]
        enum AsSequence {
            // Variant 0, so that `Event` has the same index as in `ToChild`.
            #[allow(dead_code)]
            Init,
            Event {
                seq: u64,
                record: Vec<u8>,
            },
        }
        let record = vec![0, 1, 200, 255];
        let as_bytes = ToChild::Event {
            seq: 300,
            record: record.clone(),
        };
        let as_sequence = AsSequence::Event { seq: 300, record };
        assert_eq!(
            postcard::to_allocvec(&as_bytes).unwrap(),
            postcard::to_allocvec(&as_sequence).unwrap()
        );
        let back: ToChild =
            postcard::from_bytes(&postcard::to_allocvec(&as_bytes).unwrap()).unwrap();
        assert_eq!(back, as_bytes);
    }

    #[test]
    fn garbage_is_an_error_not_a_huge_allocation_or_a_panic() {
        let mut huge = (u32::MAX).to_le_bytes().to_vec();
        huge.extend([0; 8]);
        assert!(read::<ToChild>(&mut huge.as_slice()).is_err());
        let junk = [3u8, 0, 0, 0, 0xff, 0xff, 0xff];
        assert!(read::<ToChild>(&mut junk.as_slice()).is_err());
        let truncated = [10u8, 0, 0, 0, 1];
        assert!(read::<ToChild>(&mut truncated.as_slice()).is_err());
    }
}
