//! The mock's own error responses, in OpenAI's envelope: for the OpenAI dialect and for
//! whatever no provider dialect owns (unknown routes, control routes, unreadable bodies), so
//! clients parse the mock's failures like a real provider's. The other dialects render their
//! own shapes.

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
