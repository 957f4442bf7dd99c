//! The Replicate predictions dialect: create a prediction (`POST /v1/predictions` with a
//! `version`, or `POST /v1/models/{owner}/{name}/predictions`), then read it whole (`Prefer:
//! wait`, `GET /v1/predictions/{id}`) or as SSE (`GET /v1/stream/{id}`). Errors are
//! `{"detail","status"}`.
//!
//! A prediction completes the moment it is created, so every read after the creation sees
//! its final state. The fault drawn when it was created decides that state
//! (`prediction_status`, `content_filter`, `context_too_long`) and breaks its stream; reads
//! only obey an `x-mock-fault` header of their own.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::effects::{self, ErrorShape};
use crate::faults::PredictionStatus;
use crate::replicate_prediction::{Outcome, Prediction};
use crate::sse::{self, Event, Style};
use crate::state::MockState;
use crate::{auth, text};

/// Output data is raw text, so a malformed event carries bytes that are not UTF-8.
const STYLE: Style = Style {
    framing: sse::Framing::Sse,
    error: "event: error\ndata: {\"detail\":\"mock in-stream error\"}\n\n",
    malformed: b"\xff\xfe",
};

const ERROR_SHAPE: ErrorShape = ErrorShape {
    fault_body,
    invalid_request: |detail| error(StatusCode::BAD_REQUEST, detail),
};

/// The context the dialect claims when `context_too_long` is faulted.
const CONTEXT_LIMIT: u64 = 8192;
const FAILED: &str = "mock prediction failed";
const FLAGGED: &str =
    "The input or output was flagged as sensitive. Please try again with different inputs. (E005)";

#[derive(Debug, Deserialize)]
struct CreateRequest {
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    input: Option<Value>,
}

/// `POST /v1/predictions`: the model comes from `version` (`owner/name:hash` or a bare hash).
pub(crate) async fn create(
    State(state): State<MockState>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    create_prediction(&state, &headers, &uri, &body, None).await
}

/// `POST /v1/models/{owner}/{name}/predictions`, reached through the `/v1/models/{*id}`
/// wildcard it shares with the OpenAI model lookup; other POSTs there are unknown routes.
pub(crate) async fn create_for_model(
    State(state): State<MockState>,
    Path(rest): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let Some(model) = model_of(&rest) else {
        return crate::error::not_found("unknown route");
    };
    create_prediction(&state, &headers, &uri, &body, Some(model.to_owned())).await
}

/// `owner/name` from `owner/name/predictions`.
fn model_of(rest: &str) -> Option<&str> {
    let model = rest.strip_suffix("/predictions")?;
    let (owner, name) = model.split_once('/')?;
    let valid = |s: &str| !s.is_empty() && !s.contains('/');
    (valid(owner) && valid(name)).then_some(model)
}

/// The counted route under `/v1/models/`: Replicate's create for a POST to
/// `{owner}/{name}/predictions`, the model lookup for everything else.
pub(crate) fn models_route_of(method: &Method, path: &str) -> Option<&'static str> {
    let rest = path.strip_prefix("/v1/models/").unwrap_or_default();
    if method == Method::POST && model_of(rest).is_some() {
        Some("/v1/models/{owner}/{name}/predictions")
    } else {
        Some("/v1/models/{id}")
    }
}

async fn create_prediction(
    state: &MockState,
    headers: &HeaderMap,
    uri: &Uri,
    body: &[u8],
    model: Option<String>,
) -> Response {
    let wait = prefers_wait(headers);
    // Without `Prefer: wait` the answer is the start of a stream (read later), so a reset is
    // saved for the stream instead of aborting the creation.
    let fault = match effects::gate(state, headers, ERROR_SHAPE, !wait).await {
        Ok(fault) => fault.unwrap_or_default(),
        Err(response) => return response,
    };
    if auth::bearer(headers).is_none() {
        return error(StatusCode::UNAUTHORIZED, "Unauthenticated");
    }
    let req = match serde_json::from_slice::<CreateRequest>(body) {
        Ok(req) => req,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("invalid JSON body: {e}")),
    };
    let (model, version) = match (model, req.version.filter(|v| !v.is_empty())) {
        (Some(model), _) => (model, "mock".to_owned()),
        (None, Some(version)) => match version.split_once(':') {
            Some((model, hash)) => (model.to_owned(), hash.to_owned()),
            None => ("nines-mock/model".to_owned(), version),
        },
        (None, None) => return unprocessable("- version: version is required"),
    };
    let Some(input) = req.input.filter(Value::is_object) else {
        return unprocessable("- input: input is required");
    };
    let Some(prompt) = input.get("prompt").and_then(Value::as_str) else {
        return unprocessable("- input.prompt: prompt is required");
    };
    let system = input.get("system_prompt").and_then(Value::as_str);
    let max = ["max_tokens", "max_new_tokens"]
        .iter()
        .find_map(|k| input.get(*k).and_then(Value::as_u64));
    let input_tokens = [Some(prompt), system]
        .into_iter()
        .flatten()
        .map(|t| text::estimate_tokens(t) + 3)
        .sum();
    let (words, _) = text::end_reply(text::reply_words(state.name(), prompt), &[], max);
    let outcome = if fault.context_too_long {
        Outcome::Failed(format!(
            "prompt length ({} tokens) exceeds the model's context window ({CONTEXT_LIMIT} \
             tokens)",
            CONTEXT_LIMIT + input_tokens
        ))
    } else if fault.content_filter {
        Outcome::Failed(FLAGGED.to_owned())
    } else {
        match fault.prediction_status {
            Some(PredictionStatus::Failed) => Outcome::Failed(FAILED.to_owned()),
            Some(PredictionStatus::Canceled) => Outcome::Canceled,
            None => Outcome::Succeeded(text::pieces(&words)),
        }
    };
    let output_tokens = match outcome {
        Outcome::Succeeded(_) => words.len() as u64,
        _ => 0,
    };
    let prediction = Prediction {
        id: format!("mock{:022}", state.next_job_id()),
        model,
        version,
        input,
        outcome,
        input_tokens,
        output_tokens,
        origin: origin(headers, uri),
        fault,
    };
    let body = prediction.json(wait);
    state
        .predictions()
        .insert(prediction.id.clone(), prediction);
    (StatusCode::CREATED, Json(body)).into_response()
}

