//! The Bedrock dialect: the Converse API, `POST /model/{modelId}/converse` (one JSON answer) and
//! `/converse-stream` (AWS event-stream framed, `bedrock_frames`). Every request must carry a
//! valid SigV4 signature for service `bedrock` made with the test credentials (`sigv4`); anything
//! else is a 403 as AWS sends it.
//!
//! Content rules are the OpenAI dialect's: the same reply words, `ceil(chars/4) + 3` prompt
//! tokens per message (the system blocks count as one), one token per word, 4 for a tool call.
//! Errors are `{"message"}` with the exception's name in `x-amzn-ErrorType`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::effects::{self, ErrorShape};
use crate::sse::{self, Event, Framing, Style};
use crate::state::MockState;
use crate::text::{self, TOOL_ARGUMENTS};

const STYLE: Style = Style {
    framing: Framing::AwsEventStream {
        exception: "serviceUnavailableException",
    },
    error: r#"{"message":"The model is overloaded. Please try again later."}"#,
    malformed: sse::NOT_JSON,
};

const ERROR_SHAPE: ErrorShape = ErrorShape {
    fault_body,
    invalid_request: |message| error(StatusCode::BAD_REQUEST, "ValidationException", message),
};

/// The context the dialect claims when `context_too_long` is faulted.
const CONTEXT_LIMIT: u64 = 200_000;

pub(crate) async fn converse(
    state: State<MockState>,
    path: Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    serve(state, path, method, uri, headers, body, false).await
}

pub(crate) async fn converse_stream(
    state: State<MockState>,
    path: Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    serve(state, path, method, uri, headers, body, true).await
}

