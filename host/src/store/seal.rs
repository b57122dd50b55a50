//! Checksums on everything the node stores.
//!
//! Every value in every table of the store is kept sealed: its bytes, then
//! a CRC-32C of the table's name, the key's bytes and those value bytes.
//! Reading a value checks its seal, so a flipped bit in a value or in its
//! key (which would file a good value under another key) is reported as
//! corruption of that record in that file, never served. redb checks its
//! own pages only when it repairs a file, not on reads.

use redb::{Key, Table, TableDefinition, TableHandle};

use super::TxnError;

/// Bytes a seal adds to a value.
pub const SEAL_BYTES: usize = 4;

fn checksum<K: Key>(table: &str, key: &K::SelfType<'_>, value: &[u8]) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    crc.update(table.as_bytes());
    crc.update(&[0]);
    crc.update(K::as_bytes(key).as_ref());
    crc.update(value);
    crc.finalize()
}

/// `value` sealed for storing under `key` in `table`.
pub fn seal<K: Key>(table: &str, key: &K::SelfType<'_>, value: &[u8]) -> Vec<u8> {
    let mut sealed = Vec::with_capacity(value.len() + SEAL_BYTES);
    sealed.extend_from_slice(value);
    sealed.extend_from_slice(&checksum::<K>(table, key, value).to_le_bytes());
    sealed
}

/// The value stored under `key` in `table`, once its seal checks out.
/// `record` names the record for the error (`event 12`).
pub fn unseal<'v, K: Key>(
    table: &str,
    key: &K::SelfType<'_>,
    stored: &'v [u8],
    record: impl FnOnce() -> String,
) -> Result<&'v [u8], TxnError> {
    let Some(split) = stored.len().checked_sub(SEAL_BYTES) else {
        return Err(TxnError::corrupt(
            record(),
            format!("{} bytes, too short to hold a checksum", stored.len()),
        ));
    };
    let (value, seal) = stored.split_at(split);
    let expected = u32::from_le_bytes(seal.try_into().expect("SEAL_BYTES bytes"));
    if checksum::<K>(table, key, value) != expected {
        return Err(TxnError::corrupt(
            record(),
            "its checksum does not match (the file was damaged)",
        ));
    }
    Ok(value)
}

/// Seals `value` and inserts it under `key` into `table`, defined by `def`.
pub fn insert<K: Key + 'static>(
    table: &mut Table<'_, K, &'static [u8]>,
    def: TableDefinition<'_, K, &'static [u8]>,
    key: K::SelfType<'_>,
    value: &[u8],
) -> Result<(), TxnError> {
    let sealed = seal::<K>(def.name(), &key, value);
    table.insert(key, sealed.as_slice())?;
    Ok(())
}

/// A number sealed for storing under `key` in `table`.
pub fn seal_u64<K: Key>(table: &str, key: &K::SelfType<'_>, value: u64) -> Vec<u8> {
    seal::<K>(table, key, &value.to_le_bytes())
}

/// A number stored under `key` in `table`, once its seal checks out.
pub fn unseal_u64<K: Key>(
    table: &str,
    key: &K::SelfType<'_>,
    stored: &[u8],
    record: impl Fn() -> String,
) -> Result<u64, TxnError> {
    let bytes = unseal::<K>(table, key, stored, &record)?;
    let bytes: [u8; 8] = bytes
        .try_into()
        .map_err(|_| TxnError::corrupt(record(), "not an 8-byte number"))?;
    Ok(u64::from_le_bytes(bytes))
}

/// A text stored under `key` in `table`, once its seal checks out.
pub fn unseal_str<'v, K: Key>(
    table: &str,
    key: &K::SelfType<'_>,
    stored: &'v [u8],
    record: impl Fn() -> String,
) -> Result<&'v str, TxnError> {
    let bytes = unseal::<K>(table, key, stored, &record)?;
    std::str::from_utf8(bytes).map_err(|e| TxnError::corrupt(record(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flip_in_the_value_or_the_key_is_caught() {
        let sealed = seal::<u64>("events", &7, b"payload");
        assert_eq!(
            unseal::<u64>("events", &7, &sealed, String::new).unwrap(),
            b"payload"
        );
        for bit in 0..sealed.len() * 8 {
            let mut flipped = sealed.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(unseal::<u64>("events", &7, &flipped, String::new).is_err());
        }
        let err = unseal::<u64>("events", &6, &sealed, || "event 6".into()).unwrap_err();
        assert!(matches!(err, TxnError::Corrupt { record, .. } if record == "event 6"));
        assert!(unseal::<u64>("blocks", &7, &sealed, String::new).is_err());
        assert!(unseal::<&str>("x", &"k", b"ab", String::new).is_err());
    }
}
