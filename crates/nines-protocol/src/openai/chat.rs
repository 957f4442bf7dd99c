//! Parsing an OpenAI chat-completions request into [`ChatRequest`].
//!
//! The parser walks the top-level object once with a hand-written visitor: known fields go to
//! typed slots (so an error names the field, as OpenAI's own `error.param` does), unknown fields
//! are kept verbatim in [`ChatRequest::extra`], which the encoder (`chat_encode.rs`) writes back,
//! so OpenAI → unified → OpenAI keeps every field the unified model knows exactly and every other
//! field as it was.

use super::wire::{WireContent, WireToolCall};
use super::{RequestError, StreamOptions};
use crate::unified::{
    ChatRequest, ContentPart, Effort, Message, Reasoning, ResponseFormat, Role, Tool, ToolChoice,
};
use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};
use std::cell::Cell;
use std::fmt;

/// Parses an OpenAI chat-completions body into the unified model.
///
/// Errors: [`RequestError::Malformed`] for invalid JSON, [`RequestError::MissingModel`] /
/// [`RequestError::ModelNotString`] / [`RequestError::Missing`] as [`super::parse_chat_head`]
/// reports them, [`RequestError::Invalid`] naming the field for a wrong type or value, and
/// [`RequestError::Unsupported`] for valid OpenAI that has no unified form (audio parts,
/// non-function tools).
pub fn parse_chat_request(body: &[u8]) -> Result<ChatRequest, RequestError> {
    let field = Cell::new(None);
    let mut de = serde_json::Deserializer::from_slice(body);
    let fields = RequestSeed { field: &field }
        .deserialize(&mut de)
        .and_then(|fields| de.end().map(|()| fields))
        .map_err(|e| request_error(&e, field.get()))?;
    fields.into_request()
}

fn request_error(e: &serde_json::Error, field: Option<&'static str>) -> RequestError {
    match (e.classify(), field) {
        (serde_json::error::Category::Data, Some("model")) => RequestError::ModelNotString,
        (serde_json::error::Category::Data, Some(param)) => RequestError::Invalid {
            param: Some(param),
            message: format!("Invalid '{param}': {e}"),
        },
        _ => RequestError::Malformed(e.to_string()),
    }
}

/// Every top-level field the unified model reads; anything else goes to `extra`.
const KNOWN: [&str; 23] = [
    "model",
    "messages",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "stream",
    "stream_options",
    "n",
    "response_format",
    "logprobs",
    "top_logprobs",
    "user",
    "metadata",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "top_k",
    "reasoning_effort",
];

enum Key {
    Known(&'static str),
    Other(String),
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl Visitor<'_> for Visit {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E>(self, v: &str) -> Result<Key, E> {
                Ok(match KNOWN.iter().find(|k| **k == v) {
                    Some(known) => Key::Known(known),
                    None => Key::Other(v.to_owned()),
                })
            }
        }
        deserializer.deserialize_identifier(Visit)
    }
}

/// The request's fields as they appear on the wire, before validation.
#[derive(Default)]
struct Fields {
    model: Option<String>,
    messages: Option<Vec<WireMessage>>,
    tools: Option<Vec<WireTool>>,
    tool_choice: Option<Value>,
    parallel_tool_calls: Option<bool>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    stop: Option<WireStop>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    n: Option<u32>,
    response_format: Option<WireResponseFormat>,
    logprobs: Option<bool>,
    top_logprobs: Option<u32>,
    user: Option<String>,
    metadata: Option<Value>,
    seed: Option<i64>,
    presence_penalty: Option<f64>,
    frequency_penalty: Option<f64>,
    top_k: Option<u32>,
    reasoning_effort: Option<String>,
    extra: Map<String, Value>,
}

/// Deserialises [`Fields`], recording which field it is in so an error can name it.
struct RequestSeed<'c> {
    field: &'c Cell<Option<&'static str>>,
}

