//! Resuming a stream that broke after the commit point.
//!
//! Policy: once the client has part of an answer, failing over means continuing that answer, not
//! starting a new one. Unless a model sets `resume_streams = false`, a stream that breaks after
//! the commit point (cut, stall past the idle timeout, in-band error, end without `[DONE]` or a
//! finish reason) is continued on the next deployment in plan order, and the continuation is
//! spliced into the same client stream under the first stream's `id`, `model` and `created`:
//! - a deployment that continues a prefilled answer (Anthropic's Messages API natively, an
//!   OpenAI-compatible server marked `assistant_prefill`) is sent the request with the text
//!   streamed so far as a final assistant message, and its text is the rest of the answer;
//! - any other deployment is asked the original request afresh, and its answer is spliced in only
//!   if its text begins with exactly what the client already received (`splice.rs`), so
//!   deterministic requests recover completely and anything else ends honestly, saying why.
//!
//! A continuation that breaks is continued in turn by the next candidate. Candidates are tried at
//! most once each, must be admitted by their breaker, fit in the request's deadline and take a
//! token from the retry budget, like any other extra attempt; each is an attempt in the trail and
//! the metrics, and the usage record sums the tokens of every leg. When none is left the stream
//! ends with the error event and no `[DONE]`, as it does without resume.
//!
//! Only answers whose state is exactly their text can be continued, so a stream that carried tool
//! calls, several choices (`n` > 1), refusals or reasoning deltas is not resumed (the error event
//! says so). A stream that broke before any text arrived has nothing to continue: any later
//! deployment may answer it afresh. `max_tokens` is sent unchanged, so a resumed answer may run
//! longer than a single one would; a continuation's first event is awaited like a normal
//! attempt, so the client sees a pause of up to that deployment's first-byte timeout.

use super::codec::Decoder;
use super::ending::Resumed;
use super::segment::Segment;
use super::splice::{self, Join};
use crate::config::Deployment;
use crate::providers::{Call, Endpoint, Outcome, ReplyBody, Transport, Upstream};
use crate::resilience::attempt::{Target, attempt};
use crate::resilience::breaker::Breaker;
use crate::resilience::health::{DeploymentHealth, Health, KeySlot};
use crate::resilience::{AttemptRecord, FailureClass};
use crate::tracecontext::Propagation;
use crate::translate::RequestView;
use futures_util::future::BoxFuture;
use nines_protocol::unified::Dialect;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Where the continuations of a broken stream come from. The relay asks for one each time the
/// stream it relays breaks; [`Resumer`] is the real one, tests script their own.
pub trait Resume: Send {
    /// A stream that continues an answer of which the client has received `partial`, ready to
    /// relay (its first event has arrived); `Err` says why there is none.
    fn next<'a>(&'a mut self, partial: &'a str) -> BoxFuture<'a, Result<Segment, String>>;

    /// The continuation attempts made so far (taken: a second call returns only newer ones).
    fn take_attempts(&mut self) -> Vec<AttemptRecord>;
}

/// What a relay keeps to resume a stream, whichever relay it is: where continuations come from,
/// the breaks they carried on, and whether a continuation is being relayed.
pub struct Continuations {
    source: Box<dyn Resume>,
    /// Relaying a continuation, not the first stream.
    pub continuing: bool,
    breaks: Vec<String>,
}

impl Continuations {
    pub fn new(source: Box<dyn Resume>) -> Continuations {
        Continuations {
            source,
            continuing: false,
            breaks: Vec::new(),
        }
    }

    /// The segment that carries the stream on after it broke (`why`) with `received` text at
    /// the client; `Err` is why the stream ends, `why` included.
    pub async fn after(&mut self, why: String, received: &str) -> Result<Segment, String> {
        tracing::info!(
            why = %why,
            received_chars = received.len(),
            "stream broke after the commit point; resuming"
        );
        match self.source.next(received).await {
            Ok(segment) => {
                self.breaks.push(why);
                self.continuing = true;
                Ok(segment)
            }
            Err(reason) => Err(format!("{why}; not resumed: {reason}")),
        }
    }

    /// What resuming did, for the stream's report (taken: a second call finds nothing new).
    pub fn take(&mut self) -> Resumed {
        Resumed {
            breaks: std::mem::take(&mut self.breaks),
            attempts: self.source.take_attempts(),
        }
    }
}

