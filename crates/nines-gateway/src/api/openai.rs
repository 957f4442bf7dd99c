//! OpenAI-dialect handlers: `/v1/chat/completions`, `/v1/embeddings`, `/v1/models`.

use crate::error::GatewayError;
use crate::pipeline::{self, Delivery, DeliveryBody, RequestMeta};
use crate::state::AppState;
use crate::telemetry::RequestLog;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

pub(super) async fn chat_completions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let meta = request_meta(&state, &headers);
    let log = RequestLog::start(&state.telemetry, &meta, "chat_completions");
    let result = match read_body(&state, body).await {
        Ok(bytes) => pipeline::chat(&state, &meta, bytes, log).await,
        Err(e) => Err(log.reject(e)),
    };
    render(result)
}

pub(super) async fn embeddings(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let meta = request_meta(&state, &headers);
    let log = RequestLog::start(&state.telemetry, &meta, "embeddings");
    let result = match read_body(&state, body).await {
        Ok(bytes) => pipeline::embeddings(&state, &meta, bytes, log).await,
        Err(e) => Err(log.reject(e)),
    };
    render(result)
}

pub(super) async fn list_models(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Response {
    let runtime = state.runtime();
    let identity = match state
        .access
        .authorize(&runtime.config.access, &headers)
        .await
    {
        Ok(identity) => identity,
        Err(e) => return e.into_response(),
    };
    let data: Vec<_> = runtime
        .table
        .names()
        .iter()
        .filter(|name| identity.allows(name))
        .map(|name| model_object(name, runtime.created))
        .collect();
    Json(json!({"object": "list", "data": data})).into_response()
}

pub(super) async fn get_model(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let runtime = state.runtime();
    if let Err(e) = state
        .access
        .authorize(&runtime.config.access, &headers)
        .await
    {
        return e.into_response();
    }
    match runtime.table.resolve(&id) {
        Some(route) => Json(model_object(&route.name, runtime.created)).into_response(),
        None => GatewayError::ModelNotFound(id).into_response(),
    }
}

fn model_object(name: &str, created: u64) -> serde_json::Value {
    json!({"id": name, "object": "model", "created": created, "owned_by": "nines"})
}

/// The request id set by the request-id layer (the client's own when it sent one), and a
/// client-requested timeout: `x-nines-timeout` (`"10s"`, `"1500ms"` or plain seconds) or else
/// the OpenAI/Anthropic SDKs' `x-stainless-timeout` (seconds), since the client gives up then.
pub(super) fn request_meta(state: &AppState, headers: &HeaderMap) -> RequestMeta {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let seconds = |v: &str| {
        v.parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(Duration::from_secs_f64)
    };
    let timeout = text("x-nines-timeout")
        .and_then(|v| seconds(v).or_else(|| humantime::parse_duration(v).ok()))
        .or_else(|| text("x-stainless-timeout").and_then(seconds));
    RequestMeta {
        id: text("x-request-id").unwrap_or_default().to_owned(),
        timeout,
        credential: crate::auth::credential(headers),
        session: text(&state.runtime().config.telemetry.sessions.header)
            .filter(|s| !s.is_empty())
            // Bounded: the value becomes a map key.
            .map(|s| s.chars().take(128).collect()),
        traceparent: text("traceparent").map(str::to_owned),
    }
}

/// Reads the whole body up to the configured limit.
pub(super) async fn read_body(state: &AppState, body: Body) -> Result<Bytes, GatewayError> {
    let limit = state.runtime().config.server.max_body_bytes;
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(GatewayError::BodyTooLarge { limit })
        }
        Err(e) => Err(GatewayError::BodyRead(e.to_string())),
    }
}

fn render(result: Result<Delivery, GatewayError>) -> Response {
    match result {
        Ok(delivery) => delivery_response(delivery),
        Err(e) => e.into_response(),
    }
}

pub(super) fn delivery_response(d: Delivery) -> Response {
    let streaming = matches!(d.body, DeliveryBody::Stream { .. });
    let body = match d.body {
        DeliveryBody::Full(bytes) => Body::from(bytes),
        DeliveryBody::Stream { body, .. } => Body::from_stream(body),
    };
    let mut response = (d.status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, d.content_type);
    if streaming {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    }
    if let Ok(v) = HeaderValue::from_str(&d.served_by) {
        headers.insert("x-nines-deployment", v);
    }
    headers.insert("x-nines-attempts", HeaderValue::from(d.attempts));
    headers.extend(d.headers);
    response
}
