//! The request path, one readable function per endpoint.
//!
//! | stage     | runs                         | default                                      |
//! |-----------|------------------------------|----------------------------------------------|
//! | parse     | always                       | 400 on malformed JSON or missing fields      |
//! | auth      | always (`access.rs`)         | anonymous unless `[auth]`; else 401 / 403    |
//! | admit     | after auth (`limits/`)       | nothing limited; else 429 naming the level   |
//! | resolve   | always                       | 404 when no route has the model name         |
//! | plan      | always                       | the route's strategy over its key slots      |
//! | attempts  | until one answers            | next key slot on any retryable failure       |
//! | respond   | on success                   | body relayed as bytes; streams chunk by chunk|
//! | record    | once per request, at its end | one structured log line                      |
//! | settle    | with record (`access.rs`)    | TPM reconciled, spend charged, usage record  |
//!
//! `gate` wraps the routed stages in auth → admit before and settle after; no stage reaches back
//! into an earlier one.

use crate::config::Deployment;
use crate::error::GatewayError;
use crate::providers::{Endpoint, ReplyBody};
use crate::resilience::attempt::AttemptInput;
use crate::resilience::resume::{Resume, ResumeInput, Resumer};
use crate::resilience::stream::{Segment, StreamEnd, Tally, relay};
use crate::resilience::translated::{self, Decoder, Encoder};
use crate::resilience::{FailureClass, Finished, run_plan};
use crate::router::filters::{self, Unservable};
use crate::router::{Estimate, Inputs};
use crate::state::AppState;
use crate::telemetry::RequestLog;
use crate::telemetry::trace::Propagation;
use crate::translate::RequestView;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use http::{HeaderValue, StatusCode};
use nines_protocol::openai::{parse_chat_head, parse_embeddings_head};
use nines_protocol::unified::{ChatRequest, Dialect};
use std::convert::Infallible;
use std::fmt::Write as _;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// A successful answer, ready for the client.
pub struct Delivery {
    pub status: StatusCode,
    pub content_type: HeaderValue,
    pub served_by: String,
    pub attempts: usize,
    pub body: DeliveryBody,
    /// Extra response headers (`x-ratelimit-*`).
    pub headers: http::HeaderMap,
}

pub enum DeliveryBody {
    Full(Bytes),
    Stream {
        body: BoxStream<'static, Result<Bytes, Infallible>>,
        /// Filled by the relay as the stream passes: its usage and whether it broke.
        tally: Arc<Tally>,
    },
}

/// What the edge learned of a request besides its body.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    pub id: String,
    /// A client-requested total timeout (`x-nines-timeout`, or the SDK's `x-stainless-timeout`);
    /// it can only shorten the configured one.
    pub timeout: Option<Duration>,
    /// The caller's key (`Authorization: Bearer` or `x-api-key`); `Debug` never prints it.
    pub credential: Option<crate::config::Secret>,
    /// The session header's value (`[telemetry.sessions] header`).
    pub session: Option<String>,
    /// The client's W3C `traceparent`.
    pub traceparent: Option<String>,
}

/// The parts of a request the shared path needs, whatever the endpoint.
struct Routed {
    model: String,
    model_span: Range<usize>,
    stream: bool,
    include_usage: bool,
    endpoint: Endpoint,
    /// The client's dialect, and its request already parsed when the ingress had to.
    ingress: Dialect,
    parsed: Option<ChatRequest>,
    /// Where the prompt sits in the body, and the output asked for: the size estimate's inputs.
    messages_span: Option<Range<usize>>,
    max_output: Option<u64>,
}

