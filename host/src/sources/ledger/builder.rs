//! Signed transactions made in Rust the way the Python drivers make them
//! (BigchainDB 2.0 format, single-key outputs): for tests, benchmarks, and
//! tools that feed a node.

use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};

use super::conditions::{Details, Fulfillment};
use super::transaction::{OutputRef, id_of, signed_message, signing_base};

/// An Ed25519 key pair.
pub struct Keypair {
    signing: SigningKey,
    public: String,
}

impl Keypair {
    /// The key pair derived from a 32-byte seed (deterministic).
    pub fn from_seed(seed: [u8; 32]) -> Keypair {
        let signing = SigningKey::from_bytes(&seed);
        let public = bs58::encode(signing.verifying_key().as_bytes()).into_string();
        Keypair { signing, public }
    }

    /// The public key, base58 as transactions carry it.
    pub fn public_key(&self) -> &str {
        &self.public
    }
}

fn output(owner: &str, amount: u64) -> Value {
    let mut key = [0u8; 32];
    // Owners are our own Keypairs' base58 keys.
    let _ = bs58::decode(owner).onto(&mut key);
    let uri = Details::Ed25519 { public_key: key }.condition().uri();
    json!({
        "amount": amount.to_string(),
        "condition": {
            "details": {"type": "ed25519-sha-256", "public_key": owner},
            "uri": uri,
        },
        "public_keys": [owner],
    })
}

/// Signs every input (`signers[i]` signs input `i`) and sets the id.
fn sign(mut tx: Value, signers: &[&Keypair]) -> Value {
    let spent: Vec<Option<OutputRef>> = tx["inputs"]
        .as_array()
        .map(|inputs| {
            inputs
                .iter()
                .map(|i| {
                    i["fulfills"].as_object().map(|f| OutputRef {
                        transaction_id: f["transaction_id"].as_str().unwrap_or_default().into(),
                        output_index: f["output_index"].as_u64().unwrap_or_default() as u32,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let base = signing_base(&tx);
    for (i, (signer, spent)) in signers.iter().zip(&spent).enumerate() {
        let message = signed_message(&base, spent.as_ref());
        let fulfillment = Fulfillment::Ed25519 {
            public_key: signer.signing.verifying_key().to_bytes(),
            signature: signer.signing.sign(&message).to_bytes(),
        };
        tx["inputs"][i]["fulfillment"] = Value::String(fulfillment.to_uri());
    }
    tx["id"] = Value::String(id_of(&tx));
    tx
}

/// A CREATE by `signer` of an asset with `data`, giving `amount` to each recipient.
pub fn create(signer: &Keypair, recipients: &[(&str, u64)], data: Value, metadata: Value) -> Value {
    let tx = json!({
        "asset": {"data": data},
        "id": null,
        "inputs": [{"fulfillment": null, "fulfills": null, "owners_before": [signer.public_key()]}],
        "metadata": metadata,
        "operation": "CREATE",
        "outputs": recipients.iter().map(|(to, n)| output(to, *n)).collect::<Vec<_>>(),
        "version": "2.0",
    });
    sign(tx, &[signer])
}

/// A TRANSFER of `asset_id`, spending each `(output, owner)` and giving
/// `amount` to each recipient.
pub fn transfer(
    spends: &[(OutputRef, &Keypair)],
    asset_id: &str,
    recipients: &[(&str, u64)],
    metadata: Value,
) -> Value {
    let tx = json!({
        "asset": {"id": asset_id},
        "id": null,
        "inputs": spends.iter().map(|(spent, owner)| json!({
            "fulfillment": null,
            "fulfills": {"output_index": spent.output_index, "transaction_id": spent.transaction_id},
            "owners_before": [owner.public_key()],
        })).collect::<Vec<_>>(),
        "metadata": metadata,
        "operation": "TRANSFER",
        "outputs": recipients.iter().map(|(to, n)| output(to, *n)).collect::<Vec<_>>(),
        "version": "2.0",
    });
    let signers: Vec<&Keypair> = spends.iter().map(|(_, k)| *k).collect();
    sign(tx, &signers)
}
