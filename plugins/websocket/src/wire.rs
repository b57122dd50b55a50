//! WebSocket frames after the upgrade (RFC 6455, section 5), on both sides
//! of a connection.
//!
//! Server frames are never masked, so every client of a stream receives
//! byte-identical frames: each message is framed once, when its event is
//! published ([`Frames`]), and the same shared bytes are written to every
//! socket ([`Writer`]), instead of a WebSocket library framing and copying
//! each message into each client's write buffer. Clients only send control
//! frames, or messages the streams ignore, so the [`Reader`] keeps nothing
//! of a data frame: it checks the frame, its size and its UTF-8 as the
//! bytes pass, and returns only pings, pongs and the close frame.

use std::collections::VecDeque;
use std::io::{self, IoSlice};

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const FIN: u8 = 0x80;
const RSV: u8 = 0x70;
const MASKED: u8 = 0x80;

const CONTINUATION: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// Close codes the streams use (RFC 6455, section 7.4.1).
pub mod code {
    pub const NORMAL: u16 = 1000;
    pub const AWAY: u16 = 1001;
    pub const PROTOCOL: u16 = 1002;
    pub const INVALID: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const SIZE: u16 = 1009;
    pub const ERROR: u16 = 1011;
    pub const AGAIN: u16 = 1013;
}

/// The largest payload of a control frame.
const MAX_CONTROL: usize = 125;

/// Appends a frame of `opcode` holding `payload`, unmasked.
fn frame(opcode: u8, payload: &[u8], out: &mut Vec<u8>) {
    out.push(FIN | opcode);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
}

/// The frame header's length before a payload of `len` bytes.
fn header_len(len: usize) -> usize {
    match len {
        n if n < 126 => 2,
        n if n <= usize::from(u16::MAX) => 4,
        _ => 10,
    }
}

/// A ping frame with an empty payload.
pub fn ping() -> Bytes {
    Bytes::from_static(&[FIN | PING, 0])
}

/// The pong answering a ping that carried `payload`.
pub fn pong(payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(2 + payload.len());
    frame(PONG, &payload[..payload.len().min(MAX_CONTROL)], &mut out);
    Bytes::from(out)
}

/// A close frame: with `code` and `reason` (cut to fit at a character
/// boundary), or empty.
pub fn close(reason: Option<(u16, &str)>) -> Bytes {
    let mut payload = Vec::new();
    if let Some((code, reason)) = reason {
        payload.extend_from_slice(&code.to_be_bytes());
        let mut end = reason.len().min(MAX_CONTROL - 2);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        payload.extend_from_slice(&reason.as_bytes()[..end]);
    }
    let mut out = Vec::with_capacity(2 + payload.len());
    frame(CLOSE, &payload, &mut out);
    Bytes::from(out)
}

/// Text messages framed once, contiguous in one shared buffer.
#[derive(Debug, Clone, Default)]
pub struct Frames {
    bytes: Bytes,
    /// Where each frame starts in `bytes`, and where the last one ends.
    bounds: Vec<usize>,
}

impl Frames {
    /// Frames each of `texts` as a text message.
    pub fn text<T: AsRef<str>>(texts: &[T]) -> Frames {
        let size = texts
            .iter()
            .map(|t| header_len(t.as_ref().len()) + t.as_ref().len())
            .sum();
        let mut out = Vec::with_capacity(size);
        let mut bounds = Vec::with_capacity(texts.len() + 1);
        for text in texts {
            bounds.push(out.len());
            frame(TEXT, text.as_ref().as_bytes(), &mut out);
        }
        bounds.push(out.len());
        Frames {
            bytes: Bytes::from(out),
            bounds,
        }
    }

    pub fn len(&self) -> usize {
        self.bounds.len().saturating_sub(1)
    }

    /// Every frame, as one shared slice.
    pub fn all(&self) -> Bytes {
        self.bytes.clone()
    }

    /// Frame `i`, shared.
    #[cfg(test)]
    pub fn frame(&self, i: usize) -> Bytes {
        self.bytes.slice(self.bounds[i]..self.bounds[i + 1])
    }

