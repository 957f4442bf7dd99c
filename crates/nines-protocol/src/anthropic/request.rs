//! Anthropic Messages requests ↔ [`ChatRequest`].
//!
//! Encoding reshapes an OpenAI-style conversation into Anthropic's: system messages anywhere are
//! hoisted into `system` (in order), tool results become `tool_result` blocks of a `user` turn, and
//! turns of one role are merged, because the Messages API requires user and assistant to alternate.
//! A final assistant turn is a prefill; Anthropic rejects trailing whitespace there, so it is
//! trimmed. `top_p` is not sent when `temperature` is (current Claude models refuse both).
//! A reasoning effort becomes a thinking budget (`unified::reasoning`'s table), `max_tokens`
//! raised above it when it would not fit. A JSON `response_format` becomes a forced tool call
//! (`unified::json_tool`). Fields Anthropic has no equivalent for (`n`, `logprobs`, `seed`,
//! penalties, `extra`) are not sent: routing filters on [`ChatRequest::required_capabilities`]
//! first, or removed them when the deployment allows it (`ChatRequest::without`).

use super::wire::{
    InBlock, InContent, OutBlock, arguments_text, out_part, out_tool_result, tool_id,
};
use crate::json::{self, RawArgs};
use crate::openai::RequestError;
use crate::unified::json_tool::{JSON_TOOL, JSON_TOOL_DESCRIPTION};
use crate::unified::{
    ChatRequest, ContentPart, Message, Reasoning, ResponseFormat, Role, Tool, ToolCall, ToolChoice,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Encodes a unified request as a Messages API body for `model`. `default_max_tokens` is sent
/// when the request has no `max_tokens` (see [`super::DEFAULT_MAX_TOKENS`]).
pub fn encode_request(request: &ChatRequest, model: &str, default_max_tokens: u32) -> Vec<u8> {
    let json = request.wants_json();
    let system: Vec<&str> = request
        .messages
        .iter()
        .filter(|m| m.role == Role::System)
        .flat_map(|m| &m.content)
        .filter_map(|p| match p {
            ContentPart::Text(text) if !text.is_empty() => Some(text.as_str()),
            _ => None,
        })
        .collect();
    let system = match system.as_slice() {
        [] => None,
        [one] => Some(OutSystem::Text(one)),
        many => Some(OutSystem::Blocks(
            many.iter().map(|text| OutBlock::Text { text }).collect(),
        )),
    };
    let disable_parallel = (request.parallel_tool_calls == Some(false)).then_some(true);
    let tool_choice = match (&request.tool_choice, request.tools.is_empty(), json) {
        (_, true, false) => None,
        // The JSON answer is the forced tool's call; with tools of the client's own, the model
        // must call one of them or answer through the JSON tool.
        (Some(ToolChoice::Function(name)), false, _) => Some(OutToolChoice::Tool {
            name,
            disable_parallel_tool_use: disable_parallel,
        }),
        (None | Some(ToolChoice::Auto | ToolChoice::Required), false, true) => {
            Some(OutToolChoice::Any {
                disable_parallel_tool_use: disable_parallel,
            })
        }
        (_, _, true) => Some(OutToolChoice::Tool {
            name: JSON_TOOL,
            disable_parallel_tool_use: None,
        }),
        (None, false, false) if disable_parallel.is_none() => None,
        (None | Some(ToolChoice::Auto), false, false) => Some(OutToolChoice::Auto {
            disable_parallel_tool_use: disable_parallel,
        }),
        (Some(ToolChoice::Required), false, false) => Some(OutToolChoice::Any {
            disable_parallel_tool_use: disable_parallel,
        }),
        (Some(ToolChoice::None), false, false) => Some(OutToolChoice::None),
    };
    let mut tools: Vec<OutTool<'_>> = request.tools.iter().map(out_tool).collect();
    if json {
        tools.push(OutTool {
            name: JSON_TOOL,
            description: Some(JSON_TOOL_DESCRIPTION),
            input_schema: match &request.response_format {
                Some(ResponseFormat::JsonSchema { schema, .. }) if schema.is_object() => {
                    InputSchema::Given(schema)
                }
                _ => InputSchema::Empty,
            },
        });
    }
    // Anthropic's `max_tokens` counts the thinking too: a limit at or under the budget is
    // taken as the answer's own and added to it.
    let budget = request.reasoning.and_then(Reasoning::budget_tokens);
    let mut max_tokens = request.max_tokens.unwrap_or(default_max_tokens);
    if let Some(budget) = budget
        && max_tokens <= budget
    {
        max_tokens = max_tokens.saturating_add(budget);
    }
    let out = OutRequest {
        model,
        max_tokens,
        thinking: budget.map(|budget_tokens| OutThinking::Enabled { budget_tokens }),
        top_k: request.top_k,
        system,
        messages: out_messages(&request.messages),
        tools,
        tool_choice,
        stop_sequences: &request.stop,
        temperature: request.temperature,
        // Current Claude models reject `temperature` and `top_p` together ("use only one");
        // OpenAI clients often send both, so temperature wins.
        top_p: request.top_p.filter(|_| request.temperature.is_none()),
        stream: request.stream,
        metadata: request
            .user
            .as_deref()
            .map(|user_id| OutMetadata { user_id }),
    };
    json::to_vec(&out)
}

fn out_messages(messages: &[Message]) -> Vec<OutMessage<'_>> {
    let mut out: Vec<OutMessage<'_>> = Vec::with_capacity(messages.len());
    for (position, m) in messages.iter().enumerate() {
        let (role, blocks) = match m.role {
            Role::System => continue,
            Role::User => ("user", m.content.iter().filter_map(out_part).collect()),
            Role::Assistant => {
                let mut blocks: Vec<OutBlock<'_>> = m.content.iter().filter_map(out_part).collect();
                blocks.extend(m.tool_calls.iter().map(|call| OutBlock::ToolUse {
                    id: tool_id(&call.id),
                    name: &call.name,
                    input: RawArgs::new(&call.arguments),
                }));
                ("assistant", blocks)
            }
            Role::Tool => {
                let id = m
                    .tool_call_id
                    .as_deref()
                    .or_else(|| call_id_by_name(&messages[..position], m.name.as_deref()))
                    .unwrap_or_default();
                let block = OutBlock::ToolResult {
                    tool_use_id: tool_id(id),
                    content: out_tool_result(&m.content),
                };
                ("user", vec![block])
            }
        };
        if blocks.is_empty() {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.role == role => last.content.extend(blocks),
            _ => out.push(OutMessage {
                role,
                content: blocks,
            }),
        }
    }
    trim_prefill(&mut out);
    out
}

