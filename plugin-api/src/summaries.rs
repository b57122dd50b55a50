//! Since plugin-api 1.4. Events read with their transactions' summaries
//! ([`TxSummary`]) instead of their JSON: what a stream resuming a client
//! from the log needs, without decoding and parsing every transaction
//! (about 1.6 KiB of JSON each) again.
//!
//! The host stores each event's summaries when it commits the event (from
//! the transactions the ledger has parsed anyway) and hands them over as
//! one string per event, in the encoding of [`encode`]. The encoding is
//! part of the ABI: it only ever gains new leading markers, never changes.
//!
//! # Encoding
//! One entry per transaction, in the event's order, nothing between them:
//! - `+` `str(id)` `str(operation)` `count` `str(asset id)`… `count`
//!   `str(public key)`…: a transaction [`TxSummary::parse`] could read;
//! - `-` `str(reason)`: one it could not, and its error.
//!
//! where `count` is a number in decimal followed by `;`, and `str(s)` is
//! `s`'s length in bytes, in decimal, `:`, then `s`; or, when `s` equals an
//! earlier string of the same transaction, `=`, that string's position
//! among the transaction's strings (0 the id, 1 the operation, then the
//! asset ids and the keys in order), in decimal, `;`. For example a CREATE
//! `t1` of asset `t1` signed by key `k` to key `k` is
//! `+2:t16:CREATE1;=0;2;1:k=3;`. (A CREATE's asset is its own id and an
//! owner's key is often both an output's and an input's: written once, a
//! CREATE of a 64-digit id to its signer's key takes 133 bytes instead of
//! 241 to store, read and check.)

use std::fmt::Write;

use abi_stable::std_types::{RArc, RString, RVec, Tuple2};

use crate::event::Event;
use crate::events::SharedEvent;
use crate::ffi::SummarizedEvents;
use crate::tx::TxSummary;

/// An event as [`crate::Context::read_summaries`] reads it.
#[derive(Debug, Clone)]
pub struct SummarizedEvent {
    /// The event, with its `transactions` left empty (`rejections` and
    /// the rest are whole).
    pub event: SharedEvent,
    /// Its transactions' summaries as the host encoded them (see
    /// [`SummarizedEvent::transactions`]).
    pub encoded: RString,
}

impl SummarizedEvent {
    /// Per transaction of the event, in order: its summary, or why
    /// [`TxSummary::parse`] could not read it. Decoded on each call, so
    /// that a batch of events is decoded one event at a time, as it is
    /// used (a batch decoded at once had left the processor's caches by
    /// the time its events were rendered: row 5b).
    pub fn transactions(&self) -> Result<Vec<Result<TxSummary, String>>, String> {
        decode(&self.encoded).map_err(|e| self.malformed(e))
    }

    /// Since plugin-api 1.4.1. Calls `each` with each transaction's summary
    /// borrowed from the encoding, or why it could not be read, as
    /// [`visit`] does: for a reader that needs a few strings of each
    /// transaction and not a [`TxSummary`] to keep (replaying a stream
    /// spent a fifth of its CPU building and dropping them: row 5b).
    pub fn visit_transactions<'a>(
        &'a self,
        each: impl for<'v> FnMut(Result<SummaryView<'v, 'a>, &'a str>),
    ) -> Result<(), String> {
        visit(&self.encoded, each).map_err(|e| self.malformed(e))
    }

    fn malformed(&self, e: String) -> String {
        format!("the summaries of event {}: {e}", self.event.seq)
    }
}

/// Since plugin-api 1.4.1. A transaction's summary read by [`visit`]:
/// its strings borrowed from the encoding, in a list the decoder reuses
/// for every transaction, so that reading it allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SummaryView<'v, 'a> {
    /// The id, the operation, the asset ids, then the public keys.
    strings: &'v [&'a str],
    asset_count: usize,
}

