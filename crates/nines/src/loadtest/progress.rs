//! The live view of a run: an `indicatif` bar over the run's duration, with what has been sent,
//! answered and failed so far, on stderr (hidden when stderr is not a terminal or with
//! `--no-progress`, so reports on stdout stay clean).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Counters the workers bump and the bar reads.
#[derive(Default)]
pub struct Live {
    pub done: AtomicU64,
    pub failed: AtomicU64,
    pub in_flight: AtomicU64,
}

/// One bar for one run (or one step of a capacity search).
pub struct Progress {
    bar: ProgressBar,
    live: Arc<Live>,
    ticker: tokio::task::JoinHandle<()>,
}

impl Progress {
    /// A bar over `duration` labelled `label`; `visible: false` draws nothing.
    pub fn start(label: String, duration: Duration, visible: bool) -> Progress {
        let target = if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let length = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        let bar = ProgressBar::with_draw_target(Some(length), target);
        let style =
            ProgressStyle::with_template("{prefix:>16} [{bar:30}] {elapsed:>4}/{duration:4} {msg}")
                .map(|s| s.progress_chars("=> "))
                .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_prefix(label);
        let live = Arc::new(Live::default());
        let ticker = {
            let bar = bar.clone();
            let live = Arc::clone(&live);
            let started = tokio::time::Instant::now();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(200));
                loop {
                    tick.tick().await;
                    let elapsed = started.elapsed();
                    bar.set_position(
                        u64::try_from(elapsed.as_millis())
                            .unwrap_or(u64::MAX)
                            .min(length),
                    );
                    let done = live.done.load(Relaxed);
                    let rate = done as f64 / elapsed.as_secs_f64().max(1e-3);
                    bar.set_message(format!(
                        "{done} done ({rate:.1}/s), {} failed, {} in flight",
                        live.failed.load(Relaxed),
                        live.in_flight.load(Relaxed)
                    ));
                }
            })
        };
        Progress { bar, live, ticker }
    }

    pub fn live(&self) -> Arc<Live> {
        Arc::clone(&self.live)
    }

    /// Removes the bar.
    pub fn finish(self) {
        self.ticker.abort();
        self.bar.finish_and_clear();
    }
}
