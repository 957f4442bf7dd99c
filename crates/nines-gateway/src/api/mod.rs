//! HTTP edge: routes, body reading, and rendering of deliveries and errors. Handlers are thin:
//! read the body, call the pipeline, render.

mod admin;
mod anthropic;
pub mod error;
mod metrics;
mod openai;
mod ops;
mod routes;
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
    // with the bare host, so the same routes are served without the prefix too.
    let openai = Router::new()
        .route("/chat/completions", post(openai::chat_completions))
        .route("/embeddings", post(openai::embeddings))
        .route("/models", get(openai::list_models))
        .route("/models/{*id}", get(openai::get_model))
        .route("/videos", post(videos::create))
        .route("/videos/{id}", get(videos::status));
    Router::new()
        .route("/v1/messages", post(anthropic::messages))
        .nest("/v1", openai.clone())
        .merge(openai)
        .route("/health", get(ops::health))
        .route("/health/live", get(ops::live))
        .route("/health/ready", get(ops::ready))
        .route("/status", get(crate::status::page::page))
        .route("/status.json", get(crate::status::page::json))
        .route("/metrics", get(metrics::metrics))
        .nest("/admin", admin::routes())
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(state)
        .layer(CatchPanicLayer::custom(error::panic_response))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}
