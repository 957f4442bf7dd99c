//! Prometheus metrics, served at `GET /metrics` in the text exposition format 0.0.4. Every metric,
//! its labels and its meaning: `docs/metrics.md`.
//!
//! - **Per instance.** A `Metrics` belongs to one telemetry hub (one `AppState`), never to a
//!   process-wide recorder, so gateways in one process (the test suite) never mix their numbers.
//! - **Labels come from the configuration only**: model route names, deployment names, providers,
//!   key slot aliases (`deployment#i`), failure classes, outcomes, limit levels. A model name the
//!   client made up is labelled `""`, so no client can create series.
//! - **The request path touches atomics.** Series are resolved once per configuration (`Known`,
//!   swapped on a reload) and kept by label values for the life of the process (`Registry`), so a
//!   reload never resets a counter. Recording a request costs a few hash lookups of names it
//!   already holds, and allocates only the first time a label combination is seen.
//! - **Live state is read at scrape time**: breaker phases, in-flight counts and the retry budget
//!   come from the current runtime's `Health` while the exposition is written.

mod connections;

pub use connections::{ConnectionEnd, ConnectionStats};

use super::RequestSummary;
use crate::config::Config;
use crate::resilience::FailureClass;
use crate::resilience::Health;
use crate::resilience::events::{BreakerEvent, EventSink};
use arc_swap::ArcSwap;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock, Weak};
use tokio::sync::broadcast::{self, error::TryRecvError};

/// The exposition's content type (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Request latency and time to first byte (seconds): 5 ms to the default 120 s total timeout.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
];
/// Time spent in nines itself (seconds): 100 µs to 1 s.
pub const OVERHEAD_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];
/// Upstream attempts per request.
pub const ATTEMPT_BUCKETS: &[f64] = &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0];

/// The levels a limit can refuse at, and why (`GatewayError::label`).
const LIMIT_LEVELS: [&str; 3] = ["org", "user", "key"];
const LIMIT_REASONS: [&str; 2] = ["rate_limited", "budget_exhausted"];
const CLASSES: usize = FailureClass::ALL.len();
/// `Phase::as_str` of each breaker phase, one series each.
const BREAKER_STATES: [&str; 3] = ["closed", "open", "half_open"];

/// Breaker state shared through Redis (`[redis]`), as `/metrics` shows it.
#[derive(Debug, Clone, Copy, Default)]
pub struct SharedHealth {
    /// Shared now (Redis answers and the subscription is live).
    pub up: bool,
    pub published: u64,
    pub applied: u64,
    pub errors: u64,
}

/// Appends the shared-health series to an exposition.
pub fn render_shared_health(w: &mut String, s: SharedHealth) {
    family(
        w,
        "nines_redis_up",
        "gauge",
        "1 while breaker state and probe leases are shared with other replicas through Redis; 0 while Redis is away and every breaker decides on this replica alone.",
    );
    sample(w, "nines_redis_up", &[], f64::from(u8::from(s.up)));
    family(
        w,
        "nines_breaker_shared_transitions_total",
        "counter",
        "Breaker transitions published to other replicas, and applied here from them.",
    );
    for (direction, n) in [("published", s.published), ("applied", s.applied)] {
        sample(
            w,
            "nines_breaker_shared_transitions_total",
            &[("direction", direction)],
            n as f64,
        );
    }
    family(
        w,
        "nines_shared_health_errors_total",
        "counter",
        "Redis calls for shared breaker state and leases that failed or timed out.",
    );
    sample(w, "nines_shared_health_errors_total", &[], s.errors as f64);
}

/// The shared (Redis) limiter's failure counters when the exposition is written.
#[derive(Debug, Clone, Copy, Default)]
pub struct LimiterFailures {
    /// Calls that failed or timed out.
    pub failures: u64,
    /// Requests admitted without limits because Redis failed.
    pub failed_open: u64,
    /// Requests refused because Redis failed.
    pub failed_closed: u64,
}

/// The process's metrics. Cheap to record into from any thread.
pub struct Metrics {
    shared: Arc<Shared>,
}

