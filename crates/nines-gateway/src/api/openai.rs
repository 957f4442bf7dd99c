//! OpenAI-dialect handlers: `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`,
//! `/v1/models`.

use crate::pipeline::{self, Delivery, DeliveryBody, Ingress};
use crate::request::{GatewayError, Request};
use crate::state::AppState;
use crate::telemetry::metrics::ConnectionEnd;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::json;
use std::sync::Arc;

pub(super) async fn chat_completions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    render(proxy(&state, &headers, body, Ingress::ChatCompletions).await)
}

/// Legacy text completions: served by OpenAI-family deployments only, bytes through, with the
/// same failover, limits and usage as chat.
pub(super) async fn completions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    render(proxy(&state, &headers, body, Ingress::Completions).await)
}

pub(super) async fn embeddings(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    render(proxy(&state, &headers, body, Ingress::Embeddings).await)
}

/// The proxied endpoints' one path: the request's context (its runtime loaded once, here), its
/// body read within that runtime's limit, the pipeline.
pub(super) async fn proxy(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    body: Body,
    ingress: Ingress,
) -> Result<Delivery, GatewayError> {
    let cx = Request::start(state, headers, ingress.label());
    let body = read_body(&cx, body).await;
    pipeline::handle(cx, body, ingress).await
}

pub(super) async fn list_models(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Response {
    let runtime = state.runtime();
    let identity = match identity(&state, &runtime, &headers).await {
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

/// One model, if the key may use it: a model outside its allowance is the same 404 as one that
/// does not exist (its existence is not the key's business).
pub(super) async fn get_model(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let runtime = state.runtime();
    let identity = match identity(&state, &runtime, &headers).await {
        Ok(identity) => identity,
        Err(e) => return e.into_response(),
    };
    match runtime.table.resolve(&id) {
        Some(route) if identity.allows(&route.name) => {
            Json(model_object(&route.name, runtime.created)).into_response()
        }
        _ => GatewayError::ModelNotFound(id).into_response(),
    }
}

/// The caller's identity for the model listings (auth alone: listing costs nothing).
async fn identity(
    state: &AppState,
    runtime: &crate::state::Runtime,
    headers: &HeaderMap,
) -> Result<Arc<crate::auth::Identity>, crate::access::AccessError> {
    let credential = crate::auth::credential(headers);
    state
        .access
        .authorize(
            &runtime.config.access,
            &runtime.static_keys,
            credential.as_ref(),
        )
        .await
}

fn model_object(name: &str, created: u64) -> serde_json::Value {
    json!({"id": name, "object": "model", "created": created, "owned_by": "nines"})
}

/// Reads the whole body, up to the request's runtime's `server.max_body_bytes` (a declared
/// `Content-Length` over it is refused before a byte is read) and within its
/// `server.body_read_timeout` (408 after it). A body still arriving when the listener closes
/// for shutdown is refused (503) rather than let hold the shutdown.
pub(super) async fn read_body(cx: &Request, body: Body) -> Result<Bytes, GatewayError> {
    let server = &cx.runtime.config.server;
    let limit = server.max_body_bytes;
    if hyper::body::Body::size_hint(&body).lower() > limit as u64 {
        return Err(GatewayError::BodyTooLarge { limit });
    }
    let closing = cx.state.lifecycle.closing();
    let timeout = server.connections.body_read_timeout;
    // The read first: a body that has already arrived is read even when the listener has
    // just closed; only one still on its way is refused.
    let read = tokio::select! {
        biased;
        read = Limited::new(body, limit).collect() => read,
        () = closing.cancelled() => return Err(GatewayError::ShuttingDown),
        () = tokio::time::sleep(timeout) => {
            if let Some(metrics) = &cx.state.telemetry.metrics {
                metrics.connections().ended(ConnectionEnd::BodyTimeout);
            }
            return Err(GatewayError::BodyTimeout(timeout));
        }
    };
    match read {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(GatewayError::BodyTooLarge { limit })
        }
        Err(e) => Err(GatewayError::BodyRead(e.to_string())),
    }
}

pub(super) fn render(result: Result<Delivery, GatewayError>) -> Response {
    match result {
        Ok(delivery) => delivery_response(delivery),
        Err(e) => e.into_response(),
    }
}

pub(super) fn delivery_response(d: Delivery) -> Response {
    let streaming = matches!(d.body, DeliveryBody::Stream(_));
    let body = match d.body {
        DeliveryBody::Full(bytes) => Body::from(bytes),
        DeliveryBody::Stream(stream) => Body::from_stream(stream),
    };
    let mut response = (d.status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, d.content_type);
    if streaming {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    }
    // Empty when the gateway answered itself (a local token count).
    if let Ok(v) = HeaderValue::from_str(&d.served_by)
        && !d.served_by.is_empty()
    {
        headers.insert("x-nines-deployment", v);
    }
    headers.insert("x-nines-attempts", HeaderValue::from(d.attempts));
    headers.extend(d.headers);
    response
}
