//! Circuit breaker per key slot.
//!
//! What trips it: 5 consecutive retryable failures (fast signal: a provider that went hard down),
//! or a failure share over 50% within a 30 s window once at least 10 requests were seen (slow
//! signal: a provider that fails often but not always). A 429 carrying `Retry-After`, and a broken
//! key (401/402/403), open the slot until that time / for a cooldown directly, because the provider
//! told us exactly when it will take requests again.
//!
//! While open, the slot is skipped. An open period the provider set (Retry-After) simply ends:
//! every request waiting for it may go, since the provider said when it takes requests again. After the cooldown (30 s, doubling on each trip in a row, capped
//! at 5 min) it goes half-open and admits exactly one probe request; the probe's success closes it,
//! its failure reopens it with the doubled cooldown. A probe that is cancelled (the client went
//! away, a hedge lost) frees the probe slot rather than leaving the breaker stuck half-open.
//! Client errors and client cancellations are neutral: they say nothing about the key's health.
//!
//! Slow start: a slot that closes after a trip does not get all its traffic back at once. For
//! `slow_start` (30 s) its share of first places in plans ramps linearly from 10 % to all
//! ([`Breaker::ramp_share`]; the router demotes it for the rest), and any failure during the ramp
//! reopens it with the next, doubled cooldown: the trips in a row are forgiven only when the ramp
//! ends, so a provider that comes back shaky is not flooded again.
//!
//! Early probes: a breaker can be wrong (a blip of a fraction of a second opens a slot for a whole
//! cooldown), and when every slot a request could use is open, failing fast turns that into an
//! outage of our own. Then, once per `early_probe_interval` (1 s) after the slot opened, a real
//! request may go to an open slot anyway ([`Breaker::admit_early`]; Envoy's panic routing, bounded
//! to one request per slot per interval): its success closes the breaker (with slow start), its
//! failure leaves the open period as it was. Open periods the provider set (Retry-After) and
//! broken keys are not probed early: there we know better than to ask.
//!
//! Shared between replicas (`shared.rs`, `crate::replicas`, and `remote.rs` here): a transition
//! here is published, and a transition another replica published is applied here
//! ([`Breaker::apply_remote`]) without being reported again, so nothing echoes. While shared,
//! probes are leased: a breaker whose cooldown ended stays out of rotation until this replica
//! holds the slot's probe lease ([`Breaker::grant_probe_lease`]) or another replica's probe
//! settles it; and an early probe goes only with the slot's early-probe lease
//! ([`Breaker::grant_early_lease`]), so at most one early probe per slot per interval goes out
//! across all replicas, not one per replica. While Redis is away every breaker decides alone,
//! as above.

use super::class::FailureClass;
use super::events::{EventSink, Transition};
use super::shared::Coordination;
use super::window::RollingWindow;
use crate::config::resilience::Breaker as Policy;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// What an attempt taught us about the key slot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Signal {
    Success,
    Failure,
    /// Open until this instant (Retry-After), or for a cooldown when `None` (a broken key).
    OpenUntil(Option<Instant>),
    /// Says nothing about health (client error, cancellation, context too long).
    Neutral,
}

