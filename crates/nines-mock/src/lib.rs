//! A chaos mock LLM provider speaking the OpenAI wire format, for tests, `nines demo`,
//! `nines mock` and the benchmark.
//!
//! Content is deterministic: the reply to a chat is `Hello from {name}! You said: {last user
//! message, first 60 chars}`, split into words (one stream chunk per word), and usage is
//! `ceil(chars/4) + 3` per message for the prompt, one token per word for the completion.
//! Every response carries `x-mock-name: {name}`.
//!
//! # Routes
//!
//! | Route | |
//! |---|---|
//! | `POST /v1/chat/completions` | non-streaming and SSE; `n`, `tools`/`tool_choice`, `response_format` json, `max_tokens`, `stream_options.include_usage` |
//! | `POST /v1/embeddings` | string, string array or token arrays; `dimensions` (default 8); `encoding_format` `float` or `base64` |
//! | `GET /v1/models` | the configured model list |
//! | `GET /v1/models/{id}` | any id |
//! | `GET /_mock/hits` | `{"total","routes":{route: n},"max_in_flight":{route: n}}` |
//! | `GET`/`POST`/`DELETE /_mock/fault` | read / set (body: script or `null`) / clear the fault script |
//! | `POST /_mock/reset` | clear hits, maxima, recorded requests and the fault |
//! | `GET /_mock/requests` | the last 256 requests on counted routes |
//!
//! Hits are counted per route pattern (the four `/v1/...` rows above, `/v1/models/{id}` for
//! the model lookup); `/_mock/...` routes are never counted, recorded or faulted.
//!
//! # Faults
//!
//! A [`FaultScript`] is installed with [`MockServer::set_fault`], `POST /_mock/fault`, or
//! [`MockOptions::fault`]; a single request can carry one in the `x-mock-fault` header (JSON),
//! which wins over the server's script and always applies to that request. All fields are
//! optional.
//!
//! Effects (what a faulted request gets):
//! - `status`: that status with an OpenAI-shaped error body (429 `rate_limit_exceeded`,
//!   503/529 `overloaded_error`, other 5xx `server_error`, 401 `authentication_error`, ...).
//! - `body`: this raw body (`application/json`) instead; status 200 unless `status` is set.
//! - `retry_after`, `retry_after_ms`: `retry-after` / `retry-after-ms` headers on that response.
//! - `hang`: never answer (until the client disconnects or the server shuts down).
//! - `first_byte_ms`, `latency_ms`: delay before the response head (the two add up).
//! - `chunk_delay_ms`: delay between SSE events.
//! - `stall_after_chunks: K`: send K events, then go silent with the connection open.
//! - `reset_after_chunks: K`: send K events, then abort the connection (non-streaming: abort
//!   without a body).
//! - `malformed_chunk_at: K`: event K (0-based) is `data: {not json`.
//! - `error_event_at: K`: event K is an in-band `{"error":...}` event, then the stream ends.
//! - `no_done`: no `data: [DONE]` terminator.
//!
//! Stream event indices count every `data:` event including `[DONE]`.
//!
//! Gates (which requests are faulted; all that are set must agree):
//! - `fail_percent` (0..=100), with optional `seed`: without a seed an evenly spread pattern
//!   (50 faults requests 0, 2, 4, ...); with one a reproducible pseudo-random draw per request.
//! - `times: N`: only the first N faults are injected, then requests are served normally.
//! - `down_from_ms`, `down_to_ms`: a window relative to when the script was set.
//! - `cycle_period_ms`, `cycle_down_ms`: a repeating outage, down for the first
//!   `cycle_down_ms` (default half) of every period.
//!
//! A script with no effect field (only gates, or empty) answers 503: the provider is down.
//! Time is read from `tokio::time`, so paused-clock tests steer windows and delays.

