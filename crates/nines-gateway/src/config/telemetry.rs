//! `[telemetry]`, `[telemetry.sessions]`, `[telemetry.otlp]`, `[telemetry.alerts]` and `[status]`:
//! what nines records about its own traffic and where it reports it.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawTelemetry {
    /// Serve Prometheus metrics at `GET /metrics`.
    pub metrics: bool,
    /// Keep the availability ledger (minute buckets per route and per deployment).
    pub ledger: bool,
    /// The availability objective the error budget and burn rate are measured against.
    pub slo: f64,
    /// How long ledger buckets and incidents are kept in the store.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// How often ledger buckets and incidents are written to the store.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    pub sessions: Sessions,
    pub otlp: Option<RawOtlp>,
    pub alerts: Option<RawAlerts>,
}

impl Default for RawTelemetry {
    fn default() -> Self {
        RawTelemetry {
            metrics: true,
            ledger: true,
            slo: 0.999,
            retention: Duration::from_secs(100 * 86_400),
            flush_interval: Duration::from_secs(10),
            sessions: Sessions::default(),
            otlp: None,
            alerts: None,
        }
    }
}

/// Requests carrying the session header belong to one agent trajectory.
#[derive(Debug, Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Sessions {
    /// The request header naming the session (case-insensitive).
    pub header: String,
    /// A session counts as good when it saw no client-visible error and the time its requests
    /// spent in nines (summed) stayed within this budget.
    #[serde(with = "humantime_serde")]
    pub latency_budget: Duration,
    /// A session with no request for this long is over and is counted.
    #[serde(with = "humantime_serde")]
    pub idle: Duration,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            header: "x-nines-session".into(),
            latency_budget: Duration::from_secs(60),
            idle: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawOtlp {
    /// OTLP/HTTP base URL (`http://collector:4318`); `/v1/traces` is appended.
    pub endpoint: String,
    #[serde(default)]
    pub protocol: OtlpProtocol,
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// Share of requests traced (parent-based: a sampled `traceparent` from the client is kept).
    #[serde(default = "one")]
    pub sample_ratio: f64,
    /// Extra export headers (an auth token, say); values may be `env:NAME`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
pub enum OtlpProtocol {
    #[default]
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    #[serde(rename = "http/json")]
    HttpJson,
}

fn default_service_name() -> String {
    "nines".into()
}

fn one() -> f64 {
    1.0
}

#[derive(Debug, Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawAlerts {
    /// Where alerts are POSTed (Slack-compatible JSON); `env:NAME` allowed.
    pub webhook_url: String,
    /// Alert when a route's share of requests not served by its first choice reaches this.
    pub fallback_rate: f64,
    /// The rolling window the fallback rate is measured over (at least 1m: the ledger counts in
    /// minutes).
    #[serde(with = "humantime_serde")]
    pub fallback_window: Duration,
    /// Fewer requests than this in the window and a rate (fallback or burn) is not judged.
    pub min_requests: u64,
    /// Alert when the error budget burns at least this many times the sustainable rate.
    pub burn_rate: f64,
    /// The rolling window the burn rate is measured over (at least 1m).
    #[serde(with = "humantime_serde")]
    pub burn_window: Duration,
    /// Alert when a breaker opens and again when it closes.
    pub breaker: bool,
    /// How often conditions are evaluated.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// How long one webhook delivery attempt may take.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Further attempts after a failed delivery (timeout, connection error, 5xx, 429).
    pub retries: u32,
    /// The wait before the first retry; doubles on each one (a longer `Retry-After` wins).
    #[serde(with = "humantime_serde")]
    pub retry_backoff: Duration,
}