    /// Frames `from..to`, as one shared slice.
    pub fn range(&self, from: usize, to: usize) -> Bytes {
        self.bytes.slice(self.bounds[from]..self.bounds[to])
    }

    /// The text of message `i`.
    #[cfg(test)]
    pub fn text_of(&self, i: usize) -> &str {
        let frame = &self.bytes[self.bounds[i]..self.bounds[i + 1]];
        let len = payload_len(frame.len());
        // Framed from a `&str` by `Frames::text`.
        std::str::from_utf8(&frame[frame.len() - len..]).unwrap_or_default()
    }

    /// The bytes of every message's text (what clients are sent, less the
    /// frame headers), for the metrics.
    pub fn payload_bytes(&self, i: usize) -> usize {
        payload_len(self.bounds[i + 1] - self.bounds[i])
    }
}

/// The payload length of a frame of `frame_len` bytes made by [`frame`].
fn payload_len(frame_len: usize) -> usize {
    if frame_len < 2 + 126 {
        frame_len - 2
    } else if frame_len <= 4 + usize::from(u16::MAX) {
        frame_len - 4
    } else {
        frame_len - 10
    }
}

/// Shared bytes queued for one socket, written with as few system calls as
/// the kernel allows (vectored writes). It holds no socket: the
/// connection polls it with its own, between reads (see
/// [`crate::connection`]), so that one task reads and writes without
/// splitting the socket in two.
#[derive(Default)]
pub struct Writer {
    queued: VecDeque<Bytes>,
    /// Bytes went out since the socket was last flushed (TLS holds them
    /// until then).
    unflushed: bool,
}

/// Slices handed to one vectored write: Linux takes up to 1,024.
const MAX_SLICES: usize = 64;

/// Queue slots kept once everything queued is written: a filtered
/// client's batch can be hundreds of slices, and an idle client should
/// not keep room for them (row 4c).
const KEEP_SLOTS: usize = 8;

impl Writer {
    /// Queues `bytes` (whole frames) to be written at the next flush.
    pub fn push(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.queued.push_back(bytes);
        }
    }

    /// Whether everything queued is written and flushed.
    pub fn is_idle(&self) -> bool {
        self.queued.is_empty() && !self.unflushed
    }

    /// Writes everything queued to `io`, and flushes it.
    pub fn poll_flush<W: AsyncWrite + Unpin>(
        &mut self,
        io: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while !self.queued.is_empty() {
            let written = {
                let mut slices = [IoSlice::new(&[]); MAX_SLICES];
                let mut count = 0;
                for (slice, bytes) in slices.iter_mut().zip(&self.queued) {
                    *slice = IoSlice::new(bytes);
                    count += 1;
                }
                ready!(Pin::new(&mut *io).poll_write_vectored(cx, &slices[..count]))?
            };
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.unflushed = true;
            self.consume(written);
        }
        if self.queued.capacity() > KEEP_SLOTS {
            self.queued.shrink_to(KEEP_SLOTS);
        }
        if self.unflushed {
            ready!(Pin::new(io).poll_flush(cx))?;
            self.unflushed = false;
        }
        Poll::Ready(Ok(()))
    }

    fn consume(&mut self, mut written: usize) {
        while written > 0 {
            let Some(front) = self.queued.front_mut() else {
                return;
            };
            if written >= front.len() {
                written -= front.len();
                self.queued.pop_front();
            } else {
                front.advance(written);
                return;
            }
        }
    }
}

/// What a client sent that the server acts on.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A ping, with its payload: answer it with a pong.
    Ping(Bytes),
    Pong,
    /// A close frame, with its code if it had one.
    Close(Option<u16>),
}

/// Why reading a client's frames stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadError {
    /// The connection ended or failed.
    Gone,
    /// A message over the limit, in bytes.
    TooBig,
    /// A frame that breaks the protocol: what is wrong with it.
    Protocol(String),
    /// A text message that is not UTF-8.
    Utf8,
}

