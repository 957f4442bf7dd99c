//! The path of one proxied request (`/v1/chat/completions`, `/v1/messages`, `/v1/responses`,
//! `/v1/embeddings`, `/v1/completions`, `/v1/messages/count_tokens`):
//! parse → admit → resolve → plan → run the plan → deliver, each stage a call with the request's
//! context ([`Request`]), which ends in one place (`request::end`).
//!
//! | stage    | runs                         | default                                      |
//! |----------|------------------------------|----------------------------------------------|
//! | parse    | always                       | 400 on malformed JSON or missing fields      |
//! | admit    | always (`access/`)           | anonymous, nothing limited; else 401 / 403 / 429 |
//! | resolve  | after admission              | 404 when no route has the model name         |
//! | plan     | always (`router/`)           | the route's strategy over its key slots; 400 when the prompt fits no window or a capability is missing |
//! | run      | until one answers (`resilience/`) | next key slot on any retryable failure  |
//! | deliver  | on an answer                 | body relayed as bytes; streams chunk by chunk (`relay/`) |
//! | end      | once, when the request ends  | settle, usage record, log line, metrics, ledger |
//!
//! The commit point is `deliver`: before it, failover is free; after it only the relays act.

use crate::conversations::{self, Keep, LookupError};
use crate::providers::{Endpoint, ReplyBody};
use crate::relay::codec::{Decoder, Encoder};
use crate::relay::resume::{Resume, ResumeInput, Resumer};
use crate::relay::segment::Segment;
use crate::relay::translated;
use crate::relay::{passthrough, responses};
use crate::request::{GatewayError, Request};
use crate::resilience::{AttemptInput, Finished, KeySlot, run_plan};
use crate::router::filters::{self, Unservable};
use crate::router::{Estimate, Inputs, Plan, Route};
use crate::state::Runtime;
use crate::tracecontext::Propagation;
use crate::translate::RequestView;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use http::{HeaderMap, HeaderValue, StatusCode};
use nines_protocol::openai::{
    RequestError, parse_chat_head, parse_completions_head, parse_embeddings_head,
};
use nines_protocol::unified::{ChatRequest, Dialect};
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
    /// Extra response headers (`x-ratelimit-*`).
    pub headers: HeaderMap,
}

pub enum DeliveryBody {
    Full(Bytes),
    /// The relay's stream; the request ends when it does.
    Stream(BoxStream<'static, Result<Bytes, Infallible>>),
}

/// The endpoint a request came in on: its dialect and what it asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingress {
    /// `POST /v1/chat/completions` (OpenAI).
    ChatCompletions,
    /// `POST /v1/messages` (Anthropic).
    Messages,
    /// `POST /v1/embeddings` (OpenAI).
    Embeddings,
    /// `POST /v1/completions` (OpenAI's legacy text completions).
    Completions,
    /// `POST /v1/messages/count_tokens` (Anthropic).
    CountTokens,
    /// `POST /v1/responses` (OpenAI's Responses API).
    Responses,
}

impl Ingress {
    /// The endpoint's name in logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Ingress::ChatCompletions => "chat_completions",
            Ingress::Messages => "messages",
            Ingress::Embeddings => "embeddings",
            Ingress::Completions => "completions",
            Ingress::CountTokens => "count_tokens",
            Ingress::Responses => "responses",
        }
    }
}

/// What the path needs to know of a request's body, whatever the endpoint.
struct Routed {
    model: String,
    model_span: Range<usize>,
    stream: bool,
    include_usage: bool,
    endpoint: Endpoint,
    /// The client's dialect, and its request already parsed when the ingress had to (an error:
    /// valid, but not translatable, so only deployments of its own dialect can serve it).
    ingress: Dialect,
    parsed: Option<Result<ChatRequest, RequestError>>,
    /// Where the prompt sits in the body, and the output asked for: the size estimate's inputs.
    messages_span: Option<Range<usize>>,
    max_output: Option<u64>,
    /// Responses: the kept response this one continues.
    previous_response: Option<String>,
}

