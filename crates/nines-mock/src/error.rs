//! OpenAI-shaped error responses, so clients parse the mock's failures like a real provider's.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

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
