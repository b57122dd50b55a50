//! Rows 4f to 4h, stream queries (issue 20):
//!
//! - 4f: the node's CPU per delivered message with 1,000 clients spread
//!   over 10 distinct queries, against 1,000 clients without a query, in
//!   the same run and the same way as row 4 (see [`crate::fanout`]). Each
//!   query selects every transaction, with conditions on the summary and
//!   on the JSON (so the transaction is parsed), so that both sides deliver
//!   the same messages and the ratio is what queries add: evaluating each
//!   distinct query once per transaction, and each client looking up its
//!   query's bit per message.
//! - 4g, 4h: one evaluation of a query on one transaction, in this process,
//!   against parsing that transaction's JSON (which a query on its paths
//!   needs once, whatever the number of queries): for a query on summary
//!   fields, and for one on JSON paths that parses the transaction.

use std::cell::OnceCell;
use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use serde_json::Value;
use stream_query::{Limits, Query, Scope, Subject, Transaction};

use crate::fanout::{self, KEY, PATH, Params, Server, Workload, median_cpu, median_rate};
use crate::median;
use crate::report::{Figure, Row, Target};

/// Distinct queries the clients are spread over.
const QUERIES: usize = 10;

/// The `i`th of the distinct queries: each selects every transaction of
/// the rich blocks, each differs from the others.
fn query(i: usize) -> String {
    format!(
        "operation = 'CREATE' AND metadata.n >= 0 AND output.public_key = '{KEY}' AND output.amount < {}",
        1000 + i
    )
}

fn encoded(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn run(build: &Path, quick: bool) -> anyhow::Result<Vec<Row>> {
    let p = Params::new(quick);
    eprintln!(
        "[4 queries] {} round(s): {} clients over {QUERIES} distinct queries, and {} clients without, fed for {:.0} s each",
        p.rounds,
        p.clients,
        p.clients,
        p.feed_for.as_secs_f64()
    );
    let runtime = fanout::runtime()?;
    let filtered = Workload {
        paths: (0..QUERIES)
            .map(|i| format!("{PATH}?q={}", encoded(&query(i))))
            .collect(),
        rich: true,
    };
    let unfiltered = Workload {
        paths: vec![PATH.into()],
        rich: true,
    };
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for round in 1..=p.rounds {
        for (name, workload, rounds) in [
            ("10 queries", &filtered, &mut with),
            ("no query", &unfiltered, &mut without),
        ] {
            let r = fanout::measure(Server::Ours, build, &p, workload, &runtime)?;
            eprintln!(
                "[4 queries] round {round}/{}: {name}: {:.0} messages/s, {:.3} µs server CPU per message",
                p.rounds,
                r.rate(),
                r.cpu_us_per_message()
            );
            rounds.push(r);
        }
    }

    let evaluation = evaluation_costs(if quick { 2_000 } else { 20_000 });
    let clients = p.clients;
    let mut rows = vec![Row {
        id: "4f",
        what: format!(
            "Server CPU per delivered message, {clients} clients over {QUERIES} distinct queries vs none"
        ),
        ours: Figure::micros(median_cpu(&with), "message"),
        baseline: Some(Figure::micros(median_cpu(&without), "message")),
        target: Some(Target::RatioAtMost(1.5)),
        peak_rss_kib: with.iter().filter_map(|r| r.peak_rss_kib).max(),
        rss_of: "node",
        notes: vec![format!(
            "every query selects every transaction (conditions on operation, metadata and outputs), so both deliver the same messages; {:.0} vs {:.0} messages/s; median of {} round(s)",
            median_rate(&with),
            median_rate(&without),
            p.rounds
        )],
    }];
    for (id, what, us) in [
        (
            "4g",
            "One query on summary fields, per transaction",
            evaluation.summary_us,
        ),
        (
            "4h",
            "One query on JSON paths (parses the transaction), per transaction",
            evaluation.paths_us,
        ),
    ] {
        rows.push(Row {
            id,
            what: what.into(),
            ours: Figure::micros(us, "evaluation"),
            baseline: Some(Figure::micros(evaluation.parse_us, "parse")),
            target: None,
            peak_rss_kib: None,
            rss_of: "",
            notes: vec![format!(
                "baseline: parsing the transaction's JSON (serde_json::Value); {} transactions; a query on paths parses each transaction once however many queries look into it",
                evaluation.transactions
            )],
        });
    }
    Ok(rows)
}

struct Costs {
    transactions: usize,
    summary_us: f64,
    paths_us: f64,
    parse_us: f64,
}

/// A transaction: its summary and its JSON text.
struct Tx {
    height: u64,
    id: String,
    operation: String,
    asset_ids: Vec<String>,
    public_keys: Vec<String>,
    text: String,
}

/// A transaction as the plugin hands one to queries while it publishes an
/// event: the summary, and the JSON parsed on first use and dropped with
/// the view.
struct View<'a> {
    tx: &'a Tx,
    json: OnceCell<Option<Value>>,
}