/// `GET /v1/predictions/{id}`: the prediction in its final state.
pub(crate) async fn get(
    State(state): State<MockState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    read(&state, &id, &headers).await
}

/// `POST /v1/predictions/{id}/cancel`: predictions are complete at once, so canceling changes
/// nothing and answers the prediction, as Replicate does for finished ones.
pub(crate) async fn cancel(
    State(state): State<MockState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    read(&state, &id, &headers).await
}

async fn read(state: &MockState, id: &str, headers: &HeaderMap) -> Response {
    if let Err(response) = effects::gate_header(state, headers, ERROR_SHAPE, false).await {
        return response;
    }
    if auth::bearer(headers).is_none() {
        return error(StatusCode::UNAUTHORIZED, "Unauthenticated");
    }
    match state.predictions().get(id) {
        Some(prediction) => Json(prediction.json(true)).into_response(),
        None => error(StatusCode::NOT_FOUND, "Not found."),
    }
}

/// `GET /v1/stream/{id}`: the prediction as SSE. No credentials needed (the URL is the
/// secret, as at Replicate). A fault header on this request replaces the creation's fault.
pub(crate) async fn stream(
    State(state): State<MockState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let own = match effects::gate_header(&state, &headers, ERROR_SHAPE, true).await {
        Ok(fault) => fault,
        Err(response) => return response,
    };
    let Some(prediction) = state.predictions().get(&id) else {
        return error(StatusCode::NOT_FOUND, "Not found.");
    };
    let fault = own.unwrap_or_else(|| prediction.fault.clone());
    let events = events(&prediction, !fault.no_done);
    sse::events_response(state, events, STYLE, Some(fault))
}

/// The prediction's stream: an `output` event per token then `done`, or the failure; `done`
/// is left out when not `terminated` (the `no_done` fault).
fn events(prediction: &Prediction, terminated: bool) -> Vec<Event> {
    let (mut events, done) = match &prediction.outcome {
        Outcome::Succeeded(tokens) => (
            tokens
                .iter()
                .enumerate()
                .map(|(i, token)| Event::named("output", token.as_str()).with_id(i.to_string()))
                .collect(),
            json!({}),
        ),
        Outcome::Failed(error) => (
            vec![Event::named("error", json!({"detail": error}).to_string())],
            json!({"reason": "error"}),
        ),
        Outcome::Canceled => (Vec::new(), json!({"reason": "canceled"})),
    };
    if terminated {
        events.push(Event::named("done", done.to_string()));
    }
    events
}

/// `Prefer: wait` or `Prefer: wait=N`: answer with the finished prediction.
fn prefers_wait(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|pref| {
            let pref = pref.trim();
            pref == "wait" || pref.starts_with("wait=")
        })
}

/// `http://{host}` from the request, for absolute URLs that point back at this mock.
fn origin(headers: &HeaderMap, uri: &Uri) -> String {
    let host = auth::header(headers, header::HOST.as_str())
        .map(str::to_owned)
        .or_else(|| uri.authority().map(ToString::to_string))
        .unwrap_or_else(|| "localhost".to_owned());
    format!("http://{host}")
}

/// A Replicate error response.
fn error(status: StatusCode, detail: &str) -> Response {
    (status, Json(error_body(status.as_u16(), detail))).into_response()
}

fn unprocessable(detail: &str) -> Response {
    error(StatusCode::UNPROCESSABLE_ENTITY, detail)
}

fn error_body(status: u16, detail: &str) -> Value {
    json!({"detail": detail, "status": status})
}

/// The error body a fault with `status` sends.
fn fault_body(status: u16) -> Value {
    let detail = match status {
        429 => "Request was throttled. Expected available in 1 second.".to_owned(),
        401 => "You did not pass a valid authentication token".to_owned(),
        404 => "Not found.".to_owned(),
        _ => format!("mock fault: status {status}"),
    };
    error_body(status, &detail)
}