/// Reads a client's frames, keeping nothing of its messages. It holds no
/// socket (the connection polls it with its own) and no buffer: it reads
/// as many bytes as the frame in hand needs, a data frame's through a
/// buffer on the stack of the poll, so that an idle client's reader is a
/// few dozen bytes (row 4c).
pub struct Reader {
    max_message: usize,
    /// The data message in progress, if any: its opcode and size so far.
    message: Option<(u8, usize)>,
    /// The end of the text message in progress that was not a whole
    /// character yet: `partial_len` (at most 3) bytes.
    partial: [u8; 3],
    partial_len: u8,
    frame: Frame,
}

/// Where the reader is in the current frame.
enum Frame {
    /// The head: `have` of its bytes read (2 to 14 of them, by its length).
    Head { bytes: [u8; MAX_HEAD], have: u8 },
    /// A control frame's payload, `have` of its bytes read.
    Control {
        opcode: u8,
        mask: [u8; 4],
        payload: Vec<u8>,
        have: usize,
    },
    /// A data frame's payload: `left` bytes to check and drop, `offset`
    /// into it.
    Data {
        left: u64,
        offset: usize,
        mask: [u8; 4],
        text: bool,
        fin: bool,
    },
}

/// A client's frame head: 2 bytes, up to 8 of extended length, the mask.
const MAX_HEAD: usize = 14;

/// What a data frame's payload is read through, on the stack.
const SKIP_CHUNK: usize = 512;

impl Frame {
    fn head() -> Frame {
        Frame::Head {
            bytes: [0; MAX_HEAD],
            have: 0,
        }
    }
}

impl Reader {
    pub fn new(max_message: usize) -> Reader {
        Reader {
            max_message,
            message: None,
            partial: [0; 3],
            partial_len: 0,
            frame: Frame::head(),
        }
    }

    /// The next ping, pong or close frame from `io`, after checking (and
    /// dropping) any data frames before it.
    pub fn poll_next<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Incoming, ReadError>> {
        loop {
            match &mut self.frame {
                Frame::Head { bytes, have } => {
                    let need = head_len(&bytes[..usize::from(*have)])?;
                    if usize::from(*have) < need {
                        let n = ready!(read_some(io, cx, &mut bytes[usize::from(*have)..need]))?;
                        *have += n as u8;
                        continue;
                    }
                    let head = *bytes;
                    if let Some(incoming) = self.start(&head[..need])? {
                        return Poll::Ready(Ok(incoming));
                    }
                }
                Frame::Control {
                    opcode,
                    mask,
                    payload,
                    have,
                } => {
                    if *have < payload.len() {
                        *have += ready!(read_some(io, cx, &mut payload[*have..]))?;
                        continue;
                    }
                    let (opcode, mask, mut payload) = (*opcode, *mask, std::mem::take(payload));
                    self.frame = Frame::head();
                    unmask(&mut payload, mask, 0);
                    return Poll::Ready(control(opcode, payload));
                }
                Frame::Data {
                    left,
                    offset,
                    mask,
                    text,
                    fin,
                } => {
                    if *left > 0 {
                        let mut chunk = [0; SKIP_CHUNK];
                        let want = usize::try_from(*left).map_or(SKIP_CHUNK, |l| l.min(SKIP_CHUNK));
                        let n = ready!(read_some(io, cx, &mut chunk[..want]))?;
                        let (mask, from, text) = (*mask, *offset, *text);
                        *left -= n as u64;
                        *offset += n;
                        if text {
                            unmask(&mut chunk[..n], mask, from);
                            self.check_utf8(&chunk[..n])?;
                        }
                        continue;
                    }
                    let fin = *fin;
                    self.frame = Frame::head();
                    if fin {
                        self.message = None;
                        if self.partial_len > 0 {
                            return Poll::Ready(Err(ReadError::Utf8));
                        }
                    }
                }
            }
        }
    }

