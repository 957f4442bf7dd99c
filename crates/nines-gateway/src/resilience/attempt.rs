//! One attempt: call one key slot, classify what came back, record it, and feed what it taught
//! to the slot's breaker, latency estimate and headroom.
//!
//! Every upstream call goes through [`attempt`]: the attempt loop and its hedges, stream resume,
//! video jobs and health probes. So an outcome is classified once (`class.rs`, and never
//! rewritten afterwards), recorded one way ([`AttemptRecord`]), and moves a breaker by one rule
//! (`breaker::Signal::of`). What a caller must check about an answer before it counts as one (a
//! translated body that decodes, a stream that is a stream, a job id that is a job id) it checks
//! inside the call it hands over, so a bad answer is classified `malformed` before the commit
//! point and fails over like any other.
//!
//! A `Retry-After` is honoured at most `resilience.max_retry_after` (`retry::honoured`); the
//! record keeps the provider's own value. A streamed answer leaves its key slot open
//! ([`OpenSlot`]): its breaker and in-flight mark are settled when the stream ends, by the relay.

use super::breaker::{Permit, Signal};
use super::class::{FailureClass, classify};
use super::health::{DeploymentHealth, InFlight, headroom};
use super::retry::{honoured, retry_after};
use crate::providers::{Outcome, Transport, Upstream};
use crate::tracecontext::AttemptSpan;
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

/// One upstream call as it is reported: never a secret, only the key slot's alias.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecord {
    pub deployment: String,
    pub key_alias: String,
    pub class: FailureClass,
    pub status: Option<u16>,
    pub elapsed: Duration,
    pub detail: String,
    /// The wait the provider asked for (its own value, before any clamp).
    pub retry_after: Option<Duration>,
    /// Its trace span (tracing on).
    pub span: Option<AttemptSpan>,
}

/// Where an attempt goes and what it holds while it runs.
pub struct Target<'a> {
    pub upstream: &'a Upstream,
    pub key: usize,
    /// Where its time to first byte and the provider's headroom are recorded; `None` for calls
    /// whose timing says nothing of answers (probes).
    pub health: Option<&'a DeploymentHealth>,
    /// The breaker's permission; `None` only where a call is made without one (a job poll:
    /// the job exists only there).
    pub permit: Option<Permit>,
    /// The deployment's in-flight mark, if the call counts towards its load.
    pub in_flight: Option<InFlight>,
    pub span: Option<AttemptSpan>,
    /// The answer is a stream, whose ending (not its first event) is the slot's outcome.
    pub stream: bool,
    /// `resilience.max_retry_after`.
    pub max_retry_after: Duration,
    /// The learned first-byte deadline the call was given (shorter than the configured one):
    /// an attempt abandoned at it is recorded as a sample at that time (`first_byte`).
    pub learned_deadline: Option<Duration>,
}

/// A made attempt.
pub struct Attempt {
    /// What came back, for the caller to use (a reply) or relay (a non-retryable status).
    pub outcome: Outcome,
    pub record: AttemptRecord,
    /// How long this key slot is not to be tried again (the honoured Retry-After).
    pub wait: Option<Duration>,
    /// A streamed answer's key slot, still open until its stream ends.
    pub open: Option<OpenSlot>,
}

/// The key slot of a stream being relayed: its breaker permit and in-flight mark, settled when
/// the stream ends.
#[derive(Debug, Default)]
pub struct OpenSlot {
    permit: Option<Permit>,
    in_flight: Option<InFlight>,
}

impl OpenSlot {
    pub fn new(permit: Option<Permit>, in_flight: Option<InFlight>) -> OpenSlot {
        OpenSlot { permit, in_flight }
    }

    /// Reports how the stream ended (`Ok`, a failure class, or `Cancelled` when the client
    /// left) to the slot's breaker and leaves the deployment's in-flight count.
    pub fn settle(self, class: FailureClass) {
        if let Some(permit) = self.permit {
            permit.record(Signal::of(class, None));
        }
        drop(self.in_flight);
    }
}

/// Makes one call and concludes it: classify, record, feed the slot's health.
pub async fn attempt(target: Target<'_>, call: impl Future<Output = Outcome>) -> Attempt {
    let started = Instant::now();
    let outcome = call.await;
    conclude(target, outcome, started.elapsed())
}

