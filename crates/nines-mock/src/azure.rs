//! The Azure OpenAI dialect: OpenAI's wire format at deployment URLs,
//! `POST /openai/deployments/{deployment}/chat/completions?api-version=...` (and
//! `/completions`, `/embeddings`), `POST /openai/v1/responses?api-version=preview` (the Responses API), and
//! `GET /openai/models?api-version=...`. Azure checks what the OpenAI routes
//! do not: an `api-key` header or an Entra ID bearer token (neither: 401), and an `api-version`
//! (none: 404 "Resource not found", as Azure answers).

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::auth;
use crate::openai;
use crate::state::MockState;

/// Azure's own refusals, before the request reaches the OpenAI handlers.
fn refused(headers: &HeaderMap, query: &HashMap<String, String>) -> Option<Response> {
    if query.get("api-version").is_none_or(|v| v.trim().is_empty()) {
        return Some(error(StatusCode::NOT_FOUND, "404", "Resource not found"));
    }
    if auth::header(headers, "api-key").is_none() && auth::bearer(headers).is_none() {
        return Some(error(
            StatusCode::UNAUTHORIZED,
            "401",
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure to \
             provide a valid key for an active subscription and use a correct regional API \
             endpoint for your resource.",
        ));
    }
    None
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

pub(crate) async fn chat_completions(
    state: State<MockState>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match refused(&headers, &query) {
        Some(response) => response,
        None => openai::chat_completions(state, headers, body).await,
    }
}

/// The legacy text completions at a deployment URL (`gpt-35-turbo-instruct` and the like).
pub(crate) async fn completions(
    state: State<MockState>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match refused(&headers, &query) {
        Some(response) => response,
        None => crate::completions::completions(state, headers, body).await,
    }
}

pub(crate) async fn embeddings(
    state: State<MockState>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match refused(&headers, &query) {
        Some(response) => response,
        None => openai::embeddings(state, headers, body).await,
    }
}

/// Azure's v1 Responses API (`POST /openai/v1/responses?api-version=preview`): the body names
/// the Azure deployment as `model`.
pub(crate) async fn responses(
    state: State<MockState>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match refused(&headers, &query) {
        Some(response) => response,
        None => crate::responses::responses(state, headers, body).await,
    }
}

pub(crate) async fn models(
    state: State<MockState>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    match refused(&headers, &query) {
        Some(response) => response,
        None => openai::list_models(state, headers).await,
    }
}
