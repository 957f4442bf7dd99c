//! Google Gemini (Generative Language API, `v1beta`): `generateContent` and
//! `streamGenerateContent?alt=sse` requests and responses, embeddings and errors, to and from the
//! [unified model](crate::unified). Gemini is only ever an upstream, so each shape has the one
//! direction nines needs.
//!
//! Where the dialects differ in shape, not meaning: roles are `user` and `model`; system messages
//! become `systemInstruction`; tool calls and results are `functionCall` / `functionResponse`
//! parts, and since Gemini matches a result to its call by function *name*, not id, the encoder
//! looks the name up from the earlier call; Gemini's calls carry no id, so the decoder makes them
//! up as `call_{n}` (n counting the calls of one answer). Schemas are sent as
//! `parametersJsonSchema` / `responseJsonSchema`, which take JSON Schema as OpenAI clients write it
//! (`additionalProperties` and all), rather than the OpenAPI subset of `parameters` /
//! `responseSchema`, which rejects it.

mod embeddings;
mod errors;
mod request;
mod response;
mod stream;

pub use embeddings::{
    batch_embed_contents_request, decode_embeddings_response, embed_content_request,
};
pub use errors::{error_kind, parse_error};
pub use request::encode_request;
pub use response::{decode_response, finish_reason};
pub use stream::StreamDecoder;

use crate::unified::Capabilities;

/// Separates a tool-call id from the Gemini thought signature carried inside it.
///
/// Gemini 3 models sign each `functionCall` they make (`thoughtSignature`) and reject a later
/// request whose history holds the call without its signature. OpenAI clients echo tool-call ids
/// verbatim but drop unknown fields, so the decoder appends the signature to the id
/// (`call_0__thought__<signature>`) and the encoder takes it back out.
pub const SIGNATURE_SEPARATOR: &str = "__thought__";

/// The thought signature carried in a tool-call id, if any.
pub fn signature_of(call_id: &str) -> Option<&str> {
    call_id
        .split_once(SIGNATURE_SEPARATOR)
        .map(|(_, signature)| signature)
        .filter(|s| !s.is_empty())
}

/// What Gemini serves: everything but assistant prefill, a limit of one tool call per turn,
/// OpenAI's own extra parameters and the Responses API.
pub const CAPABILITIES: Capabilities = Capabilities::ALL
    .without(Capabilities::ASSISTANT_PREFILL)
    .without(Capabilities::SERIAL_TOOL_CALLS)
    .without(Capabilities::OPENAI_PARAMS)
    .without(Capabilities::RESPONSES_API);

/// The path (below the API base URL, e.g. `https://generativelanguage.googleapis.com`) of a chat
/// call for `model`: `generateContent`, or `streamGenerateContent?alt=sse` when streaming.
pub fn generate_path(model: &str, stream: bool) -> String {
    let model = model.strip_prefix("models/").unwrap_or(model);
    if stream {
        format!("/v1beta/models/{model}:streamGenerateContent?alt=sse")
    } else {
        format!("/v1beta/models/{model}:generateContent")
    }
}

/// The path of an embeddings call: `batchEmbedContents` (which also serves a single input).
pub fn embed_path(model: &str) -> String {
    let model = model.strip_prefix("models/").unwrap_or(model);
    format!("/v1beta/models/{model}:batchEmbedContents")
}
