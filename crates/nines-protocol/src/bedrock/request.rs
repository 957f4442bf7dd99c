//! [`ChatRequest`] → Converse body.
//!
//! Turns of one role are merged (Converse wants `user` and `assistant` to alternate, and all
//! results of one multi-call turn in one `user` turn). Images go as inline bytes. Routing keeps
//! away what Converse cannot take (see [`super::CAPABILITIES`]): an image given only by URL
//! (Converse fetches nothing), `tool_choice: none` beside earlier tool calls, `seed`, the
//! penalties; `user` and `metadata` are hints with no Converse field and are not sent.

use crate::json::{self, RawArgs};
use crate::unified::{ChatRequest, ContentPart, ImageSource, Message, Role, ToolChoice};
use serde::Serialize;
use serde_json::Value;

/// Encodes a unified request as a Converse / ConverseStream body. The model is in the path; see
/// [`super::converse_path`].
pub fn encode_request(request: &ChatRequest) -> Vec<u8> {
    let system: Vec<OutBlock<'_>> = request
        .messages
        .iter()
        .filter(|m| m.role == Role::System)
        .flat_map(|m| &m.content)
        .filter_map(|p| match p {
            ContentPart::Text(text) if !text.is_empty() => Some(OutBlock::Text(text)),
            _ => None,
        })
        .collect();
    // Converse has no "none" choice: the tools are left out instead, which is what "none" asks.
    // A history holding tool calls needs the `toolConfig` (Converse refuses it otherwise), and
    // such a request never reaches Converse with "none" (routing requires `TOOL_CHOICE_NONE`).
    let tool_config = (!request.tools.is_empty()
        && (request.tool_choice != Some(ToolChoice::None) || request.history_has_tool_calls()))
    .then(|| OutToolConfig {
        tools: request
            .tools
            .iter()
            .map(|t| OutTool {
                tool_spec: OutToolSpec {
                    name: &t.name,
                    description: t.description.as_deref(),
                    input_schema: OutSchema {
                        json: &t.parameters,
                    },
                },
            })
            .collect(),
        tool_choice: match &request.tool_choice {
            Some(ToolChoice::Required) => Some(OutToolChoice::Any {}),
            Some(ToolChoice::Function(name)) => Some(OutToolChoice::Tool { name }),
            _ => None,
        },
    });
    let inference = OutInference {
        max_tokens: request.max_tokens,
        temperature: request.temperature,
        top_p: request.top_p,
        stop_sequences: &request.stop,
    };
    let out = OutRequest {
        messages: messages(&request.messages),
        system,
        inference_config: (!inference.is_empty()).then_some(inference),
        tool_config,
    };
    json::to_vec(&out)
}

fn messages(messages: &[Message]) -> Vec<OutMessage<'_>> {
    let mut out: Vec<OutMessage<'_>> = Vec::with_capacity(messages.len());
    for m in messages {
        let (role, content): (&str, Vec<OutBlock<'_>>) = match m.role {
            Role::System => continue,
            Role::User => ("user", m.content.iter().filter_map(out_block).collect()),
            Role::Assistant => {
                let mut blocks: Vec<OutBlock<'_>> =
                    m.content.iter().filter_map(out_block).collect();
                blocks.extend(m.tool_calls.iter().map(|call| {
                    OutBlock::ToolUse(OutToolUse {
                        tool_use_id: &call.id,
                        name: &call.name,
                        input: RawArgs::new(&call.arguments),
                    })
                }));
                ("assistant", blocks)
            }
            Role::Tool => {
                let result = OutToolResult {
                    tool_use_id: m.tool_call_id.as_deref().unwrap_or_default(),
                    content: vec![OutResultContent {
                        text: m.joined_text(),
                    }],
                };
                ("user", vec![OutBlock::ToolResult(result)])
            }
        };
        if content.is_empty() {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.role == role => last.content.extend(content),
            _ => out.push(OutMessage { role, content }),
        }
    }
    out
}

fn out_block(part: &ContentPart) -> Option<OutBlock<'_>> {
    match part {
        ContentPart::Text(text) if text.is_empty() => None,
        ContentPart::Text(text) => Some(OutBlock::Text(text)),
        ContentPart::Image {
            source: ImageSource::Base64 { media_type, data },
        } => Some(OutBlock::Image(OutImage {
            format: media_type.strip_prefix("image/").unwrap_or(media_type),
            source: OutImageSource { bytes: data },
        })),
        // Unreachable through routing (`IMAGE_URLS`); a direct caller gets no image, not a panic.
        ContentPart::Image {
            source: ImageSource::Url(_),
        } => None,
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutRequest<'a> {
    messages: Vec<OutMessage<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    system: Vec<OutBlock<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    inference_config: Option<OutInference<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_config: Option<OutToolConfig<'a>>,
}

#[derive(Serialize)]
struct OutMessage<'a> {
    role: &'a str,
    content: Vec<OutBlock<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum OutBlock<'a> {
    Text(&'a str),
    Image(OutImage<'a>),
    ToolUse(OutToolUse<'a>),
    ToolResult(OutToolResult<'a>),
}

#[derive(Serialize)]
struct OutImage<'a> {
    format: &'a str,
    source: OutImageSource<'a>,
}

#[derive(Serialize)]
struct OutImageSource<'a> {
    /// Base64 text: the JSON protocol carries blobs base64-encoded.
    bytes: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutToolUse<'a> {
    tool_use_id: &'a str,
    name: &'a str,
    input: RawArgs<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutToolResult<'a> {
    tool_use_id: &'a str,
    content: Vec<OutResultContent>,
}

#[derive(Serialize)]
struct OutResultContent {
    text: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutInference<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop_sequences: &'a [String],
}

impl OutInference<'_> {
    fn is_empty(&self) -> bool {
        self.max_tokens.is_none()
            && self.temperature.is_none()
            && self.top_p.is_none()
            && self.stop_sequences.is_empty()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutToolConfig<'a> {
    tools: Vec<OutTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<OutToolChoice<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutTool<'a> {
    tool_spec: OutToolSpec<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutToolSpec<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    input_schema: OutSchema<'a>,
}

#[derive(Serialize)]
struct OutSchema<'a> {
    /// Null (no parameters) is sent as the empty object schema.
    #[serde(serialize_with = "schema_or_empty")]
    json: &'a Value,
}

fn schema_or_empty<S: serde::Serializer>(value: &&Value, serializer: S) -> Result<S::Ok, S::Error> {
    if value.is_null() {
        serde_json::json!({"type": "object"}).serialize(serializer)
    } else {
        value.serialize(serializer)
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum OutToolChoice<'a> {
    Any {},
    Tool { name: &'a str },
}
