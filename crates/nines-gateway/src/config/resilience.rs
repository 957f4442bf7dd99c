//! `[resilience]`: the gateway-wide failure policy (retry budget, breakers, backoff, probes) and
//! the per-model options (hedging, attempts per deployment). Defaults are the documented ones.

use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Resilience {
    pub retry_budget: RetryBudget,
    pub breaker: Breaker,
    pub backoff: Backoff,
    pub probes: Probes,
    /// At most this many attempts on one deployment per request (retries of the same deployment
    /// happen only when nothing else is left).
    pub max_attempts_per_deployment: Option<u32>,
    /// The longest `Retry-After` honoured: a provider's longer hint is clamped to this (and the
    /// clamp logged), so one answer cannot take a key slot out for hours.
    #[serde(with = "humantime_serde")]
    pub max_retry_after: Duration,
    /// A rate-limited answer whose `Retry-After` is at most this is waited for and retried on
    /// the same key slot before a model degrades to a fallback model; a longer hint moves on.
    #[serde(with = "humantime_serde")]
    pub max_retry_after_wait: Duration,
    /// First-byte deadlines learned from each deployment's own recent times to first byte.
    pub learned_first_byte: LearnedFirstByte,
}

impl Default for Resilience {
    fn default() -> Self {
        Resilience {
            retry_budget: RetryBudget::default(),
            breaker: Breaker::default(),
            backoff: Backoff::default(),
            probes: Probes::default(),
            max_attempts_per_deployment: None,
            max_retry_after: Duration::from_secs(60),
            max_retry_after_wait: Duration::from_secs(5),
            learned_first_byte: LearnedFirstByte::default(),
        }
    }
}

impl Resilience {
    pub fn max_attempts_per_deployment(&self) -> u32 {
        self.max_attempts_per_deployment.unwrap_or(3)
    }
}

/// The effective first-byte deadline of a deployment (streaming and not apart) is
/// min(configured, max(floor, multiplier × its observed p99)) once `min_samples` were seen: a
/// deployment slow *for it* is abandoned early, one that is always slow keeps its time.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LearnedFirstByte {
    pub enabled: bool,
    pub multiplier: f64,
    #[serde(with = "humantime_serde")]
    pub floor: Duration,
    pub min_samples: usize,
}

/// The most recent times to first byte a deployment keeps (per kind: streamed and not).
pub const FIRST_BYTE_SAMPLES: usize = 256;

impl Default for LearnedFirstByte {
    fn default() -> Self {
        LearnedFirstByte {
            enabled: true,
            multiplier: 3.0,
            floor: Duration::from_secs(2),
            min_samples: 50,
        }
    }
}

/// Retries and failovers may add at most `ratio` of live requests plus `min_per_second` per
/// second, counted over `window` (Finagle's and Linkerd's budget).
#[derive(Debug, Deserialize, Clone, Copy, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetryBudget {
    pub ratio: f64,
    pub min_per_second: f64,
    #[serde(with = "humantime_serde")]
    pub window: Duration,
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget {
            ratio: 0.2,
            min_per_second: 10.0,
            window: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Breaker {
    /// Consecutive retryable failures that open a key slot.
    pub consecutive_failures: u32,
    /// Failure share over `window` that opens a key slot once `min_requests` were seen.
    pub failure_rate: f64,
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    pub min_requests: u32,
    /// First open period; doubles on each trip in a row, up to `max_cooldown`.
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
    #[serde(with = "humantime_serde")]
    pub max_cooldown: Duration,
    /// After a breaker closes, its key slot's share of traffic ramps up over this window
    /// instead of returning at once; a failure during the ramp reopens it (0: no ramp).
    #[serde(with = "humantime_serde")]
    pub slow_start: Duration,
    /// When every slot a request could use is open, one real request per open slot per interval
    /// goes anyway (an early probe); its success closes the breaker before the cooldown ends
    /// (0: off; requests then fail fast with 503 until a cooldown ends). Breakers can be wrong:
    /// a short blip opens one for a whole cooldown.
    #[serde(with = "humantime_serde")]
    pub early_probe_interval: Duration,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            consecutive_failures: 5,
            failure_rate: 0.5,
            window: Duration::from_secs(30),
            min_requests: 10,
            cooldown: Duration::from_secs(30),
            max_cooldown: Duration::from_secs(300),
            slow_start: Duration::from_secs(30),
            early_probe_interval: Duration::from_secs(1),
        }
    }
}

