//! What breakers and probes agree on with other replicas, as they see it here: whether breaker
//! state is shared right now, which deployments this replica probes, and a nudge when a breaker
//! wants the half-open probe lease or an early-probe lease. `crate::replicas` fills it in from
//! Redis; without Redis (or while Redis is down) it says "local", and breakers and probes behave
//! as on a single replica.
//!
//! Why the half-open probe is leased: every replica learns of an open breaker at once, so every
//! replica's cooldown ends at the same instant; without a lease each would send its own probe
//! and N replicas would hit a recovering provider N times. With the lease, one replica probes and
//! the others keep the slot out of rotation until it reports. Early probes of an open slot are
//! leased for the same reason: every replica sees the slot open at once, so without a lease N
//! replicas would send N early probes per interval to a provider that is down.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Notify;

#[derive(Debug, Default)]
pub struct Coordination {
    /// Breaker state is exchanged with other replicas (Redis is up and subscribed).
    shared: AtomicBool,
    /// While shared: the deployments whose prober lease this replica holds.
    probing: Mutex<HashSet<String>>,
    /// A breaker needs a lease: its cooldown ended (the half-open probe lease), or a request
    /// wants to probe it early (the early-probe lease).
    lease_wanted: Notify,
}

impl Coordination {
    pub fn is_shared(&self) -> bool {
        self.shared.load(Ordering::Acquire)
    }

    /// Redis came up (`true`) or went away (`false`): from now on breakers wait for a probe
    /// lease, or decide alone again.
    pub fn set_shared(&self, shared: bool) {
        self.shared.store(shared, Ordering::Release);
    }

    /// Whether this replica probes `deployment`: always when alone, else only while it holds
    /// the deployment's prober lease.
    pub fn probes(&self, deployment: &str) -> bool {
        !self.is_shared()
            || self
                .probing
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(deployment)
    }

    /// The deployments whose prober lease this replica holds now.
    pub fn set_probing(&self, deployments: HashSet<String>) {
        *self.probing.lock().unwrap_or_else(|p| p.into_inner()) = deployments;
    }

    pub fn want_lease(&self) {
        self.lease_wanted.notify_one();
    }

    /// Resolves when a breaker asked for a probe lease (or already had, since the last wait).
    pub async fn lease_wanted(&self) {
        self.lease_wanted.notified().await;
    }
}
