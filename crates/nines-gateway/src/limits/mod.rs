//! Admission: requests-per-minute, tokens-per-minute and spend budgets at organisation, user and
//! key level (RPM/TPM optionally per model), checked and reserved in one atomic step before any
//! upstream call, settled with the real usage when the request ends.
//!
//! Windows are token buckets: a bucket of `limit` refills at `limit` per minute, so a burst of
//! `limit` is allowed and the long-run rate is the limit. A request draws 1 from each RPM bucket
//! and its token estimate from each TPM bucket; it is admitted only if every bucket has enough,
//! and then all are drawn at once (memory: under one lock; Redis: one Lua script), so no limit is
//! ever exceeded under any concurrency. After the response the TPM buckets get back the estimate
//! and are charged the real usage (a bucket may go below zero: the debt delays later requests).
//!
//! Token estimate at admission: prompt ≈ bytes of `messages` (embeddings: the body) ÷ 4, plus
//! the requested `max_tokens` (or `limits.default_max_output_tokens`). Streams settle from the
//! final usage chunk when the client asked for one (`stream_options.include_usage`; Anthropic
//! streams always carry usage); without it the reservation stands as the charge.
//!
//! Budgets: spend (USD, from the serving deployment's `price` and the real usage) per UTC day and
//! calendar month. Admission adds the most a request can cost ([`Plan::spend_reserve`]: its token
//! estimate at the highest price of the deployments that may serve it) to the spend, and
//! settlement replaces it with the real cost; a request is refused while spend and reservations
//! have reached a budget. So requests in flight count before they finish, on every replica when
//! the counters are in Redis, and a budget is overshot by at most the one request admitted just
//! under it (when estimates hold: an answer longer than `max_tokens`, or than
//! `default_max_output_tokens` when the client set none, can cost more than its reservation).
//!
//! | backend | when | on failure |
//! |---------|------|------------|
//! | memory  | default | — |
//! | redis   | `limits.redis_url` | each call times out after `limits.redis_timeout` (50 ms); `on_redis_error = "open"` admits (counted, logged once per 30 s), `"closed"` refuses with 503 |

pub mod memory;
pub mod redis;
mod window;

use crate::auth::Identity;
use crate::config::access::Level;
pub use crate::config::access::{FailMode, Limits, ModelLimits};
use http::{HeaderMap, HeaderValue};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
pub use window::{Period, go_duration, window_start};

/// Tokens a request is expected to use: `prompt_bytes / 4 + max_output`.
pub fn estimate_tokens(prompt_bytes: usize, max_output: Option<u64>, default_output: u64) -> u64 {
    (prompt_bytes as u64).div_ceil(4) + max_output.unwrap_or(default_output)
}

/// Requests or tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dim {
    Requests,
    Tokens,
}

impl Dim {
    pub fn as_str(self) -> &'static str {
        match self {
            Dim::Requests => "requests",
            Dim::Tokens => "tokens",
        }
    }
}

/// Which bucket: a subject's overall one or its per-model one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BucketKey {
    pub level: Level,
    pub id: Arc<str>,
    pub model: Option<Arc<str>>,
    pub dim: Dim,
}

/// One bucket a request draws from.
#[derive(Debug, Clone)]
pub struct Draw {
    pub key: BucketKey,
    pub name: Arc<str>,
    pub capacity: u64,
    pub cost: u64,
}

/// One budget a request must fit.
#[derive(Debug, Clone)]
pub struct Spend {
    pub level: Level,
    pub id: Arc<str>,
    pub name: Arc<str>,
    pub period: Period,
    pub budget: f64,
}

/// Everything one request's admission checks, in org → user → key order.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub draws: Vec<Draw>,
    pub spends: Vec<Spend>,
    /// USD added to every budget's spend at admission and replaced by the real cost at
    /// settlement: the most the request can cost (its token estimate at the highest price that
    /// may serve it), so requests in flight count against a budget before they finish.
    pub spend_reserve: f64,
}

