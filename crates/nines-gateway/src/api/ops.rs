//! Operational endpoints: liveness, readiness, health.

use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::json;
use std::sync::Arc;

/// 200 while the server is serving requests.
pub(super) async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// 200 while the process runs; no dependency is consulted (a restart would not fix them).
pub(super) async fn live() -> Json<serde_json::Value> {
    Json(json!({"status": "live"}))
}

/// 200 only when the configuration is loaded and every configured dependency answers; 503 naming
/// the one that does not. The store and Redis join this list when they exist.
pub(super) async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let runtime = state.runtime();
    let mut checks = serde_json::Map::new();
    checks.insert("config".into(), json!("ok"));
    if runtime.upstreams.len() != runtime.config.deployments.len() {
        checks.insert("config".into(), json!("upstream clients missing"));
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready", "failing": "config", "checks": checks})),
        )
            .into_response();
    }
    (
        StatusCode::OK,
        Json(json!({"status": "ready", "checks": checks})),
    )
        .into_response()
}
