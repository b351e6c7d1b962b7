//! Progress of a transfer: an indicatif bar (bytes, rate, ETA) on a terminal, and a summary line
//! either way. Bytes found already there on resume count toward the bar but not toward the rate.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::http::OnChunk;

/// Cheap to clone; every clone drives the same bar.
#[derive(Clone, Debug)]
pub struct Progress {
    bar: ProgressBar,
    visible: bool,
    inner: Arc<Counters>,
}

#[derive(Debug)]
struct Counters {
    started: Instant,
    /// Bytes that were already at the destination (resumed), not transferred by this run.
    present: AtomicU64,
}

impl Progress {
    /// `visible`: draw the bar (callers pass false when stderr is not a terminal).
    pub fn new(visible: bool) -> Self {
        let bar = ProgressBar::with_draw_target(
            Some(0),
            if visible {
                ProgressDrawTarget::stderr()
            } else {
                ProgressDrawTarget::hidden()
            },
        );
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:>11} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        Self {
            bar,
            visible,
            inner: Arc::new(Counters {
                started: Instant::now(),
                present: AtomicU64::new(0),
            }),
        }
    }

    /// Starts a phase of `total` bytes ("hashing", "uploading"…).
    pub fn start(&self, label: &'static str, total: u64) {
        // Length first: a bar drawn with length 0 shows as full.
        self.bar.set_length(total);
        self.bar.set_position(0);
        self.bar.set_message(label);
        self.bar.reset_eta();
    }

    /// Bytes that were already there: they move the bar, and the rate starts after them.
    pub fn skip(&self, n: u64) {
        self.inner.present.fetch_add(n, Ordering::Relaxed);
        self.bar.inc(n);
        self.bar.reset_eta();
    }

    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
    }

    /// Takes back bytes of a failed attempt that will be sent again.
    pub fn dec(&self, n: u64) {
        self.bar.dec(n);
    }

    /// A callback for streamed bodies that moves the bar and adds to `sent` (so a failed
    /// attempt can be taken back).
    pub fn on_chunk(&self, sent: Arc<AtomicU64>) -> OnChunk {
        let bar = self.bar.clone();
        Arc::new(move |n| {
            sent.fetch_add(n, Ordering::Relaxed);
            bar.inc(n);
        })
    }

    /// A message line: above the bar on a terminal, else on stderr.
    pub fn note(&self, msg: &str) {
        if self.visible {
            self.bar.println(format!("mpgw: {msg}"));
        } else {
            eprintln!("mpgw: {msg}");
        }
    }

    /// Prints the summary line of a finished transfer: `verb` the total, in how long, at what
    /// rate, and how much was already there.
    pub fn summary(&self, verb: &str, what: &str) {
        let elapsed = self.inner.started.elapsed();
        let total = self.bar.length().unwrap_or(0);
        let present = self.inner.present.load(Ordering::Relaxed).min(total);
        let moved = total - present;
        let rate = moved as f64 / elapsed.as_secs_f64().max(1e-3);
        let mut line = format!(
            "{verb} {what}: {} in {:.1}s ({}/s)",
            HumanBytes(moved),
            elapsed.as_secs_f64(),
            HumanBytes(rate as u64)
        );
        if present > 0 {
            line.push_str(&format!("; {} were already there", HumanBytes(present)));
        }
        self.finish();
        eprintln!("mpgw: {line}");
    }

    /// Removes the bar (before any final output).
    pub fn finish(&self) {
        if !self.bar.is_finished() {
            self.bar.finish_and_clear();
        }
    }
}