impl Plan {
    pub fn new(identity: &Identity, model: &str, tokens: u64, now: SystemTime) -> Plan {
        let mut plan = Plan {
            draws: Vec::with_capacity(6),
            spends: Vec::new(),
            spend_reserve: 0.0,
        };
        let model_key: Option<Arc<str>> = identity
            .subjects()
            .any(|s| s.limits.models.contains_key(model))
            .then(|| Arc::from(model));
        for s in identity.subjects() {
            let l = &s.limits;
            if l.is_empty() {
                continue;
            }
            let mut draw = |model: Option<&Arc<str>>, dim: Dim, capacity: Option<u64>| {
                if let Some(capacity) = capacity {
                    plan.draws.push(Draw {
                        key: BucketKey {
                            level: s.level,
                            id: Arc::clone(&s.id),
                            model: model.cloned(),
                            dim,
                        },
                        name: Arc::clone(&s.name),
                        capacity,
                        cost: if dim == Dim::Requests { 1 } else { tokens },
                    });
                }
            };
            draw(None, Dim::Requests, l.rpm);
            draw(None, Dim::Tokens, l.tpm);
            if let Some(m) = l.models.get(model) {
                draw(model_key.as_ref(), Dim::Requests, m.rpm);
                draw(model_key.as_ref(), Dim::Tokens, m.tpm);
            }
            for (budget, period) in [
                (l.daily_budget, Period::day_of(now)),
                (l.monthly_budget, Period::month_of(now)),
            ] {
                if let Some(budget) = budget {
                    plan.spends.push(Spend {
                        level: s.level,
                        id: Arc::clone(&s.id),
                        name: Arc::clone(&s.name),
                        period,
                        budget,
                    });
                }
            }
        }
        plan
    }

    pub fn is_empty(&self) -> bool {
        self.draws.is_empty() && self.spends.is_empty()
    }
}

/// One window's state, for the `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub limit: u64,
    pub remaining: u64,
    /// Until the bucket is full again.
    pub reset: Duration,
}

/// The tightest request window and token window of an admission.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RateHeaders {
    pub requests: Option<Window>,
    pub tokens: Option<Window>,
}

impl RateHeaders {
    /// Keeps the window with less left.
    pub fn note(&mut self, dim: Dim, w: Window) {
        let slot = match dim {
            Dim::Requests => &mut self.requests,
            Dim::Tokens => &mut self.tokens,
        };
        if slot.is_none_or(|old| w.remaining < old.remaining) {
            *slot = Some(w);
        }
    }

    /// `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`; resets as Go durations.
    pub fn write(&self, headers: &mut HeaderMap) {
        use http::HeaderName;
        const NAMES: [[&str; 3]; 2] = [
            [
                "x-ratelimit-limit-requests",
                "x-ratelimit-remaining-requests",
                "x-ratelimit-reset-requests",
            ],
            [
                "x-ratelimit-limit-tokens",
                "x-ratelimit-remaining-tokens",
                "x-ratelimit-reset-tokens",
            ],
        ];
        for (names, w) in NAMES.iter().zip([self.requests, self.tokens]) {
            let Some(w) = w else { continue };
            headers.insert(
                HeaderName::from_static(names[0]),
                HeaderValue::from(w.limit),
            );
            headers.insert(
                HeaderName::from_static(names[1]),
                HeaderValue::from(w.remaining),
            );
            if let Ok(v) = HeaderValue::try_from(go_duration(w.reset)) {
                headers.insert(HeaderName::from_static(names[2]), v);
            }
        }
    }
}

/// What was reserved, to settle when the request ends.
#[derive(Debug, Clone, Default)]
pub struct Reservation {
    /// The TPM buckets drawn from, with their capacities.
    pub tokens: Vec<(BucketKey, u64)>,
    pub reserved: u64,
    pub spends: Vec<(Level, Arc<str>, Period)>,
    /// USD added to each of `spends` at admission ([`Plan::spend_reserve`]).
    pub spend_reserved: f64,
}

impl Reservation {
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty() && self.spends.is_empty()
    }
}

