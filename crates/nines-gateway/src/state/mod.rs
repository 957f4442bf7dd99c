//! Shared state: the current runtime (config, routing table, upstream clients) behind `ArcSwap`,
//! so every request reads it without a lock and a reload swaps it whole (`reload.rs`, from a
//! signal, the admin API or a file watch, `watch.rs`); and where the process is in its life
//! (`lifecycle.rs`), which the server moves forward on shutdown.

pub mod lifecycle;
pub mod notices;
mod reload;
pub mod watch;

pub use lifecycle::{Lifecycle, Phase};
pub use reload::{ConfigSource, ReloadError, Reloaded};

use crate::auth::StaticKeys;
use crate::config::Config;
use crate::providers::Upstream;
use crate::replicas::{SharedStats, View};
use crate::resilience::Health;
use crate::resilience::shared::Coordination;
use crate::router::RoutingTable;
use crate::store::ledger_writer::LedgerWriter;
use arc_swap::ArcSwap;
use bytes::Bytes;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Everything a request needs that is derived from one configuration. A request loads it once
/// and keeps it to its end, so a reload never mixes two configurations inside one request.
pub struct Runtime {
    pub config: Arc<Config>,
    pub table: RoutingTable,
    /// Aligned with `config.deployments`.
    pub upstreams: Vec<Arc<Upstream>>,
    /// Breakers, latency samples, in-flight counts, retry budget. Probes hold it weakly, so they
    /// stop once a replaced runtime's last request ended.
    pub health: Arc<Health>,
    /// The configuration's static keys, by hash.
    pub static_keys: StaticKeys,
    /// Unix seconds when this runtime was built (the `created` of listed models).
    pub created: u64,
}

impl Runtime {
    pub fn build(config: Config) -> Result<Runtime, String> {
        let health = Health::new(&config);
        Runtime::with_health(config, health)
    }

    /// The runtime of a reloaded configuration: what `previous` learned about deployments and
    /// key slots that did not change is kept (`Health::succeeding`).
    pub fn succeeding(config: Config, previous: &Runtime) -> Result<Runtime, String> {
        let health = Health::succeeding(&previous.health, &previous.config, &config);
        Runtime::with_health(config, health)
    }

    fn with_health(config: Config, health: Health) -> Result<Runtime, String> {
        let upstreams = config
            .deployments
            .iter()
            .map(|d| {
                Upstream::new(Arc::clone(d))
                    .map(Arc::new)
                    .map_err(|e| format!("deployment '{}': {e}", d.name))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Runtime {
            table: RoutingTable::build(&config),
            health: Arc::new(health),
            static_keys: StaticKeys::index(&config.access.auth),
            config: Arc::new(config),
            upstreams,
            created: crate::clock::unix_secs(),
        })
    }
}

pub struct AppState {
    runtime: ArcSwap<Runtime>,
    /// Keys, limiter, store and usage writer; kept across reloads (limits hold their state).
    pub access: crate::access::Access,
    /// Metrics, ledger, sessions, alerts, traces; kept across reloads.
    pub telemetry: Arc<crate::telemetry::Telemetry>,
    /// Copies the availability ledger into the store (with a store and the ledger on).
    pub ledger_writer: Option<Arc<LedgerWriter>>,
    /// The last `/status.json` (private view), served for a second.
    pub status_cache: Memo,
    /// The last `/status.json` (public view), served for a second.
    pub public_status_cache: Memo,
    /// Operator notices (incident updates, maintenance) on the status page.
    pub notices: Arc<crate::state::notices::NoticeBoard>,
    /// Serving, draining, closing or cutting; requests in flight.
    pub lifecycle: Lifecycle,
    /// Responses API conversations for `previous_response_id` (with a store only).
    pub conversations: Option<Arc<crate::conversations::Conversations>>,
    /// The file the configuration is reloaded from, once the binary said which.
    source: std::sync::OnceLock<ConfigSource>,
    /// One reload at a time.
    reloading: std::sync::Mutex<()>,
    /// Whether breakers and probes are shared with other replicas right now.
    pub coordination: Arc<Coordination>,
    /// Breaker state shared through Redis (`[redis]`), once started.
    pub shared_health: std::sync::OnceLock<Arc<SharedStats>>,
}

/// What the end of the process wrote out.
#[derive(Debug, Clone, Copy, Default)]
pub struct Flushed {
    /// Usage records still queued after waiting (0: all written).
    pub usage_pending: u64,
    /// Requests whose usage rollups could not be written (0: all written).
    pub rollups_pending: u64,
    /// Ledger rows written by the final flush (`None`: no store, or it failed).
    pub ledger_rows: Option<usize>,
    /// Sessions ended and counted.
    pub sessions: usize,
}

impl AppState {
    /// Publishes a runtime and starts its background tasks (health probes).
    pub fn new(runtime: Runtime) -> Arc<AppState> {
        AppState::with_access(runtime, crate::access::Access::in_memory())
    }

    /// Like [`AppState::new`], with the store, usage writer and limiter the configuration asks
    /// for (`[store]`, `limits.redis_url`) opened first.
    pub async fn open(runtime: Runtime) -> Result<Arc<AppState>, String> {
        let access =
            crate::access::Access::open(&runtime.config.access, runtime.config.redis.as_ref())
                .await?;
        let state = AppState::with_access(runtime, access);
        state.share_health();
        Ok(state)
    }