impl<'v, 'a> SummaryView<'v, 'a> {
    /// As [`TxSummary::id`].
    pub fn id(&self) -> &'a str {
        self.strings[0]
    }

    /// As [`TxSummary::operation`].
    pub fn operation(&self) -> &'a str {
        self.strings[1]
    }

    /// As [`TxSummary::asset_ids`]: never empty.
    pub fn asset_ids(&self) -> &'v [&'a str] {
        &self.strings[2..2 + self.asset_count]
    }

    /// As [`TxSummary::asset_id`]: the first of `asset_ids`.
    pub fn asset_id(&self) -> &'a str {
        self.strings[2]
    }

    /// As [`TxSummary::public_keys`].
    pub fn public_keys(&self) -> &'v [&'a str] {
        &self.strings[2 + self.asset_count..]
    }

    /// The summary, owned.
    pub fn to_summary(&self) -> TxSummary {
        let owned = |strings: &[&str]| strings.iter().map(|s| (*s).to_owned()).collect();
        TxSummary {
            id: self.id().to_owned(),
            operation: self.operation().to_owned(),
            asset_ids: owned(self.asset_ids()),
            public_keys: owned(self.public_keys()),
        }
    }
}

/// The encoding of `event`'s transactions' summaries, each read from its
/// JSON by the one rule ([`TxSummary::parse`]): what a host stores when it
/// commits an event it has not parsed, and what it reads for an event
/// stored without summaries.
pub fn summarize(event: &Event) -> String {
    let txs: Vec<Result<TxSummary, String>> = event
        .transactions
        .iter()
        .map(|tx| TxSummary::parse(tx))
        .collect();
    let mut encoded = String::new();
    encode(&txs, &mut encoded);
    encoded
}

/// `events` as [`crate::ffi::HostContext::read_summaries`] gives them,
/// made from the events themselves: that method's default, so that a
/// stand-in host (a plugin's own tests) written before 1.4 still builds.
pub(crate) fn from_events(events: RVec<RArc<Event>>) -> SummarizedEvents {
    events
        .into_iter()
        .map(|event| {
            let encoded = summarize(&event);
            let header = Event {
                transactions: RVec::new(),
                ..(*event).clone()
            };
            Tuple2(RArc::new(header), RString::from(encoded))
        })
        .collect()
}

/// Appends the encoding of an event's `transactions` to `out`.
pub fn encode<'a>(
    transactions: impl IntoIterator<Item = &'a Result<TxSummary, String>>,
    out: &mut String,
) {
    fn text(out: &mut String, s: &str) {
        // Writing into a String cannot fail.
        let _ = write!(out, "{}:{s}", s.len());
    }
    /// `s` as the transaction's next string, after `earlier`.
    fn string<'s>(out: &mut String, earlier: &mut Vec<&'s str>, s: &'s str) {
        // Transactions have a few keys; a long list is searched no further
        // back than this.
        let from = earlier.len().saturating_sub(32);
        match earlier[from..].iter().position(|e| *e == s) {
            Some(at) => {
                let _ = write!(out, "={};", from + at);
            }
            None => text(out, s),
        }
        earlier.push(s);
    }
    fn count(out: &mut String, n: usize) {
        let _ = write!(out, "{n};");
    }
    for tx in transactions {
        match tx {
            Ok(tx) => {
                let earlier = &mut Vec::with_capacity(8);
                out.push('+');
                string(out, earlier, &tx.id);
                string(out, earlier, &tx.operation);
                count(out, tx.asset_ids.len());
                tx.asset_ids.iter().for_each(|a| string(out, earlier, a));
                count(out, tx.public_keys.len());
                tx.public_keys.iter().for_each(|k| string(out, earlier, k));
            }
            Err(reason) => {
                out.push('-');
                text(out, reason);
            }
        }
    }
}

