//! One connection's life: what it is waiting for, since when, and the
//! deadline that closes it when the client stalls.
//!
//! A connection is in one of three phases:
//! - **idle**: waiting for the first byte of a request (just accepted, or
//!   after its previous response), closed after `idle_timeout`;
//! - **head**: a request has begun and its head is incomplete, closed
//!   after `header_read_timeout` (a client trickling one header every few
//!   seconds cannot hold the connection longer than that);
//! - **busy**: a request is being handled. Its body is read within
//!   `body_read_timeout` (see [`super::body`]); the handler's own work has
//!   no deadline here.
//!
//! In any phase, a response the client does not read (the socket stays
//! full) for `idle_timeout` closes the connection.
//!
//! Idle and head connections are *waiting* for their client: when the
//! listener is at its connection cap, the one waiting longest is closed to
//! make room (see [`Registry::evict_longest_waiting`]), so slow clients
//! cannot lock out prompt ones.
//!
//! Bytes of a pipelined next request read while a request is busy leave
//! the connection idle, not head, when the response ends: such a head is
//! bounded by `idle_timeout` instead.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

const IDLE: u8 = 0;
const HEAD: u8 = 1;
const BUSY: u8 = 2;

/// Why a connection is being closed by the server rather than its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// No request, or a response not read, for `idle_timeout`.
    IdleTimeout,
    /// A request's head not complete within `header_read_timeout`.
    HeaderTimeout,
    /// Closed to make room for a new connection at the cap.
    Evicted,
    /// The server is stopping.
    Shutdown,
}

impl Close {
    /// The timeout that was hit, as the metrics name it; evictions are
    /// counted where the cap is hit, on accepting.
    pub fn timeout(self) -> Option<&'static str> {
        match self {
            Close::IdleTimeout => Some("idle_timeout_ms"),
            Close::HeaderTimeout => Some("header_read_timeout_ms"),
            Close::Evicted | Close::Shutdown => None,
        }
    }

    fn code(self) -> u8 {
        match self {
            Close::IdleTimeout => 1,
            Close::HeaderTimeout => 2,
            Close::Evicted => 3,
            Close::Shutdown => 4,
        }
    }

    fn from_code(code: u8) -> Option<Close> {
        match code {
            1 => Some(Close::IdleTimeout),
            2 => Some(Close::HeaderTimeout),
            3 => Some(Close::Evicted),
            4 => Some(Close::Shutdown),
            _ => None,
        }
    }
}

/// The timeouts a connection is held to.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub idle: Duration,
    pub header: Duration,
}

/// The state of one connection, shared by its socket, its requests and
/// the listener.
pub struct Conn {
    id: u64,
    /// The listener's clock origin; times below are nanoseconds since it.
    epoch: Instant,
    phase: AtomicU8,
    /// When the current phase began.
    since: AtomicU64,
    /// When a write last found the socket full and is still waiting, plus
    /// one (0: no write waiting).
    write_blocked: AtomicU64,
    /// Requests in progress (more than one only when pipelined).
    requests: AtomicUsize,
    /// A [`Close`] code the listener asked for (0: none).
    closing: AtomicU8,
    /// Wakes the watchdog when a deadline may have moved earlier.
    wake: Notify,
}

impl Conn {
    fn new(id: u64, epoch: Instant) -> Conn {
        let conn = Conn {
            id,
            epoch,
            phase: AtomicU8::new(IDLE),
            since: AtomicU64::new(0),
            write_blocked: AtomicU64::new(0),
            requests: AtomicUsize::new(0),
            closing: AtomicU8::new(0),
            wake: Notify::new(),
        };
        conn.since.store(conn.now(), Ordering::Relaxed);
        conn
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn at(&self, nanos: u64) -> Instant {
        self.epoch + Duration::from_nanos(nanos)
    }

    /// Bytes arrived: an idle connection has begun a request.
    fn received(&self) {
        if self.phase.load(Ordering::Relaxed) == IDLE
            && self
                .phase
                .compare_exchange(IDLE, HEAD, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.since.store(self.now(), Ordering::Relaxed);
            self.wake.notify_one();
        }
    }

    fn write_pending(&self) {
        if self.write_blocked.load(Ordering::Relaxed) == 0 {
            self.write_blocked.store(self.now() + 1, Ordering::Relaxed);
            self.wake.notify_one();
        }
    }

    fn write_done(&self) {
        self.write_blocked.store(0, Ordering::Relaxed);
    }

    /// A request's head is complete; the returned guard marks its end
    /// (when the response has been handed to the socket, or dropped).
    pub fn request_started(self: &Arc<Self>) -> InFlight {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.phase.store(BUSY, Ordering::Relaxed);
        InFlight(self.clone())
    }

    fn is_waiting(&self) -> bool {
        self.phase.load(Ordering::Relaxed) != BUSY
    }

    pub fn is_busy(&self) -> bool {
        !self.is_waiting()
    }

    /// Asks the connection to close; the first reason given wins.
    pub fn close(&self, why: Close) {
        if self
            .closing
            .compare_exchange(0, why.code(), Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.wake.notify_one();
        }
    }

    /// The earliest deadline the connection's state implies, and what
    /// missing it means.
    fn deadline(&self, timeouts: Timeouts) -> Option<(Instant, Close)> {
        let since = self.at(self.since.load(Ordering::Relaxed));
        let phase = match self.phase.load(Ordering::Relaxed) {
            IDLE => Some((since + timeouts.idle, Close::IdleTimeout)),
            HEAD => Some((since + timeouts.header, Close::HeaderTimeout)),
            _ => None,
        };
        let blocked = match self.write_blocked.load(Ordering::Relaxed) {
            0 => None,
            at => Some((self.at(at - 1) + timeouts.idle, Close::IdleTimeout)),
        };
        match (phase, blocked) {
            (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
            (a, b) => a.or(b),
        }
    }

    /// Resolves when the connection must close, and says why.
    pub async fn watchdog(&self, timeouts: Timeouts) -> Close {
        loop {
            if let Some(why) = Close::from_code(self.closing.load(Ordering::Relaxed)) {
                return why;
            }
            match self.deadline(timeouts) {
                Some((at, why)) if at <= Instant::now() => return why,
                Some((at, _)) => {
                    tokio::select! {
                        () = self.wake.notified() => {}
                        () = tokio::time::sleep_until(at) => {}
                    }
                }
                None => self.wake.notified().await,
            }
        }
    }
}

/// A request in progress; dropping it ends the request.
pub struct InFlight(Arc<Conn>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let conn = &self.0;
        if conn.requests.fetch_sub(1, Ordering::Relaxed) == 1 {
            conn.since.store(conn.now(), Ordering::Relaxed);
            conn.phase.store(IDLE, Ordering::Relaxed);
            conn.wake.notify_one();
        }
    }
}

/// The open connections of one listener.
pub struct Registry {
    epoch: Instant,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
        }
    }
}

