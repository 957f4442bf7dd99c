//! OpenTelemetry traces over OTLP/HTTP (`[telemetry.otlp]`): one SERVER span per request and one
//! CLIENT span per upstream attempt, with the GenAI semantic conventions' attributes.
//!
//! The ids are fixed while the request runs (`crate::tracecontext`: the request's at its start,
//! each attempt's when it starts, sent upstream as `traceparent`); the spans are built here when
//! the request ends. [`Tracer::export`] (from `Telemetry::record`) builds them from the summary
//! with those ids and explicit times. opentelemetry_sdk 0.33's tracer ignores ids given to a
//! `SpanBuilder` (`SdkTracer::build_with_context` draws them from its id generator), so the
//! spans are made as `SpanData` and handed to the OTLP exporter directly.
//!
//! Export is batched by a background task (every [`BATCH_DELAY`] or [`MAX_BATCH`] spans); a
//! request only does a `try_send` into a bounded queue, and when the collector is slow or down,
//! spans beyond [`QUEUE_REQUESTS`] waiting requests are dropped and counted, never waited for.
//! Each gateway has its own tracer: nothing global is installed.

use super::RequestSummary;
use crate::config::ProviderKind;
use crate::config::telemetry::{Otlp, OtlpProtocol};
use crate::resilience::{AttemptRecord, FailureClass};
use crate::tracecontext::{AttemptSpan, RequestTrace};
use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter as _, SpanLinks};
use std::borrow::Cow;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// How long spans wait for company before they are sent.
pub const BATCH_DELAY: Duration = Duration::from_secs(1);
/// The most spans in one export request.
pub const MAX_BATCH: usize = 512;
/// Finished requests whose spans may wait for export; beyond, they are dropped (and counted).
pub const QUEUE_REQUESTS: usize = 1024;
/// One export request's limit, retries included.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// `gen_ai.provider.name`: the GenAI conventions' well-known value where there is one.
pub fn provider_name(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Openai => "openai",
        ProviderKind::Anthropic => "anthropic",
        ProviderKind::Gemini => "gcp.gemini",
        ProviderKind::OpenaiCompatible => "openai_compatible",
        ProviderKind::Nvidia => "nvidia",
        ProviderKind::Replicate => "replicate",
        ProviderKind::Runway => "runway",
    }
}

/// `gen_ai.operation.name` of an endpoint.
pub fn operation_name(endpoint: &str) -> &'static str {
    match endpoint {
        "embeddings" => "embeddings",
        "completions" => "text_completion",
        "videos" | "video_status" => "generate_content",
        // chat, messages, and count_tokens (a question about a chat request)
        _ => "chat",
    }
}

enum Command {
    Spans(Vec<SpanData>),
    Flush(oneshot::Sender<()>),
}

/// The exporter and the queue's far end, until [`Tracer::start`] moves them into their task.
struct Worker {
    exporter: opentelemetry_otlp::SpanExporter,
    queue: mpsc::Receiver<Command>,
    failing: bool,
}

/// One gateway's trace exporter.
pub struct Tracer {
    sample_ratio: f64,
    queue: mpsc::Sender<Command>,
    worker: Mutex<Option<Worker>>,
    scope: InstrumentationScope,
    dropped: AtomicU64,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer")
            .field("sample_ratio", &self.sample_ratio)
            .field("dropped", &self.dropped)
            .finish_non_exhaustive()
    }
}

impl Tracer {
    /// The exporter `[telemetry.otlp]` describes; `None` (with an error logged) if it cannot be
    /// built.
    pub fn new(config: &Otlp) -> Option<Tracer> {
        match Tracer::build(config) {
            Ok(tracer) => Some(tracer),
            Err(e) => {
                tracing::error!(endpoint = %config.endpoint, error = %e, "OTLP trace export is off: cannot build the exporter");
                None
            }
        }
    }

