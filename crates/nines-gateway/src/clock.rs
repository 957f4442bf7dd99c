//! Time helpers, all in one place.
//!
//! [`Clock`] is wall-clock time read through tokio's clock: anchored once to the system clock,
//! then advanced by tokio's monotonic time. Ledger minutes, incidents and alert windows all read
//! it, so a test that pauses and advances tokio's clock moves them too, and a system clock step
//! never reorders them. The free functions convert between Unix times and `Duration`s without
//! panicking on input from outside.

use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    wall_ms: u64,
    mono: Instant,
}

impl Clock {
    /// Anchors to the system clock now.
    pub fn system() -> Clock {
        let wall_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Clock::at(wall_ms)
    }

    /// Anchors to a given Unix time (tests).
    pub fn at(wall_ms: u64) -> Clock {
        Clock {
            wall_ms,
            mono: Instant::now(),
        }
    }

    /// Unix milliseconds now.
    pub fn now_ms(&self) -> u64 {
        self.wall_ms + self.mono.elapsed().as_millis() as u64
    }

    /// Unix milliseconds at a monotonic instant (before or after the anchor).
    pub fn ms_at(&self, at: Instant) -> u64 {
        if at >= self.mono {
            self.wall_ms + (at - self.mono).as_millis() as u64
        } else {
            self.wall_ms
                .saturating_sub((self.mono - at).as_millis() as u64)
        }
    }
}

/// Milliseconds since the Unix epoch (0 before it).
pub fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Whole seconds since the Unix epoch now (OpenAI's `created`).
pub fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A number of seconds from outside (a header, a config value, a provider's hint) as a
/// `Duration`, or `None` when it is negative, not a number, or too large to be one.
/// `Duration::from_secs_f64` panics on those; every untrusted float goes through here.
pub fn seconds(secs: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(secs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_refuses_what_would_panic() {
        assert_eq!(seconds(1.5), Some(Duration::from_millis(1500)));
        assert_eq!(seconds(0.0), Some(Duration::ZERO));
        for bad in [-1.0, f64::NAN, f64::INFINITY, 1e300, 1e308] {
            assert_eq!(seconds(bad), None, "{bad}");
        }
    }
}
