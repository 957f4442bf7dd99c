//! Shared health state that the attempt loop writes and the router and probes read: one breaker
//! per key slot, recent time-to-first-byte samples and in-flight counts per deployment, the retry
//! budget and the hedge cap.

use super::breaker::Breaker;
use super::budget::RetryBudget;
use super::first_byte::FirstByteHistory;
use super::window::RollingWindow;
use crate::config::{Config, Deployment};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// One key slot: a deployment (by index in the configuration) and one of its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeySlot {
    pub deployment: usize,
    pub key: usize,
    /// Which model of the plan it serves: 0 the requested one, k its k-th fallback model.
    pub tier: usize,
}

#[derive(Debug)]
pub struct Health {
    /// `[deployment][key]`.
    pub breakers: Vec<Vec<Arc<Breaker>>>,
    pub deployments: Vec<Arc<DeploymentHealth>>,
    pub budget: Arc<RetryBudget>,
    hedges: Arc<Mutex<RollingWindow>>,
    /// Requests waiting for capacity right now.
    queued: Arc<AtomicU32>,
    /// Woken whenever a capacity-limited deployment frees a slot (shared by all of them).
    freed: Arc<tokio::sync::Notify>,
}

/// A new breaker for each of a deployment's key slots.
fn breakers_of(d: &Deployment, config: &Config) -> Vec<Arc<Breaker>> {
    d.keys
        .iter()
        .map(|k| Breaker::new(k.alias.clone(), config.resilience.breaker))
        .collect()
}

/// A place in the capacity queue; leaving the queue is dropping it.
pub struct QueueTicket(Arc<AtomicU32>);

impl Drop for QueueTicket {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Reads a provider's own rate-limit headroom: OpenAI's `x-ratelimit-remaining-requests|tokens`
/// with Go-style `x-ratelimit-reset-*` durations (`"6m0s"`, `"12ms"`).
pub fn headroom(headers: &http::HeaderMap) -> Option<Headroom> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let number = |name: &str| text(name).and_then(|v| v.trim().parse::<u64>().ok());
    let remaining_requests = number("x-ratelimit-remaining-requests");
    let remaining_tokens = number("x-ratelimit-remaining-tokens");
    if remaining_requests.is_none() && remaining_tokens.is_none() {
        return None;
    }
    let reset = [
        text("x-ratelimit-reset-requests"),
        text("x-ratelimit-reset-tokens"),
    ]
    .into_iter()
    .flatten()
    .filter_map(go_duration)
    .max()
    .unwrap_or(Duration::from_secs(1));
    Some(Headroom {
        remaining_requests,
        remaining_tokens,
        until: Instant::now() + reset,
    })
}

/// Parses Go's `time.Duration` text: `1h2m3.5s`, `250ms`, `6m0s`.
pub fn go_duration(text: &str) -> Option<Duration> {
    let mut total = 0.0f64;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    crate::clock::seconds(total)
}

#[derive(Debug)]
pub struct DeploymentHealth {
    /// Recent times to first byte: percentiles, hedge delays, learned deadlines.
    pub first_byte: FirstByteHistory,
    in_flight: AtomicU32,
    /// `max_concurrency`, or `u32::MAX` when unlimited (a reload may change it).
    capacity: AtomicU32,
    latency: Mutex<PeakEwma>,
    /// Woken whenever a request leaves a deployment that has a capacity, for queued requests.
    freed: Arc<tokio::sync::Notify>,
    /// Per key slot: what the provider said is left of its own rate limit.
    headroom: Vec<Mutex<Option<Headroom>>>,
}

impl Default for DeploymentHealth {
    fn default() -> Self {
        DeploymentHealth::new(u32::MAX, 1, Arc::new(tokio::sync::Notify::new()))
    }
}

/// The provider's `x-ratelimit-remaining-*` for one key slot, until its reset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Headroom {
    pub remaining_requests: Option<u64>,
    pub remaining_tokens: Option<u64>,
    pub until: Instant,
}

/// Peak-sensitive EWMA of time to first byte (Finagle's and Linkerd's "peak EWMA"): a sample
/// above the average replaces it at once, so a latency spike moves traffic away immediately; below
/// it, the average decays towards the sample with a 10 s time constant, so recovery is gradual.
#[derive(Debug, Clone, Copy)]
struct PeakEwma {
    micros: f64,
    at: Instant,
}

