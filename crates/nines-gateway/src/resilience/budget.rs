//! The retry budget: retries, failovers and hedges across the whole gateway may add at most
//! `ratio` (20%) of live requests plus `min_per_second` (10/s) over a rolling window (10 s).
//!
//! Why: each attempt after the first multiplies upstream load exactly when upstreams are least
//! able to take it. A per-request attempt cap alone lets a total outage triple the traffic; a
//! budget shared by all requests keeps the extra load proportional to live traffic (Finagle's
//! RetryBudget, Linkerd's retry budget). The `min_per_second` floor keeps retries possible at low
//! traffic, where a ratio alone would allow none. When the budget is spent, a request that needs
//! another attempt fails fast (503 + Retry-After) instead of waiting.

use super::window::RollingWindow;
use crate::config::resilience::RetryBudget as Policy;
use std::sync::Mutex;
use tokio::time::Instant;

#[derive(Debug)]
pub struct RetryBudget {
    policy: Policy,
    /// (requests, extra attempts)
    window: Mutex<RollingWindow>,
}

impl RetryBudget {
    pub fn new(policy: Policy) -> Self {
        RetryBudget {
            policy,
            window: Mutex::new(RollingWindow::new(policy.window, Instant::now())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RollingWindow> {
        self.window.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one client request (its first attempt is always free).
    pub fn deposit(&self) {
        self.lock().add(Instant::now(), 1, 0);
    }

    /// Takes one extra attempt from the budget; false when it is spent.
    pub fn try_withdraw(&self) -> bool {
        let now = Instant::now();
        let mut window = self.lock();
        let (requests, extra) = window.totals(now);
        if (extra as f64) < self.allowance(requests) {
            window.add(now, 0, 1);
            true
        } else {
            false
        }
    }

    /// Extra attempts still available in the current window.
    pub fn remaining(&self) -> f64 {
        let (requests, extra) = self.lock().totals(Instant::now());
        (self.allowance(requests) - extra as f64).max(0.0)
    }

    fn allowance(&self, requests: u64) -> f64 {
        self.policy.ratio * requests as f64
            + self.policy.min_per_second * self.policy.window.as_secs_f64()
    }

    /// How long until spent budget is likely to return (one bucket of the window).
    pub fn retry_after(&self) -> std::time::Duration {
        (self.policy.window / 10).max(std::time::Duration::from_secs(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn allows_ratio_plus_floor_then_refuses_then_recovers() {
        let budget = RetryBudget::new(Policy {
            ratio: 0.2,
            min_per_second: 1.0,
            window: Duration::from_secs(10),
        });
        for _ in 0..100 {
            budget.deposit();
        }
        // 0.2 × 100 + 1/s × 10 s = 30 extra attempts.
        let granted = (0..100).filter(|_| budget.try_withdraw()).count();
        assert_eq!(granted, 30);
        assert_eq!(budget.remaining(), 0.0);
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(
            budget.remaining(),
            10.0,
            "the window aged out; only the floor is left"
        );
        assert!(budget.try_withdraw());
    }
}
