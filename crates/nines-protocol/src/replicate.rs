//! Replicate predictions API for language models: the prediction `input` built from a
//! [`ChatRequest`], the prediction object, and the prediction's SSE stream.
//!
//! Replicate runs arbitrary models behind one API, so a language model takes a flat `input` of
//! plain fields (a `prompt` string, `system_prompt`, `max_tokens`, ...) rather than a message list:
//! the conversation is rendered as text. A prediction is asynchronous — created with
//! `POST /v1/models/{owner}/{name}/predictions` (with `Prefer: wait` it may answer complete), then
//! polled or streamed from `urls.stream` — so decoding yields a [`Prediction`] whose
//! [`Prediction::outcome`] says whether it is still running, succeeded (a [`ChatResponse`]),
//! failed or was canceled.
//!
//! [`ChatRequest`]: crate::unified::ChatRequest
//! [`ChatResponse`]: crate::unified::ChatResponse

mod input;
mod prediction;
mod stream;

pub use input::{encode_create_request, predictions_path, render_prompt};
pub use prediction::{
    Prediction, PredictionOutcome, PredictionStatus, decode_prediction, parse_error,
};
pub use stream::StreamDecoder;

use crate::unified::Capabilities;

/// What a Replicate language model serves through this codec: text in, text out, streamed or
/// not. No tools, images, structured output, multiple choices or prefill.
pub const CAPABILITIES: Capabilities = Capabilities::STREAMING;
