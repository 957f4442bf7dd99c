//! Wire types of every dialect nines speaks, and pure functions over them.
//!
//! This crate knows nothing of HTTP servers, configuration or state: every function takes bytes or
//! typed values and returns bytes or typed values, so translations are tested by value.

pub mod error;
pub mod openai;
pub mod sse;

pub use error::{ErrorBody, ErrorDetail};