/// The id of the latest earlier call to `name` (legacy `function` messages carry no call id).
fn call_id_by_name<'a>(earlier: &'a [Message], name: Option<&str>) -> Option<&'a str> {
    let name = name?;
    earlier
        .iter()
        .rev()
        .flat_map(|m| m.tool_calls.iter().rev())
        .find(|call| call.name == name)
        .map(|call| call.id.as_str())
}

/// "final assistant content cannot end with trailing whitespace": trim a prefill's last text.
fn trim_prefill(messages: &mut Vec<OutMessage<'_>>) {
    let Some(last) = messages.last_mut() else {
        return;
    };
    if last.role != "assistant" {
        return;
    }
    if let Some(OutBlock::Text { text }) = last.content.last_mut() {
        *text = text.trim_end();
        if text.is_empty() {
            last.content.pop();
        }
    }
    if last.content.is_empty() {
        messages.pop();
    }
}

fn out_tool(tool: &Tool) -> OutTool<'_> {
    OutTool {
        name: &tool.name,
        description: tool.description.as_deref(),
        input_schema: if tool.parameters.is_null() {
            InputSchema::Empty
        } else {
            InputSchema::Given(&tool.parameters)
        },
    }
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutThinking {
    Enabled { budget_tokens: u32 },
}

#[derive(Serialize)]
struct OutRequest<'a> {
    model: &'a str,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking: Option<OutThinking>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<OutSystem<'a>>,
    messages: Vec<OutMessage<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<OutTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<OutToolChoice<'a>>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop_sequences: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<OutMetadata<'a>>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum OutSystem<'a> {
    Text(&'a str),
    Blocks(Vec<OutBlock<'a>>),
}

#[derive(Serialize)]
struct OutMessage<'a> {
    role: &'static str,
    content: Vec<OutBlock<'a>>,
}

#[derive(Serialize)]
struct OutTool<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    input_schema: InputSchema<'a>,
}

/// A tool's schema; Anthropic requires one, so a tool without parameters gets an empty object.
enum InputSchema<'a> {
    Given(&'a Value),
    Empty,
}

impl Serialize for InputSchema<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            InputSchema::Given(value) => value.serialize(serializer),
            InputSchema::Empty => EmptyObjectSchema {
                kind: "object",
                properties: Map::new(),
            }
            .serialize(serializer),
        }
    }
}

