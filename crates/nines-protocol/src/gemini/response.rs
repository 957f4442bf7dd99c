//! Gemini `GenerateContentResponse` → [`ChatResponse`]; the wire types here are shared with the
//! stream decoder, whose every chunk is one such response.

use crate::json::{self, Str};
use crate::unified::{
    ChatResponse, Choice, ContentPart, DecodeError, FinishReason, Message, Role, ToolCall, Usage,
};
use serde::Deserialize;
use serde_json::Value;

/// Decodes a `generateContent` response. A prompt blocked before any candidate
/// (`promptFeedback.blockReason`) is one empty choice finished by
/// [`FinishReason::ContentFilter`]. `created` is 0 (Gemini does not report it) and `model` is
/// `modelVersion`.
pub fn decode_response(body: &[u8]) -> Result<ChatResponse, DecodeError> {
    let wire: InResponse<'_> = serde_json::from_slice(body)
        .map_err(|e| DecodeError::new("gemini", "response", e.to_string()))?;
    if let Some(error) = wire.error {
        return Err(DecodeError::new(
            "gemini",
            "response",
            format!("error body: {error}"),
        ));
    }
    let mut choices = Vec::with_capacity(wire.candidates.len().max(1));
    for (position, candidate) in wire.candidates.into_iter().enumerate() {
        let mut message = Message {
            content: Vec::new(),
            ..Message::text(Role::Assistant, "")
        };
        for part in candidate.content.map(|c| c.parts).unwrap_or_default() {
            if part.thought == Some(true) {
                continue;
            }
            if let Some(text) = part.text {
                match message.content.last_mut() {
                    Some(ContentPart::Text(last)) => last.push_str(&text),
                    _ => message.content.push(ContentPart::Text(text.into_owned())),
                }
            }
            if let Some(call) = part.function_call {
                let n = message.tool_calls.len();
                let signature = part.thought_signature.as_deref();
                message.tool_calls.push(call.into_unified(n, signature));
            }
        }
        let has_calls = !message.tool_calls.is_empty();
        choices.push(Choice {
            index: candidate.index.unwrap_or(position as u32),
            message,
            finish_reason: candidate
                .finish_reason
                .as_deref()
                .and_then(|r| finish_reason(r, has_calls)),
        });
    }
    let blocked = wire.prompt_feedback.and_then(|f| f.block_reason).is_some();
    if choices.is_empty() && blocked {
        choices.push(Choice {
            index: 0,
            message: Message {
                content: Vec::new(),
                ..Message::text(Role::Assistant, "")
            },
            finish_reason: Some(FinishReason::ContentFilter),
        });
    }
    Ok(ChatResponse {
        id: wire.response_id.map(Str::into_owned).unwrap_or_default(),
        model: wire.model_version.map(Str::into_owned).unwrap_or_default(),
        created: 0,
        choices,
        usage: wire.usage_metadata.map(InUsage::into_unified),
    })
}

/// Gemini's `finishReason` in unified terms. Gemini ends a turn of function calls with `STOP`, so
/// `has_calls` turns that into [`FinishReason::ToolCalls`]. Safety stops of every flavour are
/// [`FinishReason::ContentFilter`]; `FINISH_REASON_UNSPECIFIED` is no reason; anything else
/// (`OTHER`, `MALFORMED_FUNCTION_CALL`, a reason added later) ends normally.
pub fn finish_reason(reason: &str, has_calls: bool) -> Option<FinishReason> {
    Some(match reason {
        "STOP" if has_calls => FinishReason::ToolCalls,
        "STOP" => FinishReason::Stop,
        "MAX_TOKENS" => FinishReason::Length,
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY"
        | "LANGUAGE" => FinishReason::ContentFilter,
        "FINISH_REASON_UNSPECIFIED" | "" => return None,
        _ if has_calls => FinishReason::ToolCalls,
        _ => FinishReason::Stop,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct InResponse<'a> {
    #[serde(borrow, default)]
    pub(super) candidates: Vec<InCandidate<'a>>,
    #[serde(borrow, default)]
    pub(super) prompt_feedback: Option<InPromptFeedback<'a>>,
    #[serde(default)]
    pub(super) usage_metadata: Option<InUsage>,
    #[serde(borrow, default)]
    pub(super) model_version: Option<Str<'a>>,
    #[serde(borrow, default)]
    pub(super) response_id: Option<Str<'a>>,
    #[serde(default)]
    pub(super) error: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct InCandidate<'a> {
    #[serde(borrow, default)]
    pub(super) content: Option<InContent<'a>>,
    #[serde(borrow, default)]
    pub(super) finish_reason: Option<Str<'a>>,
    #[serde(default)]
    pub(super) index: Option<u32>,
}

#[derive(Deserialize)]
pub(super) struct InContent<'a> {
    #[serde(borrow, default)]
    pub(super) parts: Vec<InPart<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct InPart<'a> {
    #[serde(borrow, default)]
    pub(super) text: Option<Str<'a>>,
    #[serde(default)]
    pub(super) thought: Option<bool>,
    #[serde(borrow, default)]
    pub(super) function_call: Option<InFunctionCall<'a>>,
    #[serde(borrow, default)]
    pub(super) thought_signature: Option<Str<'a>>,
}

#[derive(Deserialize)]
pub(super) struct InFunctionCall<'a> {
    #[serde(borrow, default)]
    pub(super) id: Option<Str<'a>>,
    #[serde(borrow)]
    pub(super) name: Str<'a>,
    #[serde(default)]
    pub(super) args: Value,
}

impl InFunctionCall<'_> {
    /// The call with Gemini's id when it gave one, else `call_{n}`; a thought signature rides
    /// along in the id (see [`super::signature_of`]).
    pub(super) fn into_unified(self, n: usize, signature: Option<&str>) -> ToolCall {
        let mut id = self
            .id
            .filter(|id| !id.is_empty())
            .map_or_else(|| format!("call_{n}"), Str::into_owned);
        if let Some(signature) = signature.filter(|s| !s.is_empty()) {
            id.push_str(super::SIGNATURE_SEPARATOR);
            id.push_str(signature);
        }
        ToolCall {
            id,
            name: self.name.into_owned(),
            arguments: json::value_text(&self.args),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct InPromptFeedback<'a> {
    #[serde(borrow, default)]
    pub(super) block_reason: Option<Str<'a>>,
}

#[derive(Deserialize, Clone, Copy, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct InUsage {
    #[serde(default)]
    prompt_token_count: u64,
    #[serde(default)]
    candidates_token_count: u64,
    #[serde(default)]
    cached_content_token_count: u64,
    #[serde(default)]
    thoughts_token_count: u64,
}

impl InUsage {
    /// Thinking tokens are billed as output, so they count as output here.
    pub(super) fn into_unified(self) -> Usage {
        Usage {
            input_tokens: self.prompt_token_count,
            output_tokens: self.candidates_token_count + self.thoughts_token_count,
            cache_read_tokens: self.cached_content_token_count,
            cache_write_tokens: 0,
        }
    }
}