impl Signal {
    /// What an attempt's class means for its key slot's breaker: the one rule of which classes
    /// move a breaker. `wait` is the provider's Retry-After as honoured (`retry::honoured`).
    ///
    /// A rate limit with a wait opens the slot for exactly that long (the provider said when it
    /// will take requests again); without one it counts as a failure. A broken key or an
    /// exhausted quota opens it for a cooldown: no request on that key can succeed. Server-side
    /// failures count towards tripping. What the request itself got wrong (its size, its
    /// content, a client error) and cancellations say nothing about the key.
    pub fn of(class: FailureClass, wait: Option<Duration>) -> Signal {
        match class {
            FailureClass::Ok => Signal::Success,
            FailureClass::RateLimited => match wait {
                Some(wait) => Signal::OpenUntil(Some(Instant::now() + wait)),
                None => Signal::Failure,
            },
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Closed,
    Open { until: Instant },
    HalfOpen,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Closed => "closed",
            Phase::Open { .. } => "open",
            Phase::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug)]
struct State {
    /// The configured policy (a reload may change it in place).
    policy: Policy,
    phase: Phase,
    consecutive: u32,
    window: RollingWindow,
    /// Trips in a row without a successful close; sets the cooldown.
    trips: u32,
    probe_in_flight: bool,
    /// The open period is the provider's own Retry-After: it ends closed, not half-open.
    hinted: bool,
    /// The open period is a broken key's: no early probes.
    key_broken: bool,
    /// An early probe is in flight.
    early_in_flight: bool,
    /// No early probe before this instant (set when the slot opens and by each early probe).
    next_early: Instant,
    /// Closed after a trip at this instant: ramping up (slow start).
    ramp_from: Option<Instant>,
    /// This replica holds the slot's half-open probe lease until then (breakers shared).
    lease_until: Option<Instant>,
    /// A request here found the slot waiting for the probe lease: this replica has traffic to
    /// probe it with, so it asks for the lease.
    lease_wanted: bool,
    /// While shared: this replica holds the slot's early-probe lease until then, not yet used.
    early_lease_until: Option<Instant>,
    /// While shared: a request here asked to probe the slot early and the lease is being asked
    /// for; requests wait for the answer (`probing`).
    early_lease_wanted: bool,
    /// While shared: no early-probe lease is asked for before this (another replica's lease
    /// runs until then, or Redis just failed to answer).
    early_lease_retry: Instant,
}

/// The share of traffic a slot gets the moment it closes after a trip.
const MIN_RAMP_SHARE: f64 = 0.1;

#[derive(Debug)]
pub struct Breaker {
    alias: String,
    state: Mutex<State>,
    /// Transitions are reported here once the runtime is published.
    sink: OnceLock<EventSink>,
    /// Woken when the phase changes or a probe ends: requests waiting on an open slot re-check.
    changed: Notify,
    /// Whether other replicas share this breaker's state right now.
    coordination: OnceLock<Arc<Coordination>>,
}

/// Permission to send one attempt. Dropping it unused frees a probe slot.
#[derive(Debug)]
pub struct Permit {
    breaker: Arc<Breaker>,
    kind: PermitKind,
    settled: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PermitKind {
    Normal,
    /// The half-open probe.
    Probe,
    /// An early probe of an open slot.
    Early,
}

/// Why a slot cannot be used now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    /// When the slot will admit again, if known (`None`: a probe is in flight).
    pub until: Option<Instant>,
    /// A probe (half-open or early) is in flight: its outcome may reopen the slot soon.
    pub probing: bool,
}

impl Breaker {
    pub fn new(alias: String, policy: Policy) -> Arc<Breaker> {
        let now = Instant::now();
        Arc::new(Breaker {
            alias,
            state: Mutex::new(State {
                policy,
                phase: Phase::Closed,
                consecutive: 0,
                window: RollingWindow::new(policy.window, now),
                trips: 0,
                probe_in_flight: false,
                hinted: false,
                key_broken: false,
                early_in_flight: false,
                next_early: now,
                ramp_from: None,
                lease_until: None,
                lease_wanted: false,
                early_lease_until: None,
                early_lease_wanted: false,
                early_lease_retry: now,
            }),
            sink: OnceLock::new(),
            changed: Notify::new(),
            coordination: OnceLock::new(),
        })
    }

    /// Reports transitions to `sink` from now on (the first sink given stays).
    pub fn attach(&self, sink: &EventSink) {
        let _ = self.sink.set(sink.clone());
    }

    /// Shares this breaker's state with other replicas as `coordination` says (the first one
    /// given stays).
    pub fn coordinate(&self, coordination: &Arc<Coordination>) {
        let _ = self.coordination.set(Arc::clone(coordination));
    }

    fn shared(&self) -> Option<&Coordination> {
        self.coordination
            .get()
            .map(Arc::as_ref)
            .filter(|c| c.is_shared())
    }

