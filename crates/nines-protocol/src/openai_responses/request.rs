//! Parsing a Responses request into [`ChatRequest`].
//!
//! `input` is a string (one user message) or a list of items: messages (any role, content a
//! string or `input_text` / `input_image` / `output_text` parts), `function_call`s (folded into
//! the preceding assistant turn, as chat completions spells them) and `function_call_output`s
//! (tool messages). `instructions` becomes a leading system message. Fields the unified model
//! knows map to it; `reasoning.effort` becomes chat's `reasoning_effort` (the unified reasoning); fields that
//! only mean something to OpenAI's own store (`store`, `include`, `truncation`) are consumed here.

use super::BUILT_IN_TOOLS;
use crate::json;
use crate::openai::RequestError;
use crate::unified::{
    ChatRequest, ContentPart, Effort, ImageSource, Message, Reasoning, ResponseFormat, Role, Tool,
    ToolCall, ToolChoice,
};
use serde_json::{Map, Value};

/// Parses a Responses body into the unified model.
///
/// Errors: [`RequestError::Malformed`] for invalid JSON, [`RequestError::Invalid`] naming the
/// field for a wrong type or value, [`RequestError::Unsupported`] for what only OpenAI can serve
/// (built-in tools, stored items, file ids, background runs).
pub fn parse_request(body: &[u8]) -> Result<ChatRequest, RequestError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| RequestError::Malformed(e.to_string()))?;
    let Value::Object(mut fields) = value else {
        return Err(RequestError::Malformed(
            "the request body must be a JSON object".into(),
        ));
    };
    let model = match fields.remove("model") {
        Some(Value::String(m)) if !m.is_empty() => m,
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(RequestError::MissingModel);
        }
        Some(_) => return Err(RequestError::ModelNotString),
    };
    let mut messages = Vec::new();
    match fields.remove("instructions") {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => messages.push(Message::text(Role::System, text)),
        Some(_) => return Err(invalid("instructions", "'instructions' must be a string")),
    }
    match fields.remove("input") {
        Some(Value::String(text)) => messages.push(Message::text(Role::User, text)),
        Some(Value::Array(items)) => {
            for item in items {
                push_item(&mut messages, item)?;
            }
        }
        None => return Err(RequestError::Missing("input")),
        Some(_) => {
            return Err(invalid(
                "input",
                "'input' must be a string or an array of input items",
            ));
        }
    }
    if !messages.iter().any(|m| m.role != Role::System) {
        return Err(invalid("input", "'input' holds no message to answer"));
    }
    let mut chat = ChatRequest::new(model, messages);
    chat.include_usage = true;
    if let Some(tools) = fields.remove("tools") {
        chat.tools = tools_of(tools)?;
    }
    if let Some(choice) = fields.remove("tool_choice") {
        chat.tool_choice = tool_choice(choice)?;
    }
    chat.parallel_tool_calls = take_typed(&mut fields, "parallel_tool_calls")?;
    chat.max_tokens = take_typed::<u64>(&mut fields, "max_output_tokens")?
        .map(|t| u32::try_from(t).unwrap_or(u32::MAX));
    chat.temperature = take_typed(&mut fields, "temperature")?;
    chat.top_p = take_typed(&mut fields, "top_p")?;
    chat.stream = take_typed(&mut fields, "stream")?.unwrap_or(false);
    chat.user = take_typed(&mut fields, "user")?;
    chat.metadata = fields.remove("metadata").filter(|m| !m.is_null());
    if let Some(text) = fields.remove("text") {
        chat.response_format = text_format(text)?;
    }
    if let Some(reasoning) = fields.remove("reasoning") {
        chat.reasoning = reasoning_of(&reasoning)?;
    }
    if take_typed::<bool>(&mut fields, "background")?.unwrap_or(false) {
        return Err(RequestError::Unsupported(
            "background responses run on OpenAI's side only".into(),
        ));
    }
    let include: Option<Vec<String>> = take_typed(&mut fields, "include")?;
    if let Some(what) = include.and_then(|i| i.into_iter().next()) {
        return Err(RequestError::Unsupported(format!(
            "'include' ({what}) asks for data only OpenAI keeps"
        )));
    }
    // Consumed: nines itself is the store (`previous_response_id`), and a translated request is
    // never truncated by the upstream.
    for consumed in [
        "store",
        "truncation",
        "previous_response_id",
        "stream_options",
    ] {
        fields.remove(consumed);
    }
    chat.extra = fields.into_iter().chain(chat.extra).collect();
    Ok(chat)
}

