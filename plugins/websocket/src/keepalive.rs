//! RFC 6455 keep-alive: the server pings each client every interval, and a
//! client that stops answering with pongs is closed.
//!
//! The deadline runs from the last pong rather than from the last ping
//! sent, so a client that stops reading is caught even while its socket is
//! too full for the next ping to go out.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::{Instant, Interval, MissedTickBehavior};

pub struct Keepalive {
    /// None: pings are off, and no pong is expected.
    interval: Option<Duration>,
    pong_timeout: Duration,
    started: Instant,
    /// When the last pong arrived, in milliseconds after `started`.
    last_pong_ms: AtomicU64,
}

impl Keepalive {
    pub fn new(interval: Option<Duration>, pong_timeout: Duration) -> Keepalive {
        Keepalive {
            interval,
            pong_timeout,
            started: Instant::now(),
            last_pong_ms: AtomicU64::new(0),
        }
    }

    /// When the server should send its pings; None if pings are off.
    pub fn pings(&self) -> Option<Interval> {
        self.interval.map(|every| {
            let mut ticks = tokio::time::interval_at(self.started + every, every);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            ticks
        })
    }

    /// Records a pong from the client.
    pub fn pong(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_pong_ms.store(ms, Ordering::Relaxed);
    }

    /// Completes once the client has let a ping go unanswered for
    /// `pong_timeout`; never, if pings are off.
    pub async fn expired(&self) {
        let Some(interval) = self.interval else {
            return std::future::pending().await;
        };
        loop {
            let last_pong = self.last_pong_ms.load(Ordering::Relaxed);
            let deadline =
                self.started + Duration::from_millis(last_pong) + interval + self.pong_timeout;
            tokio::time::sleep_until(deadline).await;
            if self.last_pong_ms.load(Ordering::Relaxed) == last_pong {
                return;
            }
        }
    }

    pub fn pong_timeout(&self) -> Duration {
        self.pong_timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn expires_only_when_pongs_stop() {
        let k = Keepalive::new(Some(Duration::from_secs(10)), Duration::from_secs(5));
        let expired = k.expired();
        tokio::pin!(expired);
        for _ in 0..5 {
            tokio::select! {
                () = &mut expired => panic!("expired while the client answered"),
                () = tokio::time::sleep(Duration::from_secs(12)) => k.pong(),
            }
        }
        let silent_since = Instant::now();
        expired.await;
        assert_eq!(silent_since.elapsed(), Duration::from_secs(15));
    }

    #[tokio::test(start_paused = true)]
    async fn never_expires_without_pings() {
        let k = Keepalive::new(None, Duration::from_secs(1));
        assert!(k.pings().is_none());
        let outcome = tokio::time::timeout(Duration::from_secs(3600), k.expired()).await;
        assert!(outcome.is_err());
    }
}