/// What building a [`Resumer`] needs of the request and its plan.
pub struct ResumeInput<'a> {
    /// The client's request.
    pub request: Arc<RequestView>,
    /// The client asked for a usage chunk at the end of its stream.
    pub include_usage: bool,
    /// The plan's key slots, in order.
    pub slots: &'a [KeySlot],
    pub upstreams: &'a [Arc<Upstream>],
    pub health: &'a Health,
    /// The deployment whose stream is being relayed.
    pub serving: &'a Arc<Deployment>,
    /// The attempts before the commit point: deployments that failed them are not asked again.
    pub attempts: &'a [AttemptRecord],
    pub deadline: Instant,
    pub request_id: &'a str,
    /// `resilience.max_retry_after`.
    pub max_retry_after: Duration,
    /// Takes one token from the retry budget; false when it is spent.
    pub budget: Box<dyn FnMut() -> bool + Send>,
    /// The `traceparent` each continuation carries, and its span.
    pub trace: &'a Propagation,
}

/// One key slot that may continue the stream.
struct Candidate {
    deployment: usize,
    upstream: Arc<Upstream>,
    key: usize,
    breaker: Arc<Breaker>,
    health: Arc<DeploymentHealth>,
}

/// Continues a broken stream on the plan's later deployments, one attempt per deployment.
pub struct Resumer {
    request: Arc<RequestView>,
    include_usage: bool,
    /// Later key slots in plan order.
    candidates: Vec<Candidate>,
    /// Deployments that may not continue the stream: the one that served it and every one tried.
    spent: Vec<usize>,
    deadline: Instant,
    request_id: String,
    max_retry_after: Duration,
    budget: Box<dyn FnMut() -> bool + Send>,
    attempts: Vec<AttemptRecord>,
    trace: Propagation,
}

impl Resumer {
    pub fn new(input: ResumeInput<'_>) -> Resumer {
        let serving = input
            .upstreams
            .iter()
            .position(|u| Arc::ptr_eq(&u.deployment, input.serving));
        // Later: after the serving deployment's last key slot.
        let after = serving
            .and_then(|d| input.slots.iter().rposition(|s| s.deployment == d))
            .map_or(input.slots.len(), |last| last + 1);
        let failed_before = |name: &str| {
            input.attempts.iter().any(|a| {
                a.deployment == name
                    && !matches!(a.class, FailureClass::Ok | FailureClass::Cancelled)
            })
        };
        let candidates = input.slots[after..]
            .iter()
            .filter_map(|s| {
                let upstream = input.upstreams.get(s.deployment)?;
                let dialect = upstream.deployment.provider.dialect();
                // Chat dialects only: a Replicate prediction is not continued, Runway has no chat.
                if matches!(dialect, Dialect::Replicate | Dialect::Runway)
                    || input
                        .request
                        .translatable_for(&upstream.deployment)
                        .is_err()
                    || Some(s.deployment) == serving
                    || failed_before(&upstream.deployment.name)
                {
                    return None;
                }
                Some(Candidate {
                    deployment: s.deployment,
                    upstream: Arc::clone(upstream),
                    key: s.key,
                    breaker: Arc::clone(input.health.breaker(s.deployment, s.key)?),
                    health: Arc::clone(input.health.deployments.get(s.deployment)?),
                })
            })
            .collect();
        Resumer {
            request: input.request,
            include_usage: input.include_usage,
            candidates,
            spent: serving.into_iter().collect(),
            deadline: input.deadline,
            request_id: input.request_id.to_owned(),
            max_retry_after: input.max_retry_after,
            budget: input.budget,
            attempts: Vec::new(),
            trace: input.trace.clone(),
        }
    }

