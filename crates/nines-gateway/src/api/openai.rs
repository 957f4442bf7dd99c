//! OpenAI-dialect handlers: `/v1/chat/completions`, `/v1/embeddings`, `/v1/models`.

use crate::pipeline::{self, Delivery, DeliveryBody, Ingress};
use crate::request::{GatewayError, Request};
use crate::state::AppState;
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
    let credential = crate::auth::credential(&headers);
    let identity = match state
        .access
        .authorize(
            &runtime.config.access,
            &runtime.static_keys,
            credential.as_ref(),
        )
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
    let credential = crate::auth::credential(&headers);
    if let Err(e) = state
        .access
        .authorize(
            &runtime.config.access,
            &runtime.static_keys,
            credential.as_ref(),
        )
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

/// Reads the whole body, up to the request's runtime's `server.max_body_bytes`. A body still
/// arriving when the listener closes for shutdown is refused (503) rather than let hold the
/// shutdown.
pub(super) async fn read_body(cx: &Request, body: Body) -> Result<Bytes, GatewayError> {
    let limit = cx.runtime.config.server.max_body_bytes;
    let closing = cx.state.lifecycle.closing();
    // The read first: a body that has already arrived is read even when the listener has
    // just closed; only one still on its way is refused.
    let read = tokio::select! {
        biased;
        read = Limited::new(body, limit).collect() => read,
        () = closing.cancelled() => return Err(GatewayError::ShuttingDown),
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
    if let Ok(v) = HeaderValue::from_str(&d.served_by) {
        headers.insert("x-nines-deployment", v);
    }
    headers.insert("x-nines-attempts", HeaderValue::from(d.attempts));
    headers.extend(d.headers);
    response
}
