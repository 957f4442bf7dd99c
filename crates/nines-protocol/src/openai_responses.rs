//! OpenAI's Responses API (`POST /v1/responses`) as a client dialect: requests, responses and the
//! typed stream events, to and from the [unified model](crate::unified).
//!
//! nines speaks it on the client side only. A deployment that serves the Responses API itself
//! (the `responses_api` capability: OpenAI) gets the client's body as it is, `model` spliced; any
//! other deployment gets the request translated into its own chat dialect through the unified
//! model, and its answer translated back:
//!
//! | direction | request | response | stream |
//! |---|---|---|---|
//! | client → nines | [`parse_head`], [`parse_request`] | [`encode_response`] | [`StreamEncoder`] |
//!
//! What has no unified form is refused as [`RequestError::Unsupported`], which routing reads as
//! "only a deployment that serves the Responses API natively can take this": the built-in tools
//! OpenAI runs itself (web search, file search, code interpreter, …), `item_reference`s and file
//! ids that point into OpenAI's own storage. `reasoning` items from an earlier turn are opaque to
//! every other provider and are left out of a translated request; `reasoning.effort` travels as
//! chat's `reasoning_effort`.

mod request;
mod response;
mod stream;
#[cfg(test)]
mod tests;

pub use request::parse_request;
pub use response::{ResponseMeta, encode_response, response_id};
pub use stream::StreamEncoder;

use crate::openai::{RequestError, model_of, span_of};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::ops::Range;

/// What routing needs of a Responses request, plus where `model` sits in the body.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponsesHead {
    pub model: String,
    pub model_span: Range<usize>,
    pub stream: bool,
    pub max_output_tokens: Option<u64>,
    /// Byte range of `input` in the body, for token estimates.
    pub input_span: Range<usize>,
    /// The stored response this one continues, if the client named one.
    pub previous_response_id: Option<String>,
}

#[derive(Deserialize)]
struct RawHead<'a> {
    #[serde(borrow)]
    model: Option<&'a RawValue>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    max_output_tokens: Option<u64>,
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
    #[serde(default)]
    previous_response_id: Option<String>,
}

/// Parses the routing-relevant head of a Responses body (validating that it is one JSON object).
pub fn parse_head(body: &[u8]) -> Result<ResponsesHead, RequestError> {
    let raw: RawHead<'_> =
        serde_json::from_slice(body).map_err(|e| RequestError::Malformed(e.to_string()))?;
    let (model, model_span) = model_of(body, raw.model)?;
    let input = raw.input.ok_or(RequestError::Missing("input"))?;
    Ok(ResponsesHead {
        model,
        model_span,
        stream: raw.stream.unwrap_or(false),
        max_output_tokens: raw.max_output_tokens,
        input_span: span_of(body, input),
        previous_response_id: raw.previous_response_id.filter(|id| !id.is_empty()),
    })
}

/// The built-in tools OpenAI runs on its side: a request with one of them can only be served by
/// a deployment with the `responses_api` capability.
pub const BUILT_IN_TOOLS: [&str; 8] = [
    "web_search",
    "web_search_preview",
    "file_search",
    "code_interpreter",
    "computer_use_preview",
    "image_generation",
    "mcp",
    "local_shell",
];