    /// With a shared Redis: breaker state, probe leases and prober leases are shared with other
    /// replicas from now on (`crate::replicas::breakers`).
    pub fn share_health(self: &Arc<Self>) {
        let Some(link) = &self.access.redis else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_err() || self.shared_health.get().is_some() {
            return;
        }
        let state = Arc::downgrade(self);
        let source: crate::replicas::Source = Arc::new(move || {
            let runtime = state.upgrade()?.runtime();
            Some(View {
                health: Arc::clone(&runtime.health),
                deployments: runtime
                    .config
                    .deployments
                    .iter()
                    .map(|d| d.name.clone())
                    .collect(),
            })
        });
        let stats = crate::replicas::breakers::start(
            Arc::clone(link),
            Arc::clone(&self.coordination),
            &self.telemetry.events,
            source,
        );
        let _ = self.shared_health.set(stats);
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
        let coordination = Arc::new(Coordination::default());
        runtime.health.attach(&telemetry.events, &coordination);
        if let Some(metrics) = &telemetry.metrics {
            metrics.configure(
                &runtime.config,
                runtime.table.names().iter().map(String::as_str),
            );
        }
        start_background(&runtime, &coordination);
        let ledger_writer = match (&telemetry.ledger, &access.store) {
            (Some(ledger), Some(store)) => Some(Arc::new(
                LedgerWriter::new(
                    Arc::clone(ledger),
                    store.clone(),
                    runtime.config.telemetry.flush_interval,
                )
                .with_spool(access.spool.clone()),
            )),
            _ => None,
        };
        let notices = Arc::new(crate::state::notices::NoticeBoard::new(
            access.store.clone(),
        ));
        if tokio::runtime::Handle::try_current().is_ok() {
            telemetry.start();
            if let Some(writer) = &ledger_writer {
                tokio::spawn(crate::store::ledger_writer::run(Arc::downgrade(writer)));
            }
            if access.store.is_some() {
                tokio::spawn(crate::state::notices::run(
                    Arc::downgrade(&notices),
                    telemetry.clock,
                ));
            }
        }
        let conversations = access
            .store
            .clone()
            .map(|store| Arc::new(crate::conversations::Conversations::new(store)));
        Arc::new(AppState {
            conversations,
            runtime: ArcSwap::new(runtime),
            access,
            telemetry,
            ledger_writer,
            status_cache: Memo::default(),
            public_status_cache: Memo::default(),
            notices,
            lifecycle: Lifecycle::default(),
            source: std::sync::OnceLock::new(),
            reloading: std::sync::Mutex::new(()),
            coordination,
            shared_health: std::sync::OnceLock::new(),
        })
    }

    /// At shutdown, after the server stopped: usage rollups and queued usage records go to the
    /// store, live sessions are counted, the ledger's changes since its last flush are written
    /// and trace spans are sent, each waiting at most `within`.
    pub async fn shutdown(&self, within: std::time::Duration) -> Flushed {
        self.access.drain(within).await;
        let mut flushed = Flushed {
            usage_pending: self.access.usage.as_ref().map_or(0, |u| {
                u.stats.pending.load(std::sync::atomic::Ordering::Relaxed)
            }),
            rollups_pending: self.access.accounting.as_ref().map_or(0, |a| {
                a.stats.pending.load(std::sync::atomic::Ordering::Relaxed)
            }),
            sessions: self.telemetry.shutdown(within).await,
            ledger_rows: None,
        };
        if let Some(writer) = &self.ledger_writer {
            match tokio::time::timeout(within, writer.flush()).await {
                Ok(Ok(rows)) => flushed.ledger_rows = Some(rows),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "availability ledger could not be flushed at shutdown")
                }
                Err(_) => tracing::warn!("availability ledger flush at shutdown timed out"),
            }
        }
        flushed
    }

    /// Drops the cached `/status.json` bodies, so the next page shows a change at once (a notice
    /// posted or resolved).
    pub fn forget_status(&self) {
        self.status_cache.clear();
        self.public_status_cache.clear();
    }

    /// The current runtime; cheap, lock-free.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    /// Replaces the runtime (hot reload). In-flight requests keep the one they started with.
    pub fn replace(&self, runtime: Runtime) {
        let runtime = Arc::new(runtime);
        runtime
            .health
            .attach(&self.telemetry.events, &self.coordination);
        if let Some(metrics) = &self.telemetry.metrics {
            metrics.configure(
                &runtime.config,
                runtime.table.names().iter().map(String::as_str),
            );
        }
        if let Some(alerts) = &self.telemetry.alerts {
            alerts.set_objectives(crate::config::slo::by_route(&runtime.config.models));
        }
        start_background(&runtime, &self.coordination);
        self.runtime.store(runtime);
    }
}

/// Starts the runtime's health probes.
fn start_background(runtime: &Arc<Runtime>, coordination: &Arc<Coordination>) {
    let probes = runtime.config.resilience.probes;
    if probes.enabled
        && let Ok(handle) = tokio::runtime::Handle::try_current()
    {
        handle.spawn(crate::resilience::probe::run(
            Arc::downgrade(&runtime.health),
            runtime.upstreams.clone(),
            probes,
            runtime.config.resilience.max_retry_after,
            Arc::clone(coordination),
        ));
    }
}

/// A body built at most once per `max_age` (the status page's JSON), and when it was built.
#[derive(Debug, Default)]
pub struct Memo(Mutex<Option<(Instant, Bytes)>>);

impl Memo {
    /// The cached body while it is younger than `max_age`, else a new one from `build`. Callers
    /// that arrive while one builds wait for it rather than building too.
    /// Forgets the body: the next call builds one.
    pub fn clear(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    pub fn get_or_build(&self, max_age: Duration, build: impl FnOnce() -> Bytes) -> Bytes {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if let Some((at, body)) = slot.as_ref()
            && now.saturating_duration_since(*at) < max_age
        {
            return body.clone();
        }
        let body = build();
        *slot = Some((now, body.clone()));
        body
    }
}
