//! OpenAI's Responses API: `POST /v1/responses`, plain and streamed.
//!
//! The request is checked as OpenAI checks it (so a gateway that sent a chat body here, or lost
//! an item on the way, fails): `model` and `input` required, `messages` unknown, every input item
//! of a known type with its required fields, a `function_call_output` only for a `function_call`
//! earlier in the input, function tools named, and `previous_response_id` refused (the mock keeps
//! nothing, so it cannot know the id). The answer is the chat answer (`chat::Completion`) in
//! Responses shape: a `message` item with one `output_text`, or a `function_call` item; with a
//! built-in `web_search` tool a `web_search_call` item comes first, which only a native upstream
//! can produce. Streams are the typed events, numbered by `sequence_number`, ending with
//! `response.completed` (no `[DONE]`); faults apply event by event as on every dialect.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::chat::{CREATED, ChatRequest, Completion, Said};
use crate::sse::{self, Event, NOT_JSON, Style};
use crate::state::MockState;
use crate::text::TOOL_ARGUMENTS;
use crate::{effects, error};

const STYLE: Style = Style {
    framing: sse::Framing::Sse,
    error: "event: error\ndata: {\"type\":\"error\",\"code\":\"server_error\",\"message\":\"mock in-stream error\",\"param\":null,\"sequence_number\":0}\n\n",
    malformed: NOT_JSON,
};

/// Built-in tools the mock accepts (OpenAI runs them; a translated request never has them).
const BUILT_IN: [&str; 5] = [
    "web_search",
    "web_search_preview",
    "file_search",
    "code_interpreter",
    "image_generation",
];

pub(crate) async fn responses(
    State(state): State<MockState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed = serde_json::from_slice::<Value>(&body);
    let streaming = parsed
        .as_ref()
        .is_ok_and(|v| v.get("stream").and_then(Value::as_bool) == Some(true));
    let fault = match effects::gate(&state, &headers, crate::openai::ERROR_SHAPE, streaming).await {
        Ok(fault) => fault,
        Err(response) => return response,
    };
    let filtered = fault.as_ref().is_some_and(|f| f.content_filter);
    let request = match parsed
        .map_err(|e| format!("We could not parse the JSON body of your request: {e}"))
        .and_then(|v| as_chat(&v).map(|chat| (v, chat)))
    {
        Ok(request) => request,
        Err(message) => return error::invalid_request(message),
    };
    let (request, chat) = request;
    let completion = match serde_json::from_value::<ChatRequest>(chat)
        .map_err(|e| e.to_string())
        .and_then(|chat| Completion::plan(&state, chat, filtered))
    {
        Ok(completion) => completion,
        Err(message) => return error::invalid_request(message),
    };
    if fault.as_ref().is_some_and(|f| f.context_too_long) {
        return crate::openai::context_length_exceeded(completion.prompt_tokens(), "input");
    }
    let searched = request
        .get("tools")
        .and_then(Value::as_array)
        .is_some_and(|tools| {
            tools.iter().any(|t| {
                t.get("type")
                    .and_then(Value::as_str)
                    .is_some_and(|k| k.starts_with("web_search"))
            })
        });
    let answer = Answer::of(&completion, searched);
    if streaming {
        let no_done = fault.as_ref().is_some_and(|f| f.no_done);
        sse::events_response(state, answer.events(no_done), STYLE, fault)
    } else {
        Json(answer.response("completed", true)).into_response()
    }
}

