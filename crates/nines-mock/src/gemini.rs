//! The Gemini dialect: `generateContent` and `streamGenerateContent` (SSE with `alt=sse`, else
//! one JSON array) on `POST /v1beta/models/{model}:{action}`, the model lookup, and what every
//! Gemini action shares ([`Call`], Google's error envelope `{"error":{"code","message","status"}}`).
//! The embedding actions are in `gemini_embed.rs`; `gemini_route.rs` picks the action.
//!
//! Content rules are the OpenAI dialect's: the same reply words, `ceil(chars/4) + 3` prompt
//! tokens per content (the system instruction counts as one), one token per word.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth;
use crate::effects::{self, ErrorShape};
use crate::sse::{self, Event, Style};
use crate::state::MockState;
use crate::text::{self, Ending, TOOL_ARGUMENTS};

/// The context the dialect claims when `context_too_long` is faulted.
const CONTEXT_LIMIT: u64 = 1_048_576;
/// Most candidates one request may ask for.
const MAX_CANDIDATES: u32 = 8;

const STYLE: Style = Style {
    error: "data: {\"error\":{\"code\":503,\"message\":\"The model is overloaded. Please try again later.\",\"status\":\"UNAVAILABLE\"}}\n\n",
    malformed: sse::NOT_JSON,
};

pub(crate) const ERROR_SHAPE: ErrorShape = ErrorShape {
    fault_body,
    invalid_request: |message| error(StatusCode::BAD_REQUEST, message),
};

/// `GET /v1beta/models/{model}`: the model's metadata (what a health probe asks for). Faults
/// and the key check apply as on the other routes.
pub(crate) async fn get_model(
    State(state): State<MockState>,
    Path(model): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if model.contains(':') {
        return error(
            StatusCode::NOT_FOUND,
            &format!("unknown route models/{model}"),
        );
    }
    if let Err(response) = effects::gate_model_lookup(&state, &headers, ERROR_SHAPE).await {
        return response;
    }
    let call = Call {
        state,
        headers,
        query,
        model,
        body: Bytes::new(),
    };
    if let Some(response) = call.unauthorized() {
        return response;
    }
    Json(json!({
        "name": format!("models/{}", call.model),
        "version": "001",
        "displayName": call.model,
        "description": "nines-mock model",
        "inputTokenLimit": CONTEXT_LIMIT,
        "outputTokenLimit": 8192,
        "supportedGenerationMethods": ["generateContent", "countTokens"],
    }))
    .into_response()
}

/// One request to a Gemini action.
pub(crate) struct Call {
    pub(crate) state: MockState,
    pub(crate) headers: HeaderMap,
    pub(crate) query: HashMap<String, String>,
    pub(crate) model: String,
    pub(crate) body: Bytes,
}

impl Call {
    /// The API key check (`x-goog-api-key` or `?key=`, or an OAuth bearer token): the
    /// rejection, if any.
    pub(crate) fn unauthorized(&self) -> Option<Response> {
        let key = auth::header(&self.headers, "x-goog-api-key")
            .or_else(|| self.query.get("key").map(String::as_str));
        match key {
            Some(key) if !key.trim().is_empty() => None,
            Some(_) => Some(error(
                StatusCode::BAD_REQUEST,
                "API key not valid. Please pass a valid API key.",
            )),
            None if auth::bearer(&self.headers).is_some() => None,
            None if self.headers.contains_key("authorization") => Some(error(
                StatusCode::UNAUTHORIZED,
                "Request had invalid authentication credentials.",
            )),
            None => Some(error(
                StatusCode::FORBIDDEN,
                "Method doesn't allow unregistered callers (callers without established \
                 identity). Please use API Key or other form of API consumer identity to call \
                 this API.",
            )),
        }
    }
}

