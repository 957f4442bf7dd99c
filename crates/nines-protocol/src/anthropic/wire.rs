//! Anthropic content blocks and usage, shared by requests, responses and streams.

use crate::json::{self, RawArgs};
use crate::unified::{ContentPart, ImageSource, Usage};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::borrow::Cow;

/// A tool-call id as Anthropic accepts it (`^[a-zA-Z0-9_-]+$`): ids minted by other providers
/// (Gemini's carry a base64 thought signature) get every other character replaced by `_`, the
/// same way for the call and its result, so the pair still matches.
pub(super) fn tool_id(id: &str) -> Cow<'_, str> {
    let ok = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if !id.is_empty() && id.chars().all(ok) {
        Cow::Borrowed(id)
    } else if id.is_empty() {
        Cow::Borrowed("toolu_none")
    } else {
        Cow::Owned(id.chars().map(|c| if ok(c) { c } else { '_' }).collect())
    }
}

/// A message id as Anthropic's clients expect one (`msg_…`): another provider's id
/// (`chatcmpl-…`, a Gemini response id) keeps its characters behind the prefix (any outside
/// `[A-Za-z0-9_-]` replaced by `_`), so it can still be traced back.
pub(super) fn message_id(id: &str) -> Cow<'_, str> {
    if id.starts_with("msg_") {
        return Cow::Borrowed(id);
    }
    if id.is_empty() {
        return Cow::Borrowed("msg_nines");
    }
    let ok = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let body: String = id.chars().map(|c| if ok(c) { c } else { '_' }).collect();
    Cow::Owned(format!("msg_{body}"))
}

/// `content`: a string or an array of blocks.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum InContent {
    Text(String),
    Blocks(Vec<InBlock>),
}

impl InContent {
    pub(super) fn into_blocks(self) -> Vec<InBlock> {
        match self {
            InContent::Text(text) if text.is_empty() => Vec::new(),
            InContent::Text(text) => vec![InBlock::Text { text }],
            InContent::Blocks(blocks) => blocks,
        }
    }
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum InBlock {
    Text {
        text: String,
    },
    Image {
        source: InImageSource,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Value,
    },
    ToolResult {
        tool_use_id: String,
        #[serde(default)]
        content: Option<InContent>,
    },
    /// Thinking, documents, server tools: nothing the unified model carries.
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum InImageSource {
    Base64 {
        media_type: String,
        data: String,
    },
    Url {
        url: String,
    },
    #[serde(other)]
    Other,
}

impl InImageSource {
    pub(super) fn into_unified(self) -> Option<ImageSource> {
        match self {
            InImageSource::Base64 { media_type, data } => {
                Some(ImageSource::Base64 { media_type, data })
            }
            InImageSource::Url { url } => Some(ImageSource::Url(url)),
            InImageSource::Other => None,
        }
    }
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum OutBlock<'a> {
    Text {
        text: &'a str,
    },
    Image {
        source: OutImageSource<'a>,
    },
    ToolUse {
        id: Cow<'a, str>,
        name: &'a str,
        input: RawArgs<'a>,
    },
    ToolResult {
        tool_use_id: Cow<'a, str>,
        #[serde(skip_serializing_if = "OutToolResult::is_empty")]
        content: OutToolResult<'a>,
    },
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum OutImageSource<'a> {
    Base64 { media_type: &'a str, data: &'a str },
    Url { url: &'a str },
}

/// A `tool_result`'s content: a string for one text part, blocks otherwise, nothing when empty.
pub(super) enum OutToolResult<'a> {
    Text(&'a str),
    Blocks(Vec<OutBlock<'a>>),
}

impl OutToolResult<'_> {
    fn is_empty(&self) -> bool {
        matches!(self, OutToolResult::Blocks(b) if b.is_empty())
    }
}

impl Serialize for OutToolResult<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            OutToolResult::Text(text) => serializer.serialize_str(text),
            OutToolResult::Blocks(blocks) => blocks.serialize(serializer),
        }
    }
}

/// A unified content part as a block; empty text has no block (Anthropic rejects it).
pub(super) fn out_part(part: &ContentPart) -> Option<OutBlock<'_>> {
    match part {
        ContentPart::Text(text) if text.is_empty() => None,
        ContentPart::Text(text) => Some(OutBlock::Text { text }),
        ContentPart::Image { source } => Some(OutBlock::Image {
            source: match source {
                ImageSource::Url(url) => OutImageSource::Url { url },
                ImageSource::Base64 { media_type, data } => {
                    OutImageSource::Base64 { media_type, data }
                }
            },
        }),
    }
}

pub(super) fn out_tool_result(content: &[ContentPart]) -> OutToolResult<'_> {
    match content {
        [ContentPart::Text(text)] if !text.is_empty() => OutToolResult::Text(text),
        parts => OutToolResult::Blocks(parts.iter().filter_map(out_part).collect()),
    }
}

/// Tool-use input as arguments text.
pub(super) fn arguments_text(input: &Value) -> String {
    json::value_text(input)
}

/// Anthropic usage: the three prompt counts are disjoint.
#[derive(Debug, Default, Clone, Copy, Deserialize, Serialize, PartialEq)]
pub(super) struct WireUsage {
    #[serde(default)]
    pub(super) input_tokens: Option<u64>,
    #[serde(default)]
    pub(super) output_tokens: Option<u64>,
    #[serde(default)]
    pub(super) cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    pub(super) cache_read_input_tokens: Option<u64>,
}

impl WireUsage {
    pub(super) fn into_unified(self) -> Usage {
        let read = self.cache_read_input_tokens.unwrap_or(0);
        let write = self.cache_creation_input_tokens.unwrap_or(0);
        Usage {
            // Saturating: an upstream's absurd counts must not wrap (found by the fuzzer).
            input_tokens: self
                .input_tokens
                .unwrap_or(0)
                .saturating_add(read)
                .saturating_add(write),
            output_tokens: self.output_tokens.unwrap_or(0),
            cache_read_tokens: read,
            cache_write_tokens: write,
        }
    }

    pub(super) fn from_unified(usage: &Usage) -> Self {
        WireUsage {
            input_tokens: Some(
                usage.input_tokens.saturating_sub(
                    usage
                        .cache_read_tokens
                        .saturating_add(usage.cache_write_tokens),
                ),
            ),
            output_tokens: Some(usage.output_tokens),
            cache_creation_input_tokens: Some(usage.cache_write_tokens),
            cache_read_input_tokens: Some(usage.cache_read_tokens),
        }
    }

    /// Fields present in `later` replace ours (a `message_delta` updates `message_start`'s).
    pub(super) fn update(&mut self, later: WireUsage) {
        self.input_tokens = later.input_tokens.or(self.input_tokens);
        self.output_tokens = later.output_tokens.or(self.output_tokens);
        self.cache_creation_input_tokens = later
            .cache_creation_input_tokens
            .or(self.cache_creation_input_tokens);
        self.cache_read_input_tokens = later
            .cache_read_input_tokens
            .or(self.cache_read_input_tokens);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_usage_counts_saturate_instead_of_wrapping() {
        let wire = WireUsage {
            input_tokens: Some(u64::MAX),
            output_tokens: Some(1),
            cache_creation_input_tokens: Some(u64::MAX),
            cache_read_input_tokens: Some(2),
        };
        let usage = wire.into_unified();
        assert_eq!(usage.input_tokens, u64::MAX);
        assert_eq!(usage.total_tokens(), u64::MAX);
        let back = WireUsage::from_unified(&usage);
        assert_eq!(back.input_tokens, Some(0));
    }
}