    /// Starts the frame whose whole `head` is read: its payload is next,
    /// or, for a control frame without one, what it says.
    fn start(&mut self, head: &[u8]) -> Result<Option<Incoming>, ReadError> {
        let (fin, opcode) = (head[0] & FIN != 0, head[0] & 0x0F);
        let len = match head[1] & 0x7F {
            126 => u64::from(u16::from_be_bytes([head[2], head[3]])),
            127 => u64::from_be_bytes(head[2..10].try_into().expect("8 bytes")),
            n => u64::from(n),
        };
        let mask: [u8; 4] = head[head.len() - 4..].try_into().expect("4 bytes");
        match opcode {
            CLOSE | PING | PONG => {
                if !fin {
                    return Err(protocol("a control frame must not be fragmented"));
                }
                if len > MAX_CONTROL as u64 {
                    return Err(protocol("a control frame's payload is over 125 bytes"));
                }
                if len == 0 {
                    self.frame = Frame::head();
                    return control(opcode, Vec::new()).map(Some);
                }
                self.frame = Frame::Control {
                    opcode,
                    mask,
                    payload: vec![0; len as usize],
                    have: 0,
                };
                Ok(None)
            }
            TEXT | BINARY | CONTINUATION => {
                let (kind, before) = match (opcode, self.message) {
                    (CONTINUATION, Some(message)) => message,
                    (CONTINUATION, None) => {
                        return Err(protocol("a continuation frame without a message"));
                    }
                    (_, Some(_)) => {
                        return Err(protocol("a new message before the last one ended"));
                    }
                    (kind, None) => (kind, 0),
                };
                let size = (before as u64).saturating_add(len);
                if size > self.max_message as u64 {
                    return Err(ReadError::TooBig);
                }
                self.message = Some((kind, size as usize));
                self.frame = Frame::Data {
                    left: len,
                    offset: 0,
                    mask,
                    text: kind == TEXT,
                    fin,
                };
                Ok(None)
            }
            other => Err(protocol(&format!("unknown opcode {other}"))),
        }
    }

    /// Checks the next bytes of a text message, carrying an unfinished
    /// character over to the next ones.
    fn check_utf8(&mut self, bytes: &[u8]) -> Result<(), ReadError> {
        let mut joined;
        let bytes = if self.partial_len == 0 {
            bytes
        } else {
            joined = self.partial[..usize::from(self.partial_len)].to_vec();
            joined.extend_from_slice(bytes);
            self.partial_len = 0;
            &joined[..]
        };
        match std::str::from_utf8(bytes) {
            Ok(_) => Ok(()),
            // Cut inside a character (at most 3 bytes of it): the rest
            // comes with the next bytes.
            Err(e) if e.error_len().is_none() => {
                let rest = &bytes[e.valid_up_to()..];
                self.partial[..rest.len()].copy_from_slice(rest);
                self.partial_len = rest.len() as u8;
                Ok(())
            }
            Err(_) => Err(ReadError::Utf8),
        }
    }
}

/// The length of the head that starts with `read`: 2 bytes until the
/// first two say more. The first two are checked as soon as they are in.
fn head_len(read: &[u8]) -> Result<usize, ReadError> {
    let [first, second, ..] = *read else {
        return Ok(2);
    };
    if first & RSV != 0 {
        return Err(protocol("reserved bits are set (no extension was agreed)"));
    }
    if second & MASKED == 0 {
        return Err(protocol("a client's frame must be masked"));
    }
    let extended = match second & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    Ok(2 + extended + 4)
}

/// Reads what `io` has, up to `buf`'s length; the client is gone if nothing.
fn read_some<R: AsyncRead + Unpin>(
    io: &mut R,
    cx: &mut Context<'_>,
    buf: &mut [u8],
) -> Poll<Result<usize, ReadError>> {
    let mut buf = ReadBuf::new(buf);
    ready!(Pin::new(io).poll_read(cx, &mut buf)).map_err(|_| ReadError::Gone)?;
    match buf.filled().len() {
        0 => Poll::Ready(Err(ReadError::Gone)),
        n => Poll::Ready(Ok(n)),
    }
}

