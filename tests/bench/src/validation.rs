//! Row 2, validation: single-signature CREATE transactions validated per
//! second of one core's time (the thread's CPU time, so that other tenants
//! of a shared machine do not count), from the JSON text a client posts to a checked
//! `Transaction` (JSON parse, schema, canonical serialization, sha3-256 id,
//! Ed25519 verification), against bare ed25519-dalek `verify_strict` (what
//! the ledger uses) of the same signed messages.
//!
//! The baseline starts, like the node, from the bytes a transaction carries:
//! it decompresses each public key before verifying. Signature checking is
//! the floor of the cost; the ratio says how much the rest adds.

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ed25519_dalek::{Signature, VerifyingKey};
use eventhost::ledger::transaction::{Transaction, signed_message, signing_base};

use crate::report::{Figure, Row, Target};
use crate::{median, sys};

/// A bound on the rounds, whatever the clock says.
const MAX_ROUNDS: usize = 50;

/// What the baseline verifies: public key, signed message, signature.
struct Signed {
    key: [u8; 32],
    message: [u8; 32],
    signature: [u8; 64],
}

pub fn run(quick: bool) -> anyhow::Result<Vec<Row>> {
    // Rounds alternate until the time is up, so the row takes about as
    // long on a slow machine as on a fast one; a round is one pass over
    // every transaction.
    let (count, budget, min_rounds) = if quick {
        (300, Duration::from_secs(2), 1)
    } else {
        (5_000, Duration::from_secs(30), 3)
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

    let mut ours = Vec::new();
    let mut bare = Vec::new();
    let started = Instant::now();
    while ours.len() < MAX_ROUNDS && (ours.len() < min_rounds || started.elapsed() < budget) {
        let rate = count as f64 / time(|| validate(&texts))?.as_secs_f64();
        ours.push(rate);
        let verifies = count as f64 / time(|| verify(&signed))?.as_secs_f64();
        bare.push(verifies);
        if ours.len() % 10 == 1 {
            eprintln!(
                "[2 validation] round {}: eventhost {rate:.0} tx/s, verify_strict {verifies:.0} signatures/s",
                ours.len()
            );
        }
    }
    let rounds = ours.len();

    let mut notes = vec![format!(
        "per second of one core's CPU time; median of {rounds} alternating rounds over {count} distinct transactions; the baseline includes decompressing each public key, as the node must"
    )];
    if !rss_reset {
        notes.push("peak RSS could not be reset: it is the process's peak so far".into());
    }
    Ok(vec![Row {
        id: "2",
        what: "Validation of 1-signature CREATEs, per core, vs bare verify_strict".into(),
        ours: Figure::Rate {
            per_second: median(ours),
            unit: "tx",
        },
        baseline: Some(Figure::Rate {
            per_second: median(bare),
            unit: "verifies",
        }),
        target: Some(Target::RatioAtLeast(0.7)),
        peak_rss_kib: sys::peak_rss_kib(None),
        rss_of: "bench process",
        notes,
    }])
}

/// How much CPU time `work` took on this thread.
fn time(work: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<Duration> {
    let started = sys::thread_cpu_time();
    work()?;
    Ok(sys::thread_cpu_time().saturating_sub(started))
}

/// What the node does with a posted transaction before queueing it.
fn validate(texts: &[String]) -> anyhow::Result<()> {
    for text in texts {
        let json = serde_json::from_str(text).context("a generated transaction")?;
        black_box(Transaction::parse(json).context("a generated transaction is invalid")?);
    }
    Ok(())
}

/// The bare signature checks of the same transactions.
fn verify(signed: &[Signed]) -> anyhow::Result<()> {
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
        message: signed_message(&signing_base(&tx.json), None),
        signature,
    })
}
