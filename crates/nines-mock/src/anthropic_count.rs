//! Anthropic's `POST /v1/messages/count_tokens`: the prompt's tokens as the Messages route
//! would count them, `{"input_tokens": N}`.
//!
//! Checked as the API checks it: the key and version headers, `model` and `messages` required,
//! and only the fields a count takes (no `max_tokens`, no `stream`: "Extra inputs are not
//! permitted").

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::anthropic::{
    ERROR_SHAPE, check_messages, extra_field, input_tokens, invalid_request, missing_credentials,
};
use crate::effects;
use crate::state::MockState;

/// The fields a count request may have.
const FIELDS: [&str; 7] = [
    "model",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "thinking",
    "mcp_servers",
];

#[derive(Deserialize)]
struct CountRequest {
    model: String,
    messages: Vec<Value>,
    #[serde(default)]
    system: Option<Value>,
}

pub(crate) async fn count_tokens(
    State(state): State<MockState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(response) = effects::gate(&state, &headers, ERROR_SHAPE, false).await {
        return response;
    }
    if let Some(refusal) = missing_credentials(&headers) {
        return refusal;
    }
    if let Some(refusal) = extra_field(&body, &FIELDS) {
        return invalid_request(&refusal);
    }
    let request = match serde_json::from_slice::<CountRequest>(&body) {
        Ok(request) if !request.model.is_empty() => request,
        Ok(_) => return invalid_request("model: String should have at least 1 character"),
        Err(e) => return invalid_request(&format!("invalid request body: {e}")),
    };
    if let Err(message) = check_messages(&request.messages) {
        return invalid_request(&message);
    }
    let tokens = input_tokens(request.system.as_ref(), &request.messages);
    Json(json!({ "input_tokens": tokens })).into_response()
}