impl Routed {
    /// Parses what routing needs: OpenAI bodies only their head (`model`, `stream`, where
    /// `messages` sits); Anthropic bodies also whole, into the unified model, since any other
    /// upstream needs them translated (and the parse validates them). `max_tokens` is required
    /// on `/v1/messages`, as Anthropic requires it.
    fn parse(body: &[u8], ingress: Ingress) -> Result<Routed, GatewayError> {
        Ok(match ingress {
            Ingress::ChatCompletions | Ingress::Messages => {
                let head = parse_chat_head(body)?;
                if ingress == Ingress::Messages && head.max_output_tokens.is_none() {
                    return Err(RequestError::Missing("max_tokens").into());
                }
                let (dialect, parsed, include_usage) = match ingress {
                    Ingress::Messages => (Dialect::Anthropic, Some(parse_anthropic(body)?), true),
                    _ => (Dialect::OpenAi, None, head.include_usage),
                };
                Routed {
                    model: head.model,
                    model_span: head.model_span,
                    stream: head.stream,
                    include_usage,
                    endpoint: Endpoint::ChatCompletions,
                    ingress: dialect,
                    parsed,
                    messages_span: Some(head.messages_span),
                    max_output: head.max_output_tokens,
                    previous_response: None,
                }
            }
            Ingress::Responses => {
                let head = nines_protocol::openai_responses::parse_head(body)?;
                Routed {
                    previous_response: head.previous_response_id,
                    model: head.model,
                    model_span: head.model_span,
                    stream: head.stream,
                    // A Responses answer always reports its usage.
                    include_usage: true,
                    endpoint: Endpoint::Responses,
                    ingress: Dialect::OpenAi,
                    parsed: None,
                    messages_span: Some(head.input_span),
                    max_output: head.max_output_tokens,
                }
            }
            Ingress::Completions => {
                let head = parse_completions_head(body)?;
                Routed {
                    model: head.model,
                    model_span: head.model_span,
                    stream: head.stream,
                    include_usage: head.include_usage,
                    endpoint: Endpoint::Completions,
                    ingress: Dialect::OpenAi,
                    parsed: None,
                    messages_span: Some(head.prompt_span),
                    max_output: head.max_tokens,
                    previous_response: None,
                }
            }
            Ingress::CountTokens => {
                let head = parse_chat_head(body)?;
                Routed {
                    model: head.model,
                    model_span: head.model_span,
                    stream: false,
                    include_usage: false,
                    endpoint: Endpoint::CountTokens,
                    ingress: Dialect::Anthropic,
                    parsed: Some(parse_anthropic(body)?),
                    messages_span: Some(head.messages_span),
                    max_output: Some(0),
                    previous_response: None,
                }
            }
            Ingress::Embeddings => {
                let head = parse_embeddings_head(body)?;
                Routed {
                    model: head.model,
                    model_span: head.model_span,
                    stream: false,
                    include_usage: false,
                    endpoint: Endpoint::Embeddings,
                    ingress: Dialect::OpenAi,
                    parsed: None,
                    messages_span: None,
                    max_output: None,
                    previous_response: None,
                }
            }
        })
    }
}

/// An Anthropic body in the unified model. Invalid in its own dialect: a 400 now. Valid but
/// untranslatable (a server tool, an Anthropic-only field): kept as that error, for the plan to
/// leave only Anthropic deployments.
fn parse_anthropic(body: &[u8]) -> Result<Result<ChatRequest, RequestError>, RequestError> {
    match nines_protocol::anthropic::parse_request(body) {
        Ok(chat) => Ok(Ok(chat)),
        Err(e @ RequestError::Unsupported(_)) => Ok(Err(e)),
        Err(e) => Err(e),
    }
}
/// Why a `previous_response_id` is refused without a store: nines keeps no conversations then,
/// and cannot leave them to the upstreams (a failover could land the next turn on a deployment
/// that never saw the previous one).
const PREVIOUS_RESPONSE_STATELESS: &str = "previous_response_id needs a conversation store: \
     this gateway is stateless (no [store] configured) and keeps no responses; send the whole \
     conversation in 'input' instead";

/// A request planned and ready to run: everything the later stages read.
struct Planned<'r> {
    route: &'r Route,
    /// Shared with the request, which describes it at its end when that is wanted.
    plan: Arc<Plan>,
    slots: Vec<KeySlot>,
    /// Shared with a stream's resumer, which may send it again after the commit point.
    view: Arc<RequestView>,
    deadline: Instant,
    stream: bool,
    include_usage: bool,
    trace: Propagation,
    /// Responses with a store: keeps the answer for the next turn.
    keep: Option<Keep>,
}