const EWMA_DECAY: Duration = Duration::from_secs(10);
/// The latency assumed before any sample: optimistic, so a new deployment gets explored.
const DEFAULT_LATENCY: Duration = Duration::from_millis(50);

impl Health {
    pub fn new(config: &Config) -> Health {
        let freed = Arc::new(tokio::sync::Notify::new());
        Health {
            breakers: config
                .deployments
                .iter()
                .map(|d| breakers_of(d, config))
                .collect(),
            deployments: config
                .deployments
                .iter()
                .map(|d| Arc::new(DeploymentHealth::of(d, Arc::clone(&freed))))
                .collect(),
            budget: Arc::new(RetryBudget::new(config.resilience.retry_budget)),
            hedges: Arc::new(Mutex::new(RollingWindow::new(
                Duration::from_secs(60),
                Instant::now(),
            ))),
            queued: Arc::new(AtomicU32::new(0)),
            freed,
        }
    }

    /// The health of a reloaded configuration: what was learned about deployments and key slots
    /// whose identity did not change is kept (breakers with their phase and counts, latency
    /// estimates, time-to-first-byte samples, in-flight counts, headroom), taking the new
    /// configuration's policy and capacity; new or changed ones start fresh. The retry budget, the
    /// hedge window and the capacity queue carry over while their policy is the same.
    ///
    /// A deployment's identity is its name, provider, base URL and upstream model (and its number
    /// of keys, for its per-key state); a key slot's, its deployment's plus its alias and secret.
    pub fn succeeding(previous: &Health, old: &Config, config: &Config) -> Health {
        let find = |d: &Deployment| {
            old.deployments.iter().position(|o| {
                o.name == d.name
                    && o.provider == d.provider
                    && o.base_url == d.base_url
                    && o.upstream_model == d.upstream_model
            })
        };
        let mut health = Health {
            budget: if old.resilience.retry_budget == config.resilience.retry_budget {
                Arc::clone(&previous.budget)
            } else {
                Arc::new(RetryBudget::new(config.resilience.retry_budget))
            },
            hedges: Arc::clone(&previous.hedges),
            queued: Arc::clone(&previous.queued),
            freed: Arc::clone(&previous.freed),
            breakers: Vec::with_capacity(config.deployments.len()),
            deployments: Vec::with_capacity(config.deployments.len()),
        };
        let policy = config.resilience.breaker;
        for d in &config.deployments {
            let before = find(d);
            let breakers = d
                .keys
                .iter()
                .map(|k| {
                    let kept = before.and_then(|o| {
                        let slot = old.deployments[o]
                            .keys
                            .iter()
                            .position(|ok| ok.alias == k.alias && ok.secret == k.secret)?;
                        previous.breakers.get(o)?.get(slot)
                    });
                    match kept {
                        Some(breaker) => {
                            breaker.set_policy(policy);
                            Arc::clone(breaker)
                        }
                        None => Breaker::new(k.alias.clone(), policy),
                    }
                })
                .collect();
            health.breakers.push(breakers);
            let kept = before
                .filter(|&o| old.deployments[o].keys.len() == d.keys.len())
                .and_then(|o| previous.deployments.get(o));
            health.deployments.push(match kept {
                Some(dh) => {
                    dh.set_capacity(d.max_concurrency.unwrap_or(u32::MAX));
                    Arc::clone(dh)
                }
                None => Arc::new(DeploymentHealth::of(d, Arc::clone(&health.freed))),
            });
        }
        health
    }

