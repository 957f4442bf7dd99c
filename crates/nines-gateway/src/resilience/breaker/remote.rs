//! A breaker among replicas: what other replicas need to know of it, the transitions they
//! publish as they apply here, and the two leases a shared breaker probes with (the module
//! header of `breaker.rs` says when; `crate::replicas::breakers` takes them in Redis).
//!
//! The half-open probe lease: while shared, a cooldown that ends leaves the slot out of rotation
//! until this replica holds `probe:<slot>` ([`Breaker::grant_probe_lease`]) or another replica's
//! probe settles it.
//!
//! The early-probe lease: every replica sees the same open slot, so without coordination N
//! replicas would send N early probes per interval to a provider that is down. While shared, an
//! early probe needs `early:<slot>`, taken only if free for `early_probe_interval` and never
//! renewed, so at most one early probe per slot per interval goes out across all replicas (a
//! lease this replica already holds refuses it too). Its states here: wanted (a request asked;
//! it and later ones wait, `probing`) → granted (held a little short of its expiry; the next
//! request to ask is the probe, one per lease) or refused (the want is cleared and the waiters
//! fall through at once; no one here asks again while the holder's lease runs, or for an
//! interval after Redis failed to answer). Breakers no longer shared: the want is dropped and
//! the slot is probed early as on one replica.

use super::{Breaker, Phase};
use crate::resilience::events::Transition;
use std::time::Duration;
use tokio::time::Instant;

/// A transition another replica published, as it applies here.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Remote {
    /// Open until `until`; `hinted`: a Retry-After period (it ends closed); `trips`: the trips
    /// in a row there, which set the next cooldown.
    Opened {
        until: Instant,
        hinted: bool,
        trips: u32,
    },
    /// Another replica holds the probe: keep the slot out of rotation until it reports.
    HalfOpen,
    Closed,
}

/// What other replicas need to know besides the transition itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shared {
    pub hinted: bool,
    pub trips: u32,
}

impl Breaker {
    /// What other replicas need besides a transition: whether the open period is a Retry-After
    /// and how many trips in a row set its cooldown.
    pub fn shared_state(&self) -> Shared {
        let state = self.lock();
        Shared {
            hinted: state.hinted,
            trips: state.trips,
        }
    }

    /// Whether this replica should ask for the half-open probe lease: shared, the cooldown over
    /// (or half-open after another replica's message), the lease not held here, and something
    /// here to probe with — this replica is the deployment's `prober`, or a request here asked.
    /// (A replica with neither would hold the slot half-open with nothing to send.)
    pub fn needs_probe_lease(&self, prober: bool) -> bool {
        if self.shared().is_none() {
            return false;
        }
        let now = Instant::now();
        let state = self.lock();
        let due = match state.phase {
            Phase::Open { until } => now >= until && !state.hinted,
            Phase::HalfOpen => true,
            Phase::Closed => false,
        };
        due && !state.holds_lease(now) && (prober || state.lease_wanted)
    }

    /// This replica holds the half-open probe lease until `until`: an open breaker whose
    /// cooldown ended goes half-open (reported, so other replicas hold back), and the next
    /// admission here is the probe.
    pub fn grant_probe_lease(&self, until: Instant) {
        let now = Instant::now();
        let mut state = self.lock();
        match state.phase {
            Phase::Open { until: open_until } if now >= open_until && !state.hinted => {
                state.lease_until = Some(until);
                state.lease_wanted = false;
                state.phase = Phase::HalfOpen;
                state.probe_in_flight = false;
                state.forget_early_lease();
                tracing::info!(key_slot = %self.alias, "breaker half-open: this replica holds the probe lease");
                self.emit(Transition::HalfOpen);
                self.changed.notify_waiters();
            }
            // A probe of ours may still be running (a renewed lease): it stays the only one.
            Phase::HalfOpen => {
                state.lease_until = Some(until);
                state.lease_wanted = false;
            }
            _ => {}
        }
    }

