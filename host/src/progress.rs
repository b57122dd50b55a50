//! How far a long command has got: `replay` of a file, `events`, and any
//! later command that works through a count of things.
//!
//! On a terminal that nothing else writes to (stderr a terminal, stdout
//! not), a bar with the count, rate and time left; otherwise an info line
//! every few seconds, so that a log shows a long run moving. At the end a
//! summary: how many, how long, how fast. Log lines written while a bar is
//! shown go through [`LogWriter`], which lifts the bar out of their way.

use std::fmt;
use std::io::{self, IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// How often a progress line is logged when no bar is shown.
pub const LOG_EVERY: Duration = Duration::from_secs(5);

/// The bar being shown, if any: [`LogWriter`] suspends it around log lines.
static SHOWN: Mutex<Option<ProgressBar>> = Mutex::new(None);

fn shown() -> std::sync::MutexGuard<'static, Option<ProgressBar>> {
    SHOWN.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where progress goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// A bar on stderr.
    Bar,
    /// An info line at most this often.
    Lines(Duration),
}

impl View {
    /// A bar when stderr is a terminal and stdout is not (a command's
    /// output on the same terminal would tear the bar); lines otherwise.
    pub fn for_this_terminal() -> View {
        if io::stderr().is_terminal() && !io::stdout().is_terminal() {
            View::Bar
        } else {
            View::Lines(LOG_EVERY)
        }
    }
}

/// The progress of one command.
pub struct Progress {
    /// What is being done, in the past tense: "replay: published".
    label: String,
    /// What is counted: "events".
    unit: &'static str,
    total: Option<u64>,
    count: u64,
    started: Instant,
    bar: Option<ProgressBar>,
    every: Duration,
    next_line: Instant,
}

impl Progress {
    /// Starts reporting, on the view that suits this terminal.
    pub fn start(label: &str, unit: &'static str, total: Option<u64>) -> Progress {
        Progress::with_view(label, unit, total, View::for_this_terminal())
    }

    pub fn with_view(label: &str, unit: &'static str, total: Option<u64>, view: View) -> Progress {
        let started = Instant::now();
        let (bar, every) = match view {
            View::Bar => {
                let bar = new_bar(label, unit, total);
                *shown() = Some(bar.clone());
                (Some(bar), LOG_EVERY)
            }
            View::Lines(every) => (None, every),
        };
        Progress {
            label: label.to_owned(),
            unit,
            total,
            count: 0,
            started,
            bar,
            every,
            next_line: started + every,
        }
    }

    /// Counts `n` more done.
    pub fn add(&mut self, n: u64) {
        self.count += n;
        match &self.bar {
            Some(bar) => bar.set_position(self.count),
            None => {
                let now = Instant::now();
                if now >= self.next_line {
                    self.next_line = now + self.every;
                    tracing::info!("{}", self.line(now));
                }
            }
        }
    }

    /// How many are done.
    pub fn count(&self) -> u64 {
        self.count
    }

    fn line(&self, now: Instant) -> String {
        let seconds = now.duration_since(self.started).as_secs_f64();
        let rate = rate(self.count, seconds);
        let of = self.total.map_or(String::new(), |t| format!(" of {t}"));
        let left = match self.total {
            Some(total) if rate > 0.0 && total >= self.count => {
                format!(", about {:.0} s left", (total - self.count) as f64 / rate)
            }
            _ => String::new(),
        };
        format!(
            "{} {}{of} {} ({rate:.0}/s{left})",
            self.label, self.count, self.unit
        )
    }

    /// Stops reporting (clearing the bar) and returns the summary.
    pub fn finish(mut self) -> Summary {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
            *shown() = None;
        }
        Summary {
            label: self.label.clone(),
            unit: self.unit,
            count: self.count,
            elapsed: self.started.elapsed(),
        }
    }
}

impl Drop for Progress {
    /// A command that fails half-way leaves no bar behind.
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
            *shown() = None;
        }
    }
}

fn new_bar(label: &str, unit: &str, total: Option<u64>) -> ProgressBar {
    let (bar, template) = match total {
        Some(total) => (
            ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr()),
            format!(
                "{{msg}} [{{bar:30}}] {{human_pos}}/{{human_len}} {unit} ({{rate}}, {{eta}} left)"
            ),
        ),
        None => (
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
            format!("{{spinner}} {{msg}} {{human_pos}} {unit} ({{rate}})"),
        ),
    };
    // The templates are constants; a mistake in one shows as a plain bar.
    let style = ProgressStyle::with_template(&template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key("rate", |state: &ProgressState, w: &mut dyn fmt::Write| {
            let _ = write!(w, "{:.0}/s", state.per_sec());
        })
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(label.to_owned());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn rate(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

/// What a finished command did: `replay: published 200000 events in 1.71 s (116959/s)`.
#[derive(Debug, Clone)]
pub struct Summary {
    pub label: String,
    pub unit: &'static str,
    pub count: u64,
    pub elapsed: Duration,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.elapsed.as_secs_f64();
        write!(
            f,
            "{} {} {} in {seconds:.2} s ({:.0}/s)",
            self.label,
            self.count,
            self.unit,
            rate(self.count, seconds)
        )
    }
}

/// The log's writer: stderr, with the progress bar (if one is shown) lifted
/// out of the way of each line, so that lines and bar never tear each other.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let bar = shown().clone();
        match bar {
            Some(bar) => bar.suspend(|| io::stderr().write(buf)),
            None => io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> LogWriter {
        LogWriter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_summarizes() {
        let mut p = Progress::with_view("test: did", "things", Some(10), View::Lines(LOG_EVERY));
        p.add(3);
        p.add(4);
        assert_eq!(p.count(), 7);
        let line = p.line(p.started + Duration::from_secs(7));
        assert_eq!(line, "test: did 7 of 10 things (1/s, about 3 s left)");
        let summary = p.finish();
        assert_eq!(summary.count, 7);
        let text = summary.to_string();
        assert!(text.starts_with("test: did 7 things in "), "{text}");
        assert!(text.ends_with("/s)"), "{text}");
    }

    #[test]
    fn without_a_total_no_time_left_is_guessed() {
        let mut p = Progress::with_view("test: read", "lines", None, View::Lines(LOG_EVERY));
        p.add(50);
        assert_eq!(
            p.line(p.started + Duration::from_secs(2)),
            "test: read 50 lines (25/s)"
        );
        let at_start = Summary {
            label: "x".into(),
            unit: "events",
            count: 0,
            elapsed: Duration::ZERO,
        };
        assert_eq!(at_start.to_string(), "x 0 events in 0.00 s (0/s)");
    }

    #[test]
    fn a_bar_is_registered_for_the_log_writer_while_shown() {
        let mut p = Progress::with_view("test: bar", "things", Some(5), View::Bar);
        assert!(shown().is_some());
        p.add(5);
        assert_eq!(p.finish().count, 5);
        assert!(shown().is_none());
    }
}