/// `reasoning.effort` as chat's `reasoning_effort` (the unified [`Reasoning`]), so every
/// dialect's mapping applies (Anthropic's and Gemini's thinking budgets). `reasoning.summary` and
/// the rest are OpenAI's alone and left out.
fn reasoning_of(reasoning: &Value) -> Result<Option<Reasoning>, RequestError> {
    let Some(effort) = reasoning.get("effort").filter(|e| !e.is_null()) else {
        return Ok(None);
    };
    let name = effort.as_str().unwrap_or_default();
    match name {
        // gpt-5.1's "none": no reasoning at all.
        "none" => Ok(Some(Reasoning::Off)),
        _ => Effort::from_name(name)
            .map(|e| Some(Reasoning::Effort(e)))
            .ok_or_else(|| {
                invalid(
                    "reasoning.effort",
                    format!(
                        "Invalid value for 'reasoning.effort': {effort}; supported values are \
                         'none', 'minimal', 'low', 'medium' and 'high'."
                    ),
                )
            }),
    }
}

fn invalid(param: &'static str, message: impl Into<String>) -> RequestError {
    RequestError::Invalid {
        param: Some(param),
        message: message.into(),
    }
}

/// Removes `name` and reads it as `T`; `null` is unset.
fn take_typed<T: serde::de::DeserializeOwned>(
    fields: &mut Map<String, Value>,
    name: &'static str,
) -> Result<Option<T>, RequestError> {
    match fields.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v)
            .map(Some)
            .map_err(|e| invalid(name, format!("Invalid '{name}': {e}"))),
    }
}

fn str_of<'v>(item: &'v Value, key: &str) -> Option<&'v str> {
    item.get(key).and_then(Value::as_str)
}

/// One input item, appended to `messages` in chat's shape.
fn push_item(messages: &mut Vec<Message>, item: Value) -> Result<(), RequestError> {
    let kind = str_of(&item, "type").unwrap_or("message");
    match kind {
        "message" => {
            let role = match str_of(&item, "role") {
                Some("user") => Role::User,
                Some("assistant") => Role::Assistant,
                Some("system" | "developer") => Role::System,
                Some(other) => {
                    return Err(invalid("input", format!("Invalid input role '{other}'")));
                }
                None => return Err(invalid("input", "an input message needs a 'role'")),
            };
            let content = content_of(item.get("content"), role)?;
            messages.push(Message {
                role,
                content,
                tool_calls: Vec::new(),
                tool_call_id: None,
                name: None,
            });
        }
        "function_call" => {
            let call = ToolCall {
                id: required_str(&item, "call_id")?.to_owned(),
                name: required_str(&item, "name")?.to_owned(),
                arguments: str_of(&item, "arguments").unwrap_or("{}").to_owned(),
            };
            match messages.last_mut() {
                Some(last) if last.role == Role::Assistant => last.tool_calls.push(call),
                _ => messages.push(Message {
                    role: Role::Assistant,
                    content: Vec::new(),
                    tool_calls: vec![call],
                    tool_call_id: None,
                    name: None,
                }),
            }
        }
        "function_call_output" => {
            let call_id = required_str(&item, "call_id")?.to_owned();
            let output = match item.get("output") {
                Some(Value::String(text)) => vec![ContentPart::Text(text.clone())],
                Some(parts @ Value::Array(_)) => content_of(Some(parts), Role::Tool)?,
                _ => {
                    return Err(invalid(
                        "input",
                        "a function_call_output item needs an 'output'",
                    ));
                }
            };
            messages.push(Message {
                role: Role::Tool,
                content: output,
                tool_calls: Vec::new(),
                tool_call_id: Some(call_id),
                name: None,
            });
        }
        // The model's own earlier reasoning: opaque (often encrypted) state only OpenAI can read.
        "reasoning" => {}
        other => {
            return Err(RequestError::Unsupported(format!(
                "input items of type '{other}' refer to state only OpenAI keeps"
            )));
        }
    }
    Ok(())
}

fn required_str<'v>(item: &'v Value, key: &'static str) -> Result<&'v str, RequestError> {
    str_of(item, key).ok_or_else(|| {
        invalid(
            "input",
            format!(
                "a {} item needs a string '{key}'",
                str_of(item, "type").unwrap_or("message")
            ),
        )
    })
}

/// A message's content: a string, or a list of parts.
fn content_of(content: Option<&Value>, role: Role) -> Result<Vec<ContentPart>, RequestError> {
    let parts = match content {
        Some(Value::String(text)) if text.is_empty() => return Ok(Vec::new()),
        Some(Value::String(text)) => return Ok(vec![ContentPart::Text(text.clone())]),
        Some(Value::Array(parts)) => parts,
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(_) => {
            return Err(invalid(
                "input",
                "message content must be a string or an array of parts",
            ));
        }
    };
    parts.iter().map(|p| part_of(p, role)).collect()
}