    /// Applies a transition another replica published. Never reported to this replica's sink:
    /// the replica where it happened reports it (incidents, alerts, and the publication that
    /// brought it here), so nothing echoes. Returns whether anything changed.
    pub fn apply_remote(&self, remote: Remote) -> bool {
        let now = Instant::now();
        let mut state = self.lock();
        match remote {
            Remote::Opened {
                until,
                hinted,
                trips,
            } => {
                if matches!(state.phase, Phase::Open { until: u } if u >= until) {
                    return false;
                }
                state.phase = Phase::Open { until };
                state.hinted = hinted;
                state.next_early = now + state.policy.early_probe_interval;
                state.trips = state.trips.max(trips);
                state.ramp_from = None;
                state.lease_until = None;
                state.forget_early_lease();
                state.probe_in_flight = false;
                state.consecutive = 0;
                state.window.clear();
            }
            Remote::HalfOpen => {
                if state.phase == Phase::HalfOpen && !state.holds_lease(now) {
                    return false;
                }
                state.phase = Phase::HalfOpen;
                state.lease_until = None;
                state.forget_early_lease();
                state.probe_in_flight = false;
            }
            Remote::Closed => {
                if state.phase == Phase::Closed {
                    return false;
                }
                state.phase = Phase::Closed;
                state.hinted = false;
                state.lease_until = None;
                state.forget_early_lease();
                state.probe_in_flight = false;
                state.consecutive = 0;
                state.window.clear();
                if state.policy.slow_start.is_zero() {
                    state.trips = 0;
                } else {
                    state.ramp_from = Some(now);
                }
            }
        }
        // Requests waiting on this slot look again.
        self.changed.notify_waiters();
        true
    }

    /// The early-probe lease this replica should ask for now, as its time to live (the slot's
    /// `early_probe_interval`): shared, the slot still open, and a request here asked for an
    /// early probe.
    pub fn needs_early_lease(&self) -> Option<Duration> {
        self.shared()?;
        let state = self.lock();
        (state.early_lease_wanted && matches!(state.phase, Phase::Open { .. }))
            .then_some(state.policy.early_probe_interval)
    }

    /// Whether a request that [`Breaker::admit_early`] turned away should wait for the lease's
    /// answer rather than give up: one is being asked for, or was just granted and is unused.
    pub fn awaits_early_lease(&self) -> bool {
        if self.shared().is_none() {
            return false;
        }
        let state = self.lock();
        state.early_lease_wanted || state.holds_early_lease(Instant::now())
    }

    /// This replica holds the slot's early-probe lease until `until` (a little short of its
    /// expiry in Redis): the next request here that asks probes, and only that one. Requests
    /// waiting for the answer look again.
    pub fn grant_early_lease(&self, until: Instant) {
        let mut state = self.lock();
        state.early_lease_wanted = false;
        // Closed or half-open meanwhile: there is nothing to probe early any more.
        if matches!(state.phase, Phase::Open { .. }) {
            state.early_lease_until = Some(until);
        }
        drop(state);
        self.changed.notify_waiters();
    }

    /// No early-probe lease: another replica holds it for `retry_in` more, or Redis did not
    /// answer. Requests waiting for it fall through at once (to the "all open" answer or the
    /// reopening wait), and no request here asks again before `retry_in` has passed.
    pub fn refuse_early_lease(&self, retry_in: Duration) {
        let now = Instant::now();
        let mut state = self.lock();
        state.early_lease_wanted = false;
        state.early_lease_retry = state.early_lease_retry.max(now + retry_in);
        drop(state);
        self.changed.notify_waiters();
    }

    /// Breakers are not shared any more: a request waiting for an early-probe lease looks again
    /// and decides alone, as without Redis.
    pub fn unshare_early_lease(&self) {
        let mut state = self.lock();
        let waiting = state.early_lease_wanted;
        state.forget_early_lease();
        drop(state);
        if waiting {
            self.changed.notify_waiters();
        }
    }
}
