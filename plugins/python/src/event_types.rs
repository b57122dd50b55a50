//! What a Python plugin subscribes to: its module's `event_types`, checked
//! against the event types this host knows.

use eventhost_plugin_api::EventTypes;

/// `bigchaindb.events.EventTypes.ALL`.
const ALL: i64 = !0;

/// The events a plugin with this `event_types` receives: every event when
/// the attribute is absent or is BigchainDB's `EventTypes.ALL` (`~0`, -1),
/// as in BigchainDB.
pub fn subscription(declared: Option<i64>, origin: &str) -> Result<EventTypes, String> {
    let bits = match declared {
        None | Some(ALL) => return Ok(EventTypes::ALL),
        Some(bits) => bits,
    };
    let known = "known: 1 (BLOCK_VALID), 2 (BLOCK_INVALID), and 1 | 2 or ~0 for both";
    let mask = u32::try_from(bits).map_err(|_| {
        format!(
            "{origin} declares event_types = {bits}, which is not a mask of event types ({known})"
        )
    })?;
    match EventTypes::from_bits(mask) {
        Ok(types) if types.is_empty() => Err(format!(
            "{origin} declares event_types = 0, which subscribes to no event ({known})"
        )),
        Ok(types) => Ok(types),
        Err(unknown) => Err(format!(
            "{origin} declares event_types = {bits}, with bits this host does not know ({unknown:#x}; {known})"
        )),
    }
}

/// How a subscription is shown: `1 (BLOCK_VALID)`, `3 (BLOCK_VALID | BLOCK_INVALID)`.
pub fn show(types: EventTypes) -> String {
    format!("{} ({types})", types.bits())
}

#[cfg(test)]
mod tests {
    use eventhost_plugin_api::{BLOCK_INVALID, BLOCK_VALID};

    use super::*;

    #[test]
    fn absent_means_every_event() {
        assert_eq!(
            subscription(None, "m").unwrap(),
            BLOCK_VALID | BLOCK_INVALID
        );
        assert_eq!(subscription(Some(-1), "m").unwrap(), EventTypes::ALL, "~0");
        assert_eq!(show(EventTypes::ALL), "3 (BLOCK_VALID | BLOCK_INVALID)");
    }

    #[test]
    fn known_bits_are_taken() {
        assert_eq!(subscription(Some(1), "m").unwrap(), BLOCK_VALID.into());
        assert_eq!(subscription(Some(2), "m").unwrap(), BLOCK_INVALID.into());
        assert_eq!(show(BLOCK_VALID.into()), "1 (BLOCK_VALID)");
    }

    #[test]
    fn unknown_bits_zero_and_negatives_are_refused_by_name() {
        assert_eq!(
            subscription(Some(5), "module p").unwrap_err(),
            "module p declares event_types = 5, with bits this host does not know (0x4; known: 1 (BLOCK_VALID), 2 (BLOCK_INVALID), and 1 | 2 or ~0 for both)"
        );
        assert!(
            subscription(Some(0), "m")
                .unwrap_err()
                .contains("subscribes to no event")
        );
        assert!(
            subscription(Some(-2), "m")
                .unwrap_err()
                .contains("not a mask")
        );
        assert!(
            subscription(Some(1 << 40), "m")
                .unwrap_err()
                .contains("not a mask")
        );
    }
}
