//! The OpenAI `chat.completion` object: upstream body → [`ChatResponse`], and back for clients of
//! the OpenAI dialect served by an upstream of another.

use super::wire::{OutContent, OutToolCalls, WireContent, WireToolCall, WireUsage};
use crate::json;
use crate::unified::{ChatResponse, Choice, DecodeError, FinishReason, Message, Role};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

/// Decodes an OpenAI `chat.completion` body.
pub fn decode_chat_response(body: &[u8]) -> Result<ChatResponse, DecodeError> {
    let wire: WireResponse = serde_json::from_slice(body)
        .map_err(|e| DecodeError::new("openai", "chat completion", e.to_string()))?;
    let choices = wire
        .choices
        .into_iter()
        .enumerate()
        .map(|(position, c)| {
            let mut content = match c.message.content {
                Some(content) => content
                    .into_parts()
                    .map_err(|e| DecodeError::new("openai", "chat completion", e.to_string()))?,
                None => Vec::new(),
            };
            if content.is_empty()
                && let Some(refusal) = c.message.refusal.filter(|r| !r.is_empty())
            {
                content.push(crate::unified::ContentPart::Text(refusal));
            }
            Ok(Choice {
                index: c.index.unwrap_or(position as u32),
                message: Message {
                    role: Role::Assistant,
                    content,
                    tool_calls: c
                        .message
                        .tool_calls
                        .unwrap_or_default()
                        .into_iter()
                        .map(WireToolCall::into_unified)
                        .collect(),
                    tool_call_id: None,
                    name: None,
                },
                finish_reason: c.finish_reason.as_deref().and_then(finish_reason),
            })
        })
        .collect::<Result<Vec<_>, DecodeError>>()?;
    Ok(ChatResponse {
        id: wire.id,
        model: wire.model,
        created: wire.created,
        choices,
        usage: wire.usage.map(WireUsage::into_unified),
    })
}

/// Encodes a unified response as an OpenAI `chat.completion` body. Text parts of a message are
/// joined into one string, since OpenAI answers carry one.
pub fn encode_chat_response(response: &ChatResponse) -> Vec<u8> {
    let usage = response.usage.as_ref().map(WireUsage::from_unified);
    let joined: Vec<Message> = response
        .choices
        .iter()
        .map(|c| joined_message(&c.message))
        .collect();
    let out = OutResponse {
        id: &response.id,
        object: "chat.completion",
        created: response.created,
        model: &response.model,
        choices: response
            .choices
            .iter()
            .zip(&joined)
            .map(|(c, message)| OutChoice {
                index: c.index,
                message: OutAssistant(message),
                logprobs: None,
                finish_reason: c.finish_reason.map(FinishReason::as_str),
            })
            .collect(),
        usage,
    };
    json::to_vec(&out)
}

/// OpenAI's finish reasons; unknown ones (vLLM's `abort`, a provider's `eos`) end normally.
pub(super) fn finish_reason(reason: &str) -> Option<FinishReason> {
    Some(match reason {
        "stop" => FinishReason::Stop,
        "length" => FinishReason::Length,
        "tool_calls" | "function_call" => FinishReason::ToolCalls,
        "content_filter" => FinishReason::ContentFilter,
        "" => return None,
        _ => FinishReason::Stop,
    })
}

fn joined_message(message: &Message) -> Message {
    let text = message.joined_text();
    Message {
        role: Role::Assistant,
        content: if text.is_empty() {
            Vec::new()
        } else {
            vec![crate::unified::ContentPart::Text(text)]
        },
        tool_calls: message.tool_calls.clone(),
        tool_call_id: None,
        name: None,
    }
}

#[derive(Deserialize)]
struct WireResponse {
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    created: u64,
    choices: Vec<WireChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireChoice {
    #[serde(default)]
    index: Option<u32>,
    message: WireMessage,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    content: Option<WireContent>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCall>>,
    #[serde(default)]
    refusal: Option<String>,
}

#[derive(Serialize)]
struct OutResponse<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<OutChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<WireUsage>,
}

#[derive(Serialize)]
struct OutChoice<'a> {
    index: u32,
    message: OutAssistant<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

struct OutAssistant<'a>(&'a Message);

impl Serialize for OutAssistant<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let m = self.0;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("role", "assistant")?;
        map.serialize_entry("content", &OutContent(m))?;
        if !m.tool_calls.is_empty() {
            map.serialize_entry("tool_calls", &OutToolCalls(&m.tool_calls))?;
        }
        map.serialize_entry("refusal", &None::<()>)?;
        map.end()
    }
}