    fn build(config: &Otlp) -> Result<Tracer, String> {
        crate::providers::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(EXPORT_TIMEOUT)
            .retry(reqwest::retry::never())
            .build()
            .map_err(|e| e.to_string())?;
        let headers = config
            .headers
            .iter()
            .map(|(name, value)| (name.clone(), value.expose().to_owned()))
            .collect();
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_endpoint(format!("{}/v1/traces", config.endpoint))
            .with_protocol(match config.protocol {
                OtlpProtocol::HttpProtobuf => Protocol::HttpBinary,
                OtlpProtocol::HttpJson => Protocol::HttpJson,
            })
            .with_timeout(EXPORT_TIMEOUT)
            .with_headers(headers)
            .build()
            .map_err(|e| e.to_string())?;
        exporter.set_resource(
            &Resource::builder()
                .with_service_name(config.service_name.clone())
                .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
                .build(),
        );
        let (tx, rx) = mpsc::channel(QUEUE_REQUESTS);
        Ok(Tracer {
            sample_ratio: config.sample_ratio,
            queue: tx,
            worker: Mutex::new(Some(Worker {
                exporter,
                queue: rx,
                failing: false,
            })),
            scope: InstrumentationScope::builder("nines")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
            dropped: AtomicU64::new(0),
        })
    }

    /// Starts the export task on the current tokio runtime. Later calls do nothing.
    pub fn start(&self) {
        let worker = self.worker.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let (Some(worker), Ok(handle)) = (worker, tokio::runtime::Handle::try_current()) {
            handle.spawn(worker.run());
        }
    }

    /// Requests whose spans were dropped because the export queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The trace a new request belongs to: the client's when its `traceparent` is valid (its
    /// sampled flag decides), else a new one sampled at `sample_ratio`.
    pub fn start_request(&self, client: Option<&str>, started: Instant) -> RequestTrace {
        RequestTrace::start(client, self.sample_ratio, started)
    }

    /// Queues a finished request's spans for export; never waits.
    pub fn export(&self, summary: &RequestSummary) {
        let Some(trace) = &summary.trace else { return };
        if !trace.sampled {
            return;
        }
        let spans = spans(summary, trace, &self.scope);
        if self.queue.try_send(Command::Spans(spans)).is_err() {
            let before = self.dropped.fetch_add(1, Ordering::Relaxed);
            if before.is_power_of_two() || before == 0 {
                tracing::warn!(
                    dropped = before + 1,
                    "OTLP export queue full: request spans dropped"
                );
            }
        }
    }

    /// Sends every span queued so far; false if that did not finish `within` (or the export task
    /// never started).
    pub async fn flush(&self, within: Duration) -> bool {
        let (tx, rx) = oneshot::channel();
        let sent = async { self.queue.send(Command::Flush(tx)).await.is_ok() && rx.await.is_ok() };
        tokio::time::timeout(within, sent).await.unwrap_or(false)
    }
}

impl Worker {
    async fn run(mut self) {
        let mut batch: Vec<SpanData> = Vec::new();
        let mut due: Option<Instant> = None;
        loop {
            let command = match due {
                Some(at) => tokio::select! {
                    command = self.queue.recv() => command,
                    _ = tokio::time::sleep_until(at) => {
                        due = None;
                        self.send(&mut batch).await;
                        continue;
                    }
                },
                None => self.queue.recv().await,
            };
            match command {
                Some(Command::Spans(spans)) => {
                    batch.extend(spans);
                    if batch.len() >= MAX_BATCH {
                        due = None;
                        self.send(&mut batch).await;
                    } else if due.is_none() {
                        due = Some(Instant::now() + BATCH_DELAY);
                    }
                }
                Some(Command::Flush(done)) => {
                    // Everything queued before the flush goes with it.
                    let mut waiting = vec![done];
                    while let Ok(command) = self.queue.try_recv() {
                        match command {
                            Command::Spans(spans) => batch.extend(spans),
                            Command::Flush(done) => waiting.push(done),
                        }
                    }
                    due = None;
                    self.send(&mut batch).await;
                    for done in waiting {
                        let _ = done.send(());
                    }
                }
                None => {
                    // The tracer is gone: send what is left and stop.
                    self.send(&mut batch).await;
                    return;
                }
            }
        }
    }

