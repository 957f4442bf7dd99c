//! Shared state: the current runtime (config, routing table, upstream clients) behind `ArcSwap`,
//! so every request reads it without a lock and a reload swaps it whole.

use crate::config::Config;
use crate::providers::Upstream;
use crate::resilience::Health;
use crate::router::RoutingTable;
use arc_swap::ArcSwap;
use std::sync::Arc;

/// Everything a request needs that is derived from one configuration.
pub struct Runtime {
    pub config: Arc<Config>,
    pub table: RoutingTable,
    /// Aligned with `config.deployments`.
    pub upstreams: Vec<Arc<Upstream>>,
    /// Breakers, latency samples, in-flight counts, retry budget.
    pub health: Health,
    /// Unix seconds when this runtime was built (the `created` of listed models).
    pub created: u64,
}

impl Runtime {
    pub fn build(config: Config) -> Result<Runtime, String> {
        let upstreams = config
            .deployments
            .iter()
            .map(|d| {
                Upstream::new(Arc::clone(d))
                    .map(Arc::new)
                    .map_err(|e| format!("deployment '{}': {e}", d.name))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Ok(Runtime {
            table: RoutingTable::build(&config),
            health: Health::new(&config),
            config: Arc::new(config),
            upstreams,
            created,
        })
    }
}

pub struct AppState {
    runtime: ArcSwap<Runtime>,
    /// Keys, limiter, store and usage writer; kept across reloads (limits hold their state).
    pub access: crate::access::Access,
    /// Metrics, ledger, sessions, alerts, traces; kept across reloads.
    pub telemetry: Arc<crate::telemetry::Telemetry>,
    /// The last `/status.json`, served for a second.
    pub status_cache: crate::status::page::Cache,
}

impl AppState {
    /// Publishes a runtime and starts its background tasks (health probes).
    pub fn new(runtime: Runtime) -> Arc<AppState> {
        AppState::with_access(runtime, crate::access::Access::in_memory())
    }

    /// Like [`AppState::new`], with the store, usage writer and limiter the configuration asks
    /// for (`[store]`, `limits.redis_url`) opened first.
    pub async fn open(runtime: Runtime) -> Result<Arc<AppState>, String> {
        let access = crate::access::Access::open(&runtime.config.access).await?;
        Ok(AppState::with_access(runtime, access))
    }

    pub fn with_access(runtime: Runtime, access: crate::access::Access) -> Arc<AppState> {
        let telemetry = crate::telemetry::Telemetry::new(&runtime.config);
        AppState::with_telemetry(runtime, access, telemetry)
    }

    /// Like [`AppState::with_access`], with a telemetry hub built by the caller (a test's clock).
    pub fn with_telemetry(
        runtime: Runtime,
        access: crate::access::Access,
        telemetry: Arc<crate::telemetry::Telemetry>,
    ) -> Arc<AppState> {
        let runtime = Arc::new(runtime);
        runtime.health.attach(&telemetry.events);
        if let Some(metrics) = &telemetry.metrics {
            metrics.configure(&runtime);
        }
        start_background(&runtime);
        if tokio::runtime::Handle::try_current().is_ok() {
            telemetry.start(access.store.clone());
        }
        Arc::new(AppState {
            runtime: ArcSwap::new(runtime),
            access,
            telemetry,
            status_cache: crate::status::page::Cache::default(),
        })
    }

    /// The current runtime; cheap, lock-free.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    /// Replaces the runtime (hot reload). In-flight requests keep the one they started with.
    pub fn replace(&self, runtime: Runtime) {
        let runtime = Arc::new(runtime);
        runtime.health.attach(&self.telemetry.events);
        if let Some(metrics) = &self.telemetry.metrics {
            metrics.configure(&runtime);
        }
        start_background(&runtime);
        self.runtime.store(runtime);
    }
}

/// Probes hold only a weak reference, so they stop once a replaced runtime's last request ends.
fn start_background(runtime: &Arc<Runtime>) {
    if runtime.config.resilience.probes.enabled
        && let Ok(handle) = tokio::runtime::Handle::try_current()
    {
        handle.spawn(crate::resilience::probe::run(Arc::downgrade(runtime)));
    }
}