/// The request as a chat request `chat::Completion` can plan, or why OpenAI would refuse it.
fn as_chat(request: &Value) -> Result<Value, String> {
    let Some(fields) = request.as_object() else {
        return Err("the request body must be a JSON object".into());
    };
    for unknown in ["messages", "max_tokens", "response_format"] {
        if fields.contains_key(unknown) {
            return Err(format!("Unknown parameter: '{unknown}'."));
        }
    }
    if fields
        .get("previous_response_id")
        .is_some_and(|v| !v.is_null())
    {
        return Err("Previous response with id not found.".into());
    }
    let model = fields
        .get("model")
        .and_then(Value::as_str)
        .ok_or("Missing required parameter: 'model'.")?;
    let mut messages = Vec::new();
    if let Some(instructions) = fields.get("instructions").and_then(Value::as_str) {
        messages.push(json!({"role": "system", "content": instructions}));
    }
    match fields.get("input") {
        Some(Value::String(text)) => messages.push(json!({"role": "user", "content": text})),
        Some(Value::Array(items)) => {
            for item in items {
                push_item(&mut messages, item)?;
            }
        }
        _ => return Err("Missing required parameter: 'input'.".into()),
    }
    let mut tools = Vec::new();
    for tool in fields
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match tool.get("type").and_then(Value::as_str) {
            Some("function") => {
                let name = tool
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or("Missing required parameter: 'tools[].name'.")?;
                tools.push(json!({"type": "function", "function": {"name": name}}));
            }
            Some(kind) if BUILT_IN.contains(&kind) => {}
            other => return Err(format!("Invalid value: '{}'.", other.unwrap_or("null"))),
        }
    }
    let tool_choice = match fields.get("tool_choice") {
        Some(choice @ Value::Object(_)) => {
            let name = choice.get("name").cloned().unwrap_or(Value::Null);
            json!({"type": "function", "function": {"name": name}})
        }
        Some(other) => other.clone(),
        None => Value::Null,
    };
    let format = request.pointer("/text/format/type").cloned();
    Ok(json!({
        "model": model,
        "messages": messages,
        "tools": if tools.is_empty() { Value::Null } else { Value::Array(tools) },
        "tool_choice": tool_choice,
        "response_format": format.map(|kind| json!({"type": kind})),
        "max_tokens": fields.get("max_output_tokens"),
    }))
}

/// One input item as chat messages.
fn push_item(messages: &mut Vec<Value>, item: &Value) -> Result<(), String> {
    let text = |key: &str| item.get(key).and_then(Value::as_str);
    match text("type").unwrap_or("message") {
        "message" => {
            let role = text("role").ok_or("Missing required parameter: 'input[].role'.")?;
            if !matches!(role, "user" | "assistant" | "system" | "developer") {
                return Err(format!("Invalid value: '{role}'."));
            }
            let content = match item.get("content") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(parts)) => parts
                    .iter()
                    .map(|p| match p.get("type").and_then(Value::as_str) {
                        Some("input_text" | "output_text") => {
                            Ok(p.get("text").and_then(Value::as_str).unwrap_or_default())
                        }
                        Some("input_image" | "input_file" | "refusal") => Ok(""),
                        other => Err(format!("Invalid value: '{}'.", other.unwrap_or("null"))),
                    })
                    .collect::<Result<Vec<_>, _>>()?
                    .join(" "),
                _ => return Err("Missing required parameter: 'input[].content'.".into()),
            };
            messages.push(json!({"role": role, "content": content}));
        }
        "function_call" => {
            let (Some(call_id), Some(name), Some(arguments)) =
                (text("call_id"), text("name"), text("arguments"))
            else {
                return Err("A function_call item needs 'call_id', 'name' and 'arguments'.".into());
            };
            messages.push(json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
            ]}));
        }
        "function_call_output" => {
            let call_id =
                text("call_id").ok_or("Missing required parameter: 'input[].call_id'.")?;
            let called = messages
                .iter()
                .any(|m| m.pointer("/tool_calls/0/id").and_then(Value::as_str) == Some(call_id));
            if !called {
                return Err(format!(
                    "No tool call found for function call output with call_id {call_id}."
                ));
            }
            let output = item
                .get("output")
                .ok_or("Missing required parameter: 'input[].output'.")?;
            messages.push(json!({"role": "tool", "tool_call_id": call_id, "content": output}));
        }
        "reasoning" => {}
        other => return Err(format!("Invalid value: '{other}'.")),
    }
    Ok(())
}

/// A planned answer in Responses shape.
struct Answer {
    id: String,
    model: String,
    searched: bool,
    said: Said,
    finish: &'static str,
    input_tokens: u64,
    output_tokens: u64,
}

impl Answer {
    fn of(completion: &Completion, searched: bool) -> Self {
        Answer {
            id: format!("resp_{}", completion.bare_id()),
            model: completion.model().to_owned(),
            searched,
            said: completion.said(),
            finish: completion.finish_reason(),
            input_tokens: completion.prompt_tokens(),
            output_tokens: completion.completion_tokens(),
        }
    }

    fn search_item(&self) -> Value {
        json!({"type": "web_search_call", "id": "ws_mock_0", "status": "completed",
               "action": {"type": "search", "query": "mock"}})
    }