    async fn send(&mut self, batch: &mut Vec<SpanData>) {
        while !batch.is_empty() {
            let rest = batch.split_off(batch.len().min(MAX_BATCH));
            let chunk = std::mem::replace(batch, rest);
            let count = chunk.len();
            match self.exporter.export(chunk).await {
                Ok(()) if self.failing => {
                    self.failing = false;
                    tracing::info!("OTLP trace export recovered");
                }
                Ok(()) => {}
                Err(e) => {
                    if !self.failing {
                        tracing::warn!(error = %e, spans = count, "OTLP trace export failed; spans dropped");
                    }
                    self.failing = true;
                }
            }
        }
    }
}

/// The request's span and one span per attempt.
fn spans(s: &RequestSummary, trace: &RequestTrace, scope: &InstrumentationScope) -> Vec<SpanData> {
    let operation = operation_name(s.endpoint);
    let start = UNIX_EPOCH + Duration::from_millis(s.started_at_ms);
    let end = start + s.latency;
    let usage = s.tokens_in.zip(s.tokens_out).filter(|_| !s.usage_estimated);
    // The attempt that answered (a resumed stream's first one: the deployment the client was
    // told).
    let served_by = s
        .served
        .then(|| {
            s.attempts.iter().find(|a| {
                a.class == FailureClass::Ok
                    && a.span.is_some()
                    && s.deployment.as_deref() == Some(a.deployment.as_str())
            })
        })
        .flatten();
    let one_serving = s
        .attempts
        .iter()
        .filter(|a| a.class == FailureClass::Ok)
        .count()
        == 1;

    let mut attrs = Vec::with_capacity(20);
    attrs.push(KeyValue::new("gen_ai.operation.name", operation));
    if !s.model.is_empty() {
        attrs.push(KeyValue::new("gen_ai.request.model", s.model.clone()));
        attrs.push(KeyValue::new("nines.route", s.model.clone()));
    }
    if let Some(span) = served_by.and_then(|a| a.span.as_ref()) {
        attrs.push(KeyValue::new(
            "gen_ai.provider.name",
            provider_name(span.deployment.provider),
        ));
        attrs.push(KeyValue::new(
            "gen_ai.response.model",
            span.deployment.upstream_model.clone(),
        ));
    }
    if let Some((input, output)) = usage {
        attrs.push(KeyValue::new("gen_ai.usage.input_tokens", input as i64));
        attrs.push(KeyValue::new("gen_ai.usage.output_tokens", output as i64));
    }
    if s.usage_estimated {
        attrs.push(KeyValue::new("nines.usage_estimated", true));
    }
    attrs.push(KeyValue::new("nines.request_id", s.request_id.clone()));
    attrs.push(KeyValue::new("nines.endpoint", s.endpoint));
    attrs.push(KeyValue::new("nines.stream", s.stream));
    if let Some(deployment) = &s.deployment {
        attrs.push(KeyValue::new("nines.deployment", deployment.clone()));
    }
    attrs.push(KeyValue::new("nines.attempts", s.attempts.len() as i64));
    attrs.push(KeyValue::new("nines.fell_back", s.fell_back()));
    attrs.push(KeyValue::new("nines.outcome", s.outcome.clone()));
    if let Some(level) = s.limited_at {
        attrs.push(KeyValue::new("nines.limited_at", level));
    }
    attrs.push(KeyValue::new(
        "http.response.status_code",
        i64::from(s.status),
    ));
    let failure = s.client_visible_failure();
    if failure {
        attrs.push(KeyValue::new("error.type", s.outcome.clone()));
    }
    let status = if failure {
        Status::error(if s.detail.is_empty() {
            s.outcome.clone()
        } else {
            s.detail.clone()
        })
    } else {
        Status::Unset
    };
    let name = if s.model.is_empty() {
        Cow::Borrowed(operation)
    } else {
        Cow::Owned(format!("{operation} {}", s.model))
    };

    let mut spans = Vec::with_capacity(1 + s.attempts.len());
    spans.push(span_data(
        SpanContext::new(
            trace.trace_id,
            trace.span_id,
            trace.flags(),
            false,
            TraceState::NONE,
        ),
        trace.parent,
        SpanKind::Server,
        name,
        (start, end),
        attrs,
        status,
        scope,
    ));
    for (i, attempt) in s.attempts.iter().enumerate() {
        let Some(span) = &attempt.span else { continue };
        let begin = start + span.offset;
        let usage = usage.filter(|_| one_serving && attempt.class == FailureClass::Ok);
        spans.push(span_data(
            SpanContext::new(
                trace.trace_id,
                span.span_id,
                trace.flags(),
                false,
                TraceState::NONE,
            ),
            Some(trace.span_id),
            SpanKind::Client,
            Cow::Owned(format!("{operation} {}", span.deployment.upstream_model)),
            (begin, begin + attempt.elapsed),
            attempt_attributes(operation, i + 1, attempt, span, usage),
            attempt_status(attempt),
            scope,
        ));
    }
    spans
}