/// Reads what [`encode`] wrote; the error says where it is malformed.
pub fn decode(encoded: &str) -> Result<Vec<Result<TxSummary, String>>, String> {
    let mut txs = Vec::new();
    visit(encoded, |tx| {
        txs.push(tx.map(|tx| tx.to_summary()).map_err(str::to_owned))
    })?;
    Ok(txs)
}

/// Since plugin-api 1.4.1. Reads what [`encode`] wrote, calling `each` with
/// every transaction in order: its summary, borrowed, or why it could not
/// be read. The error says where the encoding is malformed; the
/// transactions before that point have been passed to `each` by then.
pub fn visit<'a>(
    encoded: &'a str,
    mut each: impl for<'v> FnMut(Result<SummaryView<'v, 'a>, &'a str>),
) -> Result<(), String> {
    let mut r = Cursor { s: encoded, at: 0 };
    // One transaction's strings at a time, the allocation kept for the next.
    let mut strings: Vec<&'a str> = Vec::with_capacity(8);
    while r.at < encoded.len() {
        let marker = r.s.as_bytes()[r.at];
        r.at += 1;
        match marker {
            b'+' => {
                strings.clear();
                r.string(&mut strings)?;
                r.string(&mut strings)?;
                let asset_count = r.list(&mut strings)?;
                if asset_count == 0 {
                    return Err(format!("transaction {} has no asset id", strings[0]));
                }
                r.list(&mut strings)?;
                each(Ok(SummaryView {
                    strings: &strings,
                    asset_count,
                }));
            }
            b'-' => each(Err(r.text()?)),
            other => {
                return Err(format!(
                    "unknown marker {:?} at byte {}",
                    char::from(other),
                    r.at - 1
                ));
            }
        }
    }
    Ok(())
}

