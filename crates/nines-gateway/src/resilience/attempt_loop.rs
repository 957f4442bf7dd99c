//! The attempt loop: walk a plan's key slots until one answers.
//!
//! Policy:
//! - First pass: every key slot in plan order, skipping slots whose breaker is open. A retryable
//!   failure moves to the next slot at once (failover before the commit point is free).
//! - Degrade last (`degrade = "after-retries"`, the default): the plan's tiers (the requested
//!   model's own slots, then each fallback model's) get their first passes in turn, and before a
//!   tier gives way to the next, its transient failures are retried once on the same slot: a
//!   5xx, reset or overload after one jittered backoff, a 429 whose `Retry-After` fits
//!   `max_retry_after_wait` and the deadline after exactly that wait. A 429 without a hint or with
//!   a longer one, a timeout, a broken key or an open breaker moves on. A fallback model is a
//!   change of quality; a second deployment of the same model is not, so between those failover
//!   stays immediate. `degrade = "immediately"` makes the whole plan one tier.
//! - A non-retryable answer (client error, content filter) is returned as it is: every other
//!   deployment would refuse it the same way. Context-too-long only moves on to deployments with a
//!   larger window. A broken key (401/402/403) or exhausted quota is never retried on that key.
//! - Only when every slot was tried is a slot retried, at most `max_attempts_per_deployment`
//!   times per deployment, after full-jitter backoff and never sooner than its Retry-After (as
//!   honoured: at most `max_retry_after`); a retry whose wait does not fit in the remaining
//!   deadline is not made.
//! - Every attempt after the first takes one token from the gateway-wide retry budget; with the
//!   budget spent, the request fails fast (503) rather than adding load to a struggling upstream.
//! - When every slot's breaker is open, the request probes one early if a breaker allows it (at
//!   most one request per open slot per `early_probe_interval`: breakers can be wrong, and a
//!   request that fails is no worse than a 503; while breakers are shared between replicas the
//!   probe also needs the slot's early-probe lease, and the request waits for the lease's answer);
//!   else, while another request's probe of one of its slots is in flight, it waits for that
//!   probe's outcome; else it waits for the earliest reopening if that fits the deadline, else
//!   fails fast (503 + Retry-After) without any upstream call.
//! - Hedging (opt-in per model): if the first attempt has no first byte after the hedge delay, a
//!   second attempt races it on the next deployment; the first success wins, the other is
//!   cancelled (dropping its future closes its connection).
//!
//! Each call is one [`attempt`](super::attempt::attempt); this loop only decides which slot goes
//! next and when to stop.

use super::attempt::{Attempt, AttemptRecord, OpenSlot, Target, attempt};
use super::breaker::{Breaker, Permit, Phase, Rejected};
use super::class::FailureClass;
use super::health::{Health, InFlight, KeySlot};
use super::retry::backoff;
use crate::config::Deployment;
use crate::config::resilience::{Backoff, Hedge, LearnedFirstByte};
use crate::providers::{Call, Outcome, Reply, Upstream};
use crate::tracecontext::{AttemptSpan, Propagation};
use crate::translate::RequestView;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

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
        /// The plan tier that served: 0 the requested model, k its k-th fallback model.
        tier: usize,
        attempts: Vec<AttemptRecord>,
        /// A stream's key slot, still open: the stream's ending is its outcome.
        open: Option<OpenSlot>,
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
    pub fn attempts(&self) -> &[AttemptRecord] {
        match self {
            Finished::Served { attempts, .. }
            | Finished::Rejected { attempts, .. }
            | Finished::Exhausted { attempts, .. }
            | Finished::Unavailable { attempts, .. } => attempts,
        }
    }

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
    pub request: &'a RequestView,
    pub stream: bool,
    pub request_id: &'a str,
    pub deadline: Instant,
    pub hedge: Hedge,
    pub backoff: Backoff,
    pub max_attempts_per_deployment: u32,
    /// `resilience.max_retry_after`.
    pub max_retry_after: Duration,
    /// The model's own slots (and each fallback model's) are retried for transient failures
    /// before the next model is tried (`degrade = "after-retries"`).
    pub degrade_after_retries: bool,
    /// `resilience.max_retry_after_wait`: the longest Retry-After waited for before degrading.
    pub max_retry_after_wait: Duration,
    /// `resilience.learned_first_byte`.
    pub learned_first_byte: LearnedFirstByte,
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
    /// How its last attempt failed, and the Retry-After it carried (the provider's own value).
    last_class: Option<FailureClass>,
    last_hint: Option<Duration>,
    /// The span of the attempt in progress on this slot (a cancelled hedge's record needs it).
    span: Option<AttemptSpan>,
}

