//! The messages between the host and a plugin running in a child process,
//! and their framing: a 4-byte little-endian length, then the message in
//! postcard. Events travel in the event log's own binary form, as many
//! per frame as the host's queue has ready (up to a bound).

use std::io::{self, Read, Write};

use eventhost_plugin_api::SharedEvent;
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::plugin_runtime::services::EventBatch;

/// Larger frames are refused: a corrupt length must not make a reader
/// allocate gigabytes. An event of a full block stays far below it.
pub const MAX_FRAME: usize = 64 * 1024 * 1024;

/// Events in one frame at most: a frame costs a system call on each side
/// and a wake-up of the child's reader, so a busy queue's events travel
/// together (row 6 of the benchmarks: one frame per event cost a third of
/// process mode's added CPU per event).
pub const FRAME_EVENTS: usize = 256;

/// Bytes of events in one frame at most, by [`codec::encoded_len_bound`]:
/// few events of large blocks per frame, and never more than [`MAX_FRAME`].
const FRAME_EVENT_BYTES: usize = 1024 * 1024;

/// A writer keeps a buffer this large between frames; a larger one, for
/// an unusually large frame, is let go.
const KEPT_BUFFER: usize = 2 * FRAME_EVENT_BYTES;

/// From the host to the child.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToChild {
    /// First message: which plugin to run and its configuration table.
    Init {
        name: String,
        library: String,
        config_json: String,
    },
    /// The next events of the plugin's queue, in order.
    Events(EventBatch),
    /// The queue is drained and closed: `run` should return.
    Close,
    /// The answer to the service call `id` the child made, encoded as the
    /// service's answer type (see `plugin_runtime::services`).
    Answer {
        id: u64,
        #[serde(with = "serde_bytes")]
        answer: Vec<u8>,
    },
}

/// From the child to the host. How far the plugin got does not travel
/// here: see [`super::cursor`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToHost {
    /// A host service the plugin called, encoded as a `context::Call`;
    /// `id` is set when the plugin waits for the answer.
    Call {
        id: Option<u64>,
        #[serde(with = "serde_bytes")]
        call: Vec<u8>,
    },
    /// `run` returned: `None` for success, else the error.
    Exit(Option<String>),
}

/// The `Events` messages that carry `events`, in order: up to
/// [`FRAME_EVENTS`] each, fewer when they are large, at least one.
pub fn events_messages(events: Vec<SharedEvent>) -> Vec<ToChild> {
    let mut messages = Vec::new();
    let mut batch = Vec::with_capacity(events.len().min(FRAME_EVENTS));
    let mut bytes = 0;
    for event in events {
        let size = codec::encoded_len_bound(&event);
        if !batch.is_empty() && (batch.len() == FRAME_EVENTS || bytes + size > FRAME_EVENT_BYTES) {
            messages.push(ToChild::Events(EventBatch(std::mem::take(&mut batch))));
            bytes = 0;
        }
        bytes += size;
        batch.push(event);
    }
    if !batch.is_empty() {
        messages.push(ToChild::Events(EventBatch(batch)));
    }
    messages
}

/// Writes framed messages, each with one write of a buffer it keeps.
pub struct Writer<W> {
    out: W,
    buf: Vec<u8>,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W) -> Writer<W> {
        Writer {
            out,
            buf: Vec::new(),
        }
    }

    /// Writes one framed message.
    pub fn send<T: Serialize>(&mut self, message: &T) -> io::Result<()> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        buf.extend_from_slice(&[0; 4]);
        let mut buf = postcard::to_extend(message, buf).map_err(io::Error::other)?;
        let len = buf.len() - 4;
        let prefix = u32::try_from(len)
            .ok()
            .filter(|n| *n as usize <= MAX_FRAME)
            .ok_or_else(|| io::Error::other(format!("frame of {len} bytes is too large")))?;
        buf[..4].copy_from_slice(&prefix.to_le_bytes());
        let written = self.out.write_all(&buf);
        if buf.capacity() <= KEPT_BUFFER {
            self.buf = buf;
        }
        written
    }
}

