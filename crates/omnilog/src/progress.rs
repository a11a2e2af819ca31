//! Progress of long offline work (replay, import): a bar with rate and ETA on a terminal, plain
//! lines every few seconds otherwise (CI logs, pipes), so both a person and a log file see
//! that something is moving; and the peak memory the work took, for its final report.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Reports `done` of `total` units of one task.
#[derive(Debug)]
pub struct Progress {
    label: String,
    /// What is counted: `events`, or `bytes`.
    unit: &'static str,
    bar: Option<ProgressBar>,
    started: Instant,
    last_line: Instant,
}

const LINE_EVERY: Duration = Duration::from_secs(2);

impl Progress {
    /// One of the tasks running at once under `group`: on a terminal their bars share it,
    /// so they are drawn one under the other instead of over each other.
    pub fn in_group(group: &MultiProgress, label: &str, total: u64) -> Self {
        let template = "{prefix:>10} [{bar:40}] {pos}/{len} events {per_sec} ETA {eta}";
        let mut progress = Self::new(label, total, "events", template);
        progress.bar = progress.bar.map(|bar| group.add(bar));
        progress
    }

    /// A task measured in bytes (reading a file).
    pub fn bytes(label: &str, total: u64) -> Self {
        let template = "{prefix:>10} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}";
        Self::new(label, total, "bytes", template)
    }

    /// A bar drawn with `template` on a terminal, plain lines counting `unit` otherwise.
    fn new(label: &str, total: u64, unit: &'static str, template: &str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(label.to_owned());
            bar
        });
        Progress {
            label: label.to_owned(),
            unit,
            bar,
            started: Instant::now(),
            last_line: Instant::now(),
        }
    }

    pub fn update(&mut self, done: u64, total: u64) {
        match &self.bar {
            Some(bar) => {
                bar.set_length(total);
                bar.set_position(done);
            }
            None if self.last_line.elapsed() >= LINE_EVERY => {
                self.last_line = Instant::now();
                self.line(done, total);
            }
            None => {}
        }
    }

    fn line(&self, done: u64, total: u64) {
        let seconds = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = done as f64 / seconds;
        let eta = if rate > 0.0 {
            format!("{:.0} s", total.saturating_sub(done) as f64 / rate)
        } else {
            "unknown".to_owned()
        };
        let unit = self.unit;
        eprintln!(
            "{}: {done}/{total} {unit} ({rate:.0} {unit}/s, ETA {eta})",
            self.label
        );
    }

    pub fn finish(self, done: u64, total: u64) {
        match self.bar {
            Some(bar) => bar.finish(),
            None => self.line(done, total),
        }
    }
}

/// The peak resident memory of this process so far, in MB (from `/proc`; `None` where there
/// is no `/proc`).
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}
