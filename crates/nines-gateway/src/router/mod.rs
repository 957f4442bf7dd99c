//! Model → plan: which key slots to try for a request, in which order, and why.
//!
//! The routing table is built once per configuration (off the hot path) and published with the
//! rest of the runtime through `ArcSwap`; planning a request only reads it and the shared health.
//!
//! Filters run in this order, each recorded in the plan: capability (`filters.rs`, after
//! planning, since it needs the parsed request), context window (the prompt plus requested output
//! must fit), breaker state, the provider's own rate-limit headroom, and capacity (in flight below
//! `max_concurrency`). A context misfit removes the deployment; the other three only move its key
//! slots to the end of the plan, because the attempt loop may still wait for a breaker to reopen
//! or for capacity to free, and a provider's headroom report may be stale.

pub mod filters;
pub mod o200k;
// Public only for the fuzz target that checks it against the library (`fuzz/`); not an API.
#[doc(hidden)]
pub mod pretokenize;
mod strategy;
pub mod tokens;

pub use strategy::Inputs;
pub use tokens::Estimate;

use crate::config::resilience::Hedge;
use crate::config::{Config, Degrade, Deployment, ModelRoute, Strategy};
use crate::resilience::{Health, KeySlot};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A name clients may request and the deployments behind it.
#[derive(Debug)]
pub struct Route {
    pub name: String,
    /// Deployment indices in configured order.
    pub deployments: Vec<usize>,
    pub strategy: Strategy,
    pub hedge: Hedge,
    /// True for names derived from `provider/upstream-model` rather than configured.
    pub derived: bool,
    pub resume_streams: bool,
    /// When its fallback models may serve.
    pub degrade: Degrade,
    /// Routes tried after this one's deployments, and when the prompt fits none of its windows.
    pub fallbacks: Vec<String>,
    pub context_fallbacks: Vec<String>,
    /// Deployments in this region go first.
    pub region: Option<String>,
}

/// Why a deployment sits where it does in a plan. Rendered only when someone asks (check, admin
/// routes, logs), so planning allocates no text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reason {
    Listed { rank: usize },
    Cost { usd: f64 },
    Drawn { weight: f64 },
    FallbackOnly,
    Latency { score_ms: f64 },
    Load { load: f64 },
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Listed { rank } => write!(f, "priority: listed #{rank}"),
            Reason::Cost { usd } => write!(f, "cheapest: est. ${usd:.6} for this request"),
            Reason::Drawn { weight } => write!(f, "weighted: drawn with weight {weight}"),
            Reason::FallbackOnly => f.write_str("weighted: weight 0, fallback only"),
            Reason::Latency { score_ms } => {
                write!(f, "least-latency: TTFB×load score {score_ms:.1} ms")
            }
            Reason::Load { load } => write!(f, "least-busy: load {load:.2}"),
        }
    }
}

/// Where a slot sits besides its strategy reason.
#[derive(Debug, Clone, PartialEq)]
pub enum Placement {
    Normal,
    /// In the preferred region.
    Region,
    /// Reached through a fallback model.
    Fallback {
        model: String,
    },
    /// Moved to the end: breaker open, no headroom, or at capacity.
    Demoted {
        why: &'static str,
    },
}

/// One key slot to try, with the reason it sits where it does.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedSlot {
    pub deployment: usize,
    pub key: usize,
    /// 0 for the requested model's own slots; k for those of `Plan::fallbacks[k - 1]`.
    pub tier: usize,
    pub reason: Reason,
    pub placement: Placement,
}

/// A deployment left out of the plan, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    pub deployment: usize,
    pub why: String,
}

/// The ordered candidate key slots for one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub model: String,
    pub slots: Vec<PlannedSlot>,
    pub skipped: Vec<Skipped>,
    /// The largest context window among the candidates considered (for the 400 when none fits).
    pub largest_window: Option<u64>,
    /// The fallback models whose slots the plan holds, by tier (tier k is `fallbacks[k - 1]`).
    pub fallbacks: Vec<String>,
}

impl Plan {
    /// The key slots to try, in order: what the attempt loop walks.
    pub fn key_slots(&self) -> Vec<KeySlot> {
        self.slots
            .iter()
            .map(|s| KeySlot {
                deployment: s.deployment,
                key: s.key,
                tier: s.tier,
            })
            .collect()
    }

    /// The fallback model a slot of `tier` belongs to (`None` for the requested model's own).
    pub fn fallback_of(&self, tier: usize) -> Option<&str> {
        tier.checked_sub(1)
            .and_then(|k| self.fallbacks.get(k))
            .map(String::as_str)
    }