    async fn continuation(&mut self, partial: &str) -> Result<Segment, String> {
        let mut failures: Vec<String> = Vec::new();
        let mut open = false;
        loop {
            if Instant::now() >= self.deadline {
                return Err(reason(&failures, "the request deadline was reached"));
            }
            let spent = &self.spent;
            let pick = self
                .candidates
                .iter()
                .enumerate()
                .filter(|(_, c)| !spent.contains(&c.deployment))
                .find_map(|(i, c)| match c.breaker.admit() {
                    Ok(permit) => Some((i, permit)),
                    Err(_) => {
                        open = true;
                        None
                    }
                });
            let Some((i, permit)) = pick else {
                let none = if open {
                    "the circuit breakers of the deployments that could continue it are open"
                } else {
                    "no later deployment in the plan is left"
                };
                return Err(reason(&failures, none));
            };
            if !(self.budget)() {
                return Err(reason(&failures, "the retry budget is spent"));
            }
            let c = &self.candidates[i];
            self.spent.push(c.deployment);
            let (upstream, key, health) = (Arc::clone(&c.upstream), c.key, Arc::clone(&c.health));
            let deployment = &upstream.deployment;
            // Prefilled where the deployment continues an answer; else replayed, and spliced
            // only if it begins with what the client has (nothing yet: anything goes).
            let (prefill, join) = if partial.is_empty() || !deployment.can_prefill() {
                let sent = partial.to_owned();
                (None, Join::Replays { sent })
            } else if deployment.provider.dialect() == Dialect::Anthropic {
                // Anthropic refuses a prefill ending in whitespace: the model writes it again.
                let kept = partial.trim_end();
                let skip = partial[kept.len()..].to_owned();
                (Some(kept), Join::Continues { skip })
            } else {
                let skip = String::new();
                (Some(partial), Join::Continues { skip })
            };
            let body = match self.request.continuation_for(deployment, prefill) {
                Ok(body) => body,
                Err(why) => {
                    failures.push(format!("{}: {why}", deployment.name));
                    continue;
                }
            };
            tracing::info!(
                request_id = %self.request_id,
                deployment = %deployment.name,
                key_slot = %deployment.keys[key].alias,
                prefill_chars = prefill.map_or(0, str::len),
                replayed = matches!(join, Join::Replays { .. }),
                "resuming a broken stream"
            );
            let (span, traceparent) = self.trace.attempt(deployment);
            let target = Target {
                upstream: &upstream,
                key,
                health: Some(&health),
                permit: Some(permit),
                in_flight: Some(health.enter()),
                span,
                stream: true,
                max_retry_after: self.max_retry_after,
                learned_deadline: None,
            };
            let call = async {
                let outcome = upstream
                    .call(Call {
                        // A continuation is a chat request whatever the client's endpoint.
                        endpoint: Endpoint::ChatCompletions,
                        key: &deployment.keys[key],
                        body,
                        stream: true,
                        request_id: &self.request_id,
                        deadline: self.deadline,
                        traceparent: traceparent.as_ref(),
                        first_byte: None,
                    })
                    .await;
                // A whole body cannot be spliced into a stream: not an answer here.
                match outcome {
                    Outcome::Reply(reply) if matches!(reply.body, ReplyBody::Full(_)) => {
                        Outcome::Transport(Transport::Malformed(
                            "answered a stream request with a whole body".into(),
                        ))
                    }
                    other => other,
                }
            };
            let mut made = attempt(target, call).await;
            if let (Outcome::Reply(reply), Some(slot)) = (made.outcome, made.open.take())
                && let ReplyBody::Stream { head, rest } = reply.body
            {
                let segment = Segment {
                    head,
                    rest,
                    idle: deployment.timeouts.idle,
                    slot,
                };
                let decoder = Decoder::for_dialect(
                    deployment.provider.dialect(),
                    "",
                    &deployment.upstream_model,
                );
                let replayed = matches!(join, Join::Replays { .. });
                let prepared = decoder
                    .ok_or_else(|| "no stream decoder".to_owned())
                    .and_then(|decoder| {
                        let model = &deployment.upstream_model;
                        splice::prepare(segment, decoder, model, self.include_usage, join)
                    });
                match prepared {
                    Ok(segment) => {
                        made.record.detail = if replayed {
                            "continued the stream (replayed)".into()
                        } else {
                            "continued the stream (prefilled)".into()
                        };
                        self.attempts.push(made.record);
                        return Ok(segment);
                    }
                    Err(why) => {
                        made.record.class = FailureClass::Malformed;
                        made.record.detail = why;
                    }
                }
            }
            let record = made.record;
            failures.push(format!(
                "{} {}{}",
                record.key_alias,
                record.class.as_str(),
                record.status.map(|s| format!(" {s}")).unwrap_or_default()
            ));
            tracing::debug!(
                request_id = %self.request_id,
                key_slot = %record.key_alias,
                class = record.class.as_str(),
                detail = %record.detail,
                "continuation failed"
            );
            self.attempts.push(record);
        }
    }
}

/// Why no continuation came, with the continuations that failed on the way.
fn reason(failures: &[String], why: &str) -> String {
    if failures.is_empty() {
        why.to_owned()
    } else {
        format!("{why} (continuations failed: {})", failures.join(", "))
    }
}

impl Resume for Resumer {
    fn next<'a>(&'a mut self, partial: &'a str) -> BoxFuture<'a, Result<Segment, String>> {
        Box::pin(self.continuation(partial))
    }

    fn take_attempts(&mut self) -> Vec<AttemptRecord> {
        std::mem::take(&mut self.attempts)
    }
}

