//! Row 2, validation: single-signature CREATE transactions validated per
//! second of one core's time (the thread's CPU time, so that other tenants
//! of a shared machine do not count), from the JSON text a client posts to a checked
//! `Transaction` (JSON parse, schema, canonical serialization, sha3-256 id,
//! Ed25519 verification), against bare ed25519-dalek `verify_strict` of the
//! same signed messages.
//!
//! The baseline starts, like the node, from the bytes a transaction carries:
//! it decompresses each public key before verifying. Signature checking is
//! the floor of the cost; the ratio says how much the rest adds.
//!
//! Row 2b is the node's signature check alone (`ledger::ed25519::verify`)
//! against the same baseline. Row 2c is batch verification made safe: the
//! torsion screen of every R and key that would give the batch libsodium's
//! verdicts, then ed25519-dalek's `verify_batch` on batches of 64 (its note
//! has the batch alone). The node does not batch (ledger/ed25519.rs says
//! why); 2c is the figure that decided it.

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use curve25519_dalek::edwards::CompressedEdwardsY;
use ed25519_dalek::{Signature, VerifyingKey};
use eventhost::sources::ledger::ed25519;
use eventhost::sources::ledger::transaction::{Transaction, signed_message, signing_base};

use crate::report::{Figure, Row, Target};
use crate::{median, sys};

/// A bound on the rounds, whatever the clock says.
const MAX_ROUNDS: usize = 50;

/// Signatures per batch in row 2c: a block's worth at the commit row's load,
/// where ed25519-dalek's batch already costs about half a `verify_strict`.
const BATCH: usize = 64;

/// What the baseline verifies: public key, signed message, signature.
struct Signed {
    key: [u8; 32],
    message: [u8; 32],
    signature: [u8; 64],
}

/// Per-round rates of each contender, alternating.
#[derive(Default)]
struct Rounds {
    validate: Vec<f64>,
    bare: Vec<f64>,
    check: Vec<f64>,
    screened_batch: Vec<f64>,
    batch: Vec<f64>,
}

pub fn run(quick: bool) -> anyhow::Result<Vec<Row>> {
    // Rounds alternate until the time is up, so the row takes about as
    // long on a slow machine as on a fast one; a round is one pass over
    // every transaction.
    let (count, budget, min_rounds) = if quick {
        (320, Duration::from_secs(3), 1)
    } else {
        (5_120, Duration::from_secs(40), 3)
    };
    let rss_reset = sys::reset_peak_rss();
    eprintln!("[2 validation] signing {count} distinct CREATE transactions");
    let texts: Vec<String> = crate::txs::creates(count, "validation")?
        .into_iter()
        .map(|tx| tx.text)
        .collect();
    let signed = texts
        .iter()
        .map(|text| signed_parts(text))
        .collect::<anyhow::Result<Vec<_>>>()?;

    let mut r = Rounds::default();
    let started = Instant::now();
    let per_second = |elapsed: Duration| count as f64 / elapsed.as_secs_f64();
    while r.validate.len() < MAX_ROUNDS
        && (r.validate.len() < min_rounds || started.elapsed() < budget)
    {
        r.validate.push(per_second(time(|| {
            validate(texts.iter().map(String::as_str))
        })?));
        r.bare.push(per_second(time(|| verify_strict(&signed))?));
        r.check.push(per_second(time(|| node_check(&signed))?));
        r.screened_batch
            .push(per_second(time(|| batches(&signed, true))?));
        r.batch.push(per_second(time(|| batches(&signed, false))?));
        if r.validate.len() % 10 == 1 {
            eprintln!(
                "[2 validation] round {}: eventhost {:.0} tx/s, verify_strict {:.0}/s, node check {:.0}/s, screened batch {:.0}/s",
                r.validate.len(),
                r.validate[r.validate.len() - 1],
                r.bare[r.bare.len() - 1],
                r.check[r.check.len() - 1],
                r.screened_batch[r.screened_batch.len() - 1],
            );
        }
    }
    let rounds = r.validate.len();
    let bare = median(r.bare);
    let baseline = Some(Figure::Rate {
        per_second: bare,
        unit: "verifies",
    });
    let cpu_per_tx_us = 1e6 / median(r.validate.clone());

    let mut notes = vec![format!(
        "per second of one core's CPU time; median of {rounds} alternating rounds over {count} distinct transactions; the baseline includes decompressing each public key, as the node must; {cpu_per_tx_us:.1} µs of CPU per transaction (row 3f compares the node's CPU per committed transaction with the same work)"
    )];
    if !rss_reset {
        notes.push("peak RSS could not be reset: it is the process's peak so far".into());
    }
    let peak = sys::peak_rss_kib(None);
    let batch = median(r.batch);
    Ok(vec![
        Row {
            id: "2",
            what: "Validation of 1-signature CREATEs, per core, vs bare verify_strict".into(),
            ours: Figure::Rate {
                per_second: median(r.validate),
                unit: "tx",
            },
            baseline,
            target: Some(Target::RatioAtLeast(1.0)),
            peak_rss_kib: peak,
            rss_of: "bench process",
            notes,
        },
        Row {
            id: "2b",
            what: "The node's Ed25519 check alone, per core, vs bare verify_strict".into(),
            ours: Figure::Rate {
                per_second: median(r.check),
                unit: "verifies",
            },
            baseline,
            target: None,
            peak_rss_kib: peak,
            rss_of: "bench process",
            notes: vec![
                "ledger::ed25519::verify: libsodium's verdicts, a small-order R refused by its encoding instead of a decompression".into(),
            ],
        },
        Row {
            id: "2c",
            what: format!(
                "Batch verification ({BATCH} per batch) with the torsion screen that keeps libsodium's verdicts, per core, vs bare verify_strict"
            ),
            ours: Figure::Rate {
                per_second: median(r.screened_batch),
                unit: "verifies",
            },
            baseline,
            target: None,
            peak_rss_kib: peak,
            rss_of: "bench process",
            notes: vec![format!(
                "not used by the node: without the screen ({:.1} k/s, {:.2}x bare) the batch equation accepts a mixed-order R that libsodium refuses, about one message in eight (ledger/ed25519.rs)",
                batch / 1e3,
                batch / bare
            )],
        },
    ])
}

