//! Wall-clock time read through tokio's clock: anchored once to the system clock, then advanced by
//! tokio's monotonic time. Ledger minutes, incidents and alert windows all read it, so a test that
//! pauses and advances tokio's clock moves them too, and a system clock step never reorders them.

use std::time::{SystemTime, UNIX_EPOCH};
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