fn conclude(target: Target<'_>, outcome: Outcome, elapsed: Duration) -> Attempt {
    let deployment = &target.upstream.deployment;
    let key_alias = deployment
        .keys
        .get(target.key)
        .map_or_else(|| deployment.name.clone(), |k| k.alias.clone());
    let class = classify(&outcome);
    let mut record = AttemptRecord {
        deployment: deployment.name.clone(),
        key_alias,
        class,
        status: None,
        elapsed,
        detail: String::new(),
        retry_after: None,
        span: target.span,
    };
    match &outcome {
        Outcome::Reply(reply) => {
            record.status = Some(reply.status.as_u16());
            if let Some(health) = target.health {
                health.record_ttfb(target.stream, reply.ttfb);
                health.observe_latency(reply.ttfb);
                health.record_headroom(target.key, headroom(&reply.headers));
            }
            if target.stream {
                return Attempt {
                    outcome,
                    record,
                    wait: None,
                    open: Some(OpenSlot {
                        permit: target.permit,
                        in_flight: target.in_flight,
                    }),
                };
            }
        }
        Outcome::Status {
            status,
            headers,
            body,
        } => {
            record.status = Some(status.as_u16());
            record.detail = summarize(body);
            record.retry_after = retry_after(headers);
        }
        Outcome::StreamError { data } => {
            record.detail = format!("error event in stream: {}", summarize(data.as_bytes()));
        }
        Outcome::Transport(t) => {
            record.detail = t.describe();
            if let (Transport::FirstByteTimeout, Some(health), Some(learned)) =
                (t, target.health, target.learned_deadline)
            {
                health.record_ttfb(target.stream, learned);
                record.detail = format!(
                    "{} (learned deadline {} ms)",
                    record.detail,
                    learned.as_millis()
                );
            }
        }
    }
    let wait = record
        .retry_after
        .map(|hint| honoured(hint, target.max_retry_after, &record.key_alias));
    if let Some(permit) = target.permit {
        permit.record(Signal::of(class, wait));
    }
    drop(target.in_flight);
    if class != FailureClass::Ok {
        tracing::debug!(
            deployment = %record.deployment,
            key_slot = %record.key_alias,
            class = class.as_str(),
            status = record.status,
            detail = %record.detail,
            "attempt failed"
        );
    }
    Attempt {
        outcome,
        record,
        wait,
        open: None,
    }
}

/// A short, secret-free summary of an upstream error body: its `error.message` when it has one.
/// Anything that looks like an API key is masked, because some providers echo the key they were
/// given in their 401 messages.
pub fn summarize(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Envelope {
        error: Option<Inner>,
    }
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Inner {
        Object { message: Option<String> },
        Text(String),
    }
    let text = match serde_json::from_slice::<Envelope>(body) {
        Ok(Envelope {
            error: Some(Inner::Object { message: Some(m) }),
        }) => m,
        Ok(Envelope {
            error: Some(Inner::Text(m)),
        }) => m,
        _ => String::from_utf8_lossy(body).into_owned(),
    };
    truncate(&mask_keys(&text), 200)
}

/// Masks tokens that look like credentials (`sk-…`, long random-looking words).
pub fn mask_keys(text: &str) -> String {
    text.split_inclusive(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == ',')
        .map(|piece| {
            let word = piece
                .trim_end_matches(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == ',');
            let looks_secret = word.starts_with("sk-")
                || word.starts_with("key-")
                || (word.len() >= 24
                    && word
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                    && word.chars().any(|c| c.is_ascii_digit()));
            if looks_secret {
                let keep: String = word.chars().take(3).collect();
                format!("{keep}***{}", &piece[word.len()..])
            } else {
                piece.to_owned()
            }
        })
        .collect()
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_take_the_message_and_mask_keys() {
        assert_eq!(
            summarize(br#"{"error":"Task not found"}"#),
            "Task not found"
        );
        assert_eq!(
            summarize(br#"{"error":{"message":"bad key sk-abcdef123456"}}"#),
            "bad key sk-***"
        );
        assert_eq!(summarize(b"plain"), "plain");
    }
}
