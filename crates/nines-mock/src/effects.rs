//! Applying a fault to one request: which script applies, and what happens before the normal
//! response would be produced (hang, delay, error status, abort).
//!
//! Stream breakages (stalls, resets, malformed or error events) happen inside the body and live
//! in `sse.rs`; the effects that change the answer itself (`content_filter`, `context_too_long`,
//! `prediction_status`) are the dialect handlers' business.

use std::io;

use axum::Json;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::FaultScript;
use crate::state::MockState;

/// Per-request fault header; it wins over the server's script.
pub(crate) const FAULT_HEADER: &str = "x-mock-fault";

/// How the route's wire format shapes the errors this module sends. Each dialect module
/// declares its own `ERROR_SHAPE` and passes it in (as with `sse::Style`), so the fault code
/// answers in every format without depending on the dialects that depend on it.
#[derive(Clone, Copy)]
pub(crate) struct ErrorShape {
    /// The error body a fault with this status sends.
    pub(crate) fault_body: fn(u16) -> Value,
    /// A 400 for a request the mock cannot understand (here: a malformed fault header).
    pub(crate) invalid_request: fn(&str) -> Response,
}

/// The fault for this request: the header's script if present (always applied: its gates are
/// ignored, since one request has no history), else the server's script if its gates admit the
/// request. A malformed header is the client's mistake: the message is for a 400.
pub(crate) fn fault_for(
    state: &MockState,
    headers: &HeaderMap,
) -> Result<Option<FaultScript>, String> {
    match header_fault(headers)? {
        Some(script) => Ok(Some(script)),
        None => Ok(state.scripted_fault().map(|a| a.script.clone())),
    }
}

/// The fault in this request's `x-mock-fault` header only, never the server's script: for
/// follow-up requests (polls, job streams) whose job already drew its fault when created.
pub(crate) fn header_fault(headers: &HeaderMap) -> Result<Option<FaultScript>, String> {
    let Some(raw) = headers.get(FAULT_HEADER) else {
        return Ok(None);
    };
    let script = raw
        .to_str()
        .map_err(|e| e.to_string())
        .and_then(|s| serde_json::from_str::<FaultScript>(s).map_err(|e| e.to_string()))
        .and_then(|s| s.validate().map(|()| s).map_err(|e| e.to_string()))
        .map_err(|e| format!("invalid {FAULT_HEADER} header: {e}"))?;
    Ok(Some(script))
}

/// The fault for this request with its pre-response effects applied: `Err` is the response to
/// send instead of the normal one (an effect, or a 400 for a malformed fault header).
pub(crate) async fn gate(
    state: &MockState,
    headers: &HeaderMap,
    shape: ErrorShape,
    streaming: bool,
) -> Result<Option<FaultScript>, Response> {
    let fault = fault_for(state, headers).map_err(|m| (shape.invalid_request)(&m))?;
    apply(state, fault, shape, streaming).await
}

/// [`gate`] for the model list and model lookups: a server script with `spare_models` leaves
/// them alone (and is not drawn from); a header's script applies as everywhere.
pub(crate) async fn gate_model_lookup(
    state: &MockState,
    headers: &HeaderMap,
    shape: ErrorShape,
) -> Result<Option<FaultScript>, Response> {
    if header_fault(headers).ok().flatten().is_none()
        && state.fault().is_some_and(|f| f.spare_models)
    {
        return Ok(None);
    }
    gate(state, headers, shape, false).await
}

/// [`gate`] for follow-up requests: only the `x-mock-fault` header applies.
pub(crate) async fn gate_header(
    state: &MockState,
    headers: &HeaderMap,
    shape: ErrorShape,
    streaming: bool,
) -> Result<Option<FaultScript>, Response> {
    let fault = header_fault(headers).map_err(|m| (shape.invalid_request)(&m))?;
    apply(state, fault, shape, streaming).await
}

async fn apply(
    state: &MockState,
    fault: Option<FaultScript>,
    shape: ErrorShape,
    streaming: bool,
) -> Result<Option<FaultScript>, Response> {
    if let Some(fault) = &fault
        && let Some(response) = before_response(state, fault, shape, streaming).await
    {
        return Err(response);
    }
    Ok(fault)
}

/// Apply the effects that come before a response: hang, head delay, error status or raw
/// body, and (for non-streaming responses) an abort. `Some` replaces the normal response.
pub(crate) async fn before_response(
    state: &MockState,
    fault: &FaultScript,
    shape: ErrorShape,
    streaming: bool,
) -> Option<Response> {
    if fault.hang {
        tracing::debug!("mock fault: hanging request");
        state.shutting_down().await;
        return Some(aborted());
    }
    let delay = fault.head_delay();
    if !delay.is_zero() && !state.sleep(delay).await {
        return Some(aborted());
    }
    if fault.body.is_some() || fault.effective_status().is_some() {
        return Some(error_response(fault, shape));
    }
    if !streaming && fault.reset_after_chunks.is_some() {
        return Some(aborted());
    }
    None
}

/// The fault's status (or raw body) with its retry hints.
fn error_response(fault: &FaultScript, shape: ErrorShape) -> Response {
    let code = match (fault.status, &fault.body) {
        (Some(status), _) => status,
        // A raw body alone is a "successful" response with garbage in it.
        (None, Some(_)) => 200,
        (None, None) => fault.effective_status().unwrap_or(503),
    };
    tracing::debug!(status = code, "mock fault: error response");
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = match &fault.body {
        Some(raw) => (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            raw.clone(),
        )
            .into_response(),
        None => (status, Json((shape.fault_body)(code))).into_response(),
    };
    let headers = response.headers_mut();
    if let Some(v) = fault
        .retry_after
        .as_deref()
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        headers.insert(header::RETRY_AFTER, v);
    }
    if let Some(ms) = fault.retry_after_ms {
        headers.insert("retry-after-ms", HeaderValue::from(ms));
    }
    response
}

/// A response whose body fails at once, so hyper drops the connection without a usable body.
fn aborted() -> Response {
    let stream = futures_util::stream::once(async {
        Err::<bytes::Bytes, _>(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "mock fault: abort",
        ))
    });
    Body::from_stream(stream).into_response()
}