    fn emit(&self, transition: Transition) {
        if let Some(sink) = self.sink.get() {
            sink.emit(&self.alias, transition);
        }
    }

    /// Takes a reloaded configuration's policy; the phase and counts stay (a changed window
    /// starts empty).
    pub fn set_policy(&self, policy: Policy) {
        let mut state = self.lock();
        if state.policy.window != policy.window {
            state.window = RollingWindow::new(policy.window, Instant::now());
        }
        state.policy = policy;
    }

    pub fn alias(&self) -> &str {
        &self.alias
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the state invalid (every update is a few
        // assignments), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The phase now (an expired open period reads as half-open).
    pub fn phase(&self) -> Phase {
        let state = self.lock();
        match state.phase {
            Phase::Open { until } if Instant::now() >= until && state.hinted => Phase::Closed,
            Phase::Open { until } if Instant::now() >= until => Phase::HalfOpen,
            phase => phase,
        }
    }

    /// The ramp share alone (see [`Breaker::lead_share`]), for the tests that follow a ramp:
    /// the router reads it with the phase, under one lock.
    #[cfg(test)]
    pub fn ramp_share(&self) -> f64 {
        self.lock().ramp_share(Instant::now())
    }

    /// What the router asks of a slot for every plan, under one lock: `None` while the breaker
    /// is open (an open period that has run out reads as half-open, not open), else the share of
    /// requests the slot should lead while it ramps up after closing (slow start), 1.0 when it
    /// is not ramping. Ending the ramp forgives the trips in a row.
    pub fn lead_share(&self) -> Option<f64> {
        let now = Instant::now();
        let mut state = self.lock();
        match state.phase {
            Phase::Open { until } if now < until => None,
            _ => Some(state.ramp_share(now)),
        }
    }

    /// Asks to send an attempt.
    pub fn admit(self: &Arc<Self>) -> Result<Permit, Rejected> {
        let now = Instant::now();
        let mut state = self.lock();
        if let Phase::Open { until } = state.phase {
            if now < until {
                return Err(Rejected {
                    until: Some(until),
                    probing: state.early_in_flight,
                });
            }
            if state.hinted {
                state.phase = Phase::Closed;
                state.hinted = false;
                tracing::info!(key_slot = %self.alias, "breaker closed: Retry-After elapsed");
                self.emit(Transition::Closed);
                self.changed.notify_waiters();
                return Ok(self.permit(PermitKind::Normal));
            }
            if let Some(shared) = self.shared()
                && !state.holds_lease(now)
            {
                // Another replica may be probing; ask for the lease instead of guessing.
                state.lease_wanted = true;
                shared.want_lease();
                return Err(Rejected {
                    until: None,
                    probing: false,
                });
            }
            state.phase = Phase::HalfOpen;
            state.probe_in_flight = false;
            tracing::info!(key_slot = %self.alias, "breaker half-open: admitting one probe");
            self.emit(Transition::HalfOpen);
        }
        match state.phase {
            Phase::Closed => Ok(self.permit(PermitKind::Normal)),
            Phase::HalfOpen if !state.holds_lease(now) && self.shared().is_some() => {
                state.lease_wanted = true;
                if let Some(shared) = self.shared() {
                    shared.want_lease();
                }
                // Another replica holds the probe: try another slot rather than wait here.
                Err(Rejected {
                    until: None,
                    probing: false,
                })
            }
            Phase::HalfOpen if !state.probe_in_flight => {
                state.probe_in_flight = true;
                Ok(self.permit(PermitKind::Probe))
            }
            _ => Err(Rejected {
                until: None,
                probing: true,
            }),
        }
    }

    /// Asks to send an early probe to this open slot, for a request that found every slot it
    /// could use open (see the module's doc): at most one in flight, one per interval. While
    /// shared, only with the slot's early-probe lease: without it this asks for one and returns
    /// `None`, and [`Breaker::awaits_early_lease`] tells the request to wait for the answer.
    pub fn admit_early(self: &Arc<Self>) -> Option<Permit> {
        let now = Instant::now();
        let mut state = self.lock();
        let Phase::Open { until } = state.phase else {
            return None;
        };
        let interval = state.policy.early_probe_interval;
        if now >= until
            || interval.is_zero()
            || state.hinted
            || state.key_broken
            || state.early_in_flight
            || now < state.next_early
        {
            return None;
        }
        if let Some(shared) = self.shared() {
            // One early probe per slot per interval across every replica: only with the slot's
            // early-probe lease, which goes to one request (`remote.rs`).
            if !state.holds_early_lease(now) {
                if !state.early_lease_wanted && now >= state.early_lease_retry {
                    state.early_lease_wanted = true;
                    shared.want_lease();
                }
                return None;
            }
            state.early_lease_until = None;
        }
        state.early_in_flight = true;
        state.next_early = now + interval;
        tracing::info!(key_slot = %self.alias, "breaker open: every slot is, so one request probes it early");
        Some(self.permit(PermitKind::Early))
    }

    /// A probe of this slot (half-open or early) is in flight, or this replica is asking for
    /// the early-probe lease a request here wants: its outcome is worth waiting for.
    pub fn probing(&self) -> bool {
        let state = self.lock();
        state.early_in_flight
            || state.early_lease_wanted
            || (state.phase == Phase::HalfOpen && state.probe_in_flight)
    }

    /// Resolves when this slot's phase changes or a probe of it ends (register before checking).
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    fn permit(self: &Arc<Self>, kind: PermitKind) -> Permit {
        Permit {
            breaker: Arc::clone(self),
            kind,
            settled: false,
        }
    }

    fn record(&self, signal: Signal, kind: PermitKind) {
        let now = Instant::now();
        let mut state = self.lock();
        let phase_before = state.phase;
        let probe = kind == PermitKind::Probe;
        if probe {
            state.probe_in_flight = false;
        }
        if kind == PermitKind::Early {
            state.early_in_flight = false;
        }
        self.apply(&mut state, signal, kind, now);
        if probe || kind == PermitKind::Early || state.phase != phase_before {
            self.changed.notify_waiters();
        }
    }

    fn apply(&self, state: &mut State, signal: Signal, kind: PermitKind, now: Instant) {
        let probe = kind == PermitKind::Probe;
        if state
            .ramp_from
            .is_some_and(|from| now.saturating_duration_since(from) >= state.policy.slow_start)
        {
            state.end_ramp();
        }
        match signal {
            Signal::Neutral => {}
            Signal::Success => {
                state.consecutive = 0;
                state.window.add(now, 1, 0);
                let early = kind == PermitKind::Early && state.phase != Phase::Closed;
                if (state.phase == Phase::HalfOpen && probe) || early {
                    state.phase = Phase::Closed;
                    state.lease_until = None;
                    state.forget_early_lease();
                    state.window.clear();
                    if state.policy.slow_start.is_zero() {
                        state.trips = 0;
                    } else {
                        state.ramp_from = Some(now);
                    }
                    if early {
                        tracing::info!(key_slot = %self.alias, "breaker closed: an early probe succeeded");
                    } else {
                        tracing::info!(key_slot = %self.alias, "breaker closed: probe succeeded");
                    }
                    self.emit(Transition::Closed);
                }
            }
            Signal::Failure => {
                state.consecutive += 1;
                state.window.add(now, 0, 1);
                let (ok, failed) = state.window.totals(now);
                let total = ok + failed;
                let rate_trip = total >= u64::from(state.policy.min_requests)
                    && failed as f64 / total as f64 > state.policy.failure_rate;
                let ramping = state.ramp_from.is_some_and(|from| {
                    now.saturating_duration_since(from) < state.policy.slow_start
                });
                let trip = match state.phase {
                    Phase::HalfOpen => probe,
                    Phase::Closed => {
                        ramping
                            || state.consecutive >= state.policy.consecutive_failures
                            || rate_trip
                    }
                    Phase::Open { .. } => false,
                };
                if trip {
                    let reason = if state.phase == Phase::HalfOpen {
                        "probe failed".to_owned()
                    } else if ramping {
                        "failed while ramping up after recovery".to_owned()
                    } else if rate_trip {
                        format!("{failed} of {total} attempts failed")
                    } else {
                        format!("{} consecutive failures", state.consecutive)
                    };
                    self.trip(state, now, None, reason);
                }
            }
            Signal::OpenUntil(until) => {
                let already = matches!(state.phase, Phase::Open { until: u } if Some(u) >= until && until.is_some());
                if !already {
                    let reason = if until.is_some() {
                        "rate limited with Retry-After"
                    } else {
                        "key rejected by the provider"
                    };
                    self.trip(state, now, until, reason.to_owned());
                    state.key_broken = until.is_none();
                }
            }
        }
    }

    fn trip(&self, state: &mut State, now: Instant, until: Option<Instant>, reason: String) {
        state.hinted = until.is_some();
        state.key_broken = false;
        state.next_early = now + state.policy.early_probe_interval;
        let until = until.unwrap_or_else(|| {
            state.trips += 1;
            now + cooldown(&state.policy, state.trips)
        });
        state.phase = Phase::Open { until };
        state.ramp_from = None;
        state.lease_until = None;
        state.lease_wanted = false;
        state.forget_early_lease();
        state.consecutive = 0;
        state.window.clear();
        tracing::warn!(
            key_slot = %self.alias,
            open_for_ms = until.saturating_duration_since(now).as_millis() as u64,
            trips_in_a_row = state.trips,
            reason = %reason,
            "breaker opened"
        );
        if let Some(sink) = self.sink.get() {
            let until_ms = sink.clock().ms_at(until);
            sink.emit(&self.alias, Transition::Opened { until_ms, reason });
        }
    }
}

impl State {
    fn holds_lease(&self, now: Instant) -> bool {
        self.lease_until.is_some_and(|until| now < until)
    }

    fn holds_early_lease(&self, now: Instant) -> bool {
        self.early_lease_until.is_some_and(|until| now < until)
    }

    /// The open period this lease or request was for is over. (`early_lease_retry` stays: it
    /// follows the lease's key in Redis, which lives on.)
    fn forget_early_lease(&mut self) {
        self.early_lease_until = None;
        self.early_lease_wanted = false;
    }

    /// See [`Breaker::lead_share`].
    fn ramp_share(&mut self, now: Instant) -> f64 {
        let Some(from) = self.ramp_from else {
            return 1.0;
        };
        let elapsed = now.saturating_duration_since(from);
        if self.phase != Phase::Closed || elapsed >= self.policy.slow_start {
            self.end_ramp();
            return 1.0;
        }
        let progress = elapsed.as_secs_f64() / self.policy.slow_start.as_secs_f64();
        MIN_RAMP_SHARE + (1.0 - MIN_RAMP_SHARE) * progress
    }

    /// The ramp is over: the slot has proven itself, its trips in a row are forgiven.
    fn end_ramp(&mut self) {
        if self.ramp_from.take().is_some() && self.phase == Phase::Closed {
            self.trips = 0;
        }
    }
}

/// `cooldown · 2^(trips−1)`, capped.
fn cooldown(policy: &Policy, trips: u32) -> Duration {
    let factor = 2u32.saturating_pow(trips.saturating_sub(1).min(16));
    policy
        .cooldown
        .saturating_mul(factor)
        .min(policy.max_cooldown)
}

impl Permit {
    pub fn is_probe(&self) -> bool {
        self.kind == PermitKind::Probe
    }

    pub fn is_early_probe(&self) -> bool {
        self.kind == PermitKind::Early
    }

    /// Reports the attempt's outcome. Consumes the permit.
    pub fn record(mut self, signal: Signal) {
        self.settled = true;
        self.breaker.record(signal, self.kind);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.settled {
            // Cancelled before an outcome: neutral, and a probe slot is freed.
            self.breaker.record(Signal::Neutral, self.kind);
        }
    }
}

mod remote;
pub use remote::{Remote, Shared};

#[cfg(test)]
mod tests;