/// How `generate` answers.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `generateContent`: one response object.
    Unary,
    /// `streamGenerateContent?alt=sse`: one SSE `data:` event per chunk.
    Sse,
    /// `streamGenerateContent` without `alt=sse`: the chunks as one JSON array.
    JsonArray,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerateRequest {
    #[serde(default)]
    contents: Vec<Value>,
    #[serde(default, alias = "system_instruction")]
    system_instruction: Option<Value>,
    #[serde(default)]
    tools: Option<Vec<Value>>,
    #[serde(default, alias = "tool_config")]
    tool_config: Option<Value>,
    #[serde(default, alias = "generation_config")]
    generation_config: Option<GenerationConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerationConfig {
    #[serde(default, alias = "max_output_tokens")]
    max_output_tokens: Option<u64>,
    #[serde(default, alias = "stop_sequences")]
    stop_sequences: Option<Vec<String>>,
    #[serde(default, alias = "candidate_count")]
    candidate_count: Option<u32>,
    #[serde(default, alias = "response_mime_type")]
    response_mime_type: Option<String>,
}

pub(crate) async fn generate(call: Call, mode: Mode) -> Response {
    let streaming = mode == Mode::Sse;
    let fault = match effects::gate(&call.state, &call.headers, ERROR_SHAPE, streaming).await {
        Ok(fault) => fault.unwrap_or_default(),
        Err(response) => return response,
    };
    if let Some(response) = call.unauthorized() {
        return response;
    }
    let answer = match serde_json::from_slice::<GenerateRequest>(&call.body)
        .map_err(|e| format!("Invalid JSON payload received. {e}"))
        .and_then(|req| Answer::plan(&call, req, fault.content_filter))
    {
        Ok(answer) => answer,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    if fault.context_too_long {
        return context_too_long(answer.prompt_tokens, CONTEXT_LIMIT);
    }
    match mode {
        Mode::Unary => Json(answer.body()).into_response(),
        Mode::JsonArray => Json(answer.chunks(true)).into_response(),
        Mode::Sse => {
            let events = answer
                .chunks(!fault.no_done)
                .into_iter()
                .map(|chunk| Event::data(chunk.to_string()))
                .collect();
            sse::events_response(call.state, events, STYLE, Some(fault))
        }
    }
}

/// What every candidate says.
enum Reply {
    Text { words: Vec<String>, ending: Ending },
    Json(String),
    Call { name: String },
    Blocked,
}

/// One planned answer, rendered whole or as stream chunks.
struct Answer {
    id: String,
    model: String,
    candidates: u32,
    reply: Reply,
    prompt_tokens: u64,
}

impl Answer {
    fn plan(call: &Call, req: GenerateRequest, blocked: bool) -> Result<Self, String> {
        if req.contents.is_empty() {
            return Err("* GenerateContentRequest.contents: contents is not specified".into());
        }
        for content in &req.contents {
            let role = content.get("role").and_then(Value::as_str);
            if !matches!(role, None | Some("user" | "model" | "function")) {
                return Err(format!(
                    "Please use a valid role: user, model. Got '{}'.",
                    role.unwrap_or_default()
                ));
            }
        }
        let config = req.generation_config.as_ref();
        let candidates = config.and_then(|c| c.candidate_count).unwrap_or(1);
        if !(1..=MAX_CANDIDATES).contains(&candidates) {
            return Err(format!(
                "* GenerateContentRequest.generation_config.candidate_count: must be between 1 \
                 and {MAX_CANDIDATES}"
            ));
        }
        let reply = if blocked {
            Reply::Blocked
        } else if let Some(name) = function_to_call(&req) {
            Reply::Call { name }
        } else if config
            .and_then(|c| c.response_mime_type.as_deref())
            .is_some_and(|m| m == "application/json")
        {
            Reply::Json(json!({"mock": true, "from": call.state.name()}).to_string())
        } else {
            let last_user = req
                .contents
                .iter()
                .rev()
                .find(|c| matches!(c.get("role").and_then(Value::as_str), None | Some("user")));
            let words = text::reply_words(
                call.state.name(),
                &last_user.map(parts_text).unwrap_or_default(),
            );
            let stops = config
                .and_then(|c| c.stop_sequences.as_deref())
                .unwrap_or_default();
            let max = config.and_then(|c| c.max_output_tokens);
            let (words, ending) = text::end_reply(words, stops, max);
            Reply::Text { words, ending }
        };
        let prompt_tokens = req
            .system_instruction
            .iter()
            .chain(&req.contents)
            .map(|c| text::estimate_tokens(&parts_text(c)) + 3)
            .sum();
        Ok(Self {
            id: format!("mock-{}", call.state.next_completion_id()),
            model: call.model.clone(),
            candidates,
            reply,
            prompt_tokens,
        })
    }

    fn finish_reason(&self) -> &'static str {
        match &self.reply {
            Reply::Text {
                ending: Ending::Length,
                ..
            } => "MAX_TOKENS",
            Reply::Blocked => "SAFETY",
            _ => "STOP",
        }
    }

    fn usage(&self) -> Value {
        let per_candidate = match &self.reply {
            Reply::Text { words, .. } => words.len() as u64,
            Reply::Json(content) => text::estimate_tokens(content),
            Reply::Call { .. } => text::estimate_tokens(TOOL_ARGUMENTS),
            Reply::Blocked => 0,
        };
        let produced = per_candidate * u64::from(self.candidates);
        let mut usage = json!({
            "promptTokenCount": self.prompt_tokens,
            "totalTokenCount": self.prompt_tokens + produced,
        });
        // Like the real API, zero counts are left out.
        if produced > 0 {
            usage["candidatesTokenCount"] = produced.into();
        }
        usage
    }

    /// A response object whose candidates all carry `parts` (none: no `content`), finished
    /// when `finished`.
    fn response(&self, parts: Option<Value>, finished: bool) -> Value {
        let candidates: Vec<Value> = (0..self.candidates)
            .map(|index| {
                let mut candidate = json!({"index": index});
                if let Some(parts) = &parts {
                    candidate["content"] = json!({"role": "model", "parts": parts});
                }
                if finished {
                    candidate["finishReason"] = self.finish_reason().into();
                }
                if finished && matches!(self.reply, Reply::Blocked) {
                    candidate["safetyRatings"] = json!([{
                        "category": "HARM_CATEGORY_DANGEROUS_CONTENT",
                        "probability": "HIGH",
                        "blocked": true,
                    }]);
                }
                candidate
            })
            .collect();
        let mut response = json!({
            "candidates": candidates,
            "modelVersion": self.model,
            "responseId": self.id,
        });
        if finished {
            response["usageMetadata"] = self.usage();
        }
        response
    }

    fn body(&self) -> Value {
        self.response(self.whole_parts(), true)
    }

    /// The parts of a reply that is sent in one piece.
    fn whole_parts(&self) -> Option<Value> {
        match &self.reply {
            Reply::Text { words, .. } => Some(json!([{"text": words.join(" ")}])),
            Reply::Json(content) => Some(json!([{"text": content}])),
            Reply::Call { name } => Some(json!([{
                "functionCall": {"name": name, "args": {"mock": true}},
            }])),
            Reply::Blocked => None,
        }
    }

    /// The stream chunks: one per word (a call, JSON or a block in one chunk); the last has
    /// `finishReason` and `usageMetadata`, unless not `finished` (the `no_done` fault).
    fn chunks(&self, finished: bool) -> Vec<Value> {
        let parts: Vec<Option<Value>> = match &self.reply {
            Reply::Text { words, .. } if !words.is_empty() => text::pieces(words)
                .into_iter()
                .map(|piece| Some(json!([{"text": piece}])))
                .collect(),
            _ => vec![self.whole_parts()],
        };
        let last = parts.len() - 1;
        parts
            .into_iter()
            .enumerate()
            .map(|(i, parts)| self.response(parts, finished && i == last))
            .collect()
    }
}

/// The text parts of a Gemini content, joined by spaces.
pub(crate) fn parts_text(content: &Value) -> String {
    content
        .get("parts")
        .and_then(Value::as_array)
        .map(|parts| {
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// The function to call: with mode `NONE` none; with `ANY` the first allowed name (else the
/// first declaration); otherwise the first declaration, if any.
fn function_to_call(req: &GenerateRequest) -> Option<String> {
    let first = req
        .tools
        .iter()
        .flatten()
        .filter_map(|t| {
            t.get("functionDeclarations")
                .or_else(|| t.get("function_declarations"))
                .and_then(Value::as_array)
        })
        .flatten()
        .find_map(|d| d.get("name").and_then(Value::as_str))?;
    let config = req.tool_config.as_ref().and_then(|c| {
        c.get("functionCallingConfig")
            .or_else(|| c.get("function_calling_config"))
    });
    let mode = config.and_then(|c| c.get("mode")).and_then(Value::as_str);
    let allowed = config
        .and_then(|c| {
            c.get("allowedFunctionNames")
                .or_else(|| c.get("allowed_function_names"))
        })
        .and_then(|names| names.get(0))
        .and_then(Value::as_str);
    match mode {
        Some("NONE") => None,
        Some("ANY") => Some(allowed.unwrap_or(first).to_owned()),
        _ => Some(first.to_owned()),
    }
}

/// The 400 for a prompt over `limit`; the claimed count is the limit plus the prompt's estimate.
pub(crate) fn context_too_long(prompt_tokens: u64, limit: u64) -> Response {
    let tokens = limit + prompt_tokens;
    error(
        StatusCode::BAD_REQUEST,
        &format!(
            "The input token count ({tokens}) exceeds the maximum number of tokens allowed \
             ({limit})."
        ),
    )
}

/// A Google error response; the `status` name follows the HTTP status.
pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(error_body(status.as_u16(), message))).into_response()
}

fn error_body(code: u16, message: &str) -> Value {
    let status = match code {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "NOT_IMPLEMENTED",
        503 | 529 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        500..=599 => "INTERNAL",
        _ => "FAILED_PRECONDITION",
    };
    json!({"error": {"code": code, "message": message, "status": status}})
}

/// The error body a fault with `status` sends.
fn fault_body(status: u16) -> Value {
    let message = match status {
        429 => "Resource has been exhausted (e.g. check quota).".to_owned(),
        503 | 529 => "The model is overloaded. Please try again later.".to_owned(),
        500 => "An internal error has occurred. Please retry or report in \
                https://developers.generativeai.google/guide/troubleshooting"
            .to_owned(),
        _ => format!("mock fault: status {status}"),
    };
    error_body(status, &message)
}
