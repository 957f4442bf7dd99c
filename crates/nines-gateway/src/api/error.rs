//! Errors → HTTP responses: each layer's error (`GatewayError` of the request edge,
//! `AccessError` of the access stages, `AdminError` of the admin API) rendered with the status
//! its own `status()` decides and an OpenAI-shaped body `{"error":{"message","type","param",
//! "code"}}`, plus `x-should-retry` and `x-nines-attempts`.

use super::admin::AdminError;
use crate::access::AccessError;
use crate::request::{GatewayError, Rejected};
use crate::resilience::{FailureClass, Unavailable};
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, StatusCode, Uri, header};
use nines_protocol::ErrorBody;
use std::fmt::Write;
use std::time::Duration;

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let attempts = self.attempts();
        let status = self.status();
        let (body, should_retry) = match self {
            GatewayError::Upstream(rejected) => {
                let Rejected {
                    status,
                    headers,
                    body,
                    ..
                } = *rejected;
                let body = if is_openai_error(&body) {
                    body.to_vec()
                } else if serde_json::from_slice::<serde_json::Value>(&body)
                    .is_ok_and(|v| v["error"]["message"].is_string())
                {
                    foreign_error_as_openai(status, &body)
                } else {
                    let text = String::from_utf8_lossy(&body);
                    ErrorBody::new(
                        format!("upstream returned status {status}: {}", text.trim()),
                        "invalid_request_error",
                        None,
                        None,
                    )
                    .to_json()
                };
                let mut response = json_response(status, body, None);
                if let Some(v) = headers.get(header::RETRY_AFTER) {
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, v.clone());
                }
                set_attempts(&mut response, attempts);
                return response;
            }
            GatewayError::Unavailable {
                model,
                why,
                retry_after,
                ..
            } => {
                let (message, code, retry) = match why {
                    Unavailable::AtCapacity => (
                        format!(
                            "Every deployment of model '{model}' is at its concurrency limit and no slot freed within the queue time."
                        ),
                        "capacity_exhausted",
                        true,
                    ),
                    Unavailable::AllOpen => (
                        format!(
                            "Every deployment of model '{model}' is temporarily out of rotation after recent failures; \
                             it is expected back in {} s.",
                            retry_after.as_secs_f64().ceil()
                        ),
                        "all_deployments_unavailable",
                        // A breaker reopening soon: a retry then will likely succeed.
                        retry_after <= Duration::from_secs(60),
                    ),
                    Unavailable::BudgetSpent => (
                        format!(
                            "Upstreams for model '{model}' are failing and the gateway's retry budget is spent; \
                             not retrying to avoid amplifying the outage."
                        ),
                        "retry_budget_exhausted",
                        false,
                    ),
                };
                let body = ErrorBody::new(message, "server_error", None, Some(code)).to_json();
                let mut response = json_response(status, body, Some(retry));
                set_retry_after(&mut response, retry_after);
                set_attempts(&mut response, attempts);
                return response;
            }
            GatewayError::AllFailed {
                model,
                attempts: records,
                deadline_hit,
            } => {
                let hint = records
                    .iter()
                    .filter(|a| a.class == FailureClass::RateLimited)
                    .filter_map(|a| a.retry_after)
                    .min();
                let mut message = if deadline_hit {
                    format!(
                        "The request deadline ran out after {} attempt(s) for model '{model}':",
                        records.len()
                    )
                } else {
                    format!(
                        "All {} attempt(s) for model '{model}' failed:",
                        records.len()
                    )
                };
                for (i, a) in records.iter().enumerate() {
                    let status = a
                        .status
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "-".into());
                    let _ = write!(
                        message,
                        " [{}] deployment={} key={} class={} status={} time={}ms{}{};",
                        i + 1,
                        a.deployment,
                        a.key_alias,
                        a.class.as_str(),
                        status,
                        a.elapsed.as_millis(),
                        if a.detail.is_empty() { "" } else { " detail=" },
                        a.detail
                    );
                }
                let too_long = status == StatusCode::BAD_REQUEST;
                let code = if too_long {
                    "context_length_exceeded"
                } else if deadline_hit {
                    "deadline_exceeded"
                } else {
                    "all_attempts_failed"
                };
                // nines already spent the attempts an SDK retry would make: tell it not to retry,
                // but say when a rate limit resets if one was the cause.
                let kind = if too_long {
                    "invalid_request_error"
                } else {
                    "server_error"
                };
                let body = ErrorBody::new(message, kind, None, Some(code)).to_json();
                let mut response = json_response(status, body, Some(false));
                if let Some(wait) = hint {
                    set_retry_after(&mut response, wait);
                }
                set_attempts(&mut response, attempts);
                return response;
            }
            GatewayError::BadRequest(e) => {
                let code = if matches!(e, nines_protocol::openai::RequestError::Malformed(_)) {
                    None
                } else {
                    Some("invalid_request_error")
                };
                (
                    ErrorBody::new(e.to_string(), "invalid_request_error", e.param(), code),
                    None,
                )
            }
            e @ (GatewayError::BodyTooLarge { .. } | GatewayError::BodyTimeout(_)) => {
                let code = match e {
                    GatewayError::BodyTimeout(_) => "request_timeout",
                    _ => "request_too_large",
                };
                let body = ErrorBody::new(e.to_string(), "invalid_request_error", None, Some(code));
                let mut response = json_response(status, body.to_json(), Some(false));
                // The rest of the body is still on its way: the connection cannot carry another
                // request.
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                set_attempts(&mut response, attempts);
                return response;
            }
            e @ GatewayError::BodyRead(_) => (
                ErrorBody::new(e.to_string(), "invalid_request_error", None, None),
                None,
            ),
            e @ GatewayError::ModelNotFound(_) => (
                ErrorBody::new(
                    e.to_string(),
                    "invalid_request_error",
                    Some("model"),
                    Some("model_not_found"),
                ),
                None,
            ),
            e @ GatewayError::RouteNotFound { .. } => (
                ErrorBody::new(
                    format!("{e} nines serves: {}.", super::served_endpoints()),
                    "invalid_request_error",
                    None,
                    Some("unknown_url"),
                ),
                None,
            ),
            e @ GatewayError::MethodNotAllowed { .. } => (
                ErrorBody::new(
                    e.to_string(),
                    "invalid_request_error",
                    None,
                    Some("method_not_allowed"),
                ),
                None,
            ),
            e @ GatewayError::ContextTooLong { .. } => (
                ErrorBody::new(
                    e.to_string(),
                    "invalid_request_error",
                    Some("messages"),
                    Some("context_length_exceeded"),
                ),
                None,
            ),
            e @ GatewayError::MissingCapability { .. } => (
                ErrorBody::new(
                    e.to_string(),
                    "invalid_request_error",
                    None,
                    Some("unsupported_capability"),
                ),
                None,
            ),
            e @ GatewayError::NoCandidates { .. } => (
                ErrorBody::new(e.to_string(), "server_error", None, Some("no_candidates")),
                Some(false),
            ),
            GatewayError::Access(e) => return e.into_response(),
            e @ GatewayError::ShuttingDown => {
                let body =
                    ErrorBody::new(e.to_string(), "server_error", None, Some("shutting_down"));
                let mut response = json_response(status, body.to_json(), Some(true));
                set_retry_after(&mut response, Duration::from_secs(1));
                // This connection is going away: the client reconnects (to another replica).
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                set_attempts(&mut response, attempts);
                return response;
            }
            e @ GatewayError::Internal(_) => (
                ErrorBody::new(e.to_string(), "server_error", None, Some("internal_error")),
                None,
            ),
        };
        let mut response = json_response(status, body.to_json(), should_retry);
        set_attempts(&mut response, attempts);
        response
    }
}

