//! Where the process is in its life, as every part of the request path needs to know it.
//!
//! | phase      | begins                                   | what changes                                  |
//! |------------|------------------------------------------|-----------------------------------------------|
//! | serving    | start                                    | —                                             |
//! | draining   | the first shutdown signal                | `/health/ready` answers 503; HTTP/1 responses say `connection: close`; connections are still accepted for `server.drain_delay` |
//! | closing    | `drain_delay` after it                   | the listener is closed; idle connections close; a request still sending its body gets 503 (it would hold shutdown) |
//! | cutting    | `shutdown_grace` after closing            | requests still waiting for an upstream get 503 `shutting_down`; open streams end with a `stream_interrupted` event |
//!
//! Readers poll the phase (an atomic load) or wait on the phase's token; only `server` moves it
//! forward. Requests in flight are counted here, so the final shutdown line can say what was
//! drained and what was cut.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use tokio_util::sync::CancellationToken;

/// The phases, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Serving = 0,
    Draining = 1,
    Closing = 2,
    Cutting = 3,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Serving => "serving",
            Phase::Draining => "draining",
            Phase::Closing => "closing",
            Phase::Cutting => "cutting",
        }
    }
}

#[derive(Debug, Default)]
pub struct Lifecycle {
    phase: AtomicU8,
    closing: CancellationToken,
    cutting: CancellationToken,
    /// Requests between `Request::start` and their end, now.
    in_flight: Arc<AtomicU64>,
    /// Requests started since the process began.
    started: AtomicU64,
}

/// One request counted in flight until it is dropped.
#[derive(Debug)]
pub struct InFlightRequest(Arc<AtomicU64>);

impl Drop for InFlightRequest {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Lifecycle {
    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Serving,
            1 => Phase::Draining,
            2 => Phase::Closing,
            _ => Phase::Cutting,
        }
    }

    /// Shutting down in any phase: readiness is 503.
    pub fn draining(&self) -> bool {
        self.phase() >= Phase::Draining
    }

    /// Moves forward to `phase` (never back); wakes whoever waits on it.
    pub fn advance(&self, phase: Phase) {
        self.phase.fetch_max(phase as u8, Ordering::AcqRel);
        if phase >= Phase::Closing {
            self.closing.cancel();
        }
        if phase >= Phase::Cutting {
            self.cutting.cancel();
        }
    }

    /// Cancelled when the listener closes: a request body still arriving then is refused.
    pub fn closing(&self) -> CancellationToken {
        self.closing.clone()
    }

    /// Cancelled when the grace is over: what is still in flight ends with a shutdown error.
    pub fn cutting(&self) -> CancellationToken {
        self.cutting.clone()
    }

    /// Counts a request in flight until the guard drops.
    pub fn enter(&self) -> InFlightRequest {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.started.fetch_add(1, Ordering::Relaxed);
        InFlightRequest(Arc::clone(&self.in_flight))
    }

    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Acquire)
    }

    pub fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_only_move_forward_and_cancel_their_tokens() {
        let l = Lifecycle::default();
        assert_eq!(l.phase(), Phase::Serving);
        assert!(!l.draining());
        let (closing, cutting) = (l.closing(), l.cutting());
        l.advance(Phase::Draining);
        assert!(l.draining() && !closing.is_cancelled());
        l.advance(Phase::Cutting);
        assert!(closing.is_cancelled() && cutting.is_cancelled());
        l.advance(Phase::Draining);
        assert_eq!(l.phase(), Phase::Cutting, "never back");
        let a = l.enter();
        let b = l.enter();
        assert_eq!((l.in_flight(), l.started()), (2, 2));
        drop((a, b));
        assert_eq!(l.in_flight(), 0);
    }
}