/// What the relay learns from the chunks it forwards when the stream may be resumed: the text
/// the client has, the first stream's identity, and whether the answer is plain text at all.
#[derive(Debug, Default)]
pub struct Transcript {
    /// The assistant text the client has received.
    pub text: String,
    /// Why the answer cannot be continued, once something says so.
    pub unresumable: Option<&'static str>,
    /// The first stream's `id`, `model` and `created` (raw JSON), which continuations take on.
    ids: [Option<Box<str>>; 3],
}

/// What to do with one event's data.
#[derive(Debug, PartialEq)]
pub enum Observed {
    /// Forward it: as it is, or as rewritten.
    Forward {
        rewritten: Option<String>,
        finish: bool,
    },
    /// A continuation's role-only opener: the client has had its role already.
    Drop,
    /// Not JSON.
    Malformed,
}

#[derive(Deserialize)]
struct ChunkView<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    model: Option<&'a RawValue>,
    #[serde(borrow, default)]
    created: Option<&'a RawValue>,
    #[serde(borrow, default)]
    choices: Option<Vec<ChoiceView<'a>>>,
    #[serde(borrow, default)]
    usage: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ChoiceView<'a> {
    #[serde(default)]
    index: Option<u64>,
    #[serde(borrow, default)]
    delta: Option<DeltaView<'a>>,
    #[serde(borrow, default)]
    finish_reason: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct DeltaView<'a> {
    #[serde(borrow, default)]
    role: Option<&'a RawValue>,
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tool_calls: Option<&'a RawValue>,
    #[serde(borrow, default)]
    function_call: Option<&'a RawValue>,
    #[serde(borrow, default)]
    refusal: Option<&'a RawValue>,
    #[serde(borrow, default)]
    reasoning_content: Option<&'a RawValue>,
    #[serde(borrow, default)]
    reasoning: Option<&'a RawValue>,
}

impl DeltaView<'_> {
    /// Why text alone cannot stand for this delta, if it cannot.
    fn not_text(&self) -> Option<&'static str> {
        let said = |v: Option<&RawValue>| v.is_some_and(|v| v.get() != "\"\"");
        if self.tool_calls.is_some() || self.function_call.is_some() {
            Some("the answer has tool calls")
        } else if said(self.refusal) {
            Some("the answer is a refusal")
        } else if said(self.reasoning_content) || said(self.reasoning) {
            Some("the answer has reasoning deltas")
        } else {
            None
        }
    }
}

impl Transcript {
    /// Reads one event's data. `continuing`: it comes from a continuation, whose `id`, `model`
    /// and `created` become the first stream's and whose role-only opener is dropped.
    pub fn observe(&mut self, data: &str, continuing: bool) -> Observed {
        let Ok(view) = serde_json::from_str::<ChunkView<'_>>(data) else {
            if serde_json::from_str::<serde::de::IgnoredAny>(data).is_err() {
                return Observed::Malformed;
            }
            self.unresumable
                .get_or_insert("a chunk was not a chat completion chunk");
            return Observed::Forward {
                rewritten: None,
                finish: false,
            };
        };
        let choices = view.choices.as_deref().unwrap_or_default();
        let finish = choices.iter().any(|c| c.finish_reason.is_some());
        if continuing && view.usage.is_none() && is_role_opener(choices) {
            return Observed::Drop;
        }
        for choice in choices {
            if choice.index.unwrap_or(0) != 0 {
                self.unresumable
                    .get_or_insert("the answer has several choices (n > 1)");
                continue;
            }
            let Some(delta) = &choice.delta else { continue };
            if let Some(why) = delta.not_text() {
                self.unresumable.get_or_insert(why);
            }
            if let Some(content) = &delta.content {
                self.text.push_str(content);
            }
        }
        let fields = [view.id, view.model, view.created];
        if !continuing {
            for (kept, field) in self.ids.iter_mut().zip(fields) {
                if kept.is_none() {
                    *kept = field.map(|raw| raw.get().into());
                }
            }
            return Observed::Forward {
                rewritten: None,
                finish,
            };
        }
        Observed::Forward {
            rewritten: self.rewrite(data, fields),
            finish,
        }
    }

    /// `data` with each of `fields` (borrowed from it) replaced by the first stream's value;
    /// `None` when nothing differs. Only those bytes change.
    fn rewrite(&self, data: &str, fields: [Option<&RawValue>; 3]) -> Option<String> {
        let mut spans: Vec<(Range<usize>, &str)> = fields
            .iter()
            .zip(&self.ids)
            .filter_map(|(field, kept)| {
                let (field, kept) = (field.as_ref()?, kept.as_deref()?);
                (field.get() != kept).then(|| (span_in(data, field.get()), kept))
            })
            .collect();
        if spans.is_empty() {
            return None;
        }
        spans.sort_by_key(|(span, _)| span.start);
        let mut out = String::with_capacity(data.len() + 32);
        let mut at = 0;
        for (span, value) in spans {
            out.push_str(&data[at..span.start]);
            out.push_str(value);
            at = span.end;
        }
        out.push_str(&data[at..]);
        Some(out)
    }
}

