//! Shared mock state: options, hit counters, the active fault, the request log and the
//! asynchronous jobs (Replicate predictions, Runway tasks).
//!
//! Counters are atomics in a map fixed at construction (the routes are known up front), so
//! counting a hit takes no lock. The fault and the request log sit behind `std::sync::RwLock`s
//! that are only held for a clone or a push, never across an `.await`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::http::HeaderValue;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::capacity::{ActiveCapacity, Capacity};
use crate::jobs::Recent;
use crate::replicate_prediction::Prediction;
use crate::runway_task::Task;
use crate::{FaultScript, MockOptions};

/// The routes whose hits are counted; control routes (`/_mock/...`) are deliberately absent.
pub(crate) const ROUTES: [&str; 32] = [
    // OpenAI
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/responses",
    "/v1/embeddings",
    "/v1/models",
    "/v1/models/{id}",
    // Anthropic
    "/v1/messages",
    "/v1/messages/count_tokens",
    // Gemini
    "/v1beta/models/{model}",
    "/v1beta/models/{model}:generateContent",
    "/v1beta/models/{model}:streamGenerateContent",
    "/v1beta/models/{model}:embedContent",
    "/v1beta/models/{model}:batchEmbedContents",
    // Replicate
    "/v1/predictions",
    "/v1/models/{owner}/{name}/predictions",
    "/v1/predictions/{id}",
    "/v1/predictions/{id}/cancel",
    "/v1/stream/{id}",
    // Runway
    "/v1/text_to_video",
    "/v1/image_to_video",
    "/v1/organization",
    "/v1/tasks/{id}",
    // Azure OpenAI
    "/openai/deployments/{deployment}/chat/completions",
    "/openai/deployments/{deployment}/completions",
    "/openai/deployments/{deployment}/embeddings",
    "/openai/models",
    "/openai/v1/responses",
    // Bedrock
    "/model/{model}/converse",
    "/model/{model}/converse-stream",
    // Vertex AI (its token endpoint, `/token`, is not counted: tests count a deployment's
    // attempts by hits, and count token exchanges with `tokens_issued`)
    "/v1/projects/{project}/locations/{location}/publishers/google/models/{model}:generateContent",
    "/v1/projects/{project}/locations/{location}/publishers/google/models/{model}:streamGenerateContent",
    "/v1/projects/{project}/locations/{location}/publishers/google/models/{model}:countTokens",
];

/// How many requests `requests()` remembers.
const RECORD_LIMIT: usize = 256;

/// One request as the mock received it, for tests to assert on what the gateway sent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// The route pattern, e.g. `/v1/chat/completions` or `/v1/models/{id}`.
    pub route: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

#[derive(Default)]
struct RouteStats {
    hits: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
}

/// A fault script together with the bookkeeping its gates need.
pub(crate) struct ActiveFault {
    pub(crate) script: FaultScript,
    started: Instant,
    /// Requests seen since the script was set (the `seq` of the share gate).
    seen: AtomicU64,
    /// Faults injected so far (what `times` limits).
    injected: AtomicU64,
}

impl ActiveFault {
    fn new(script: FaultScript) -> Self {
        Self {
            script,
            started: Instant::now(),
            seen: AtomicU64::new(0),
            injected: AtomicU64::new(0),
        }
    }

    /// Decide whether the request arriving now is faulted.
    fn admit(&self) -> bool {
        let seq = self.seen.fetch_add(1, Ordering::Relaxed);
        if !self.script.gates_admit(self.started.elapsed(), seq) {
            return false;
        }
        let Some(times) = self.script.times else {
            return true;
        };
        // Claim one of the `times` slots; a failed claim means the budget is spent.
        self.injected
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < u64::from(times)).then_some(n + 1)
            })
            .is_ok()
    }
}

/// Everything the mock's handlers share. Cheap to clone.
#[derive(Clone)]
pub struct MockState {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    name_header: HeaderValue,
    models: Vec<String>,
    routes: HashMap<&'static str, RouteStats>,
    fault: RwLock<Option<Arc<ActiveFault>>>,
    capacity: RwLock<Option<Arc<ActiveCapacity>>>,
    recorded: RwLock<VecDeque<RecordedRequest>>,
    completions: AtomicU64,
    jobs: AtomicU64,
    predictions: Recent<Prediction>,
    tasks: Recent<Task>,
    shutdown: watch::Sender<bool>,
    /// OAuth access tokens issued by `/token`, with when each expires.
    tokens: RwLock<HashMap<String, Instant>>,
    /// How long an issued token lives, in seconds.
    token_lifetime: AtomicU64,
    tokens_issued: AtomicU64,
    /// Bytes of SSE bodies handed to the connections.
    streamed_bytes: AtomicU64,
    /// SSE bodies being sent now.
    open_streams: AtomicU64,
}