/// `POST /v1/chat/completions`.
pub async fn chat(
    state: &AppState,
    meta: &RequestMeta,
    body: Bytes,
    log: RequestLog,
) -> Result<Delivery, GatewayError> {
    let head = match parse_chat_head(&body) {
        Ok(head) => head,
        Err(e) => return Err(log.reject(e.into())),
    };
    let routed = Routed {
        model: head.model,
        model_span: head.model_span,
        stream: head.stream,
        include_usage: head.include_usage,
        endpoint: Endpoint::ChatCompletions,
        ingress: Dialect::OpenAi,
        parsed: None,
        messages_span: Some(head.messages_span),
        max_output: head.max_output_tokens,
    };
    gate(state, meta, body, routed, log).await
}

/// `POST /v1/messages` (Anthropic dialect).
pub async fn messages(
    state: &AppState,
    meta: &RequestMeta,
    body: Bytes,
    log: RequestLog,
) -> Result<Delivery, GatewayError> {
    // The head gives `model`'s position for the same-dialect splice; the full parse gives the
    // request in unified form for any other upstream (and validates it).
    let head = match parse_chat_head(&body) {
        Ok(head) => head,
        Err(e) => return Err(log.reject(e.into())),
    };
    let chat = match nines_protocol::anthropic::parse_request(&body) {
        Ok(chat) => chat,
        Err(e) => return Err(log.reject(e.into())),
    };
    let routed = Routed {
        model: head.model,
        model_span: head.model_span,
        stream: head.stream,
        include_usage: true,
        endpoint: Endpoint::ChatCompletions,
        ingress: Dialect::Anthropic,
        parsed: Some(chat),
        messages_span: Some(head.messages_span),
        max_output: head.max_output_tokens,
    };
    gate(state, meta, body, routed, log).await
}

/// `POST /v1/embeddings`.
pub async fn embeddings(
    state: &AppState,
    meta: &RequestMeta,
    body: Bytes,
    log: RequestLog,
) -> Result<Delivery, GatewayError> {
    let head = match parse_embeddings_head(&body) {
        Ok(head) => head,
        Err(e) => return Err(log.reject(e.into())),
    };
    let routed = Routed {
        model: head.model,
        model_span: head.model_span,
        stream: false,
        include_usage: false,
        endpoint: Endpoint::Embeddings,
        ingress: Dialect::OpenAi,
        parsed: None,
        messages_span: None,
        max_output: None,
    };
    gate(state, meta, body, routed, log).await
}

/// Auth and admission before the routed stages; settlement and the usage record after them
/// (for a stream, when it ends).
async fn gate(
    state: &AppState,
    meta: &RequestMeta,
    body: Bytes,
    routed: Routed,
    mut log: RequestLog,
) -> Result<Delivery, GatewayError> {
    let runtime = state.runtime();
    let size = crate::access::Size {
        prompt_bytes: routed
            .messages_span
            .as_ref()
            .map_or(body.len(), |s| s.len()),
        max_output: match routed.endpoint {
            Endpoint::Embeddings => Some(0),
            _ => routed.max_output,
        },
    };
    let access = &runtime.config.access;
    let admitted = state
        .access
        .admit(
            access,
            meta,
            &routed.model,
            log.summary.endpoint,
            routed.stream,
            size,
            state.telemetry.wants_usage(),
        )
        .await;
    let mut ticket = match admitted {
        Ok(ticket) => ticket,
        Err(e) => return Err(log.reject(e)),
    };
    if let Some(handoff) = ticket.record_for(&state.telemetry) {
        log.hand_off_to(handoff);
    }
    ticket.finish(
        &runtime.config,
        forward(state, meta, body, routed, log).await,
    )
}