/// Exponential backoff with full jitter before retrying a key slot already tried.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Backoff {
    #[serde(with = "humantime_serde")]
    pub base: Duration,
    pub factor: f64,
    #[serde(with = "humantime_serde")]
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(500),
            factor: 2.0,
            cap: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Probes {
    pub enabled: bool,
    /// How often each key slot is probed while healthy.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// How soon a slot whose last probe failed is probed again, so a dead provider leaves
    /// rotation within seconds even without traffic.
    #[serde(with = "humantime_serde")]
    pub failed_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// What a probe asks: the models list (free) or a one-token completion (evidence about the
    /// model itself, at a price: `nines check` shows it).
    pub kind: ProbeKind,
}

/// `[resilience.probes] kind`.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeKind {
    /// `GET /models` (or the provider's equivalent): proves the key and the provider answer,
    /// says nothing about the model, so it can open a breaker but never close one.
    #[default]
    Models,
    /// A one-token request for the deployment's model: can also close a half-open breaker.
    Completion,
}

impl ProbeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Models => "models",
            ProbeKind::Completion => "completion",
        }
    }
}

impl Default for Probes {
    fn default() -> Self {
        Probes {
            kind: ProbeKind::Models,
            enabled: true,
            interval: Duration::from_secs(15),
            failed_interval: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
        }
    }
}

/// Per model: a hedged second attempt when the first is slow to produce a first byte.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Hedge {
    pub enabled: bool,
    /// Fixed delay before hedging; without it, the first deployment's observed p95 time to first
    /// byte (once it has enough samples) is used.
    #[serde(with = "humantime_serde::option")]
    pub delay: Option<Duration>,
    /// Hedges may be sent for at most this share of requests.
    pub max_percent: f64,
}

impl Default for Hedge {
    fn default() -> Self {
        Hedge {
            enabled: false,
            delay: None,
            max_percent: 5.0,
        }
    }
}

/// Range checks, as (key, message) pairs for the caller to place.
pub(super) fn check(r: &Resilience) -> Result<(), (String, String)> {
    let b = &r.retry_budget;
    if !(0.0..=10.0).contains(&b.ratio) || b.min_per_second < 0.0 || b.window.is_zero() {
        return Err((
            "resilience.retry_budget".into(),
            "ratio must be within 0..=10, min_per_second ≥ 0, window > 0".into(),
        ));
    }
    let k = &r.breaker;
    if k.consecutive_failures == 0
        || !(0.0..=1.0).contains(&k.failure_rate)
        || k.window.is_zero()
        || k.cooldown.is_zero()
    {
        return Err((
            "resilience.breaker".into(),
            "consecutive_failures ≥ 1, failure_rate within 0..=1, window and cooldown > 0".into(),
        ));
    }
    if k.max_cooldown < k.cooldown {
        return Err((
            "resilience.breaker.max_cooldown".into(),
            "must be ≥ cooldown".into(),
        ));
    }
    let o = &r.backoff;
    if o.factor < 1.0 || o.cap < o.base {
        return Err((
            "resilience.backoff".into(),
            "factor must be ≥ 1 and cap ≥ base".into(),
        ));
    }
    if r.probes.enabled
        && (r.probes.interval.is_zero()
            || r.probes.failed_interval.is_zero()
            || r.probes.timeout.is_zero())
    {
        return Err((
            "resilience.probes".into(),
            "intervals and timeout must be > 0".into(),
        ));
    }
    if r.max_retry_after.is_zero() {
        return Err((
            "resilience.max_retry_after".into(),
            "must be more than 0s".into(),
        ));
    }
    let l = &r.learned_first_byte;
    if l.enabled
        && (!(l.multiplier >= 1.0 && l.multiplier.is_finite())
            || l.min_samples == 0
            || l.min_samples > FIRST_BYTE_SAMPLES)
    {
        return Err((
            "resilience.learned_first_byte".into(),
            format!("multiplier must be ≥ 1 and min_samples within 1..={FIRST_BYTE_SAMPLES}"),
        ));
    }
    if r.max_attempts_per_deployment == Some(0) {
        return Err((
            "resilience.max_attempts_per_deployment".into(),
            "must be ≥ 1".into(),
        ));
    }
    Ok(())
}
