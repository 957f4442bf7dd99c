//! Gemini error bodies, `{"error":{"code","message","status"}}` (Google's API error shape).

use crate::unified::{ErrorKind, ProviderError};
use serde_json::Value;

/// Parses a Gemini error body (a bare array holding one, as some Google front ends send, is
/// accepted too); `None` when the body is not one.
pub fn parse_error(body: &[u8]) -> Option<ProviderError> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let value = match value {
        Value::Array(mut items) if !items.is_empty() => items.swap_remove(0),
        other => other,
    };
    parse_error_value(value.get("error")?)
}

/// The error object inside the envelope.
pub(super) fn parse_error_value(error: &Value) -> Option<ProviderError> {
    let error = error.as_object()?;
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let status = error
        .get("status")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let code = error.get("code").map(|c| match c {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    });
    Some(ProviderError {
        kind: error_kind(status.as_deref().unwrap_or(""), &message),
        message,
        provider_type: status,
        code,
    })
}

/// The unified kind of a Google RPC status. An invalid argument about the token count is
/// [`ErrorKind::ContextTooLong`], and one about the API key is [`ErrorKind::Authentication`]
/// (Gemini reports a bad key as `INVALID_ARGUMENT`, status 400).
pub fn error_kind(status: &str, message: &str) -> ErrorKind {
    let lower = message.to_ascii_lowercase();
    match status {
        "RESOURCE_EXHAUSTED" => ErrorKind::RateLimited,
        "UNAVAILABLE" => ErrorKind::Overloaded,
        "INTERNAL" | "UNKNOWN" | "DATA_LOSS" => ErrorKind::Server,
        "DEADLINE_EXCEEDED" => ErrorKind::Timeout,
        "UNAUTHENTICATED" => ErrorKind::Authentication,
        "PERMISSION_DENIED" => ErrorKind::Permission,
        "NOT_FOUND" => ErrorKind::NotFound,
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => {
            if lower.contains("api key") {
                ErrorKind::Authentication
            } else if lower.contains("input token count")
                || lower.contains("maximum number of tokens")
                || lower.contains("too many tokens")
            {
                ErrorKind::ContextTooLong
            } else if lower.contains("location is not supported") {
                ErrorKind::Permission
            } else {
                ErrorKind::InvalidRequest
            }
        }
        _ => ErrorKind::Unknown,
    }
}
