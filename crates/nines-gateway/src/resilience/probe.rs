//! Active health probes.
//!
//! Policy: every key slot is probed on an interval (default 15 s) with the cheapest call its
//! provider offers (a models-list request: no tokens, no cost), so a provider that dies while no
//! traffic flows leaves rotation before a user request finds out. A slot whose last probe failed is
//! probed again soon (default 1 s), so a dead provider reaches the breaker's threshold within
//! seconds. Open slots are not probed until their cooldown ends; then the probe takes the breaker's
//! single half-open permit, and its success closes the breaker without risking a user request.
//! A probe is an attempt like any other (`attempt.rs`): classified, recorded and fed to the
//! slot's breaker by the same rule.

use super::attempt::{Target, attempt};
use super::breaker::Phase;
use super::health::Health;
use crate::config::resilience::Probes;
use crate::providers::Upstream;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::time::Instant;

#[derive(Clone, Copy)]
struct SlotProbe {
    last: Option<Instant>,
    failed: bool,
}

/// Probes `upstreams` (aligned with `health`'s deployments) until `health` is dropped: a reload
/// replaced the runtime and its last request ended.
pub async fn run(
    health: Weak<Health>,
    upstreams: Vec<Arc<Upstream>>,
    policy: Probes,
    max_retry_after: Duration,
) {
    let mut state = match health.upgrade() {
        Some(health) => health
            .breakers
            .iter()
            .map(|keys| {
                vec![
                    SlotProbe {
                        last: None,
                        failed: false
                    };
                    keys.len()
                ]
            })
            .collect::<Vec<_>>(),
        None => return,
    };
    // First probes one interval after start: a fresh process has no reason to doubt its upstreams.
    let started = Instant::now();
    for row in state.iter_mut() {
        for slot in row.iter_mut() {
            slot.last = Some(started);
        }
    }
    let tick = policy
        .failed_interval
        .min(policy.interval)
        .min(Duration::from_secs(1));
    loop {
        tokio::time::sleep(tick).await;
        let Some(live) = health.upgrade() else { return };
        let now = Instant::now();
        let mut probes = Vec::new();
        for (d, keys) in live.breakers.iter().enumerate() {
            let Some(upstream) = upstreams.get(d) else {
                continue;
            };
            for (k, breaker) in keys.iter().enumerate() {
                let slot = state[d][k];
                let due = match breaker.phase() {
                    Phase::Open { .. } => false,
                    Phase::HalfOpen => true,
                    Phase::Closed => {
                        let every = if slot.failed {
                            policy.failed_interval
                        } else {
                            policy.interval
                        };
                        slot.last
                            .is_none_or(|last| now.duration_since(last) >= every)
                    }
                };
                if !due {
                    continue;
                }
                let Ok(permit) = breaker.admit() else {
                    continue;
                };
                state[d][k].last = Some(now);
                let target = Target {
                    upstream,
                    key: k,
                    // A models list's timing says nothing about answers.
                    health: None,
                    permit: Some(permit),
                    in_flight: None,
                    span: None,
                    stream: false,
                    max_retry_after,
                    learned_deadline: None,
                };
                probes.push(async move {
                    let made = attempt(target, upstream.probe(k, policy.timeout)).await;
                    let failed = made.record.class.is_upstream_failure();
                    if failed {
                        tracing::info!(key_slot = %made.record.key_alias, class = made.record.class.as_str(), "health probe failed");
                    }
                    (d, k, failed)
                });
            }
        }
        drop(live);
        for (d, k, failed) in futures_util::future::join_all(probes).await {
            state[d][k].failed = failed;
        }
    }
}