fn part_of(part: &Value, role: Role) -> Result<ContentPart, RequestError> {
    match str_of(part, "type") {
        Some("input_text" | "output_text" | "text") => Ok(ContentPart::Text(
            str_of(part, "text").unwrap_or_default().to_owned(),
        )),
        Some("refusal") => Ok(ContentPart::Text(
            str_of(part, "refusal").unwrap_or_default().to_owned(),
        )),
        Some("input_image") => {
            if role == Role::System {
                return Err(invalid(
                    "input",
                    "image content is not allowed in system or developer messages",
                ));
            }
            match str_of(part, "image_url") {
                Some(url) => Ok(ContentPart::Image {
                    source: image_source(url),
                }),
                None if part.get("file_id").is_some() => Err(RequestError::Unsupported(
                    "images given by file_id live in OpenAI's file store".into(),
                )),
                None => Err(invalid("input", "an input_image part needs an 'image_url'")),
            }
        }
        Some(other) => Err(RequestError::Unsupported(format!(
            "content parts of type '{other}' cannot be translated to another dialect"
        ))),
        None => Err(invalid("input", "a content part needs a 'type'")),
    }
}

fn image_source(url: &str) -> ImageSource {
    match json::parse_data_url(url) {
        Some((media_type, data)) => ImageSource::Base64 {
            media_type: media_type.to_owned(),
            data: data.to_owned(),
        },
        None => ImageSource::Url(url.to_owned()),
    }
}

/// Function tools map; OpenAI's built-in tools are refused (they run on OpenAI's side).
fn tools_of(tools: Value) -> Result<Vec<Tool>, RequestError> {
    let tools = match tools {
        Value::Null => return Ok(Vec::new()),
        Value::Array(tools) => tools,
        _ => return Err(invalid("tools", "'tools' must be an array")),
    };
    tools
        .into_iter()
        .map(|tool| match str_of(&tool, "type") {
            Some("function") => Ok(Tool {
                name: str_of(&tool, "name")
                    .ok_or_else(|| invalid("tools", "a function tool needs a 'name'"))?
                    .to_owned(),
                description: str_of(&tool, "description").map(str::to_owned),
                parameters: tool.get("parameters").cloned().unwrap_or(Value::Null),
                strict: tool.get("strict").and_then(Value::as_bool),
            }),
            Some(kind) if BUILT_IN_TOOLS.contains(&kind) || kind.starts_with("web_search") => {
                Err(RequestError::Unsupported(format!(
                    "the built-in tool '{kind}' runs on OpenAI's side: only a deployment with \
                     the responses_api capability can serve it"
                )))
            }
            Some(kind) => Err(RequestError::Unsupported(format!(
                "tools of type '{kind}' cannot be translated to another dialect"
            ))),
            None => Err(invalid("tools", "a tool needs a 'type'")),
        })
        .collect()
}

/// `"auto" | "none" | "required" | {"type":"function","name":…}`; a built-in tool's choice is
/// refused like the tool.
fn tool_choice(value: Value) -> Result<Option<ToolChoice>, RequestError> {
    Ok(Some(match &value {
        Value::Null => return Ok(None),
        Value::String(s) => match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            other => {
                return Err(invalid(
                    "tool_choice",
                    format!("Invalid value for 'tool_choice': '{other}'"),
                ));
            }
        },
        Value::Object(_) => match (str_of(&value, "type"), str_of(&value, "name")) {
            (Some("function"), Some(name)) => ToolChoice::Function(name.to_owned()),
            (Some("function"), None) => {
                return Err(invalid(
                    "tool_choice",
                    "a function tool_choice needs a 'name'",
                ));
            }
            (Some(kind), _) => {
                return Err(RequestError::Unsupported(format!(
                    "tool_choice of type '{kind}' cannot be translated to another dialect"
                )));
            }
            (None, _) => return Err(invalid("tool_choice", "a tool_choice needs a 'type'")),
        },
        _ => return Err(invalid("tool_choice", "Invalid type for 'tool_choice'")),
    }))
}

/// `text.format`: `text`, `json_object`, or `json_schema` (name, schema and strict inline).
fn text_format(text: Value) -> Result<Option<ResponseFormat>, RequestError> {
    let Some(format) = text.get("format").filter(|f| !f.is_null()) else {
        return Ok(None);
    };
    Ok(Some(match str_of(format, "type") {
        Some("text") => ResponseFormat::Text,
        Some("json_object") => ResponseFormat::JsonObject,
        Some("json_schema") => ResponseFormat::JsonSchema {
            name: str_of(format, "name").unwrap_or("response").to_owned(),
            schema: format.get("schema").cloned().ok_or_else(|| {
                invalid("text", "Missing required parameter: 'text.format.schema'")
            })?,
            strict: format.get("strict").and_then(Value::as_bool),
        },
        Some(other) => {
            return Err(invalid(
                "text",
                format!("Invalid value for 'text.format.type': '{other}'"),
            ));
        }
        None => return Err(invalid("text", "'text.format' needs a 'type'")),
    }))
}