/// How much CPU time `work` took on this thread.
fn time(work: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<Duration> {
    let started = sys::thread_cpu_time();
    work()?;
    Ok(sys::thread_cpu_time().saturating_sub(started))
}

/// CPU time one core spends validating one of `texts`, as the node does
/// with a posted transaction (row 2's work): the median of `rounds` passes.
pub fn cpu_per_transaction(texts: &[&str], rounds: usize) -> anyhow::Result<Duration> {
    let mut each = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        each.push(time(|| validate(texts.iter().copied()))?.as_secs_f64() / texts.len() as f64);
    }
    Ok(Duration::from_secs_f64(median(each)))
}

/// What the node does with a posted transaction before queueing it.
fn validate<'a>(texts: impl IntoIterator<Item = &'a str>) -> anyhow::Result<()> {
    for text in texts {
        let json = serde_json::from_str(text).context("a generated transaction")?;
        black_box(Transaction::parse(json).context("a generated transaction is invalid")?);
    }
    Ok(())
}

/// The bare signature checks of the same transactions.
fn verify_strict(signed: &[Signed]) -> anyhow::Result<()> {
    for s in signed {
        let key = VerifyingKey::from_bytes(black_box(&s.key))?;
        if key
            .verify_strict(black_box(&s.message), &Signature::from_bytes(&s.signature))
            .is_err()
        {
            bail!("a generated signature does not verify");
        }
    }
    Ok(())
}

/// The node's own signature check of the same transactions.
fn node_check(signed: &[Signed]) -> anyhow::Result<()> {
    for s in signed {
        if !ed25519::verify(black_box(&s.key), black_box(&s.message), &s.signature) {
            bail!("a generated signature does not verify");
        }
    }
    Ok(())
}

/// The same signatures in batches of [`BATCH`], each R and key first
/// checked for torsion if `screened` (what keeps the verdicts exact).
fn batches(signed: &[Signed], screened: bool) -> anyhow::Result<()> {
    for chunk in signed.chunks(BATCH) {
        let keys = chunk
            .iter()
            .map(|s| VerifyingKey::from_bytes(black_box(&s.key)))
            .collect::<Result<Vec<_>, _>>()?;
        if screened {
            for s in chunk {
                let torsion_free = |bytes: &[u8; 32]| {
                    CompressedEdwardsY(*bytes)
                        .decompress()
                        .is_some_and(|p| p.is_torsion_free())
                };
                let r: [u8; 32] = s.signature[..32].try_into()?;
                if !torsion_free(&s.key) || !torsion_free(&r) {
                    bail!("a generated signature has a torsion component");
                }
            }
        }
        let messages: Vec<&[u8]> = chunk.iter().map(|s| &s.message[..]).collect();
        let signatures: Vec<Signature> = chunk
            .iter()
            .map(|s| Signature::from_bytes(&s.signature))
            .collect();
        ed25519_dalek::verify_batch(&messages, &signatures, &keys)
            .context("a generated batch does not verify")?;
    }
    Ok(())
}

/// The key, message and signature of a CREATE's one input, found the way
/// the ledger finds them.
fn signed_parts(text: &str) -> anyhow::Result<Signed> {
    let tx = Transaction::parse(serde_json::from_str(text)?)?;
    let input = tx.inputs.first().context("a CREATE without inputs")?;
    let [(key, signature)] = input.fulfillment.signatures()[..] else {
        bail!("not a single-signature fulfillment");
    };
    Ok(Signed {
        key,
        message: signed_message(&signing_base(tx.json()), None),
        signature,
    })
}
