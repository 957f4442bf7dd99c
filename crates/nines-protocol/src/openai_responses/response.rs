//! A whole answer as a Responses `response` object, and the pieces of it the stream encoder
//! reuses (output items, usage, status).

use crate::json;
use crate::unified::{ChatResponse, ContentPart, FinishReason, Usage};
use serde::Serialize;

/// `resp_…` for an upstream's answer id: OpenAI clients (and the SDKs' types) expect the prefix,
/// and an id made of the upstream's keeps it traceable. Only ASCII letters, digits, `_` and `-`
/// are kept.
pub fn response_id(upstream_id: &str) -> String {
    let bare = upstream_id
        .strip_prefix("resp_")
        .or_else(|| upstream_id.strip_prefix("chatcmpl-"))
        .or_else(|| upstream_id.strip_prefix("msg_"))
        .unwrap_or(upstream_id);
    let mut id = String::with_capacity(bare.len() + 5);
    id.push_str("resp_");
    id.extend(
        bare.chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-'),
    );
    if id.len() == 5 {
        id.push_str("nines");
    }
    id
}

/// What a response says about itself beyond its output: its id, clock and model.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseMeta {
    pub id: String,
    pub created_at: u64,
    pub model: String,
}

/// Encodes a complete unified answer (its first choice) as a Responses `response` object.
pub fn encode_response(response: &ChatResponse) -> Vec<u8> {
    let meta = ResponseMeta {
        id: response_id(&response.id),
        created_at: response.created,
        model: response.model.clone(),
    };
    let mut items = Vec::new();
    let mut finish = None;
    if let Some(choice) = response.choices.first() {
        finish = choice.finish_reason;
        let text: String = choice
            .message
            .content
            .iter()
            .filter_map(|p| match p {
                ContentPart::Text(t) => Some(t.as_str()),
                ContentPart::Image { .. } => None,
            })
            .collect();
        if !text.is_empty() || choice.message.tool_calls.is_empty() {
            items.push(OutputItem::message(&meta.id, 0, text, Status::Completed));
        }
        for call in &choice.message.tool_calls {
            items.push(OutputItem::function_call(
                &call.id,
                &call.name,
                call.arguments.clone(),
                Status::Completed,
            ));
        }
    }
    json::to_vec(&WireResponse::new(
        &meta,
        finish,
        &items,
        response.usage.as_ref(),
    ))
}

/// The lifecycle state of a response or of one output item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Status {
    InProgress,
    Completed,
    Incomplete,
    Failed,
}

/// One element of `output`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum OutputItem {
    Message {
        id: String,
        status: Status,
        role: &'static str,
        content: Vec<OutputText>,
    },
    FunctionCall {
        id: String,
        call_id: String,
        name: String,
        arguments: String,
        status: Status,
    },
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct OutputText {
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
    pub(super) text: String,
    pub(super) annotations: [(); 0],
}

impl OutputText {
    pub(super) fn new(text: String) -> Self {
        OutputText {
            kind: "output_text",
            text,
            annotations: [],
        }
    }
}

impl OutputItem {
    /// A message item; `index` tells apart several messages of one response.
    pub(super) fn message(response_id: &str, index: usize, text: String, status: Status) -> Self {
        let bare = response_id.strip_prefix("resp_").unwrap_or(response_id);
        OutputItem::Message {
            id: format!("msg_{bare}_{index}"),
            status,
            role: "assistant",
            content: if status == Status::InProgress {
                Vec::new()
            } else {
                vec![OutputText::new(text)]
            },
        }
    }

    pub(super) fn function_call(
        call_id: &str,
        name: &str,
        arguments: String,
        status: Status,
    ) -> Self {
        OutputItem::FunctionCall {
            id: format!("fc_{}", call_id.strip_prefix("call_").unwrap_or(call_id)),
            call_id: call_id.to_owned(),
            name: name.to_owned(),
            arguments,
            status,
        }
    }

    pub(super) fn id(&self) -> &str {
        match self {
            OutputItem::Message { id, .. } | OutputItem::FunctionCall { id, .. } => id,
        }
    }
}

/// The `response` object; `output` and `usage` borrowed from whoever assembled them.
#[derive(Serialize)]
pub(super) struct WireResponse<'a> {
    id: &'a str,
    object: &'static str,
    created_at: u64,
    status: Status,
    error: Option<WireError<'a>>,
    incomplete_details: Option<Incomplete>,
    model: &'a str,
    output: &'a [OutputItem],
    parallel_tool_calls: bool,
    tool_choice: &'static str,
    tools: [(); 0],
    usage: Option<WireUsage>,
}

#[derive(Serialize)]
pub(super) struct WireError<'a> {
    pub(super) code: &'a str,
    pub(super) message: &'a str,
}

#[derive(Serialize)]
struct Incomplete {
    reason: &'static str,
}

impl<'a> WireResponse<'a> {
    /// A finished response: `completed`, or `incomplete` when the output was cut short.
    pub(super) fn new(
        meta: &'a ResponseMeta,
        finish: Option<FinishReason>,
        output: &'a [OutputItem],
        usage: Option<&Usage>,
    ) -> Self {
        let incomplete = match finish {
            Some(FinishReason::Length) => Some("max_output_tokens"),
            Some(FinishReason::ContentFilter) => Some("content_filter"),
            _ => None,
        };
        WireResponse {
            id: &meta.id,
            object: "response",
            created_at: meta.created_at,
            status: if incomplete.is_some() {
                Status::Incomplete
            } else {
                Status::Completed
            },
            error: None,
            incomplete_details: incomplete.map(|reason| Incomplete { reason }),
            model: &meta.model,
            output,
            parallel_tool_calls: true,
            tool_choice: "auto",
            tools: [],
            usage: usage.map(WireUsage::from_unified),
        }
    }

    /// A response still being written (`response.created`, `response.in_progress`).
    pub(super) fn in_progress(meta: &'a ResponseMeta) -> Self {
        WireResponse {
            status: Status::InProgress,
            ..WireResponse::new(meta, None, &[], None)
        }
    }

    /// A response that ended in an error (`response.failed`).
    pub(super) fn failed(
        meta: &'a ResponseMeta,
        output: &'a [OutputItem],
        error: WireError<'a>,
    ) -> Self {
        WireResponse {
            status: Status::Failed,
            error: Some(error),
            ..WireResponse::new(meta, None, output, None)
        }
    }

    pub(super) fn status(&self) -> Status {
        self.status
    }
}

#[derive(Serialize)]
struct WireUsage {
    input_tokens: u64,
    input_tokens_details: CachedTokens,
    output_tokens: u64,
    output_tokens_details: ReasoningTokens,
    total_tokens: u64,
}

#[derive(Serialize)]
struct CachedTokens {
    cached_tokens: u64,
}

#[derive(Serialize)]
struct ReasoningTokens {
    reasoning_tokens: u64,
}

impl WireUsage {
    fn from_unified(u: &Usage) -> Self {
        WireUsage {
            input_tokens: u.input_tokens,
            input_tokens_details: CachedTokens {
                cached_tokens: u.cache_read_tokens,
            },
            output_tokens: u.output_tokens,
            output_tokens_details: ReasoningTokens {
                reasoning_tokens: 0,
            },
            total_tokens: u.total_tokens(),
        }
    }
}
