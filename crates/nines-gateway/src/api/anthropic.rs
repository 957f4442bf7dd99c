//! Anthropic-dialect ingress: `POST /v1/messages`, so the Anthropic SDK works against nines
//! unchanged and can be served by any provider. Errors come back in Anthropic's shape.

use super::openai::{delivery_response, read_body, request_meta};
use crate::pipeline;
use crate::state::AppState;
use crate::telemetry::RequestLog;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use std::sync::Arc;

pub(super) async fn messages(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let meta = request_meta(&state, &headers);
    let log = RequestLog::start(&state.telemetry, &meta, "messages");
    let result = match read_body(&state, body).await {
        Ok(bytes) => pipeline::messages(&state, &meta, bytes, log).await,
        Err(e) => Err(log.reject(e)),
    };
    match result {
        Ok(delivery) => delivery_response(delivery),
        Err(e) => super::error::anthropic_shaped(e.into_response()).await,
    }
}