struct Shared {
    /// Series of the current configuration's models and deployments, by name.
    known: ArcSwap<Known>,
    /// Every series created so far, by label values; what the exposition walks.
    registry: Mutex<Registry>,
    /// `[level][reason]`.
    limited: [[Counter; LIMIT_REASONS.len()]; LIMIT_LEVELS.len()],
    transitions: Mutex<Transitions>,
    /// Configuration reloads by result.
    reloads: Mutex<BTreeMap<&'static str, u64>>,
    connections: ConnectionStats,
}

/// Breaker transitions, counted from the event channel when the exposition is written (and
/// whenever one arrives, by [`Metrics::start`]'s task, so a burst cannot outrun the channel).
struct Transitions {
    events: broadcast::Receiver<BreakerEvent>,
    /// `(deployment, key slot, transition)`.
    counts: BTreeMap<(String, String, &'static str), u64>,
    /// Events the channel dropped before they were counted.
    lost: u64,
}

/// Looked up for every request by names of the configuration's (never the client's), so with
/// hashbrown's fast hasher rather than SipHash.
struct Known {
    models: hashbrown::HashMap<String, Arc<ModelSeries>>,
    /// Requests whose model is not a route of this configuration (or was never read).
    no_model: Arc<ModelSeries>,
    deployments: hashbrown::HashMap<String, Arc<DeploymentSeries>>,
}

#[derive(Default)]
struct Registry {
    models: BTreeMap<String, Arc<ModelSeries>>,
    deployments: BTreeMap<(String, &'static str), Arc<DeploymentSeries>>,
}

struct ModelSeries {
    name: String,
    attempts: Histogram,
    fallbacks: Counter,
    /// One per deployment that served or last failed a request of this model (`None`: requests
    /// that ended before any deployment was chosen). A handful per model: scanned, not hashed.
    routes: RwLock<Vec<Arc<RouteSeries>>>,
}

struct RouteSeries {
    deployment: Option<Arc<DeploymentSeries>>,
    requests: RwLock<Vec<Requests>>,
    ttfb: Histogram,
    duration: Histogram,
    tokens_in: Counter,
    tokens_out: Counter,
    cost: FloatCounter,
}

/// Requests of one route that ended the same way.
struct Requests {
    endpoint: &'static str,
    status: u16,
    outcome: Box<str>,
    count: Counter,
}

struct DeploymentSeries {
    name: String,
    provider: &'static str,
    /// Indexed by [`FailureClass::index`].
    attempts: [Counter; CLASSES],
    upstream_ttfb: Histogram,
    overhead: Histogram,
}

#[derive(Default)]
struct Counter(AtomicU64);

impl Counter {
    fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// An `f64` counter (USD): the bits in an atomic, added with a compare-and-swap loop.
#[derive(Default)]
struct FloatCounter(AtomicU64);

impl FloatCounter {
    fn add(&self, v: f64) {
        let _ = self.0.fetch_update(Relaxed, Relaxed, |b| {
            Some((f64::from_bits(b) + v).to_bits())
        });
    }

    fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Relaxed))
    }
}

/// The most bounds a histogram has (the latency buckets).
const MAX_BOUNDS: usize = 15;

/// Per-bucket (not cumulative) counts, the last one unbounded; the count is their sum, so
/// `_count` and the `+Inf` bucket always agree. The counts are held inline rather than in an
/// allocation of their own: a request touches four histograms, and each one's counts then sit
/// beside the series that owns them instead of on a cache line of their own.
struct Histogram {
    bounds: &'static [f64],
    counts: [AtomicU64; MAX_BOUNDS + 1],
    sum: FloatCounter,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: {
                assert!(
                    bounds.len() <= MAX_BOUNDS,
                    "a histogram has at most {MAX_BOUNDS} bounds"
                );
                Default::default()
            },
            sum: FloatCounter::default(),
        }
    }

    fn observe(&self, v: f64) {
        // Bucket `i` holds `bounds[i-1] < v <= bounds[i]`: `i` is the number of bounds below
        // `v` (they are sorted). Counted over all of them rather than binary-searched: the
        // compares are independent (vectorised) instead of a chain of dependent loads and
        // selects, which was the largest part of `Metrics::record`'s own time under perf.
        let i = self
            .bounds
            .iter()
            .map(|b| usize::from(*b < v))
            .sum::<usize>();
        self.counts[i].fetch_add(1, Relaxed);
        self.sum.add(v);
    }

    fn snapshot(&self) -> (Vec<u64>, f64) {
        let counts = self.counts[..=self.bounds.len()]
            .iter()
            .map(|c| c.load(Relaxed))
            .collect();
        (counts, self.sum.get())
    }
}

