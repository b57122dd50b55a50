//! WebSocket clients of the node's event streams that read, stall and
//! reconnect, resuming with `last_seen_event` each time, across kills of
//! the node too. Each records what it received, block by block (a digest of
//! the block's hash and transaction ids), so that the end of the run can
//! check it against the committed chain: every block once, in order, none
//! missing at a seam, none that the chain does not hold.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tungstenite::handshake::HandshakeError;
use tungstenite::{Message, WebSocket};

use crate::findings::Findings;

/// Which stream a client reads.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Stream {
    /// `/api/v1/streams/valid_blocks`: one message per committed block.
    Blocks,
    /// `/api/v1/streams/valid_transactions`: one message per transaction.
    Transactions,
}

impl Stream {
    fn path(self) -> &'static str {
        match self {
            Stream::Blocks => "/api/v1/streams/valid_blocks",
            Stream::Transactions => "/api/v1/streams/valid_transactions",
        }
    }
}

/// How a client reads.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Behaviour {
    /// All the time.
    Read,
    /// A while, then not at all for a few seconds (the server may close it
    /// as too slow), then on.
    Stall,
    /// A while, then it hangs up and resumes; now and then it starts over
    /// from the first event, as a new client would.
    Reconnect,
}

/// The digest of a block as a stream shows it: its hash (block stream
/// only) and its transaction ids in order.
pub fn digest<'a>(hash: Option<&str>, ids: impl IntoIterator<Item = &'a str>) -> u64 {
    let mut h = DefaultHasher::new();
    hash.hash(&mut h);
    for id in ids {
        id.hash(&mut h);
    }
    h.finish()
}

/// What one client received since it last started from the first event.
#[derive(Default)]
pub struct Received {
    /// Per height from 1: the block's digest and its message count;
    /// `None` for a height that was skipped.
    pub blocks: Vec<Option<(u64, u64)>>,
    /// The block whose messages are arriving (transaction stream): its
    /// height, its ids so far. Complete once the next block starts.
    current: Option<(u64, Vec<String>)>,
    /// Messages of the complete blocks.
    messages: u64,
    /// Heights received twice or skipped, as found.
    pub faults: Vec<String>,
}

impl Received {
    /// Heights received completely.
    pub fn complete(&self) -> u64 {
        self.blocks.len() as u64
    }

    /// Messages received, the incomplete block's included.
    fn messages(&self) -> u64 {
        self.messages + self.current.as_ref().map_or(0, |(_, ids)| ids.len() as u64)
    }

    fn push(&mut self, height: u64, digest: u64, count: u64) {
        let expected = self.complete() + 1;
        if height < expected {
            self.faults.push(format!(
                "block {height} was received again after block {}",
                expected - 1
            ));
            return;
        }
        if height > expected {
            self.faults
                .push(format!("blocks {expected} to {} were skipped", height - 1));
            self.blocks.resize(height as usize - 1, None);
        }
        self.blocks.push(Some((digest, count)));
        self.messages += count;
    }

    /// Takes one message of `stream`.
    fn take(&mut self, stream: Stream, message: &Value) -> Result<(), String> {
        let height = message["height"]
            .as_u64()
            .ok_or_else(|| format!("a message without a height: {message}"))?;
        match stream {
            Stream::Blocks => {
                let ids = message["transaction_ids"]
                    .as_array()
                    .ok_or_else(|| format!("a block without transaction_ids: {message}"))?;
                let ids: Vec<&str> = ids.iter().filter_map(Value::as_str).collect();
                let d = digest(message["hash"].as_str(), ids.iter().copied());
                self.push(height, d, ids.len() as u64);
            }
            Stream::Transactions => {
                let id = message["transaction_id"]
                    .as_str()
                    .ok_or_else(|| format!("a message without transaction_id: {message}"))?;
                match &mut self.current {
                    Some((h, ids)) if *h == height => ids.push(id.to_owned()),
                    _ => {
                        self.end_block();
                        self.current = Some((height, vec![id.to_owned()]));
                    }
                }
            }
        }
        Ok(())
    }

    /// The block in progress is complete (the next one started, or the
    /// stream is over).
    fn end_block(&mut self) {
        if let Some((height, ids)) = self.current.take() {
            let d = digest(None, ids.iter().map(String::as_str));
            self.push(height, d, ids.len() as u64);
        }
    }

    /// The connection broke: an incomplete block is sent again whole.
    fn forget_incomplete(&mut self) {
        self.current = None;
    }
}

/// What a client did, for the summary.
#[derive(Default)]
pub struct ClientStats {
    pub connects: u64,
    pub messages: u64,
    /// Why connections ended: a close frame's code and reason (up to its
    /// first colon), or how the connection broke.
    pub ends: BTreeMap<String, u64>,
    pub stalls: u64,
    pub restarts_from_first: u64,
}