impl IntoResponse for AccessError {
    fn into_response(self) -> Response {
        let status = self.status();
        let (body, should_retry) = match self {
            AccessError::Limited(denied) => return limited_response(status, &denied),
            e @ AccessError::Unauthorized { .. } => {
                let code = match &e {
                    AccessError::Unauthorized { code, .. } => *code,
                    _ => "invalid_api_key",
                };
                (
                    ErrorBody::new(e.to_string(), "invalid_request_error", None, Some(code)),
                    Some(false),
                )
            }
            e @ AccessError::ModelNotAllowed { .. } => (
                ErrorBody::new(
                    e.to_string(),
                    "invalid_request_error",
                    Some("model"),
                    Some("model_not_allowed"),
                ),
                Some(false),
            ),
            e @ AccessError::Unavailable(_) => (
                ErrorBody::new(
                    e.to_string(),
                    "server_error",
                    None,
                    Some("access_unavailable"),
                ),
                Some(true),
            ),
        };
        let mut response = json_response(status, body.to_json(), should_retry);
        set_attempts(&mut response, 0);
        response
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let status = self.status();
        let (kind, code, should_retry) = match &self {
            AdminError::Unauthorized { code, .. } => ("invalid_request_error", Some(*code), false),
            AdminError::Invalid(_) => ("invalid_request_error", None, false),
            AdminError::NotFound(_) => ("invalid_request_error", Some("not_found"), false),
            AdminError::Conflict(_) => ("invalid_request_error", Some("conflict"), false),
            AdminError::Unavailable(_) => ("server_error", Some("access_unavailable"), true),
        };
        let body = ErrorBody::new(self.to_string(), kind, None, code).to_json();
        let mut response = json_response(status, body, Some(should_retry));
        set_attempts(&mut response, 0);
        response
    }
}

