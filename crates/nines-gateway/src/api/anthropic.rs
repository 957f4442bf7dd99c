//! Anthropic-dialect ingress: `POST /v1/messages`, so the Anthropic SDK works against nines
//! unchanged and can be served by any provider. Errors come back in Anthropic's shape.

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
    match proxy(&state, &headers, body, Ingress::Messages).await {
        Ok(delivery) => delivery_response(delivery),
        Err(e) => super::error::anthropic_shaped(e.into_response()).await,
    }
}
