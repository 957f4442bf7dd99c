//! A chaos mock LLM provider speaking the OpenAI, Anthropic, Gemini, Replicate and Runway wire
//! formats, and those of the cloud-hosted Azure OpenAI, Amazon Bedrock and Vertex AI, for tests,
//! `nines demo`, `nines mock` and the benchmark.
//!
//! Each dialect is an independent implementation of its provider's wire format (it shares no
//! types with `nines-protocol`), so tests of the gateway's translations are not circular.
//!
//! Content is deterministic and the same in every dialect: the reply to a chat is `Hello from
//! {name}! You said: {last user message, first 60 chars}`, split into words (one stream event per
//! word), and usage is `ceil(chars/4) + 3` per message for the prompt (a system prompt counts as
//! a message), one token per word for the completion, `ceil(13/4) = 4` for a tool call (whose
//! arguments are always `{"mock":true}`). Every response carries `x-mock-name: {name}`.
//!
//! # Routes
//!
//! Each route's hits are counted under the key in the second column.
//!
//! | Route | Hit key | |
//! |---|---|---|
//! | `POST /v1/chat/completions` | same | OpenAI; non-streaming and SSE; `n`, `tools`/`tool_choice`, `response_format` json, `max_tokens`, `stream_options.include_usage`; a final assistant message is continued, not answered (prefill: only the rest of the reply comes) |
//! | `POST /v1/completions` | same | OpenAI legacy completions; `prompt` (string or strings), `max_tokens` (default 16), `stop`, `stream`, `stream_options.include_usage`; a field outside the API is refused ("Unrecognized request argument supplied") |
//! | `POST /v1/responses` | same | OpenAI's Responses API; checked as OpenAI checks it (`model`, `input` items and their fields, `function_call_output` only after its `function_call`, no chat fields, no `previous_response_id`); `instructions`, function tools and `tool_choice`, `text.format`, `max_output_tokens`; a built-in `web_search` tool adds a `web_search_call` item; SSE: the typed events numbered by `sequence_number`, ending with `response.completed` |
//! | `POST /v1/embeddings` | same | OpenAI; string, string array or token arrays; `dimensions` (default 8); `encoding_format` `float` or `base64` |
//! | `GET /v1/models` | same | the configured model list |
//! | `GET /v1/models/{id}` | `/v1/models/{id}` | any id |
//! | `POST /v1/messages` | same | Anthropic Messages; needs `x-api-key` (else 401) and `anthropic-version` (else 400); `max_tokens` required; unknown top-level fields refused; `system`, content blocks, `tools`/`tool_choice`, `stop_sequences`, `stream`, `thinking` (checked as the API checks it; the answer opens with a thinking block); a final assistant message is continued (prefill), and refused when it ends with whitespace, as the API does |
//! | `POST /v1/messages/count_tokens` | same | Anthropic; same headers; `model`, `messages`, `system`, `tools`, `tool_choice`, `thinking` only; `{"input_tokens"}` as `/v1/messages` counts the prompt |
//! | `POST /v1beta/models/{model}:generateContent` | same | Gemini; key in `x-goog-api-key`, `?key=` or a bearer token (none: 403); `systemInstruction`, `tools.functionDeclarations`, `toolConfig`, `generationConfig` (`maxOutputTokens`, `stopSequences`, `candidateCount`, `responseMimeType`) |
//! | `POST /v1beta/models/{model}:streamGenerateContent` | same | as above; `?alt=sse`: one `data:` chunk per word, the last with `finishReason` and `usageMetadata`, no terminator; without it one JSON array of the chunks |
//! | `GET /v1beta/models/{model}` | `/v1beta/models/{model}` | Gemini; the model's metadata (`name`, `inputTokenLimit`, `supportedGenerationMethods`); key checked as for `generateContent` |
//! | `POST /v1beta/models/{model}:embedContent` | same | Gemini; `{embedding:{values}}`, the OpenAI vectors; `outputDimensionality` |
//! | `POST /v1beta/models/{model}:batchEmbedContents` | same | Gemini; `{embeddings:[{values}]}` |
//! | `POST /v1/models/{owner}/{name}/predictions` | same | Replicate; bearer (or `Token`) auth; `input.prompt`, `system_prompt`, `max_tokens`/`max_new_tokens`; `Prefer: wait` answers the finished prediction, else `starting` |
//! | `POST /v1/predictions` | same | Replicate; as above with `version` (`owner/name:hash` or a hash) |
//! | `GET /v1/predictions/{id}` | same | the prediction, finished (the last 256 are kept) |
//! | `POST /v1/predictions/{id}/cancel` | same | the prediction, unchanged (it is already finished) |
//! | `GET /v1/stream/{id}` | same | Replicate SSE: `event: output` / `id: N` / raw token per word, then `event: done` (`{}`, or `{"reason":"error"\|"canceled"}`); no auth |
//! | `POST /v1/text_to_video`, `POST /v1/image_to_video` | same | Runway; bearer auth and `X-Runway-Version` (else 400) on every Runway route; answers `{id}` |
//! | `GET /v1/organization` | same | Runway; `{creditBalance, tier, usage}` |
//! | `GET`/`DELETE /v1/tasks/{id}` | `/v1/tasks/{id}` | Runway; first poll `RUNNING` (progress 0.5), later ones the end state (`SUCCEEDED` with `output`); DELETE forgets the task (204) |
//! | `POST /openai/deployments/{deployment}/chat/completions` | same | Azure OpenAI: the OpenAI chat route behind Azure's checks: `?api-version=` (none: 404 "Resource not found") and `api-key` or a bearer token (none: 401) |
//! | `POST /openai/deployments/{deployment}/embeddings` | same | Azure; the OpenAI embeddings route, same checks |
//! | `POST /openai/deployments/{deployment}/completions` | same | Azure; the OpenAI legacy completions route, same checks |
//! | `GET /openai/models` | same | Azure; the model list, same checks |
//! | `POST /model/{model}/converse` | same | Bedrock Converse; a SigV4 signature for service `bedrock` with the test credentials ([`clouds`]) is required: none, another key id, another secret, a date more than 5 min off: 403 with the exception AWS names (`x-amzn-ErrorType`, body `{"message"}`); `system`, `inferenceConfig` (`maxTokens`, `stopSequences`), `toolConfig` (the first tool is called unless the last turn holds a `toolResult`) |
//! | `POST /model/{model}/converse-stream` | same | as above, answered as AWS event-stream frames (`messageStart`, `contentBlockStart`/`Delta`/`Stop`, `messageStop`, `metadata` last; `no_done` leaves out `metadata`); `error_event_at` sends a `serviceUnavailableException` frame; every frame carries valid CRCs (`malformed_chunk_at` breaks the JSON inside, not the frame) |
//! | `POST /v1/projects/{project}/locations/{location}/publishers/google/models/{model}:{action}` | per action (`generateContent`, `streamGenerateContent`, `countTokens`) | Vertex AI: Gemini's bodies and answers; the bearer token must be one `/token` issued, unexpired (else 401 `UNAUTHENTICATED`) |
//! | `POST /token` | not counted ([`MockServer::tokens_issued`]) | Google's OAuth token endpoint: the JWT-bearer grant; the assertion must be RS256-signed by the test service account (`fixtures/test-only/`), `iss` that account, `aud` this URL, cloud-platform scope, unexpired (else 400 `invalid_grant`); answers an access token living [`MockServer::set_token_lifetime`] (default 3599 s). Only an `x-mock-fault` header faults it |
//! | `GET /_mock/hits` | | `{"total","routes":{route: n},"max_in_flight":{route: n},"streamed_bytes","open_streams"}` (SSE body bytes handed to connections, SSE bodies being sent: [`MockServer::streamed_bytes`], [`MockServer::open_streams`]) |
//! | `GET`/`POST`/`DELETE /_mock/fault` | | read / set (body: script or `null`) / clear the fault script |
//! | `GET`/`POST`/`DELETE /_mock/capacity` | | read / set (body: a [`Capacity`] or `null`) / clear the capacity model |
//! | `POST /_mock/reset` | | clear hits, maxima, recorded requests, remembered jobs and the fault |
//! | `GET /_mock/requests` | | the last 256 requests on counted routes, headers and body included |
//!
//! `GET /v1/models/{owner}/{name}/predictions` is still the OpenAI model lookup (the paths
//! coincide); a Gemini action the mock does not serve is a 404 and not counted.
//! `/_mock/...` routes are never counted, recorded or faulted.
//!
//! Errors are shaped like each provider's: OpenAI `{"error":{"message","type","param","code"}}`,
//! Anthropic `{"type":"error","error":{"type","message"}}`, Gemini
//! `{"error":{"code","message","status"}}`, Replicate `{"detail","status"}`, Runway
//! `{"error"}`.
//!
//! # Faults
//!
//! A [`FaultScript`] is installed with [`MockServer::set_fault`], `POST /_mock/fault`, or
//! [`MockOptions::fault`]; a single request can carry one in the `x-mock-fault` header (JSON),
//! which wins over the server's script and always applies to that request. All fields are
//! optional, and gates and effects work the same on every dialect.
//!
//! Effects (what a faulted request gets):
//! - `status`: that status with an error body in the route's dialect. OpenAI: 429
//!   `rate_limit_exceeded`, 503/529 `overloaded_error`, other 5xx `server_error`, 401
//!   `authentication_error`, ... Anthropic: 503/529 `overloaded_error` "Overloaded", 429
//!   `rate_limit_error`, other 5xx `api_error`, 401 `authentication_error`, 403
//!   `permission_error`, other 4xx `invalid_request_error`. Gemini: 429 `RESOURCE_EXHAUSTED`,
//!   503/529 `UNAVAILABLE`, 500 `INTERNAL`, 400 `INVALID_ARGUMENT`, 401 `UNAUTHENTICATED`, 403
//!   `PERMISSION_DENIED`, ...
//! - `body`: this raw body (`application/json`) instead; status 200 unless `status` is set.
//! - `retry_after`, `retry_after_ms`: `retry-after` / `retry-after-ms` headers on that response.
//! - `hang`: never answer (until the client disconnects or the server shuts down).
//! - `first_byte_ms`, `latency_ms`: delay before the response head (the two add up).
//! - `chunk_delay_ms`: delay between SSE events.
//! - `split_writes: N`: every SSE event (on every dialect) is written in N-byte pieces, each
//!   flushed on its own, so readers see events cut mid-line and mid-UTF-8 character.
//! - `stall_after_chunks: K`: send K events, then go silent with the connection open.
//! - `reset_after_chunks: K`: send K events, then abort the connection (non-streaming: abort
//!   without a body).
//! - `malformed_chunk_at: K`: event K (0-based) keeps its `event:`/`id:` lines but its data is
//!   `{not json` (Replicate, whose data is raw text: two bytes that are not UTF-8).
//! - `error_event_at: K`: event K is an in-band error event, then the stream ends. OpenAI
//!   `data: {"error":{...,"type":"server_error"}}`; Anthropic `event: error` with an
//!   `overloaded_error`; Gemini `data: {"error":{"code":503,...,"status":"UNAVAILABLE"}}`;
//!   Replicate `event: error` / `data: {"detail":"mock in-stream error"}`.
//! - `big_event_at: K`, `big_event_bytes: N`: before event K (0-based; K may be the event count,
//!   after the last one) an extra data-only event `data: {"padding":"xx…"}` with N bytes of
//!   padding (default 64 MiB), written in 64 KiB pieces as fast as the client reads (SSE
//!   dialects; Bedrock's length-prefixed frames cannot be endless). Small, it is a legal big
//!   event and the stream goes on; large, it tests that a client bounds what one event may
//!   buffer and stops reading ([`MockServer::streamed_bytes`] shows how far it read).
//! - `no_done`: the stream ends without its terminator: OpenAI `data: [DONE]`, Anthropic
//!   `message_stop`, Replicate `event: done`; Gemini has none, so its last chunk comes without
//!   `finishReason` and `usageMetadata`.
//! - `content_filter`: the reply is blocked by a safety filter, with a success status: OpenAI
//!   `finish_reason: "content_filter"` and empty content (stream: the role chunk, then a finish
//!   chunk); Anthropic `stop_reason: "refusal"` and no content blocks (stream: `message_start`,
//!   `ping`, `message_delta`, `message_stop`); Gemini a candidate with `finishReason: "SAFETY"`
//!   and no content; Replicate a failed prediction (E005 "flagged as sensitive"); Runway a
//!   `FAILED` task with `failureCode: "SAFETY.OUTPUT.VIDEO"`.
//! - `context_too_long`: the provider says the prompt does not fit, claiming the limit plus the
//!   prompt's own estimate: OpenAI 400 `context_length_exceeded` (limit 8192; embeddings too,
//!   `param: "input"`); Anthropic 400 "prompt is too long: N tokens > 200000 maximum"; Gemini 400
//!   `INVALID_ARGUMENT` "The input token count (N) exceeds the maximum number of tokens allowed
//!   (1048576)." (embeddings: 2048); Replicate a failed prediction; Runway 400 (`promptText`
//!   over 1000 characters).
//! - `prediction_status`: `"failed"` or `"canceled"`: a Replicate prediction ends `failed`
//!   (`error: "mock prediction failed"`) or `canceled`; a Runway task ends `FAILED`
//!   (`failure: "mock task failed"`, `failureCode: "INTERNAL"`) or `CANCELLED`.
//!
//! `status` and `body` win over the three answer-changing effects. Credentials and required
//! headers are checked after the pre-response effects (a provider that is down does not get
//! that far) and before `context_too_long` and `content_filter`.
//!
//! Stream event indices count every event including the terminator. Jobs (Replicate
//! predictions, Runway tasks) draw their fault once, when created: it decides how the job ends,
//! and its stream effects break `GET /v1/stream/{id}` later (without `Prefer: wait` a creation
//! is not aborted by `reset_after_chunks`; the stream is). Polls, cancels and stream reads never
//! draw from the server's script, only obey an `x-mock-fault` header of their own (which, on a
//! stream read, replaces the creation's fault).
//!
//! Gates (which requests are faulted; all that are set must agree):
//! - `fail_percent` (0..=100), with optional `seed`: without a seed an evenly spread pattern
//!   (50 faults requests 0, 2, 4, ...); with one a reproducible pseudo-random draw per request.
//! - `times: N`: only the first N faults are injected, then requests are served normally.
//! - `spare_models`: the model list and model lookups (`GET /v1/models`, `/v1/models/{id}`,
//!   Gemini's `GET /v1beta/models/{model}`: what health probes ask) answer normally and draw
//!   nothing from the script, as a provider whose `/models` is up while the model fails.
//! - `down_from_ms`, `down_to_ms`: a window relative to when the script was set.
//! - `cycle_period_ms`, `cycle_down_ms`: a repeating outage, down for the first
//!   `cycle_down_ms` (default half) of every period.
//!
//! A script with no effect field (only gates, or empty) answers 503: the provider is down.
//!
//! # Capacity
//!
//! A [`Capacity`] models a provider that is busy rather than broken: `max_concurrency` slots,
//! each request (a `POST` on a counted route) holding one for `service_ms` before its response
//! head and `token_ms` per further stream event (non-streamed: per output token before the
//! answer), the rest waiting in line, optionally at most `max_queue` of them (then 429). Latency
//! grows with the queue once the offered load passes `max_concurrency` ÷ holding time, which is
//! what `nines loadtest --find-capacity` looks for. `fill_max_tokens` makes OpenAI chat answers
//! as long as their `max_tokens`. Faults apply after the wait, to the request holding the slot.
//! Time is read from `tokio::time`, so paused-clock tests steer windows and delays.