/// Handles one request whose body the edge read (or failed to read).
pub async fn handle(
    cx: Request,
    body: Result<Bytes, GatewayError>,
    ingress: Ingress,
) -> Result<Delivery, GatewayError> {
    let parsed = body.and_then(|body| Routed::parse(&body, ingress).map(|routed| (routed, body)));
    let (routed, body) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => return cx.fail(e),
    };
    forward(cx, body, routed).await
}

/// Admit, resolve, plan; run the plan; deliver what it found.
async fn forward(mut cx: Request, body: Bytes, routed: Routed) -> Result<Delivery, GatewayError> {
    let runtime = Arc::clone(&cx.runtime);
    let planned = match prepare(&mut cx, &runtime, body, routed).await {
        Ok(planned) => planned,
        Err(e) => return cx.fail(e),
    };
    let counting = planned.view.endpoint == Endpoint::CountTokens;
    if counting && planned.slots.is_empty() {
        return counted_locally(cx, &planned);
    }
    let Some(finished) = run(&mut cx, &runtime, &planned).await else {
        return cx.fail(GatewayError::ShuttingDown);
    };
    // No Anthropic deployment could count: an estimate answers rather than an error, since a
    // count is advice (Claude Code sizes its context with it), and it says it is one.
    if counting
        && matches!(
            finished,
            Finished::Exhausted { .. } | Finished::Unavailable { .. }
        )
    {
        cx.summary.attempts = finished.attempts().to_vec();
        return counted_locally(cx, &planned);
    }
    deliver(cx, &runtime, planned, finished)
}

/// `count_tokens` answered by the gateway: the prompt counted with the o200k tokenizer
/// (`router::tokens::count_chat`), marked `x-nines-token-count: estimate`.
fn counted_locally(cx: Request, p: &Planned<'_>) -> Result<Delivery, GatewayError> {
    let tokens = match p.view.chat() {
        Some(Ok(chat)) => crate::router::tokens::count_chat(chat),
        // Only an Anthropic deployment could count what the unified model cannot carry.
        Some(Err(e)) => return cx.fail(GatewayError::BadRequest(e.clone())),
        None => return cx.fail(GatewayError::Internal("a count without a request".into())),
    };
    let body = Bytes::from(serde_json::json!({ "input_tokens": tokens }).to_string());
    let mut headers = HeaderMap::new();
    if let Some(admission) = &cx.admission {
        admission.headers.write(&mut headers);
    }
    headers.insert(
        crate::router::tokens::ESTIMATE_HEADER,
        HeaderValue::from_static(crate::router::tokens::ESTIMATE_VALUE),
    );
    let attempts = cx.summary.attempts.len();
    cx.answered(StatusCode::OK, crate::config::Price::default(), &body);
    Ok(Delivery {
        status: StatusCode::OK,
        content_type: HeaderValue::from_static("application/json"),
        served_by: String::new(),
        attempts,
        body: DeliveryBody::Full(body),
        headers,
    })
}

/// Everything before the first upstream call.
async fn prepare<'r>(
    cx: &mut Request,
    runtime: &'r Runtime,
    body: Bytes,
    routed: Routed,
) -> Result<Planned<'r>, GatewayError> {
    cx.model.clone_from(&routed.model);
    admit(cx, &body, &routed).await?;
    let (body, routed, keep) = match routed.endpoint {
        Endpoint::Responses => converse(cx, body, routed).await?,
        _ => (body, routed, None),
    };
    let route = resolve(cx, runtime, &routed)?;
    let mut planned = plan(cx, runtime, route, body, routed)?;
    planned.keep = keep;
    Ok(planned)
}