    /// Whether every candidate was removed for its context window.
    pub fn context_exhausted(&self) -> bool {
        self.slots.is_empty()
            && !self.skipped.is_empty()
            && self.skipped.iter().all(|s| s.why.starts_with("context"))
    }

    /// A one-line account for logs and usage records: `d1#0(priority: listed #1), …`.
    pub fn describe(&self, deployments: &[Arc<Deployment>]) -> String {
        use std::fmt::Write;
        // One buffer, no intermediate strings: this runs for every request while the store or
        // the request log is on. (Writing to a String cannot fail.)
        let mut out = String::with_capacity(48 * self.slots.len());
        for (i, s) in self.slots.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let d = &deployments[s.deployment];
            let name = d
                .keys
                .get(s.key)
                .map_or(d.name.as_str(), |k| k.alias.as_str());
            let _ = write!(out, "{name}({}", s.reason);
            match &s.placement {
                Placement::Normal => {}
                Placement::Region => out.push_str("; in region"),
                Placement::Fallback { model } => {
                    let _ = write!(out, "; fallback via {model}");
                }
                Placement::Demoted { why } => {
                    let _ = write!(out, "; demoted: {why}");
                }
            }
            out.push(')');
        }
        for s in &self.skipped {
            let _ = write!(
                out,
                "; skipped {}: {}",
                deployments[s.deployment].name, s.why
            );
        }
        out
    }
}

#[derive(Debug)]
pub struct RoutingTable {
    routes: HashMap<String, Arc<Route>>,
    /// Names in the order `/v1/models` lists them: configured models first.
    names: Vec<String>,
    /// Per deployment: where the next request starts among its keys, so load spreads across keys.
    key_cursor: Vec<AtomicUsize>,
    key_counts: Vec<usize>,
    /// The gateway's own region (`[routing] region`).
    region: Option<String>,
}

