//! Serving: accepting connections and handing them to the HTTP edge, and ending in order.
//!
//! The shutdown sequence (`state::lifecycle` has the phases):
//!
//! 1. **Drain** (the first SIGTERM/SIGINT, [`Stop::Drain`]): `/health/ready` answers 503 at
//!    once and HTTP/1 responses say `connection: close`, while connections are still accepted
//!    for `[server] drain_delay` (5 s), so load balancers move traffic away before anything is
//!    refused.
//! 2. **Close**: the listener closes; idle keep-alive connections close; connections with a
//!    request in flight finish it and close; a request still sending its body is answered 503
//!    (it must not hold the shutdown). A connection accepted moments before, whose first request
//!    has not arrived yet, gets [`FIRST_REQUEST_WAIT`] for it (and is answered) instead of being
//!    closed under a client that just sent it.
//! 3. **Grace**: in-flight requests have `[server] shutdown_grace` (30 s) to finish.
//! 4. **Cut**: what is still running then ends as the gateway's own doing: a request still
//!    waiting for an upstream gets 503 `shutting_down`, an open stream a `stream_interrupted`
//!    event; they get [`CUT_FLUSH`] to reach their clients.
//!
//! A second signal ([`Stop::Now`]) returns at once, whatever phase; the caller then flushes
//! what it can in a moment and exits. [`Stop::Close`] skips the drain delay (tests, the demo).

mod connections;
pub mod descriptors;
pub mod listener;
mod refuse;
mod watchdog;

use crate::state::{AppState, Phase};
use connections::Connections;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;

/// How long cut requests and streams get to write their last bytes.
pub const CUT_FLUSH: Duration = Duration::from_secs(1);

/// How long a connection accepted just before the listener closed may take to send its first
/// request.
pub const FIRST_REQUEST_WAIT: Duration = Duration::from_secs(1);

/// What the process asks of the server; it only ever grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stop {
    /// Keep serving.
    Serving,
    /// Shut down in order, starting with the drain delay.
    Drain,
    /// Shut down in order, without the drain delay.
    Close,
    /// Stop at once.
    Now,
}

/// What a shutdown did, for its last log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped {
    /// Requests in flight when the listener closed.
    pub in_flight_at_close: u64,
    /// Requests still in flight when the grace ended, ended by the gateway.
    pub cut: u64,
    /// A second signal ended it before its course.
    pub forced: bool,
    /// From the first stop signal to now.
    pub took: Duration,
}

/// Serves `state` on `listener` until `stop` asks otherwise, then shuts down in order.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    mut stop: watch::Receiver<Stop>,
) -> std::io::Result<Stopped> {
    let descriptor_cap = match descriptors::raise_limit() {
        Some(limit) => descriptors::connections_for(limit),
        None => usize::MAX,
    };
    let connections = Connections::new(Arc::clone(&state), descriptor_cap);
    let configured = state.runtime().config.server.connections.max_connections;
    if descriptor_cap < configured {
        tracing::warn!(
            max_connections = configured,
            cap = descriptor_cap,
            "the file-descriptor limit cannot hold server.max_connections: connections are capped \
             lower (raise the limit, e.g. LimitNOFILE= in systemd or ulimit -n)"
        );
    }
    let lifecycle = &state.lifecycle;

    // Accept until the drain delay after the first stop signal is over.
    let mut close_at: Option<Instant> = None;
    let mut stopping_since: Option<Instant> = None;
    loop {
        let requested = *stop.borrow_and_update();
        if requested >= Stop::Drain && stopping_since.is_none() {
            stopping_since = Some(Instant::now());
            lifecycle.advance(Phase::Draining);
            let delay = match requested {
                Stop::Drain => state.runtime().config.server.drain_delay,
                _ => Duration::ZERO,
            };
            tracing::info!(
                drain_delay = %humantime::format_duration(delay),
                "shutting down: readiness is 503; still accepting during the drain delay"
            );
            close_at = Some(Instant::now() + delay);
        }
        if requested == Stop::Now {
            return Ok(stopped(0, 0, true, stopping_since));
        }
        if requested == Stop::Close {
            close_at = Some(Instant::now());
        }
        if close_at.is_some_and(|at| Instant::now() >= at) {
            break;
        }
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => connections.serve(tcp),
                // Out of file descriptors, or a connection reset before it was accepted: keep
                // the listener, give the process a moment.
                Err(e) => {
                    connections.accept_failed(&e);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            changed = stop.changed() => {
                if changed.is_err() {
                    // The stop sender is gone: nobody can ask any more; close in order.
                    close_at = Some(Instant::now());
                }
            }
            () = sleep_until(close_at) => {}
        }
    }

    // Close: no new connections; idle ones close, busy ones finish their request and close.
    drop(listener);
    lifecycle.advance(Phase::Closing);
    let in_flight_at_close = lifecycle.in_flight();
    let grace = state.runtime().config.server.shutdown_grace;
    tracing::info!(
        in_flight = in_flight_at_close,
        grace = %humantime::format_duration(grace),
        "listener closed; in-flight requests finishing"
    );
    let all_closed = connections.shutdown();
    tokio::pin!(all_closed);
    tokio::select! {
        () = &mut all_closed => return Ok(stopped(in_flight_at_close, 0, false, stopping_since)),
        () = tokio::time::sleep(grace) => {}
        () = until_now(&mut stop) => return Ok(stopped(in_flight_at_close, 0, true, stopping_since)),
    }

    // Cut: the grace is over; what still runs ends with a shutdown error, and gets a moment to
    // say so to its client.
    let cut = lifecycle.in_flight();
    lifecycle.advance(Phase::Cutting);
    tracing::warn!(
        requests = cut,
        "shutdown grace over: ending the requests and streams still in flight"
    );
    tokio::select! {
        () = &mut all_closed => {}
        () = tokio::time::sleep(CUT_FLUSH) => {}
        () = until_now(&mut stop) => return Ok(stopped(in_flight_at_close, cut, true, stopping_since)),
    }
    Ok(stopped(in_flight_at_close, cut, false, stopping_since))
}

fn stopped(at_close: u64, cut: u64, forced: bool, since: Option<Instant>) -> Stopped {
    Stopped {
        in_flight_at_close: at_close,
        cut,
        forced,
        took: since.map_or(Duration::ZERO, |s| s.elapsed()),
    }
}

/// Waits for `at`, or forever without one.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Resolves when a stop at once is asked for.
async fn until_now(stop: &mut watch::Receiver<Stop>) {
    if stop.wait_for(|s| *s == Stop::Now).await.is_err() {
        std::future::pending::<()>().await;
    }
}
