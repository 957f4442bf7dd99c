//! Gemini embeddings: `:embedContent` and `:batchEmbedContents`, with the same deterministic
//! vectors as the OpenAI dialect (default 8 dimensions).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::effects;
use crate::gemini::{self, Call};
use crate::text::{self, DEFAULT_DIMENSIONS, MAX_DIMENSIONS};

/// The input limit the dialect claims when `context_too_long` is faulted.
const CONTEXT_LIMIT: u64 = 2048;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EmbedRequest {
    content: Value,
    #[serde(default, alias = "output_dimensionality")]
    output_dimensionality: Option<usize>,
}

#[derive(Debug, Deserialize)]
struct BatchRequest {
    requests: Vec<EmbedRequest>,
}

/// `:embedContent` (one vector) or, with `batch`, `:batchEmbedContents` (one per request).
pub(crate) async fn embed(call: Call, batch: bool) -> Response {
    let fault = match effects::gate(&call.state, &call.headers, gemini::ERROR_SHAPE, false).await {
        Ok(fault) => fault.unwrap_or_default(),
        Err(response) => return response,
    };
    if let Some(response) = call.unauthorized() {
        return response;
    }
    let requests = if batch {
        serde_json::from_slice::<BatchRequest>(&call.body).map(|b| b.requests)
    } else {
        serde_json::from_slice::<EmbedRequest>(&call.body).map(|one| vec![one])
    };
    let requests = match requests {
        Ok(requests) if !requests.is_empty() => requests,
        Ok(_) => return invalid("* BatchEmbedContentsRequest.requests: requests is empty"),
        Err(e) => return invalid(&format!("Invalid JSON payload received. {e}")),
    };
    let mut embeddings = Vec::with_capacity(requests.len());
    let mut tokens = 0;
    for req in &requests {
        let dimensions = req.output_dimensionality.unwrap_or(DEFAULT_DIMENSIONS);
        if !(1..=MAX_DIMENSIONS).contains(&dimensions) {
            return invalid(&format!(
                "* EmbedContentRequest.output_dimensionality: must be between 1 and \
                 {MAX_DIMENSIONS}"
            ));
        }
        let input = gemini::parts_text(&req.content);
        tokens += text::estimate_tokens(&input);
        embeddings.push(json!({"values": text::embedding(&input, dimensions)}));
    }
    if fault.context_too_long {
        return gemini::context_too_long(tokens, CONTEXT_LIMIT);
    }
    let body = if batch {
        json!({"embeddings": embeddings})
    } else {
        json!({"embedding": embeddings.swap_remove(0)})
    };
    Json(body).into_response()
}

fn invalid(message: &str) -> Response {
    gemini::error(StatusCode::BAD_REQUEST, message)
}
