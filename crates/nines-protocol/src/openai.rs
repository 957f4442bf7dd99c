//! OpenAI chat-completions and embeddings: the few fields nines reads to route a request, the
//! splice that rewrites `model` without re-serialising the rest of the body, and (in the child
//! modules) the full typed codec to and from the [unified model](crate::unified) that
//! cross-dialect requests go through.
//!
//! | direction | request | response | stream | errors |
//! |---|---|---|---|---|
//! | client → nines | [`parse_chat_request`], [`parse_embeddings_request`] | [`encode_chat_response`], [`encode_embeddings_response`] | [`ChunkEncoder`] | `ErrorBody` |
//! | nines → upstream | [`encode_chat_request`], [`encode_embeddings_request`] | [`decode_chat_response`], [`decode_embeddings_response`] | [`ChunkDecoder`] | [`parse_error`] |
//!
//! The gateway forwards an OpenAI-shaped body to an OpenAI-compatible upstream byte for byte except
//! for the `model` value. Parsing into [`ChatHead`] validates the whole document (serde walks every
//! value) but keeps only borrowed views, so unknown fields pass through untouched and nothing is
//! re-encoded.

mod chat;
mod chat_encode;
mod embeddings;
mod errors;
mod response;
mod stream;
mod wire;

pub use chat::parse_chat_request;
pub use chat_encode::encode_chat_request;
pub use embeddings::{
    decode_embeddings_response, encode_embeddings_request, encode_embeddings_response,
    parse_embeddings_request,
};
pub use errors::{error_body, error_kind, error_type, parse_error};
pub use response::{decode_chat_response, encode_chat_response};
pub use stream::{ChunkDecoder, ChunkEncoder};

use serde::Deserialize;
use serde_json::value::RawValue;
use std::ops::Range;

/// What an OpenAI upstream serves: everything but assistant prefill.
pub const CAPABILITIES: crate::unified::Capabilities =
    crate::unified::Capabilities::ALL.without(crate::unified::Capabilities::ASSISTANT_PREFILL);

/// Why a request body cannot be routed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RequestError {
    /// The body is not valid JSON (the message carries serde's line and column).
    #[error("We could not parse the JSON body of your request: {0}")]
    Malformed(String),
    /// `model` is missing.
    #[error("you must provide a model parameter")]
    MissingModel,
    /// `model` is present but not a string.
    #[error("'model' must be a string")]
    ModelNotString,
    /// A required field is missing.
    #[error("'{0}' is a required property")]
    Missing(&'static str),
    /// A field has the wrong type or value (the message names it; `param` is the top-level field).
    #[error("{message}")]
    Invalid {
        param: Option<&'static str>,
        message: String,
    },
    /// The request is valid but uses something nines cannot translate to another dialect (an
    /// audio part, a non-function tool, token-array embeddings input). An upstream of the client's
    /// own dialect may still serve it byte for byte.
    #[error("{0}")]
    Unsupported(String),
}

impl RequestError {
    /// The request parameter the error is about, as OpenAI reports it in `error.param`.
    pub fn param(&self) -> Option<&'static str> {
        match self {
            RequestError::Malformed(_) => None,
            RequestError::MissingModel | RequestError::ModelNotString => Some("model"),
            RequestError::Missing(field) => Some(field),
            RequestError::Invalid { param, .. } => *param,
            RequestError::Unsupported(_) => None,
        }
    }
}

#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: Option<bool>,
}

/// Borrowed view of the parts of a chat request that routing needs.
#[derive(Deserialize)]
struct RawChatHead<'a> {
    #[serde(borrow)]
    model: Option<&'a RawValue>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    max_completion_tokens: Option<u64>,
    #[serde(default)]
    n: Option<u32>,
    #[serde(borrow, default)]
    messages: Option<&'a RawValue>,
    #[serde(borrow, default)]
    tools: Option<&'a RawValue>,
}

/// What routing needs to know of a chat request, plus where `model` sits in the body.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatHead {
    pub model: String,
    /// Byte range of the `model` value (including its quotes) in the original body.
    pub model_span: Range<usize>,
    pub stream: bool,
    pub include_usage: bool,
    /// The most output tokens the client asked for (`max_completion_tokens` wins over `max_tokens`).
    pub max_output_tokens: Option<u64>,
    pub n: u32,
    pub has_tools: bool,
    /// Byte range of `messages` in the body, for token estimates.
    pub messages_span: Range<usize>,
}