impl RoutingTable {
    pub fn build(config: &Config) -> RoutingTable {
        let mut routes = HashMap::new();
        let mut names = Vec::new();
        for m in &config.models {
            let ModelRoute { name, .. } = m;
            names.push(name.clone());
            let route = Route {
                name: name.clone(),
                deployments: m.deployments.clone(),
                strategy: m.strategy,
                hedge: m.hedge,
                derived: false,
                resume_streams: m.resume_streams,
                degrade: m.degrade,
                fallbacks: m.fallbacks.clone(),
                context_fallbacks: m.context_fallbacks.clone(),
                region: m.region.clone(),
            };
            routes.insert(name.clone(), Arc::new(route));
        }
        // `provider/upstream-model` resolves to every deployment of that provider serving that
        // model, unless a configured model already owns the name.
        let mut derived: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, d) in config.deployments.iter().enumerate() {
            let name = format!("{}/{}", d.provider_name(), d.upstream_model);
            if routes.contains_key(&name) {
                continue;
            }
            match derived.iter_mut().find(|(n, _)| *n == name) {
                Some((_, list)) => list.push(i),
                None => derived.push((name, vec![i])),
            }
        }
        for (name, deployments) in derived {
            names.push(name.clone());
            let route = Route {
                name: name.clone(),
                deployments,
                strategy: Strategy::Priority,
                hedge: Hedge::default(),
                derived: true,
                resume_streams: true,
                degrade: Degrade::default(),
                fallbacks: Vec::new(),
                context_fallbacks: Vec::new(),
                region: None,
            };
            routes.insert(name, Arc::new(route));
        }
        RoutingTable {
            routes,
            names,
            key_cursor: config
                .deployments
                .iter()
                .map(|_| AtomicUsize::new(0))
                .collect(),
            key_counts: config.deployments.iter().map(|d| d.keys.len()).collect(),
            region: config.routing.region.clone(),
        }
    }

    pub fn resolve(&self, model: &str) -> Option<&Arc<Route>> {
        self.routes.get(model)
    }

    /// The highest input and output price any deployment that may serve `model` charges (its
    /// own, then its fallback models'): what a budget reserves per token at admission, so the
    /// reservation is never below what the request can cost.
    pub fn price_ceiling(
        &self,
        model: &str,
        deployments: &[Arc<crate::config::Deployment>],
    ) -> crate::config::Price {
        let mut ceiling = crate::config::Price::default();
        let Some(route) = self.resolve(model) else {
            return ceiling;
        };
        let fallbacks = route
            .fallbacks
            .iter()
            .chain(&route.context_fallbacks)
            .filter_map(|name| self.resolve(name));
        for r in std::iter::once(route).chain(fallbacks) {
            for price in r
                .deployments
                .iter()
                .filter_map(|&d| deployments.get(d))
                .map(|d| d.price)
            {
                ceiling.input = ceiling.input.max(price.input);
                ceiling.output = ceiling.output.max(price.output);
            }
        }
        ceiling
    }

    /// Every name a client may request.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The plan for one request: the route's deployments through the filters and its strategy,
    /// then its fallback models' (context fallbacks only when a window was too small), each
    /// deployment expanded into its key slots starting at a rotating key.
    pub fn plan(&self, route: &Route, inputs: &Inputs<'_>) -> Plan {
        let mut plan = Plan {
            model: route.name.clone(),
            slots: Vec::new(),
            skipped: Vec::new(),
            largest_window: None,
            fallbacks: Vec::new(),
        };
        let mut seen: Vec<usize> = Vec::new();
        self.extend(&mut plan, route, inputs, None, &mut seen);
        let overflowed = plan.skipped.iter().any(|s| s.why.starts_with("context"));
        let fallbacks = route
            .fallbacks
            .iter()
            .chain(route.context_fallbacks.iter().filter(|_| overflowed));
        for name in fallbacks {
            if let Some(fallback) = self.routes.get(name) {
                plan.fallbacks.push(name.clone());
                self.extend(&mut plan, fallback, inputs, Some(name), &mut seen);
            }
        }
        // Demoted slots go last, in their relative order: last within their model when the
        // model degrades only after its own slots (and a fallback model's demoted slot must
        // not jump ahead of the requested model's), last overall when it degrades immediately.
        let after_retries = route.degrade == Degrade::AfterRetries;
        plan.slots.sort_by_key(|s| {
            let demoted = matches!(s.placement, Placement::Demoted { .. });
            (if after_retries { s.tier } else { 0 }, demoted)
        });
        plan
    }

    fn extend(
        &self,
        plan: &mut Plan,
        route: &Route,
        inputs: &Inputs<'_>,
        via: Option<&String>,
        seen: &mut Vec<usize>,
    ) {
        let mut candidates = Vec::with_capacity(route.deployments.len());
        for &d in &route.deployments {
            if seen.contains(&d) {
                continue;
            }
            seen.push(d);
            let deployment = &inputs.deployments[d];
            plan.largest_window = plan.largest_window.max(deployment.context_window);
            if let (Some(estimate), Some(window)) = (inputs.estimate, deployment.context_window) {
                let needed = estimate.needed(
                    deployment.provider.dialect() == nines_protocol::unified::Dialect::OpenAi,
                );
                if needed > window {
                    plan.skipped.push(Skipped {
                        deployment: d,
                        why: format!("context window {window} < {needed} tokens needed"),
                    });
                    continue;
                }
            }
            candidates.push(d);
        }
        let mut ordered = strategy::order(&candidates, route.strategy, inputs);
        // Region preference: a stable partition, so the strategy's order holds within each part.
        let region = route.region.as_ref().or(self.region.as_ref());
        if let Some(region) = region {
            ordered.sort_by_key(|(d, _)| inputs.deployments[*d].region.as_ref() != Some(region));
        }
        for (deployment, reason) in ordered {
            let in_region =
                region.is_some_and(|r| inputs.deployments[deployment].region.as_ref() == Some(r));
            let tier = plan.fallbacks.len();
            let count = self.key_counts[deployment].max(1);
            let start = self.key_cursor[deployment].fetch_add(1, Ordering::Relaxed) % count;
            for k in 0..count {
                let key = (start + k) % count;
                let placement = match demotion(inputs, deployment, key) {
                    Some(why) => Placement::Demoted { why },
                    None => match via {
                        Some(model) => Placement::Fallback {
                            model: model.clone(),
                        },
                        None if in_region => Placement::Region,
                        None => Placement::Normal,
                    },
                };
                plan.slots.push(PlannedSlot {
                    deployment,
                    key,
                    tier,
                    reason,
                    placement,
                });
            }
        }
    }
}

/// Why a key slot should go last: breaker open, ramping up after recovery (it leads only its
/// growing share of plans), no provider headroom, deployment at capacity.
fn demotion(inputs: &Inputs<'_>, deployment: usize, key: usize) -> Option<&'static str> {
    let health: &Health = inputs.health?;
    if let Some(breaker) = health.breaker(deployment, key) {
        match breaker.lead_share() {
            None => return Some("breaker open"),
            Some(share) if share < 1.0 && rand::random::<f64>() >= share => {
                return Some("ramping up after recovery");
            }
            Some(_) => {}
        }
    }
    let tokens = inputs
        .estimate
        .map_or(0, |e| e.typical_prompt() + e.output_tokens);
    if health.deployments[deployment].exhausted(key, tokens) {
        return Some("provider reports no rate-limit headroom");
    }
    if health.deployments[deployment].at_capacity() {
        return Some("at max_concurrency");
    }
    None
}

#[cfg(test)]
mod tests;
