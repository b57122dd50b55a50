//! The plugins' output files against the event log: every event at least
//! once, nothing the log does not hold, in order within each run of a
//! plugin, and an event twice only when a crash came between the two
//! (a kill of the node, or of the plugin's own process).

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use crate::findings::Findings;
use crate::node::{Format, Output};

/// What one plugin's output showed.
#[derive(Default, Debug)]
pub struct Checked {
    pub lines: u64,
    /// Events written more than once (after a crash: allowed).
    pub repeated: u64,
    /// A last line cut short by a kill -9 that no later run cut off (the
    /// printer cuts such a line when it starts again: a line glued to it
    /// is a fault).
    pub torn: u64,
}

/// Checks `output` against an event log of `head` events. `segments` are
/// where each node life started writing, in order (see
/// [`whole_lines_len`]).
pub fn check(output: &Output, segments: &[u64], head: u64, findings: &Findings) -> Checked {
    let name = output.plugin;
    let mut checked = Checked::default();
    let file = match fs::File::open(&output.path) {
        Ok(file) => file,
        Err(e) => {
            findings.violation(format!(
                "plugin {name}: cannot read its output {}: {e}",
                output.path.display()
            ));
            return checked;
        }
    };
    // Per event: the (node life, process) runs that wrote it.
    let mut writers: Vec<Vec<(usize, u32)>> = vec![Vec::new(); head as usize + 1];
    // Per run: the last event it wrote, for the order.
    let mut last: HashMap<(usize, u32), u64> = HashMap::new();
    let mut offset = 0u64;
    let mut faults = 0usize;
    let mut fault = |what: String| {
        faults += 1;
        if faults <= 5 {
            findings.violation(format!("plugin {name}: {what}"));
        }
    };
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(n) => {
                let at = offset;
                offset += n as u64;
                let life = segments.partition_point(|&start| start <= at).max(1) - 1;
                if line.last() != Some(&b'\n') {
                    // The end of the file: the last life's kill cut it.
                    checked.torn += 1;
                    break;
                }
                checked.lines += 1;
                let text = String::from_utf8_lossy(&line);
                let Some((seq, pid)) = parse(output.format, text.trim_end()) else {
                    fault(format!("line {}: cannot be read: {text:?}", checked.lines));
                    continue;
                };
                if seq == 0 || seq > head {
                    fault(format!(
                        "line {}: event {seq}, which the event log (1 to {head}) does not hold",
                        checked.lines
                    ));
                    continue;
                }
                let run = (life, pid);
                if let Some(&before) = last.get(&run)
                    && seq <= before
                {
                    fault(format!(
                        "line {}: event {seq} after event {before} in the same run (node life {}, pid {pid})",
                        checked.lines,
                        life + 1
                    ));
                }
                last.insert(run, seq);
                let seen = &mut writers[seq as usize];
                if seen.contains(&run) {
                    fault(format!(
                        "event {seq} written twice by one run (node life {}, pid {pid}), with no crash between",
                        life + 1
                    ));
                } else if !seen.is_empty() {
                    checked.repeated += 1;
                }
                seen.push(run);
            }
            Err(e) => {
                fault(format!("cannot read its output: {e}"));
                break;
            }
        }
    }
    let missing: Vec<u64> = (1..=head)
        .filter(|&s| writers[s as usize].is_empty())
        .collect();
    if !missing.is_empty() {
        fault(format!(
            "{} of {head} events never reached it, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        ));
    }
    if faults > 5 {
        findings.violation(format!("plugin {name}: {} more fault(s)", faults - 5));
    }
    checked
}

/// A line's event number and the pid that wrote it (0: not recorded).
fn parse(format: Format, line: &str) -> Option<(u64, u32)> {
    match format {
        Format::SeqPid => {
            let (seq, pid) = line.split_once(' ')?;
            Some((seq.parse().ok()?, pid.parse().ok()?))
        }
        Format::PrinterJson => {
            let event: serde_json::Value = serde_json::from_str(line).ok()?;
            Some((event.get("seq")?.as_u64()?, 0))
        }
    }
}

/// Where the next life's lines start in the output at `path`: after its
/// last whole line (a torn one after it is cut by the plugin that writes
/// again).
pub fn whole_lines_len(path: &Path) -> u64 {
    const CHUNK: u64 = 64 * 1024;
    let Ok(mut file) = fs::File::open(path) else {
        return 0;
    };
    let mut end = file.metadata().map_or(0, |m| m.len());
    let mut chunk = Vec::new();
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        chunk.resize((end - start) as usize, 0);
        if file.seek(SeekFrom::Start(start)).is_err() || file.read_exact(&mut chunk).is_err() {
            return 0;
        }
        if let Some(newline) = chunk.iter().rposition(|&b| b == b'\n') {
            return start + newline as u64 + 1;
        }
        end = start;
    }
    0
}
