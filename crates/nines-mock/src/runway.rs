//! The Runway task dialect: `POST /v1/text_to_video` and `POST /v1/image_to_video` start a
//! task, `GET /v1/tasks/{id}` polls it, `DELETE /v1/tasks/{id}` cancels or deletes it. Every
//! request needs a bearer token and `X-Runway-Version`. Errors are `{"error": message}`.
//!
//! Tasks progress by polls, not time: the first poll sees `RUNNING` (progress 0.5), later ones
//! the end state, which the fault drawn at creation decides (`prediction_status`,
//! `content_filter`). Polls only obey an `x-mock-fault` header of their own.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth;
use crate::effects::{self, ErrorShape};
use crate::faults::PredictionStatus;
use crate::runway_task::{End, Task};
use crate::state::MockState;

/// The longest `promptText` the dialect claims to accept when `context_too_long` is faulted.
const PROMPT_LIMIT: u64 = 1000;

const ERROR_SHAPE: ErrorShape = ErrorShape {
    fault_body,
    invalid_request: invalid,
};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateRequest {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    prompt_text: Option<String>,
    #[serde(default)]
    prompt_image: Option<Value>,
}

/// `POST /v1/text_to_video`: needs `model` and `promptText`.
pub(crate) async fn text_to_video(
    State(state): State<MockState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    create(&state, &headers, &body, false).await
}

/// `POST /v1/image_to_video`: needs `model` and `promptImage`; `promptText` is optional.
pub(crate) async fn image_to_video(
    State(state): State<MockState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    create(&state, &headers, &body, true).await
}

async fn create(state: &MockState, headers: &HeaderMap, body: &[u8], image: bool) -> Response {
    let fault = match effects::gate(state, headers, ERROR_SHAPE, false).await {
        Ok(fault) => fault.unwrap_or_default(),
        Err(response) => return response,
    };
    if let Some(response) = check_headers(headers) {
        return response;
    }
    let req = match serde_json::from_slice::<CreateRequest>(body) {
        Ok(req) => req,
        Err(e) => return invalid(&format!("Invalid JSON body: {e}")),
    };
    if req.model.as_deref().is_none_or(str::is_empty) {
        return invalid("Validation of body failed: model is required");
    }
    if image && req.prompt_image.as_ref().is_none_or(Value::is_null) {
        return invalid("Validation of body failed: promptImage is required");
    }
    let prompt = req.prompt_text.unwrap_or_default();
    if !image && prompt.is_empty() {
        return invalid("Validation of body failed: promptText is required");
    }
    if fault.context_too_long {
        let chars = PROMPT_LIMIT + prompt.chars().count() as u64;
        return invalid(&format!(
            "Validation of body failed: promptText is too long ({chars} characters > \
             {PROMPT_LIMIT} maximum)"
        ));
    }
    let end = if fault.content_filter {
        End::Failed {
            failure: "mock content moderation: the output was flagged",
            code: "SAFETY.OUTPUT.VIDEO",
        }
    } else {
        match fault.prediction_status {
            Some(PredictionStatus::Failed) => End::Failed {
                failure: "mock task failed",
                code: "INTERNAL",
            },
            Some(PredictionStatus::Canceled) => End::Cancelled,
            None => End::Succeeded,
        }
    };
    // Shaped like a UUID (version 4, RFC variant); the first group spells "mock" in hex.
    let id = format!("6d6f636b-0000-4000-8000-{:012x}", state.next_job_id());
    let task = Task {
        id: id.clone(),
        end,
        polls: 0,
    };
    state.tasks().insert(id.clone(), task);
    Json(json!({ "id": id })).into_response()
}

/// `GET /v1/organization`: the account's credit balance and tier (what a health probe asks
/// for). Faults from the server's script apply, then the usual header checks.
pub(crate) async fn organization(State(state): State<MockState>, headers: HeaderMap) -> Response {
    if let Err(response) = effects::gate(&state, &headers, ERROR_SHAPE, false).await {
        return response;
    }
    if let Some(response) = check_headers(&headers) {
        return response;
    }
    Json(json!({
        "creditBalance": 10000,
        "tier": {"maxMonthlyCreditSpend": 100000, "models": {}},
        "usage": {"models": {}},
    }))
    .into_response()
}

/// `GET /v1/tasks/{id}`: counts the poll and answers the task as that poll sees it.
pub(crate) async fn get_task(
    State(state): State<MockState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(response) = follow_up(&state, &headers).await {
        return response;
    }
    let polled = state.tasks().update(&id, |task| {
        task.polls = task.polls.saturating_add(1);
        task.json(task.polls)
    });
    match polled {
        Some(task) => Json(task).into_response(),
        None => not_found(),
    }
}

/// `DELETE /v1/tasks/{id}`: cancels (or deletes) the task; later polls get 404.
pub(crate) async fn delete_task(
    State(state): State<MockState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(response) = follow_up(&state, &headers).await {
        return response;
    }
    if state.tasks().remove(&id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        not_found()
    }
}

/// Polls and deletes: only a fault header applies, then the usual header checks. The
/// response that replaces the normal one, if any.
async fn follow_up(state: &MockState, headers: &HeaderMap) -> Option<Response> {
    match effects::gate_header(state, headers, ERROR_SHAPE, false).await {
        Ok(_) => check_headers(headers),
        Err(response) => Some(response),
    }
}

/// The bearer token and `X-Runway-Version` checks: the rejection, if any.
fn check_headers(headers: &HeaderMap) -> Option<Response> {
    if auth::bearer(headers).is_none() {
        return Some(error(
            StatusCode::UNAUTHORIZED,
            "Missing or invalid API key in the Authorization header",
        ));
    }
    if auth::header(headers, "x-runway-version").is_none() {
        return Some(invalid(
            "You must pass a valid API version in the X-Runway-Version header",
        ));
    }
    None
}

fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "Task not found")
}

fn invalid(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, message)
}

/// A Runway error response.
fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// The error body a fault with `status` sends.
fn fault_body(status: u16) -> Value {
    let message = match status {
        429 => "You have exceeded the rate limit for this API key. Please retry later.".to_owned(),
        _ => format!("mock fault: status {status}"),
    };
    json!({ "error": message })
}