impl<'de> DeserializeSeed<'de> for RequestSeed<'_> {
    type Value = Fields;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Fields, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RequestSeed<'_> {
    type Value = Fields;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a chat completions request object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
        let mut f = Fields::default();
        while let Some(key) = map.next_key::<Key>()? {
            let name = match key {
                Key::Known(name) => name,
                Key::Other(name) => {
                    self.field.set(None);
                    let value: Value = map.next_value()?;
                    f.extra.insert(name, value);
                    continue;
                }
            };
            self.field.set(Some(name));
            match name {
                "model" => f.model = map.next_value()?,
                "messages" => f.messages = map.next_value()?,
                "tools" => f.tools = map.next_value()?,
                "tool_choice" => f.tool_choice = map.next_value()?,
                "parallel_tool_calls" => f.parallel_tool_calls = map.next_value()?,
                "max_tokens" => f.max_tokens = map.next_value()?,
                "max_completion_tokens" => f.max_completion_tokens = map.next_value()?,
                "temperature" => f.temperature = map.next_value()?,
                "top_p" => f.top_p = map.next_value()?,
                "stop" => f.stop = map.next_value()?,
                "stream" => f.stream = map.next_value()?,
                "stream_options" => f.stream_options = map.next_value()?,
                "n" => f.n = map.next_value()?,
                "response_format" => f.response_format = map.next_value()?,
                "logprobs" => f.logprobs = map.next_value()?,
                "top_logprobs" => f.top_logprobs = map.next_value()?,
                "user" => f.user = map.next_value()?,
                "metadata" => f.metadata = map.next_value()?,
                "seed" => f.seed = map.next_value()?,
                "presence_penalty" => f.presence_penalty = map.next_value()?,
                "frequency_penalty" => f.frequency_penalty = map.next_value()?,
                "top_k" => f.top_k = map.next_value()?,
                "reasoning_effort" => f.reasoning_effort = map.next_value()?,
                _ => {
                    let value: Value = map.next_value()?;
                    f.extra.insert(name.to_owned(), value);
                }
            }
        }
        self.field.set(None);
        Ok(f)
    }
}