    /// Takes a place in the capacity queue, or `None` when `max` requests already wait.
    pub fn join_queue(&self, max: usize) -> Option<QueueTicket> {
        let max = u32::try_from(max).unwrap_or(u32::MAX);
        self.queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| QueueTicket(Arc::clone(&self.queued)))
    }

    /// Every breaker reports its transitions to `sink` from now on, and shares its state with
    /// other replicas as `coordination` says.
    pub fn attach(
        &self,
        sink: &super::events::EventSink,
        coordination: &Arc<super::shared::Coordination>,
    ) {
        for breaker in self.breakers.iter().flatten() {
            breaker.attach(sink);
            breaker.coordinate(coordination);
        }
    }

    /// The breaker of the key slot with this alias (`deployment#index`).
    pub fn breaker_by_alias(&self, alias: &str) -> Option<&Arc<Breaker>> {
        self.breakers.iter().flatten().find(|b| b.alias() == alias)
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
    pub fn record_ttfb(&self, stream: bool, ttfb: Duration) {
        self.first_byte.record(stream, ttfb);
    }

    /// The `p`-th percentile (0..=100) of recent times to first byte, once enough were seen.
    /// The `p`th percentile time to first byte over streamed and whole answers (the status
    /// page's live figure).
    pub fn ttfb_percentile(&self, p: f64) -> Option<Duration> {
        self.first_byte.percentile_all(p)
    }

    fn of(d: &Deployment, freed: Arc<tokio::sync::Notify>) -> Self {
        DeploymentHealth::new(d.max_concurrency.unwrap_or(u32::MAX), d.keys.len(), freed)
    }

    fn set_capacity(&self, capacity: u32) {
        self.capacity.store(capacity, Ordering::Release);
        // Waiters may fit now.
        self.freed.notify_waiters();
    }

    fn capacity_now(&self) -> u32 {
        self.capacity.load(Ordering::Acquire)
    }

    fn new(capacity: u32, keys: usize, freed: Arc<tokio::sync::Notify>) -> Self {
        DeploymentHealth {
            first_byte: FirstByteHistory::default(),
            in_flight: AtomicU32::new(0),
            capacity: AtomicU32::new(capacity),
            latency: Mutex::new(PeakEwma {
                micros: DEFAULT_LATENCY.as_secs_f64() * 1e6,
                at: Instant::now(),
            }),
            freed,
            headroom: (0..keys.max(1)).map(|_| Mutex::new(None)).collect(),
        }
    }

    /// Marks one request in flight until the guard drops, unconditionally.
    pub fn enter(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    /// Marks one request in flight if the deployment is below its `max_concurrency`; atomic, so
    /// concurrent requests can never push it past its capacity.
    pub fn try_enter(self: &Arc<Self>) -> Option<InFlight> {
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.capacity_now()).then_some(n + 1)
            })
            .ok()
            .map(|_| InFlight(Arc::clone(self)))
    }

    pub fn capacity(&self) -> Option<u32> {
        let capacity = self.capacity_now();
        (capacity != u32::MAX).then_some(capacity)
    }

    pub fn at_capacity(&self) -> bool {
        self.in_flight() >= self.capacity_now()
    }

    /// In flight relative to capacity (in flight itself when unlimited): least-busy's score.
    pub fn load(&self) -> f64 {
        match self.capacity() {
            Some(c) => f64::from(self.in_flight()) / f64::from(c.max(1)),
            None => f64::from(self.in_flight()),
        }
    }

    /// Wakes when any capacity-limited deployment frees a slot.
    pub fn freed(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.freed)
    }

    /// Folds a time-to-first-byte sample into the peak EWMA.
    pub fn observe_latency(&self, sample: Duration) {
        let now = Instant::now();
        let mut ewma = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        let sample = sample.as_secs_f64() * 1e6;
        if sample > ewma.micros {
            ewma.micros = sample;
        } else {
            let elapsed = now.saturating_duration_since(ewma.at).as_secs_f64();
            let w = (-elapsed / EWMA_DECAY.as_secs_f64()).exp();
            ewma.micros = ewma.micros * w + sample * (1.0 - w);
        }
        ewma.at = now;
    }

    /// The current peak-EWMA time to first byte.
    pub fn latency(&self) -> Duration {
        let ewma = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        crate::clock::seconds(ewma.micros / 1e6).unwrap_or(DEFAULT_LATENCY)
    }

    /// Records the provider's own rate-limit headroom for a key slot.
    pub fn record_headroom(&self, key: usize, headroom: Option<Headroom>) {
        if let Some(slot) = self.headroom.get(key) {
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = headroom;
        }
    }

    /// Whether the provider said this key slot has no requests (or fewer tokens than `tokens`)
    /// left until its reset.
    pub fn exhausted(&self, key: usize, tokens: u64) -> bool {
        let Some(slot) = self.headroom.get(key) else {
            return false;
        };
        let guard = slot.lock().unwrap_or_else(|p| p.into_inner());
        guard.is_some_and(|h| {
            Instant::now() < h.until
                && (h.remaining_requests == Some(0)
                    || h.remaining_tokens.is_some_and(|t| t < tokens))
        })
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
pub struct InFlight(Arc<DeploymentHealth>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        if self.0.capacity_now() != u32::MAX {
            self.0.freed.notify_waiters();
        }
    }
}