struct Cursor<'a> {
    s: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    /// A decimal number ended by `end`.
    fn number(&mut self, end: u8) -> Result<usize, String> {
        let bytes = self.s.as_bytes();
        let start = self.at;
        let mut n: usize = 0;
        while let Some(&b) = bytes.get(self.at) {
            self.at += 1;
            if b == end && self.at - 1 > start {
                return Ok(n);
            }
            let digit = b.wrapping_sub(b'0');
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add(usize::from(digit)))
                .filter(|_| digit <= 9)
                .ok_or_else(|| format!("no number at byte {start}"))?;
        }
        Err(format!("no {:?} after byte {start}", char::from(end)))
    }

    fn text(&mut self) -> Result<&'a str, String> {
        let len = self.number(b':')?;
        let text = self
            .at
            .checked_add(len)
            .and_then(|end| self.s.get(self.at..end))
            .ok_or_else(|| format!("a string of {len} bytes at byte {} is cut short", self.at))?;
        self.at += len;
        Ok(text)
    }

    /// A transaction's next string, appended to its `strings` so far.
    fn string(&mut self, strings: &mut Vec<&'a str>) -> Result<(), String> {
        let s = if self.s.as_bytes().get(self.at) == Some(&b'=') {
            self.at += 1;
            let at = self.number(b';')?;
            *strings.get(at).ok_or_else(|| {
                format!(
                    "string {at} of the transaction is not before byte {}",
                    self.at
                )
            })?
        } else {
            self.text()?
        };
        strings.push(s);
        Ok(())
    }

    /// A counted list of strings, appended to `strings`; returns the count.
    fn list(&mut self, strings: &mut Vec<&'a str>) -> Result<usize, String> {
        let n = self.number(b';')?;
        for _ in 0..n {
            self.string(strings)?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(id: &str, assets: &[&str], keys: &[&str]) -> Result<TxSummary, String> {
        Ok(TxSummary {
            id: id.to_owned(),
            operation: "CREATE".to_owned(),
            asset_ids: assets.iter().map(|a| (*a).to_owned()).collect(),
            public_keys: keys.iter().map(|k| (*k).to_owned()).collect(),
        })
    }

    #[test]
    fn round_trips_summaries_and_reasons() {
        let txs = vec![
            summary("t1", &["t1"], &["k"]),
            Err("it has no `id`".to_owned()),
            summary("t:2;", &["a1", "a2 \u{e9}"], &[]),
            summary("", &[""], &["k", "k"]),
        ];
        let mut encoded = String::new();
        encode(&txs, &mut encoded);
        assert!(encoded.starts_with("+2:t16:CREATE1;=0;1;1:k-14:it has no `id`+"));
        assert!(encoded.ends_with("+0:6:CREATE1;=0;2;1:k=3;"), "{encoded}");
        assert_eq!(decode(&encoded).unwrap(), txs);
        assert_eq!(decode("").unwrap(), []);
    }

    #[test]
    fn visiting_borrows_what_decoding_owns() {
        let txs = vec![
            summary("t1", &["t1"], &["k", "k2", "k"]),
            Err("it has no `id`".to_owned()),
            summary("t2", &["a1", "a2"], &[]),
        ];
        let mut encoded = String::new();
        encode(&txs, &mut encoded);
        let mut seen = Vec::new();
        visit(&encoded, |tx| match tx {
            Ok(view) => {
                assert_eq!(view.asset_id(), view.asset_ids()[0]);
                seen.push(Ok((
                    view.id(),
                    view.operation(),
                    view.asset_ids().to_vec(),
                    view.public_keys().to_vec(),
                    view.to_summary(),
                )));
            }
            Err(reason) => seen.push(Err(reason)),
        })
        .unwrap();
        assert_eq!(seen.len(), 3);
        let Ok((id, operation, assets, keys, owned)) = &seen[0] else {
            panic!("{:?}", seen[0]);
        };
        assert_eq!((*id, *operation), ("t1", "CREATE"));
        assert_eq!(
            (assets.as_slice(), keys.as_slice()),
            (&["t1"][..], &["k", "k2", "k"][..])
        );
        assert_eq!(Ok(owned.clone()), txs[0]);
        assert_eq!(seen[1], Err("it has no `id`"));
        let Ok((_, _, assets, keys, _)) = &seen[2] else {
            panic!("{:?}", seen[2]);
        };
        assert_eq!((assets.as_slice(), keys.len()), (&["a1", "a2"][..], 0));

        // A malformed tail: what came before it was visited, and the
        // error says where.
        let mut visited = 0;
        let e = visit(&format!("{encoded}+2:t3"), |_| visited += 1).unwrap_err();
        assert_eq!(visited, 3);
        assert!(e.contains("byte"), "{e}");
    }

    #[test]
    fn events_read_whole_are_summarized_by_the_one_rule() {
        let event = Event {
            event_type: crate::BLOCK_VALID,
            seq: 9,
            height: 4,
            block_hash: "h".into(),
            timestamp_ms: 1,
            transactions: vec![r#"{"id":"t1","operation":"CREATE"}"#.into(), "[".into()].into(),
            rejections: Default::default(),
        };
        let read = from_events(vec![RArc::new(event.clone())].into());
        let [Tuple2(header, encoded)] = &read[..] else {
            panic!("one event in, one out");
        };
        assert!(header.transactions.is_empty());
        assert_eq!(
            (header.seq, header.height, &*header.block_hash),
            (9, 4, "h")
        );
        let txs = decode(encoded).unwrap();
        assert_eq!(txs[0], TxSummary::parse(&event.transactions[0]));
        assert!(txs[1].is_err());
        assert_eq!(encoded.as_str(), summarize(&event));
    }

    #[test]
    fn refuses_malformed_input() {
        for bad in [
            "x",
            "+2:t1",
            "+3:t16:CREATE1;2:t11;1:k",
            "+2:t16:CREATE0;0;",
            "+2:t16:CREATE1;2:t19;",
            "-99999999999999999999:",
            "-1:\u{e9}",
            "-:",
            "-1x:a",
            "+2:t16:CREATE1;=2;0;",
            "+2:t1=0",
        ] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
    }
}