/// Responses only, after admission (the key owns its conversations): the conversation
/// `previous_response_id` names goes before the request's own input (the body rebuilt; refused
/// without a store), and, with a store and unless the client sent `store: false`, what keeps
/// this response for the next turn.
async fn converse(
    cx: &Request,
    body: Bytes,
    mut routed: Routed,
) -> Result<(Bytes, Routed, Option<Keep>), GatewayError> {
    let (Some(conversations), Some(store)) = (
        cx.state.conversations.clone(),
        cx.runtime.config.access.store.as_ref(),
    ) else {
        return match routed.previous_response {
            Some(_) => Err(GatewayError::BadRequest(RequestError::Invalid {
                param: Some("previous_response_id"),
                message: PREVIOUS_RESPONSE_STATELESS.into(),
            })),
            None => Ok((body, routed, None)),
        };
    };
    let owner = cx
        .identity
        .as_ref()
        .and_then(|i| i.key.as_ref())
        .map_or_else(|| conversations::ANONYMOUS.to_owned(), |k| k.id.to_string());
    let mut request: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&body)
        .map_err(|e| GatewayError::BadRequest(RequestError::Malformed(e.to_string())))?;
    let mut input =
        conversations::input_items(request.get("input").unwrap_or(&serde_json::Value::Null));
    let body = match routed.previous_response.take() {
        None => body,
        Some(previous) => {
            let mut items = conversations
                .items(&previous, &owner)
                .await
                .map_err(|e| match e {
                    LookupError::NotFound(_) => GatewayError::BadRequest(RequestError::Invalid {
                        param: Some("previous_response_id"),
                        message: e.to_string(),
                    }),
                    LookupError::Store(_) => GatewayError::Internal(e.to_string()),
                })?;
            items.append(&mut input);
            input = items;
            request.insert("input".into(), serde_json::Value::Array(input.clone()));
            request.remove("previous_response_id");
            let body = Bytes::from(
                serde_json::to_vec(&request)
                    .map_err(|e| GatewayError::Internal(format!("a continued request: {e}")))?,
            );
            let head = nines_protocol::openai_responses::parse_head(&body)?;
            routed.model_span = head.model_span;
            routed.messages_span = Some(head.input_span);
            body
        }
    };
    let keeps = request.get("store").and_then(serde_json::Value::as_bool) != Some(false);
    let keep = keeps.then(|| Keep {
        conversations,
        owner,
        input,
        keep: store.keep_responses,
    });
    Ok((body, routed, keep))
}

/// Auth, the model allow-list and the limits (`access/`).
async fn admit(cx: &mut Request, body: &[u8], routed: &Routed) -> Result<(), GatewayError> {
    let prompt_bytes = routed
        .messages_span
        .as_ref()
        .map_or(body.len(), |s| s.len());
    let max_output = match routed.endpoint {
        Endpoint::Embeddings | Endpoint::CountTokens => Some(0),
        Endpoint::ChatCompletions | Endpoint::Completions | Endpoint::Responses => {
            routed.max_output
        }
    };
    cx.admit(&routed.model, prompt_bytes, max_output).await
}

/// The route the model name names (configured names, then `provider/upstream-model`).
fn resolve<'r>(
    cx: &mut Request,
    runtime: &'r Runtime,
    routed: &Routed,
) -> Result<&'r Route, GatewayError> {
    cx.summary.stream = routed.stream;
    let route = runtime
        .table
        .resolve(&routed.model)
        .ok_or_else(|| GatewayError::ModelNotFound(routed.model.clone()))?;
    cx.summary.model.clone_from(&routed.model);
    cx.summary.routed = true;
    Ok(route)
}

/// The plan: the route's key slots in order, filtered by context window and capability.
fn plan<'r>(
    cx: &mut Request,
    runtime: &'r Runtime,
    route: &'r Route,
    body: Bytes,
    routed: Routed,
) -> Result<Planned<'r>, GatewayError> {
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
        return Err(GatewayError::ContextTooLong {
            model: routed.model,
            needed: estimate.map_or(0, |e| e.needed(true)),
            largest_window: plan.largest_window,
        });
    }
    if plan.slots.is_empty() {
        return Err(GatewayError::NoCandidates {
            model: routed.model,
        });
    }
    let view = RequestView::new(routed.ingress, routed.endpoint, body, routed.model_span);
    let view = match routed.parsed {
        Some(chat) => view.with_chat(chat),
        None => view,
    };
    match filters::serviceable(&mut plan, deployments, &view) {
        Ok(()) => {}
        Err(Unservable::Invalid(e)) => return Err(GatewayError::BadRequest(e)),
        Err(Unservable::Missing(missing)) => {
            return Err(GatewayError::MissingCapability {
                model: routed.model,
                missing,
            });
        }
    }
    let plan = Arc::new(plan);
    if cx.describes() {
        cx.plan = Some(Arc::clone(&plan));
    }
    Ok(Planned {
        route,
        slots: plan.key_slots(),
        deadline: request_deadline(deployments, &plan, cx.meta.timeout),
        plan,
        view: Arc::new(view),
        stream: routed.stream,
        include_usage: routed.include_usage,
        trace: Propagation::new(cx.summary.trace.as_ref(), cx.meta.traceparent.as_deref()),
        keep: None,
    })
}

