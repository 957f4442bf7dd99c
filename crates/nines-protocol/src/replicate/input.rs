//! The prediction `input` for a language model, from a [`ChatRequest`].

use crate::json;
use crate::unified::{ChatRequest, Role};
use serde::Serialize;

/// The path of the create-prediction call for an official model `owner/name`.
pub fn predictions_path(model: &str) -> String {
    format!("/v1/models/{model}/predictions")
}

/// The create-prediction body `{"input":{…},"stream":…}`.
///
/// Input fields: `prompt` (see [`render_prompt`]), `system_prompt` (the system messages joined by
/// blank lines), `max_tokens` *and* `max_new_tokens` (models name it either way; Replicate ignores
/// the input a model does not declare), `temperature`, `top_p`, and `stop_sequences` joined by
/// commas, as Replicate's language models take them.
pub fn encode_create_request(request: &ChatRequest) -> Vec<u8> {
    let system: Vec<String> = request
        .messages
        .iter()
        .filter(|m| m.role == Role::System)
        .map(|m| m.joined_text())
        .filter(|t| !t.is_empty())
        .collect();
    let stop = request.stop.join(",");
    let input = Input {
        prompt: render_prompt(request),
        system_prompt: (!system.is_empty()).then(|| system.join("\n\n")),
        max_tokens: request.max_tokens,
        max_new_tokens: request.max_tokens,
        temperature: request.temperature,
        top_p: request.top_p,
        stop_sequences: (!stop.is_empty()).then_some(stop),
    };
    json::to_vec(&Create {
        input,
        stream: request.stream,
    })
}

/// The conversation as one prompt string. A single user turn is sent as its bare text; a longer
/// conversation is rendered as `User: …` / `Assistant: …` / `Tool result: …` paragraphs, ending
/// with the last user turn and an open `Assistant:` line for the model to continue.
pub fn render_prompt(request: &ChatRequest) -> String {
    let turns: Vec<_> = request
        .messages
        .iter()
        .filter(|m| m.role != Role::System)
        .collect();
    if let [only] = turns.as_slice()
        && only.role == Role::User
    {
        return only.joined_text();
    }
    let mut out = String::new();
    for m in &turns {
        let label = match m.role {
            Role::User => "User",
            Role::Assistant => "Assistant",
            Role::Tool => "Tool result",
            Role::System => continue,
        };
        let mut text = m.joined_text();
        for call in &m.tool_calls {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(&format!("[call {}({})]", call.name, call.arguments));
        }
        if !out.is_empty() {
            out.push_str("\n\n");
        }
        out.push_str(label);
        out.push_str(": ");
        out.push_str(&text);
    }
    if turns.last().is_some_and(|m| m.role != Role::Assistant) {
        out.push_str("\n\nAssistant:");
    }
    out
}

#[derive(Serialize)]
struct Create {
    input: Input,
    stream: bool,
}

#[derive(Serialize)]
struct Input {
    prompt: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_prompt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_new_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_sequences: Option<String>,
}