mod chat;
mod control;
mod effects;
mod error;
mod faults;
mod openai;
mod sse;
mod state;
mod text;
mod track;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::State;
use axum::middleware;
use axum::response::Response;
use axum::routing::{get, post};
use tokio::task::JoinHandle;

pub use faults::{FaultError, FaultScript};
pub use state::{MockState, RecordedRequest};

/// How long [`MockServer::shutdown`] waits for connections to close before cutting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How a mock presents itself.
#[derive(Clone, Debug, Default)]
pub struct MockOptions {
    /// Appears in reply content and in the `x-mock-name` header.
    pub name: String,
    /// Listed by `GET /v1/models`; any model name is still accepted by the other routes.
    pub models: Vec<String>,
    /// The fault script installed at start.
    pub fault: Option<FaultScript>,
}

/// The mock's routes over `state`, for embedding in another server.
pub fn router(state: MockState) -> Router {
    let counted =
        |route: &'static str| middleware::from_fn_with_state((state.clone(), route), track::track);
    Router::new()
        .route(
            "/v1/chat/completions",
            post(openai::chat_completions).layer(counted("/v1/chat/completions")),
        )
        .route(
            "/v1/embeddings",
            post(openai::embeddings).layer(counted("/v1/embeddings")),
        )
        .route(
            "/v1/models",
            get(openai::list_models).layer(counted("/v1/models")),
        )
        // A wildcard, because provider model ids often contain slashes ("meta/llama-3").
        .route(
            "/v1/models/{*id}",
            get(openai::get_model).layer(counted("/v1/models/{id}")),
        )
        .merge(control::routes())
        .fallback(|| async { error::not_found("unknown route") })
        .layer(DefaultBodyLimit::max(track::BODY_LIMIT))
        .layer(middleware::map_response_with_state(
            state.clone(),
            name_header,
        ))
        .with_state(state)
}

async fn name_header(State(state): State<MockState>, mut response: Response) -> Response {
    response
        .headers_mut()
        .insert("x-mock-name", state.name_header());
    response
}

/// A mock listening on a socket. Dropping it shuts the server down.
pub struct MockServer {
    addr: SocketAddr,
    state: MockState,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl MockServer {
    /// Bind `bind` (port 0 picks a free port) and serve in a background task.
    pub async fn start(bind: SocketAddr, opts: MockOptions) -> io::Result<MockServer> {
        let listener = tokio::net::TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let state = MockState::new(opts);
        let app = router(state.clone());
        let stopping = state.clone();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { stopping.shutting_down().await })
                .await
        });
        tracing::debug!(%addr, name = state.name(), "mock provider listening");
        Ok(MockServer {
            addr,
            state,
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://{addr}/v1`, the base URL an OpenAI client wants.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The shared state, e.g. to hand to code that takes a [`MockState`].
    pub fn state(&self) -> &MockState {
        &self.state
    }

    /// Hits on one route pattern, e.g. `/v1/chat/completions`.
    pub fn hits(&self, route: &str) -> u64 {
        self.state.hits(route)
    }

    pub fn total_hits(&self) -> u64 {
        self.state.total_hits()
    }

    /// The highest number of concurrent in-flight requests seen on one route pattern.
    pub fn max_in_flight(&self, route: &str) -> u64 {
        self.state.max_in_flight(route)
    }

    /// Install a fault script; `None` clears it.
    pub fn set_fault(&self, script: Option<FaultScript>) {
        self.state.set_fault(script);
    }

    /// The last 256 requests received on counted routes, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests()
    }

    /// Clear hits, in-flight maxima, recorded requests and the fault script.
    pub fn reset(&self) {
        self.state.reset();
    }

    /// Stop accepting, end hung and stalled responses, and wait (briefly) for the server to
    /// finish.
    pub async fn shutdown(mut self) {
        self.state.begin_shutdown();
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        // The shutdown signal also reaches the per-connection tasks (axum's graceful
        // shutdown), which outlive the aborted accept loop.
        self.state.begin_shutdown();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
