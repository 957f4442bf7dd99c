//! Strategies: each turns a route's deployments into an order, with the reason for each place.
//! They read health (latency, in-flight) but never write it.

use super::{Reason, tokens::Estimate};
use crate::config::{Deployment, Strategy};
use crate::resilience::Health;
use rand::Rng;
use rand::seq::SliceRandom;
use std::sync::Arc;

/// What a strategy may look at for one request.
pub struct Inputs<'a> {
    pub deployments: &'a [Arc<Deployment>],
    pub health: Option<&'a Health>,
    pub estimate: Option<Estimate>,
}

impl Inputs<'_> {
    fn in_flight(&self, d: usize) -> u32 {
        self.health.map_or(0, |h| h.deployments[d].in_flight())
    }

    fn latency_us(&self, d: usize) -> f64 {
        self.health
            .map_or(0.0, |h| h.deployments[d].latency().as_secs_f64() * 1e6)
    }

    fn load(&self, d: usize) -> f64 {
        self.health.map_or(0.0, |h| h.deployments[d].load())
    }

    /// USD this request is estimated to cost at deployment `d`.
    fn cost(&self, d: usize) -> f64 {
        let price = self.deployments[d].price;
        let (input, output) = match self.estimate {
            Some(e) => (e.typical_prompt(), e.output_tokens),
            None => (1000, super::tokens::DEFAULT_OUTPUT_ESTIMATE),
        };
        (input as f64 * price.input + output as f64 * price.output) / 1e6
    }
}

/// Returns `(deployment index, reason)` in the order to try.
pub(super) fn order(
    candidates: &[usize],
    strategy: Strategy,
    inputs: &Inputs<'_>,
) -> Vec<(usize, Reason)> {
    match strategy {
        Strategy::Priority => candidates
            .iter()
            .enumerate()
            .map(|(rank, &d)| (d, Reason::Listed { rank: rank + 1 }))
            .collect(),
        Strategy::Cheapest => {
            let mut list: Vec<(usize, f64)> =
                candidates.iter().map(|&d| (d, inputs.cost(d))).collect();
            // Stable: equal costs keep the listed order.
            list.sort_by(|a, b| a.1.total_cmp(&b.1));
            list.into_iter()
                .map(|(d, usd)| (d, Reason::Cost { usd }))
                .collect()
        }
        Strategy::Weighted => {
            let weights: Vec<f64> = inputs.deployments.iter().map(|d| d.weight).collect();
            weighted_order(candidates, &weights, &mut rand::rng())
        }
        Strategy::LeastLatency => least_latency(candidates, inputs, &mut rand::rng()),
        Strategy::LeastBusy => {
            let mut list: Vec<usize> = candidates.to_vec();
            // Shuffle first so that equally loaded replicas share the traffic.
            list.shuffle(&mut rand::rng());
            let mut scored: Vec<(usize, f64)> =
                list.into_iter().map(|d| (d, inputs.load(d))).collect();
            scored.sort_by(|a, b| a.1.total_cmp(&b.1));
            scored
                .into_iter()
                .map(|(d, load)| (d, Reason::Load { load }))
                .collect()
        }
    }
}

/// Score = peak-EWMA TTFB × (in flight + 1). The first place is decided by power of two
/// choices (two random candidates, the better one wins), which keeps the fastest deployment
/// from taking every request at once; the rest follow by score as fallbacks.
fn least_latency(
    candidates: &[usize],
    inputs: &Inputs<'_>,
    rng: &mut impl Rng,
) -> Vec<(usize, Reason)> {
    let score = |d: usize| inputs.latency_us(d) * f64::from(inputs.in_flight(d) + 1);
    let mut scored: Vec<(usize, f64)> = candidates.iter().map(|&d| (d, score(d))).collect();
    scored.sort_by(|a, b| a.1.total_cmp(&b.1));
    if scored.len() > 2 {
        let a = rng.random_range(0..scored.len());
        let mut b = rng.random_range(0..scored.len() - 1);
        if b >= a {
            b += 1;
        }
        let winner = if scored[a].1 <= scored[b].1 { a } else { b };
        let first = scored.remove(winner);
        scored.insert(0, first);
    }
    scored
        .into_iter()
        .map(|(d, s)| {
            (
                d,
                Reason::Latency {
                    score_ms: s / 1000.0,
                },
            )
        })
        .collect()
}

/// Draws deployments without replacement, each with probability proportional to its weight;
/// zero-weight deployments go last, as fallbacks only.
fn weighted_order(
    deployments: &[usize],
    weights: &[f64],
    rng: &mut impl Rng,
) -> Vec<(usize, Reason)> {
    let mut pool: Vec<usize> = deployments.to_vec();
    let mut out = Vec::with_capacity(pool.len());
    while !pool.is_empty() {
        let total: f64 = pool.iter().map(|&d| weights[d]).sum();
        if total <= 0.0 {
            out.extend(pool.drain(..).map(|d| (d, Reason::FallbackOnly)));
            break;
        }
        let mut pick = rng.random_range(0.0..total);
        let mut chosen = pool.len() - 1;
        for (i, &d) in pool.iter().enumerate() {
            if pick < weights[d] {
                chosen = i;
                break;
            }
            pick -= weights[d];
        }
        let d = pool.remove(chosen);
        out.push((d, Reason::Drawn { weight: weights[d] }));
    }
    out
}

#[cfg(test)]
pub(super) fn weighted_order_for_test(
    deployments: &[usize],
    weights: &[f64],
    seed: u64,
) -> Vec<usize> {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    weighted_order(deployments, weights, &mut rng)
        .into_iter()
        .map(|(d, _)| d)
        .collect()
}
