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
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error;
use crate::state::MockState;

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

/// A slot held by one request, with the model it was taken under.
pub(crate) struct Slot {
    model: Arc<ActiveCapacity>,
    _permit: OwnedSemaphorePermit,
}

/// Waits in line for a slot and then for the request's service time. `Err` is the answer instead
/// (a full line, or the server shutting down).
pub(crate) async fn take(state: &MockState, active: Arc<ActiveCapacity>) -> Result<Slot, Response> {
    let waiting = active.waiting.fetch_add(1, Ordering::Relaxed);
    let in_line = LeaveLine(&active.waiting);
    if active.model.max_queue.is_some_and(|max| waiting >= max)
        && active.slots.available_permits() == 0
    {
        return Err(overloaded());
    }
    let permit = tokio::select! {
        permit = Arc::clone(&active.slots).acquire_owned() => permit.map_err(|_| overloaded())?,
        () = state.shutting_down() => return Err(overloaded()),
    };
    drop(in_line);
    let service = Duration::from_millis(active.model.service_ms);
    if !service.is_zero() && !state.sleep(service).await {
        return Err(overloaded());
    }
    Ok(Slot {
        model: active,
        _permit: permit,
    })
}

/// Decrements the line's length when a request leaves it (served, refused or gone).
struct LeaveLine<'a>(&'a AtomicU32);

impl Drop for LeaveLine<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The response, held in its slot for its decoding time: a stream event by event, any other
/// answer for `token_ms` × its output tokens before it goes out.
pub(crate) async fn hold(
    state: &MockState,
    slot: Slot,
    response: Response,
    streaming: bool,
) -> Response {
    let per_token = Duration::from_millis(slot.model.model.token_ms);
    if streaming {
        let (parts, body) = response.into_parts();
        let state = state.clone();
        let mut first = true;
        let body = body.into_data_stream().then(move |frame| {
            let _slot = &slot;
            let wait = if std::mem::take(&mut first) {
                Duration::ZERO
            } else {
                per_token
            };
            let state = state.clone();
            async move {
                if !wait.is_zero() {
                    state.sleep(wait).await;
                }
                frame
            }
        });
        return Response::from_parts(parts, Body::from_stream(body));
    }
    if per_token.is_zero() {
        return response;
    }
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, crate::track::BODY_LIMIT).await else {
        return error::invalid_request("could not buffer the mock's own answer");
    };
    let tokens = output_tokens(&bytes);
    let wait = per_token.saturating_mul(u32::try_from(tokens).unwrap_or(u32::MAX));
    state.sleep(wait).await;
    drop(slot);
    Response::from_parts(parts, Body::from(bytes))
}

/// Output tokens an answer reports, in any dialect's usage shape; 1 when it reports none.
fn output_tokens(body: &[u8]) -> u64 {
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
fn overloaded() -> Response {
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
