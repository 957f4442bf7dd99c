//! HTTP edge: routes, body reading, and rendering of deliveries and errors. Handlers are thin:
//! read the body, call the pipeline, render.

mod admin;
mod anthropic;
pub mod error;
mod metrics;
mod openai;
mod ops;
pub mod request_id;
mod videos;

pub use admin::expiry as admin_expiry;

use crate::state::AppState;
use axum::Router;
use axum::routing::{get, post};
use std::sync::Arc;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

/// Builds the gateway's router.
pub fn router(state: Arc<AppState>) -> Router {
    // The OpenAI SDKs use `{base}/chat/completions` with base `…/v1`; some clients are configured
    // with the bare host, so the same routes are served without the prefix too. They are added
    // at both paths rather than nested: `nest` rewrites the URI and adds an extension on every
    // request, work the handlers do not need.
    let mut router = Router::new().route("/v1/messages", post(anthropic::messages));
    for prefix in ["/v1", ""] {
        router = router
            .route(
                &format!("{prefix}/chat/completions"),
                post(openai::chat_completions),
            )
            .route(&format!("{prefix}/responses"), post(openai::responses))
            .route(&format!("{prefix}/embeddings"), post(openai::embeddings))
            .route(&format!("{prefix}/models"), get(openai::list_models))
            .route(&format!("{prefix}/models/{{*id}}"), get(openai::get_model))
            .route(&format!("{prefix}/videos"), post(videos::create))
            .route(&format!("{prefix}/videos/{{id}}"), get(videos::status));
    }
    router
        .route("/health", get(ops::health))
        .route("/health/live", get(ops::live))
        .route("/health/ready", get(ops::ready))
        .route("/status", get(crate::status::page::page))
        .route("/status.json", get(crate::status::page::json))
        .route(
            "/status/login",
            get(crate::status::session::login_form).post(crate::status::session::login),
        )
        .route("/status/logout", post(crate::status::session::logout))
        .route("/metrics", get(metrics::metrics))
        .nest("/admin", admin::routes())
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            ops::close_while_draining,
        ))
        .with_state(state)
        .layer(CatchPanicLayer::custom(error::panic_response))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        // Outermost: an unacceptable client id is gone before the layer above looks for one.
        .layer(axum::middleware::from_fn(request_id::bound))
}
