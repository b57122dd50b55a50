//! The streams the plugin serves, and where each one lives.

use eventhost_plugin_api::{BLOCK_INVALID, BLOCK_VALID, EventType};
use stream_query::Scope;

/// One event stream: a URL path and the messages sent on it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Planetmint / BigchainDB 2.x: one message per committed transaction.
    ValidTransactions,
    /// BigchainDB 1.x: one message per committed transaction, with the block's hash.
    ValidTx,
    /// Planetmint: one message per committed block.
    ValidBlocks,
    /// One message per rejected block proposal (BLOCK_INVALID).
    InvalidBlocks,
    /// Splinter scabbard: one state-delta event per committed block, at
    /// `/scabbard/{circuit_id}/{service_id}/ws/subscribe` (see `state_delta`).
    StateDeltas,
}

impl Stream {
    pub const ALL: [Stream; 5] = [
        Stream::ValidTransactions,
        Stream::ValidTx,
        Stream::ValidBlocks,
        Stream::InvalidBlocks,
        Stream::StateDeltas,
    ];

    /// Where scabbard's state deltas live, before and after the ids.
    pub const SCABBARD: (&str, &str) = ("/scabbard/", "/ws/subscribe");

    pub fn path(self) -> &'static str {
        match self {
            Stream::ValidTransactions => "/api/v1/streams/valid_transactions",
            Stream::ValidTx => "/api/v1/streams/valid_tx",
            Stream::ValidBlocks => "/api/v1/streams/valid_blocks",
            Stream::InvalidBlocks => "/api/v1/streams/invalid_blocks",
            Stream::StateDeltas => "/scabbard/{circuit_id}/{service_id}/ws/subscribe",
        }
    }

    /// The stream at `path`, scabbard's being at `/scabbard/{circuit}/{service}/ws/subscribe`.
    pub fn from_path(path: &str, circuit: &str, service: &str) -> Option<Stream> {
        let (before, after) = Self::SCABBARD;
        let scabbard = path
            .strip_prefix(before)
            .and_then(|p| p.strip_suffix(after))
            .is_some_and(|ids| ids.split_once('/') == Some((circuit, service)));
        if scabbard {
            return Some(Stream::StateDeltas);
        }
        Self::ALL
            .into_iter()
            .filter(|s| *s != Stream::StateDeltas)
            .find(|s| s.path() == path)
    }

    /// Position in [`Stream::ALL`], for per-stream tables.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The event type whose events feed the stream.
    pub fn event_type(self) -> EventType {
        match self {
            Stream::InvalidBlocks => BLOCK_INVALID,
            _ => BLOCK_VALID,
        }
    }

    /// What the stream's messages are about, and so what its queries test:
    /// transactions (one message each) or blocks.
    pub fn scope(self) -> Scope {
        match self {
            Stream::ValidTransactions | Stream::ValidTx => Scope::Transactions,
            _ => Scope::Blocks,
        }
    }

    /// The stream's name in the stream index: its path's last part.
    pub fn name(self) -> &'static str {
        match self {
            Stream::ValidTransactions => "valid_transactions",
            Stream::ValidTx => "valid_tx",
            Stream::ValidBlocks => "valid_blocks",
            Stream::InvalidBlocks => "invalid_blocks",
            Stream::StateDeltas => "state_deltas",
        }
    }

    /// The name the host's HTTP API root lists the stream's URL under, as
    /// BigchainDB (`streams`, `streams_v1`) and Planetmint (`streamedblocks`) do.
    pub fn advertised_as(self) -> Option<&'static str> {
        match self {
            Stream::ValidTransactions => Some("streams"),
            Stream::ValidTx => Some("streams_v1"),
            Stream::ValidBlocks => Some("streamedblocks"),
            Stream::InvalidBlocks | Stream::StateDeltas => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_round_trip_and_index_matches_all() {
        for (i, s) in Stream::ALL.into_iter().enumerate() {
            if s != Stream::StateDeltas {
                assert_eq!(Stream::from_path(s.path(), "c", "s"), Some(s));
            }
            assert_eq!(s.index(), i);
        }
        assert_eq!(
            Stream::from_path("/api/v1/streams/valid_tx/", "c", "s"),
            None
        );
        assert_eq!(
            Stream::from_path("/scabbard/c/s/ws/subscribe", "c", "s"),
            Some(Stream::StateDeltas)
        );
        assert_eq!(
            Stream::from_path("/scabbard/c/x/ws/subscribe", "c", "s"),
            None
        );
    }
}
