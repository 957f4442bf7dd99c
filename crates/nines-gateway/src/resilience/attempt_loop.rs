//! The attempt loop: walk the plan's key slots until one answers.
//!
//! Policy:
//! - First pass: every key slot in plan order, skipping slots whose breaker is open. A retryable
//!   failure moves to the next slot at once (failover before the commit point is free).
//! - A non-retryable answer (client error, content filter) is returned as it is: every other
//!   deployment would refuse it the same way. Context-too-long only moves on to deployments with a
//!   larger window. A broken key (401/402/403) or exhausted quota is never retried on that key.
//! - Only when every slot was tried is a slot retried, at most `max_attempts_per_deployment`
//!   times per deployment, after full-jitter backoff and never sooner than its Retry-After; a retry
//!   whose wait does not fit in the remaining deadline is not made.
//! - Every attempt after the first takes one token from the gateway-wide retry budget; with the
//!   budget spent, the request fails fast (503) rather than adding load to a struggling upstream.
//! - When every slot's breaker is open, the request waits for the earliest reopening if that fits
//!   the deadline, else fails fast (503 + Retry-After) without any upstream call.
//! - Hedging (opt-in per model): if the first attempt has no first byte after the hedge delay, a
//!   second attempt races it on the next deployment; the first success wins, the other is
//!   cancelled (dropping its future closes its connection).

use super::breaker::{Permit, Signal};
use super::class::{FailureClass, classify};
use super::health::{Health, InFlight};
use super::retry::{backoff, retry_after};
use crate::config::Deployment;
use crate::config::resilience::{Backoff, Hedge};
use crate::providers::{Call, Endpoint, Outcome, Reply, Upstream};
use crate::router::Plan;
use crate::telemetry::trace::{AttemptSpan, Propagation};
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
    /// The wait the provider asked for, if any.
    pub retry_after: Option<Duration>,
    /// Its trace span (tracing on).
    pub span: Option<AttemptSpan>,
}

/// Why nothing could be tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// Every key slot's breaker is open past the deadline.
    AllOpen,
    /// Every candidate is at its max_concurrency past the queue timeout.
    AtCapacity,
    /// The gateway-wide retry budget is spent.
    BudgetSpent,
}

/// How the loop ended.
pub enum Finished {
    Served {
        reply: Reply,
        deployment: Arc<Deployment>,
        attempts: Vec<AttemptRecord>,
        /// For streams, the serving slot's breaker permit: the stream's ending is its outcome.
        permit: Option<Permit>,
        in_flight: InFlight,
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
    /// Nothing more could be tried now; `retry_after` says when it may be worth it.
    Unavailable {
        attempts: Vec<AttemptRecord>,
        why: Unavailable,
        retry_after: Duration,
    },
}

impl Finished {
    fn attempts_mut(&mut self) -> &mut Vec<AttemptRecord> {
        match self {
            Finished::Served { attempts, .. }
            | Finished::Rejected { attempts, .. }
            | Finished::Exhausted { attempts, .. }
            | Finished::Unavailable { attempts, .. } => attempts,
        }
    }
}

/// What the loop needs of the request and its route.
pub struct AttemptInput<'a> {
    pub endpoint: Endpoint,
    pub stream: bool,
    pub request_id: &'a str,
    pub deadline: Instant,
    /// The request body in the given deployment's terms (its upstream model spliced in).
    pub body_for: &'a (dyn Fn(&Deployment) -> Bytes + Send + Sync),
    pub hedge: Hedge,
    pub backoff: Backoff,
    pub max_attempts_per_deployment: u32,
    /// How long a request may wait for capacity when every candidate is full.
    pub queue_timeout: Duration,
    /// How many requests may wait for capacity at once (beyond: 429 at once).
    pub max_queue: usize,
    /// The `traceparent` each attempt carries, and its span.
    pub trace: &'a Propagation,
}

/// Per-slot bookkeeping within one request.
#[derive(Clone, Default)]
struct SlotState {
    tries: u32,
    /// Never try this slot again for this request.
    dead: bool,
    /// The provider asked us not to come back before this.
    not_before: Option<Instant>,
    /// The span of the attempt in progress on this slot.
    span: Option<AttemptSpan>,
}

struct Loop<'a> {
    plan: &'a Plan,
    upstreams: &'a [Arc<Upstream>],
    health: &'a Health,
    input: AttemptInput<'a>,
    slots: Vec<SlotState>,
    per_deployment: Vec<u32>,
    attempts: Vec<AttemptRecord>,
    /// Windows that refused the prompt as too long: only larger ones are worth trying.
    refused_window: Option<u64>,
    /// Capacity taken for the next attempt.
    entered: Option<InFlight>,
    /// Time spent awaiting upstream attempts and deliberate waits (see [`run_plan`]).
    waited: Duration,
}

