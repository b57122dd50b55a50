//! RFC 6455 keep-alive: the server pings each client every interval, and a
//! client that stops answering with pongs is closed.
//!
//! The deadline runs from the last pong rather than from the last ping
//! sent, so a client that stops reading is caught even while its socket is
//! too full for the next ping to go out. One timer serves both the pings
//! and the deadline; with pings off there is none.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

pub struct Keepalive {
    interval: Duration,
    pong_timeout: Duration,
    next_ping: Instant,
    /// When the last pong arrived; when the connection started, before one.
    last_pong: Instant,
    /// Set for the earlier of the next ping and the deadline.
    timer: Pin<Box<Sleep>>,
}

/// What the keep-alive asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Due {
    Ping,
    /// The client let a ping go unanswered for `pong_timeout`.
    Expired,
}

impl Keepalive {
    /// A connection's keep-alive, starting now; None if pings are off.
    pub fn new(interval: Option<Duration>, pong_timeout: Duration) -> Option<Keepalive> {
        let interval = interval?;
        let now = Instant::now();
        Some(Keepalive {
            interval,
            pong_timeout,
            next_ping: now + interval,
            last_pong: now,
            timer: Box::pin(tokio::time::sleep_until(now + interval)),
        })
    }

    /// Records a pong from the client.
    pub fn pong(&mut self) {
        self.last_pong = Instant::now();
    }

    fn deadline(&self) -> Instant {
        self.last_pong + self.interval + self.pong_timeout
    }

    /// Completes when a ping is due (the next one is then set, an interval
    /// after this one went out), or once the client has let a ping go
    /// unanswered for `pong_timeout`.
    pub fn poll_due(&mut self, cx: &mut Context<'_>) -> Poll<Due> {
        loop {
            ready!(self.timer.as_mut().poll(cx));
            let now = Instant::now();
            if now >= self.deadline() {
                return Poll::Ready(Due::Expired);
            }
            let ping = now >= self.next_ping;
            if ping {
                self.next_ping = now + self.interval;
            }
            let next = self.next_ping.min(self.deadline());
            self.timer.as_mut().reset(next);
            if ping {
                return Poll::Ready(Due::Ping);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn due(k: &mut Keepalive) -> Due {
        std::future::poll_fn(|cx| k.poll_due(cx)).await
    }

    #[tokio::test(start_paused = true)]
    async fn pings_every_interval_and_expires_only_when_pongs_stop() {
        let start = Instant::now();
        let mut k = Keepalive::new(Some(Duration::from_secs(10)), Duration::from_secs(5)).unwrap();
        for n in 1..=5 {
            assert_eq!(due(&mut k).await, Due::Ping);
            assert_eq!(start.elapsed(), Duration::from_secs(10 * n));
            tokio::time::sleep(Duration::from_secs(2)).await;
            k.pong();
        }
        // The last pong came at 52 s; the ping at 60 s goes unanswered.
        assert_eq!(due(&mut k).await, Due::Ping);
        assert_eq!(due(&mut k).await, Due::Expired);
        assert_eq!(start.elapsed(), Duration::from_secs(52 + 15));
    }

    #[test]
    fn no_keepalive_without_pings() {
        assert!(Keepalive::new(None, Duration::from_secs(1)).is_none());
    }
}