fn attempt_attributes(
    operation: &'static str,
    number: usize,
    a: &AttemptRecord,
    span: &AttemptSpan,
    usage: Option<(u64, u64)>,
) -> Vec<KeyValue> {
    let d = &span.deployment;
    let mut attrs = Vec::with_capacity(16);
    attrs.push(KeyValue::new("gen_ai.operation.name", operation));
    attrs.push(KeyValue::new(
        "gen_ai.provider.name",
        provider_name(d.provider),
    ));
    attrs.push(KeyValue::new(
        "gen_ai.request.model",
        d.upstream_model.clone(),
    ));
    if a.class == FailureClass::Ok {
        attrs.push(KeyValue::new(
            "gen_ai.response.model",
            d.upstream_model.clone(),
        ));
    }
    if let Some((input, output)) = usage {
        attrs.push(KeyValue::new("gen_ai.usage.input_tokens", input as i64));
        attrs.push(KeyValue::new("gen_ai.usage.output_tokens", output as i64));
    }
    if let Ok(url) = reqwest::Url::parse(&d.base_url) {
        if let Some(host) = url.host_str() {
            attrs.push(KeyValue::new("server.address", host.to_owned()));
        }
        if let Some(port) = url.port_or_known_default() {
            attrs.push(KeyValue::new("server.port", i64::from(port)));
        }
    }
    attrs.push(KeyValue::new("nines.deployment", a.deployment.clone()));
    attrs.push(KeyValue::new("nines.key_slot", a.key_alias.clone()));
    attrs.push(KeyValue::new("nines.attempt", number as i64));
    attrs.push(KeyValue::new("nines.failure_class", a.class.as_str()));
    if let Some(status) = a.status {
        attrs.push(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
    }
    if let Some(wait) = a.retry_after {
        attrs.push(KeyValue::new(
            "nines.retry_after_ms",
            wait.as_millis().min(i64::MAX as u128) as i64,
        ));
    }
    if failed(a.class) {
        attrs.push(KeyValue::new("error.type", a.class.as_str()));
    }
    attrs
}

/// A failed attempt: anything but an answer, or a hedge cancelled because its twin answered.
fn failed(class: FailureClass) -> bool {
    !matches!(class, FailureClass::Ok | FailureClass::Cancelled)
}

fn attempt_status(a: &AttemptRecord) -> Status {
    if !failed(a.class) {
        return Status::Unset;
    }
    Status::error(if a.detail.is_empty() {
        a.class.as_str().to_owned()
    } else {
        a.detail.clone()
    })
}

#[expect(
    clippy::too_many_arguments,
    reason = "one span's fields, each named at the call"
)]
fn span_data(
    context: SpanContext,
    parent: Option<SpanId>,
    kind: SpanKind,
    name: Cow<'static, str>,
    (start_time, end_time): (SystemTime, SystemTime),
    attributes: Vec<KeyValue>,
    status: Status,
    scope: &InstrumentationScope,
) -> SpanData {
    SpanData {
        span_context: context,
        parent_span_id: parent.unwrap_or(SpanId::INVALID),
        // Only the request span's parent (the client's span) lives in another process.
        parent_span_is_remote: kind == SpanKind::Server && parent.is_some(),
        span_kind: kind,
        name,
        start_time,
        end_time,
        attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status,
        instrumentation_scope: scope.clone(),
    }
}

#[cfg(test)]
mod tests;
