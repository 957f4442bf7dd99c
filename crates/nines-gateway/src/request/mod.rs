//! One request, one context, one end.
//!
//! A [`Request`] is created once at the edge, when a request arrives. It holds the runtime
//! snapshot (loaded once and kept to the end, so a configuration swap never mixes two
//! configurations inside one request), what the edge read ([`RequestMeta`]), the identity and
//! admission once the access stages ran, and the [`RequestSummary`] every later stage adds to
//! (the plan, the attempt trail, the timings). Every stage takes it.
//!
//! It ends in exactly one place, `end.rs`: with the error the client is answered with
//! ([`Request::fail`]), the answer it got ([`Request::answered`]), or how its stream ended
//! ([`Request::streamed`]); a request dropped before any of these (the client went away while
//! it was in flight) ends there too, as `client_gone`. The status, outcome and class that end
//! logs, counts, writes to the ledger and the usage record are the ones the client received.

mod end;
mod error;
mod meta;

pub use error::{GatewayError, Rejected};
pub use meta::RequestMeta;

use crate::access::{Admission, Ask};
use crate::auth::Identity;
use crate::router::Plan;
use crate::state::lifecycle::InFlightRequest;
use crate::state::{AppState, Runtime};
use crate::telemetry::RequestSummary;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// One request, from the edge to its end.
pub struct Request {
    pub state: Arc<AppState>,
    /// The configuration this request runs on, from start to end.
    pub runtime: Arc<Runtime>,
    pub meta: RequestMeta,
    /// The model name the client asked for, once the body is read. The summary's `model` is set
    /// only when it resolves to a route, so a made-up name never becomes a metric label; the
    /// usage record keeps what was asked.
    pub model: String,
    /// What happened so far; recorded at the end.
    pub summary: RequestSummary,
    /// Who is calling, once auth ran (also for a request the limits refused).
    pub identity: Option<Arc<Identity>>,
    /// What admission reserved, settled at the end.
    pub admission: Option<Admission>,
    /// The plan, kept while a log line or a usage record may describe it ([`Request::describes`]):
    /// its text is written at the end, and only for a request that gets either.
    pub plan: Option<Arc<Plan>>,
    started: Instant,
    started_wall: SystemTime,
    ended: bool,
    /// Counted in flight (for the shutdown's account) until the request is dropped.
    _in_flight: InFlightRequest,
}

impl Request {
    /// Starts a request: loads the runtime once, reads the headers, fixes the trace ids.
    pub fn start(
        state: &Arc<AppState>,
        headers: &http::HeaderMap,
        endpoint: &'static str,
    ) -> Request {
        let started = Instant::now();
        let runtime = state.runtime();
        let meta = RequestMeta::read(headers, &runtime.config.telemetry.sessions.header);
        let telemetry = &state.telemetry;
        let summary = RequestSummary {
            request_id: meta.id.clone(),
            endpoint,
            session: meta.session.clone(),
            traceparent: meta.traceparent.clone(),
            trace: telemetry
                .tracer
                .as_ref()
                .map(|t| t.start_request(meta.traceparent.as_deref(), started)),
            started_at_ms: telemetry.clock.now_ms(),
            ..RequestSummary::default()
        };
        Request {
            state: Arc::clone(state),
            runtime,
            meta,
            model: String::new(),
            summary,
            identity: None,
            admission: None,
            plan: None,
            started,
            started_wall: SystemTime::now(),
            ended: false,
            _in_flight: state.lifecycle.enter(),
        }
    }

    /// Time since the request started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Auth, the model allow-list and the limits (`access/`): the identity and admission go on
    /// the request (a request the limits refuse keeps its identity, so its refusal is recorded
    /// under it).
    pub async fn admit(
        &mut self,
        model: &str,
        prompt_bytes: usize,
        max_output: Option<u64>,
    ) -> Result<(), GatewayError> {
        let runtime = Arc::clone(&self.runtime);
        let ask = Ask {
            credential: self.meta.credential.as_ref(),
            model,
            prompt_bytes,
            max_output,
            price_ceiling: &|| {
                runtime
                    .table
                    .price_ceiling(model, &runtime.config.deployments)
            },
        };
        let admitted = self
            .state
            .access
            .admit(&runtime.config.access, &runtime.static_keys, ask)
            .await;
        match admitted {
            Ok(admission) => {
                self.identity = Some(Arc::clone(&admission.identity));
                self.admission = Some(admission);
                Ok(())
            }
            Err((refused, identity)) => {
                self.identity = identity;
                Err(refused.into())
            }
        }
    }

    /// Auth alone (no limits: a request that costs the provider nothing, like a job poll); the
    /// identity goes on the request.
    pub async fn authorize(&mut self) -> Result<Arc<Identity>, GatewayError> {
        let runtime = Arc::clone(&self.runtime);
        let identity = self
            .state
            .access
            .authorize(
                &runtime.config.access,
                &runtime.static_keys,
                self.meta.credential.as_ref(),
            )
            .await?;
        self.identity = Some(Arc::clone(&identity));
        Ok(identity)
    }

    /// Whether the plan and the attempt trail may be wanted as text (for the request log line or
    /// a stored usage record); without either the plan is not kept.
    pub fn describes(&self) -> bool {
        crate::telemetry::request_logging() || self.state.access.usage.is_some()
    }
}
