//! Model → plan: which key slots to try for a request, in which order, and why.
//!
//! The routing table is built once per configuration (off the hot path) and published with the
//! rest of the runtime through `ArcSwap`; planning a request only reads it.

pub mod filters;
mod strategy;

use crate::config::resilience::Hedge;
use crate::config::{Config, ModelRoute, Strategy};
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
}

/// Why a deployment sits where it does in a plan. Rendered only when someone asks (check, admin
/// routes, usage records), so planning allocates no text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reason {
    Listed { rank: usize },
    Price { per_million: f64 },
    Drawn { weight: f64 },
    FallbackOnly,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Listed { rank } => write!(f, "priority: listed #{rank}"),
            Reason::Price { per_million } => {
                write!(f, "cheapest: ${per_million:.4}/1M tokens in+out")
            }
            Reason::Drawn { weight } => write!(f, "weighted: drawn with weight {weight}"),
            Reason::FallbackOnly => f.write_str("weighted: weight 0, fallback only"),
        }
    }
}

/// One key slot to try, with the reason it sits where it does.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedSlot {
    pub deployment: usize,
    pub key: usize,
    pub reason: Reason,
}

/// The ordered candidate key slots for one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub model: String,
    pub slots: Vec<PlannedSlot>,
}

#[derive(Debug)]
pub struct RoutingTable {
    routes: HashMap<String, Arc<Route>>,
    /// Names in the order `/v1/models` lists them: configured models first.
    names: Vec<String>,
    /// Per deployment: where the next request starts among its keys, so load spreads across keys.
    key_cursor: Vec<AtomicUsize>,
    key_counts: Vec<usize>,
    weights: Vec<f64>,
    prices: Vec<f64>,
}

impl RoutingTable {
    pub fn build(config: &Config) -> RoutingTable {
        let mut routes = HashMap::new();
        let mut names = Vec::new();
        for ModelRoute {
            name,
            deployments,
            strategy,
            hedge,
            ..
        } in &config.models
        {
            names.push(name.clone());
            let route = Route {
                name: name.clone(),
                deployments: deployments.clone(),
                strategy: *strategy,
                hedge: *hedge,
                derived: false,
            };
            routes.insert(name.clone(), Arc::new(route));
        }
        // `provider/upstream-model` resolves to every deployment of that provider serving that
        // model, unless a configured model already owns the name.
        let mut derived: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, d) in config.deployments.iter().enumerate() {
            let name = format!("{}/{}", d.provider.as_str(), d.upstream_model);
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
            weights: config.deployments.iter().map(|d| d.weight).collect(),
            prices: config
                .deployments
                .iter()
                .map(|d| d.price.input + d.price.output)
                .collect(),
        }
    }

    pub fn resolve(&self, model: &str) -> Option<&Arc<Route>> {
        self.routes.get(model)
    }

    /// Every name a client may request.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Orders the route's deployments by its strategy and expands each into its key slots,
    /// starting at a rotating key so that traffic spreads over a deployment's keys.
    pub fn plan(&self, route: &Route) -> Plan {
        let ordered = strategy::order(route, &self.weights, &self.prices);
        let mut slots = Vec::with_capacity(ordered.len());
        for (deployment, reason) in ordered {
            let count = self.key_counts[deployment].max(1);
            let start = self.key_cursor[deployment].fetch_add(1, Ordering::Relaxed) % count;
            for k in 0..count {
                slots.push(PlannedSlot {
                    deployment,
                    key: (start + k) % count,
                    reason,
                });
            }
        }
        Plan {
            model: route.name.clone(),
            slots,
        }
    }
}

#[cfg(test)]
mod tests;
