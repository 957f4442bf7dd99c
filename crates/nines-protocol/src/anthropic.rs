//! Anthropic Messages API (`anthropic-version: 2023-06-01`): requests, responses, streams and
//! errors, to and from the [unified model](crate::unified).
//!
//! nines speaks it on both sides: as an upstream (a deployment with `provider = "anthropic"`) and as
//! an ingress (`POST /v1/messages`, for Anthropic SDK clients), so every shape has both directions.
//!
//! | direction | request | response | stream | errors |
//! |---|---|---|---|---|
//! | client → nines | [`parse_request`] | [`encode_response`] | [`StreamEncoder`] | [`error_body`] |
//! | nines → upstream | [`encode_request`] | [`decode_response`] | [`StreamDecoder`] | [`parse_error`] |
//!
//! Where the dialects differ in shape, not meaning: system messages become the top-level `system`;
//! tool results become `user` turns of `tool_result` blocks; consecutive turns of one role are
//! merged (Anthropic requires alternation); usage counts cached prompt tokens separately (the
//! unified [`Usage`](crate::unified::Usage) counts them inside `input_tokens`).

mod errors;
mod request;
mod response;
mod stream;
mod stream_encode;
mod wire;

pub use errors::{error_body, error_kind, error_type, error_type_for_status, parse_error};
pub use request::{encode_request, parse_request};
pub use response::{decode_response, encode_response, finish_reason, stop_reason};
pub use stream::StreamDecoder;
pub use stream_encode::StreamEncoder;

use crate::unified::Capabilities;

/// The `anthropic-version` header value these shapes follow.
pub const API_VERSION: &str = "2023-06-01";

/// The `max_tokens` to send when the client gave none (Anthropic requires the field). 4096 fits
/// every current Claude model's output limit; pass a deployment-specific value where known.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// What the Messages API serves: JSON answers (through a forced tool), top-k, thinking, and
/// assistant prefill, which OpenAI lacks; no `n > 1`, no log-probabilities, no `seed`, no
/// penalties, no embeddings, and no thinking beside a forced tool or custom sampling.
pub const CAPABILITIES: Capabilities = Capabilities::STREAMING
    .with(Capabilities::TOOLS)
    .with(Capabilities::VISION)
    .with(Capabilities::IMAGE_URLS)
    .with(Capabilities::TOOL_CHOICE_NONE)
    .with(Capabilities::SERIAL_TOOL_CALLS)
    .with(Capabilities::ASSISTANT_PREFILL)
    .with(Capabilities::JSON_SCHEMA)
    .with(Capabilities::TOP_K)
    .with(Capabilities::REASONING);
