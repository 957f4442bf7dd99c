//! The capacity model applied to one request: wait in line for a slot, hold it for the service
//! time before the response head, then for the decoding time (per stream event, or per output
//! token before a whole answer goes out). The model and its line live in `capacity.rs`; the
//! waits here end early when the server shuts down.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use futures_util::StreamExt;
use tokio::sync::OwnedSemaphorePermit;

use crate::capacity::{self, ActiveCapacity};
use crate::error;
use crate::state::MockState;

/// The largest answer held back for its decoding time; the mock's own answers are far smaller.
const ANSWER_LIMIT: usize = 64 * 1024 * 1024;

/// A slot held by one request, with the model it was taken under.
pub(crate) struct Slot {
    model: Arc<ActiveCapacity>,
    _permit: OwnedSemaphorePermit,
}

/// Waits in line for a slot and then for the request's service time. `Err` is the answer instead
/// (a full line: 429; the server shutting down).
pub(crate) async fn take(state: &MockState, active: Arc<ActiveCapacity>) -> Result<Slot, Response> {
    let permit = tokio::select! {
        permit = active.enter() => permit.map_err(|capacity::LineFull| capacity::overloaded())?,
        () = state.shutting_down() => return Err(capacity::overloaded()),
    };
    let service = Duration::from_millis(active.model.service_ms);
    if !service.is_zero() && !state.sleep(service).await {
        return Err(capacity::overloaded());
    }
    Ok(Slot {
        model: active,
        _permit: permit,
    })
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
    let Ok(bytes) = axum::body::to_bytes(body, ANSWER_LIMIT).await else {
        return error::invalid_request("could not buffer the mock's own answer");
    };
    let tokens = capacity::output_tokens(&bytes);
    let wait = per_token.saturating_mul(u32::try_from(tokens).unwrap_or(u32::MAX));
    state.sleep(wait).await;
    drop(slot);
    Response::from_parts(parts, Body::from(bytes))
}