mod anthropic;
mod anthropic_count;
mod auth;
mod azure;
mod bedrock;
mod bedrock_frames;
mod capacity;
mod chat;
pub mod clouds;
mod completions;
mod control;
mod effects;
mod error;
mod faults;
mod gemini;
mod gemini_embed;
mod gemini_route;
mod google_token;
mod jobs;
mod openai;
mod replicate;
mod replicate_prediction;
mod responses;
mod runway;
mod runway_task;
mod sigv4;
mod slots;
mod sse;
mod state;
mod text;
mod track;
mod vertex;

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

pub use capacity::{Capacity, CapacityError};
pub use faults::{FaultError, FaultScript, PredictionStatus};
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
    let counted_by = |route_of: track::RouteOf| {
        middleware::from_fn_with_state((state.clone(), route_of), track::track_by)
    };
    Router::new()
        .route(
            "/v1/chat/completions",
            post(openai::chat_completions).layer(counted("/v1/chat/completions")),
        )
        .route(
            "/v1/completions",
            post(completions::completions).layer(counted("/v1/completions")),
        )
        .route(
            "/v1/responses",
            post(responses::responses).layer(counted("/v1/responses")),
        )
        .route(
            "/v1/embeddings",
            post(openai::embeddings).layer(counted("/v1/embeddings")),
        )
        .route(
            "/v1/models",
            get(openai::list_models).layer(counted("/v1/models")),
        )
        // A wildcard, because provider model ids often contain slashes ("meta/llama-3"). POST
        // is Replicate's `/v1/models/{owner}/{name}/predictions`, which the router cannot
        // tell apart from the wildcard.
        .route(
            "/v1/models/{*id}",
            get(openai::get_model)
                .post(replicate::create_for_model)
                .layer(counted_by(replicate::models_route_of)),
        )
        .route(
            "/v1/messages",
            post(anthropic::messages).layer(counted("/v1/messages")),
        )
        .route(
            "/v1/messages/count_tokens",
            post(anthropic_count::count_tokens).layer(counted("/v1/messages/count_tokens")),
        )
        // One pattern for every `{model}:{action}`; hits are counted per action.
        .route(
            "/v1beta/models/{*rest}",
            get(gemini::get_model)
                .post(gemini_route::dispatch)
                .layer(counted_by(gemini_route::route_of)),
        )
        .route(
            "/v1/predictions",
            post(replicate::create).layer(counted("/v1/predictions")),
        )
        .route(
            "/v1/predictions/{id}",
            get(replicate::get).layer(counted("/v1/predictions/{id}")),
        )
        .route(
            "/v1/predictions/{id}/cancel",
            post(replicate::cancel).layer(counted("/v1/predictions/{id}/cancel")),
        )
        .route(
            "/v1/stream/{id}",
            get(replicate::stream).layer(counted("/v1/stream/{id}")),
        )
        .route(
            "/v1/text_to_video",
            post(runway::text_to_video).layer(counted("/v1/text_to_video")),
        )
        .route(
            "/v1/image_to_video",
            post(runway::image_to_video).layer(counted("/v1/image_to_video")),
        )
        .route(
            "/v1/organization",
            get(runway::organization).layer(counted("/v1/organization")),
        )
        .route(
            "/v1/tasks/{id}",
            get(runway::get_task)
                .delete(runway::delete_task)
                .layer(counted("/v1/tasks/{id}")),
        )
        .route(
            "/openai/deployments/{deployment}/chat/completions",
            post(azure::chat_completions)
                .layer(counted("/openai/deployments/{deployment}/chat/completions")),
        )
        .route(
            "/openai/deployments/{deployment}/completions",
            post(azure::completions).layer(counted("/openai/deployments/{deployment}/completions")),
        )
        .route(
            "/openai/deployments/{deployment}/embeddings",
            post(azure::embeddings).layer(counted("/openai/deployments/{deployment}/embeddings")),
        )
        .route(
            "/openai/models",
            get(azure::models).layer(counted("/openai/models")),
        )
        .route(
            "/openai/v1/responses",
            post(azure::responses).layer(counted("/openai/v1/responses")),
        )
        .route(
            "/model/{model}/converse",
            post(bedrock::converse).layer(counted("/model/{model}/converse")),
        )
        .route(
            "/model/{model}/converse-stream",
            post(bedrock::converse_stream).layer(counted("/model/{model}/converse-stream")),
        )
        .route(
            "/v1/projects/{project}/locations/{location}/publishers/google/models/{*rest}",
            post(vertex::dispatch).layer(counted_by(vertex::route_of)),
        )
        .route("/token", post(google_token::token))
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
        // Like a real provider's edge: SSE events go out as written, not held back by Nagle.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
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

    /// A mock named `name` (the model it reports) with default options, on a free port of
    /// 127.0.0.1: what tests and benchmarks start most often.
    pub async fn local(name: &str) -> io::Result<MockServer> {
        let opts = MockOptions {
            name: name.into(),
            ..MockOptions::default()
        };
        MockServer::start(SocketAddr::from(([127, 0, 0, 1], 0)), opts).await
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

    /// Bytes of SSE bodies handed to the connections (see [`MockState::streamed_bytes`]).
    pub fn streamed_bytes(&self) -> u64 {
        self.state.streamed_bytes()
    }

    /// SSE bodies being sent now (see [`MockState::open_streams`]).
    pub fn open_streams(&self) -> u64 {
        self.state.open_streams()
    }

    /// Access tokens issued by `POST /token` (Vertex's service-account exchange).
    pub fn tokens_issued(&self) -> u64 {
        self.state.tokens_issued()
    }

    /// How long access tokens issued from now on live.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.state.set_token_lifetime(lifetime);
    }

    /// The highest number of concurrent in-flight requests seen on one route pattern.
    pub fn max_in_flight(&self, route: &str) -> u64 {
        self.state.max_in_flight(route)
    }

    /// Install a fault script; `None` clears it.
    pub fn set_fault(&self, script: Option<FaultScript>) {
        self.state.set_fault(script);
    }

    /// Install a capacity model (see [`Capacity`]); `None` makes the mock unlimited again.
    pub fn set_capacity(&self, capacity: Option<Capacity>) {
        self.state.set_capacity(capacity);
    }

    /// The last 256 requests received on counted routes, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests()
    }

    /// Clear hits, in-flight maxima, recorded requests, remembered jobs and the fault script.
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