impl Transaction for View<'_> {
    fn height(&self) -> u64 {
        self.tx.height
    }
    fn id(&self) -> &str {
        &self.tx.id
    }
    fn operation(&self) -> &str {
        &self.tx.operation
    }
    fn asset_ids(&self) -> &[String] {
        &self.tx.asset_ids
    }
    fn public_keys(&self) -> &[String] {
        &self.tx.public_keys
    }
    fn json(&self) -> Option<&Value> {
        self.json
            .get_or_init(|| serde_json::from_str(&self.tx.text).ok())
            .as_ref()
    }
}

/// Microseconds per evaluation of each query, and per parse, over
/// `count` transactions shaped as the ledger writes them.
fn evaluation_costs(count: usize) -> Costs {
    let txs: Vec<Tx> = (0..count)
        .map(|n| {
            let id = format!("{n:064x}");
            let text = serde_json::json!({
                "id": id, "operation": "CREATE", "version": "2.0",
                "asset": {"data": {"serial": n}},
                "metadata": {"kind": if n % 2 == 0 { "invoice" } else { "receipt" }, "n": n},
                "inputs": [{"owners_before": [KEY], "fulfills": null, "fulfillment": "pGSAIDE5i63cn4X8T8N1sZ2mGkJD5lNRnBM4PZgI_zvzbr-cgUCy4BR6gKaYT-tdyAGPPpknIqI4JYQQ-p2nCg3_9BfOI-15vzldhyz-j_LZVpqAlRmbTzKS-Q5gs7ZIFaZCA_UD"}],
                "outputs": [{"amount": "10", "public_keys": [KEY], "condition": {"details": {"public_key": KEY, "type": "ed25519-sha-256"}, "uri": "ni:///sha-256;PNYwdxaRaNw60N6LDFzOWO97b8tJeragczakL8PrAPc?fpt=ed25519-sha-256&cost=131072"}}],
            })
            .to_string();
            Tx {
                height: 7,
                asset_ids: vec![id.clone()],
                id,
                operation: "CREATE".into(),
                public_keys: vec![KEY.into(), KEY.into()],
                text,
            }
        })
        .collect();
    let ids: Vec<String> = (0..5).map(|n| format!("'{:064x}'", n * 7919)).collect();
    let parse =
        |q: &str| Query::parse(q, Scope::Transactions, &Limits::default()).expect("a valid query");
    let summary = parse(&format!(
        "operation = 'CREATE' AND asset_id IN ({}) OR height > 100",
        ids.join(", ")
    ));
    let paths = parse(&format!(
        "metadata.kind = 'invoice' AND output.amount >= 10 AND output.public_key = '{KEY}'"
    ));
    // The median of 5 passes: the first pass over the transactions pays
    // for bringing them into the cache, whichever is measured first.
    let time = |work: &dyn Fn(&Tx)| {
        let passes = (0..5)
            .map(|_| {
                let started = Instant::now();
                for tx in &txs {
                    work(tx);
                }
                started.elapsed().as_secs_f64() * 1e6 / count as f64
            })
            .collect();
        median(passes)
    };
    let parse_us = time(&|tx| {
        black_box(serde_json::from_str::<Value>(&tx.text).ok());
    });
    let evaluate = |query: &Query, tx: &Tx| {
        let view = View {
            tx,
            json: OnceCell::new(),
        };
        black_box(query.matches(Subject::Transaction(&view)));
    };
    let summary_us = time(&|tx| evaluate(&summary, tx));
    // Each evaluation parses its transaction (and drops it), as the first
    // query on paths does when the plugin publishes an event.
    let paths_us = time(&|tx| evaluate(&paths, tx));
    Costs {
        transactions: count,
        summary_us,
        paths_us,
        parse_us,
    }
}
