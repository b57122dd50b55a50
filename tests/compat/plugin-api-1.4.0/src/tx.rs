//! Since plugin-api 1.3. What every consumer of events reads from a
//! transaction: its id, operation, assets and keys.
//!
//! Events carry each transaction's full JSON, in one of two shapes:
//! BigchainDB 2.0 (`"asset": {"data": …}` for a CREATE, `"asset": {"id": …}`
//! for a TRANSFER) and Planetmint 3.0 (`"assets": [{"data": "<cid>"}]`,
//! `"assets": [{"id": …}, …]`). The rules here are the node's own: the
//! ledger, the bundled plugins and third-party plugins call them instead of
//! each reading the shapes its own way.

use serde::Deserialize;

/// The facts about one transaction that streams, filters and brokers use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxSummary {
    pub id: String,
    /// `CREATE`, `TRANSFER`, or whatever else the ledger wrote.
    pub operation: String,
    /// The assets the transaction is about, never empty: see [`asset_ids`].
    pub asset_ids: Vec<String>,
    /// Every output's `public_keys`, then every input's `owners_before`, in
    /// the transaction's order (a key may appear more than once).
    pub public_keys: Vec<String>,
}

#[derive(Deserialize)]
struct RawTx {
    id: Option<String>,
    operation: Option<String>,
    asset: Option<RawAsset>,
    assets: Option<Vec<Option<RawAsset>>>,
    inputs: Option<Vec<RawInput>>,
    outputs: Option<Vec<RawOutput>>,
}

#[derive(Deserialize)]
struct RawAsset {
    id: Option<String>,
}

#[derive(Deserialize)]
struct RawInput {
    owners_before: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct RawOutput {
    public_keys: Option<Vec<String>>,
}

impl TxSummary {
    /// Reads a transaction's JSON; only the fields above are built, the rest
    /// (asset data, metadata, fulfillments) is skipped. The error says what
    /// is missing or malformed.
    pub fn parse(json: &str) -> Result<TxSummary, String> {
        serde_json::from_str(json)
            .map_err(|e| e.to_string())
            .and_then(TxSummary::from_raw)
    }

    /// Since plugin-api 1.4. Like [`TxSummary::parse`], from a transaction
    /// already parsed into a [`serde_json::Value`] (the ledger has each
    /// one parsed when it commits a block): the same rule, without reading
    /// the text again.
    pub fn from_json(json: &serde_json::Value) -> Result<TxSummary, String> {
        RawTx::deserialize(json)
            .map_err(|e| e.to_string())
            .and_then(TxSummary::from_raw)
    }

    fn from_raw(raw: RawTx) -> Result<TxSummary, String> {
        let id = raw.id.ok_or("it has no `id`")?;
        let declared: Vec<Option<String>> = match (raw.assets, raw.asset) {
            (Some(assets), _) if !assets.is_empty() => {
                assets.into_iter().map(|a| a.and_then(|a| a.id)).collect()
            }
            (_, asset) => vec![asset.and_then(|a| a.id)],
        };
        let asset_ids = asset_ids(&id, declared);
        let outputs = raw
            .outputs
            .unwrap_or_default()
            .into_iter()
            .map(|o| o.public_keys);
        let inputs = raw
            .inputs
            .unwrap_or_default()
            .into_iter()
            .map(|i| i.owners_before);
        let public_keys = outputs.chain(inputs).flatten().flatten().collect();
        Ok(TxSummary {
            id,
            operation: raw.operation.unwrap_or_default(),
            asset_ids,
            public_keys,
        })
    }