/// Walks the plan until an upstream answers, or nothing is left to try (`resilience/`). `None`:
/// the gateway's shutdown grace ran out first.
async fn run(cx: &mut Request, runtime: &Runtime, p: &Planned<'_>) -> Option<Finished> {
    let config = &runtime.config;
    let input = AttemptInput {
        request: &p.view,
        stream: p.stream,
        request_id: &cx.meta.id,
        deadline: p.deadline,
        hedge: p.route.hedge,
        backoff: config.resilience.backoff,
        max_attempts_per_deployment: config.resilience.max_attempts_per_deployment(),
        max_retry_after: config.resilience.max_retry_after,
        degrade_after_retries: p.route.degrade == crate::config::Degrade::AfterRetries,
        max_retry_after_wait: config.resilience.max_retry_after_wait,
        learned_first_byte: config.resilience.learned_first_byte,
        queue_timeout: config.routing.queue_timeout,
        max_queue: config.routing.max_queue,
        trace: &p.trace,
    };
    let cutting = cx.state.lifecycle.cutting();
    let (finished, waited) = tokio::select! {
        ran = run_plan(&p.slots, &runtime.upstreams, &runtime.health, input) => ran,
        () = cutting.cancelled() => return None,
    };
    cx.summary.waited = Some(waited);
    Some(finished)
}

