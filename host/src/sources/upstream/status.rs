//! How an edge is doing with its stream, for `/health/ready`, `/metrics`,
//! the answers that point clients at the ledger node, and the node, which
//! stops when following failed for good.

use std::sync::Mutex;
use std::time::Instant;

use serde_json::{Value, json};

use crate::metrics::UpstreamMetrics;
use crate::sources::stopped::Stopped;

/// Shared by the source (which sets it) and the node and its API (which read it).
pub struct Status {
    stream: String,
    ledger_url: Option<String>,
    ready_max_lag: u64,
    state: Mutex<State>,
    stopped: Stopped,
    metrics: UpstreamMetrics,
}

struct State {
    following: bool,
    /// Since when the edge has (not) been following.
    since: Instant,
    /// Why it does not follow now, while it does not.
    problem: Option<String>,
    /// The newest event of the edge's log.
    head: u64,
    /// The newest event the stream holds, as last looked up.
    stream_last: Option<u64>,
}

impl Status {
    pub fn new(
        stream: &str,
        ledger_url: Option<String>,
        ready_max_lag: u64,
        head: u64,
        metrics: UpstreamMetrics,
    ) -> Status {
        Status {
            stream: stream.to_owned(),
            ledger_url,
            ready_max_lag,
            state: Mutex::new(State {
                following: false,
                since: Instant::now(),
                problem: Some("connecting".to_owned()),
                head,
                stream_last: None,
            }),
            stopped: Stopped::default(),
            metrics,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The ledger node's URL, where clients send transactions, if configured.
    pub fn ledger_url(&self) -> Option<&str> {
        self.ledger_url.as_deref()
    }

    pub fn metrics(&self) -> &UpstreamMetrics {
        &self.metrics
    }

    /// The edge follows its stream (connected, its consumer in place).
    pub fn set_following(&self) {
        let mut state = self.state();
        if !state.following {
            state.since = Instant::now();
        }
        state.following = true;
        state.problem = None;
        self.metrics.following.set(1);
    }

    /// The edge does not follow its stream now, for `why`; it retries.
    pub fn set_not_following(&self, why: &str) {
        let mut state = self.state();
        if state.following {
            state.since = Instant::now();
        }
        state.following = false;
        state.problem = Some(why.to_owned());
        self.metrics.following.set(0);
    }

    /// The edge stopped following for good: the node stops.
    pub fn set_fatal(&self, why: String) {
        self.state().following = false;
        self.metrics.following.set(0);
        self.stopped.set(why);
    }

    /// The newest event of the log is now `head`.
    pub fn set_head(&self, head: u64) {
        let mut state = self.state();
        state.head = head;
        self.update_behind(&state);
    }

    /// The stream's newest event is `last`.
    pub fn set_stream_last(&self, last: u64) {
        let mut state = self.state();
        state.stream_last = Some(last);
        self.update_behind(&state);
    }

    fn update_behind(&self, state: &State) {
        if let Some(last) = state.stream_last {
            let behind = last.saturating_sub(state.head);
            self.metrics
                .behind
                .set(i64::try_from(behind).unwrap_or(i64::MAX));
        }
    }

    /// Why the edge stopped following for good, if it did.
    pub fn fatal(&self) -> Option<String> {
        self.stopped.why()
    }

    /// Resolves once the edge has stopped following for good.
    pub async fn stopped(&self) {
        self.stopped.wait().await
    }

    /// `None` while the edge serves an up-to-date log; else why not.
    pub fn problem(&self) -> Option<String> {
        let state = self.state();
        let stream = &self.stream;
        if let Some(fatal) = self.stopped.why() {
            return Some(format!(
                "the edge stopped following stream `{stream}`: {fatal}"
            ));
        }
        if !state.following {
            let why = state.problem.as_deref().unwrap_or("connecting");
            return Some(format!(
                "not following stream `{stream}` for {} s: {why}",
                state.since.elapsed().as_secs()
            ));
        }
        let Some(last) = state.stream_last else {
            return Some(format!(
                "following stream `{stream}`, but its newest event is not known yet"
            ));
        };
        let behind = last.saturating_sub(state.head);
        (behind > self.ready_max_lag).then(|| {
            format!(
                "{behind} events behind stream `{stream}` (its newest is {last}, this edge's {}); ready within [source] ready_max_lag = {}",
                state.head, self.ready_max_lag
            )
        })
    }

    /// The check `/health/ready` shows.
    pub fn check(&self) -> Value {
        let problem = self.problem();
        let state = self.state();
        json!({
            "ok": problem.is_none(),
            "stream": self.stream,
            "following": state.following,
            "head": state.head,
            "stream_last": state.stream_last,
            "behind": state.stream_last.map(|last| last.saturating_sub(state.head)),
            "ready_max_lag": self.ready_max_lag,
            "problem": problem,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_once_following_and_close_enough() {
        let status = Status::new("S", None, 10, 5, UpstreamMetrics::default());
        assert!(
            status
                .problem()
                .unwrap()
                .contains("not following stream `S`")
        );
        status.set_following();
        assert!(status.problem().unwrap().contains("not known yet"));
        status.set_stream_last(100);
        assert_eq!(
            status.problem().unwrap(),
            "95 events behind stream `S` (its newest is 100, this edge's 5); ready within [source] ready_max_lag = 10"
        );
        assert_eq!(status.check()["behind"], 95);
        status.set_head(90);
        assert_eq!(status.problem(), None);
        assert_eq!(status.check()["ok"], true);
        status.set_not_following("disconnected from nats://x");
        assert!(
            status
                .problem()
                .unwrap()
                .ends_with(": disconnected from nats://x")
        );
        status.set_fatal("a gap".into());
        assert_eq!(
            status.problem().unwrap(),
            "the edge stopped following stream `S`: a gap"
        );
        assert_eq!(status.fatal().as_deref(), Some("a gap"));
    }
}
