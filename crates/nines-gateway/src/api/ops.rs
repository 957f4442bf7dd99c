//! Operational endpoints: liveness, readiness, health.

use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use http::StatusCode;
use serde_json::json;
use std::sync::Arc;

/// 200 while the server is serving requests, with what it runs: the version, the loaded
/// configuration's hash and where the process is in its life.
pub(super) async fn health(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "config_hash": state.runtime().config.hash,
        "phase": state.lifecycle.phase().as_str(),
    }))
}

/// 200 while the process runs; no dependency is consulted (a restart would not fix them).
pub(super) async fn live() -> Json<serde_json::Value> {
    Json(json!({"status": "live"}))
}

/// Readiness (see [`readiness`]). The checks carry internal error text (a database's, Redis's),
/// so they go only to the admin key, or to anyone when the gateway has no auth at all; others
/// get the status alone, which is all a load balancer reads.
pub(super) async fn ready(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let (status, mut body) = readiness(&state).await;
    let runtime = state.runtime();
    let auth = &runtime.config.access.auth;
    let open = !auth.enabled && auth.admin_key.is_none();
    let credential = crate::auth::credential(&headers);
    if !open && !crate::access::is_admin(&runtime.config.access, credential.as_ref()) {
        body = json!({"status": body["status"]});
    }
    (status, Json(body)).into_response()
}

/// 200 only when the configuration is loaded and every dependency requests need answers; 503
/// naming the one that does not, and 503 from the first moment of a shutdown (`draining`).
///
/// The store and Redis are reported (`checks.store`, `checks.limits`, and the usage writer's
/// counters) but only Redis with `on_redis_error = "closed"` can make the gateway not ready:
/// requests do not wait on the store (usage is buffered) and a fail-open limiter admits, so
/// taking every replica out of a load balancer for them would turn a degraded gateway into a
/// down one. Either being down makes `status` `"degraded"`.
async fn readiness(state: &AppState) -> (StatusCode, serde_json::Value) {
    // Shutting down: a load balancer must stop sending here before the listener closes.
    if state.lifecycle.draining() {
        let phase = state.lifecycle.phase().as_str();
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "draining", "failing": "shutdown", "phase": phase}),
        );
    }
    let runtime = state.runtime();
    let mut checks = serde_json::Map::new();
    checks.insert("config".into(), json!("ok"));
    if runtime.upstreams.len() != runtime.config.deployments.len() {
        checks.insert("config".into(), json!("upstream clients missing"));
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "not_ready", "failing": "config", "checks": checks}),
        );
    }
    let access = &state.access;
    let mut degraded = false;
    if let Some(store) = &access.store {
        let answer = tokio::time::timeout(std::time::Duration::from_secs(1), store.ping()).await;
        let check = match answer {
            Ok(Ok(())) => json!({"status": "ok", "backend": store.backend()}),
            Ok(Err(e)) => {
                json!({"status": "down", "backend": store.backend(), "error": e.to_string()})
            }
            Err(_) => json!({"status": "down", "backend": store.backend(), "error": "timed out"}),
        };
        degraded |= check["status"] != "ok";
        checks.insert("store".into(), check);
    }
    if let Some(accounting) = &access.accounting {
        checks.insert("usage_rollups".into(), accounting.stats.snapshot());
    }
    if let Some(usage) = &access.usage {
        checks.insert("usage_writer".into(), usage.stats.snapshot());
    }
    let mut limits = super::admin::limiter_status(&access.limiter);
    if let crate::limits::Limiters::Redis(redis) = &*access.limiter {
        let up = redis.ping().await;
        limits["status"] = json!(if up.is_ok() { "ok" } else { "down" });
        if let Err(e) = up {
            limits["error"] = json!(e);
            if redis.fail_mode() == crate::limits::FailMode::Closed {
                checks.insert("limits".into(), limits);
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({"status": "not_ready", "failing": "limits", "checks": checks}),
                );
            }
            degraded = true;
        }
    }
    checks.insert("limits".into(), limits);
    (
        StatusCode::OK,
        json!({"status": if degraded { "degraded" } else { "ready" }, "checks": checks}),
    )
}

/// While shutting down, HTTP/1 responses carry `connection: close`, so a keep-alive client (or a
/// load balancer's pooled connection) opens its next request somewhere that is not going away,
/// instead of finding the connection closed under it.
pub(super) async fn close_while_draining(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let http1 = request.version() <= http::Version::HTTP_11;
    let mut response = next.run(request).await;
    if http1 && state.lifecycle.draining() {
        response.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    response
}
