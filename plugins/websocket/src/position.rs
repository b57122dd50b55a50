//! Where a client's stream starts: live (the default), or from the
//! host's durable event log: after an event it saw (`?last_seen_event=<hash
//! or height>`), at a height (`?from_height=N`) or at a time
//! (`?from_time=<RFC 3339>`), at most one of them.
//!
//! A position is resolved at the upgrade against what the log holds: one
//! older than the oldest event still stored (the host prunes old events)
//! is refused with 410 and the oldest available, never silently started
//! later; one the log cannot know is refused with 400. The oldest event is
//! `read_events(1, 1)`, the first with a sequence number of at least 1.
//!
//! Heights and block times grow with the log (the node commits in order),
//! so the first event at or after a height or a time is found by binary
//! search over sequence numbers, a few single-event reads.

use eventhost_plugin_api::Context;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::filter::shorten;
use crate::params::Params;
use crate::stream::Stream;

/// What a client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// No position: the live stream from now on.
    Live,
    /// Everything the log holds (scabbard's default).
    Oldest,
    /// After the event with this block hash or height; `""` and `"0"`: from the first.
    After(String),
    FromHeight(u64),
    /// Milliseconds since the Unix epoch, and the time as the client wrote it.
    FromTime(u64, String),
}

/// One event of the log, as positions and the stream index name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub seq: u64,
    pub height: u64,
    pub hash: String,
    pub timestamp_ms: u64,
}

/// The event log, as positions need it.
pub trait EventLog {
    /// The first stored event with a sequence number of at least `from`.
    fn first_from(&self, from: u64) -> Result<Option<Mark>, String>;
    /// The sequence number of the newest event (0: none yet).
    fn head(&self) -> u64;
    /// The sequence number of the event with this block hash, or of the
    /// BLOCK_VALID event of this height.
    fn find(&self, id: &str) -> Option<u64>;
}

impl EventLog for Context {
    fn first_from(&self, from: u64) -> Result<Option<Mark>, String> {
        Ok(self.read_events(from, 1)?.first().map(|e| Mark {
            seq: e.seq,
            height: e.height,
            hash: e.block_hash.to_string(),
            timestamp_ms: e.timestamp_ms,
        }))
    }

    fn head(&self) -> u64 {
        Context::head(self)
    }

    fn find(&self, id: &str) -> Option<u64> {
        self.find_event(id)
    }
}

/// Where a resolved position starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    Live,
    /// Replay the events after this sequence number, then go live.
    After(u64),
}

/// Why a position cannot be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Malformed, or not in the log: 400.
    BadRequest(String),
    /// Older than the oldest event the log holds: 410.
    Gone(String),
    /// The log could not be read.
    Unreadable(String),
}

const POSITIONS: [&str; 3] = ["last_seen_event", "from_height", "from_time"];

/// The position a request's parameters ask for on `stream`.
pub fn requested(params: &Params, stream: Stream) -> Result<Start, String> {
    let given: Vec<&str> = POSITIONS
        .into_iter()
        .zip([
            &params.last_seen_event,
            &params.from_height,
            &params.from_time,
        ])
        .filter(|(_, value)| value.is_some())
        .map(|(name, _)| name)
        .collect();
    if given.len() > 1 {
        return Err(format!(
            "give one position at most (last_seen_event, from_height or from_time), not {}",
            given.join(" and ")
        ));
    }
    if let Some(id) = &params.last_seen_event {
        return Ok(Start::After(id.clone()));
    }
    if let Some(height) = &params.from_height {
        return height.trim().parse().map(Start::FromHeight).map_err(|_| {
            format!(
                "from_height must be a block height (a whole number), not `{}`",
                shorten(height)
            )
        });
    }
    if let Some(time) = &params.from_time {
        return parse_time(time)
            .map(|ms| Start::FromTime(ms, time.clone()))
            .ok_or_else(|| {
                format!(
                    "from_time must be an RFC 3339 time such as 2025-01-31T12:00:00Z or 2025-01-31T13:00:00%2B01:00, not `{}`",
                    shorten(time)
                )
            });
    }
    // Scabbard sends every event from the first to a client that names none.
    Ok(if stream == Stream::StateDeltas {
        Start::Oldest
    } else {
        Start::Live
    })
}

