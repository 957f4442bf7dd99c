//! Strategies: each turns a route's deployments into an order, with the reason for each place.

use super::{Reason, Route};
use crate::config::Strategy;
use rand::Rng;

/// Returns `(deployment index, reason)` in the order to try.
pub(super) fn order(route: &Route, weights: &[f64], prices: &[f64]) -> Vec<(usize, Reason)> {
    match route.strategy {
        Strategy::Priority => route
            .deployments
            .iter()
            .enumerate()
            .map(|(rank, &d)| (d, Reason::Listed { rank: rank + 1 }))
            .collect(),
        Strategy::Cheapest => {
            let mut list: Vec<usize> = route.deployments.clone();
            // Stable sort: equal prices keep the listed order.
            list.sort_by(|a, b| prices[*a].total_cmp(&prices[*b]));
            list.into_iter()
                .map(|d| {
                    (
                        d,
                        Reason::Price {
                            per_million: prices[d],
                        },
                    )
                })
                .collect()
        }
        Strategy::Weighted => weighted_order(&route.deployments, weights, &mut rand::rng()),
    }
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
