//! OpenAI error bodies, `{"error":{"message","type","param","code"}}`, in both directions: what an
//! OpenAI-family upstream meant ([`parse_error`]) and how nines says a unified [`ErrorKind`] to an
//! OpenAI client ([`error_type`], [`error_body`]).

use crate::ErrorBody;
use crate::unified::{ErrorKind, ProviderError};
use serde_json::Value;

/// Parses an OpenAI-style error body. Also accepts the shapes OpenAI-compatible servers use
/// (`{"error":"text"}`, `{"detail":…}`, `{"message":…}`); `None` when the body is not JSON or
/// carries no error.
pub fn parse_error(body: &[u8]) -> Option<ProviderError> {
    let value: Value = serde_json::from_slice(body).ok()?;
    match value {
        Value::Object(mut map) => {
            if let Some(error) = map.remove("error") {
                return Some(parse_error_value(error));
            }
            let message = map.remove("detail").or_else(|| map.remove("message"))?;
            Some(parse_error_value(message))
        }
        _ => None,
    }
}

/// The error inside an envelope: an object with `message`/`type`/`code`, or plain text.
pub(crate) fn parse_error_value(error: Value) -> ProviderError {
    let (message, provider_type, code) = match error {
        Value::Object(map) => {
            let text = |key: &str| match map.get(key) {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            };
            (
                text("message").unwrap_or_default(),
                text("type"),
                text("code"),
            )
        }
        Value::String(s) => (s, None, None),
        other => (other.to_string(), None, None),
    };
    ProviderError {
        kind: error_kind(provider_type.as_deref(), code.as_deref(), &message),
        message,
        provider_type,
        code,
    }
}

/// The unified kind of an OpenAI error, from its `type`, `code` and message. [`ErrorKind::Unknown`]
/// when the body says nothing more than the HTTP status will.
pub fn error_kind(provider_type: Option<&str>, code: Option<&str>, message: &str) -> ErrorKind {
    let lower = message.to_ascii_lowercase();
    if code == Some("context_length_exceeded")
        || lower.contains("maximum context length")
        || lower.contains("context length")
        || lower.contains("context window")
        || lower.contains("prompt is too long")
    {
        return ErrorKind::ContextTooLong;
    }
    for s in [code, provider_type].into_iter().flatten() {
        let kind = match s {
            "insufficient_quota" | "billing_hard_limit_reached" | "billing_not_active" => {
                ErrorKind::QuotaExhausted
            }
            "rate_limit_exceeded" | "rate_limit_error" | "requests" | "tokens" => {
                ErrorKind::RateLimited
            }
            "overloaded" | "engine_overloaded" | "server_overloaded" | "overloaded_error" => {
                ErrorKind::Overloaded
            }
            "server_error" | "internal_error" | "api_error" => ErrorKind::Server,
            "timeout" | "timeout_error" => ErrorKind::Timeout,
            "invalid_api_key" | "authentication_error" | "invalid_authentication" => {
                ErrorKind::Authentication
            }
            "permission_error" | "permission_denied" | "unsupported_country_region_territory" => {
                ErrorKind::Permission
            }
            "model_not_found" | "not_found_error" => ErrorKind::NotFound,
            "content_filter" | "content_policy_violation" => ErrorKind::ContentFilter,
            "invalid_request_error" => ErrorKind::InvalidRequest,
            _ => continue,
        };
        return kind;
    }
    ErrorKind::Unknown
}

/// The OpenAI `type` and `code` nines reports for a unified kind.
pub fn error_type(kind: ErrorKind) -> (&'static str, Option<&'static str>) {
    match kind {
        ErrorKind::RateLimited => ("rate_limit_error", Some("rate_limit_exceeded")),
        ErrorKind::QuotaExhausted => ("insufficient_quota", Some("insufficient_quota")),
        ErrorKind::Overloaded => ("server_error", Some("overloaded")),
        ErrorKind::Server | ErrorKind::Unknown => ("server_error", None),
        ErrorKind::Timeout => ("server_error", Some("timeout")),
        ErrorKind::ContextTooLong => ("invalid_request_error", Some("context_length_exceeded")),
        ErrorKind::InvalidRequest => ("invalid_request_error", None),
        ErrorKind::Authentication => ("authentication_error", Some("invalid_api_key")),
        ErrorKind::Permission => ("permission_error", None),
        ErrorKind::NotFound => ("invalid_request_error", Some("model_not_found")),
        ErrorKind::ContentFilter => ("invalid_request_error", Some("content_filter")),
    }
}

/// An OpenAI-shaped error body for a unified kind.
pub fn error_body(kind: ErrorKind, message: &str) -> ErrorBody {
    let (kind, code) = error_type(kind);
    ErrorBody::new(message, kind, None, code)
}
