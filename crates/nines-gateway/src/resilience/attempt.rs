//! The attempt loop: walk the plan's key slots in order until one answers.
//!
//! Policy: a retryable failure moves to the next key slot at once (failover before the commit point
//! is free: nothing has been sent to the client yet). A non-retryable answer (a client error, a
//! content filter) is returned as it is, because every other deployment would say the same.
//! Context-too-long skips every later deployment whose window is not larger than the one that
//! refused. The request's deadline bounds the whole loop. Every attempt is recorded with its class
//! so the final error can say exactly what happened.

use super::class::{FailureClass, classify};
use crate::config::Deployment;
use crate::providers::{Call, Endpoint, Outcome, Reply, Upstream};
use crate::router::Plan;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use std::sync::Arc;
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
}

/// How the loop ended.
pub enum Finished {
    Served {
        reply: Reply,
        deployment: Arc<Deployment>,
        attempts: Vec<AttemptRecord>,
    },
    /// A non-retryable upstream answer, relayed as it is.
    Rejected {
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
        attempts: Vec<AttemptRecord>,
    },
    /// Every candidate failed, or the deadline ran out first.
    Exhausted {
        attempts: Vec<AttemptRecord>,
        deadline_hit: bool,
    },
}

/// What the loop needs of the request.
pub struct AttemptInput<'a> {
    pub endpoint: Endpoint,
    pub stream: bool,
    pub request_id: &'a str,
    pub deadline: Instant,
    /// The request body in the given deployment's terms (its upstream model spliced in).
    pub body_for: &'a (dyn Fn(&Deployment) -> Bytes + Send + Sync),
}

pub async fn run_plan(
    plan: &Plan,
    upstreams: &[Arc<Upstream>],
    input: AttemptInput<'_>,
) -> Finished {
    let mut attempts = Vec::with_capacity(plan.slots.len().min(4));
    let mut refused_window: Option<u64> = None;
    for slot in &plan.slots {
        let Some(upstream) = upstreams.get(slot.deployment) else {
            continue;
        };
        let deployment = &upstream.deployment;
        if let (Some(refused), Some(window)) = (refused_window, deployment.context_window)
            && window <= refused
        {
            continue;
        }
        if Instant::now() >= input.deadline {
            return Finished::Exhausted {
                attempts,
                deadline_hit: true,
            };
        }
        let key = &deployment.keys[slot.key];
        let started = Instant::now();
        let outcome = upstream
            .call(Call {
                endpoint: input.endpoint,
                key,
                body: (input.body_for)(deployment),
                stream: input.stream,
                request_id: input.request_id,
                deadline: input.deadline,
            })
            .await;
        let class = classify(&outcome);
        let mut record = AttemptRecord {
            deployment: deployment.name.clone(),
            key_alias: key.alias.clone(),
            class,
            status: None,
            elapsed: started.elapsed(),
            detail: String::new(),
        };
        match outcome {
            Outcome::Reply(reply) => {
                record.status = Some(reply.status.as_u16());
                attempts.push(record);
                return Finished::Served {
                    reply,
                    deployment: Arc::clone(deployment),
                    attempts,
                };
            }
            Outcome::Status {
                status,
                headers,
                body,
            } => {
                record.status = Some(status.as_u16());
                record.detail = summarize(&body);
                attempts.push(record);
                if !class.is_retryable() {
                    return Finished::Rejected {
                        status,
                        headers,
                        body,
                        attempts,
                    };
                }
            }
            Outcome::StreamError { data } => {
                record.detail = format!("error event in stream: {}", truncate(&data, 200));
                attempts.push(record);
            }
            Outcome::Transport(t) => {
                record.detail = format!("{t:?}");
                attempts.push(record);
            }
        }
        if class == FailureClass::ContextTooLong {
            refused_window = Some(
                refused_window
                    .unwrap_or(0)
                    .max(deployment.context_window.unwrap_or(0)),
            );
        }
    }
    let deadline_hit = Instant::now() >= input.deadline;
    Finished::Exhausted {
        attempts,
        deadline_hit,
    }
}

/// A short, secret-free summary of an upstream error body: its `error.message` when it has one.
fn summarize(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Envelope {
        error: Option<Inner>,
    }
    #[derive(serde::Deserialize)]
    struct Inner {
        message: Option<String>,
    }
    match serde_json::from_slice::<Envelope>(body) {
        Ok(Envelope {
            error: Some(Inner { message: Some(m) }),
        }) => truncate(&m, 200),
        _ => truncate(&String::from_utf8_lossy(body), 200),
    }
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}
