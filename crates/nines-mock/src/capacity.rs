//! The capacity model: a provider that serves a limited number of requests at once.
//!
//! Faults model a provider misbehaving; this models one that is merely busy, as a real inference
//! server is: it has `max_concurrency` slots (a batch), each request holds one while it is
//! "computed", and requests beyond the slots wait in line, first come first served. Holding a
//! slot costs `service_ms` before the response head (prefill: the time to first token without
//! load) and `token_ms` per further stream event (decoding); a non-streamed answer holds its slot
//! for `token_ms` × its output tokens before it is sent. So latency is flat while the offered
//! load is below `max_concurrency / holding time` and grows with the queue above it, which is what
//! a load test must see to find a route's capacity. With `max_queue`, a request that finds that
//! many already waiting is refused at once with a 429 (a server shedding load).
//!
//! Only requests that make the provider work are modelled: `POST`s on counted routes. Time is
//! tokio's, so paused-clock tests can steer it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error;

/// A provider's capacity. Installed with [`crate::MockServer::set_capacity`],
/// `POST /_mock/capacity` or `nines mock --capacity`.
///
/// Unknown fields are refused, as in a [`crate::FaultScript`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capacity {
    /// Requests served at once; more wait in line (≥ 1).
    pub max_concurrency: u32,
    /// Time a request holds its slot before its response head (its first token, unloaded).
    #[serde(default)]
    pub service_ms: u64,
    /// Time each further stream event holds the slot; a non-streamed answer holds it this long
    /// per output token before it is sent.
    #[serde(default)]
    pub token_ms: u64,
    /// At most this many requests wait for a slot; one more is answered 429 at once. Default:
    /// the line is unbounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queue: Option<u32>,
    /// OpenAI chat completions write until `max_tokens` (or `max_completion_tokens`), as a model
    /// that is cut at its limit does, instead of the short fixed reply: output sizes follow the
    /// request.
    #[serde(default)]
    pub fill_max_tokens: bool,
}

/// Why a capacity model was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CapacityError {
    #[error("max_concurrency must be at least 1")]
    MaxConcurrency,
}

impl Capacity {
    /// Refuse a model that cannot serve anything, before it is installed.
    pub fn validate(&self) -> Result<(), CapacityError> {
        if self.max_concurrency == 0 {
            return Err(CapacityError::MaxConcurrency);
        }
        Ok(())
    }
}

/// An installed model with its slots and its line.
pub(crate) struct ActiveCapacity {
    pub(crate) model: Capacity,
    slots: Arc<Semaphore>,
    waiting: AtomicU32,
}

impl ActiveCapacity {
    pub(crate) fn new(model: Capacity) -> Self {
        let slots = usize::try_from(model.max_concurrency).unwrap_or(usize::MAX);
        Self {
            slots: Arc::new(Semaphore::new(slots.min(Semaphore::MAX_PERMITS))),
            waiting: AtomicU32::new(0),
            model,
        }
    }
}

/// Why a request got no slot: the line was full.
pub(crate) struct LineFull;

impl ActiveCapacity {
    /// Waits in line for a slot (first come, first served); `Err` when `max_queue` requests
    /// already wait and no slot is free.
    pub(crate) async fn enter(&self) -> Result<OwnedSemaphorePermit, LineFull> {
        let waiting = self.waiting.fetch_add(1, Ordering::Relaxed);
        let in_line = LeaveLine(&self.waiting);
        if self.model.max_queue.is_some_and(|max| waiting >= max)
            && self.slots.available_permits() == 0
        {
            return Err(LineFull);
        }
        let permit = Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .map_err(|_| LineFull)?;
        drop(in_line);
        Ok(permit)
    }
}

/// Decrements the line's length when a request leaves it (served, refused or gone).
struct LeaveLine<'a>(&'a AtomicU32);

impl Drop for LeaveLine<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Output tokens an answer reports, in any dialect's usage shape; 1 when it reports none.
pub(crate) fn output_tokens(body: &[u8]) -> u64 {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return 1;
    };
    [
        "/usage/completion_tokens",
        "/usage/output_tokens",
        "/usageMetadata/candidatesTokenCount",
    ]
    .iter()
    .find_map(|pointer| value.pointer(pointer).and_then(Value::as_u64))
    .unwrap_or(1)
}

/// The answer to a request the line has no room for.
pub(crate) fn overloaded() -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        Json(error::body(
            "mock capacity: the queue is full",
            "rate_limit_error",
            Some("overloaded"),
        )),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_tokens_read_every_dialect() {
        assert_eq!(output_tokens(br#"{"usage":{"completion_tokens":7}}"#), 7);
        assert_eq!(output_tokens(br#"{"usage":{"output_tokens":5}}"#), 5);
        assert_eq!(
            output_tokens(br#"{"usageMetadata":{"candidatesTokenCount":3}}"#),
            3
        );
        assert_eq!(output_tokens(b"not json"), 1);
    }

    #[test]
    fn a_model_without_slots_is_refused() {
        assert_eq!(
            Capacity::default().validate(),
            Err(CapacityError::MaxConcurrency)
        );
        let ok: Capacity =
            serde_json::from_str(r#"{"max_concurrency": 2, "service_ms": 50}"#).unwrap();
        assert_eq!(ok.validate(), Ok(()));
        assert!(serde_json::from_str::<Capacity>(r#"{"max_concurency": 2}"#).is_err());
    }
}