/// A reader's buffer to begin with; it grows for a larger frame.
const READ_BUFFER: usize = 64 * 1024;

/// Reads framed messages. The host reads its child's socket with a timeout
/// (to look at acknowledgements and deadlines while the child is quiet): a
/// timeout may fall in the middle of a frame, so what was read of it is
/// kept for the next call instead of being lost with the framing.
pub struct Reader<R> {
    input: R,
    /// Bytes read into `buf[start..end]` and not yet taken as frames.
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl<R: Read> Reader<R> {
    pub fn new(input: R) -> Reader<R> {
        Reader {
            input,
            buf: Vec::new(),
            start: 0,
            end: 0,
        }
    }

    /// The next message; `Ok(None)` at a clean end of stream (between
    /// frames). A timeout of the stream is returned as its error, and the
    /// next call goes on where this one stopped.
    pub fn read<T: for<'de> Deserialize<'de>>(&mut self) -> io::Result<Option<T>> {
        loop {
            let needed = match self.take()? {
                Taken::Message(message) => return Ok(Some(message)),
                Taken::Needs(needed) => needed,
            };
            self.make_room(needed);
            match self.input.read(&mut self.buf[self.end..]) {
                Ok(0) if self.start == self.end => return Ok(None),
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "the stream ended {} bytes into a frame",
                            self.end - self.start
                        ),
                    ));
                }
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The first whole frame read, or how many bytes the frame needs.
    fn take<T: for<'de> Deserialize<'de>>(&mut self) -> io::Result<Taken<T>> {
        let read = &self.buf[self.start..self.end];
        let Some(prefix) = read.first_chunk::<4>() else {
            return Ok(Taken::Needs(4));
        };
        let len = u32::from_le_bytes(*prefix) as usize;
        if len > MAX_FRAME {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("frame of {len} bytes exceeds the {MAX_FRAME}-byte limit"),
            ));
        }
        let Some(body) = read.get(4..4 + len) else {
            return Ok(Taken::Needs(4 + len));
        };
        let message = postcard::from_bytes(body).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidData, format!("malformed frame: {e}"))
        })?;
        self.start += 4 + len;
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        }
        Ok(Taken::Message(message))
    }

    /// Room after `end` for more bytes, and for a frame of `needed` bytes
    /// from `start`: the unread bytes move to the front, and the buffer
    /// grows only for a frame larger than it (a large one is let go with
    /// that frame's bytes, once a frame fits the usual size again).
    fn make_room(&mut self, needed: usize) {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
        }
        let size = needed.max(READ_BUFFER);
        if self.buf.len() < size || (self.buf.len() > KEPT_BUFFER && size <= KEPT_BUFFER) {
            self.buf.resize(size.max(self.end), 0);
            self.buf.shrink_to_fit();
        }
    }
}

enum Taken<T> {
    Message(T),
    /// The frame at the front needs this many bytes in all.
    Needs(usize),
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi_stable::std_types::{RArc, RString, RVec};
    use eventhost_plugin_api::{BLOCK_VALID, Event};

    fn event(seq: u64, transaction_bytes: usize) -> SharedEvent {
        RArc::new(Event {
            event_type: BLOCK_VALID,
            seq,
            height: seq,
            block_hash: format!("{seq:064x}").into(),
            timestamp_ms: 1,
            transactions: RVec::from(vec![RString::from("t".repeat(transaction_bytes))]),
            rejections: RVec::new(),
        })
    }

    #[test]
    fn messages_round_trip_through_the_framing() {
        let messages = vec![
            ToHost::Call {
                id: None,
                call: vec![1, 2],
            },
            ToHost::Call {
                id: Some(7),
                call: vec![],
            },
            ToHost::Exit(Some("boom".into())),
        ];
        let mut wire = Writer::new(Vec::new());
        for m in &messages {
            wire.send(m).unwrap();
        }
        let mut input = Reader::new(wire.out.as_slice());
        let mut back = Vec::new();
        while let Some(m) = input.read::<ToHost>().unwrap() {
            back.push(m);
        }
        assert_eq!(back, messages);
    }