impl ModelSeries {
    fn new(name: &str) -> ModelSeries {
        ModelSeries {
            name: name.to_owned(),
            attempts: Histogram::new(ATTEMPT_BUCKETS),
            fallbacks: Counter::default(),
            routes: RwLock::new(Vec::new()),
        }
    }

    /// Runs `f` on the series of this model's requests ending at `deployment`, made on first
    /// use (read-locked and scanned: a model has a handful).
    fn with_route(&self, deployment: Option<&Arc<DeploymentSeries>>, f: impl FnOnce(&RouteSeries)) {
        let same = |r: &Arc<RouteSeries>| match (&r.deployment, deployment) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        {
            let routes = read(&self.routes);
            if let Some(r) = routes.iter().find(|r| same(r)) {
                return f(r);
            }
        }
        let mut routes = write(&self.routes);
        if let Some(r) = routes.iter().find(|r| same(r)) {
            return f(r);
        }
        let route = Arc::new(RouteSeries {
            deployment: deployment.cloned(),
            requests: RwLock::new(Vec::new()),
            ttfb: Histogram::new(LATENCY_BUCKETS),
            duration: Histogram::new(LATENCY_BUCKETS),
            tokens_in: Counter::default(),
            tokens_out: Counter::default(),
            cost: FloatCounter::default(),
        });
        routes.push(Arc::clone(&route));
        drop(routes);
        f(&route);
    }
}

impl RouteSeries {
    fn count_request(&self, endpoint: &'static str, status: u16, outcome: &str) {
        let found = |v: &[Requests]| {
            v.iter().position(|r| {
                // Status and the endpoint's address first: the outcome's text is read last.
                r.status == status
                    && (std::ptr::eq(r.endpoint, endpoint) || r.endpoint == endpoint)
                    && *r.outcome == *outcome
            })
        };
        {
            let requests = read(&self.requests);
            if let Some(i) = found(&requests) {
                requests[i].count.add(1);
                return;
            }
        }
        let mut requests = write(&self.requests);
        match found(&requests) {
            Some(i) => requests[i].count.add(1),
            None => {
                let count = Counter::default();
                count.add(1);
                requests.push(Requests {
                    endpoint,
                    status,
                    outcome: outcome.into(),
                    count,
                });
            }
        }
    }
}

