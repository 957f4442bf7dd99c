//! Shared health state that the attempt loop writes and the router and probes read: one breaker
//! per key slot, recent time-to-first-byte samples and in-flight counts per deployment, the retry
//! budget and the hedge cap.

use super::breaker::Breaker;
use super::budget::RetryBudget;
use super::window::RollingWindow;
use crate::config::Config;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Samples kept per deployment for percentiles.
const TTFB_SAMPLES: usize = 128;
/// Fewer samples than this and a percentile is not trusted.
const MIN_SAMPLES: usize = 20;

#[derive(Debug)]
pub struct Health {
    /// `[deployment][key]`.
    pub breakers: Vec<Vec<Arc<Breaker>>>,
    pub deployments: Vec<Arc<DeploymentHealth>>,
    pub budget: RetryBudget,
    hedges: Mutex<RollingWindow>,
}

#[derive(Debug, Default)]
pub struct DeploymentHealth {
    ttfb: Mutex<VecDeque<Duration>>,
    in_flight: AtomicU32,
}

impl Health {
    pub fn new(config: &Config) -> Health {
        let policy = config.resilience.breaker;
        Health {
            breakers: config
                .deployments
                .iter()
                .map(|d| {
                    d.keys
                        .iter()
                        .map(|k| Breaker::new(k.alias.clone(), policy))
                        .collect()
                })
                .collect(),
            deployments: config
                .deployments
                .iter()
                .map(|_| Arc::new(DeploymentHealth::default()))
                .collect(),
            budget: RetryBudget::new(config.resilience.retry_budget),
            hedges: Mutex::new(RollingWindow::new(Duration::from_secs(60), Instant::now())),
        }
    }

    pub fn breaker(&self, deployment: usize, key: usize) -> Option<&Arc<Breaker>> {
        self.breakers.get(deployment)?.get(key)
    }

    /// Counts a request for the hedge cap.
    pub fn count_request_for_hedging(&self) {
        self.hedge_window().add(Instant::now(), 1, 0);
    }

    /// Takes a hedge if fewer than `max_percent` of recent requests were hedged.
    pub fn try_hedge(&self, max_percent: f64) -> bool {
        let now = Instant::now();
        let mut window = self.hedge_window();
        let (requests, hedges) = window.totals(now);
        if (hedges as f64 + 1.0) <= requests as f64 * max_percent / 100.0 {
            window.add(now, 0, 1);
            true
        } else {
            false
        }
    }

    fn hedge_window(&self) -> std::sync::MutexGuard<'_, RollingWindow> {
        self.hedges.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl DeploymentHealth {
    pub fn record_ttfb(&self, ttfb: Duration) {
        let mut samples = self.ttfb.lock().unwrap_or_else(|p| p.into_inner());
        if samples.len() == TTFB_SAMPLES {
            samples.pop_front();
        }
        samples.push_back(ttfb);
    }

    /// The `p`-th percentile (0..=100) of recent times to first byte, once enough were seen.
    pub fn ttfb_percentile(&self, p: f64) -> Option<Duration> {
        let mut samples: Vec<Duration> = self
            .ttfb
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect();
        if samples.len() < MIN_SAMPLES {
            return None;
        }
        let last = samples.len() - 1;
        let rank = (((p / 100.0) * last as f64).round() as usize).min(last);
        let (_, value, _) = samples.select_nth_unstable(rank);
        Some(*value)
    }

    /// Marks one request in flight until the guard drops.
    pub fn enter(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
pub struct InFlight(Arc<DeploymentHealth>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