#[derive(Debug, Clone, Default)]
pub struct Admitted {
    pub reservation: Reservation,
    pub headers: RateHeaders,
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tripped {
    Window(Dim),
    Budget(Period),
}

/// A refused admission: the level and limit that tripped, and when to come back.
#[derive(Debug, Clone)]
pub struct Denied {
    pub level: Level,
    pub name: Arc<str>,
    pub model: Option<Arc<str>>,
    pub tripped: Tripped,
    pub limit: f64,
    pub requested: u64,
    pub retry_after: Duration,
    /// False when waiting cannot help (a request larger than the whole window, or a budget).
    pub retryable: bool,
    pub headers: RateHeaders,
}

impl Denied {
    pub fn message(&self) -> String {
        let on_model = self
            .model
            .as_ref()
            .map(|m| format!(" for model '{m}'"))
            .unwrap_or_default();
        let who = format!("{} '{}'", self.level.as_str(), self.name);
        match self.tripped {
            Tripped::Window(dim) if !self.retryable => format!(
                "Request too large{on_model} for {who} on {} per min: limit {}, requested {}.",
                dim.as_str(),
                self.limit,
                self.requested
            ),
            Tripped::Window(dim) => format!(
                "Rate limit reached{on_model} for {who} on {} per min ({}): limit {}. Please try again in {}.",
                dim.as_str(),
                if dim == Dim::Requests { "RPM" } else { "TPM" },
                self.limit,
                go_duration(self.retry_after)
            ),
            Tripped::Budget(period) => format!(
                "Budget exhausted for {who}: the {} budget of ${:.2} is spent; it resets in {}.",
                period.as_str(),
                self.limit,
                go_duration(self.retry_after)
            ),
        }
    }

    /// `org`, `user` or `key`, then what tripped: `key:requests`, `org:daily_budget`.
    pub fn label(&self) -> String {
        let what = match self.tripped {
            Tripped::Window(d) => d.as_str(),
            Tripped::Budget(p) => match p {
                Period::Day(_) => "daily_budget",
                Period::Month(_) => "monthly_budget",
            },
        };
        format!("{}:{what}", self.level.as_str())
    }
}

/// Why admission did not admit.
#[derive(Debug, Clone)]
pub enum Refusal {
    Limited(Box<Denied>),
    /// The shared limiter could not answer and `on_redis_error = "closed"`.
    Unavailable(String),
}

/// A limiter backend: one atomic check-and-reserve per request, one settlement at its end.
pub trait Limiter: Send + Sync + 'static {
    fn admit(&self, plan: &Plan) -> impl Future<Output = Result<Admitted, Refusal>> + Send;

    /// Returns the TPM reservation and charges `actual` tokens (None: the reservation stands)
    /// and `cost` USD to the budgets.
    fn settle(
        &self,
        reservation: &Reservation,
        actual: Option<u64>,
        cost: f64,
    ) -> impl Future<Output = ()> + Send;
}

/// The configured backend.
pub enum Limiters {
    Memory(memory::MemoryLimiter),
    Redis(redis::RedisLimiter),
}

impl Limiters {
    /// The Redis limiter's failure counters, when limits live in Redis.
    pub fn redis_stats(&self) -> Option<&redis::RedisStats> {
        match self {
            Limiters::Redis(r) => Some(&r.stats),
            Limiters::Memory(_) => None,
        }
    }
}

impl Limiter for Limiters {
    async fn admit(&self, plan: &Plan) -> Result<Admitted, Refusal> {
        match self {
            Limiters::Memory(m) => m.admit(plan).await,
            Limiters::Redis(r) => r.admit(plan).await,
        }
    }

    async fn settle(&self, reservation: &Reservation, actual: Option<u64>, cost: f64) {
        match self {
            Limiters::Memory(m) => m.settle(reservation, actual, cost).await,
            Limiters::Redis(r) => r.settle(reservation, actual, cost).await,
        }
    }
}

impl Limiters {
    pub fn backend(&self) -> &'static str {
        match self {
            Limiters::Memory(_) => "memory",
            Limiters::Redis(_) => "redis",
        }
    }
}

#[cfg(test)]
mod tests;