/// The commit point: an answer goes to the client (a stream through a relay), anything else
/// ends the request with its error.
fn deliver(
    mut cx: Request,
    runtime: &Arc<Runtime>,
    mut p: Planned<'_>,
    finished: Finished,
) -> Result<Delivery, GatewayError> {
    let model = || p.plan.model.clone();
    let keep = p.keep.take();
    let (reply, deployment, tier, attempts, open) = match finished {
        Finished::Served {
            reply,
            deployment,
            tier,
            attempts,
            open,
        } => (reply, deployment, tier, attempts, open),
        Finished::Rejected {
            status,
            headers,
            body,
            attempts,
        } => {
            return cx.fail(GatewayError::upstream(status, headers, body, attempts));
        }
        Finished::Exhausted {
            attempts,
            deadline_hit,
        } => {
            return cx.fail(GatewayError::AllFailed {
                model: model(),
                attempts,
                deadline_hit,
            });
        }
        Finished::Unavailable {
            attempts,
            why,
            retry_after,
        } => {
            return cx.fail(GatewayError::Unavailable {
                model: model(),
                why,
                retry_after,
                attempts,
            });
        }
    };
    let upstream = deployment.provider.dialect();
    let translating = p.view.needs_translation(&deployment);
    let content_type = match (translating, p.stream) {
        (true, true) => HeaderValue::from_static("text/event-stream"),
        (true, false) => HeaderValue::from_static("application/json"),
        (false, _) => reply
            .headers
            .get(http::header::CONTENT_TYPE)
            .cloned()
            .unwrap_or(HeaderValue::from_static("application/json")),
    };
    let mut headers = HeaderMap::new();
    if let Some(admission) = &cx.admission {
        admission.headers.write(&mut headers);
    }
    // A fallback model is a change of quality the client is told of (the body's `model` is the
    // upstream model that answered, as always).
    let fallback = p.plan.fallback_of(tier);
    if let Some(v) = fallback.and_then(|f| HeaderValue::from_str(f).ok()) {
        headers.insert("x-nines-fallback", v);
    }
    // What the serving deployment left out, with the operator's leave (`drop_unsupported_params`).
    let dropped = p.view.dropped_params(&deployment);
    if let Ok(v) = HeaderValue::from_str(&dropped.join(", "))
        && !dropped.is_empty()
    {
        headers.insert("x-nines-dropped-params", v);
    }
    let summary = &mut cx.summary;
    summary.fallback = fallback.map(str::to_owned);
    summary.deployment = Some(deployment.name.clone());
    summary.upstream_ttfb = Some(reply.ttfb);
    summary.attempts = attempts;
    summary.served = true;
    let attempts = summary.attempts.len();
    cx.summary.ttfb = Some(cx.elapsed());
    let price = deployment.price;
    let body = match reply.body {
        ReplyBody::Full(bytes) => {
            drop(open);
            if let Some(keep) = keep.filter(|_| reply.status.is_success()) {
                keep.response(&bytes);
            }
            cx.answered(reply.status, price, &bytes);
            DeliveryBody::Full(bytes)
        }
        ReplyBody::Stream { head, rest } => {
            let segment = Segment {
                head,
                rest,
                idle: deployment.timeouts.idle,
                slot: open.unwrap_or_default(),
            };
            // The byte relay understands OpenAI's stream grammar only; any other upstream
            // dialect (even to a client of the same dialect) goes through the event relay,
            // which keeps event names and knows each dialect's end-of-stream.
            if p.view.endpoint == Endpoint::Responses && !translating {
                DeliveryBody::Stream(responses::relay(
                    segment,
                    p.deadline,
                    cx.state.lifecycle.cutting(),
                    keep,
                    move |report| cx.streamed(price, report),
                ))
            } else if translating || upstream != Dialect::OpenAi {
                // Replicate streams never repeat the prediction's id; the provider passes it on.
                let header = |name: &str| {
                    reply
                        .headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                let prediction = header(crate::providers::PREDICTION_ID).unwrap_or_default();
                let served_model = header(crate::providers::PREDICTION_MODEL)
                    .unwrap_or_else(|| deployment.upstream_model.clone());
                let Some(decoder) = Decoder::for_dialect(upstream, &prediction, &served_model)
                else {
                    let why = format!("no stream decoder for {}", upstream.as_str());
                    return cx.fail(GatewayError::Internal(why));
                };
                let decoder = decoder.with_json_tool(p.view.answers_through_json_tool(&deployment));
                let encoder = Encoder::for_client(
                    p.view.ingress,
                    p.view.endpoint,
                    &deployment.upstream_model,
                    p.include_usage,
                )
                .keeping(keep);
                let resume = resumer(&cx, runtime, &p, &deployment);
                DeliveryBody::Stream(translated::relay(
                    segment,
                    (decoder, encoder),
                    p.deadline,
                    cx.state.lifecycle.cutting(),
                    resume,
                    move |report| cx.streamed(price, report),
                ))
            } else {
                let resume = resumer(&cx, runtime, &p, &deployment);
                DeliveryBody::Stream(passthrough::relay(
                    segment,
                    p.deadline,
                    cx.state.lifecycle.cutting(),
                    resume,
                    move |report| cx.streamed(price, report),
                ))
            }
        }
    };
    Ok(Delivery {
        status: reply.status,
        content_type,
        served_by: deployment.name.clone(),
        attempts,
        body,
        headers,
    })
}

/// Continues a stream that breaks after the commit point on a later deployment, unless the model
/// turned it off (`resume_streams = false`): a chat stream (or a translated Responses stream) on
/// a configured route.
fn resumer(
    cx: &Request,
    runtime: &Arc<Runtime>,
    p: &Planned<'_>,
    serving: &Arc<crate::config::Deployment>,
) -> Option<Box<dyn Resume>> {
    // A JSON answer made through a forced tool is a tool call upstream: not plain text to
    // continue. A Responses stream is resumed when it is translated (its relay reads unified
    // events); a native one carries OpenAI's item ids and built-in tool calls, which nothing
    // continues.
    let resumable = p.stream
        && match p.view.endpoint {
            Endpoint::ChatCompletions => true,
            Endpoint::Responses => p.view.needs_translation(serving),
            Endpoint::Embeddings | Endpoint::Completions | Endpoint::CountTokens => false,
        }
        && !p.route.derived
        && p.route.resume_streams
        && !p.view.answers_through_json_tool(serving);
    if !resumable {
        return None;
    }
    let budget_of = Arc::clone(runtime);
    Some(Box::new(Resumer::new(ResumeInput {
        request: Arc::clone(&p.view),
        include_usage: p.include_usage,
        slots: &p.slots,
        upstreams: &runtime.upstreams,
        health: &runtime.health,
        serving,
        attempts: &cx.summary.attempts,
        deadline: p.deadline,
        request_id: &cx.meta.id,
        max_retry_after: runtime.config.resilience.max_retry_after,
        budget: Box::new(move || budget_of.health.budget.try_withdraw()),
        trace: &p.trace,
    })))
}

/// The whole request's deadline: the longest total timeout among the plan's deployments, so a
/// plan is never cut shorter than its most patient deployment allows.
fn request_deadline(
    deployments: &[Arc<crate::config::Deployment>],
    plan: &Plan,
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
