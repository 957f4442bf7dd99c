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
/// down one. Either being down makes `status` `"degraded"`, and so does breaker state that is not
/// shared with other replicas because Redis is away (`checks.shared_health`).
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
        let mut check = check;
        if check["status"] != "ok" {
            check["note"] = json!(
                "the store is down: keys declared in the config work, virtual keys work while \
                 cached (auth.stale_ttl), usage records and ledger deltas go to the spool and are \
                 written once the store answers"
            );
        }
        if !access
            .store_ready
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            check["migrated"] = json!(false);
        }
        degraded |= check["status"] != "ok";
        checks.insert("store".into(), check);
    }
    if let Some(accounting) = &access.accounting {
        checks.insert("usage_rollups".into(), accounting.stats.snapshot());
    }
    if let Some(spool) = &access.spool {
        checks.insert("spool".into(), spool.snapshot());
    }
    if let Some(usage) = &access.usage {
        checks.insert("usage_writer".into(), usage.stats.snapshot());
    }
    if runtime.config.access.auth.enabled && access.store.is_some() {
        let (check, auth_degraded) = auth_check(&access.auth, &runtime.config.access.auth);
        degraded |= auth_degraded;
        checks.insert("auth".into(), check);
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
    if let Some(shared) = shared_health(state) {
        degraded |= shared["status"] == "local";
        checks.insert("shared_health".into(), shared);
    }
    (
        StatusCode::OK,
        json!({"status": if degraded { "degraded" } else { "ready" }, "checks": checks}),
    )
}

/// What authentication can do now: with the key store down, cached keys work up to
/// `auth.stale_ttl` past `auth.cache_ttl` and keys declared in the config always; others get 503.
fn auth_check(
    auth: &crate::auth::Authenticator,
    config: &crate::config::access::Auth,
) -> (serde_json::Value, bool) {
    use std::sync::atomic::Ordering::Relaxed;
    let down = auth.store_down_since();
    let mut check = json!({
        "store_lookups": if down.is_some() { "failing" } else { "ok" },
        "stale_grants_served": auth.stats.stale_grants.load(Relaxed),
        "unavailable": auth.stats.unavailable.load(Relaxed),
        "unknown_keys_remembered": auth.unknown_keys(),
    });
    if let Some(since) = down {
        check["note"] = json!(format!(
            "the key store has been failing key lookups for {}s: keys declared in the config \
             work; virtual keys cached here work up to {} past their cache_ttl; other keys get 503",
            since.elapsed().as_secs(),
            humantime::format_duration(config.stale_ttl),
        ));
    }
    let sharing = auth.sharing();
    if let Some(live) = sharing {
        check["shared_changes"] = json!(live);
        if !live {
            check["shared_changes_note"] = json!(format!(
                "key changes from other replicas are not received through Redis; they apply \
                 within auth.cache_ttl ({})",
                humantime::format_duration(config.cache_ttl)
            ));
        }
    }
    (check, down.is_some() || sharing == Some(false))
}

/// With a shared Redis: whether breaker state and probe leases are shared now (`shared`) or
/// every breaker decides on this replica alone because Redis is away (`local`). Never makes the
/// gateway unready: local breakers still protect every request.
fn shared_health(state: &AppState) -> Option<serde_json::Value> {
    let link = state.access.redis.as_ref()?;
    let stats = state.shared_health.get();
    let up = stats.is_some_and(|s| s.up.load(std::sync::atomic::Ordering::Acquire));
    let tried = stats.is_some_and(|s| s.tried.load(std::sync::atomic::Ordering::Acquire));
    let count = |f: fn(&crate::replicas::SharedStats) -> u64| stats.map_or(0, |s| f(s));
    Some(json!({
        // Just started: not yet known, and not a reason to call the gateway degraded.
        "status": if up { "shared" } else if tried { "local" } else { "connecting" },
        "redis": link.mode(),
        "published": count(|s| s.published.load(std::sync::atomic::Ordering::Relaxed)),
        "applied": count(|s| s.applied.load(std::sync::atomic::Ordering::Relaxed)),
    }))
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
