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
use axum::routing::{MethodRouter, get, post};
use std::sync::Arc;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

/// How a client endpoint is mounted.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mount {
    /// At its path only.
    Exact,
    /// Also without the `/v1` prefix: the OpenAI SDKs use `{base}/chat/completions` with base
    /// `…/v1`, but some clients are configured with the bare host.
    AlsoBare,
}

type Handler = fn() -> MethodRouter<Arc<AppState>>;

/// Every endpoint a client calls, in the order an unknown path's 404 lists them: adding an
/// endpoint is adding its line here.
const ENDPOINTS: &[(&str, &str, Mount, Handler)] = &[
    ("POST", "/v1/chat/completions", Mount::AlsoBare, || {
        post(openai::chat_completions)
    }),
    ("POST", "/v1/completions", Mount::AlsoBare, || {
        post(openai::completions)
    }),
    ("POST", "/v1/embeddings", Mount::AlsoBare, || {
        post(openai::embeddings)
    }),
    ("GET", "/v1/models", Mount::AlsoBare, || {
        get(openai::list_models)
    }),
    ("GET", "/v1/models/{*id}", Mount::AlsoBare, || {
        get(openai::get_model)
    }),
    ("POST", "/v1/messages", Mount::Exact, || {
        post(anthropic::messages)
    }),
    ("POST", "/v1/messages/count_tokens", Mount::Exact, || {
        post(anthropic::count_tokens)
    }),
    ("POST", "/v1/videos", Mount::AlsoBare, || {
        post(videos::create)
    }),
    ("GET", "/v1/videos/{id}", Mount::AlsoBare, || {
        get(videos::status)
    }),
];

/// The endpoints as a 404 lists them (`POST /v1/chat/completions, …`).
pub(crate) fn served_endpoints() -> String {
    let listed: Vec<String> = ENDPOINTS
        .iter()
        .map(|(method, path, _, _)| format!("{method} {path}"))
        .collect();
    listed.join(", ")
}

/// Builds the gateway's router.
pub fn router(state: Arc<AppState>) -> Router {
    // Routes are added at both paths rather than nested: `nest` rewrites the URI and adds an
    // extension on every request, work the handlers do not need.
    let mut router = Router::new();
    for (_, path, mount, handler) in ENDPOINTS {
        router = router.route(path, handler());
        if *mount == Mount::AlsoBare
            && let Some(bare) = path.strip_prefix("/v1")
        {
            router = router.route(bare, handler());
        }
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