    /// The transaction's main asset: the first of `asset_ids`.
    pub fn asset_id(&self) -> &str {
        &self.asset_ids[0]
    }
}

/// The assets a transaction is about, from the asset ids its `asset` or
/// `assets` declare (`None` for an asset given by its data): an asset
/// without an id is the transaction's own (a CREATE), as the reference
/// servers read it, and no asset at all means the same. Never empty.
pub fn asset_ids<S: Into<String>>(
    own_id: &str,
    declared: impl IntoIterator<Item = Option<S>>,
) -> Vec<String> {
    let mut ids: Vec<String> = declared
        .into_iter()
        .map(|id| id.map_or_else(|| own_id.to_owned(), Into::into))
        .collect();
    if ids.is_empty() {
        ids.push(own_id.to_owned());
    }
    ids
}

/// Whether `text` is a public key as the ledger accepts one: base58 that
/// decodes to exactly 32 bytes (an Ed25519 key).
pub fn is_public_key(text: &str) -> bool {
    let mut key = [0u8; 32];
    // 32 bytes take 43 or 44 base58 digits; anything longer cannot fit, and
    // is refused before decoding.
    text.len() <= 44 && matches!(bs58::decode(text).onto(&mut key), Ok(32))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "4957744b3ac54434b8270f2c854cc1040228c82ea4e72d66d2887a4d3e30b317";
    const B: &str = "0fdeb547670bbea980389df53cf5a91e60159339084c6b0b5cc0b5494a679530";

    fn tx(id: &str, shape: &str) -> String {
        format!(
            r#"{{"id":"{id}","operation":"TRANSFER",{shape},
                "inputs":[{{"owners_before":["in1"],"fulfillment":"x","fulfills":null}}],
                "outputs":[{{"amount":"1","public_keys":["out1","out2"]}},{{"public_keys":null}}]}}"#
        )
    }

    #[test]
    fn bigchaindb_2_0_shapes() {
        let create =
            TxSummary::parse(&tx(A, r#""asset":{"data":{"msg":"hi","n":[1,2]}}"#)).unwrap();
        assert_eq!(create.asset_ids, [A]);
        assert_eq!(create.public_keys, ["out1", "out2", "in1"]);
        let transfer = TxSummary::parse(&tx("t", &format!(r#""asset":{{"id":"{A}"}}"#))).unwrap();
        assert_eq!(transfer.asset_id(), A);
        assert_eq!(transfer.operation, "TRANSFER");
        let empty = TxSummary::parse(&tx(A, r#""asset":{"data":null}"#)).unwrap();
        assert_eq!(empty.asset_ids, [A]);
    }

    #[test]
    fn planetmint_3_0_shapes() {
        let create = TxSummary::parse(&tx(B, r#""assets":[{"data":"QmQP5C3P"}]"#)).unwrap();
        assert_eq!(create.asset_ids, [B]);
        let transfer = TxSummary::parse(&tx(
            "t",
            &format!(r#""assets":[{{"id":"{A}"}},{{"id":"{B}"}}]"#),
        ))
        .unwrap();
        assert_eq!(transfer.asset_ids, [A, B]);
        assert_eq!(transfer.asset_id(), A);
        let none = TxSummary::parse(&tx(B, r#""assets":null"#)).unwrap();
        assert_eq!(none.asset_ids, [B]);
    }

    #[test]
    fn a_parsed_transaction_gives_the_same_summary() {
        for text in [
            tx(A, r#""asset":{"data":{"msg":"hi"}}"#),
            tx("t", &format!(r#""assets":[{{"id":"{A}"}},{{"id":"{B}"}}]"#)),
            r#"{"operation":"CREATE"}"#.to_owned(),
        ] {
            let value: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(TxSummary::from_json(&value), TxSummary::parse(&text));
        }
    }

    #[test]
    fn says_what_is_wrong() {
        assert!(
            TxSummary::parse(r#"{"operation":"CREATE"}"#)
                .unwrap_err()
                .contains("`id`")
        );
        assert!(TxSummary::parse("[1]").is_err());
        assert!(TxSummary::parse(r#"{"id":"x","inputs":{}}"#).is_err());
    }

    #[test]
    fn public_keys_are_32_byte_base58() {
        assert!(is_public_key(
            "JEAkEJqLbbgDRAtMm8YAjGp759Aq2qTn9eaEHUj2XePE"
        ));
        for bad in [
            "",
            "0OIl",
            "JEAkEJqLbbgDRAtMm8YAjGp759Aq2qTn9eaEHUj2Xe",
            "JEAkEJqLbbgDRAtMm8YAjGp759Aq2qTn9eaEHUj2XePEJEAk",
            "11111111111111111111111111111111111111111111",
        ] {
            assert!(!is_public_key(bad), "{bad}");
        }
    }
}
