//! Amazon Bedrock's Converse API (`POST /model/{modelId}/converse` and `/converse-stream`):
//! requests and responses, stream events and errors, to and from the [unified model](crate::unified).
//! Bedrock is only ever an upstream, so each shape has the one direction nines needs.
//!
//! Where Converse differs in shape, not meaning: system messages become the top-level `system`
//! blocks; content is a list of blocks (`text`, `image`, `toolUse`, `toolResult`); tool results
//! travel in a `user` turn; sampling options sit in `inferenceConfig`; tool schemas are wrapped
//! as `inputSchema.json`. A Converse answer carries no id or model: the caller names both (a stream's
//! id is given to [`StreamDecoder::new`]).
//!
//! ConverseStream is framed as AWS event-stream messages, not SSE. The gateway's Bedrock provider
//! checks the frames (their CRCs) and hands each message on as one SSE event whose name is the
//! message's `:event-type` (`messageStart`, `contentBlockDelta`, ...) and whose data is its JSON
//! payload; an exception message becomes `event: error` with `{"error":{"type","message"}}`
//! ([`exception_event`]). [`StreamDecoder`] reads those events.

mod errors;
mod request;
mod response;
mod stream;

pub use errors::{error_kind, exception_event, parse_error};
pub use request::encode_request;
pub use response::decode_response;
pub use stream::StreamDecoder;

use crate::unified::Capabilities;

/// What Converse serves through nines: streaming, tools and images (inline bytes). It has no
/// `response_format`, several choices or log probabilities, and no embeddings; it fetches no
/// image by URL ([`Capabilities::IMAGE_URLS`]) and has no "none" tool choice
/// ([`Capabilities::TOOL_CHOICE_NONE`]), so requests that need either go elsewhere.
pub const CAPABILITIES: Capabilities = Capabilities::STREAMING
    .with(Capabilities::TOOLS)
    .with(Capabilities::VISION);

/// The AWS service name requests are signed for (SigV4's `service`).
pub const SIGNING_SERVICE: &str = "bedrock";

/// The path of a chat call for `model` (a model id, an inference profile id or an ARN), below
/// the runtime endpoint (`https://bedrock-runtime.{region}.amazonaws.com`). The id is
/// percent-encoded as one path segment: ids carry `:` (`...-v1:0`) and ARNs carry `/`.
pub fn converse_path(model: &str, stream: bool) -> String {
    let action = if stream {
        "converse-stream"
    } else {
        "converse"
    };
    format!("/model/{}/{action}", crate::url::segment(model))
}

#[cfg(test)]
mod tests;
