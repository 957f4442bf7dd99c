//! Anthropic-dialect ingress: `POST /v1/messages` and `POST /v1/messages/count_tokens`, so the
//! Anthropic SDK (and Claude Code) works against nines unchanged and can be served by any
//! provider. Errors come back in Anthropic's shape.

use super::openai::{delivery_response, proxy};
use crate::pipeline::Ingress;
use crate::state::AppState;
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
    anthropic(&state, &headers, body, Ingress::Messages).await
}

/// Forwarded to the model's Anthropic deployments; counted by the gateway (and marked as an
/// estimate) when it has none, or none answered.
pub(super) async fn count_tokens(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    anthropic(&state, &headers, body, Ingress::CountTokens).await
}

async fn anthropic(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    body: Body,
    ingress: Ingress,
) -> Response {
    match proxy(state, headers, body, ingress).await {
        Ok(delivery) => delivery_response(delivery),
        Err(e) => super::error::anthropic_shaped(e.into_response()).await,
    }
}
