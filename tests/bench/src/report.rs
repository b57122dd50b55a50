//! The results: one row per figure, printed as a Markdown table (so a run
//! can be pasted into the README as is) and written as JSON (so runs can be
//! compared by a script).

use serde_json::{Value, json};

/// One line of the table.
pub struct Row {
    /// The benchmark number, with a letter where one benchmark
    /// gives several figures ("3a").
    pub id: &'static str,
    pub what: String,
    pub ours: Figure,
    /// The bare baseline's figure, measured in the same run and the same way.
    pub baseline: Option<Figure>,
    pub target: Option<Target>,
    /// Peak resident memory of whatever ran the row (this process, or the node).
    pub peak_rss_kib: Option<u64>,
    /// Whose memory `peak_rss_kib` is.
    pub rss_of: &'static str,
    /// Anything a reader needs to interpret the figure.
    pub notes: Vec<String>,
}

/// A measured figure.
#[derive(Clone, Copy)]
pub enum Figure {
    /// Things per second.
    Rate { per_second: f64, unit: &'static str },
    /// A latency distribution, in milliseconds.
    Latency { p50_ms: f64, p99_ms: f64 },
    /// A cost per unit of work: `amount` of `unit` per `per`.
    Cost {
        amount: f64,
        unit: &'static str,
        per: &'static str,
    },
}

/// What the issue asks of a row.
pub enum Target {
    /// ours / baseline at least this (rates).
    RatioAtLeast(f64),
    /// ours / baseline at most this (costs).
    RatioAtMost(f64),
    /// Latencies: ours / baseline at most this at the 99th percentile.
    P99RatioAtMost(f64),
    /// Costs: ours at most this much above the baseline, in the figure's unit.
    AddedAtMost(f64),
    /// A cost of ours at most this much of this unit (the figure's).
    CostAtMost(f64, &'static str),
    /// Latencies: ours / baseline at most `p50` at the median and `p99` at
    /// the 99th percentile.
    LatencyRatioAtMost { p50: f64, p99: f64 },
}

impl Row {
    /// ours / baseline, for rates and costs; for latencies, of the p99s.
    pub fn ratio(&self) -> Option<f64> {
        self.ours.ratio(self.baseline?)
    }

    /// ours / baseline of the p50s, for latencies.
    pub fn p50_ratio(&self) -> Option<f64> {
        self.ours.p50_ratio(self.baseline?)
    }

    pub fn met(&self) -> Option<bool> {
        match self.target.as_ref()? {
            Target::RatioAtLeast(min) => self.ratio().map(|r| r >= *min),
            Target::RatioAtMost(max) => self.ratio().map(|r| r <= *max),
            Target::P99RatioAtMost(max) => self.ratio().map(|r| r <= *max),
            Target::AddedAtMost(max) => match (self.ours, self.baseline?) {
                (Figure::Cost { amount: a, .. }, Figure::Cost { amount: b, .. }) => {
                    Some(a - b <= *max)
                }
                _ => None,
            },
            Target::CostAtMost(max, _) => match self.ours {
                Figure::Cost { amount, .. } => Some(amount <= *max),
                _ => None,
            },
            Target::LatencyRatioAtMost { p50, p99 } => {
                Some(self.p50_ratio()? <= *p50 && self.ratio()? <= *p99)
            }
        }
    }

    fn json(&self) -> Value {
        json!({
            "id": self.id,
            "what": self.what,
            "ours": self.ours.json(),
            "baseline": self.baseline.map(|b| b.json()),
            "ratio": self.ratio(),
            "p50_ratio": self.p50_ratio(),
            "target": self.target.as_ref().map(Target::text),
            "met": self.met(),
            "peak_rss_kib": self.peak_rss_kib,
            "rss_of": self.rss_of,
            "notes": self.notes,
        })
    }
}

impl Figure {
    /// A cost in µs per `per` (a message, an event): what most rows
    /// compare, so that ours and the baseline's come out in one unit.
    pub fn micros(amount: f64, per: &'static str) -> Figure {
        Figure::Cost {
            amount,
            unit: "µs",
            per,
        }
    }

    /// The median and 99th percentile of latencies in milliseconds,
    /// `sorted` ascending.
    pub fn latency(sorted: &[f64]) -> Figure {
        Figure::Latency {
            p50_ms: crate::quantile(sorted, 0.5),
            p99_ms: crate::quantile(sorted, 0.99),
        }
    }

    /// self / `base`, for rates and costs; for latencies, of the p99s.
    pub fn ratio(self, base: Figure) -> Option<f64> {
        match (self, base) {
            (Figure::Rate { per_second: a, .. }, Figure::Rate { per_second: b, .. })
            | (Figure::Cost { amount: a, .. }, Figure::Cost { amount: b, .. })
            | (Figure::Latency { p99_ms: a, .. }, Figure::Latency { p99_ms: b, .. })
                if b > 0.0 =>
            {
                Some(a / b)
            }
            _ => None,
        }
    }