/// How long an access token lives unless a test says otherwise (Google's: an hour, less a bit).
pub(crate) const TOKEN_LIFETIME: Duration = Duration::from_secs(3599);

impl MockState {
    pub fn new(opts: MockOptions) -> Self {
        // A name that cannot be a header value still gets a header, so clients can rely on it.
        let name_header = HeaderValue::from_str(&opts.name)
            .unwrap_or_else(|_| HeaderValue::from_static("nines-mock"));
        let state = Self {
            inner: Arc::new(Inner {
                name: opts.name,
                name_header,
                models: opts.models,
                routes: ROUTES.iter().map(|r| (*r, RouteStats::default())).collect(),
                fault: RwLock::new(None),
                capacity: RwLock::new(None),
                recorded: RwLock::new(VecDeque::new()),
                completions: AtomicU64::new(0),
                jobs: AtomicU64::new(0),
                predictions: Recent::new(),
                tasks: Recent::new(),
                shutdown: watch::channel(false).0,
                tokens: RwLock::new(HashMap::new()),
                token_lifetime: AtomicU64::new(TOKEN_LIFETIME.as_secs()),
                tokens_issued: AtomicU64::new(0),
                streamed_bytes: AtomicU64::new(0),
                open_streams: AtomicU64::new(0),
            }),
        };
        state.set_fault(opts.fault);
        state
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub(crate) fn name_header(&self) -> HeaderValue {
        self.inner.name_header.clone()
    }

    pub fn models(&self) -> &[String] {
        &self.inner.models
    }

    /// Hits on one route pattern (e.g. `/v1/chat/completions`); 0 for unknown routes.
    pub fn hits(&self, route: &str) -> u64 {
        self.inner
            .routes
            .get(route)
            .map_or(0, |s| s.hits.load(Ordering::Relaxed))
    }

    pub fn total_hits(&self) -> u64 {
        self.inner
            .routes
            .values()
            .map(|s| s.hits.load(Ordering::Relaxed))
            .sum()
    }

    /// The highest number of concurrent requests seen on one route pattern.
    pub fn max_in_flight(&self, route: &str) -> u64 {
        self.inner
            .routes
            .get(route)
            .map_or(0, |s| s.max_in_flight.load(Ordering::Relaxed))
    }

    /// Hits and in-flight maxima per route, for `GET /_mock/hits`.
    pub(crate) fn hit_table(&self) -> (BTreeMap<&'static str, u64>, BTreeMap<&'static str, u64>) {
        let mut hits = BTreeMap::new();
        let mut max = BTreeMap::new();
        for (route, stats) in &self.inner.routes {
            hits.insert(*route, stats.hits.load(Ordering::Relaxed));
            max.insert(*route, stats.max_in_flight.load(Ordering::Relaxed));
        }
        (hits, max)
    }

    /// Count a hit on `route` and mark it in flight until the returned guard drops.
    pub(crate) fn enter(&self, route: &str) -> Option<InFlight> {
        let (route, stats) = self.inner.routes.get_key_value(route)?;
        stats.hits.fetch_add(1, Ordering::Relaxed);
        let now = stats.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        stats.max_in_flight.fetch_max(now, Ordering::Relaxed);
        Some(InFlight {
            state: self.clone(),
            route,
        })
    }

    /// Install a fault script (`None` clears it). Its gates' clock and counters start now.
    pub fn set_fault(&self, script: Option<FaultScript>) {
        let active = script.map(|s| Arc::new(ActiveFault::new(s)));
        *self
            .inner
            .fault
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = active;
    }

    /// Install a capacity model (`None`: unlimited, the default). Requests holding a slot of
    /// the previous model keep it; new ones queue under the new model.
    pub fn set_capacity(&self, capacity: Option<Capacity>) {
        let active = capacity.map(|c| Arc::new(ActiveCapacity::new(c)));
        *self
            .inner
            .capacity
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = active;
    }

    /// The installed capacity model, if any.
    pub fn capacity(&self) -> Option<Capacity> {
        self.active_capacity().map(|a| a.model.clone())
    }

    pub(crate) fn active_capacity(&self) -> Option<Arc<ActiveCapacity>> {
        self.inner
            .capacity
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Whether chat answers write until `max_tokens` (the capacity model's `fill_max_tokens`).
    pub(crate) fn fills_max_tokens(&self) -> bool {
        self.active_capacity()
            .is_some_and(|a| a.model.fill_max_tokens)
    }

    /// The installed fault script, if any.
    pub fn fault(&self) -> Option<FaultScript> {
        self.active_fault().map(|a| a.script.clone())
    }

    fn active_fault(&self) -> Option<Arc<ActiveFault>> {
        self.inner
            .fault
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The server's fault for the request arriving now, if its gates admit it.
    pub(crate) fn scripted_fault(&self) -> Option<Arc<ActiveFault>> {
        self.active_fault().filter(|a| a.admit())
    }

    pub(crate) fn record(&self, request: RecordedRequest) {
        let mut log = self
            .inner
            .recorded
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if log.len() == RECORD_LIMIT {
            log.pop_front();
        }
        log.push_back(request);
    }

    /// The last 256 requests received on counted routes, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.inner
            .recorded
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// Bytes of SSE bodies handed to the connections so far, on every streaming route: what a
    /// client read, plus what is still in socket buffers when it stops reading.
    pub fn streamed_bytes(&self) -> u64 {
        self.inner.streamed_bytes.load(Ordering::Relaxed)
    }

    /// SSE bodies being sent now: a stream counts until it ended or its connection went away
    /// (the mock notices on its next write).
    pub fn open_streams(&self) -> u64 {
        self.inner.open_streams.load(Ordering::Relaxed)
    }

    /// Counts an SSE body as open until the returned guard drops.
    pub(crate) fn open_stream(&self) -> OpenStream {
        self.inner.open_streams.fetch_add(1, Ordering::Relaxed);
        OpenStream {
            state: self.clone(),
        }
    }

    pub(crate) fn count_streamed(&self, bytes: usize) {
        self.inner
            .streamed_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Clear hits, in-flight maxima, streamed bytes, recorded requests, remembered jobs and the
    /// fault script.
    ///
    /// Requests in flight right now stay counted as in flight, so the gauge stays truthful.
    pub fn reset(&self) {
        for stats in self.inner.routes.values() {
            stats.hits.store(0, Ordering::Relaxed);
            stats.max_in_flight.store(0, Ordering::Relaxed);
        }
        self.inner.streamed_bytes.store(0, Ordering::Relaxed);
        self.inner
            .recorded
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
        self.inner.predictions.clear();
        self.inner.tasks.clear();
        self.set_fault(None);
    }

    /// Issues an access token (`/token`), valid for the token lifetime; returns it and that
    /// lifetime.
    pub(crate) fn issue_token(&self) -> (String, Duration) {
        let lifetime = Duration::from_secs(self.inner.token_lifetime.load(Ordering::Relaxed));
        let token = format!("ya29.mock-{}", self.next_completion_id());
        let mut tokens = self
            .inner
            .tokens
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        tokens.retain(|_, expires| *expires > now);
        tokens.insert(token.clone(), now + lifetime);
        self.inner.tokens_issued.fetch_add(1, Ordering::Relaxed);
        (token, lifetime)
    }

    /// Access tokens the token endpoint has issued.
    pub fn tokens_issued(&self) -> u64 {
        self.inner.tokens_issued.load(Ordering::Relaxed)
    }

    /// Whether `token` was issued here and has not expired.
    pub(crate) fn token_valid(&self, token: &str) -> bool {
        self.inner
            .tokens
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(token)
            .is_some_and(|expires| Instant::now() < *expires)
    }

    /// How long tokens issued from now on live (tests of refresh before expiry).
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.inner
            .token_lifetime
            .store(lifetime.as_secs(), Ordering::Relaxed);
    }

    /// Next completion number, for `chatcmpl-mock-{n}` ids.
    pub(crate) fn next_completion_id(&self) -> u64 {
        self.inner.completions.fetch_add(1, Ordering::Relaxed)
    }

    /// Next job number, for prediction and task ids.
    pub(crate) fn next_job_id(&self) -> u64 {
        self.inner.jobs.fetch_add(1, Ordering::Relaxed)
    }

    /// The remembered Replicate predictions.
    pub(crate) fn predictions(&self) -> &Recent<Prediction> {
        &self.inner.predictions
    }

    /// The remembered Runway tasks.
    pub(crate) fn tasks(&self) -> &Recent<Task> {
        &self.inner.tasks
    }

    /// Tell hung and slow responses to give up: the server is going away.
    pub(crate) fn begin_shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }

    /// Resolves once the owning server starts shutting down (never, for an embedded state).
    pub(crate) async fn shutting_down(&self) {
        let mut rx = self.inner.shutdown.subscribe();
        // An error means the sender is gone, which cannot happen while `self` holds it.
        let _ = rx.wait_for(|down| *down).await;
    }

    /// Sleep on the tokio clock; `false` if the server started shutting down meanwhile.
    pub(crate) async fn sleep(&self, duration: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(duration) => true,
            () = self.shutting_down() => false,
        }
    }
}

/// Marks one request in flight on a route; dropping it ends the request.
/// An SSE body being sent (see [`MockState::open_streams`]).
pub(crate) struct OpenStream {
    state: MockState,
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.state
            .inner
            .open_streams
            .fetch_sub(1, Ordering::Relaxed);
    }
}

pub(crate) struct InFlight {
    state: MockState,
    route: &'static str,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(stats) = self.state.inner.routes.get(self.route) {
            stats.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }
}
