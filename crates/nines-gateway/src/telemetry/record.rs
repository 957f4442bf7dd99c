//! What happened to one request: the value the request's context fills while it runs and hands
//! to [`super::Telemetry::record`] once, when it ends (`request::end`), and the log line
//! written from it.

use crate::resilience::{AttemptRecord, FailureClass};
use std::time::Duration;

/// One request's record: the log line's fields, and what metrics, the ledger, sessions, alerts
/// and traces are fed from.
#[derive(Debug, Clone, Default)]
pub struct RequestSummary {
    pub request_id: String,
    /// `chat_completions`, `messages`, `embeddings`, `videos`, `video_status`.
    pub endpoint: &'static str,
    /// The model name the client sent: the route.
    pub model: String,
    /// The model name resolved to a configured route (only then is it a ledger series: a name
    /// the client made up must not become one).
    pub routed: bool,
    pub stream: bool,
    /// The session the request belongs to (the session header), if any.
    pub session: Option<String>,
    /// The client's W3C `traceparent`, if it sent one.
    pub traceparent: Option<String>,
    /// The request's trace ids (tracing on).
    pub trace: Option<crate::tracecontext::RequestTrace>,
    /// The status the client got (499: the client went away first).
    pub status: u16,
    /// `ok`, `resumed`, `stream_broken`, `client_gone`, or the error's label.
    pub outcome: String,
    /// The deployment that served (or, on failure, the last one tried).
    pub deployment: Option<String>,
    /// Whether an upstream answer reached the client.
    pub served: bool,
    /// The fallback model that served, when the requested model's own candidates could not.
    pub fallback: Option<String>,
    /// Every attempt in order, the serving one included (class `ok`).
    pub attempts: Vec<AttemptRecord>,
    /// Time to first byte of the serving attempt's answer, as the upstream delivered it.
    pub upstream_ttfb: Option<Duration>,
    /// Request start until the answer's head was ready for the client (failed attempts, waits
    /// and the serving attempt's first byte included): the time to first byte the client saw.
    pub ttfb: Option<Duration>,
    /// Start of the request until its end.
    pub latency: Duration,
    /// Time the attempt loop spent waiting rather than working: on upstream attempts (each up to
    /// its commit point; a hedged race counted once) and on deliberate waits (backoff,
    /// Retry-After, a breaker's reopening, the capacity queue). `None` when not measured: the
    /// attempts then ran back to back and their `elapsed` sum stands in.
    pub waited: Option<Duration>,
    pub tokens_in: Option<u64>,
    pub tokens_out: Option<u64>,
    /// The tokens are the admission estimate: the answer reported none.
    pub usage_estimated: bool,
    /// USD.
    pub cost: f64,
    pub key_id: Option<String>,
    pub user_id: Option<String>,
    pub org_id: Option<String>,
    /// The limit level (`org`, `user`, `key`) that refused the request, when one did.
    pub limited_at: Option<&'static str>,
    pub detail: String,
    /// The plan and the attempt trail as text, filled only when the request log is on.
    pub plan: String,
    pub trail: String,
    /// Unix ms.
    pub started_at_ms: u64,
    pub finished_at_ms: u64,
}

impl RequestSummary {
    /// Served by a deployment other than the first one tried (a failover, as the client never
    /// saw it).
    pub fn fell_back(&self) -> bool {
        self.served
            && match (self.attempts.first(), &self.deployment) {
                (Some(first), Some(served)) => &first.deployment != served,
                _ => false,
            }
    }

    /// Time nines itself spent on the request up to its answer (`ttfb`; without an answer, the
    /// end): that time minus [`RequestSummary::waited`]. Reading the client's body, building
    /// the plan, auth and admission, translation and the attempt loop's own work are in it; the
    /// upstreams' time and policy waits are not, and neither is a stream's relay after its first
    /// event. `None` for requests that never reached an upstream.
    pub fn overhead(&self) -> Option<Duration> {
        if self.attempts.is_empty() {
            return None;
        }
        let waited = self
            .waited
            .unwrap_or_else(|| self.attempts.iter().map(|a| a.elapsed).sum());
        Some(self.ttfb.unwrap_or(self.latency).saturating_sub(waited))
    }

    /// The client saw an error (a 4xx of its own making is not the gateway failing it).
    pub fn client_visible_failure(&self) -> bool {
        self.status >= 500 || self.outcome == "stream_broken" || self.outcome == "interrupted"
    }

    /// Failure classes of the attempts that did not serve.
    pub fn failed_classes(&self) -> impl Iterator<Item = FailureClass> + '_ {
        self.attempts
            .iter()
            .map(|a| a.class)
            .filter(|c| *c != FailureClass::Ok)
    }
}

/// Whether the per-request line is wanted: building the plan and trail text is skipped otherwise.
pub fn request_logging() -> bool {
    tracing::enabled!(target: "nines::request", tracing::Level::INFO)
}

/// Writes the request's JSON log line (target `nines::request`).
pub fn log_line(s: &RequestSummary) {
    if !request_logging() {
        return;
    }
    let failed: Vec<&str> = s.failed_classes().map(FailureClass::as_str).collect();
    tracing::info!(
        target: "nines::request",
        request_id = %s.request_id,
        // Only with tracing on (a `None` field is left out of the line).
        trace_id = s.trace.as_ref().map(|t| tracing::field::display(t.trace_id)),
        endpoint = s.endpoint,
        model = %s.model,
        stream = s.stream,
        session = s.session.as_deref().unwrap_or(""),
        deployment = s.deployment.as_deref().unwrap_or(""),
        status = s.status,
        outcome = %s.outcome,
        attempts = s.attempts.len(),
        failed = %failed.join(","),
        fell_back = s.fell_back(),
        fallback_model = s.fallback.as_deref().unwrap_or(""),
        ttfb_ms = s.ttfb.map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        upstream_ttfb_ms = s.upstream_ttfb.map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        latency_ms = s.latency.as_secs_f64() * 1000.0,
        tokens_in = s.tokens_in.unwrap_or(0),
        tokens_out = s.tokens_out.unwrap_or(0),
        usage_estimated = s.usage_estimated,
        cost_usd = s.cost,
        key_id = s.key_id.as_deref().unwrap_or(""),
        user_id = s.user_id.as_deref().unwrap_or(""),
        org_id = s.org_id.as_deref().unwrap_or(""),
        detail = %s.detail,
        plan = %s.plan,
        attempt_trail = %s.trail,
        "request"
    );
}