async fn forward(
    state: &AppState,
    meta: &RequestMeta,
    body: Bytes,
    routed: Routed,
    mut log: RequestLog,
) -> Result<Delivery, GatewayError> {
    log.summary.model = routed.model.clone();
    log.summary.stream = routed.stream;
    let runtime = state.runtime();
    let Some(route) = runtime.table.resolve(&routed.model) else {
        return Err(log.reject(GatewayError::ModelNotFound(routed.model)));
    };
    log.summary.routed = true;
    let deployments = &runtime.config.deployments;
    let estimate = routed.messages_span.as_ref().map(|span| {
        let smallest = route
            .deployments
            .iter()
            .filter_map(|&d| deployments[d].context_window)
            .min();
        Estimate::of(&body[span.clone()], routed.max_output, smallest)
    });
    let inputs = Inputs {
        deployments,
        health: Some(&runtime.health),
        estimate,
    };
    let mut plan = runtime.table.plan(route, &inputs);
    if plan.context_exhausted() {
        let needed = estimate.map_or(0, |e| e.needed(true));
        return Err(log.reject(GatewayError::ContextTooLong {
            model: routed.model,
            needed,
            largest_window: plan.largest_window,
        }));
    }
    if plan.slots.is_empty() {
        return Err(log.reject(GatewayError::NoCandidates {
            model: routed.model,
        }));
    }
    let view = RequestView::new(
        routed.ingress,
        routed.endpoint,
        body.clone(),
        routed.model_span.clone(),
    );
    let view = match routed.parsed {
        Some(chat) => view.with_chat(chat),
        None => view,
    };
    match filters::serviceable(&mut plan, &runtime.config.deployments, &view) {
        Ok(()) => {}
        Err(Unservable::Invalid(e)) => return Err(log.reject(GatewayError::BadRequest(e))),
        Err(Unservable::Missing(missing)) => {
            return Err(log.reject(GatewayError::MissingCapability {
                model: routed.model,
                missing,
            }));
        }
    }
    let deadline = request_deadline(&runtime.config.deployments, &plan, meta.timeout);
    // Kept to continue a stream that breaks after the commit point (`resume_streams`).
    let resume_body = (routed.stream
        && routed.endpoint == Endpoint::ChatCompletions
        && routed.ingress == Dialect::OpenAi
        && !route.derived
        && route.resume_streams)
        .then(|| (body.clone(), routed.model_span.clone()));

    let body_for = |d: &Deployment| -> Bytes { view.body_for(d) };
    let trace = Propagation::new(log.summary.trace.as_ref(), meta.traceparent.as_deref());
    let input = AttemptInput {
        endpoint: routed.endpoint,
        stream: routed.stream,
        request_id: &meta.id,
        deadline,
        body_for: &body_for,
        hedge: route.hedge,
        backoff: runtime.config.resilience.backoff,
        max_attempts_per_deployment: runtime.config.resilience.max_attempts_per_deployment(),
        queue_timeout: runtime.config.routing.queue_timeout,
        max_queue: runtime.config.routing.max_queue,
        trace: &trace,
    };
    // The plan and the trail as text are for the request log line and the stored usage
    // record; without either, they are not built.
    let describe = crate::telemetry::request_logging() || state.access.usage.is_some();
    if describe {
        log.summary.plan = plan.describe(deployments);
    }
    let (finished, waited) = run_plan(&plan, &runtime.upstreams, &runtime.health, input).await;
    log.summary.waited = Some(waited);
    if describe {
        log.summary.trail = trail(&finished);
    }

    match finished {
        Finished::Served {
            reply,
            deployment,
            attempts,
            permit,
            in_flight,
        } => {
            log.summary.deployment = Some(deployment.name.clone());
            log.summary.upstream_ttfb = Some(reply.ttfb);
            log.summary.ttfb = Some(log.elapsed());
            log.summary.attempts = attempts.clone();
            log.summary.served = true;
            let content_type = reply
                .headers
                .get(http::header::CONTENT_TYPE)
                .cloned()
                .unwrap_or(HeaderValue::from_static("application/json"));
            let upstream = deployment.provider.dialect();
            let translating = view.needs_translation(&deployment);
            let content_type = if translating {
                HeaderValue::from_static(if routed.stream {
                    "text/event-stream"
                } else {
                    "application/json"
                })
            } else {
                content_type
            };
            let body = match reply.body {
                ReplyBody::Full(bytes) => {
                    drop(in_flight);
                    let bytes = if translating {
                        match view.translate_full(upstream, &bytes, &deployment.upstream_model) {
                            Ok(b) => b,
                            Err(e) => {
                                // The upstream said 200 but its body is not its dialect's shape.
                                let mut attempts = attempts;
                                if let Some(last) = attempts.last_mut() {
                                    last.class = FailureClass::Malformed;
                                    last.detail = e.to_string();
                                }
                                log.note_failure(&attempts);
                                log.summary.served = false;
                                log.finish(502, "malformed");
                                return Err(GatewayError::AllFailed {
                                    model: routed.model,
                                    attempts,
                                    deadline_hit: false,
                                });
                            }
                        }
                    } else {
                        bytes
                    };
                    // The client's first byte is the translated answer's.
                    log.summary.ttfb = Some(log.elapsed());
                    log.finish(reply.status.as_u16(), "ok");
                    DeliveryBody::Full(bytes)
                }
                // The byte relay understands OpenAI's stream grammar only; any other upstream
                // dialect (even to a client of the same dialect) goes through the event relay,
                // which keeps event names and knows each dialect's end-of-stream.
                ReplyBody::Stream { head, rest } if translating || upstream != Dialect::OpenAi => {
                    // Replicate streams never repeat the prediction's id; the provider passes it on.
                    let header = |name: &str| {
                        reply
                            .headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                    };
                    let prediction = header(crate::providers::PREDICTION_ID).unwrap_or_default();
                    let model = header(crate::providers::PREDICTION_MODEL)
                        .unwrap_or_else(|| deployment.upstream_model.clone());
                    let decoder =
                        Decoder::for_dialect(upstream, &prediction, &model).ok_or_else(|| {
                            GatewayError::Internal(format!(
                                "no stream decoder for {}",
                                upstream.as_str()
                            ))
                        })?;
                    let encoder = Encoder::for_client(
                        routed.ingress,
                        &deployment.upstream_model,
                        routed.include_usage,
                    );
                    let idle = deployment.timeouts.idle;
                    let tally = Arc::new(Tally::default());
                    let body = translated::relay(
                        head,
                        rest,
                        (decoder, encoder),
                        idle,
                        deadline,
                        Arc::clone(&tally),
                        move |end| {
                            let _in_flight = in_flight;
                            let signal = end.signal();
                            if let Some(permit) = permit {
                                permit.record(signal);
                            }
                            finish_stream(log, end);
                        },
                    );
                    DeliveryBody::Stream { body, tally }
                }
                ReplyBody::Stream { head, rest } => {
                    let idle = deployment.timeouts.idle;
                    // This stream's ending (or its break, if it is resumed) is the serving
                    // slot's outcome; a continuation's is its own slot's.
                    let first = Segment::new(head, rest, idle, move |signal| {
                        let _in_flight = in_flight;
                        if let Some(permit) = permit {
                            permit.record(signal);
                        }
                    });
                    let resume = resume_body.map(|(body, model_span)| {
                        let budget_of = Arc::clone(&runtime);
                        Box::new(Resumer::new(ResumeInput {
                            body,
                            model_span,
                            plan: &plan,
                            upstreams: &runtime.upstreams,
                            health: &runtime.health,
                            serving: &deployment,
                            attempts: &attempts,
                            deadline,
                            request_id: &meta.id,
                            budget: Box::new(move || budget_of.health.budget.try_withdraw()),
                            trace: &trace,
                        })) as Box<dyn Resume>
                    });
                    let tally = Arc::new(Tally::default());
                    let body = relay(
                        first,
                        deadline,
                        resume,
                        Arc::clone(&tally),
                        move |end, resumed| {
                            log.summary
                                .attempts
                                .extend(resumed.attempts.iter().cloned());
                            let continued_by: Vec<&str> = resumed
                                .attempts
                                .iter()
                                .filter(|a| a.class == FailureClass::Ok)
                                .map(|a| a.deployment.as_str())
                                .collect();
                            match end {
                                StreamEnd::Done | StreamEnd::FinishedWithoutDone
                                    if !resumed.breaks.is_empty() =>
                                {
                                    log.summary.detail = format!(
                                        "resumed on {} after: {}",
                                        continued_by.join(", "),
                                        resumed.breaks.join("; ")
                                    );
                                    log.finish(200, "resumed")
                                }
                                end => finish_stream(log, end),
                            }
                        },
                    );
                    DeliveryBody::Stream { body, tally }
                }
            };
            Ok(Delivery {
                status: reply.status,
                content_type,
                served_by: deployment.name.clone(),
                attempts: attempts.len(),
                body,
                headers: http::HeaderMap::new(),
            })
        }
        Finished::Rejected {
            status,
            headers,
            body,
            attempts,
        } => {
            log.note_failure(&attempts);
            log.finish(status.as_u16(), "upstream_rejected");
            Err(GatewayError::Upstream {
                status,
                headers,
                body,
                attempts,
            })
        }
        Finished::Exhausted {
            attempts,
            deadline_hit,
        } => {
            log.note_failure(&attempts);
            log.finish(
                if deadline_hit { 504 } else { 502 },
                if deadline_hit {
                    "deadline"
                } else {
                    "all_failed"
                },
            );
            Err(GatewayError::AllFailed {
                model: routed.model,
                attempts,
                deadline_hit,
            })
        }
        Finished::Unavailable {
            attempts,
            why,
            retry_after,
        } => {
            log.note_failure(&attempts);
            let error = GatewayError::Unavailable {
                model: routed.model,
                why,
                retry_after,
                attempts,
            };
            log.finish(503, error.label());
            Err(error)
        }
    }
}