/// Milliseconds since the epoch of an RFC 3339 time. A `+` that was not
/// percent-encoded arrives as a space, and is read as the `+` it was.
fn parse_time(text: &str) -> Option<u64> {
    let text = text.trim().replace(' ', "+");
    let time = OffsetDateTime::parse(&text, &Rfc3339).ok()?;
    u64::try_from(time.unix_timestamp_nanos() / 1_000_000).ok()
}

/// An instant as RFC 3339, in UTC with milliseconds.
pub fn rfc3339(ms: u64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("{ms} ms after the epoch"))
}

fn describe(mark: &Mark) -> String {
    format!(
        "height {} (seq {}, hash {}, {})",
        mark.height,
        mark.seq,
        mark.hash,
        rfc3339(mark.timestamp_ms)
    )
}

/// Resolves `start` against `log`; `now_ms` is the current time.
pub fn resolve(log: &dyn EventLog, start: &Start, now_ms: u64) -> Result<Resolved, Refused> {
    let unreadable = Refused::Unreadable;
    let head = log.head();
    let oldest = match start {
        Start::Live => return Ok(Resolved::Live),
        _ => log.first_from(1).map_err(unreadable)?,
    };
    // Events before the oldest stored were pruned.
    let pruned = oldest.as_ref().filter(|o| o.seq > 1);
    let gone = |what: String| {
        let oldest = pruned.expect("gone only when pruned");
        Refused::Gone(format!(
            "{what} is older than the oldest event the log holds; the oldest available is {}",
            describe(oldest)
        ))
    };
    match start {
        Start::Live => Ok(Resolved::Live),
        Start::Oldest => Ok(Resolved::After(oldest.map_or(head, |o| o.seq - 1))),
        Start::After(id) if id.is_empty() || id == "0" => match pruned {
            Some(_) => Err(gone(format!(
                "last_seen_event={id} (every event from the first)"
            ))),
            None => Ok(Resolved::After(0)),
        },
        Start::After(id) => match log.find(id) {
            Some(seq) => match pruned {
                Some(oldest) if seq + 1 < oldest.seq => {
                    Err(gone(format!("last_seen_event `{}`", shorten(id))))
                }
                _ => Ok(Resolved::After(seq)),
            },
            None => match (pruned, id.parse::<u64>()) {
                (Some(oldest), Ok(height)) if height < oldest.height => {
                    Err(gone(format!("last_seen_event {height}")))
                }
                _ => Err(Refused::BadRequest(format!(
                    "last_seen_event `{}` is not in the event log: give a block hash or a height the node has published, or 0 for the first event",
                    shorten(id)
                ))),
            },
        },
        Start::FromHeight(height) => {
            if pruned.is_some_and(|o| *height < o.height) {
                return Err(gone(format!("from_height {height}")));
            }
            let first = oldest.as_ref().map_or(1, |o| o.seq);
            if let Some(found) =
                first_at_or_after(log, first, head, |m| m.height >= *height).map_err(unreadable)?
            {
                return Ok(Resolved::After(found.seq - 1));
            }
            let newest = log.first_from(head).map_err(unreadable)?;
            let next = newest.map_or(1, |n| n.height + 1);
            if *height <= next {
                Ok(Resolved::After(head))
            } else {
                Err(Refused::BadRequest(format!(
                    "from_height {height} is beyond the next block, {next}; to wait for a height, filter with q=height >= {height}"
                )))
            }
        }
        Start::FromTime(ms, text) => {
            if *ms > now_ms {
                return Err(Refused::BadRequest(format!(
                    "from_time {} is in the future",
                    shorten(text)
                )));
            }
            if pruned.is_some_and(|o| *ms < o.timestamp_ms) {
                return Err(gone(format!("from_time {}", shorten(text))));
            }
            let first = oldest.as_ref().map_or(1, |o| o.seq);
            let found = first_at_or_after(log, first, head, |m| m.timestamp_ms >= *ms)
                .map_err(unreadable)?;
            Ok(Resolved::After(found.map_or(head, |f| f.seq - 1)))
        }
    }
}