struct Loop<'a> {
    slots_planned: &'a [KeySlot],
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

/// Walks the plan's key slots. Also returns the time the loop spent waiting rather than
/// working: awaiting upstream attempts (each up to its commit point; a hedged race counted once,
/// as a whole) and deliberate waits (backoff, Retry-After, a breaker's reopening, the capacity
/// queue). The rest of the request's time is nines' own overhead.
pub async fn run_plan(
    slots: &[KeySlot],
    upstreams: &[Arc<Upstream>],
    health: &Health,
    input: AttemptInput<'_>,
) -> (Finished, Duration) {
    health.budget.deposit();
    health.count_request_for_hedging();
    let mut l = Loop {
        slots_planned: slots,
        upstreams,
        health,
        slots: vec![SlotState::default(); slots.len()],
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

impl<'a> Loop<'a> {
    async fn run(&mut self) -> Finished {
        let mut waited_for_reopen = false;
        let mut probe_waits = 0;
        let queue_until = (Instant::now() + self.input.queue_timeout).min(self.input.deadline);
        let tiers = self.tiers();
        loop {
            let mut refused = Refused::default();
            for (t, range) in tiers.iter().enumerate() {
                let first = self.first_pass(range.clone(), &mut refused).await;
                if let Some(finished) = first {
                    return finished;
                }
                if t + 1 < tiers.len()
                    && let Some(finished) = self.transient_retries(range.clone()).await
                {
                    return finished;
                }
            }
            if !self.attempts.is_empty() {
                break;
            }
            let Refused {
                earliest_reopen,
                at_capacity,
                mut probing,
            } = refused;
            // Every candidate at capacity: wait in a bounded queue for a slot to free, up to the
            // queue timeout, then 429 (never an unbounded queue).
            if at_capacity && earliest_reopen.is_none() && probing.is_empty() {
                let since = Instant::now();
                let queued = self.queue_for_capacity(queue_until).await;
                self.waited += since.elapsed();
                match queued {
                    Some(finished) => return finished,
                    None => continue,
                }
            }
            // Nothing could be tried: every slot is open (or filtered). One may be probed early
            // (or, while breakers are shared, its early-probe lease is asked for: then `probing`
            // gets the slot, and this request waits for the answer below).
            if let Some((slot, permit, in_flight)) = self.early_probe_candidate(&mut probing) {
                self.entered = Some(in_flight);
                if let Some(finished) = self.attempt(slot, permit).await {
                    return finished;
                }
                continue;
            }
            // Another request is probing one of our slots, or an early-probe lease for one is
            // being asked for: its outcome (or the lease's answer) decides, so wait for it (a few
            // times at most: each wait ends with an outcome, an answer or the deadline).
            if !probing.is_empty() && probe_waits < MAX_PROBE_WAITS {
                probe_waits += 1;
                let since = Instant::now();
                self.await_probe(&probing, earliest_reopen).await;
                self.waited += since.elapsed();
                continue;
            }
            // Wait for the earliest reopening once, if it fits in the deadline.
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

    /// The plan's tiers as ranges of slots (the router keeps each tier's slots together): one
    /// range for the whole plan unless the model degrades only after retries.
    fn tiers(&self) -> Vec<Range<usize>> {
        let n = self.slots_planned.len();
        if !self.input.degrade_after_retries {
            return std::iter::once(0..n).collect();
        }
        let mut tiers = Vec::with_capacity(2);
        let mut start = 0;
        for i in 1..=n {
            if i == n || self.slots_planned[i].tier != self.slots_planned[start].tier {
                tiers.push(start..i);
                start = i;
            }
        }
        tiers
    }

    /// Every untried slot of `range` in plan order; `Some` ends the request.
    async fn first_pass(&mut self, range: Range<usize>, refused: &mut Refused) -> Option<Finished> {
        for i in range {
            if self.slots[i].tries > 0 || self.slots[i].dead || !self.fits_window(i) {
                continue;
            }
            // Capacity first, atomically: a slot is only taken if the deployment is below
            // its max_concurrency, so concurrent requests can never push it past.
            let Some(in_flight) =
                self.health.deployments[self.slots_planned[i].deployment].try_enter()
            else {
                refused.at_capacity = true;
                continue;
            };
            let permit = match self.admit(i) {
                Ok(p) => p,
                Err(rejected) => {
                    refused.earliest_reopen = min_instant(refused.earliest_reopen, rejected.until);
                    if rejected.probing {
                        refused.probing.push(i);
                    }
                    continue;
                }
            };
            self.entered = Some(in_flight);
            if let Some(finished) = self.spend_budget() {
                return Some(finished);
            }
            let done = if self.attempts.is_empty() && self.input.hedge.enabled {
                self.hedged_first(i, permit).await
            } else {
                self.attempt(i, permit).await
            };
            if done.is_some() {
                return done;
            }
        }
        None
    }

    /// Before a tier gives way to the next model: one more try of each of its slots whose only
    /// attempt failed transiently, after a jittered backoff (5xx, reset, overload) or the
    /// provider's own short Retry-After (429). `Some` ends the request.
    async fn transient_retries(&mut self, range: Range<usize>) -> Option<Finished> {
        for i in range {
            let state = &self.slots[i];
            if state.dead || state.tries != 1 || !self.fits_window(i) {
                continue;
            }
            let now = Instant::now();
            let at = match (state.last_class, state.last_hint) {
                (
                    Some(FailureClass::Server | FailureClass::Overloaded | FailureClass::Connect),
                    _,
                ) => now + backoff(&self.input.backoff, 0, &mut rand::rng()),
                (Some(FailureClass::RateLimited), Some(hint))
                    if hint <= self.input.max_retry_after_wait =>
                {
                    state.not_before.unwrap_or(now).max(now)
                }
                _ => continue,
            };
            let d = self.slots_planned[i].deployment;
            if at >= self.input.deadline
                || self.per_deployment[d] >= self.input.max_attempts_per_deployment
            {
                continue;
            }
            let since = Instant::now();
            tokio::time::sleep_until(at).await;
            self.waited += since.elapsed();
            let Some(in_flight) = self.health.deployments[d].try_enter() else {
                continue;
            };
            let Ok(permit) = self.admit(i) else {
                // Its breaker opened meanwhile: move on.
                continue;
            };
            self.entered = Some(in_flight);
            if let Some(finished) = self.spend_budget() {
                return Some(finished);
            }
            if let Some(finished) = self.attempt(i, permit).await {
                return Some(finished);
            }
        }
        None
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
            .slots_planned
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
            let candidates: Vec<usize> = (0..self.slots_planned.len())
                .filter(|&i| {
                    let d = self.slots_planned[i].deployment;
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
            // The slot that can go soonest, honouring each slot's Retry-After and open breaker
            // (sleeping a backoff only to find the slot still open would waste the deadline).
            let Some((slot, at)) = candidates
                .iter()
                .map(|&i| {
                    let at = (now + wait)
                        .max(self.slots[i].not_before.unwrap_or(now))
                        .max(self.reopens_at(i).unwrap_or(now));
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
                self.health.deployments[self.slots_planned[slot].deployment].try_enter()
            else {
                // At capacity now: leave it for this request rather than queue mid-retry.
                self.slots[slot].dead = true;
                continue;
            };
            let Ok(permit) = self.admit(slot) else {
                // Its breaker opened meanwhile: leave it for this request.
                self.slots[slot].dead = true;
                continue;
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
        let d = &self.upstreams[self.slots_planned[slot].deployment].deployment;
        match (self.refused_window, d.context_window) {
            (Some(refused), Some(window)) => window > refused,
            (Some(_), None) => true,
            (None, _) => true,
        }
    }

    /// The breaker of `slot`'s key slot.
    fn breaker_of(&self, slot: usize) -> Option<&'a Arc<Breaker>> {
        let s = &self.slots_planned[slot];
        self.health.breaker(s.deployment, s.key)
    }

    fn admit(&self, slot: usize) -> Result<Permit, Rejected> {
        match self.breaker_of(slot) {
            Some(b) => b.admit(),
            None => Err(Rejected {
                until: None,
                probing: false,
            }),
        }
    }

    /// When `slot`'s open breaker admits again (`None`: it is not open).
    fn reopens_at(&self, slot: usize) -> Option<Instant> {
        match self.breaker_of(slot)?.phase() {
            Phase::Open { until } => Some(until),
            Phase::Closed | Phase::HalfOpen => None,
        }
    }

    /// The first untried slot, in plan order, whose open breaker lets one request probe it early.
    /// Slots passed over because their early-probe lease is being asked for (breakers shared)
    /// join `awaiting`: the lease's answer is worth waiting for.
    fn early_probe_candidate(
        &self,
        awaiting: &mut Vec<usize>,
    ) -> Option<(usize, Permit, InFlight)> {
        let candidates = (0..self.slots_planned.len())
            .filter(|&i| self.slots[i].tries == 0 && !self.slots[i].dead && self.fits_window(i));
        for i in candidates {
            let Some(breaker) = self.breaker_of(i) else {
                continue;
            };
            let d = self.slots_planned[i].deployment;
            let Some(in_flight) = self.health.deployments[d].try_enter() else {
                continue;
            };
            if let Some(permit) = breaker.admit_early() {
                return Some((i, permit, in_flight));
            }
            if breaker.awaits_early_lease() && !awaiting.contains(&i) {
                awaiting.push(i);
            }
        }
        None
    }

    /// Waits until a probe of one of `slots` ends (or their phase changes, or their early-probe
    /// lease is answered), the earliest reopening, or the deadline, whichever comes first.
    async fn await_probe(&self, slots: &[usize], reopen: Option<Instant>) {
        let breakers: Vec<_> = slots.iter().filter_map(|&i| self.breaker_of(i)).collect();
        let mut changes: Vec<_> = breakers.iter().map(|b| Box::pin(b.changed())).collect();
        for change in &mut changes {
            change.as_mut().enable();
        }
        // Registered first, then checked: a probe that ended in between is not missed. (With
        // nothing to wait on, `select_all` would panic.)
        if breakers.is_empty() || breakers.iter().any(|b| !b.probing()) {
            return;
        }
        let until = reopen.map_or(self.input.deadline, |r| r.min(self.input.deadline));
        tokio::select! {
            _ = futures_util::future::select_all(changes) => {}
            _ = tokio::time::sleep_until(until) => {}
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

    /// One attempt on `slot`, not yet folded into the loop: the call, with the answer checked
    /// the way the client needs it (a translated body must decode) before it is classified.
    fn start(
        &mut self,
        slot: usize,
        permit: Permit,
    ) -> impl Future<Output = (usize, Attempt)> + use<'a> {
        let s = self.slots_planned[slot];
        let upstream: &'a Upstream = &self.upstreams[s.deployment];
        self.slots[slot].tries += 1;
        self.per_deployment[s.deployment] += 1;
        // The caller acquired capacity for this slot (`entered`); a hedge acquires its own.
        let in_flight = self
            .entered
            .take()
            .unwrap_or_else(|| self.health.deployments[s.deployment].enter());
        let health: &'a Health = self.health;
        let request: &'a RequestView = self.input.request;
        let (stream, deadline) = (self.input.stream, self.input.deadline);
        let request_id = self.input.request_id.to_owned();
        let (span, traceparent) = self.input.trace.attempt(&upstream.deployment);
        self.slots[slot].span = span.clone();
        let configured = upstream.deployment.timeouts.first_byte;
        let learned = health.deployments[s.deployment].first_byte.deadline(
            stream,
            configured,
            &self.input.learned_first_byte,
        );
        let learned = (learned < configured).then_some(learned);
        let target = Target {
            upstream,
            key: s.key,
            health: Some(&health.deployments[s.deployment]),
            permit: Some(permit),
            in_flight: Some(in_flight),
            span,
            stream,
            max_retry_after: self.input.max_retry_after,
            learned_deadline: learned,
        };
        async move {
            let deployment = &upstream.deployment;
            let call = async {
                let outcome = upstream
                    .call(Call {
                        endpoint: request.endpoint_for(deployment),
                        key: &deployment.keys[s.key],
                        body: request.body_for(deployment),
                        stream,
                        request_id: &request_id,
                        deadline,
                        traceparent: traceparent.as_ref(),
                        first_byte: learned,
                    })
                    .await;
                request.accept(deployment, outcome)
            };
            (slot, attempt(target, call).await)
        }
    }

    /// One attempt; `Some` ends the request.
    async fn attempt(&mut self, slot: usize, permit: Permit) -> Option<Finished> {
        let call = self.start(slot, permit);
        let since = Instant::now();
        let (slot, made) = call.await;
        self.waited += since.elapsed();
        self.fold(slot, made)
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
            (slot, made) = &mut a => return self.fold(slot, made),
            _ = tokio::time::sleep(delay) => {}
        }
        let Some((second, permit_b, in_flight_b)) = self.hedge_candidate(first) else {
            let (slot, made) = a.await;
            return self.fold(slot, made);
        };
        if !self.health.try_hedge(self.input.hedge.max_percent)
            || !self.health.budget.try_withdraw()
        {
            drop((permit_b, in_flight_b));
            let (slot, made) = a.await;
            return self.fold(slot, made);
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
        // Whichever finishes first is folded in; a success ends the race and drops the other.
        let (slot, made) = tokio::select! {
            done = &mut a => done,
            done = &mut b => done,
        };
        let a_finished_first = slot == first;
        if let Some(mut finished) = self.fold(slot, made) {
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
        let (slot, made) = if a_finished_first { b.await } else { a.await };
        let mut done = self.fold(slot, made);
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
        let s = self.slots_planned[slot];
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
        let d = self.slots_planned[slot].deployment;
        self.input.hedge.delay.or_else(|| {
            self.health.deployments[d]
                .first_byte
                .hedge_delay(self.input.stream)
        })
    }

    /// The next slot on another deployment whose breaker admits (of the same model, unless the
    /// model degrades immediately).
    fn hedge_candidate(&self, first: usize) -> Option<(usize, Permit, InFlight)> {
        let KeySlot {
            deployment: first_deployment,
            tier,
            ..
        } = self.slots_planned[first];
        (first + 1..self.slots_planned.len())
            .filter(|&i| {
                self.slots_planned[i].deployment != first_deployment
                    && (!self.input.degrade_after_retries || self.slots_planned[i].tier == tier)
                    && self.slots[i].tries == 0
                    && self.fits_window(i)
            })
            .find_map(|i| {
                let in_flight =
                    self.health.deployments[self.slots_planned[i].deployment].try_enter()?;
                let permit = self.admit(i).ok()?;
                Some((i, permit, in_flight))
            })
    }

    /// Folds one made attempt into the loop: keeps its record and what it means for this
    /// request's slots. `Some` ends the request.
    fn fold(&mut self, slot: usize, made: Attempt) -> Option<Finished> {
        let Attempt {
            outcome,
            record,
            wait,
            open,
        } = made;
        self.slots[slot].span = None;
        let class = record.class;
        self.slots[slot].last_class = Some(class);
        self.slots[slot].last_hint = record.retry_after;
        let deployment = &self.upstreams[self.slots_planned[slot].deployment].deployment;
        self.attempts.push(record);
        let rejected = match outcome {
            Outcome::Reply(reply) => {
                return Some(Finished::Served {
                    reply,
                    deployment: Arc::clone(deployment),
                    tier: self.slots_planned[slot].tier,
                    attempts: std::mem::take(&mut self.attempts),
                    open,
                });
            }
            Outcome::Status {
                status,
                headers,
                body,
            } if !class.is_retryable() => Some((status, headers, body)),
            _ => None,
        };
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
        if let Some(wait) = wait {
            state.not_before = Some(Instant::now() + wait);
        }
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

/// Why the first passes tried nothing on some slots.
#[derive(Default)]
struct Refused {
    /// The earliest instant an open slot admits again.
    earliest_reopen: Option<Instant>,
    /// Some deployment was at its concurrency limit.
    at_capacity: bool,
    /// Slots refused because a probe of them is in flight.
    probing: Vec<usize>,
}

/// How many times one request waits for other requests' probes of its slots (or for an
/// early-probe lease's answer).
const MAX_PROBE_WAITS: u32 = 3;

fn min_instant(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
