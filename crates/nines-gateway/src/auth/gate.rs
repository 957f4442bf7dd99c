//! Whether a key lookup may go to the store now. After a lookup fails (the store is down or
//! late) the gate closes: lookups are answered at once from what the cache has, and one
//! background task pings the store every [`RETRY_EVERY`] until it answers, then opens the gate.
//! So with the store down no request waits on it, however many arrive.

use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// How often a down store is pinged.
pub const RETRY_EVERY: Duration = Duration::from_millis(250);

#[derive(Default)]
pub struct StoreGate(Mutex<Option<Instant>>);

impl StoreGate {
    fn down(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether lookups may go to the store.
    pub fn open(&self) -> bool {
        self.down().is_none()
    }

    /// A lookup failed: closes the gate. True when it was open (the caller starts the pinger).
    pub fn close(&self) -> bool {
        let mut down = self.down();
        let was_open = down.is_none();
        down.get_or_insert_with(Instant::now);
        was_open
    }

    /// The store answered: opens the gate.
    pub fn reopen(&self) {
        *self.down() = None;
    }

    /// Since when the store has been found down, if it is.
    pub fn down_since(&self) -> Option<Instant> {
        *self.down()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_failure_closes_the_gate_and_starts_one_pinger() {
        let gate = StoreGate::default();
        assert!(gate.open());
        assert!(gate.close(), "the first failure starts the pinger");
        assert!(!gate.close(), "later ones do not start another");
        assert!(!gate.open() && gate.down_since().is_some());
        gate.reopen();
        assert!(gate.open() && gate.down_since().is_none());
    }
}
