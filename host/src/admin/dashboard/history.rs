//! The counters behind the dashboard's rates, sampled once a second over
//! the last minutes: blocks and transactions per second, messages per
//! second on each stream, and the sparklines of the chain's rates.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

/// Samples kept: five minutes at one a second, the sparklines' span.
pub const WINDOW: usize = 300;

/// The intervals between samples a rate spans. The websocket plugin reports its counters to
/// the host once a second too, so a rate over one sample would read 0 and
/// then twice the truth whenever the two clocks drift past each other.
pub const RATE_SPAN: usize = 5;

/// A stream, as its plugin reports it: (plugin, stream).
pub type StreamKey = (String, String);

/// Counter values at one moment. Only totals that grow: a rate is the
/// difference between two samples.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Counters {
    /// Valid blocks published.
    pub blocks: u64,
    /// Transactions in the valid blocks published.
    pub transactions: u64,
    /// Messages sent, by stream.
    pub messages: BTreeMap<StreamKey, u64>,
}

/// The last [`WINDOW`] samples, oldest first.
#[derive(Default)]
pub struct History {
    samples: VecDeque<(Instant, Counters)>,
}

impl History {
    pub fn record(&mut self, at: Instant, counters: Counters) {
        if self.samples.len() == WINDOW {
            self.samples.pop_front();
        }
        self.samples.push_back((at, counters));
    }

    /// The newest sample's counters.
    pub fn latest(&self) -> Option<&Counters> {
        self.samples.back().map(|(_, c)| c)
    }

    /// Per second, over the last [`RATE_SPAN`] samples (0 before two).
    pub fn rate(&self, of: impl Fn(&Counters) -> u64) -> f64 {
        let newest = self.samples.len().saturating_sub(1);
        let oldest = newest.saturating_sub(RATE_SPAN);
        self.between(oldest, newest, &of)
    }

    /// Per second between each two consecutive samples, oldest first: a
    /// sparkline's points.
    pub fn series(&self, of: impl Fn(&Counters) -> u64) -> Vec<f64> {
        (1..self.samples.len())
            .map(|i| self.between(i - 1, i, &of))
            .collect()
    }

    fn between(&self, from: usize, to: usize, of: &impl Fn(&Counters) -> u64) -> f64 {
        if from >= to {
            return 0.0;
        }
        let (t0, c0) = &self.samples[from];
        let (t1, c1) = &self.samples[to];
        let seconds = t1.duration_since(*t0).as_secs_f64();
        if seconds <= 0.0 {
            return 0.0;
        }
        // A counter never shrinks; one that did (a plugin's series
        // dropped and made anew) counts from zero, not negative.
        round(of(c1).saturating_sub(of(c0)) as f64 / seconds)
    }
}

/// To a tenth: what the page shows, and a smaller snapshot.
fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    fn blocks(n: u64) -> Counters {
        Counters {
            blocks: n,
            transactions: n * 10,
            ..Counters::default()
        }
    }

    #[test]
    fn rates_span_the_last_samples_and_series_each_second() {
        let start = Instant::now();
        let mut h = History::default();
        assert_eq!(h.rate(|c| c.blocks), 0.0);
        h.record(start, blocks(0));
        assert_eq!(h.rate(|c| c.blocks), 0.0);
        assert!(h.series(|c| c.blocks).is_empty());
        // 2 blocks in the first second, none in the second, 4 in each of
        // the next four (a late tick: 2 s apart).
        for (ms, n) in [(1000, 2), (2000, 2), (4000, 10), (5000, 14), (6000, 18)] {
            h.record(at(start, ms), blocks(n));
        }
        assert_eq!(h.series(|c| c.blocks), [2.0, 0.0, 4.0, 4.0, 4.0]);
        // Over the last five intervals: from 0 at 0 s to 18 at 6 s.
        assert_eq!(h.rate(|c| c.blocks), 3.0);
        assert_eq!(h.rate(|c| c.transactions), 30.0);
        h.record(at(start, 7000), blocks(18));
        // From 2 at 1 s to 18 at 7 s.
        assert_eq!(h.rate(|c| c.blocks), 2.7);
        assert_eq!(h.latest(), Some(&blocks(18)));
    }

    #[test]
    fn keeps_a_window_and_never_goes_negative() {
        let start = Instant::now();
        let mut h = History::default();
        for i in 0..WINDOW as u64 + 50 {
            h.record(at(start, i * 1000), blocks(i));
        }
        assert_eq!(h.series(|c| c.blocks).len(), WINDOW - 1);
        h.record(at(start, 400_000), blocks(0));
        assert_eq!(h.series(|c| c.blocks).last(), Some(&0.0));
        // A repeated instant is no rate at all, not infinity.
        h.record(at(start, 400_000), blocks(5));
        assert_eq!(h.series(|c| c.blocks).last(), Some(&0.0));
    }
}