    /// A stream that hands out a byte or two at a time and times out
    /// between them, as the host's socket read with a timeout does.
    struct Trickle {
        bytes: Vec<u8>,
        at: usize,
        timed_out: bool,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.timed_out = !self.timed_out;
            if self.timed_out {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = (self.bytes.len() - self.at)
                .min(buf.len())
                .min(1 + self.at % 2);
            buf[..n].copy_from_slice(&self.bytes[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    #[test]
    fn a_timeout_in_the_middle_of_a_frame_loses_nothing() {
        let messages: Vec<ToHost> = (0..20)
            .map(|i| ToHost::Call {
                id: Some(i),
                call: vec![i as u8; i as usize * 7],
            })
            .collect();
        let mut wire = Writer::new(Vec::new());
        for m in &messages {
            wire.send(m).unwrap();
        }
        let mut input = Reader::new(Trickle {
            bytes: wire.out,
            at: 0,
            timed_out: false,
        });
        let (mut back, mut timeouts) = (Vec::new(), 0);
        loop {
            match input.read::<ToHost>() {
                Ok(Some(m)) => back.push(m),
                Ok(None) => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => timeouts += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(back, messages);
        assert!(timeouts > 100, "{timeouts} timeouts: most fell mid-frame");
    }

    #[test]
    fn a_queues_events_travel_in_order_many_per_frame_and_fewer_when_large() {
        let small: Vec<SharedEvent> = (1..=600).map(|seq| event(seq, 500)).collect();
        let messages = events_messages(small.clone());
        let sizes: Vec<usize> = messages
            .iter()
            .map(|m| match m {
                ToChild::Events(EventBatch(events)) => events.len(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(sizes, [256, 256, 88]);

        let mut wire = Writer::new(Vec::new());
        for m in &messages {
            wire.send(m).unwrap();
        }
        let mut input = Reader::new(wire.out.as_slice());
        let mut back = Vec::new();
        while let Some(ToChild::Events(EventBatch(events))) = input.read().unwrap() {
            back.extend(events);
        }
        assert_eq!(back, small, "every event, decoded as it was, in order");

        // Events of 300 KB blocks: three to a frame of at most 1 MiB.
        let large: Vec<SharedEvent> = (1..=7).map(|seq| event(seq, 300_000)).collect();
        let sizes: Vec<usize> = events_messages(large)
            .iter()
            .map(|m| match m {
                ToChild::Events(EventBatch(events)) => events.len(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(sizes, [3, 3, 1]);
        // One larger than a frame's share still travels, alone.
        assert_eq!(events_messages(vec![event(1, 2 << 20)]).len(), 1);
    }

    #[test]
    fn garbage_is_an_error_not_a_huge_allocation_or_a_panic() {
        let mut huge = (u32::MAX).to_le_bytes().to_vec();
        huge.extend([0; 8]);
        assert!(Reader::new(huge.as_slice()).read::<ToChild>().is_err());
        let junk = [3u8, 0, 0, 0, 0xff, 0xff, 0xff];
        assert!(Reader::new(junk.as_slice()).read::<ToChild>().is_err());
        let truncated = [10u8, 0, 0, 0, 1];
        assert!(Reader::new(truncated.as_slice()).read::<ToChild>().is_err());
        // An events frame whose record is not one (postcard keeps no
        // message of a decoding error, so only its kind is asserted).
        let mut wire = Writer::new(Vec::new());
        wire.send(&(1u32, vec![(5u64, serde_bytes::Bytes::new(&[9, 9]))]))
            .unwrap();
        let error = Reader::new(wire.out.as_slice())
            .read::<ToChild>()
            .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{error}");
    }
}
