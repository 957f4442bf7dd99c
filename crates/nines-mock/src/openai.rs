//! The OpenAI-dialect handlers: chat completions, embeddings, models.
//!
//! Each handler reads the raw body itself (rather than through `Json<T>`) so that malformed
//! JSON gets an OpenAI-shaped 400 and so that faults apply even to requests that would fail
//! validation, as they would at a provider that is down.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::chat::{CREATED, ChatRequest, Completion};
use crate::effects::{self, ErrorShape};
use crate::state::MockState;
use crate::text::{DEFAULT_DIMENSIONS, MAX_DIMENSIONS};
use crate::{error, sse, text};

/// The largest context the OpenAI dialect claims when `context_too_long` is faulted.
const OPENAI_CONTEXT: u64 = 8192;

pub(crate) const ERROR_SHAPE: ErrorShape = ErrorShape {
    fault_body,
    invalid_request: |message| error::invalid_request(message),
};

pub(crate) async fn chat_completions(
    State(state): State<MockState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed = serde_json::from_slice::<ChatRequest>(&body);
    let streaming = parsed.as_ref().is_ok_and(ChatRequest::stream);
    let fault = match effects::gate(&state, &headers, ERROR_SHAPE, streaming).await {
        Ok(fault) => fault,
        Err(response) => return response,
    };
    let filtered = fault.as_ref().is_some_and(|f| f.content_filter);
    let completion = match parsed
        .map_err(|e| format!("invalid chat completion request: {e}"))
        .and_then(|req| Completion::plan(&state, req, filtered))
    {
        Ok(completion) => completion,
        Err(message) => return error::invalid_request(message),
    };
    if fault.as_ref().is_some_and(|f| f.context_too_long) {
        return context_length_exceeded(completion.prompt_tokens(), "messages");
    }
    if streaming {
        sse::response(state, completion.chunks(), fault)
    } else {
        Json(completion.body()).into_response()
    }
}

#[derive(Debug, Deserialize)]
struct EmbeddingsRequest {
    model: String,
    input: Value,
    #[serde(default)]
    dimensions: Option<usize>,
    #[serde(default)]
    encoding_format: Option<String>,
}

pub(crate) async fn embeddings(
    State(state): State<MockState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fault = match effects::gate(&state, &headers, ERROR_SHAPE, false).await {
        Ok(fault) => fault,
        Err(response) => return response,
    };
    let req = match serde_json::from_slice::<EmbeddingsRequest>(&body) {
        Ok(req) => req,
        Err(e) => return error::invalid_request(format!("invalid embeddings request: {e}")),
    };
    let inputs = match embedding_inputs(&req.input) {
        Ok(inputs) => inputs,
        Err(message) => return error::invalid_request(message),
    };
    let dimensions = req.dimensions.unwrap_or(DEFAULT_DIMENSIONS);
    if !(1..=MAX_DIMENSIONS).contains(&dimensions) {
        return error::invalid_request(format!(
            "'dimensions' must be between 1 and {MAX_DIMENSIONS}"
        ));
    }
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return error::invalid_request(format!("unsupported encoding_format '{other}'"));
        }
    };
    let tokens: u64 = inputs.iter().map(|(_, tokens)| tokens).sum();
    if fault.as_ref().is_some_and(|f| f.context_too_long) {
        return context_length_exceeded(tokens, "input");
    }
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, (input, _))| {
            let vector = text::embedding(input, dimensions);
            let embedding = if base64 {
                Value::from(text::base64_f32le(&vector))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    Json(json!({
        "object": "list",
        "data": data,
        "model": req.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }))
    .into_response()
}

/// Each input as text plus its token count. Token arrays (`[1,2]` or `[[1,2],[3]]`) become the
/// text of their numbers, counted one token per number.
fn embedding_inputs(input: &Value) -> Result<Vec<(String, u64)>, String> {
    let token_array = |items: &[Value]| -> Option<(String, u64)> {
        let ids: Option<Vec<String>> = items
            .iter()
            .map(|v| v.as_u64().map(|n| n.to_string()))
            .collect();
        ids.map(|ids| (ids.join(" "), ids.len() as u64))
    };
    let invalid = || "'input' must be a string, an array of strings, or token arrays".to_owned();
    match input {
        Value::String(s) => Ok(vec![(s.clone(), text::estimate_tokens(s))]),
        Value::Array(items) if items.is_empty() => Err("'input' must not be empty".into()),
        Value::Array(items) if items[0].is_number() => {
            token_array(items).map(|one| vec![one]).ok_or_else(invalid)
        }
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Some((s.clone(), text::estimate_tokens(s))),
                Value::Array(ids) => token_array(ids),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(invalid),
        _ => Err(invalid()),
    }
}

pub(crate) async fn list_models(State(state): State<MockState>, headers: HeaderMap) -> Response {
    if let Err(response) = effects::gate_model_lookup(&state, &headers, ERROR_SHAPE).await {
        return response;
    }
    let data: Vec<Value> = state.models().iter().map(|id| model_object(id)).collect();
    Json(json!({"object": "list", "data": data})).into_response()
}

/// Any model id is answered, listed or not, since the chat route accepts any model too.
pub(crate) async fn get_model(
    State(state): State<MockState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(response) = effects::gate_model_lookup(&state, &headers, ERROR_SHAPE).await {
        return response;
    }
    Json(model_object(&id)).into_response()
}

fn model_object(id: &str) -> Value {
    json!({"id": id, "object": "model", "created": CREATED, "owned_by": "nines-mock"})
}

/// OpenAI's 400 for a prompt longer than the context. The claimed size is the limit plus the
/// request's own estimate, so it always exceeds the limit.
pub(crate) fn context_length_exceeded(prompt_tokens: u64, param: &str) -> Response {
    let tokens = OPENAI_CONTEXT + prompt_tokens;
    let message = format!(
        "This model's maximum context length is {OPENAI_CONTEXT} tokens. However, your \
         messages resulted in {tokens} tokens. Please reduce the length of the messages."
    );
    let mut body = error::body(
        &message,
        "invalid_request_error",
        Some("context_length_exceeded"),
    );
    body["error"]["param"] = param.into();
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

/// The error body a fault with `status` sends: the type and code a real provider would use for
/// that status, so the gateway's classifier sees realistic input.
fn fault_body(status: u16) -> Value {
    let generic = format!("mock fault: status {status}");
    let (message, kind, code) = match status {
        429 => (
            generic.as_str(),
            "rate_limit_exceeded",
            Some("rate_limit_exceeded"),
        ),
        503 | 529 => ("Overloaded", "overloaded_error", None),
        401 => (
            generic.as_str(),
            "authentication_error",
            Some("invalid_api_key"),
        ),
        403 => (generic.as_str(), "permission_error", None),
        404 => (generic.as_str(), "not_found_error", None),
        500..=599 => (generic.as_str(), "server_error", None),
        _ => (generic.as_str(), "invalid_request_error", None),
    };
    error::body(message, kind, code)
}