#[derive(Deserialize)]
struct WireMessage {
    role: WireRole,
    #[serde(default)]
    content: Option<WireContent>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCall>>,
    #[serde(default)]
    tool_call_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum WireRole {
    System,
    Developer,
    User,
    Assistant,
    Tool,
    Function,
}

#[derive(Deserialize)]
struct WireTool {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    function: Option<WireFunction>,
}

#[derive(Deserialize)]
struct WireFunction {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Value>,
    #[serde(default)]
    strict: Option<bool>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum WireStop {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct WireResponseFormat {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    json_schema: Option<WireJsonSchema>,
}

#[derive(Deserialize)]
struct WireJsonSchema {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    schema: Option<Value>,
    #[serde(default)]
    strict: Option<bool>,
}

fn invalid(param: &'static str, message: impl Into<String>) -> RequestError {
    RequestError::Invalid {
        param: Some(param),
        message: message.into(),
    }
}

impl Fields {
    fn into_request(self) -> Result<ChatRequest, RequestError> {
        let model = self.model.filter(|m| !m.is_empty());
        let model = model.ok_or(RequestError::MissingModel)?;
        let messages = self.messages.ok_or(RequestError::Missing("messages"))?;
        if messages.is_empty() {
            return Err(invalid("messages", "[] is too short - 'messages'"));
        }
        let messages = messages
            .into_iter()
            .map(WireMessage::into_unified)
            .collect::<Result<Vec<_>, _>>()?;
        let tools = self
            .tools
            .unwrap_or_default()
            .into_iter()
            .map(WireTool::into_unified)
            .collect::<Result<Vec<_>, _>>()?;
        let tool_choice = self.tool_choice.map(tool_choice).transpose()?.flatten();
        let response_format = self.response_format.map(response_format).transpose()?;
        let stop = match self.stop {
            None => Vec::new(),
            Some(WireStop::One(s)) => vec![s],
            Some(WireStop::Many(v)) => v,
        };
        let max_tokens = self.max_completion_tokens.or(self.max_tokens);
        let reasoning = match self.reasoning_effort.as_deref() {
            None => None,
            // gpt-5.1's "none": no reasoning at all.
            Some("none") => Some(Reasoning::Off),
            Some(name) => Some(Reasoning::Effort(Effort::from_name(name).ok_or_else(
                || {
                    invalid(
                        "reasoning_effort",
                        format!(
                            "Invalid value for 'reasoning_effort': '{name}'; supported values are \
                         'none', 'minimal', 'low', 'medium' and 'high'."
                        ),
                    )
                },
            )?)),
        };
        Ok(ChatRequest {
            model,
            messages,
            tools,
            tool_choice,
            parallel_tool_calls: self.parallel_tool_calls,
            max_tokens: max_tokens.map(|t| u32::try_from(t).unwrap_or(u32::MAX)),
            temperature: self.temperature,
            top_p: self.top_p,
            stop,
            stream: self.stream.unwrap_or(false),
            include_usage: self
                .stream_options
                .and_then(|o| o.include_usage)
                .unwrap_or(false),
            n: self.n.unwrap_or(1),
            response_format,
            logprobs: self.logprobs.unwrap_or(false),
            top_logprobs: self.top_logprobs,
            user: self.user,
            metadata: self.metadata,
            seed: self.seed,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            top_k: self.top_k,
            reasoning,
            extra: self.extra,
        })
    }
}

impl WireMessage {
    fn into_unified(self) -> Result<Message, RequestError> {
        let role = match self.role {
            WireRole::System | WireRole::Developer => Role::System,
            WireRole::User => Role::User,
            WireRole::Assistant => Role::Assistant,
            WireRole::Tool | WireRole::Function => Role::Tool,
        };
        let content = match self.content {
            Some(content) => content.into_parts()?,
            None => Vec::new(),
        };
        if role != Role::User && role != Role::Assistant {
            let has_image = content
                .iter()
                .any(|p| matches!(p, ContentPart::Image { .. }));
            if has_image {
                return Err(invalid(
                    "messages",
                    format!(
                        "image content is only allowed in user and assistant messages, not {}",
                        role.as_str()
                    ),
                ));
            }
        }
        Ok(Message {
            role,
            content,
            tool_calls: self
                .tool_calls
                .unwrap_or_default()
                .into_iter()
                .map(WireToolCall::into_unified)
                .collect(),
            tool_call_id: self.tool_call_id,
            name: self.name,
        })
    }
}

impl WireTool {
    fn into_unified(self) -> Result<Tool, RequestError> {
        match (self.kind.as_deref(), self.function) {
            (None | Some("function"), Some(f)) => Ok(Tool {
                name: f.name,
                description: f.description,
                parameters: f.parameters.unwrap_or(Value::Null),
                strict: f.strict,
            }),
            (None | Some("function"), None) => Err(invalid(
                "tools",
                "a function tool needs a 'function' object",
            )),
            (Some(other), _) => Err(RequestError::Unsupported(format!(
                "tools of type '{other}' cannot be translated to another dialect"
            ))),
        }
    }
}

/// `"auto" | "none" | "required" | {"type":"function","function":{"name":…}}`; `null` is unset.
fn tool_choice(value: Value) -> Result<Option<ToolChoice>, RequestError> {
    let choice = match &value {
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
        Value::Object(o) => {
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str);
            match name {
                Some(name) => ToolChoice::Function(name.to_owned()),
                None => {
                    return Err(invalid(
                        "tool_choice",
                        "Invalid 'tool_choice': expected {\"type\":\"function\",\"function\":{\"name\":...}}",
                    ));
                }
            }
        }
        _ => return Err(invalid("tool_choice", "Invalid type for 'tool_choice'")),
    };
    Ok(Some(choice))
}

fn response_format(wire: WireResponseFormat) -> Result<ResponseFormat, RequestError> {
    match wire.kind.as_str() {
        "text" => Ok(ResponseFormat::Text),
        "json_object" => Ok(ResponseFormat::JsonObject),
        "json_schema" => {
            let schema = wire.json_schema.ok_or_else(|| {
                invalid(
                    "response_format",
                    "Missing required parameter: 'response_format.json_schema'",
                )
            })?;
            Ok(ResponseFormat::JsonSchema {
                name: schema.name.unwrap_or_else(|| String::from("response")),
                schema: schema.schema.unwrap_or(Value::Object(Map::new())),
                strict: schema.strict,
            })
        }
        other => Err(invalid(
            "response_format",
            format!("Invalid value for 'response_format.type': '{other}'"),
        )),
    }
}