    /// self / `base` of the p50s, for latencies.
    pub fn p50_ratio(self, base: Figure) -> Option<f64> {
        match (self, base) {
            (Figure::Latency { p50_ms: a, .. }, Figure::Latency { p50_ms: b, .. }) if b > 0.0 => {
                Some(a / b)
            }
            _ => None,
        }
    }

    pub fn text(&self) -> String {
        match *self {
            Figure::Rate { per_second, unit } => format!("{} {unit}/s", si(per_second)),
            Figure::Latency { p50_ms, p99_ms } => {
                format!("p50 {p50_ms:.2} ms, p99 {p99_ms:.2} ms")
            }
            Figure::Cost { amount, unit, per } => format!("{amount:.2} {unit}/{per}"),
        }
    }

    fn json(&self) -> Value {
        match *self {
            Figure::Rate { per_second, unit } => json!({"per_second": per_second, "unit": unit}),
            Figure::Latency { p50_ms, p99_ms } => json!({"p50_ms": p50_ms, "p99_ms": p99_ms}),
            Figure::Cost { amount, unit, per } => {
                json!({"amount": amount, "unit": unit, "per": per})
            }
        }
    }
}

impl Target {
    fn text(&self) -> String {
        match self {
            Target::RatioAtLeast(min) => format!("ratio ≥ {min}"),
            Target::RatioAtMost(max) => format!("ratio ≤ {max}"),
            Target::P99RatioAtMost(max) => format!("p99 ≤ {max}x"),
            Target::AddedAtMost(max) => format!("≤ {max} more"),
            Target::CostAtMost(max, unit) => format!("≤ {max} {unit}"),
            Target::LatencyRatioAtMost { p50, p99 } => format!("p50 ≤ {p50}x, p99 ≤ {p99}x"),
        }
    }
}

/// 1234567 as "1.23 M", 45678 as "45.7 k": four significant figures at most
/// is all a benchmark on a shared machine can claim.
fn si(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2} M", x / 1e6)
    } else if x >= 1e4 {
        format!("{:.1} k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

/// The table, in Markdown.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| # | benchmark | ours | baseline | ratio | target | met | peak RSS |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for row in rows {
        let cell = |v: Option<String>| v.unwrap_or_else(|| "—".into());
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            row.id,
            row.what,
            row.ours.text(),
            cell(row.baseline.map(|b| b.text())),
            cell(row.ratio().map(|r| match row.p50_ratio() {
                Some(p50) => format!("p50 {p50:.2}, p99 {r:.2}"),
                None => format!("{r:.2}"),
            })),
            cell(row.target.as_ref().map(Target::text)),
            cell(
                row.met()
                    .map(|m| if m { "yes" } else { "**no**" }.to_owned())
            ),
            cell(row.peak_rss_kib.map(|k| format!(
                "{:.1} MiB ({})",
                k as f64 / 1024.0,
                row.rss_of
            ))),
        ));
    }
    let notes: Vec<String> = rows
        .iter()
        .flat_map(|r| r.notes.iter().map(move |n| format!("- {}: {n}", r.id)))
        .collect();
    if !notes.is_empty() {
        out.push('\n');
        out.push_str(&notes.join("\n"));
        out.push('\n');
    }
    out
}

/// The results file: the run's conditions (`machine` as it was when the
/// run started) and every row.
pub fn json(rows: &[Row], quick: bool, machine: Value) -> Value {
    json!({
        "date": crate::sys::today(),
        "mode": if quick { "quick" } else { "full" },
        "machine": machine,
        "rows": rows.iter().map(Row::json).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cost_row(ours: f64, baseline: f64, target: Target) -> Row {
        let cost = |amount| Figure::micros(amount, "event");
        Row {
            id: "t",
            what: String::new(),
            ours: cost(ours),
            baseline: Some(cost(baseline)),
            target: Some(target),
            peak_rss_kib: None,
            rss_of: "",
            notes: Vec::new(),
        }
    }

    #[test]
    fn added_cost_targets_compare_the_difference() {
        assert_eq!(
            cost_row(9.25, 9.11, Target::AddedAtMost(3.0)).met(),
            Some(true)
        );
        assert_eq!(
            cost_row(15.4, 8.9, Target::AddedAtMost(3.0)).met(),
            Some(false)
        );
        assert_eq!(
            cost_row(0.06, 0.17, Target::RatioAtMost(0.6)).met(),
            Some(true)
        );
    }
}