/// What a whole, unmasked control frame says.
fn control(opcode: u8, payload: Vec<u8>) -> Result<Incoming, ReadError> {
    match opcode {
        PING => Ok(Incoming::Ping(Bytes::from(payload))),
        PONG => Ok(Incoming::Pong),
        _ => close_frame(&payload),
    }
}

fn protocol(what: &str) -> ReadError {
    ReadError::Protocol(what.to_owned())
}

/// A client's close frame: no payload, or a code and a UTF-8 reason.
fn close_frame(payload: &[u8]) -> Result<Incoming, ReadError> {
    match payload {
        [] => Ok(Incoming::Close(None)),
        [_] => Err(protocol("a close frame's payload of one byte")),
        [a, b, reason @ ..] => {
            std::str::from_utf8(reason).map_err(|_| ReadError::Utf8)?;
            Ok(Incoming::Close(Some(u16::from_be_bytes([*a, *b]))))
        }
    }
}

/// Unmasks `bytes`, which start `offset` bytes into their frame's payload.
fn unmask(bytes: &mut [u8], mask: [u8; 4], offset: usize) {
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte ^= mask[(offset + i) % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client's frame: masked, as clients send them.
    fn client(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let mut out = vec![first];
        match payload.len() {
            n if n < 126 => out.push(MASKED | n as u8),
            n if n <= 0xFFFF => {
                out.push(MASKED | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(MASKED | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    /// Hands out its bytes `step` at a time, as a socket may.
    struct Trickle {
        bytes: Vec<u8>,
        at: usize,
        step: usize,
    }

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let n = self
                .step
                .min(buf.remaining())
                .min(self.bytes.len() - self.at);
            buf.put_slice(&self.bytes[self.at..self.at + n]);
            self.at += n;
            Poll::Ready(Ok(()))
        }
    }

    /// What the reader makes of `bytes`, read whole and a byte at a time
    /// (which must agree), until it stops.
    async fn read_all(bytes: Vec<u8>, max: usize) -> Vec<Result<Incoming, ReadError>> {
        let mut outcomes = Vec::new();
        for step in [usize::MAX, 1] {
            let mut io = Trickle {
                bytes: bytes.clone(),
                at: 0,
                step,
            };
            let mut reader = Reader::new(max);
            let mut got = Vec::new();
            loop {
                let next = std::future::poll_fn(|cx| reader.poll_next(&mut io, cx)).await;
                let end = next.is_err();
                got.push(next);
                if end {
                    break;
                }
            }
            outcomes.push(got);
        }
        let one_at_a_time = outcomes.pop().expect("two readings");
        let whole = outcomes.pop().expect("two readings");
        assert_eq!(whole, one_at_a_time);
        whole
    }

    #[test]
    fn frames_are_made_once_and_sliced_per_message() {
        let long = "é".repeat(100);
        let huge = "x".repeat(70_000);
        let frames = Frames::text(&["a", long.as_str(), huge.as_str()]);
        assert_eq!(frames.len(), 3);
        assert_eq!(&frames.frame(0)[..], &[FIN | TEXT, 1, b'a']);
        assert_eq!(&frames.frame(1)[..4], &[FIN | TEXT, 126, 0, 200]);
        assert_eq!(&frames.frame(2)[..2], &[FIN | TEXT, 127]);
        for (i, text) in ["a", long.as_str(), huge.as_str()].iter().enumerate() {
            assert_eq!(frames.text_of(i), *text);
            assert_eq!(frames.payload_bytes(i), text.len());
        }
        assert_eq!(frames.range(0, 2).len(), 3 + 4 + 200);
        assert_eq!(frames.all().len(), 3 + 204 + 10 + 70_000);
        assert_eq!(Frames::text::<&str>(&[]).len(), 0);
    }

    #[test]
    fn a_close_reason_is_cut_at_a_character_boundary() {
        let frame = close(Some((code::POLICY, &"é".repeat(100))));
        assert_eq!(frame[0], FIN | CLOSE);
        let len = usize::from(frame[1]);
        assert!(len <= MAX_CONTROL && len % 2 == 0, "{len}");
        assert_eq!(&frame[2..4], &code::POLICY.to_be_bytes());
        assert!(std::str::from_utf8(&frame[4..]).is_ok());
        assert_eq!(&close(None)[..], &[FIN | CLOSE, 0]);
        assert_eq!(&pong(b"hi")[..], &[FIN | PONG, 2, b'h', b'i']);
    }

    #[tokio::test]
    async fn data_is_dropped_and_control_frames_come_out() {
        let mut bytes = client(FIN | TEXT, "ignored ✓".as_bytes());
        bytes.extend(client(TEXT, b"frag"));
        bytes.extend(client(FIN | PING, b"are you there"));
        bytes.extend(client(FIN | CONTINUATION, b"mented"));
        bytes.extend(client(FIN | BINARY, &[0xff; 300]));
        bytes.extend(client(FIN | PONG, b""));
        bytes.extend(client(FIN | CLOSE, &[0x03, 0xe8, b'b', b'y', b'e']));
        let got = read_all(bytes, 1024).await;
        assert_eq!(
            got,
            [
                Ok(Incoming::Ping(Bytes::from_static(b"are you there"))),
                Ok(Incoming::Pong),
                Ok(Incoming::Close(Some(1000))),
                Err(ReadError::Gone),
            ]
        );
    }

    #[tokio::test]
    async fn a_character_split_across_frames_is_valid_text() {
        let text = "héllo".as_bytes();
        let mut bytes = client(TEXT, &text[..2]);
        bytes.extend(client(FIN | CONTINUATION, &text[2..]));
        bytes.extend(client(FIN | PONG, b""));
        assert_eq!(read_all(bytes, 1024).await[0], Ok(Incoming::Pong));
    }

    #[tokio::test]
    async fn each_broken_frame_is_named() {
        let cases: Vec<(Vec<u8>, ReadError)> = vec![
            (
                vec![0xff; 64],
                protocol("reserved bits are set (no extension was agreed)"),
            ),
            (
                vec![FIN | TEXT, 1, b'a'],
                protocol("a client's frame must be masked"),
            ),
            (
                client(PING, b""),
                protocol("a control frame must not be fragmented"),
            ),
            (
                client(FIN | PING, &[0; 126]),
                protocol("a control frame's payload is over 125 bytes"),
            ),
            (
                client(FIN | CONTINUATION, b"x"),
                protocol("a continuation frame without a message"),
            ),
            (
                [client(TEXT, b"x"), client(FIN | TEXT, b"y")].concat(),
                protocol("a new message before the last one ended"),
            ),
            (client(FIN | 0x3, b""), protocol("unknown opcode 3")),
            (client(FIN | TEXT, &[0xc3, 0x28]), ReadError::Utf8),
            (client(FIN | TEXT, &[0xc3]), ReadError::Utf8),
            (client(FIN | TEXT, &[b'x'; 2000]), ReadError::TooBig),
            (
                [
                    client(TEXT, &[b'x'; 600]),
                    client(FIN | CONTINUATION, &[b'x'; 600]),
                ]
                .concat(),
                ReadError::TooBig,
            ),
            (
                client(FIN | CLOSE, &[3]),
                protocol("a close frame's payload of one byte"),
            ),
        ];
        for (bytes, expected) in cases {
            let got = read_all(bytes, 1024).await;
            assert_eq!(got.last(), Some(&Err(expected)), "{got:?}");
        }
    }

    #[tokio::test]
    async fn the_writer_writes_every_queued_slice_in_order() {
        let frames = Frames::text(&["one", "two", "three"]);
        let mut out = Vec::new();
        let mut writer = Writer::default();
        writer.push(frames.frame(2));
        writer.push(Bytes::new());
        writer.push(ping());
        writer.push(frames.range(0, 2));
        assert!(!writer.is_idle());
        std::future::poll_fn(|cx| writer.poll_flush(&mut out, cx))
            .await
            .unwrap();
        assert!(writer.is_idle());
        let mut expected = frames.frame(2).to_vec();
        expected.extend_from_slice(&ping());
        expected.extend_from_slice(&frames.range(0, 2));
        assert_eq!(out, expected);
    }
}
