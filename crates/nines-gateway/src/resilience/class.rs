//! The single classification of every upstream outcome.
//!
//! Policy: what can succeed elsewhere is retryable (rate limits, overload, server errors, timeouts,
//! broken connections, malformed bodies, a broken upstream key); what is wrong with the request
//! itself (other 4xx, content filtering) is returned to the client as it is, because another
//! deployment would refuse it the same way. Retry decisions, metrics labels and the client's error
//! all read this one value, so they can never disagree.

use crate::providers::{Outcome, Transport};
use http::StatusCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureClass {
    Ok,
    /// 429 that will pass with time.
    RateLimited,
    /// 429 saying the account's quota or spend cap is exhausted: only another account helps.
    QuotaExhausted,
    /// 529, or 503 with an overloaded body.
    Overloaded,
    /// 500, 502, 503, 504 and other 5xx.
    Server,
    /// Connect, first-byte, idle or total timeout.
    Timeout,
    /// Refused, reset before a response, DNS, TLS.
    Connect,
    /// Unparseable body or stream.
    Malformed,
    /// 401/402/403 from the provider: that key is broken.
    UpstreamAuth,
    /// The provider says the prompt does not fit its window.
    ContextTooLong,
    ContentFiltered,
    /// Any other 4xx: the request itself is wrong.
    Client,
    /// Not an outcome: the attempt was dropped because a hedged twin answered first.
    Cancelled,
}

impl FailureClass {
    /// Every class, in a fixed order (the ledger's per-class counters are indexed by it).
    pub const ALL: [FailureClass; 13] = [
        FailureClass::Ok,
        FailureClass::RateLimited,
        FailureClass::QuotaExhausted,
        FailureClass::Overloaded,
        FailureClass::Server,
        FailureClass::Timeout,
        FailureClass::Connect,
        FailureClass::Malformed,
        FailureClass::UpstreamAuth,
        FailureClass::ContextTooLong,
        FailureClass::ContentFiltered,
        FailureClass::Client,
        FailureClass::Cancelled,
    ];

    /// Position in [`FailureClass::ALL`].
    pub fn index(self) -> usize {
        FailureClass::ALL
            .iter()
            .position(|c| *c == self)
            .unwrap_or(0)
    }

    /// Whether the outcome says the upstream was unavailable (what provider availability
    /// counts). The request's own faults and cancellations say nothing about the provider.
    pub fn is_upstream_failure(self) -> bool {
        matches!(
            self,
            FailureClass::RateLimited
                | FailureClass::QuotaExhausted
                | FailureClass::Overloaded
                | FailureClass::Server
                | FailureClass::Timeout
                | FailureClass::Connect
                | FailureClass::Malformed
                | FailureClass::UpstreamAuth
        )
    }

    /// Whether another attempt elsewhere can succeed.
    pub fn is_retryable(self) -> bool {
        !matches!(
            self,
            FailureClass::Ok
                | FailureClass::Client
                | FailureClass::ContentFiltered
                | FailureClass::Cancelled
        )
    }

    /// Low-cardinality label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Ok => "ok",
            FailureClass::RateLimited => "rate_limited",
            FailureClass::QuotaExhausted => "quota_exhausted",
            FailureClass::Overloaded => "overloaded",
            FailureClass::Server => "server",
            FailureClass::Timeout => "timeout",
            FailureClass::Connect => "connect",
            FailureClass::Malformed => "malformed",
            FailureClass::UpstreamAuth => "upstream_auth",
            FailureClass::ContextTooLong => "context_too_long",
            FailureClass::ContentFiltered => "content_filtered",
            FailureClass::Client => "client",
            FailureClass::Cancelled => "cancelled",
        }
    }
}

/// The class of a stream that broke after its first event reached the client (cut, stalled past
/// the idle timeout, an in-band error, the deadline): the upstream failed mid-answer, which
/// counts against its key slot like a server error.
pub const STREAM_BROKEN: FailureClass = FailureClass::Server;

/// Classifies one outcome.
pub fn classify(outcome: &Outcome) -> FailureClass {
    match outcome {
        Outcome::Reply(_) => FailureClass::Ok,
        Outcome::Status { status, body, .. } => classify_status(*status, body),
        Outcome::StreamError { data } => classify_stream_error(data),
        Outcome::Transport(t) => match t {
            Transport::Connect(_) | Transport::Broken(_) => FailureClass::Connect,
            Transport::ConnectTimeout
            | Transport::FirstByteTimeout
            | Transport::IdleTimeout
            | Transport::Deadline => FailureClass::Timeout,
            Transport::Malformed(_) => FailureClass::Malformed,
        },
    }
}

fn classify_status(status: StatusCode, body: &[u8]) -> FailureClass {
    let text = String::from_utf8_lossy(body);
    match status.as_u16() {
        429 if is_quota(&text) => FailureClass::QuotaExhausted,
        429 => FailureClass::RateLimited,
        529 => FailureClass::Overloaded,
        503 if text.to_ascii_lowercase().contains("overloaded") => FailureClass::Overloaded,
        401..=403 => FailureClass::UpstreamAuth,
        // Gemini reports a bad key as 400 INVALID_ARGUMENT: still the key, not the request.
        400 if text.contains("API key not valid") || text.contains("API_KEY_INVALID") => {
            FailureClass::UpstreamAuth
        }
        400..=499 => classify_error_text(&text).unwrap_or(FailureClass::Client),
        500..=599 => FailureClass::Server,
        // 1xx/3xx cannot be relayed as an answer: the upstream misbehaved.
        _ => FailureClass::Malformed,
    }
}

/// An error sent in-band before the stream proved itself. Bedrock names its exceptions (relayed
/// as `{"error":{"type":"throttlingException",...}}`), and its throttling is a rate limit like a
/// 429, its unavailability an overload like a 503.
fn classify_stream_error(data: &str) -> FailureClass {
    let lower = data.to_ascii_lowercase();
    if lower.contains("\"throttlingexception\"") {
        return FailureClass::RateLimited;
    }
    if lower.contains("\"serviceunavailableexception\"") {
        return FailureClass::Overloaded;
    }
    classify_error_text(data).unwrap_or(FailureClass::Server)
}

/// Recognises context-window and content-filter errors by the codes providers use.
fn classify_error_text(text: &str) -> Option<FailureClass> {
    let lower = text.to_ascii_lowercase();
    if lower.contains("context_length_exceeded")
        || lower.contains("maximum context length")
        || lower.contains("prompt is too long")
        || lower.contains("too many tokens")
        // Gemini: "The input token count (N) exceeds the maximum number of tokens allowed (M)."
        || lower.contains("exceeds the maximum number of tokens")
        // Bedrock's ValidationException: "Input is too long for requested model."
        || lower.contains("input is too long")
    {
        return Some(FailureClass::ContextTooLong);
    }
    if lower.contains("content_filter") || lower.contains("content_policy_violation") {
        return Some(FailureClass::ContentFiltered);
    }
    None
}

/// OpenAI's `insufficient_quota`, and spend-cap wording used by other providers.
fn is_quota(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower.contains("insufficient_quota")
        || lower.contains("exceeded your current quota")
        || lower.contains("spend limit")
}

#[cfg(test)]
mod tests;
