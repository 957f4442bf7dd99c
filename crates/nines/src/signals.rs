//! The process's signals, as the gateway's stop requests and reloads.
//!
//! SIGTERM or SIGINT once: shut down in order (`first`: [`Stop::Drain`] for `serve`, with its
//! drain delay; [`Stop::Close`] for the demo). A second one: stop at once ([`Stop::Now`]), after
//! a best-effort flush. SIGHUP: reload the configuration file (refused with its error if it is
//! invalid; the running configuration stays).

use nines_gateway::{AppState, Stop};
use std::sync::Arc;
use tokio::sync::watch;

/// Starts following the signals; the receiver sees the stop requests. With `reload`, SIGHUP
/// reloads its configuration.
pub fn follow(reload: Option<Arc<AppState>>, first: Stop) -> watch::Receiver<Stop> {
    let (tx, rx) = watch::channel(Stop::Serving);
    tokio::spawn(async move {
        let Some(mut signals) = Signals::install() else {
            tracing::warn!("cannot install the signal handlers; stop with SIGKILL");
            return;
        };
        let mut stops = 0u32;
        loop {
            match signals.next().await {
                Signal::Stop => {
                    stops += 1;
                    let stop = if stops == 1 { first } else { Stop::Now };
                    if stops == 1 {
                        tracing::info!(
                            "shutdown signal received; stopping in order (send it again to stop at once)"
                        );
                    } else {
                        tracing::warn!("second shutdown signal: stopping at once");
                    }
                    tx.send_modify(|s| *s = (*s).max(stop));
                }
                Signal::Reload => match &reload {
                    Some(state) => {
                        let state = Arc::clone(state);
                        // Reading and validating the file is blocking I/O; the outcome is logged.
                        let _ = tokio::task::spawn_blocking(move || state.reload()).await;
                    }
                    None => tracing::info!("SIGHUP: nothing to reload"),
                },
            }
        }
    });
    rx
}

enum Signal {
    Stop,
    Reload,
}

/// The handlers, installed once so that no signal falls between two waits.
#[cfg(unix)]
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn install() -> Option<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Some(Signals {
            term: signal(SignalKind::terminate()).ok()?,
            int: signal(SignalKind::interrupt()).ok()?,
            hup: signal(SignalKind::hangup()).ok()?,
        })
    }

    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => Signal::Stop,
            _ = self.int.recv() => Signal::Stop,
            _ = self.hup.recv() => Signal::Reload,
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn install() -> Option<Signals> {
        Some(Signals)
    }

    async fn next(&mut self) -> Signal {
        let _ = tokio::signal::ctrl_c().await;
        Signal::Stop
    }
}
