//! `GET /admin/routes?model=NAME`: each model's candidates, what filtered each out, and the order
//! with its reason — the plan a small request would get right now (live breaker, capacity and
//! latency state included). Without `model`, every configured model.

use crate::router::{Inputs, Placement};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::Arc;

#[derive(serde::Deserialize)]
pub(crate) struct RoutesQuery {
    model: Option<String>,
}

/// Open when no admin key is configured (local use, like the rest of a key-less setup); with one,
/// only the admin key may read it.
pub(crate) async fn routes(
    State(state): State<Arc<AppState>>,
    headers: http::HeaderMap,
    Query(q): Query<RoutesQuery>,
) -> Response {
    let runtime = state.runtime();
    let access = &runtime.config.access;
    if access.auth.admin_key.is_some()
        && !crate::access::is_admin(access, crate::auth::credential(&headers).as_ref())
    {
        return super::AdminError::Unauthorized {
            message: "GET /admin/routes needs the admin key as 'Authorization: Bearer …'.".into(),
            code: "invalid_admin_key",
        }
        .into_response();
    }
    let names: Vec<String> = match q.model {
        Some(m) => vec![m],
        None => runtime
            .config
            .models
            .iter()
            .map(|m| m.name.clone())
            .collect(),
    };
    let mut models = Vec::new();
    for name in names {
        let Some(route) = runtime.table.resolve(&name) else {
            return crate::request::GatewayError::ModelNotFound(name).into_response();
        };
        let inputs = Inputs {
            deployments: &runtime.config.deployments,
            health: Some(&runtime.health),
            estimate: None,
        };
        let plan = runtime.table.plan(route, &inputs);
        let deployments = &runtime.config.deployments;
        let order: Vec<Value> = plan
            .slots
            .iter()
            .map(|s| {
                let d = &deployments[s.deployment];
                let health = &runtime.health.deployments[s.deployment];
                let learned = &runtime.config.resilience.learned_first_byte;
                let deadline_ms = |stream| {
                    health
                        .first_byte
                        .deadline(stream, d.timeouts.first_byte, learned)
                        .as_millis() as u64
                };
                json!({
                    "deployment": d.name,
                    "key_slot": d.keys.get(s.key).map(|k| k.alias.clone()),
                    "provider": d.provider_name(),
                    "reason": s.reason.to_string(),
                    "placement": match &s.placement {
                        Placement::Normal => "normal".to_owned(),
                        Placement::Region => "preferred region".to_owned(),
                        Placement::Fallback { model } => format!("fallback via {model}"),
                        Placement::Demoted { why } => format!("demoted: {why}"),
                    },
                    "breaker": runtime.health.breaker(s.deployment, s.key).map(|b| b.phase().as_str()),
                    "in_flight": health.in_flight(),
                    "max_concurrency": health.capacity(),
                    "ttfb_ewma_ms": health.latency().as_secs_f64() * 1000.0,
                    "tier": s.tier,
                    "first_byte_deadline_ms": {
                        "whole": deadline_ms(false),
                        "stream": deadline_ms(true),
                    },
                })
            })
            .collect();
        let skipped: Vec<Value> = plan
            .skipped
            .iter()
            .map(|s| json!({"deployment": deployments[s.deployment].name, "why": s.why}))
            .collect();
        models.push(json!({
            "model": name,
            "strategy": route.strategy.as_str(),
            "degrade": route.degrade.as_str(),
            "fallbacks": route.fallbacks,
            "context_fallbacks": route.context_fallbacks,
            "order": order,
            "skipped": skipped,
        }));
    }
    Json(json!({"models": models})).into_response()
}
