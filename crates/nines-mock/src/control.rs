//! `/_mock/...`: inspect and steer the mock over HTTP (for `nines mock` and out-of-process
//! tests). These routes are never counted, recorded or faulted.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::state::MockState;
use crate::{Capacity, FaultScript, error};

pub(crate) fn routes() -> Router<MockState> {
    Router::new()
        .route("/_mock/hits", get(hits))
        .route(
            "/_mock/fault",
            get(get_fault).post(set_fault).delete(clear_fault),
        )
        .route(
            "/_mock/capacity",
            get(get_capacity).post(set_capacity).delete(clear_capacity),
        )
        .route("/_mock/reset", post(reset))
        .route("/_mock/requests", get(requests))
}

async fn hits(State(state): State<MockState>) -> Json<serde_json::Value> {
    let (routes, max_in_flight) = state.hit_table();
    Json(json!({
        "total": state.total_hits(),
        "routes": routes,
        "max_in_flight": max_in_flight,
        "streamed_bytes": state.streamed_bytes(),
        "open_streams": state.open_streams(),
    }))
}

async fn get_fault(State(state): State<MockState>) -> Json<Option<FaultScript>> {
    Json(state.fault())
}

/// Body: a fault script, or `null` to clear. Invalid scripts are refused with 400 and leave the
/// current one in place.
async fn set_fault(State(state): State<MockState>, body: Bytes) -> Response {
    let script = match serde_json::from_slice::<Option<FaultScript>>(&body) {
        Ok(script) => script,
        Err(e) => return error::invalid_request(format!("invalid fault script: {e}")),
    };
    if let Some(Err(e)) = script.as_ref().map(FaultScript::validate) {
        return error::invalid_request(format!("invalid fault script: {e}"));
    }
    state.set_fault(script.clone());
    Json(json!({ "fault": script })).into_response()
}

async fn get_capacity(State(state): State<MockState>) -> Json<Option<Capacity>> {
    Json(state.capacity())
}

/// Body: a capacity model, or `null` for unlimited. An invalid model is refused with 400 and
/// leaves the current one in place.
async fn set_capacity(State(state): State<MockState>, body: Bytes) -> Response {
    let capacity = match serde_json::from_slice::<Option<Capacity>>(&body) {
        Ok(capacity) => capacity,
        Err(e) => return error::invalid_request(format!("invalid capacity model: {e}")),
    };
    if let Some(Err(e)) = capacity.as_ref().map(Capacity::validate) {
        return error::invalid_request(format!("invalid capacity model: {e}"));
    }
    state.set_capacity(capacity.clone());
    Json(json!({ "capacity": capacity })).into_response()
}

async fn clear_capacity(State(state): State<MockState>) -> StatusCode {
    state.set_capacity(None);
    StatusCode::NO_CONTENT
}

async fn clear_fault(State(state): State<MockState>) -> StatusCode {
    state.set_fault(None);
    StatusCode::NO_CONTENT
}

async fn reset(State(state): State<MockState>) -> StatusCode {
    state.reset();
    StatusCode::NO_CONTENT
}

async fn requests(State(state): State<MockState>) -> Json<Vec<crate::RecordedRequest>> {
    Json(state.requests())
}