#[derive(Serialize)]
struct EmptyObjectSchema {
    #[serde(rename = "type")]
    kind: &'static str,
    properties: Map<String, Value>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutToolChoice<'a> {
    Auto {
        #[serde(skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    Any {
        #[serde(skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    Tool {
        name: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    None,
}

#[derive(Serialize)]
struct OutMetadata<'a> {
    user_id: &'a str,
}

/// Parses a Messages API body (Anthropic-SDK ingress) into the unified model.
///
/// `user` turns holding `tool_result` blocks are split into one [`Role::Tool`] message per
/// result, followed by a [`Role::User`] message with the rest. Streaming requests ask for usage
/// (`include_usage`), since Anthropic streams always report it. `thinking` becomes the unified
/// reasoning, `top_k` top-k. Earlier turns' thinking blocks and `cache_control` marks (hints
/// another provider has no use for) are left out; server tools (`web_search_…`), non-url,
/// non-base64 image sources and any top-level field the unified model does not carry
/// (`service_tier`, `mcp_servers`, `container`, …) are [`RequestError::Unsupported`], so only an
/// Anthropic deployment serves such a request. For an Anthropic upstream the
/// gateway should relay the client's bytes instead (with `openai::splice_model`, which works on
/// any body with a top-level `model`), which keeps every field.
pub fn parse_request(body: &[u8]) -> Result<ChatRequest, RequestError> {
    let wire: InRequest = serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => RequestError::Invalid {
            param: None,
            message: e.to_string(),
        },
        _ => RequestError::Malformed(e.to_string()),
    })?;
    let model = match wire.model {
        None | Some(Value::Null) => return Err(RequestError::MissingModel),
        Some(Value::String(m)) if m.is_empty() => return Err(RequestError::MissingModel),
        Some(Value::String(m)) => m,
        Some(_) => return Err(RequestError::ModelNotString),
    };
    let wire_messages = wire.messages.ok_or(RequestError::Missing("messages"))?;
    let mut messages = Vec::with_capacity(wire_messages.len() + 1);
    match wire.system {
        None => {}
        Some(InSystem::Text(text)) if text.is_empty() => {}
        Some(InSystem::Text(text)) => messages.push(Message::text(Role::System, text)),
        Some(InSystem::Blocks(blocks)) => {
            let content: Vec<ContentPart> = blocks
                .into_iter()
                .filter_map(|b| b.text.map(ContentPart::Text))
                .collect();
            if !content.is_empty() {
                messages.push(Message {
                    content,
                    ..Message::text(Role::System, "")
                });
            }
        }
    }
    for m in wire_messages {
        match m.role {
            InRole::User => user_messages(m.content.into_blocks(), &mut messages)?,
            InRole::Assistant => messages.push(assistant_message(m.content.into_blocks())?),
        }
    }
    let tools = wire
        .tools
        .unwrap_or_default()
        .into_iter()
        .map(InTool::into_unified)
        .collect::<Result<Vec<_>, _>>()?;
    let (tool_choice, parallel_tool_calls) = match wire.tool_choice {
        None => (None, None),
        Some(choice) => {
            let parallel = choice
                .disable_parallel_tool_use
                .and_then(|d| d.then_some(false));
            let choice = match (choice.kind.as_str(), choice.name) {
                ("auto", _) => ToolChoice::Auto,
                ("any", _) => ToolChoice::Required,
                ("none", _) => ToolChoice::None,
                ("tool", Some(name)) => ToolChoice::Function(name),
                (other, _) => {
                    return Err(RequestError::Invalid {
                        param: Some("tool_choice"),
                        message: format!("tool_choice: unknown type '{other}' or missing name"),
                    });
                }
            };
            (Some(choice), parallel)
        }
    };
    if let Some(field) = wire.rest.keys().next() {
        return Err(RequestError::Unsupported(format!(
            "'{field}' has no equivalent outside Anthropic's Messages API; only an Anthropic \
             deployment can serve this request"
        )));
    }
    let reasoning = match wire.thinking {
        None => None,
        Some(InThinking::Enabled { budget_tokens }) => Some(Reasoning::Budget(budget_tokens)),
        Some(InThinking::Disabled) => Some(Reasoning::Off),
        Some(InThinking::Other) => {
            return Err(RequestError::Unsupported(
                "this kind of 'thinking' has no equivalent outside Anthropic's Messages API".into(),
            ));
        }
    };
    let stream = wire.stream.unwrap_or(false);
    Ok(ChatRequest {
        tools,
        tool_choice,
        parallel_tool_calls,
        max_tokens: wire.max_tokens,
        temperature: wire.temperature,
        top_p: wire.top_p,
        stop: wire.stop_sequences.unwrap_or_default(),
        stream,
        include_usage: stream,
        user: wire.metadata.and_then(|m| m.user_id),
        top_k: wire.top_k,
        reasoning,
        ..ChatRequest::new(model, messages)
    })
}