impl Default for RawAlerts {
    fn default() -> Self {
        RawAlerts {
            webhook_url: String::new(),
            fallback_rate: 0.05,
            fallback_window: Duration::from_secs(300),
            min_requests: 20,
            // Google SRE workbook: a 1 h window burning 14.4× spends 2% of a 30-day budget.
            burn_rate: 14.4,
            burn_window: Duration::from_secs(3600),
            breaker: true,
            interval: Duration::from_secs(15),
            timeout: Duration::from_secs(5),
            retries: 3,
            retry_backoff: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Status {
    /// Serve the status page at `GET /status` and its data at `GET /status.json`.
    pub enabled: bool,
    /// Without the admin key too; a status page is usually meant for customers.
    pub public: bool,
    pub title: String,
    /// A deployment's incidents that start within this long of its previous one ending are one
    /// incident with several episodes (a flapping provider), not a pile of cards.
    #[serde(with = "humantime_serde")]
    pub incident_merge_window: Duration,
}

impl Default for Status {
    fn default() -> Self {
        Status {
            enabled: true,
            public: true,
            title: "nines status".into(),
            incident_merge_window: Duration::from_secs(600),
        }
    }
}

/// `[telemetry]` resolved: secrets read, values checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Telemetry {
    pub metrics: bool,
    pub ledger: bool,
    pub slo: f64,
    pub retention: Duration,
    pub flush_interval: Duration,
    pub sessions: Sessions,
    pub otlp: Option<Otlp>,
    pub alerts: Option<Alerts>,
    pub status: Status,
}

impl Default for Telemetry {
    fn default() -> Self {
        let raw = RawTelemetry::default();
        Telemetry {
            metrics: raw.metrics,
            ledger: raw.ledger,
            slo: raw.slo,
            retention: raw.retention,
            flush_interval: raw.flush_interval,
            sessions: raw.sessions,
            otlp: None,
            alerts: None,
            status: Status::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Otlp {
    pub endpoint: String,
    pub protocol: OtlpProtocol,
    pub service_name: String,
    pub sample_ratio: f64,
    pub headers: Vec<(String, super::Secret)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Alerts {
    pub webhook_url: super::Secret,
    pub fallback_rate: f64,
    pub fallback_window: Duration,
    pub min_requests: u64,
    pub burn_rate: f64,
    pub burn_window: Duration,
    pub breaker: bool,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub retry_backoff: Duration,
}

/// The shortest rate window: the ledger counts in minute buckets, so a shorter window would
/// mostly see none.
const MIN_ALERT_WINDOW: Duration = Duration::from_secs(60);
/// More retries than this would hold the delivery queue for too long.
const MAX_ALERT_RETRIES: u32 = 10;

/// Checks the sections and reads their secrets; errors are `(key path, message)`.
pub fn validate(
    raw: &RawTelemetry,
    status: &Status,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Telemetry, (String, String)> {
    let fail = |key: &str, msg: String| Err((key.to_owned(), msg));
    if !(raw.slo > 0.0 && raw.slo < 1.0) {
        return fail(
            "telemetry.slo",
            format!(
                "must be between 0 and 1 (exclusive), e.g. 0.999; got {}",
                raw.slo
            ),
        );
    }
    if raw.flush_interval.is_zero() {
        return fail("telemetry.flush_interval", "must be more than 0s".into());
    }
    if raw.retention < Duration::from_secs(86_400) {
        return fail("telemetry.retention", "must be at least 1d".into());
    }
    if raw.sessions.header.trim().is_empty()
        || http::HeaderName::from_bytes(raw.sessions.header.as_bytes()).is_err()
    {
        return fail(
            "telemetry.sessions.header",
            format!("'{}' is not a valid header name", raw.sessions.header),
        );
    }
    if raw.sessions.idle.is_zero() {
        return fail("telemetry.sessions.idle", "must be more than 0s".into());
    }
    let otlp = match &raw.otlp {
        None => None,
        Some(o) => {
            if !(o.endpoint.starts_with("http://") || o.endpoint.starts_with("https://")) {
                return fail(
                    "telemetry.otlp.endpoint",
                    format!(
                        "'{}' must be an http:// or https:// URL",
                        super::shown_url(&o.endpoint)
                    ),
                );
            }
            if !(0.0..=1.0).contains(&o.sample_ratio) {
                return fail(
                    "telemetry.otlp.sample_ratio",
                    "must be between 0 and 1".into(),
                );
            }
            let mut headers = Vec::new();
            for (name, value) in &o.headers {
                let value = super::access::resolve_env(value, env)
                    .map_err(|m| (format!("telemetry.otlp.headers.{name}"), m))?;
                headers.push((name.clone(), super::Secret::new(value)));
            }
            Some(Otlp {
                endpoint: o.endpoint.trim_end_matches('/').to_owned(),
                protocol: o.protocol,
                service_name: o.service_name.clone(),
                sample_ratio: o.sample_ratio,
                headers,
            })
        }
    };
    let alerts = match &raw.alerts {
        None => None,
        Some(_) if !raw.ledger => {
            return fail(
                "telemetry.alerts",
                "alerts read the availability ledger: set telemetry.ledger = true".into(),
            );
        }
        Some(a) => {
            let url = super::access::resolve_env(&a.webhook_url, env)
                .map_err(|m| ("telemetry.alerts.webhook_url".to_owned(), m))?;
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                // The URL may carry a token: never echo it.
                return fail(
                    "telemetry.alerts.webhook_url",
                    "must be an http:// or https:// URL".into(),
                );
            }
            if !(a.fallback_rate > 0.0 && a.fallback_rate < 1.0) {
                return fail(
                    "telemetry.alerts.fallback_rate",
                    "must be between 0 and 1 (exclusive)".into(),
                );
            }
            if a.burn_rate <= 0.0 {
                return fail("telemetry.alerts.burn_rate", "must be more than 0".into());
            }
            for (key, d) in [
                ("fallback_window", a.fallback_window),
                ("burn_window", a.burn_window),
            ] {
                if d < MIN_ALERT_WINDOW {
                    return fail(
                        &format!("telemetry.alerts.{key}"),
                        "must be at least 1m (the ledger counts in minutes)".into(),
                    );
                }
            }
            for (key, d) in [("interval", a.interval), ("timeout", a.timeout)] {
                if d.is_zero() {
                    return fail(
                        &format!("telemetry.alerts.{key}"),
                        "must be more than 0s".into(),
                    );
                }
            }
            if a.retries > MAX_ALERT_RETRIES {
                return fail(
                    "telemetry.alerts.retries",
                    format!("must be at most {MAX_ALERT_RETRIES}"),
                );
            }
            Some(Alerts {
                webhook_url: super::Secret::new(url),
                fallback_rate: a.fallback_rate,
                fallback_window: a.fallback_window,
                min_requests: a.min_requests,
                burn_rate: a.burn_rate,
                burn_window: a.burn_window,
                breaker: a.breaker,
                interval: a.interval,
                timeout: a.timeout,
                retries: a.retries,
                retry_backoff: a.retry_backoff,
            })
        }
    };
    Ok(Telemetry {
        metrics: raw.metrics,
        ledger: raw.ledger,
        slo: raw.slo,
        retention: raw.retention,
        flush_interval: raw.flush_interval,
        sessions: raw.sessions.clone(),
        otlp,
        alerts,
        status: status.clone(),
    })
}