/// Parses the routing-relevant head of an OpenAI chat-completions body.
pub fn parse_chat_head(body: &[u8]) -> Result<ChatHead, RequestError> {
    let raw: RawChatHead<'_> =
        serde_json::from_slice(body).map_err(|e| RequestError::Malformed(e.to_string()))?;
    let (model, model_span) = model_of(body, raw.model)?;
    let messages = raw.messages.ok_or(RequestError::Missing("messages"))?;
    let (stream, include_usage) = streaming(raw.stream, raw.stream_options);
    Ok(ChatHead {
        model,
        model_span,
        stream,
        include_usage,
        max_output_tokens: raw.max_completion_tokens.or(raw.max_tokens),
        n: raw.n.unwrap_or(1),
        has_tools: raw.tools.is_some_and(|t| t.get() != "null"),
        messages_span: span_of(body, messages),
    })
}

#[derive(Deserialize)]
struct RawEmbeddingsHead<'a> {
    #[serde(borrow)]
    model: Option<&'a RawValue>,
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
}

/// What routing needs to know of an embeddings request.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingsHead {
    pub model: String,
    pub model_span: Range<usize>,
}

/// Parses the routing-relevant head of an OpenAI embeddings body.
pub fn parse_embeddings_head(body: &[u8]) -> Result<EmbeddingsHead, RequestError> {
    let raw: RawEmbeddingsHead<'_> =
        serde_json::from_slice(body).map_err(|e| RequestError::Malformed(e.to_string()))?;
    let (model, model_span) = model_of(body, raw.model)?;
    raw.input.ok_or(RequestError::Missing("input"))?;
    Ok(EmbeddingsHead { model, model_span })
}

#[derive(Deserialize)]
struct RawCompletionsHead<'a> {
    #[serde(borrow)]
    model: Option<&'a RawValue>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(borrow, default)]
    prompt: Option<&'a RawValue>,
}

/// What routing needs to know of a legacy completions request (`POST /v1/completions`).
#[derive(Debug, Clone, PartialEq)]
pub struct CompletionsHead {
    pub model: String,
    pub model_span: Range<usize>,
    pub stream: bool,
    pub include_usage: bool,
    pub max_tokens: Option<u64>,
    /// Byte range of `prompt` in the body, for token estimates.
    pub prompt_span: Range<usize>,
}

/// Parses the routing-relevant head of a legacy completions body; `prompt` is required (the
/// API's own default, `<|endoftext|>`, is a relic no client relies on).
pub fn parse_completions_head(body: &[u8]) -> Result<CompletionsHead, RequestError> {
    let raw: RawCompletionsHead<'_> =
        serde_json::from_slice(body).map_err(|e| RequestError::Malformed(e.to_string()))?;
    let (model, model_span) = model_of(body, raw.model)?;
    let prompt = raw.prompt.ok_or(RequestError::Missing("prompt"))?;
    let (stream, include_usage) = streaming(raw.stream, raw.stream_options);
    Ok(CompletionsHead {
        model,
        model_span,
        stream,
        include_usage,
        max_tokens: raw.max_tokens,
        prompt_span: span_of(body, prompt),
    })
}

/// Whether the client asked for a stream, and for a usage chunk at its end.
fn streaming(stream: Option<bool>, options: Option<StreamOptions>) -> (bool, bool) {
    let include_usage = options.and_then(|o| o.include_usage).unwrap_or(false);
    (stream.unwrap_or(false), include_usage)
}

fn model_of(body: &[u8], raw: Option<&RawValue>) -> Result<(String, Range<usize>), RequestError> {
    let raw = raw.ok_or(RequestError::MissingModel)?;
    let model: String =
        serde_json::from_str(raw.get()).map_err(|_| RequestError::ModelNotString)?;
    if model.is_empty() {
        return Err(RequestError::MissingModel);
    }
    Ok((model, span_of(body, raw)))
}

/// The byte range a borrowed raw value occupies inside `body`. `RawValue` borrowed from `body`
/// points into it, so the offset is a pointer difference (no unsafe needed to compute it).
fn span_of(body: &[u8], raw: &RawValue) -> Range<usize> {
    let start = (raw.get().as_ptr() as usize).saturating_sub(body.as_ptr() as usize);
    start..start + raw.get().len()
}

/// Returns `body` with the bytes at `span` replaced by `new_model` as a JSON string.
pub fn splice_model(body: &[u8], span: Range<usize>, new_model: &str) -> Vec<u8> {
    let encoded = serde_json::to_string(new_model).unwrap_or_else(|_| String::from("\"\""));
    let mut out = Vec::with_capacity(body.len() + encoded.len());
    out.extend_from_slice(&body[..span.start]);
    out.extend_from_slice(encoded.as_bytes());
    out.extend_from_slice(&body[span.end..]);
    out
}

#[cfg(test)]
mod tests;