/// A refused admission: 429 naming the level, `retry-after(-ms)`, `x-should-retry`, and the
/// `x-ratelimit-*` headers of the window that refused. A request too large for a window, and an
/// exhausted budget (`insufficient_quota`), say `x-should-retry: false`; a budget's
/// `retry-after` is the time until its period resets (not capped: SDKs will not retry anyway).
fn limited_response(status: StatusCode, denied: &crate::limits::Denied) -> Response {
    use crate::limits::{Dim, Tripped};
    let (kind, code) = match denied.tripped {
        Tripped::Window(Dim::Requests) => ("requests", "rate_limit_exceeded"),
        Tripped::Window(Dim::Tokens) => ("tokens", "rate_limit_exceeded"),
        Tripped::Budget(_) => ("insufficient_quota", "insufficient_quota"),
    };
    let body = ErrorBody::new(denied.message(), kind, None, Some(code)).to_json();
    let mut response = json_response(status, body, Some(denied.retryable));
    match denied.tripped {
        Tripped::Window(_) if denied.retryable => {
            set_retry_after(&mut response, denied.retry_after)
        }
        Tripped::Window(_) => {}
        Tripped::Budget(_) => {
            let wait = denied.retry_after;
            let headers = response.headers_mut();
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from(wait.as_secs_f64().ceil().max(1.0) as u64),
            );
            headers.insert(
                "retry-after-ms",
                HeaderValue::from(wait.as_millis().max(1) as u64),
            );
        }
    }
    denied.headers.write(response.headers_mut());
    if let Ok(v) = HeaderValue::from_str(&denied.label()) {
        response.headers_mut().insert("x-nines-limit", v);
    }
    set_attempts(&mut response, 0);
    response
}

fn json_response(status: StatusCode, body: Vec<u8>, should_retry: Option<bool>) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(retry) = should_retry {
        headers.insert(
            "x-should-retry",
            HeaderValue::from_static(if retry { "true" } else { "false" }),
        );
    }
    response
}

/// `retry-after` in whole seconds (rounded up) and `retry-after-ms`, as the OpenAI and Anthropic
/// SDKs read them; capped at 60 s, beyond which the SDKs ignore the hint.
fn set_retry_after(response: &mut Response, wait: Duration) {
    let wait = wait.min(Duration::from_secs(60));
    let headers = response.headers_mut();
    headers.insert(
        header::RETRY_AFTER,
        HeaderValue::from(wait.as_secs_f64().ceil().max(1.0) as u64),
    );
    headers.insert(
        "retry-after-ms",
        HeaderValue::from(wait.as_millis().max(1) as u64),
    );
}

fn set_attempts(response: &mut Response, attempts: usize) {
    response
        .headers_mut()
        .insert("x-nines-attempts", HeaderValue::from(attempts));
}

/// OpenAI's envelope exactly: Anthropic's `{"type":"error","error":{…}}` would also parse as an
/// `ErrorBody` (its `param` and `code` are optional), so its top-level `type` rules it out.
fn is_openai_error(body: &[u8]) -> bool {
    serde_json::from_slice::<ErrorBody>(body).is_ok()
        && !serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|v| v.get("type").is_some())
}

/// Another dialect's error body (Anthropic's, Gemini's) as OpenAI's: its message and type kept.
fn foreign_error_as_openai(status: StatusCode, body: &[u8]) -> Vec<u8> {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let message = v["error"]["message"].as_str().map(str::to_owned);
    let kind = v["error"]["type"]
        .as_str()
        .or(v["error"]["status"].as_str())
        .unwrap_or("invalid_request_error");
    let message = message.unwrap_or_else(|| {
        format!(
            "upstream returned status {status}: {}",
            String::from_utf8_lossy(body).trim()
        )
    });
    ErrorBody::new(message, kind, None, None).to_json()
}

pub(super) async fn not_found(method: Method, uri: Uri) -> Response {
    GatewayError::RouteNotFound {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
    .into_response()
}

pub(super) async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    GatewayError::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
    .into_response()
}

/// Re-renders an error response in Anthropic's shape (`{"type":"error","error":{type,message}}`),
/// keeping its status and headers, so the Anthropic SDK raises its own typed errors.
pub(super) async fn anthropic_shaped(response: Response) -> Response {
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    // Already Anthropic-shaped (an Anthropic upstream's own error, relayed)?
    let is_anthropic =
        serde_json::from_slice::<serde_json::Value>(&bytes).is_ok_and(|v| v["type"] == "error");
    if is_anthropic {
        return Response::from_parts(parts, Body::from(bytes));
    }
    let message = match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(e) => e.error.message,
        Err(_) => String::from_utf8_lossy(&bytes).into_owned(),
    };
    let body = nines_protocol::anthropic::error_body(parts.status.as_u16(), &message);
    let mut response = Response::from_parts(parts, Body::from(body));
    response.headers_mut().remove(header::CONTENT_LENGTH);
    response
}

/// A panic in a handler becomes a 500 in OpenAI's shape; the process keeps serving.
pub(super) fn panic_response(_payload: Box<dyn std::any::Any + Send + 'static>) -> Response<Body> {
    tracing::error!("a request handler panicked");
    GatewayError::Internal("the gateway hit an unexpected condition".into()).into_response()
}
