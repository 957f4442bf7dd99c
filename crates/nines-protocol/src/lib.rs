//! Wire types of every dialect nines speaks, and pure functions over them.
//!
//! This crate knows nothing of HTTP servers, configuration or state: every function takes bytes or
//! typed values and returns bytes or typed values, so translations are tested by value.
//!
//! Cross-dialect traffic goes through the [`unified`] model: a dialect module parses what a client
//! sent into it and encodes it for the upstream, then decodes the upstream's answer (whole, or
//! stream event by stream event) into it and encodes that for the client. Same-dialect traffic
//! skips all of this and is relayed as bytes ([`openai::splice_model`]).

pub mod anthropic;
pub mod bedrock;
pub mod error;
pub mod gemini;
mod json;
pub mod openai;
pub mod openai_responses;
pub mod replicate;
pub mod runway;
pub mod sse;
pub mod unified;
pub mod url;

pub use error::{ErrorBody, ErrorDetail};
