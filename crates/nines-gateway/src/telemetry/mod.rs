//! Telemetry. For now: one structured log line per request, written when the request ends
//! (for streams: when the stream ends), with the fields a usage record will carry.

use std::time::Duration;
use tokio::time::Instant;

/// Collects what happened to one request and logs it once.
#[derive(Debug)]
pub struct RequestLog {
    pub request_id: String,
    pub endpoint: &'static str,
    pub model: String,
    pub stream: bool,
    pub deployment: Option<String>,
    pub attempts: usize,
    /// Failure classes of the attempts that did not serve.
    pub failed: Vec<&'static str>,
    pub ttfb: Option<Duration>,
    pub detail: String,
    /// The plan (order, reasons, skips), filled only when request logging is on.
    pub plan: String,
    /// Each attempt (key slot, class, status, time), filled only when request logging is on.
    pub trail: String,
    started: Instant,
}

/// Whether the per-request line is wanted: building the plan and trail text is skipped otherwise.
pub fn request_logging() -> bool {
    tracing::enabled!(target: "nines::request", tracing::Level::INFO)
}

impl RequestLog {
    pub fn start(request_id: &str, endpoint: &'static str) -> RequestLog {
        RequestLog {
            request_id: request_id.to_owned(),
            endpoint,
            model: String::new(),
            stream: false,
            deployment: None,
            attempts: 0,
            failed: Vec::new(),
            ttfb: None,
            detail: String::new(),
            plan: String::new(),
            trail: String::new(),
            started: Instant::now(),
        }
    }

    /// Logs a request that ended in a gateway error before any upstream answered, and hands the
    /// error back.
    pub fn reject(self, error: crate::error::GatewayError) -> crate::error::GatewayError {
        self.finish(error.status().as_u16(), error.label());
        error
    }

    /// Writes the line. Consumes the log so a request is recorded exactly once.
    pub fn finish(self, status: u16, outcome: &str) {
        tracing::info!(
            target: "nines::request",
            request_id = %self.request_id,
            endpoint = self.endpoint,
            model = %self.model,
            stream = self.stream,
            deployment = self.deployment.as_deref().unwrap_or(""),
            status,
            outcome,
            attempts = self.attempts,
            failed = %self.failed.join(","),
            ttfb_ms = self.ttfb.map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0),
            latency_ms = self.started.elapsed().as_secs_f64() * 1000.0,
            detail = %self.detail,
            plan = %self.plan,
            attempt_trail = %self.trail,
            "request"
        );
    }
}
