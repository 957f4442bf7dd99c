//! OpenAI-shaped error responses, so clients parse the mock's failures like a real provider's,
//! and [`Dialect`], which picks the right shape for the other wire formats.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::{anthropic, gemini, replicate, runway};

/// The wire format a route speaks, for the error shapes the shared fault code produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    OpenAi,
    Anthropic,
    Gemini,
    Replicate,
    Runway,
}

impl Dialect {
    /// The error body a fault with `status` sends in this dialect.
    pub(crate) fn fault_body(self, status: u16) -> Value {
        match self {
            Dialect::OpenAi => fault_body(status),
            Dialect::Anthropic => anthropic::fault_body(status),
            Dialect::Gemini => gemini::fault_body(status),
            Dialect::Replicate => replicate::fault_body(status),
            Dialect::Runway => runway::fault_body(status),
        }
    }

    /// A 400 for a request the mock cannot understand, in this dialect's shape.
    pub(crate) fn invalid_request(self, message: &str) -> Response {
        match self {
            Dialect::OpenAi => invalid_request(message),
            Dialect::Anthropic => anthropic::invalid_request(message),
            Dialect::Gemini => gemini::error(StatusCode::BAD_REQUEST, message),
            Dialect::Replicate => replicate::error(StatusCode::BAD_REQUEST, message),
            Dialect::Runway => runway::error(StatusCode::BAD_REQUEST, message),
        }
    }
}

/// The largest context the OpenAI dialect claims when `context_too_long` is faulted.
const OPENAI_CONTEXT: u64 = 8192;

/// OpenAI's 400 for a prompt longer than the context. The claimed size is the limit plus the
/// request's own estimate, so it always exceeds the limit.
pub(crate) fn context_length_exceeded(prompt_tokens: u64, param: &str) -> Response {
    let tokens = OPENAI_CONTEXT + prompt_tokens;
    let message = format!(
        "This model's maximum context length is {OPENAI_CONTEXT} tokens. However, your \
         messages resulted in {tokens} tokens. Please reduce the length of the messages."
    );
    let mut body = body(
        &message,
        "invalid_request_error",
        Some("context_length_exceeded"),
    );
    body["error"]["param"] = param.into();
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

/// The OpenAI error envelope: `{"error":{"message","type","param","code"}}`.
pub(crate) fn body(message: &str, kind: &str, code: Option<&str>) -> Value {
    json!({
        "error": {
            "message": message,
            "type": kind,
            "param": null,
            "code": code,
        }
    })
}

/// A 400 for a request the mock cannot understand.
pub(crate) fn invalid_request(message: impl AsRef<str>) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(body(message.as_ref(), "invalid_request_error", None)),
    )
        .into_response()
}

/// A 404 for a path the mock does not serve.
pub(crate) fn not_found(message: impl AsRef<str>) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(body(message.as_ref(), "invalid_request_error", None)),
    )
        .into_response()
}

/// The error body a fault with `status` sends: the type and code a real provider would use for
/// that status, so the gateway's classifier sees realistic input.
pub(crate) fn fault_body(status: u16) -> Value {
    let generic = format!("mock fault: status {status}");
    let (message, kind, code) = match status {
        429 => (
            generic.as_str(),
            "rate_limit_exceeded",
            Some("rate_limit_exceeded"),
        ),
        503 | 529 => ("Overloaded", "overloaded_error", None),
        401 => (
            generic.as_str(),
            "authentication_error",
            Some("invalid_api_key"),
        ),
        403 => (generic.as_str(), "permission_error", None),
        404 => (generic.as_str(), "not_found_error", None),
        500..=599 => (generic.as_str(), "server_error", None),
        _ => (generic.as_str(), "invalid_request_error", None),
    };
    body(message, kind, code)
}
