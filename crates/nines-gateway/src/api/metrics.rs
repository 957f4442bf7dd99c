//! `GET /metrics`: Prometheus text exposition (format 0.0.4), metrics in `docs/metrics.md`.
//!
//! Unauthenticated, as Prometheus scrapes by default, even when `[auth]` has an admin key: the
//! exposition holds counts and names from the configuration (routes, deployments, key slot
//! aliases), never a key, a request id or anything a client sent. Keep the port off the public
//! internet, or set `[telemetry] metrics = false`, which answers 404 here.

use super::error;
use crate::state::AppState;
use crate::telemetry::metrics::{
    CONTENT_TYPE, LimiterFailures, SharedHealth, render_plain, render_shared_health,
};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, Uri, header};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

pub(super) async fn metrics(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
) -> Response {
    let runtime = state.runtime();
    // The hub is built at start; a reload can turn the endpoint off (not on: that needs a restart).
    let enabled = runtime.config.telemetry.metrics;
    match &state.telemetry.metrics {
        Some(metrics) if enabled => {
            let mut text = metrics.render(
                &runtime.config,
                &runtime.health,
                state.access.limiter.redis_stats().map(|r| LimiterFailures {
                    failures: r.failures.load(Relaxed),
                    failed_open: r.failed_open.load(Relaxed),
                    failed_closed: r.failed_closed.load(Relaxed),
                }),
            );
            render_plain(&mut text, &state.access.plain_metrics());
            if state.access.redis.is_some() {
                let stats = state.shared_health.get();
                let count = |f: fn(&crate::replicas::SharedStats) -> u64| stats.map_or(0, |s| f(s));
                render_shared_health(
                    &mut text,
                    SharedHealth {
                        up: stats.is_some_and(|s| s.up.load(Relaxed)),
                        published: count(|s| s.published.load(Relaxed)),
                        applied: count(|s| s.applied.load(Relaxed)),
                        errors: count(|s| s.errors.load(Relaxed)),
                    },
                );
            }
            (
                [
                    (header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE)),
                    (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                ],
                text,
            )
                .into_response()
        }
        _ => error::not_found(method, uri).await,
    }
}
