//! Routing of Gemini's `/v1beta/models/{*rest}` wildcard to each action's handler: generation
//! in `gemini.rs`, embeddings in `gemini_embed.rs`. It sits above both, so they can share
//! [`gemini::Call`] without knowing each other.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;

use crate::gemini;
use crate::gemini_embed;
use crate::state::MockState;

/// The counted route for a request path, by the action after the model's last `:` (a GET
/// without an action is the model lookup).
pub(crate) fn route_of(method: &Method, path: &str) -> Option<&'static str> {
    if method == Method::GET {
        return (!path.contains(':')).then_some("/v1beta/models/{model}");
    }
    let (_, action) = path.rsplit_once(':')?;
    match action {
        "generateContent" => Some("/v1beta/models/{model}:generateContent"),
        "streamGenerateContent" => Some("/v1beta/models/{model}:streamGenerateContent"),
        "embedContent" => Some("/v1beta/models/{model}:embedContent"),
        "batchEmbedContents" => Some("/v1beta/models/{model}:batchEmbedContents"),
        _ => None,
    }
}

/// `POST /v1beta/models/{*rest}`: split `rest` into model and action (axum cannot route on a
/// `:action` suffix) and serve the action.
pub(crate) async fn dispatch(
    State(state): State<MockState>,
    Path(rest): Path<String>,
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
    let call = gemini::Call {
        state,
        headers,
        query,
        model: model.to_owned(),
        body,
    };
    match action {
        "embedContent" => gemini_embed::embed(call, false).await,
        "batchEmbedContents" => gemini_embed::embed(call, true).await,
        _ => match gemini::generate_action(call, action).await {
            Ok(response) => response,
            Err(call) => unknown_action(action, &call.model),
        },
    }
}

/// The 404 for an action the mock does not serve.
pub(crate) fn unknown_action(action: &str, model: &str) -> Response {
    gemini::error(
        StatusCode::NOT_FOUND,
        &format!("unknown action '{action}' for models/{model}"),
    )
}