/// A client's results once it stopped.
pub struct Finished {
    pub name: String,
    pub stream: Stream,
    /// Each start from the first event, the last one last.
    pub lives: Vec<Received>,
    pub stats: ClientStats,
}

/// What the driver and a client share.
pub struct Shared {
    /// No more stalls or hang-ups: read everything up to the end.
    pub finishing: AtomicBool,
    pub stop: AtomicBool,
    /// Messages every client received, for the progress line.
    pub messages: AtomicU64,
}

/// A client thread and how far it got.
pub struct Client {
    pub name: String,
    pub stream: Stream,
    /// Its current life's progress: blocks on a block stream, transactions
    /// on a transaction stream.
    pub progress: Arc<AtomicU64>,
    handle: std::thread::JoinHandle<Finished>,
}

impl Client {
    pub fn start(
        name: String,
        port: u16,
        stream: Stream,
        behaviour: Behaviour,
        seed: u64,
        shared: Arc<Shared>,
        findings: Arc<Findings>,
    ) -> Client {
        let progress = Arc::new(AtomicU64::new(0));
        let handle = {
            let (name, progress) = (name.clone(), progress.clone());
            std::thread::spawn(move || {
                let mut run = Run {
                    name,
                    address: SocketAddr::from(([127, 0, 0, 1], port)),
                    stream,
                    behaviour,
                    rng: fastrand::Rng::with_seed(seed),
                    shared,
                    findings,
                    progress,
                    lives: vec![Received::default()],
                    stats: ClientStats::default(),
                };
                run.run();
                let mut lives = run.lives;
                if let Some(last) = lives.last_mut() {
                    last.end_block();
                }
                Finished {
                    name: run.name,
                    stream,
                    lives,
                    stats: run.stats,
                }
            })
        };
        Client {
            name,
            stream,
            progress,
            handle,
        }
    }

    pub fn join(self, findings: &Findings) -> Option<Finished> {
        match self.handle.join() {
            Ok(finished) => Some(finished),
            Err(_) => {
                findings.violation(format!("the driver's stream client {} panicked", self.name));
                None
            }
        }
    }
}

struct Run {
    name: String,
    address: SocketAddr,
    stream: Stream,
    behaviour: Behaviour,
    rng: fastrand::Rng,
    shared: Arc<Shared>,
    findings: Arc<Findings>,
    progress: Arc<AtomicU64>,
    lives: Vec<Received>,
    stats: ClientStats,
}

/// How long a client waits between attempts to connect.
const RECONNECT_PAUSE: Duration = Duration::from_millis(200);

impl Run {
    fn received(&mut self) -> &mut Received {
        self.lives.last_mut().expect("a client has a life")
    }