fn unsupported_image() -> RequestError {
    RequestError::Unsupported("only base64 and url image sources can be translated".into())
}

fn user_messages(blocks: Vec<InBlock>, out: &mut Vec<Message>) -> Result<(), RequestError> {
    let mut pending: Vec<ContentPart> = Vec::new();
    for block in blocks {
        match block {
            InBlock::Text { text } => pending.push(ContentPart::Text(text)),
            InBlock::Image { source } => pending.push(ContentPart::Image {
                source: source.into_unified().ok_or_else(unsupported_image)?,
            }),
            InBlock::ToolResult {
                tool_use_id,
                content,
            } => {
                if !pending.is_empty() {
                    out.push(Message {
                        content: std::mem::take(&mut pending),
                        ..Message::text(Role::User, "")
                    });
                }
                let content = match content {
                    None => Vec::new(),
                    Some(content) => parts(content.into_blocks())?,
                };
                out.push(Message {
                    content,
                    tool_call_id: Some(tool_use_id),
                    ..Message::text(Role::Tool, "")
                });
            }
            InBlock::ToolUse { .. } | InBlock::Other => {}
        }
    }
    if !pending.is_empty() {
        out.push(Message {
            content: pending,
            ..Message::text(Role::User, "")
        });
    }
    Ok(())
}

fn parts(blocks: Vec<InBlock>) -> Result<Vec<ContentPart>, RequestError> {
    let mut out = Vec::with_capacity(blocks.len());
    for block in blocks {
        match block {
            InBlock::Text { text } => out.push(ContentPart::Text(text)),
            InBlock::Image { source } => out.push(ContentPart::Image {
                source: source.into_unified().ok_or_else(unsupported_image)?,
            }),
            _ => {}
        }
    }
    Ok(out)
}

fn assistant_message(blocks: Vec<InBlock>) -> Result<Message, RequestError> {
    let mut message = Message {
        content: Vec::new(),
        ..Message::text(Role::Assistant, "")
    };
    for block in blocks {
        match block {
            InBlock::Text { text } => message.content.push(ContentPart::Text(text)),
            InBlock::Image { source } => message.content.push(ContentPart::Image {
                source: source.into_unified().ok_or_else(unsupported_image)?,
            }),
            InBlock::ToolUse { id, name, input } => message.tool_calls.push(ToolCall {
                id,
                name,
                arguments: arguments_text(&input),
            }),
            InBlock::ToolResult { .. } | InBlock::Other => {}
        }
    }
    Ok(message)
}

#[derive(Deserialize)]
struct InRequest {
    #[serde(default)]
    model: Option<Value>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    system: Option<InSystem>,
    #[serde(default)]
    messages: Option<Vec<InMessage>>,
    #[serde(default)]
    tools: Option<Vec<InTool>>,
    #[serde(default)]
    tool_choice: Option<InToolChoice>,
    #[serde(default)]
    stop_sequences: Option<Vec<String>>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    metadata: Option<InMetadata>,
    #[serde(default)]
    thinking: Option<InThinking>,
    #[serde(default)]
    top_k: Option<u32>,
    /// Every other top-level field: none can be translated.
    #[serde(flatten)]
    rest: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum InThinking {
    Enabled {
        budget_tokens: u32,
    },
    Disabled,
    /// A kind of thinking newer than this codec: only Anthropic can serve it.
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum InSystem {
    Text(String),
    Blocks(Vec<InSystemBlock>),
}

#[derive(Deserialize)]
struct InSystemBlock {
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
struct InMessage {
    role: InRole,
    content: InContent,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum InRole {
    User,
    Assistant,
}

#[derive(Deserialize)]
struct InTool {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    input_schema: Option<Value>,
}

impl InTool {
    fn into_unified(self) -> Result<Tool, RequestError> {
        match self.kind.as_deref() {
            None | Some("custom") => Ok(Tool {
                name: self.name,
                description: self.description,
                parameters: self.input_schema.unwrap_or(Value::Null),
                strict: None,
            }),
            Some(other) => Err(RequestError::Unsupported(format!(
                "Anthropic server tools ('{other}') cannot be translated to another dialect"
            ))),
        }
    }
}

#[derive(Deserialize)]
struct InToolChoice {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    disable_parallel_tool_use: Option<bool>,
}

#[derive(Deserialize)]
struct InMetadata {
    #[serde(default)]
    user_id: Option<String>,
}
