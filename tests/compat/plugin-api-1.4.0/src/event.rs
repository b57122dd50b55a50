//! The events a host publishes and the masks plugins subscribe with.

use std::fmt;
use std::ops::BitOr;
use std::str::FromStr;

use abi_stable::StableAbi;
use abi_stable::std_types::{RString, RVec};

/// One kind of event. The ids are BigchainDB's (`bigchaindb/events.py`), and
/// each is a single bit so that ids and [`EventTypes`] masks coincide.
#[repr(transparent)]
#[derive(StableAbi, Copy, Clone, PartialEq, Eq, Hash)]
pub struct EventType(u32);

/// A block was committed: its transactions are final.
pub const BLOCK_VALID: EventType = EventType(1);
/// A block proposal was rejected: the event names each offending transaction
/// and why; the valid remainder is committed in a BLOCK_VALID of its own.
pub const BLOCK_INVALID: EventType = EventType(2);

impl EventType {
    /// Every event type this version of the API knows, in id order.
    pub const ALL: [EventType; 2] = [BLOCK_VALID, BLOCK_INVALID];

    /// The numeric id (1 for BLOCK_VALID, 2 for BLOCK_INVALID).
    pub const fn id(self) -> u32 {
        self.0
    }

    /// The event type with this id, if this API version knows it.
    pub fn from_id(id: u32) -> Option<EventType> {
        Self::ALL.into_iter().find(|t| t.0 == id)
    }

    /// The upper-case name used in configuration, logs and wire formats.
    pub fn name(self) -> &'static str {
        match self.0 {
            1 => "BLOCK_VALID",
            2 => "BLOCK_INVALID",
            _ => "UNKNOWN",
        }
    }

    /// The event type with this name (`BLOCK_VALID`, `BLOCK_INVALID`).
    pub fn from_name(name: &str) -> Option<EventType> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Since plugin-api 1.3. Every known type as `id = NAME`, comma-separated
    /// (`1 = BLOCK_VALID, 2 = BLOCK_INVALID`): what error messages list, so
    /// that a new event type appears in them without editing each one.
    pub fn known() -> String {
        let names: Vec<String> = Self::ALL
            .iter()
            .map(|t| format!("{} = {}", t.0, t.name()))
            .collect();
        names.join(", ")
    }

    /// What a mask may be written with: each name, each id, or all of them
    /// (`BLOCK_VALID, BLOCK_INVALID, 1, 2 or 3`).
    fn accepted() -> String {
        let mut words: Vec<String> = Self::ALL.iter().map(|t| t.name().to_owned()).collect();
        words.extend(Self::ALL.iter().map(|t| t.0.to_string()));
        format!("{} or {}", words.join(", "), EventTypes::ALL.0)
    }
}

impl fmt::Debug for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.name(), self.0)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of event types, written as in BigchainDB: `BLOCK_VALID | BLOCK_INVALID`.
#[repr(transparent)]
#[derive(StableAbi, Copy, Clone, PartialEq, Eq, Hash, Default)]
pub struct EventTypes(u32);

impl EventTypes {
    /// No event at all.
    pub const NONE: EventTypes = EventTypes(0);
    /// Every event type this version of the API knows.
    pub const ALL: EventTypes = EventTypes(BLOCK_VALID.0 | BLOCK_INVALID.0);

    /// The raw bitmask.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// The mask with these bits, or the bits this API version does not know.
    pub const fn from_bits(bits: u32) -> Result<EventTypes, u32> {
        let unknown = bits & !Self::ALL.0;
        if unknown == 0 {
            Ok(EventTypes(bits))
        } else {
            Err(unknown)
        }
    }

    /// Whether events of this type are in the set.
    pub const fn contains(self, event_type: EventType) -> bool {
        self.0 & event_type.0 != 0
    }

    /// The types in both sets.
    pub const fn intersection(self, other: EventTypes) -> EventTypes {
        EventTypes(self.0 & other.0)
    }

    /// Whether every type of `other` is also in `self`.
    pub const fn is_superset(self, other: EventTypes) -> bool {
        other.0 & !self.0 == 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The types in the set, in id order.
    pub fn iter(self) -> impl Iterator<Item = EventType> {
        EventType::ALL
            .into_iter()
            .filter(move |t| self.contains(*t))
    }
}

impl From<EventType> for EventTypes {
    fn from(t: EventType) -> Self {
        EventTypes(t.0)
    }
}

impl<T: Into<EventTypes>> BitOr<T> for EventType {
    type Output = EventTypes;
    fn bitor(self, rhs: T) -> EventTypes {
        EventTypes(self.0 | rhs.into().0)
    }
}

impl<T: Into<EventTypes>> BitOr<T> for EventTypes {
    type Output = EventTypes;
    fn bitor(self, rhs: T) -> EventTypes {
        EventTypes(self.0 | rhs.into().0)
    }
}

impl fmt::Display for EventTypes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        let names: Vec<&str> = self.iter().map(EventType::name).collect();
        f.write_str(&names.join(" | "))
    }
}

impl fmt::Debug for EventTypes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventTypes({self} = {})", self.0)
    }
}

/// Why a mask could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseEventTypesError(String);

impl fmt::Display for ParseEventTypesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseEventTypesError {}

/// Accepts what operators write: `3`, `1 | 2`, `BLOCK_VALID | BLOCK_INVALID`.
impl FromStr for EventTypes {
    type Err = ParseEventTypesError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut mask = EventTypes::NONE;
        for part in s.split('|').map(str::trim) {
            let bits = if let Some(t) = EventType::from_name(part) {
                t.0
            } else if let Ok(n) = part.parse::<u32>() {
                n
            } else {
                return Err(ParseEventTypesError(format!(
                    "`{part}` is not an event type (expected {})",
                    EventType::accepted()
                )));
            };
            mask = EventTypes::from_bits(mask.0 | bits).map_err(|unknown| {
                ParseEventTypesError(format!(
                    "`{s}` has unknown event type bits {unknown:#x} (known: {})",
                    EventType::known()
                ))
            })?;
        }
        Ok(mask)
    }
}

/// A rejected transaction in a BLOCK_INVALID event.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The id the client gave the transaction.
    pub transaction_id: RString,
    /// Which rule it broke, in words an operator can act on.
    pub reason: RString,
}

/// One published event: everything a subscriber needs without asking the host again.
///
/// Plugins receive it behind an `RArc`: the host publishes each event once and
/// every subscriber shares that one allocation.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// BLOCK_VALID or BLOCK_INVALID.
    pub event_type: EventType,
    /// Position in the host's event log: strictly increasing, starting at 1,
    /// shared by all event types (a subscriber to one type sees gaps).
    pub seq: u64,
    /// Height of the block (for BLOCK_INVALID: the height that was attempted).
    pub height: u64,
    /// Hex sha3-256 of the block header (for BLOCK_INVALID: of the rejected proposal).
    pub block_hash: RString,
    /// When the block was cut, in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// Full JSON of each transaction: the block's, in block order, for
    /// BLOCK_VALID; the rejected ones, in the order of `rejections`, for BLOCK_INVALID.
    pub transactions: RVec<RString>,
    /// For BLOCK_INVALID, why each transaction was rejected; empty otherwise.
    pub rejections: RVec<Rejection>,
}