/// Ends a streamed request's log when its stream ended.
fn finish_stream(mut log: RequestLog, end: StreamEnd) {
    match end {
        StreamEnd::Done | StreamEnd::FinishedWithoutDone => log.finish(200, "ok"),
        StreamEnd::Broken(why) => {
            log.summary.detail = why;
            log.finish(200, "stream_broken");
        }
        StreamEnd::ClientGone => log.finish(499, "client_gone"),
    }
}

/// The whole request's deadline: the longest total timeout among the plan's deployments, so a
/// plan is never cut shorter than its most patient deployment allows.
fn request_deadline(
    deployments: &[Arc<Deployment>],
    plan: &crate::router::Plan,
    client_timeout: Option<Duration>,
) -> Instant {
    let total = plan
        .slots
        .iter()
        .filter_map(|s| deployments.get(s.deployment))
        .map(|d| d.timeouts.total)
        .max()
        .unwrap_or(Duration::from_secs(120));
    Instant::now() + client_timeout.map_or(total, |t| t.min(total))
}

/// `d0#0 server 500 12ms; d1#0 ok 200 3ms`: the attempts as the usage record keeps them.
fn trail(finished: &Finished) -> String {
    let attempts = match finished {
        Finished::Served { attempts, .. }
        | Finished::Rejected { attempts, .. }
        | Finished::Exhausted { attempts, .. }
        | Finished::Unavailable { attempts, .. } => attempts,
    };
    // Written into one buffer: this runs for every request while the store or request log is
    // on, and one string per attempt plus the join cost as much again.
    let mut out = String::with_capacity(32 * attempts.len());
    for (i, a) in attempts.iter().enumerate() {
        if i > 0 {
            out.push_str("; ");
        }
        let _ = write!(out, "{} {} ", a.key_alias, a.class.as_str());
        match a.status {
            Some(s) => {
                let _ = write!(out, "{s}");
            }
            None => out.push('-'),
        }
        let _ = write!(out, " {}ms", a.elapsed.as_millis());
    }
    out
}
