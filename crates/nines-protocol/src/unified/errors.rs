//! Errors of the translation layer: what an upstream said went wrong ([`ProviderError`], with a
//! dialect-neutral [`ErrorKind`]) and what nines could not make sense of ([`DecodeError`]).
//!
//! Every dialect spells its errors differently (`overloaded_error`, `RESOURCE_EXHAUSTED`,
//! `context_length_exceeded`, ...). Each dialect module maps its spelling to one [`ErrorKind`] so
//! that the gateway's failure classification reads one value, whatever the upstream.

use std::fmt;

/// The coarse meaning of an upstream error, from the body alone (the gateway combines it with the
/// HTTP status when it classifies the attempt).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Too many requests for this key right now; retry later or elsewhere.
    RateLimited,
    /// The account's quota or credit is used up; this key will not recover soon.
    QuotaExhausted,
    /// The provider is overloaded (Anthropic 529, Gemini `UNAVAILABLE`).
    Overloaded,
    /// An internal error on the provider's side.
    Server,
    /// The provider gave up waiting (Gemini `DEADLINE_EXCEEDED`, Anthropic `timeout_error`).
    Timeout,
    /// The prompt does not fit the model's context window.
    ContextTooLong,
    /// The request is invalid; it fails the same way anywhere.
    InvalidRequest,
    /// The key is missing, wrong or revoked.
    Authentication,
    /// The key may not use this model or feature.
    Permission,
    /// The model or resource does not exist.
    NotFound,
    /// The provider refused the content.
    ContentFilter,
    /// Anything else.
    Unknown,
}

impl ErrorKind {
    /// The stable name carried in [`crate::unified::StreamEvent::Error::kind`].
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::QuotaExhausted => "quota_exhausted",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::Server => "server",
            ErrorKind::Timeout => "timeout",
            ErrorKind::ContextTooLong => "context_too_long",
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::Authentication => "authentication",
            ErrorKind::Permission => "permission",
            ErrorKind::NotFound => "not_found",
            ErrorKind::ContentFilter => "content_filter",
            ErrorKind::Unknown => "unknown",
        }
    }

    /// The inverse of [`ErrorKind::as_str`]; unknown names are [`ErrorKind::Unknown`].
    pub fn from_name(name: &str) -> ErrorKind {
        match name {
            "rate_limited" => ErrorKind::RateLimited,
            "quota_exhausted" => ErrorKind::QuotaExhausted,
            "overloaded" => ErrorKind::Overloaded,
            "server" => ErrorKind::Server,
            "timeout" => ErrorKind::Timeout,
            "context_too_long" => ErrorKind::ContextTooLong,
            "invalid_request" => ErrorKind::InvalidRequest,
            "authentication" => ErrorKind::Authentication,
            "permission" => ErrorKind::Permission,
            "not_found" => ErrorKind::NotFound,
            "content_filter" => ErrorKind::ContentFilter,
            _ => ErrorKind::Unknown,
        }
    }

    /// Whether the same request may succeed on another attempt or deployment.
    pub fn is_retryable(self) -> bool {
        !matches!(self, ErrorKind::InvalidRequest | ErrorKind::ContentFilter)
    }

    /// The kind an HTTP status implies when the body says nothing more specific.
    pub fn from_status(status: u16) -> ErrorKind {
        match status {
            400 | 413 | 422 => ErrorKind::InvalidRequest,
            401 => ErrorKind::Authentication,
            402 => ErrorKind::QuotaExhausted,
            403 => ErrorKind::Permission,
            404 => ErrorKind::NotFound,
            408 | 504 => ErrorKind::Timeout,
            429 => ErrorKind::RateLimited,
            503 | 529 => ErrorKind::Overloaded,
            500..=599 => ErrorKind::Server,
            _ => ErrorKind::Unknown,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error body an upstream returned, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderError {
    pub kind: ErrorKind,
    /// The upstream's message, verbatim (may echo request content; summarise before logging).
    pub message: String,
    /// The upstream's own type or status string (`rate_limit_error`, `RESOURCE_EXHAUSTED`, ...).
    pub provider_type: Option<String>,
    /// The upstream's machine code, when it has one (`context_length_exceeded`, `429`, ...).
    pub code: Option<String>,
}

/// An upstream body (or stream payload) nines could not decode. The gateway classifies it as
/// `malformed`: another deployment may well answer properly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {dialect} {what}: {message}")]
pub struct DecodeError {
    /// The dialect being decoded (`openai`, `anthropic`, ...).
    pub dialect: &'static str,
    /// What was being decoded (`response`, `stream event`, ...).
    pub what: &'static str,
    pub message: String,
}

impl DecodeError {
    pub fn new(dialect: &'static str, what: &'static str, message: impl Into<String>) -> Self {
        DecodeError {
            dialect,
            what,
            message: message.into(),
        }
    }
}
