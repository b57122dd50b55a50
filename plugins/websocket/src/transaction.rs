//! What the streams need to know about a transaction, read from its JSON.
//!
//! Events carry each transaction's full JSON, in one of two shapes:
//! BigchainDB 2.0 (`"asset": {"data": …}` for a CREATE, `"asset": {"id": …}`
//! for a TRANSFER) and Planetmint 3.0 (`"assets": [{"data": "<cid>"}]`,
//! `"assets": [{"id": …}, …]`). Only the fields below are read; the rest
//! (asset data, metadata, fulfillments) is skipped without being built.

use serde::Deserialize;

/// The facts about one transaction that messages and filters use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxFacts {
    pub id: String,
    /// `CREATE`, `TRANSFER`, or whatever else the ledger wrote.
    pub operation: String,
    /// The assets the transaction is about, never empty: a CREATE's own id,
    /// the spent assets' ids for a TRANSFER.
    pub asset_ids: Vec<String>,
    /// Every output's `public_keys` and every input's `owners_before`.
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

impl TxFacts {
    /// Reads a transaction's JSON; the error says what is missing or malformed.
    pub fn parse(json: &str) -> Result<TxFacts, String> {
        let raw: RawTx = serde_json::from_str(json).map_err(|e| e.to_string())?;
        let id = raw.id.ok_or("it has no `id`")?;
        // As the reference servers do: an asset without an `id` is the
        // transaction's own (a CREATE), and no asset at all means the same.
        let own = |asset: Option<RawAsset>| asset.and_then(|a| a.id).unwrap_or_else(|| id.clone());
        let asset_ids = match (raw.assets, raw.asset) {
            (Some(assets), _) if !assets.is_empty() => assets.into_iter().map(own).collect(),
            (_, asset) => vec![own(asset)],
        };
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
        Ok(TxFacts {
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
        let create = TxFacts::parse(&tx(A, r#""asset":{"data":{"msg":"hi","n":[1,2]}}"#)).unwrap();
        assert_eq!(create.asset_ids, [A]);
        assert_eq!(create.public_keys, ["out1", "out2", "in1"]);
        let transfer = TxFacts::parse(&tx("t", &format!(r#""asset":{{"id":"{A}"}}"#))).unwrap();
        assert_eq!(transfer.asset_id(), A);
        assert_eq!(transfer.operation, "TRANSFER");
        let empty = TxFacts::parse(&tx(A, r#""asset":{"data":null}"#)).unwrap();
        assert_eq!(empty.asset_ids, [A]);
    }

    #[test]
    fn planetmint_3_0_shapes() {
        let create = TxFacts::parse(&tx(B, r#""assets":[{"data":"QmQP5C3P"}]"#)).unwrap();
        assert_eq!(create.asset_ids, [B]);
        let transfer = TxFacts::parse(&tx(
            "t",
            &format!(r#""assets":[{{"id":"{A}"}},{{"id":"{B}"}}]"#),
        ))
        .unwrap();
        assert_eq!(transfer.asset_ids, [A, B]);
        assert_eq!(transfer.asset_id(), A);
        let none = TxFacts::parse(&tx(B, r#""assets":null"#)).unwrap();
        assert_eq!(none.asset_ids, [B]);
    }

    #[test]
    fn says_what_is_wrong() {
        assert!(
            TxFacts::parse(r#"{"operation":"CREATE"}"#)
                .unwrap_err()
                .contains("`id`")
        );
        assert!(TxFacts::parse("[1]").is_err());
        assert!(TxFacts::parse(r#"{"id":"x","inputs":{}}"#).is_err());
    }
}