impl DeploymentSeries {
    fn new(name: &str, provider: &'static str) -> DeploymentSeries {
        DeploymentSeries {
            name: name.to_owned(),
            provider,
            attempts: Default::default(),
            upstream_ttfb: Histogram::new(LATENCY_BUCKETS),
            overhead: Histogram::new(OVERHEAD_BUCKETS),
        }
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

fn lock<T>(lock: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    lock.lock().unwrap_or_else(|p| p.into_inner())
}

impl Registry {
    fn model(&mut self, name: &str) -> Arc<ModelSeries> {
        if let Some(m) = self.models.get(name) {
            return Arc::clone(m);
        }
        let m = Arc::new(ModelSeries::new(name));
        self.models.insert(name.to_owned(), Arc::clone(&m));
        m
    }

    fn deployment(&mut self, name: &str, provider: &'static str) -> Arc<DeploymentSeries> {
        let key = (name.to_owned(), provider);
        Arc::clone(
            self.deployments
                .entry(key)
                .or_insert_with(|| Arc::new(DeploymentSeries::new(name, provider))),
        )
    }

    /// A deployment the current configuration does not have (a request that started before a
    /// reload removed it): any series of that name, else a new one without a provider.
    fn deployment_by_name(&mut self, name: &str) -> Arc<DeploymentSeries> {
        let existing = self
            .deployments
            .iter()
            .find(|((n, _), _)| n == name)
            .map(|(_, d)| Arc::clone(d));
        existing.unwrap_or_else(|| self.deployment(name, ""))
    }

    fn known<'a>(&mut self, config: &Config, models: impl Iterator<Item = &'a str>) -> Known {
        Known {
            models: models.map(|m| (m.to_owned(), self.model(m))).collect(),
            no_model: self.model(""),
            deployments: config
                .deployments
                .iter()
                .map(|d| (d.name.clone(), self.deployment(&d.name, d.provider_name())))
                .collect(),
        }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Metrics for `config`'s models and deployments, counting the transitions `events` reports.
    /// Names derived from `provider/upstream-model` are known once [`Metrics::configure`] runs.
    pub fn new(config: &Config, events: &EventSink) -> Metrics {
        let mut registry = Registry::default();
        let known = registry.known(config, config.models.iter().map(|m| m.name.as_str()));
        Metrics {
            shared: Arc::new(Shared {
                known: ArcSwap::from_pointee(known),
                registry: Mutex::new(registry),
                limited: Default::default(),
                reloads: Mutex::new(BTreeMap::new()),
                connections: ConnectionStats::default(),
                transitions: Mutex::new(Transitions {
                    events: events.subscribe(),
                    counts: BTreeMap::new(),
                    lost: 0,
                }),
            }),
        }
    }

    /// Resolves the series of a runtime's routes (every name a client may request) and
    /// deployments; called when a runtime is published (start and every reload). Series of
    /// names a reload removed keep their values.
    pub fn configure<'a>(&self, config: &Config, routes: impl Iterator<Item = &'a str>) {
        let known = lock(&self.shared.registry).known(config, routes);
        self.shared.known.store(Arc::new(known));
    }

    /// Counts breaker transitions as they happen, so the channel never drops one between
    /// scrapes. Call once, inside a tokio runtime.
    pub fn start(&self, events: &EventSink) {
        tokio::spawn(follow_breakers(
            Arc::downgrade(&self.shared),
            events.subscribe(),
        ));
    }

    /// Counts one configuration reload by its result (`ok`, `unchanged`, `invalid`, …).
    pub fn count_reload(&self, result: &'static str) {
        *lock(&self.shared.reloads).entry(result).or_insert(0) += 1;
    }

    /// The client connections' counters (the server counts into them).
    pub fn connections(&self) -> &ConnectionStats {
        &self.shared.connections
    }

    /// Records one finished request. Runs for every request: the series are borrowed from the
    /// current `Known` (no reference counts touched), and only a name this configuration does
    /// not know takes the registry's lock.
    pub fn record(&self, s: &RequestSummary) {
        let shared = &*self.shared;
        let known = shared.known.load();
        let model = known
            .models
            .get(s.model.as_str())
            .unwrap_or(&known.no_model);
        let unknown;
        let deployment: Option<&Arc<DeploymentSeries>> = match s.deployment.as_deref() {
            None => None,
            Some(name) => match known.deployments.get(name) {
                Some(d) => Some(d),
                None => {
                    unknown = shared.unknown_deployment(name);
                    Some(&unknown)
                }
            },
        };
        model.with_route(deployment, |route| {
            route.count_request(s.endpoint, s.status, &s.outcome);
            route.duration.observe(s.latency.as_secs_f64());
            if s.served {
                route
                    .ttfb
                    .observe(s.ttfb.unwrap_or(s.latency).as_secs_f64());
            }
            if let Some(n) = s.tokens_in {
                route.tokens_in.add(n);
            }
            if let Some(n) = s.tokens_out {
                route.tokens_out.add(n);
            }
            if s.cost > 0.0 {
                route.cost.add(s.cost);
            }
        });
        if !s.attempts.is_empty() {
            model.attempts.observe(s.attempts.len() as f64);
        }
        if s.fell_back() {
            model.fallbacks.add(1);
        }
        for a in &s.attempts {
            // Most attempts are of the deployment that served: no lookup for those.
            match deployment.filter(|d| d.name == a.deployment) {
                Some(d) => d.attempts[a.class.index()].add(1),
                None => match known.deployments.get(a.deployment.as_str()) {
                    Some(d) => d.attempts[a.class.index()].add(1),
                    None => {
                        shared.unknown_deployment(&a.deployment).attempts[a.class.index()].add(1)
                    }
                },
            }
        }
        if let Some(d) = deployment {
            if s.served
                && let Some(ttfb) = s.upstream_ttfb
            {
                d.upstream_ttfb.observe(ttfb.as_secs_f64());
            }
            if let Some(overhead) = s.overhead() {
                d.overhead.observe(overhead.as_secs_f64());
            }
        }
        if let Some(level) = s.limited_at
            && let Some(l) = LIMIT_LEVELS.iter().position(|x| *x == level)
        {
            let r = usize::from(s.outcome == "budget_exhausted");
            shared.limited[l][r].add(1);
        }
    }

    /// The exposition: every series recorded so far, then the runtime's live state, then the
    /// Redis limiter's failure counters when limits live in Redis.
    pub fn render(
        &self,
        config: &Config,
        health: &Health,
        redis: Option<LimiterFailures>,
    ) -> String {
        let shared = &*self.shared;
        shared.drain_transitions();
        let (models, deployments) = {
            let registry = lock(&shared.registry);
            (
                registry.models.values().cloned().collect::<Vec<_>>(),
                registry.deployments.values().cloned().collect::<Vec<_>>(),
            )
        };
        let mut routes: Vec<(&ModelSeries, Arc<RouteSeries>)> = Vec::new();
        for m in &models {
            let mut of_model: Vec<Arc<RouteSeries>> = read(&m.routes).clone();
            of_model.sort_by(|a, b| route_key(a).cmp(&route_key(b)));
            routes.extend(of_model.into_iter().map(|r| (&**m, r)));
        }
        let mut out = String::with_capacity(16 * 1024);
        let w = &mut out;

        family(
            w,
            "nines_requests_total",
            "counter",
            "Requests that ended, by model route, deployment (the one that served, or the last one tried), endpoint, status code and outcome.",
        );
        for (m, r) in &routes {
            let mut requests: Vec<(&'static str, u16, String, u64)> = read(&r.requests)
                .iter()
                .map(|r| (r.endpoint, r.status, r.outcome.to_string(), r.count.get()))
                .collect();
            requests.sort();
            for (endpoint, code, outcome, n) in requests {
                let labels = route_labels(m, r);
                sample(
                    w,
                    "nines_requests_total",
                    &[
                        labels[0],
                        labels[1],
                        labels[2],
                        ("endpoint", endpoint),
                        ("code", &code.to_string()),
                        ("outcome", &outcome),
                    ],
                    n as f64,
                );
            }
        }

        family(
            w,
            "nines_request_attempts",
            "histogram",
            "Upstream attempts per request that reached an upstream, by model route.",
        );
        for m in &models {
            histogram(
                w,
                "nines_request_attempts",
                &[("model", &m.name)],
                &m.attempts,
            );
        }

        family(
            w,
            "nines_fallbacks_total",
            "counter",
            "Requests served by another deployment than the first one tried, by model route.",
        );
        for m in models.iter().filter(|m| !m.name.is_empty()) {
            sample(
                w,
                "nines_fallbacks_total",
                &[("model", &m.name)],
                m.fallbacks.get() as f64,
            );
        }

        family(
            w,
            "nines_upstream_attempts_total",
            "counter",
            "Upstream attempts by deployment and failure class (ok for the attempt that answered).",
        );
        for d in &deployments {
            for class in FailureClass::ALL {
                let n = d.attempts[class.index()].get();
                if n > 0 {
                    sample(
                        w,
                        "nines_upstream_attempts_total",
                        &[
                            ("deployment", &d.name),
                            ("provider", d.provider),
                            ("class", class.as_str()),
                        ],
                        n as f64,
                    );
                }
            }
        }

        family(
            w,
            "nines_upstream_ttfb_seconds",
            "histogram",
            "Time to first byte of the serving attempt as the upstream delivered it (non-streamed: its whole answer), by deployment.",
        );
        for d in &deployments {
            histogram(
                w,
                "nines_upstream_ttfb_seconds",
                &[("deployment", &d.name), ("provider", d.provider)],
                &d.upstream_ttfb,
            );
        }

        family(
            w,
            "nines_ttfb_seconds",
            "histogram",
            "Time to first byte the client saw (failovers and waits included), served requests, by model route and serving deployment.",
        );
        for (m, r) in &routes {
            histogram(w, "nines_ttfb_seconds", &route_labels(m, r), &r.ttfb);
        }

        family(
            w,
            "nines_request_duration_seconds",
            "histogram",
            "Request latency, start to end (streams: until the stream ended), by model route and deployment.",
        );
        for (m, r) in &routes {
            histogram(
                w,
                "nines_request_duration_seconds",
                &route_labels(m, r),
                &r.duration,
            );
        }

        family(
            w,
            "nines_overhead_seconds",
            "histogram",
            "Time spent in nines itself up to the answer: time to answer minus upstream attempts and deliberate waits (backoff, Retry-After, breaker reopening, capacity queue), by deployment.",
        );
        for d in &deployments {
            histogram(
                w,
                "nines_overhead_seconds",
                &[("deployment", &d.name), ("provider", d.provider)],
                &d.overhead,
            );
        }

        family(
            w,
            "nines_tokens_total",
            "counter",
            "Tokens of served requests as the upstream reported them (the admission estimate when it reported none), by model route, deployment and type (input, output).",
        );
        for (m, r) in routes.iter().filter(|(_, r)| r.deployment.is_some()) {
            let labels = route_labels(m, r);
            for (kind, n) in [("input", &r.tokens_in), ("output", &r.tokens_out)] {
                sample(
                    w,
                    "nines_tokens_total",
                    &[labels[0], labels[1], labels[2], ("type", kind)],
                    n.get() as f64,
                );
            }
        }

        family(
            w,
            "nines_cost_usd_total",
            "counter",
            "Cost of served requests in USD at the serving deployment's price, by model route and deployment.",
        );
        for (m, r) in routes.iter().filter(|(_, r)| r.deployment.is_some()) {
            sample(w, "nines_cost_usd_total", &route_labels(m, r), r.cost.get());
        }

        family(
            w,
            "nines_rate_limited_total",
            "counter",
            "Requests refused by nines' own limits, by the level that refused (org, user, key) and reason (rate_limited: RPM/TPM, budget_exhausted).",
        );
        for (l, level) in LIMIT_LEVELS.iter().enumerate() {
            for (r, reason) in LIMIT_REASONS.iter().enumerate() {
                sample(
                    w,
                    "nines_rate_limited_total",
                    &[("level", level), ("reason", reason)],
                    shared.limited[l][r].get() as f64,
                );
            }
        }

        family(
            w,
            "nines_breaker_state",
            "gauge",
            "Circuit breaker phase per key slot: 1 for the phase it is in, 0 for the others.",
        );
        for (d, deployment) in config.deployments.iter().enumerate() {
            for breaker in health.breakers.get(d).into_iter().flatten() {
                let phase = breaker.phase().as_str();
                for state in BREAKER_STATES {
                    sample(
                        w,
                        "nines_breaker_state",
                        &[
                            ("deployment", &deployment.name),
                            ("key_slot", breaker.alias()),
                            ("state", state),
                        ],
                        if state == phase { 1.0 } else { 0.0 },
                    );
                }
            }
        }

        family(
            w,
            "nines_breaker_transitions_total",
            "counter",
            "Circuit breaker transitions per key slot (opened, half_open, closed).",
        );
        {
            let transitions = lock(&shared.transitions);
            for ((deployment, slot, transition), n) in &transitions.counts {
                sample(
                    w,
                    "nines_breaker_transitions_total",
                    &[
                        ("deployment", deployment),
                        ("key_slot", slot),
                        ("transition", transition),
                    ],
                    *n as f64,
                );
            }
            if transitions.lost > 0 {
                family(
                    w,
                    "nines_breaker_transitions_lost_total",
                    "counter",
                    "Breaker transitions the event channel dropped before they were counted.",
                );
                sample(
                    w,
                    "nines_breaker_transitions_lost_total",
                    &[],
                    transitions.lost as f64,
                );
            }
        }

        family(
            w,
            "nines_in_flight",
            "gauge",
            "Upstream requests in flight per deployment (streams until they end).",
        );
        for (d, deployment) in config.deployments.iter().enumerate() {
            if let Some(health) = health.deployments.get(d) {
                sample(
                    w,
                    "nines_in_flight",
                    &[
                        ("deployment", &deployment.name),
                        ("provider", deployment.provider_name()),
                    ],
                    f64::from(health.in_flight()),
                );
            }
        }

        family(
            w,
            "nines_first_byte_deadline_seconds",
            "gauge",
            "The first-byte deadline the next attempt gets, per deployment and kind (stream true/false): learned from its own p99 once enough samples exist, else the configured one.",
        );
        let learned = &config.resilience.learned_first_byte;
        for (d, deployment) in config.deployments.iter().enumerate() {
            if let Some(health) = health.deployments.get(d) {
                for stream in [false, true] {
                    let deadline =
                        health
                            .first_byte
                            .deadline(stream, deployment.timeouts.first_byte, learned);
                    sample(
                        w,
                        "nines_first_byte_deadline_seconds",
                        &[
                            ("deployment", &deployment.name),
                            ("provider", deployment.provider_name()),
                            ("stream", if stream { "true" } else { "false" }),
                        ],
                        deadline.as_secs_f64(),
                    );
                }
            }
        }

        family(
            w,
            "nines_capacity",
            "gauge",
            "max_concurrency of the deployments that have one.",
        );
        for (d, deployment) in config.deployments.iter().enumerate() {
            if let Some(capacity) = health.deployments.get(d).and_then(|h| h.capacity()) {
                sample(
                    w,
                    "nines_capacity",
                    &[
                        ("deployment", &deployment.name),
                        ("provider", deployment.provider_name()),
                    ],
                    f64::from(capacity),
                );
            }
        }

        family(
            w,
            "nines_config_info",
            "gauge",
            "The loaded configuration: 1, labelled with the SHA-256 prefix of its file's text.",
        );
        sample(w, "nines_config_info", &[("hash", &config.hash)], 1.0);
        family(
            w,
            "nines_config_reloads_total",
            "counter",
            "Configuration reloads (SIGHUP, POST /admin/reload, file watch) by result: ok, unchanged, invalid (refused: the old configuration stays), unusable, no_source.",
        );
        for (result, n) in lock(&shared.reloads).iter() {
            sample(
                w,
                "nines_config_reloads_total",
                &[("result", result)],
                *n as f64,
            );
        }
        shared.connections.render(w);
        family(
            w,
            "nines_retry_budget_remaining",
            "gauge",
            "Extra attempts (retries, failovers, hedges) the gateway-wide retry budget still allows in its window.",
        );
        sample(
            w,
            "nines_retry_budget_remaining",
            &[],
            health.budget.remaining(),
        );
        if let Some(redis) = redis {
            family(
                w,
                "nines_limiter_redis_errors_total",
                "counter",
                "Redis limiter calls that failed or timed out.",
            );
            sample(
                w,
                "nines_limiter_redis_errors_total",
                &[],
                redis.failures as f64,
            );
            family(
                w,
                "nines_limiter_redis_fallback_total",
                "counter",
                "Requests answered by on_redis_error because Redis failed: admitted without limits (open) or refused (closed).",
            );
            for (answer, n) in [("open", redis.failed_open), ("closed", redis.failed_closed)] {
                sample(
                    w,
                    "nines_limiter_redis_fallback_total",
                    &[("answer", answer)],
                    n as f64,
                );
            }
        }
        out
    }
}

impl Shared {
    /// A deployment the current configuration does not have (a request that started before a
    /// reload removed it).
    fn unknown_deployment(&self, name: &str) -> Arc<DeploymentSeries> {
        lock(&self.registry).deployment_by_name(name)
    }

    fn drain_transitions(&self) {
        let mut t = lock(&self.transitions);
        loop {
            match t.events.try_recv() {
                Ok(e) => {
                    let key = (e.deployment, e.key_slot, e.transition.as_str());
                    *t.counts.entry(key).or_insert(0) += 1;
                }
                Err(TryRecvError::Lagged(n)) => t.lost += n,
                Err(TryRecvError::Empty | TryRecvError::Closed) => return,
            }
        }
    }
}

/// Counts transitions as they arrive, until the metrics or the breakers are gone.
async fn follow_breakers(shared: Weak<Shared>, mut wake: broadcast::Receiver<BreakerEvent>) {
    use broadcast::error::RecvError;
    loop {
        match wake.recv().await {
            Ok(_) | Err(RecvError::Lagged(_)) => match shared.upgrade() {
                Some(shared) => shared.drain_transitions(),
                None => return,
            },
            Err(RecvError::Closed) => return,
        }
    }
}

fn route_key(r: &RouteSeries) -> (&str, &str) {
    r.deployment
        .as_ref()
        .map_or(("", ""), |d| (d.name.as_str(), d.provider))
}

fn route_labels<'a>(m: &'a ModelSeries, r: &'a RouteSeries) -> [(&'static str, &'a str); 3] {
    let (deployment, provider) = route_key(r);
    [
        ("model", m.name.as_str()),
        ("deployment", deployment),
        ("provider", provider),
    ]
}

/// One unlabelled counter or gauge kept outside the hub (auth, the spool), written after it.
#[derive(Debug, Clone, Copy)]
pub struct Plain {
    pub name: &'static str,
    /// `counter` or `gauge`.
    pub kind: &'static str,
    pub help: &'static str,
    pub value: f64,
}

/// Appends `plain` series to an exposition.
pub fn render_plain(w: &mut String, plain: &[Plain]) {
    for p in plain {
        family(w, p.name, p.kind, p.help);
        sample(w, p.name, &[], p.value);
    }
}

fn family(w: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(w, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(w, "# TYPE {name} {kind}");
}

fn sample(w: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    w.push_str(name);
    write_labels(w, labels, None);
    w.push(' ');
    write_value(w, value);
    w.push('\n');
}

fn histogram(w: &mut String, name: &str, labels: &[(&str, &str)], h: &Histogram) {
    let (counts, sum) = h.snapshot();
    let count: u64 = counts.iter().sum();
    if count == 0 {
        return;
    }
    let mut cumulative = 0;
    for (i, n) in counts.iter().enumerate() {
        cumulative += n;
        let le = match h.bounds.get(i) {
            Some(b) => format_value(*b),
            None => "+Inf".to_owned(),
        };
        let _ = write!(w, "{name}_bucket");
        write_labels(w, labels, Some(&le));
        let _ = writeln!(w, " {cumulative}");
    }
    let _ = write!(w, "{name}_sum");
    write_labels(w, labels, None);
    w.push(' ');
    write_value(w, sum);
    w.push('\n');
    let _ = write!(w, "{name}_count");
    write_labels(w, labels, None);
    let _ = writeln!(w, " {count}");
}

fn write_labels(w: &mut String, labels: &[(&str, &str)], le: Option<&str>) {
    if labels.is_empty() && le.is_none() {
        return;
    }
    w.push('{');
    let mut first = true;
    for (name, value) in labels.iter().copied().chain(le.map(|le| ("le", le))) {
        if !first {
            w.push(',');
        }
        first = false;
        w.push_str(name);
        w.push_str("=\"");
        for c in value.chars() {
            match c {
                '\\' => w.push_str("\\\\"),
                '"' => w.push_str("\\\""),
                '\n' => w.push_str("\\n"),
                c => w.push(c),
            }
        }
        w.push('"');
    }
    w.push('}');
}

fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

fn write_value(w: &mut String, v: f64) {
    w.push_str(&format_value(v));
}

/// Go's shortest float text, as Prometheus clients write it: `1`, `0.005`, `+Inf`.
fn format_value(v: f64) -> String {
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    if v.is_nan() {
        return "NaN".to_owned();
    }
    format!("{v}")
}

#[cfg(test)]
mod tests;
