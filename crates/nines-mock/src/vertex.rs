//! The Vertex AI dialect: Gemini's `generateContent`, `streamGenerateContent` and `countTokens`
//! at `POST /v1/projects/{project}/locations/{location}/publishers/google/models/{model}:{action}`.
//! The body and answer are Gemini's (`gemini.rs` serves them); what Vertex adds is the check of
//! the bearer token: it must be one the mock's token endpoint issued and not expired (missing or
//! not: 401 `UNAUTHENTICATED`, as Google answers).

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::auth;
use crate::gemini;
use crate::state::MockState;

/// The counted route of a Vertex request path, by its action.
pub(crate) fn route_of(method: &Method, path: &str) -> Option<&'static str> {
    if method != Method::POST {
        return None;
    }
    let (_, action) = path.rsplit_once(':')?;
    match action {
        "generateContent" => Some(
            "/v1/projects/{project}/locations/{location}/publishers/google/models/{model}:generateContent",
        ),
        "streamGenerateContent" => Some(
            "/v1/projects/{project}/locations/{location}/publishers/google/models/{model}:streamGenerateContent",
        ),
        "countTokens" => Some(
            "/v1/projects/{project}/locations/{location}/publishers/google/models/{model}:countTokens",
        ),
        _ => None,
    }
}

pub(crate) async fn dispatch(
    State(state): State<MockState>,
    Path((_project, _location, rest)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some((model, action)) = rest.rsplit_once(':') else {
        return gemini::error(
            StatusCode::NOT_FOUND,
            &format!("unknown route models/{rest}"),
        );
    };
    match auth::bearer(&headers) {
        Some(token) if state.token_valid(token) => {}
        Some(_) => {
            return gemini::error(
                StatusCode::UNAUTHORIZED,
                "Request had invalid authentication credentials. Expected OAuth 2 access token, \
                 login cookie or other valid authentication credential.",
            );
        }
        None => {
            return gemini::error(
                StatusCode::UNAUTHORIZED,
                "Request is missing required authentication credential. Expected OAuth 2 access \
                 token, login cookie or other valid authentication credential.",
            );
        }
    }
    let call = gemini::Call {
        state,
        headers,
        query,
        model: model.to_owned(),
        body,
    };
    if action == "countTokens" {
        return count_tokens(&call.body);
    }
    match gemini::generate_action(call, action).await {
        Ok(response) => response,
        Err(call) => crate::gemini_route::unknown_action(action, &call.model),
    }
}

/// `{"totalTokens"}` by the mock's estimate: `ceil(chars/4) + 3` per content.
fn count_tokens(body: &[u8]) -> Response {
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return gemini::error(StatusCode::BAD_REQUEST, "Invalid JSON payload received.");
    };
    let total: u64 = request["contents"]
        .as_array()
        .map(|contents| {
            contents
                .iter()
                .map(|c| {
                    let text: String = c["parts"]
                        .as_array()
                        .map(|parts| parts.iter().filter_map(|p| p["text"].as_str()).collect())
                        .unwrap_or_default();
                    crate::text::estimate_tokens(&text) + 3
                })
                .sum()
        })
        .unwrap_or(0);
    Json(json!({"totalTokens": total})).into_response()
}
