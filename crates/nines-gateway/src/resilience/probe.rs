//! Active health probes.
//!
//! Policy: every key slot is probed on an interval (default 15 s), so a provider that dies while
//! no traffic flows leaves rotation before a user request finds out. A slot whose last probe
//! failed is probed again soon (default 1 s), so a dead provider reaches the breaker's threshold
//! within seconds. Open slots are not probed until their cooldown ends.
//!
//! What a probe asks (`[resilience.probes] kind`): `models`, the provider's models list (no
//! tokens, no cost), or `completion`, a one-token request for the deployment's model (a few
//! tokens per probe; `nines check` shows the cost). What its outcome may do to the slot's breaker
//! is one rule ([`probe_signal`]): a failure counts like any failure; a success never erases the
//! failures real traffic saw (it is neutral, so a `/models` that answers 200 while the model fails
//! cannot keep resetting the consecutive count); only a completion probe, the one evidence about
//! the model itself, may take the half-open permit and close the breaker. With `models` probes a
//! half-open slot waits for a real request.
//!
//! Across replicas (`shared::Coordination`): one replica probes each deployment, the holder of
//! its prober lease, and what it learns reaches the others as breaker transitions. Without Redis
//! every replica probes everything, as a single replica does.
//!
//! A probe is an attempt like any other (`attempt.rs`): classified and recorded the same way.

use super::attempt::{Target, attempt};
use super::breaker::{Phase, Signal};
use super::health::Health;
use super::shared::Coordination;
use crate::config::resilience::{ProbeKind, Probes};
use crate::providers::{Call, Endpoint, Outcome, Transport, Upstream};
use crate::translate::RequestView;
use bytes::Bytes;
use nines_protocol::unified::Dialect;
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
    coordination: Arc<Coordination>,
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
            if !coordination.probes(&upstream.deployment.name) {
                continue;
            }
            for (k, breaker) in keys.iter().enumerate() {
                let slot = state[d][k];
                let due = match breaker.phase() {
                    Phase::Open { .. } => false,
                    // Only a completion is evidence that closes; a models list leaves the
                    // half-open permit to a real request.
                    Phase::HalfOpen => policy.kind == ProbeKind::Completion,
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
                let half_open = permit.is_probe();
                let target = Target {
                    upstream,
                    key: k,
                    // A probe's timing says little about answers of real size.
                    health: None,
                    // Recorded below, by the probe's own rule.
                    permit: None,
                    in_flight: None,
                    span: None,
                    stream: false,
                    max_retry_after,
                    learned_deadline: None,
                };
                probes.push(async move {
                    let made = attempt(target, probe_call(upstream, k, policy)).await;
                    let signal = Signal::of(made.record.class, made.wait);
                    permit.record(probe_signal(policy.kind, signal, half_open));
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

/// What a probe's outcome does to its key slot's breaker (see the module header): failures
/// count, a success is neutral unless it is a completion answering the half-open probe.
pub fn probe_signal(kind: ProbeKind, signal: Signal, half_open: bool) -> Signal {
    match signal {
        Signal::Success if kind == ProbeKind::Completion && half_open => Signal::Success,
        Signal::Success => Signal::Neutral,
        other => other,
    }
}

/// The probe's call: a completion where the provider serves chat, else the models list.
async fn probe_call(upstream: &Upstream, key: usize, policy: Probes) -> Outcome {
    let deployment = &upstream.deployment;
    if policy.kind == ProbeKind::Models || deployment.provider.dialect() == Dialect::Runway {
        return upstream.probe(key, policy.timeout).await;
    }
    let Some(slot) = deployment.keys.get(key) else {
        return Outcome::Transport(Transport::Connect("no such key slot".into()));
    };
    let request = completion_request();
    let outcome = upstream
        .call(Call {
            endpoint: Endpoint::ChatCompletions,
            key: slot,
            body: request.body_for(deployment),
            stream: false,
            request_id: "health-probe",
            deadline: Instant::now() + policy.timeout,
            traceparent: None,
            first_byte: None,
        })
        .await;
    request.accept(deployment, outcome)
}

/// The body of a completion probe, in OpenAI's dialect (translated for others like any
/// request): one short user message, one output token.
pub const COMPLETION_PROBE: &str =
    r#"{"model":"probe","messages":[{"role":"user","content":"ping"}],"max_tokens":1}"#;

/// Tokens a completion probe is charged at most: the message's prompt tokens as providers count
/// them (with their per-message overhead) and its one output token (`nines check`'s cost).
pub const COMPLETION_PROBE_TOKENS: (u64, u64) = (10, 1);

/// USD one completion probe costs at most at `price` (per 1M tokens).
pub fn completion_probe_cost(price: &crate::config::Price) -> f64 {
    let (input, output) = COMPLETION_PROBE_TOKENS;
    (input as f64 * price.input + output as f64 * price.output) / 1e6
}

fn completion_request() -> RequestView {
    let model = r#""probe""#;
    let start = COMPLETION_PROBE.find(model).unwrap_or(0);
    RequestView::new(
        Dialect::OpenAi,
        Endpoint::ChatCompletions,
        Bytes::from_static(COMPLETION_PROBE.as_bytes()),
        start..start + model.len(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_half_open_completion_probe_success_is_evidence() {
        use ProbeKind::{Completion, Models};
        assert_eq!(
            probe_signal(Models, Signal::Success, false),
            Signal::Neutral
        );
        assert_eq!(probe_signal(Models, Signal::Success, true), Signal::Neutral);
        assert_eq!(
            probe_signal(Completion, Signal::Success, false),
            Signal::Neutral
        );
        assert_eq!(
            probe_signal(Completion, Signal::Success, true),
            Signal::Success
        );
        for kind in [Models, Completion] {
            assert_eq!(probe_signal(kind, Signal::Failure, false), Signal::Failure);
        }
    }

    #[test]
    fn the_completion_probe_body_names_its_model_where_the_view_splices_it() {
        let (raw, span) = completion_request().raw();
        assert_eq!(&raw[span], br#""probe""#);
    }
}
