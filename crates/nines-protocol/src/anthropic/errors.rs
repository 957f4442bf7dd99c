//! Anthropic error bodies, `{"type":"error","error":{"type","message"}}`: parsing an upstream's,
//! and building them for Anthropic-SDK clients of nines.

use crate::json;
use crate::unified::{ErrorKind, ProviderError};
use serde::{Deserialize, Serialize};

/// Parses an Anthropic error body; `None` when the body is not one.
pub fn parse_error(body: &[u8]) -> Option<ProviderError> {
    let wire: InError = serde_json::from_slice(body).ok()?;
    let error = wire.error?;
    let provider_type = error.kind.unwrap_or_default();
    let message = error.message.unwrap_or_default();
    Some(ProviderError {
        kind: error_kind(&provider_type, &message),
        message,
        provider_type: Some(provider_type),
        code: None,
    })
}

/// The unified kind of an Anthropic error type. An `invalid_request_error` about the prompt's
/// length is [`ErrorKind::ContextTooLong`] (a bigger window elsewhere may serve it), and one about
/// the credit balance is [`ErrorKind::QuotaExhausted`] (the key is broken, not the request).
pub fn error_kind(error_type: &str, message: &str) -> ErrorKind {
    match error_type {
        "overloaded_error" => ErrorKind::Overloaded,
        "rate_limit_error" => ErrorKind::RateLimited,
        "api_error" => ErrorKind::Server,
        "timeout_error" => ErrorKind::Timeout,
        "authentication_error" => ErrorKind::Authentication,
        "permission_error" => ErrorKind::Permission,
        "not_found_error" => ErrorKind::NotFound,
        "billing_error" => ErrorKind::QuotaExhausted,
        "request_too_large" => ErrorKind::ContextTooLong,
        "invalid_request_error" => {
            let lower = message.to_ascii_lowercase();
            if lower.contains("prompt is too long")
                || lower.contains("context window")
                || lower.contains("context length")
                || lower.contains("too many tokens")
            {
                ErrorKind::ContextTooLong
            } else if lower.contains("credit balance") {
                ErrorKind::QuotaExhausted
            } else {
                ErrorKind::InvalidRequest
            }
        }
        _ => ErrorKind::Unknown,
    }
}

/// The Anthropic error type for a unified kind.
pub fn error_type(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::RateLimited => "rate_limit_error",
        ErrorKind::QuotaExhausted => "billing_error",
        ErrorKind::Overloaded => "overloaded_error",
        ErrorKind::Server | ErrorKind::Unknown => "api_error",
        ErrorKind::Timeout => "timeout_error",
        ErrorKind::ContextTooLong | ErrorKind::InvalidRequest | ErrorKind::ContentFilter => {
            "invalid_request_error"
        }
        ErrorKind::Authentication => "authentication_error",
        ErrorKind::Permission => "permission_error",
        ErrorKind::NotFound => "not_found_error",
    }
}

/// The Anthropic error type Anthropic uses with an HTTP status.
pub fn error_type_for_status(status: u16) -> &'static str {
    match status {
        400 | 422 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        503 | 529 => "overloaded_error",
        _ => "api_error",
    }
}

/// An Anthropic-shaped error body for a response with `status`.
pub fn error_body(status: u16, message: &str) -> Vec<u8> {
    json::to_vec(&OutError {
        kind: "error",
        error: OutDetail {
            kind: error_type_for_status(status),
            message,
        },
    })
}

#[derive(Deserialize)]
struct InError {
    #[serde(default)]
    error: Option<InDetail>,
}

#[derive(Deserialize)]
struct InDetail {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Serialize)]
struct OutError<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: OutDetail<'a>,
}

#[derive(Serialize)]
struct OutDetail<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: &'a str,
}