/// The result of one attempt, not yet folded into the loop's state.
struct Attempted {
    slot: usize,
    outcome: Outcome,
    permit: Permit,
    in_flight: InFlight,
    started: Instant,
}

/// Walks the plan. Also returns the time the loop spent waiting rather than working: awaiting
/// upstream attempts (each up to its commit point; a hedged race counted once, as a whole) and
/// deliberate waits (backoff, Retry-After, a breaker's reopening, the capacity queue). The rest
/// of the request's time is nines' own overhead.
pub async fn run_plan(
    plan: &Plan,
    upstreams: &[Arc<Upstream>],
    health: &Health,
    input: AttemptInput<'_>,
) -> (Finished, Duration) {
    health.budget.deposit();
    health.count_request_for_hedging();
    let mut l = Loop {
        plan,
        upstreams,
        health,
        slots: vec![SlotState::default(); plan.slots.len()],
        per_deployment: vec![0; upstreams.len()],
        attempts: Vec::with_capacity(2),
        refused_window: None,
        entered: None,
        input,
        waited: Duration::ZERO,
    };
    let finished = l.run().await;
    (finished, l.waited)
}

impl Loop<'_> {
    async fn run(&mut self) -> Finished {
        let mut waited_for_reopen = false;
        let queue_until = (Instant::now() + self.input.queue_timeout).min(self.input.deadline);
        loop {
            // First pass: every untried slot in plan order.
            let mut earliest_reopen: Option<Instant> = None;
            let mut at_capacity = false;
            let mut i = 0;
            while i < self.plan.slots.len() {
                if self.slots[i].tries > 0 || self.slots[i].dead || !self.fits_window(i) {
                    i += 1;
                    continue;
                }
                // Capacity first, atomically: a slot is only taken if the deployment is below
                // its max_concurrency, so concurrent requests can never push it past.
                let Some(in_flight) =
                    self.health.deployments[self.plan.slots[i].deployment].try_enter()
                else {
                    at_capacity = true;
                    i += 1;
                    continue;
                };
                let permit = match self.admit(i) {
                    Ok(p) => p,
                    Err(until) => {
                        earliest_reopen = min_instant(earliest_reopen, until);
                        i += 1;
                        continue;
                    }
                };
                self.entered = Some(in_flight);
                if let Some(finished) = self.spend_budget() {
                    return finished;
                }
                let done = if self.attempts.is_empty() && self.input.hedge.enabled {
                    self.hedged_first(i, permit).await
                } else {
                    self.attempt(i, permit).await
                };
                if let Some(finished) = done {
                    return finished;
                }
                i += 1;
            }
            if !self.attempts.is_empty() {
                break;
            }
            // Every candidate at capacity: wait in a bounded queue for a slot to free, up to the
            // queue timeout, then 429 (never an unbounded queue).
            if at_capacity && earliest_reopen.is_none() {
                let since = Instant::now();
                let queued = self.queue_for_capacity(queue_until).await;
                self.waited += since.elapsed();
                match queued {
                    Some(finished) => return finished,
                    None => continue,
                }
            }
            // Nothing could be tried: every slot is open (or filtered). Wait for the earliest
            // reopening once, if it fits in the deadline.
            let Some(reopen) = earliest_reopen else { break };
            if waited_for_reopen || reopen >= self.input.deadline {
                return Finished::Unavailable {
                    attempts: std::mem::take(&mut self.attempts),
                    why: Unavailable::AllOpen,
                    retry_after: reopen.saturating_duration_since(Instant::now()),
                };
            }
            let since = Instant::now();
            tokio::time::sleep_until(reopen).await;
            self.waited += since.elapsed();
            waited_for_reopen = true;
        }
        self.retry_pass().await
    }

    /// Waits until some capacity frees (`None`: try again) or the queue time is up (`Some`: 429).
    async fn queue_for_capacity(&mut self, until: Instant) -> Option<Finished> {
        let full = || Finished::Unavailable {
            attempts: Vec::new(),
            why: Unavailable::AtCapacity,
            retry_after: Duration::from_secs(1),
        };
        if Instant::now() >= until {
            return Some(full());
        }
        let Some(_ticket) = self.health.join_queue(self.input.max_queue) else {
            return Some(full());
        };
        let freed = self.health.deployments.first().map(|d| d.freed())?;
        let notified = freed.notified();
        // Re-check after registering, so a slot freed in between is not missed.
        let any_free = self
            .plan
            .slots
            .iter()
            .any(|s| !self.health.deployments[s.deployment].at_capacity());
        if any_free {
            return None;
        }
        tokio::select! {
            _ = notified => None,
            _ = tokio::time::sleep_until(until) => Some(full()),
        }
    }

    /// Retries of slots already tried, with backoff, while the deadline and limits allow.
    async fn retry_pass(&mut self) -> Finished {
        let mut round = 0u32;
        loop {
            let candidates: Vec<usize> = (0..self.plan.slots.len())
                .filter(|&i| {
                    let d = self.plan.slots[i].deployment;
                    !self.slots[i].dead
                        && self.fits_window(i)
                        && self.per_deployment[d] < self.input.max_attempts_per_deployment
                })
                .collect();
            if candidates.is_empty() {
                return self.exhausted();
            }
            let now = Instant::now();
            // A fresh thread-local handle each time: it must not live across an await (not Send).
            let wait = backoff(&self.input.backoff, round, &mut rand::rng());
            // The slot that can go soonest, honouring each slot's Retry-After.
            let Some((slot, at)) = candidates
                .iter()
                .map(|&i| {
                    let at = (now + wait).max(self.slots[i].not_before.unwrap_or(now));
                    (i, at)
                })
                .filter(|(_, at)| *at < self.input.deadline)
                .min_by_key(|(i, at)| (*at, *i))
            else {
                return self.exhausted();
            };
            let since = Instant::now();
            tokio::time::sleep_until(at).await;
            self.waited += since.elapsed();
            let Some(in_flight) =
                self.health.deployments[self.plan.slots[slot].deployment].try_enter()
            else {
                // At capacity now: leave it for this request rather than queue mid-retry.
                self.slots[slot].dead = true;
                continue;
            };
            let permit = match self.admit(slot) {
                Ok(p) => p,
                Err(_) => {
                    // Its breaker opened meanwhile: leave it for this request.
                    self.slots[slot].dead = true;
                    continue;
                }
            };
            self.entered = Some(in_flight);
            if let Some(finished) = self.spend_budget() {
                return finished;
            }
            if let Some(finished) = self.attempt(slot, permit).await {
                return finished;
            }
            round += 1;
        }
    }

    fn exhausted(&mut self) -> Finished {
        let deadline_hit = Instant::now() >= self.input.deadline;
        Finished::Exhausted {
            attempts: std::mem::take(&mut self.attempts),
            deadline_hit,
        }
    }

    fn fits_window(&self, slot: usize) -> bool {
        let d = &self.upstreams[self.plan.slots[slot].deployment].deployment;
        match (self.refused_window, d.context_window) {
            (Some(refused), Some(window)) => window > refused,
            (Some(_), None) => true,
            (None, _) => true,
        }
    }

    fn admit(&self, slot: usize) -> Result<Permit, Option<Instant>> {
        let s = &self.plan.slots[slot];
        match self.health.breaker(s.deployment, s.key) {
            Some(b) => b.admit().map_err(|r| r.until),
            None => Err(None),
        }
    }

    /// Every attempt after the first costs one budget token; `Some` ends the request.
    fn spend_budget(&mut self) -> Option<Finished> {
        if self.attempts.is_empty() || self.health.budget.try_withdraw() {
            return None;
        }
        Some(Finished::Unavailable {
            attempts: std::mem::take(&mut self.attempts),
            why: Unavailable::BudgetSpent,
            retry_after: self.health.budget.retry_after(),
        })
    }

    fn start(
        &mut self,
        slot: usize,
        permit: Permit,
    ) -> impl std::future::Future<Output = Attempted> + use<> {
        let s = &self.plan.slots[slot];
        let upstream = Arc::clone(&self.upstreams[s.deployment]);
        self.slots[slot].tries += 1;
        self.per_deployment[s.deployment] += 1;
        // The caller acquired capacity for this slot (`entered`); a hedge acquires its own.
        let in_flight = self
            .entered
            .take()
            .unwrap_or_else(|| self.health.deployments[s.deployment].enter());
        let key = s.key;
        let body = (self.input.body_for)(&upstream.deployment);
        let (endpoint, stream, deadline) =
            (self.input.endpoint, self.input.stream, self.input.deadline);
        let request_id = self.input.request_id.to_owned();
        let (span, traceparent) = self.input.trace.attempt(&upstream.deployment);
        self.slots[slot].span = span;
        async move {
            let started = Instant::now();
            let outcome = upstream
                .call(Call {
                    endpoint,
                    key: &upstream.deployment.keys[key],
                    body,
                    stream,
                    request_id: &request_id,
                    deadline,
                    traceparent: traceparent.as_ref(),
                })
                .await;
            Attempted {
                slot,
                outcome,
                permit,
                in_flight,
                started,
            }
        }
    }

    /// One attempt; `Some` ends the request.
    async fn attempt(&mut self, slot: usize, permit: Permit) -> Option<Finished> {
        let call = self.start(slot, permit);
        let since = Instant::now();
        let attempted = call.await;
        self.waited += since.elapsed();
        self.settle(attempted)
    }

    /// The first attempt, with a hedge racing it if it is slow to answer.
    async fn hedged_first(&mut self, first: usize, permit: Permit) -> Option<Finished> {
        let Some(delay) = self.hedge_delay(first) else {
            return self.attempt(first, permit).await;
        };
        let since = Instant::now();
        let done = self.race(first, permit, delay).await;
        self.waited += since.elapsed();
        done
    }

    /// The first attempt and, once `delay` passed without an answer, a hedge on another
    /// deployment.
    async fn race(&mut self, first: usize, permit: Permit, delay: Duration) -> Option<Finished> {
        let started_first = Instant::now();
        let a = self.start(first, permit);
        tokio::pin!(a);
        tokio::select! {
            done = &mut a => return self.settle(done),
            _ = tokio::time::sleep(delay) => {}
        }
        let Some((second, permit_b, in_flight_b)) = self.hedge_candidate(first) else {
            let done = a.await;
            return self.settle(done);
        };
        if !self.health.try_hedge(self.input.hedge.max_percent)
            || !self.health.budget.try_withdraw()
        {
            drop((permit_b, in_flight_b));
            let done = a.await;
            return self.settle(done);
        }
        tracing::debug!(
            request_id = self.input.request_id,
            after_ms = delay.as_millis() as u64,
            "hedging"
        );
        let hedge_started = Instant::now();
        self.entered = Some(in_flight_b);
        let b = self.start(second, permit_b);
        tokio::pin!(b);
        // Whichever finishes first is settled; a success ends the race and drops the other.
        let first_done = tokio::select! {
            done = &mut a => done,
            done = &mut b => done,
        };
        let a_finished_first = first_done.slot == first;
        if let Some(mut finished) = self.settle(first_done) {
            // The other attempt is cancelled by dropping it; it still counts as an attempt.
            let (loser, since) = if a_finished_first {
                (second, hedge_started)
            } else {
                (first, started_first)
            };
            let record = self.cancelled_record(loser, since);
            let attempts = finished.attempts_mut();
            // Records stay in start order, so the first one is the first choice (a hedge that
            // won is a fallback).
            let at = if loser == first {
                attempts.len().saturating_sub(1)
            } else {
                attempts.len()
            };
            attempts.insert(at, record);
            return Some(finished);
        }
        let other = if a_finished_first { b.await } else { a.await };
        let mut done = self.settle(other);
        if !a_finished_first {
            let attempts = match &mut done {
                Some(finished) => finished.attempts_mut(),
                None => &mut self.attempts,
            };
            let n = attempts.len();
            if n >= 2 {
                attempts.swap(n - 2, n - 1);
            }
        }
        done
    }

    fn cancelled_record(&mut self, slot: usize, since: Instant) -> AttemptRecord {
        let s = &self.plan.slots[slot];
        let deployment = &self.upstreams[s.deployment].deployment;
        AttemptRecord {
            deployment: deployment.name.clone(),
            key_alias: deployment.keys[s.key].alias.clone(),
            class: FailureClass::Cancelled,
            status: None,
            elapsed: since.elapsed(),
            detail: "cancelled: the hedged twin answered first".into(),
            retry_after: None,
            span: self.slots[slot].span.take(),
        }
    }

    fn hedge_delay(&self, slot: usize) -> Option<Duration> {
        let d = self.plan.slots[slot].deployment;
        self.input
            .hedge
            .delay
            .or_else(|| self.health.deployments[d].ttfb_percentile(95.0))
    }

    /// The next slot on another deployment whose breaker admits.
    fn hedge_candidate(&self, first: usize) -> Option<(usize, Permit, InFlight)> {
        let first_deployment = self.plan.slots[first].deployment;
        (first + 1..self.plan.slots.len())
            .filter(|&i| {
                self.plan.slots[i].deployment != first_deployment
                    && self.slots[i].tries == 0
                    && self.fits_window(i)
            })
            .find_map(|i| {
                let in_flight =
                    self.health.deployments[self.plan.slots[i].deployment].try_enter()?;
                let permit = self.admit(i).ok()?;
                Some((i, permit, in_flight))
            })
    }

    /// Folds one attempt's outcome into the loop: records it, updates breakers and slot state.
    /// `Some` ends the request.
    fn settle(&mut self, a: Attempted) -> Option<Finished> {
        let Attempted {
            slot,
            outcome,
            permit,
            in_flight,
            started,
        } = a;
        let s = &self.plan.slots[slot];
        let upstream = &self.upstreams[s.deployment];
        let deployment = &upstream.deployment;
        let class = classify(&outcome);
        let mut record = AttemptRecord {
            deployment: deployment.name.clone(),
            key_alias: deployment.keys[s.key].alias.clone(),
            class,
            status: None,
            elapsed: started.elapsed(),
            detail: String::new(),
            retry_after: None,
            span: self.slots[slot].span.take(),
        };
        let mut rejected = None;
        match outcome {
            Outcome::Reply(reply) => {
                record.status = Some(reply.status.as_u16());
                self.health.deployments[s.deployment].record_ttfb(reply.ttfb);
                self.health.deployments[s.deployment].observe_latency(reply.ttfb);
                self.health.deployments[s.deployment]
                    .record_headroom(s.key, super::health::headroom(&reply.headers));
                self.attempts.push(record);
                let permit = if self.input.stream {
                    Some(permit) // the stream's ending decides
                } else {
                    permit.record(Signal::Success);
                    None
                };
                return Some(Finished::Served {
                    reply,
                    deployment: Arc::clone(deployment),
                    attempts: std::mem::take(&mut self.attempts),
                    permit,
                    in_flight,
                });
            }
            Outcome::Status {
                status,
                headers,
                body,
            } => {
                record.status = Some(status.as_u16());
                record.detail = summarize(&body);
                record.retry_after = retry_after(&headers);
                if !class.is_retryable() {
                    rejected = Some((status, headers, body));
                }
            }
            Outcome::StreamError { data } => {
                record.detail = format!("error event in stream: {}", truncate(&data, 200));
            }
            Outcome::Transport(t) => {
                record.detail = t.describe();
            }
        }
        drop(in_flight);
        let signal = breaker_signal(class, record.retry_after);
        permit.record(signal);
        let state = &mut self.slots[slot];
        match class {
            FailureClass::UpstreamAuth | FailureClass::QuotaExhausted => state.dead = true,
            FailureClass::ContextTooLong => {
                state.dead = true;
                self.refused_window = Some(
                    self.refused_window
                        .unwrap_or(0)
                        .max(deployment.context_window.unwrap_or(0)),
                );
            }
            _ => {}
        }
        if let Some(wait) = record.retry_after {
            state.not_before = Some(Instant::now() + wait);
        }
        tracing::debug!(
            request_id = self.input.request_id,
            deployment = %record.deployment,
            key_slot = %record.key_alias,
            class = record.class.as_str(),
            status = record.status,
            "attempt failed"
        );
        self.attempts.push(record);
        if let Some((status, headers, body)) = rejected {
            return Some(Finished::Rejected {
                status,
                headers,
                body,
                attempts: std::mem::take(&mut self.attempts),
            });
        }
        if Instant::now() >= self.input.deadline {
            return Some(self.exhausted());
        }
        None
    }
}

/// What an attempt's class means for its key slot's breaker.
pub(crate) fn breaker_signal(class: FailureClass, retry_after: Option<Duration>) -> Signal {
    match class {
        FailureClass::Ok => Signal::Success,
        FailureClass::RateLimited => match retry_after {
            Some(wait) => Signal::OpenUntil(Some(Instant::now() + wait)),
            None => Signal::Failure,
        },
        // The key itself is unusable: take it out for a cooldown.
        FailureClass::UpstreamAuth | FailureClass::QuotaExhausted => Signal::OpenUntil(None),
        FailureClass::Overloaded
        | FailureClass::Server
        | FailureClass::Timeout
        | FailureClass::Connect
        | FailureClass::Malformed => Signal::Failure,
        FailureClass::ContextTooLong
        | FailureClass::ContentFiltered
        | FailureClass::Client
        | FailureClass::Cancelled => Signal::Neutral,
    }
}

fn min_instant(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A short, secret-free summary of an upstream error body: its `error.message` when it has one.
/// Anything that looks like an API key is masked, because some providers echo the key they were
/// given in their 401 messages.
pub(crate) fn summarize(body: &[u8]) -> String {
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
pub(crate) fn mask_keys(text: &str) -> String {
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
