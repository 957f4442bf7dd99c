//! Active health probes.
//!
//! Policy: every key slot is probed on an interval (default 15 s) with the cheapest call its
//! provider offers (a models-list request: no tokens, no cost), so a provider that dies while no
//! traffic flows leaves rotation before a user request finds out. A slot whose last probe failed is
//! probed again soon (default 1 s), so a dead provider reaches the breaker's threshold within
//! seconds. Open slots are not probed until their cooldown ends; then the probe takes the breaker's
//! single half-open permit, and its success closes the breaker without risking a user request.
//! Probe outcomes are classified like any attempt and fed to the same breaker.

use super::breaker::{Phase, Signal};
use super::class::{FailureClass, classify};
use crate::state::Runtime;
use std::sync::Weak;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Clone, Copy)]
struct SlotProbe {
    last: Option<Instant>,
    failed: bool,
}

/// Runs until the runtime it watches is dropped (a reload replaced it and its last request ended).
pub async fn run(runtime: Weak<Runtime>) {
    let (policy, mut state) = match runtime.upgrade() {
        Some(rt) => {
            let slots = rt
                .health
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
                .collect::<Vec<_>>();
            (rt.config.resilience.probes, slots)
        }
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
        let Some(rt) = runtime.upgrade() else { return };
        let now = Instant::now();
        let mut probes = Vec::new();
        for (d, keys) in rt.health.breakers.iter().enumerate() {
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
                let upstream = rt.upstreams[d].clone();
                probes.push(async move {
                    let outcome = upstream.probe(k, policy.timeout).await;
                    let class = classify(&outcome);
                    let signal = match class {
                        FailureClass::Ok => Signal::Success,
                        c if c.is_retryable() => Signal::Failure,
                        _ => Signal::Neutral,
                    };
                    if signal == Signal::Failure {
                        tracing::info!(key_slot = %upstream.deployment.keys[k].alias, class = class.as_str(), "health probe failed");
                    }
                    permit.record(signal);
                    (d, k, signal == Signal::Failure)
                });
            }
        }
        drop(rt);
        for (d, k, failed) in futures_util::future::join_all(probes).await {
            state[d][k].failed = failed;
        }
    }
}
