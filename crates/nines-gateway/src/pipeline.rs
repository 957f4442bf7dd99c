//! The request path, one readable function per endpoint.
//!
//! | stage     | runs                         | default                                      |
//! |-----------|------------------------------|----------------------------------------------|
//! | parse     | always                       | 400 on malformed JSON or missing fields      |
//! | resolve   | always                       | 404 when no route has the model name         |
//! | plan      | always                       | the route's strategy over its key slots      |
//! | attempts  | until one answers            | next key slot on any retryable failure       |
//! | respond   | on success                   | body relayed as bytes; streams chunk by chunk|
//! | record    | once per request, at its end | one structured log line                      |
//!
//! Auth, admission limits and usage records slot in between these stages as later layers of the
//! same function; no stage reaches back into an earlier one.

use crate::config::Deployment;
use crate::error::GatewayError;
use crate::providers::{Endpoint, ReplyBody};
use crate::resilience::attempt::AttemptInput;
use crate::resilience::breaker::Signal;
use crate::resilience::stream::{StreamEnd, relay};
use crate::resilience::{AttemptRecord, Finished, run_plan};
use crate::state::AppState;
use crate::telemetry::RequestLog;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use http::{HeaderValue, StatusCode};
use nines_protocol::openai::{parse_chat_head, parse_embeddings_head, splice_model};
use std::convert::Infallible;
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
}

pub enum DeliveryBody {
    Full(Bytes),
    Stream(BoxStream<'static, Result<Bytes, Infallible>>),
}

/// What the edge learned of a request besides its body.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    pub id: String,
    /// A client-requested total timeout (`x-nines-timeout`, or the SDK's `x-stainless-timeout`);
    /// it can only shorten the configured one.
    pub timeout: Option<Duration>,
}

/// The parts of a request the shared path needs, whatever the endpoint.
struct Routed {
    model: String,
    model_span: Range<usize>,
    stream: bool,
    endpoint: Endpoint,
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
        endpoint: Endpoint::ChatCompletions,
    };
    forward(state, meta, body, routed, log).await
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
        endpoint: Endpoint::Embeddings,
    };
    forward(state, meta, body, routed, log).await
}

async fn forward(
    state: &AppState,
    meta: &RequestMeta,
    body: Bytes,
    routed: Routed,
    mut log: RequestLog,
) -> Result<Delivery, GatewayError> {
    log.model = routed.model.clone();
    log.stream = routed.stream;
    let runtime = state.runtime();
    let Some(route) = runtime.table.resolve(&routed.model) else {
        return Err(log.reject(GatewayError::ModelNotFound(routed.model)));
    };
    let plan = runtime.table.plan(route);
    if plan.slots.is_empty() {
        return Err(log.reject(GatewayError::NoCandidates {
            model: routed.model,
        }));
    }
    let deadline = request_deadline(&runtime.config.deployments, &plan, meta.timeout);

    let span = routed.model_span.clone();
    let body_for = move |d: &Deployment| -> Bytes {
        Bytes::from(splice_model(&body, span.clone(), &d.upstream_model))
    };
    let input = AttemptInput {
        endpoint: routed.endpoint,
        stream: routed.stream,
        request_id: &meta.id,
        deadline,
        body_for: &body_for,
        hedge: route.hedge,
        backoff: runtime.config.resilience.backoff,
        max_attempts_per_deployment: runtime.config.resilience.max_attempts_per_deployment(),
    };
    let finished = run_plan(&plan, &runtime.upstreams, &runtime.health, input).await;

    match finished {
        Finished::Served {
            reply,
            deployment,
            attempts,
            permit,
            in_flight,
        } => {
            log.deployment = Some(deployment.name.clone());
            log.ttfb = Some(reply.ttfb);
            log.attempts = attempts.len();
            log.failed = attempts
                .iter()
                .filter(|a| a.class.is_retryable())
                .map(|a| a.class.as_str())
                .collect();
            let content_type = reply
                .headers
                .get(http::header::CONTENT_TYPE)
                .cloned()
                .unwrap_or(HeaderValue::from_static("application/json"));
            let body = match reply.body {
                ReplyBody::Full(bytes) => {
                    drop(in_flight);
                    log.finish(reply.status.as_u16(), "ok");
                    DeliveryBody::Full(bytes)
                }
                ReplyBody::Stream { head, rest } => {
                    let idle = deployment.timeouts.idle;
                    DeliveryBody::Stream(relay(head, rest, idle, deadline, move |end| {
                        // The stream's ending is the serving slot's outcome.
                        let _in_flight = in_flight;
                        let signal = match &end {
                            StreamEnd::Done | StreamEnd::FinishedWithoutDone => Signal::Success,
                            StreamEnd::Broken(_) => Signal::Failure,
                            StreamEnd::ClientGone => Signal::Neutral,
                        };
                        if let Some(permit) = permit {
                            permit.record(signal);
                        }
                        match end {
                            StreamEnd::Done | StreamEnd::FinishedWithoutDone => {
                                log.finish(200, "ok")
                            }
                            StreamEnd::Broken(why) => {
                                log.detail = why;
                                log.finish(200, "stream_broken");
                            }
                            StreamEnd::ClientGone => log.finish(499, "client_gone"),
                        }
                    }))
                }
            };
            Ok(Delivery {
                status: reply.status,
                content_type,
                served_by: deployment.name.clone(),
                attempts: attempts.len(),
                body,
            })
        }
        Finished::Rejected {
            status,
            headers,
            body,
            attempts,
        } => {
            note_failure(&mut log, &attempts);
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
            note_failure(&mut log, &attempts);
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
            note_failure(&mut log, &attempts);
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

fn note_failure(log: &mut RequestLog, attempts: &[AttemptRecord]) {
    log.attempts = attempts.len();
    log.failed = attempts.iter().map(|a| a.class.as_str()).collect();
    log.deployment = attempts.last().map(|a| a.deployment.clone());
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