async fn serve(
    State(state): State<MockState>,
    Path(_model): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    streaming: bool,
) -> Response {
    let fault = match effects::gate(&state, &headers, ERROR_SHAPE, streaming).await {
        Ok(fault) => fault.unwrap_or_default(),
        Err(response) => return response,
    };
    if let Err((kind, message)) = crate::sigv4::verify(&method, &uri, &headers, &body, "bedrock") {
        return error(StatusCode::FORBIDDEN, kind, &message);
    }
    let answer = match serde_json::from_slice::<ConverseRequest>(&body)
        .map_err(|e| format!("Malformed input request: {e}"))
        .and_then(|req| Answer::plan(&state, req, fault.content_filter))
    {
        Ok(answer) => answer,
        Err(message) => return error(StatusCode::BAD_REQUEST, "ValidationException", &message),
    };
    if fault.context_too_long {
        return error(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            &format!(
                "Input is too long for requested model ({} tokens > {CONTEXT_LIMIT} maximum).",
                CONTEXT_LIMIT + answer.prompt_tokens
            ),
        );
    }
    let request_id = format!("mock-{}", state.next_completion_id());
    let mut response = if streaming {
        sse::events_response(state, answer.events(!fault.no_done), STYLE, Some(fault))
    } else {
        Json(answer.body()).into_response()
    };
    if let Ok(id) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-amzn-requestid", id);
    }
    response
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConverseRequest {
    messages: Vec<Value>,
    #[serde(default)]
    system: Vec<Value>,
    #[serde(default)]
    inference_config: Option<InferenceConfig>,
    #[serde(default)]
    tool_config: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct InferenceConfig {
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    stop_sequences: Vec<String>,
}

enum Reply {
    Text {
        words: Vec<String>,
        stop: &'static str,
    },
    Tool {
        name: String,
    },
    Filtered,
}

struct Answer {
    reply: Reply,
    prompt_tokens: u64,
    tool_use_id: String,
}

/// The text of a Converse message's content blocks.
fn blocks_text(blocks: Option<&Value>) -> String {
    blocks
        .and_then(Value::as_array)
        .map(|blocks| {
            blocks
                .iter()
                .filter_map(|b| b.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

impl Answer {
    fn plan(state: &MockState, req: ConverseRequest, filtered: bool) -> Result<Answer, String> {
        if req.messages.is_empty() {
            return Err("A conversation must start with a user message.".into());
        }
        for m in &req.messages {
            match m.get("role").and_then(Value::as_str) {
                Some("user" | "assistant") => {}
                _ => return Err("Each message needs a role of user or assistant.".into()),
            }
            if !m.get("content").is_some_and(Value::is_array) {
                return Err("Each message needs a content array.".into());
            }
        }
        let system_tokens = if req.system.is_empty() {
            0
        } else {
            text::estimate_tokens(&blocks_text(Some(&Value::Array(req.system.clone())))) + 3
        };
        let prompt_tokens = system_tokens
            + req
                .messages
                .iter()
                .map(|m| text::estimate_tokens(&blocks_text(m.get("content"))) + 3)
                .sum::<u64>();
        let last = req.messages.last();
        let answered_tool = last
            .and_then(|m| m.get("content"))
            .and_then(Value::as_array)
            .is_some_and(|blocks| blocks.iter().any(|b| b.get("toolResult").is_some()));
        let tool = req
            .tool_config
            .as_ref()
            .and_then(|c| c.pointer("/tools/0/toolSpec/name"))
            .and_then(Value::as_str);
        let reply = if filtered {
            Reply::Filtered
        } else if let (Some(name), false) = (tool, answered_tool) {
            Reply::Tool {
                name: name.to_owned(),
            }
        } else {
            let last_user = req
                .messages
                .iter()
                .rev()
                .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
                .map(|m| blocks_text(m.get("content")))
                .unwrap_or_default();
            let config = req.inference_config.unwrap_or_default();
            let (words, ending) = text::end_reply(
                text::reply_words(state.name(), &last_user),
                &config.stop_sequences,
                config.max_tokens,
            );
            let stop = match ending {
                text::Ending::Complete => "end_turn",
                text::Ending::Length => "max_tokens",
                text::Ending::StopSequence(_) => "stop_sequence",
            };
            Reply::Text { words, stop }
        };
        Ok(Answer {
            reply,
            prompt_tokens,
            tool_use_id: format!("tooluse_mock{}", state.next_completion_id()),
        })
    }

    fn output_tokens(&self) -> u64 {
        match &self.reply {
            Reply::Text { words, .. } => words.len() as u64,
            Reply::Tool { .. } => text::estimate_tokens(TOOL_ARGUMENTS),
            Reply::Filtered => 0,
        }
    }

    fn stop_reason(&self) -> &'static str {
        match &self.reply {
            Reply::Text { stop, .. } => stop,
            Reply::Tool { .. } => "tool_use",
            Reply::Filtered => "content_filtered",
        }
    }

    fn usage(&self) -> Value {
        let output = self.output_tokens();
        json!({
            "inputTokens": self.prompt_tokens,
            "outputTokens": output,
            "totalTokens": self.prompt_tokens + output,
        })
    }

    fn body(&self) -> Value {
        let content = match &self.reply {
            Reply::Text { words, .. } => vec![json!({"text": words.join(" ")})],
            Reply::Tool { name } => vec![json!({"toolUse": {
                "toolUseId": self.tool_use_id,
                "name": name,
                "input": serde_json::from_str::<Value>(TOOL_ARGUMENTS).unwrap_or_default(),
            }})],
            Reply::Filtered => Vec::new(),
        };
        json!({
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": self.stop_reason(),
            "usage": self.usage(),
            "metrics": {"latencyMs": 1},
        })
    }

    /// The stream's events; `metadata` (the usage) last unless `complete` is false.
    fn events(&self, complete: bool) -> Vec<Event> {
        let mut events = vec![Event::named(
            "messageStart",
            json!({"role": "assistant"}).to_string(),
        )];
        match &self.reply {
            Reply::Text { words, .. } => {
                for piece in text::pieces(words) {
                    events.push(Event::named(
                        "contentBlockDelta",
                        json!({"contentBlockIndex": 0, "delta": {"text": piece}}).to_string(),
                    ));
                }
                events.push(Event::named(
                    "contentBlockStop",
                    json!({"contentBlockIndex": 0}).to_string(),
                ));
            }
            Reply::Tool { name } => {
                events.push(Event::named(
                    "contentBlockStart",
                    json!({"contentBlockIndex": 0,
                        "start": {"toolUse": {"toolUseId": self.tool_use_id, "name": name}}})
                    .to_string(),
                ));
                let (head, tail) = TOOL_ARGUMENTS.split_at(TOOL_ARGUMENTS.len() / 2);
                for input in [head, tail] {
                    events.push(Event::named(
                        "contentBlockDelta",
                        json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": input}}})
                            .to_string(),
                    ));
                }
                events.push(Event::named(
                    "contentBlockStop",
                    json!({"contentBlockIndex": 0}).to_string(),
                ));
            }
            Reply::Filtered => {}
        }
        events.push(Event::named(
            "messageStop",
            json!({"stopReason": self.stop_reason()}).to_string(),
        ));
        if complete {
            events.push(Event::named(
                "metadata",
                json!({"usage": self.usage(), "metrics": {"latencyMs": 1}}).to_string(),
            ));
        }
        events
    }
}

/// A Bedrock error: `{"message"}`, the exception named in `x-amzn-ErrorType`.
pub(crate) fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    let mut response = (status, Json(json!({"message": message}))).into_response();
    if let Ok(value) = HeaderValue::from_str(&format!(
        "{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/"
    )) {
        response.headers_mut().insert("x-amzn-errortype", value);
    }
    response
}

/// The error body a fault with `status` sends.
fn fault_body(status: u16) -> Value {
    let message = match status {
        429 => "Too many requests, please wait before trying again.".to_owned(),
        503 | 529 => "The model is overloaded. Please try again later.".to_owned(),
        500 => "The server encountered an internal error while processing the request.".to_owned(),
        _ => format!("mock fault: status {status}"),
    };
    json!({ "message": message })
}