    /// The output item, complete or (with `done` false) as first announced.
    fn item(&self, done: bool) -> Value {
        let status = if done { "completed" } else { "in_progress" };
        match &self.said {
            Said::Text(pieces) => json!({
                "type": "message", "id": "msg_mock_0", "status": status, "role": "assistant",
                "content": if done {
                    json!([{"type": "output_text", "text": pieces.concat(), "annotations": []}])
                } else {
                    json!([])
                },
            }),
            Said::ToolCall(name) => json!({
                "type": "function_call", "id": "fc_mock_0", "call_id": "call_mock_0",
                "name": name, "arguments": if done { TOOL_ARGUMENTS } else { "" },
                "status": status,
            }),
        }
    }

    fn response(&self, status: &str, done: bool) -> Value {
        let mut output = Vec::new();
        if done {
            if self.searched {
                output.push(self.search_item());
            }
            output.push(self.item(true));
        }
        let incomplete =
            (done && self.finish == "length").then(|| json!({"reason": "max_output_tokens"}));
        let status = if incomplete.is_some() {
            "incomplete"
        } else {
            status
        };
        json!({
            "id": self.id,
            "object": "response",
            "created_at": CREATED,
            "status": status,
            "error": null,
            "incomplete_details": incomplete,
            "model": self.model,
            "output": output,
            "parallel_tool_calls": true,
            "tool_choice": "auto",
            "tools": [],
            "usage": if done { json!({
                "input_tokens": self.input_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": self.output_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": self.input_tokens + self.output_tokens,
            }) } else { Value::Null },
        })
    }

    /// The typed events, numbered; without the terminal `response.completed` for `no_done`.
    fn events(&self, no_done: bool) -> Vec<Event> {
        let mut events: Vec<(&'static str, Value)> = vec![
            (
                "response.created",
                json!({"response": self.response("in_progress", false)}),
            ),
            (
                "response.in_progress",
                json!({"response": self.response("in_progress", false)}),
            ),
        ];
        let index = usize::from(self.searched);
        if self.searched {
            let item = self.search_item();
            events.push((
                "response.output_item.added",
                json!({"output_index": 0, "item": item}),
            ));
            events.push((
                "response.output_item.done",
                json!({"output_index": 0, "item": item}),
            ));
        }
        events.push((
            "response.output_item.added",
            json!({"output_index": index, "item": self.item(false)}),
        ));
        match &self.said {
            Said::Text(pieces) => {
                let at =
                    json!({"item_id": "msg_mock_0", "output_index": index, "content_index": 0});
                let with = |extra: Value| {
                    let mut v = at.clone();
                    if let (Some(v), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
                        v.extend(extra.clone());
                    }
                    v
                };
                let part =
                    |text: String| json!({"type": "output_text", "text": text, "annotations": []});
                events.push((
                    "response.content_part.added",
                    with(json!({"part": part(String::new())})),
                ));
                for piece in pieces {
                    events.push((
                        "response.output_text.delta",
                        with(json!({"delta": piece, "logprobs": []})),
                    ));
                }
                let text = pieces.concat();
                events.push((
                    "response.output_text.done",
                    with(json!({"text": text, "logprobs": []})),
                ));
                events.push((
                    "response.content_part.done",
                    with(json!({"part": part(text)})),
                ));
            }
            Said::ToolCall(name) => {
                let at = json!({"item_id": "fc_mock_0", "output_index": index});
                for piece in [r#"{"mo"#, r#"ck":tr"#, "ue}"] {
                    let mut v = at.clone();
                    v["delta"] = piece.into();
                    events.push(("response.function_call_arguments.delta", v));
                }
                let mut v = at;
                v["name"] = name.as_str().into();
                v["arguments"] = TOOL_ARGUMENTS.into();
                events.push(("response.function_call_arguments.done", v));
            }
        }
        events.push((
            "response.output_item.done",
            json!({"output_index": index, "item": self.item(true)}),
        ));
        if !no_done {
            let done = self.response("completed", true);
            let name = if done["status"] == "incomplete" {
                "response.incomplete"
            } else {
                "response.completed"
            };
            events.push((name, json!({"response": done})));
        }
        events
            .into_iter()
            .enumerate()
            .map(|(n, (name, mut data))| {
                data["type"] = name.into();
                data["sequence_number"] = n.into();
                Event::named(name, data.to_string())
            })
            .collect()
    }
}
