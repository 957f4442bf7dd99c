//! W3C Trace Context: the ids a request and each of its attempts carry, fixed when they start.
//!
//! - [`RequestTrace::start`] (at request start) takes the client's trace id and sampled flag from
//!   a valid `traceparent` (the request span is then the client span's child), or starts a new
//!   trace sampled at the configured ratio, and picks the request span's id.
//! - [`Propagation::attempt`] (when an attempt starts) picks the attempt span's id and gives the
//!   `traceparent` its upstream request carries: `00-{trace id}-{attempt span id}-{flags}`. With
//!   tracing off it forwards the client's header unchanged (nothing when it sent none).
//!
//! These are plain values: the attempt loop stamps them on attempts, and `telemetry::trace`
//! builds and exports the spans from them when the request ends.

use crate::config::Deployment;
use http::HeaderValue;
use opentelemetry::trace::{SpanId, TraceFlags, TraceId};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// A request's place in its trace, fixed when it starts (tracing on only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestTrace {
    pub trace_id: TraceId,
    /// The request span's id.
    pub span_id: SpanId,
    /// The client's span, when it sent a valid `traceparent`.
    pub parent: Option<SpanId>,
    /// Exported (and flagged so upstream) or not.
    pub sampled: bool,
    /// The request's start: the origin of its attempts' offsets.
    pub started: Instant,
}

impl RequestTrace {
    pub fn flags(&self) -> TraceFlags {
        if self.sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        }
    }
}

/// One attempt's span, fixed when the attempt starts.
#[derive(Clone)]
pub struct AttemptSpan {
    pub span_id: SpanId,
    /// From the request's start to the attempt's.
    pub offset: Duration,
    /// The deployment called (its provider and upstream model name the span).
    pub deployment: Arc<Deployment>,
}

impl std::fmt::Debug for AttemptSpan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttemptSpan")
            .field("span_id", &self.span_id)
            .field("offset", &self.offset)
            .field("deployment", &self.deployment.name)
            .finish()
    }
}

impl PartialEq for AttemptSpan {
    fn eq(&self, other: &Self) -> bool {
        self.span_id == other.span_id
            && self.offset == other.offset
            && Arc::ptr_eq(&self.deployment, &other.deployment)
    }
}

/// What every upstream request of one client request carries as `traceparent`; made once per
/// request.
#[derive(Debug, Clone, Default)]
pub enum Propagation {
    /// Tracing off and the client sent no `traceparent`: nothing is added.
    #[default]
    Nothing,
    /// Tracing off: the client's `traceparent`, forwarded unchanged.
    Forward(HeaderValue),
    /// Tracing on: each attempt is a child span of the request's span.
    Trace(RequestTrace),
}

impl Propagation {
    /// `trace` is the request's trace when tracing is on; `client` the client's `traceparent`.
    pub fn new(trace: Option<&RequestTrace>, client: Option<&str>) -> Propagation {
        match (trace, client) {
            (Some(trace), _) => Propagation::Trace(*trace),
            (None, Some(client)) => HeaderValue::from_str(client)
                .map(Propagation::Forward)
                .unwrap_or_default(),
            (None, None) => Propagation::Nothing,
        }
    }

    /// A new attempt on `deployment`: its span (tracing on) and the `traceparent` its upstream
    /// request carries.
    pub fn attempt(
        &self,
        deployment: &Arc<Deployment>,
    ) -> (Option<AttemptSpan>, Option<HeaderValue>) {
        match self {
            Propagation::Nothing => (None, None),
            Propagation::Forward(value) => (None, Some(value.clone())),
            Propagation::Trace(trace) => {
                let span = AttemptSpan {
                    span_id: new_span_id(),
                    offset: trace.started.elapsed(),
                    deployment: Arc::clone(deployment),
                };
                let header = traceparent(trace.trace_id, span.span_id, trace.flags());
                (Some(span), HeaderValue::try_from(header).ok())
            }
        }
    }
}

/// `00-{trace id}-{parent id}-{flags}` (W3C Trace Context, version 00).
pub fn traceparent(trace_id: TraceId, parent: SpanId, flags: TraceFlags) -> String {
    format!("00-{trace_id}-{parent}-{:02x}", flags.to_u8())
}

/// The trace id, parent id and flags of a W3C `traceparent`, if it is valid: version 00 exactly
/// 55 characters, later versions at least that with a `-` after the flags; lowercase hex; neither
/// id all zeros; version `ff` is invalid.
pub fn parse_traceparent(value: &str) -> Option<(TraceId, SpanId, TraceFlags)> {
    let b = value.as_bytes();
    if !value.is_ascii() || b.len() < 55 {
        return None;
    }
    let hex = |s: &str| !s.is_empty() && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    let version = &value[0..2];
    if !hex(version) || version == "ff" || (version == "00" && b.len() != 55) {
        return None;
    }
    if b.len() > 55 && b[55] != b'-' {
        return None;
    }
    if b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
        return None;
    }
    let (trace, parent, flags) = (&value[3..35], &value[36..52], &value[53..55]);
    if !(hex(trace) && hex(parent) && hex(flags)) {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok()?;
    let parent = SpanId::from_hex(parent).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    if trace_id == TraceId::INVALID || parent == SpanId::INVALID {
        return None;
    }
    Some((trace_id, parent, TraceFlags::new(flags)))
}

/// The OpenTelemetry SDK's `TraceIdRatioBased` rule: the trace id's low 63 bits below
/// `ratio`·2⁶³, so every service sampling at the same ratio keeps the same traces.
pub fn sampled_by_ratio(trace_id: TraceId, ratio: f64) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    let bound = (ratio.max(0.0) * (1u64 << 63) as f64) as u64;
    let bytes = trace_id.to_bytes();
    let mut low = [0u8; 8];
    low.copy_from_slice(&bytes[8..]);
    (u64::from_be_bytes(low) >> 1) < bound
}

pub fn new_span_id() -> SpanId {
    loop {
        let id = rand::random::<u64>();
        if id != 0 {
            return SpanId::from(id);
        }
    }
}

pub fn new_trace_id() -> TraceId {
    loop {
        let id = rand::random::<u128>();
        if id != 0 {
            return TraceId::from(id);
        }
    }
}

impl RequestTrace {
    /// The trace a new request belongs to: the client's when its `traceparent` is valid (its
    /// sampled flag decides), else a new one sampled at `sample_ratio`.
    pub fn start(client: Option<&str>, sample_ratio: f64, started: Instant) -> RequestTrace {
        match client.and_then(parse_traceparent) {
            Some((trace_id, parent, flags)) => RequestTrace {
                trace_id,
                span_id: new_span_id(),
                parent: Some(parent),
                sampled: flags.is_sampled(),
                started,
            },
            None => {
                let trace_id = new_trace_id();
                RequestTrace {
                    trace_id,
                    span_id: new_span_id(),
                    parent: None,
                    sampled: sampled_by_ratio(trace_id, sample_ratio),
                    started,
                }
            }
        }
    }
}