impl Registry {
    fn open(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a new connection; it leaves the registry when the
    /// returned handle is dropped.
    pub fn add(self: &Arc<Self>) -> Registered {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn::new(id, self.epoch));
        self.open().insert(id, conn.clone());
        Registered {
            registry: self.clone(),
            conn,
        }
    }

    /// Closes the connection that has waited longest for its client (idle,
    /// or reading a request head); false if every connection is busy.
    pub fn evict_longest_waiting(&self) -> bool {
        let open = self.open();
        let victim = open
            .values()
            .filter(|c| c.is_waiting() && c.closing.load(Ordering::Relaxed) == 0)
            .min_by_key(|c| c.since.load(Ordering::Relaxed));
        match victim {
            Some(conn) => {
                conn.close(Close::Evicted);
                true
            }
            None => false,
        }
    }

    /// Asks every connection to close: waiting ones at once, busy ones
    /// after their response.
    pub fn close_all(&self) {
        for conn in self.open().values() {
            conn.close(Close::Shutdown);
        }
    }
}

/// A connection in the registry.
pub struct Registered {
    registry: Arc<Registry>,
    pub conn: Arc<Conn>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.open().remove(&self.conn.id);
    }
}

/// A socket that tells its [`Conn`] when bytes arrive and when writes wait.
pub struct Watched<S> {
    socket: S,
    conn: Arc<Conn>,
}

impl<S> Watched<S> {
    pub fn new(socket: S, conn: Arc<Conn>) -> Watched<S> {
        Watched { socket, conn }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.socket).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.conn.received();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> Watched<S> {
    fn watch<T>(&self, polled: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match polled {
            Poll::Pending => self.conn.write_pending(),
            Poll::Ready(_) => self.conn.write_done(),
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.socket).poll_write(cx, buf);
        self.watch(polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.socket).poll_write_vectored(cx, bufs);
        self.watch(polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.socket.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.socket).poll_flush(cx);
        self.watch(polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Idle long enough never to fire within a test; heads quickly.
    const T: Timeouts = Timeouts {
        idle: Duration::from_secs(600),
        header: Duration::from_millis(50),
    };

    #[tokio::test]
    async fn a_begun_head_is_held_to_the_header_timeout_not_the_idle_one() {
        let registry = Arc::new(Registry::default());
        let entry = registry.add();
        let conn = entry.conn.clone();
        let watchdog = tokio::spawn(async move { conn.watchdog(T).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!watchdog.is_finished());
        entry.conn.received();
        assert_eq!(watchdog.await.unwrap(), Close::HeaderTimeout);
    }

    #[tokio::test]
    async fn a_busy_connection_has_no_deadline_until_its_request_ends() {
        let registry = Arc::new(Registry::default());
        let entry = registry.add();
        entry.conn.received();
        let request = entry.conn.request_started();
        assert!(
            !registry.evict_longest_waiting(),
            "a busy connection is evicted"
        );
        let conn = entry.conn.clone();
        let short = Timeouts {
            idle: Duration::from_millis(50),
            ..T
        };
        let watchdog = tokio::spawn(async move { conn.watchdog(short).await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!watchdog.is_finished(), "a busy connection timed out");
        drop(request);
        assert_eq!(watchdog.await.unwrap(), Close::IdleTimeout);
    }

    #[tokio::test]
    async fn eviction_picks_the_connection_waiting_longest() {
        let registry = Arc::new(Registry::default());
        let old = registry.add();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let new = registry.add();
        assert!(registry.evict_longest_waiting());
        assert_eq!(old.conn.watchdog(T).await, Close::Evicted);
        assert_eq!(new.conn.closing.load(Ordering::Relaxed), 0);
        drop(old);
        assert_eq!(registry.open().len(), 1);
    }
}