/// One choice whose delta carries a role and nothing else of substance.
fn is_role_opener(choices: &[ChoiceView<'_>]) -> bool {
    match choices {
        [choice] => {
            choice.finish_reason.is_none()
                && choice.delta.as_ref().is_some_and(|d| {
                    d.role.is_some()
                        && d.content.as_deref().is_none_or(str::is_empty)
                        && d.not_text().is_none()
                })
        }
        _ => false,
    }
}

/// The byte range of `inner` within `outer`; `inner` must be borrowed from `outer`.
fn span_in(outer: &str, inner: &str) -> Range<usize> {
    let start = (inner.as_ptr() as usize).saturating_sub(outer.as_ptr() as usize);
    start..start + inner.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRST: &str = r#"{"id":"chatcmpl-a","object":"chat.completion.chunk","created":1,"model":"m-a","choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}"#;

    #[test]
    fn the_transcript_keeps_text_and_the_first_streams_identity() {
        let mut t = Transcript::default();
        let opener = r#"{"id":"chatcmpl-a","created":1,"model":"m-a","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#;
        assert_eq!(
            t.observe(opener, false),
            Observed::Forward {
                rewritten: None,
                finish: false
            },
            "the first stream's opener goes through"
        );
        t.observe(FIRST, false);
        t.observe(
            r#"{"id":"chatcmpl-a","choices":[{"index":0,"delta":{"content":"lo \"x\""}}]}"#,
            false,
        );
        assert_eq!(t.text, "Hello \"x\"");
        assert_eq!(t.unresumable, None);
        assert_eq!(t.observe("{not json", false), Observed::Malformed);

        // A continuation: its opener is dropped, its identity becomes the first stream's.
        let opener_b = r#"{"id":"chatcmpl-b","created":2,"model":"m-b","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#;
        assert_eq!(t.observe(opener_b, true), Observed::Drop);
        let chunk_b = r#"{"id":"chatcmpl-b","object":"chat.completion.chunk","created":2,"model":"m-b","system_fingerprint":"fp","choices":[{"index":0,"delta":{"content":" world"},"finish_reason":"stop"}]}"#;
        let Observed::Forward {
            rewritten: Some(rewritten),
            finish: true,
        } = t.observe(chunk_b, true)
        else {
            panic!("not rewritten")
        };
        assert_eq!(
            rewritten,
            r#"{"id":"chatcmpl-a","object":"chat.completion.chunk","created":1,"model":"m-a","system_fingerprint":"fp","choices":[{"index":0,"delta":{"content":" world"},"finish_reason":"stop"}]}"#
        );
        assert_eq!(t.text, "Hello \"x\" world");
        // The usage chunk (no choices) is kept and rewritten too.
        let usage = r#"{"id":"chatcmpl-b","created":2,"model":"m-b","choices":[],"usage":{"total_tokens":3}}"#;
        let Observed::Forward {
            rewritten: Some(rewritten),
            ..
        } = t.observe(usage, true)
        else {
            panic!("usage dropped")
        };
        assert!(rewritten.starts_with(r#"{"id":"chatcmpl-a","created":1,"model":"m-a""#));
    }

    #[test]
    fn tool_calls_choices_and_reasoning_make_an_answer_unresumable() {
        for (chunk, why) in [
            (
                r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0}]}}]}"#,
                "tool calls",
            ),
            (
                r#"{"choices":[{"index":1,"delta":{"content":"x"}}]}"#,
                "several choices",
            ),
            (
                r#"{"choices":[{"index":0,"delta":{"reasoning_content":"hmm"}}]}"#,
                "reasoning",
            ),
            (r#"{"choices":{"weird":true}}"#, "not a chat completion"),
        ] {
            let mut t = Transcript::default();
            t.observe(chunk, false);
            assert!(t.unresumable.is_some_and(|w| w.contains(why)), "{chunk}");
        }
        let mut t = Transcript::default();
        t.observe(
            r#"{"choices":[{"index":0,"delta":{"content":"x","tool_calls":null,"refusal":null,"reasoning_content":""}}]}"#,
            false,
        );
        assert_eq!(t.unresumable, None, "nulls and empty strings say nothing");
    }
}