/// The first event in `first..=last` for which `reached` holds, `reached`
/// being false and then true along the log.
fn first_at_or_after(
    log: &dyn EventLog,
    first: u64,
    last: u64,
    reached: impl Fn(&Mark) -> bool,
) -> Result<Option<Mark>, String> {
    let (mut low, mut high) = (first, last.saturating_add(1));
    let mut best = None;
    while low < high {
        let middle = low + (high - low) / 2;
        match log.first_from(middle)? {
            // Nothing stored in middle..high: the answer is below.
            None => high = middle,
            Some(mark) if mark.seq >= high => high = middle,
            Some(mark) if reached(&mark) => {
                high = middle;
                best = Some(mark);
            }
            Some(mark) => low = mark.seq + 1,
        }
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// A log holding events `first..=last`, one block each, heights equal
    /// to sequence numbers, a second apart.
    struct Log {
        first: u64,
        last: u64,
        reads: Cell<usize>,
    }

    const T0: u64 = 1_700_000_000_000;

    fn mark(seq: u64) -> Mark {
        Mark {
            seq,
            height: seq,
            hash: format!("{seq:064x}"),
            timestamp_ms: T0 + seq * 1000,
        }
    }

    impl EventLog for Log {
        fn first_from(&self, from: u64) -> Result<Option<Mark>, String> {
            self.reads.set(self.reads.get() + 1);
            let seq = from.max(self.first);
            Ok((seq <= self.last).then(|| mark(seq)))
        }
        fn head(&self) -> u64 {
            self.last
        }
        fn find(&self, id: &str) -> Option<u64> {
            let seq = id
                .parse()
                .ok()
                .or_else(|| u64::from_str_radix(id, 16).ok())?;
            (self.first..=self.last).contains(&seq).then_some(seq)
        }
    }

    fn log(first: u64, last: u64) -> Log {
        Log {
            first,
            last,
            reads: Cell::new(0),
        }
    }

    const NOW: u64 = T0 + 10_000_000;

    fn at(log: &Log, start: Start) -> Result<Resolved, Refused> {
        resolve(log, &start, NOW)
    }

    fn start(query: &str, stream: Stream) -> Result<Start, String> {
        requested(&Params::parse(query)?, stream)
    }

    #[test]
    fn one_position_at_most_in_its_syntax() {
        let valid = Stream::ValidBlocks;
        assert_eq!(start("", valid), Ok(Start::Live));
        assert_eq!(start("", Stream::StateDeltas), Ok(Start::Oldest));
        assert_eq!(start("from_height=5", valid), Ok(Start::FromHeight(5)));
        assert_eq!(
            start("from_time=2023-11-14T22:13:20Z", valid),
            Ok(Start::FromTime(T0, "2023-11-14T22:13:20Z".into()))
        );
        // `+` unencoded arrives as a space.
        assert_eq!(
            start("from_time=2023-11-14T23:13:20+01:00", valid).map(|s| match s {
                Start::FromTime(ms, _) => ms,
                _ => 0,
            }),
            Ok(T0)
        );
        assert_eq!(
            start("from_height=1&last_seen_event=2", valid).unwrap_err(),
            "give one position at most (last_seen_event, from_height or from_time), not last_seen_event and from_height"
        );
        assert!(
            start("from_height=-1", valid)
                .unwrap_err()
                .starts_with("from_height must be a block height")
        );
        assert!(
            start("from_time=yesterday", valid)
                .unwrap_err()
                .starts_with("from_time must be an RFC 3339 time")
        );
        assert!(start("from_time=1969-01-01T00:00:00Z", valid).is_err());
    }

    #[test]
    fn positions_in_a_whole_log() {
        let whole = log(1, 100);
        assert_eq!(at(&whole, Start::Live), Ok(Resolved::Live));
        assert_eq!(at(&whole, Start::Oldest), Ok(Resolved::After(0)));
        assert_eq!(at(&whole, Start::After("0".into())), Ok(Resolved::After(0)));
        assert_eq!(
            at(&whole, Start::After("42".into())),
            Ok(Resolved::After(42))
        );
        assert_eq!(at(&whole, Start::FromHeight(0)), Ok(Resolved::After(0)));
        assert_eq!(at(&whole, Start::FromHeight(1)), Ok(Resolved::After(0)));
        assert_eq!(at(&whole, Start::FromHeight(42)), Ok(Resolved::After(41)));
        assert_eq!(
            at(&whole, Start::FromHeight(101)),
            Ok(Resolved::After(100)),
            "the next block"
        );
        let Err(Refused::BadRequest(why)) = at(&whole, Start::FromHeight(102)) else {
            panic!()
        };
        assert_eq!(
            why,
            "from_height 102 is beyond the next block, 101; to wait for a height, filter with q=height >= 102"
        );
        let time = |ms| Start::FromTime(ms, "t".into());
        assert_eq!(at(&whole, time(T0 + 42_000)), Ok(Resolved::After(41)));
        assert_eq!(at(&whole, time(T0 + 41_500)), Ok(Resolved::After(41)));
        assert_eq!(at(&whole, time(0)), Ok(Resolved::After(0)));
        assert_eq!(
            at(&whole, time(NOW)),
            Ok(Resolved::After(100)),
            "after the newest: live"
        );
        assert!(
            matches!(at(&whole, time(NOW + 1)), Err(Refused::BadRequest(w)) if w.contains("in the future"))
        );
        let Err(Refused::BadRequest(why)) = at(&whole, Start::After("abc".into())) else {
            panic!()
        };
        assert!(
            why.starts_with("last_seen_event `abc` is not in the event log"),
            "{why}"
        );
        // The search reads a few events, not the log.
        let big = log(1, 1_000_000);
        assert_eq!(
            at(&big, Start::FromHeight(777_777)),
            Ok(Resolved::After(777_776))
        );
        assert!(big.reads.get() < 30, "{} reads", big.reads.get());
    }

    #[test]
    fn positions_before_a_pruned_log_are_gone() {
        let pruned = log(50, 100);
        let gone = |start: Start| match at(&pruned, start) {
            Err(Refused::Gone(why)) => why,
            other => panic!("expected 410, got {other:?}"),
        };
        let why = gone(Start::FromHeight(10));
        assert_eq!(
            why,
            format!(
                "from_height 10 is older than the oldest event the log holds; the oldest available is height 50 (seq 50, hash {:064x}, 2023-11-14T22:14:10Z)",
                50
            )
        );
        gone(Start::After("0".into()));
        gone(Start::After("".into()));
        gone(Start::After("10".into()));
        gone(Start::FromTime(T0, "2023-11-14T22:13:20Z".into()));
        // The oldest available, and after it, are served.
        assert_eq!(at(&pruned, Start::FromHeight(50)), Ok(Resolved::After(49)));
        assert_eq!(
            at(&pruned, Start::After("49".into())).ok(),
            None,
            "49 is pruned"
        );
        assert_eq!(
            at(&pruned, Start::After("50".into())),
            Ok(Resolved::After(50))
        );
        assert_eq!(
            at(&pruned, Start::FromTime(T0 + 60_000, "t".into())),
            Ok(Resolved::After(59))
        );
        assert_eq!(at(&pruned, Start::Oldest), Ok(Resolved::After(49)));
        // An unknown hash cannot be told from a pruned one: 400.
        assert!(matches!(
            at(&pruned, Start::After("zz".into())),
            Err(Refused::BadRequest(_))
        ));
    }

    #[test]
    fn an_empty_log_starts_at_its_head() {
        let empty = log(1, 0);
        assert_eq!(at(&empty, Start::Oldest), Ok(Resolved::After(0)));
        assert_eq!(at(&empty, Start::FromHeight(1)), Ok(Resolved::After(0)));
        assert!(at(&empty, Start::FromHeight(2)).is_err());
        assert_eq!(
            at(&empty, Start::FromTime(T0, "t".into())),
            Ok(Resolved::After(0))
        );
    }
}