    fn run(&mut self) {
        while !self.shared.stop.load(Ordering::Relaxed) {
            self.received().forget_incomplete();
            let after = self.received().complete();
            match self.connect(after) {
                Ok(socket) => {
                    self.stats.connects += 1;
                    self.read(socket);
                }
                Err(Refused::Retry) => std::thread::sleep(RECONNECT_PAUSE),
                Err(Refused::Status(status, body)) => {
                    self.findings.violation(format!(
                        "{}: the stream refused to resume after block {after}: {status} {body}",
                        self.name
                    ));
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    }

    /// Opens the stream, resuming after block `after` (0: from the first).
    fn connect(&mut self, after: u64) -> Result<WebSocket<TcpStream>, Refused> {
        let tcp = TcpStream::connect_timeout(&self.address, Duration::from_secs(2))
            .map_err(|_| Refused::Retry)?;
        tcp.set_read_timeout(Some(Duration::from_millis(200)))
            .map_err(|_| Refused::Retry)?;
        if self.behaviour == Behaviour::Stall {
            // A small receive window, so that a stall backs up to the server
            // (which closes the client as too slow) within seconds rather
            // than filling megabytes of the kernel's buffers first.
            small_receive_buffer(&tcp);
        }
        let url = format!(
            "ws://{}{}?last_seen_event={after}",
            self.address,
            self.stream.path()
        );
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut attempt = tungstenite::client(url.as_str(), tcp);
        loop {
            match attempt {
                Ok((socket, _)) => return Ok(socket),
                Err(HandshakeError::Interrupted(mid)) if Instant::now() < deadline => {
                    attempt = mid.handshake();
                }
                Err(HandshakeError::Failure(tungstenite::Error::Http(response)))
                    if response.status().as_u16() == 400 =>
                {
                    let body = response
                        .body()
                        .as_deref()
                        .map(String::from_utf8_lossy)
                        .unwrap_or_default()
                        .into_owned();
                    return Err(Refused::Status(400, body));
                }
                // 503 (stopping, starting), a reset by a dying node, a timeout.
                Err(_) => return Err(Refused::Retry),
            }
        }
    }

    /// Reads until the connection ends (or the client hangs up, or the run
    /// stops).
    fn read(&mut self, mut socket: WebSocket<TcpStream>) {
        let mut pause = self.next_pause();
        loop {
            if self.shared.stop.load(Ordering::Relaxed) {
                let _ = socket.close(None);
                return;
            }
            if pause.due() && !self.shared.finishing.load(Ordering::Relaxed) {
                match self.behaviour {
                    Behaviour::Stall => self.stall(),
                    Behaviour::Reconnect => {
                        let _ = socket.close(None);
                        let _ = socket.flush();
                        self.end("hung up (client)");
                        if self.rng.f64() < 0.05 {
                            self.stats.restarts_from_first += 1;
                            self.lives.push(Received::default());
                            self.progress.store(0, Ordering::Relaxed);
                        }
                        return;
                    }
                    Behaviour::Read => {}
                }
                pause = self.next_pause();
            }
            match socket.read() {
                Ok(Message::Text(text)) => {
                    pause.count();
                    self.message(text.as_str());
                }
                Ok(Message::Close(frame)) => {
                    let why = frame.map_or_else(
                        || "close frame without a code".to_owned(),
                        |f| {
                            let reason = f.reason.as_str();
                            let reason = reason.split(':').next().unwrap_or(reason);
                            format!("{} {reason}", u16::from(f.code))
                        },
                    );
                    self.end(&why);
                    // Reads until the server closes the TCP connection.
                    let _ = drain(&mut socket);
                    return;
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => {
                    let why = match e {
                        tungstenite::Error::Io(e) => format!("broke: {}", e.kind()),
                        tungstenite::Error::Protocol(_) => "broke: no closing handshake".into(),
                        other => format!("broke: {other}"),
                    };
                    self.end(&why);
                    return;
                }
            }
        }
    }

    /// When the client next stalls or hangs up.
    fn next_pause(&mut self) -> Pause {
        match self.behaviour {
            Behaviour::Read => Pause::Never,
            // Reads for 2 to 15 s, then stalls: long enough to catch up
            // (and to see a killed node's connection end) now and then.
            Behaviour::Stall => {
                Pause::At(Instant::now() + Duration::from_millis(self.rng.u64(2_000..15_000)))
            }
            Behaviour::Reconnect => Pause::After(self.rng.u64(10..300)),
        }
    }

    /// Reads nothing for 1 to 12 s (less if the run is finishing): long
    /// enough, at the soak's rates, for the server to close it as too slow
    /// now and then.
    fn stall(&mut self) {
        self.stats.stalls += 1;
        let until = Instant::now() + Duration::from_millis(self.rng.u64(1_000..12_000));
        while Instant::now() < until && !self.shared.finishing.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn message(&mut self, text: &str) {
        self.stats.messages += 1;
        self.shared.messages.fetch_add(1, Ordering::Relaxed);
        let stream = self.stream;
        let taken = serde_json::from_str::<Value>(text)
            .map_err(|e| format!("a message that is not JSON ({e}): {text}"))
            .and_then(|message| self.received().take(stream, &message));
        if let Err(e) = taken {
            self.findings.violation(format!("{}: {e}", self.name));
        }
        // What the end of the run waits for: every block on a block stream,
        // every transaction on a transaction stream (a block's message
        // counts its transactions in `messages`: comparing that with the
        // number of blocks let the run end while a client still caught up).
        let progress = match stream {
            Stream::Blocks => self.received().complete(),
            Stream::Transactions => self.received().messages(),
        };
        self.progress.store(progress, Ordering::Relaxed);
    }

    fn end(&mut self, why: &str) {
        *self.stats.ends.entry(why.to_owned()).or_default() += 1;
    }
}

/// When a client next stalls or hangs up.
enum Pause {
    Never,
    /// At this moment.
    At(Instant),
    /// After this many more messages.
    After(u64),
}

impl Pause {
    fn due(&self) -> bool {
        match self {
            Pause::Never => false,
            Pause::At(at) => Instant::now() >= *at,
            Pause::After(left) => *left == 0,
        }
    }

    /// A message was read.
    fn count(&mut self) {
        if let Pause::After(left) = self {
            *left = left.saturating_sub(1);
        }
    }
}

enum Refused {
    /// Not now: no node listening, stopping, starting.
    Retry,
    /// Refused for good, with this status and body.
    Status(u16, String),
}

/// Caps the socket's receive buffer (SO_RCVBUF) at 8 KiB; best effort.
fn small_receive_buffer(tcp: &TcpStream) {
    use std::os::fd::AsRawFd;
    let bytes: libc::c_int = 8192;
    // SAFETY: setsockopt reads `bytes` for its size; the descriptor is open.
    unsafe {
        libc::setsockopt(
            tcp.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&raw const bytes).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Reads what is left after a close frame until the connection ends.
fn drain(socket: &mut WebSocket<TcpStream>) -> tungstenite::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        match socket.read() {
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
