//! The access stages of the request path: who is calling (`auth/`), whether they may (the model
//! allow-list, `limits/`), and, when the request ends, what it cost them.
//!
//! | stage  | runs                               | default (no `[auth]`, no limits, no `[store]`) |
//! |--------|------------------------------------|-----------------------------------------------|
//! | auth   | before anything is planned         | anonymous                                     |
//! | admit  | after auth, before any upstream    | nothing to check                              |
//! | settle | when the request ends (streams: when the stream ends or the client leaves) | — |
//!
//! [`Access::admit`] returns an [`Admission`]: the identity, what the limiter reserved and the
//! `x-ratelimit-*` headers. The request carries it to its one end (`request::end`), which calls
//! [`Admission::settle`] once: the unused token reservation is returned and the cost charged to
//! the budgets. Refusals are [`AccessError`]s.

mod error;
mod reconcile;
mod usage;

pub use error::AccessError;
pub use usage::usage_of;

use crate::auth::signing::{Signer, random_secret};
use crate::auth::{Authenticator, Identity, StaticKeys};
use crate::config::access::{Access as AccessConfig, LimitsConfig, RequestRecords};
use crate::config::redis::RedisConfig;
use crate::config::{Price, Secret};
use crate::limits::{
    self, Admitted, Limiter, Limiters, Plan, RateHeaders, Refusal, Reservation,
    memory::MemoryLimiter, redis::RedisLimiter,
};
use crate::replicas::RedisLink;
use crate::store::spool::Spool;
use crate::store::usage::WriterSettings;
use crate::store::{Accounting, Store, UsageWriter};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Identity, limiter, store, usage accounting and writer: shared by every request, kept across
/// reloads.
pub struct Access {
    pub auth: Arc<Authenticator>,
    pub limiter: Arc<Limiters>,
    pub store: Option<Store>,
    /// Per-minute usage rollups (every request, when there is a store).
    pub accounting: Option<Arc<Accounting>>,
    /// Per-request detail records (`store.request_records`; `None` when `off`).
    pub usage: Option<UsageWriter>,
    /// What the store could not take yet, on disk (`store::spool`), with a `[store]`.
    pub spool: Option<Arc<Spool>>,
    /// False while a store unreachable at start has not been migrated (and so not answered).
    pub store_ready: Arc<std::sync::atomic::AtomicBool>,
    /// Signs video job ids and status page sessions (`auth::signing`).
    pub signer: Signer,
    /// The shared Redis (`[redis]`), when configured: limits live there, and replicas share
    /// breaker state and leases through it (`crate::replicas`).
    pub redis: Option<Arc<RedisLink>>,
}

/// What admission needs to know of a request.
#[derive(Clone, Copy)]
pub struct Ask<'a> {
    pub credential: Option<&'a Secret>,
    pub model: &'a str,
    /// Bytes of the prompt (`messages` JSON; embeddings: the body).
    pub prompt_bytes: usize,
    /// The client's `max_tokens`, if any (embeddings: `Some(0)`).
    pub max_output: Option<u64>,
    /// The highest price a deployment that may serve the request charges; asked only when a
    /// budget applies (the reservation's price).
    pub price_ceiling: &'a (dyn Fn() -> Price + Sync),
}

/// An admitted request's access state, until it ends.
pub struct Admission {
    pub identity: Arc<Identity>,
    /// `x-ratelimit-*` for the response.
    pub headers: RateHeaders,
    reservation: Reservation,
    /// Prompt and output tokens assumed at admission.
    estimate: (u64, u64),
    limiter: Arc<Limiters>,
}

/// Tokens an answer reported.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
}

/// What settling a request found: its usage (reported, or the admission estimate) and cost.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Settled {
    pub usage: Usage,
    /// The usage is the admission estimate: the answer reported none.
    pub estimated: bool,
    /// USD.
    pub cost: f64,
}

impl Access {
    /// No store, limits in memory: what a config without `[store]` and `redis_url` gets.
    pub fn in_memory() -> Access {
        Access::with_parts(None, Limiters::Memory(MemoryLimiter::new()), None)
    }

    pub fn with_parts(
        store: Option<Store>,
        limiter: Limiters,
        usage: Option<UsageWriter>,
    ) -> Access {
        Access {
            auth: Arc::new(Authenticator::new(store.clone())),
            limiter: Arc::new(limiter),
            store,
            accounting: None,
            usage,
            spool: None,
            store_ready: Arc::new(std::sync::atomic::AtomicBool::new(true)),
            signer: Signer::random(),
            redis: None,
        }
    }

    /// Opens what the configuration asks for: the store (migrations applied), the spool and its
    /// replayer, the usage writer, the Redis limiter. Spend so far this day and month is loaded
    /// into a memory limiter so a restart keeps budgets.
    ///
    /// A Postgres store that cannot be reached is no reason not to start: the gateway serves
    /// keys declared in the config (and virtual keys once the store answers), spools what it
    /// must write, migrates the store in the background once it answers, and says so on
    /// `/health/ready`. Budgets then count only this process's spend until the next start, and
    /// without `auth.signing_secret` this replica signs with a secret of its own (warned).
    pub async fn open(
        config: &AccessConfig,
        redis: Option<&RedisConfig>,
    ) -> Result<Access, String> {
        let (store, migrated) = match &config.store {
            Some(s) => {
                let (store, migrated) = Store::open_or_later(s)
                    .await
                    .map_err(|e| format!("cannot open the store: {e}"))?;
                (Some(store), migrated)
            }
            None => (None, true),
        };
        let spool = match &config.store {
            Some(s) => Some(Arc::new(
                Spool::open(&s.spool_dir, s.spool_max_bytes)
                    .map_err(|e| format!("store.spool_dir {}: {e}", s.spool_dir.display()))?,
            )),
            None => None,
        };
        let redis = redis.map(RedisLink::open).transpose()?;
        let limiter = limiter_for(&config.limits, redis.as_ref());
        if migrated && let (Limiters::Memory(memory), Some(store)) = (&limiter, &store) {
            seed_spend(memory, store).await?;
        }
        let usage = match (&store, &config.store) {
            (Some(_), Some(c)) if c.request_records == RequestRecords::Off => None,
            (Some(store), Some(c)) => {
                let (writer, _task) = UsageWriter::spawn(
                    Arc::new(store.clone()) as Arc<dyn crate::store::UsageSink>,
                    WriterSettings::from(c),
                    spool.clone(),
                );
                Some(writer)
            }
            _ => None,
        };
        let signer = match (&config.auth.signing_secret, &store) {
            (Some(secret), _) => Signer::new(secret.expose().as_bytes()),
            (None, Some(store)) if migrated => {
                let shared = store
                    .setting_or("signing_secret", &random_secret())
                    .await
                    .map_err(|e| format!("cannot read the signing secret from the store: {e}"))?;
                Signer::new(shared.as_bytes())
            }
            (None, Some(_)) => {
                tracing::warn!(
                    "the store is unreachable: video job ids and status page sessions are signed with this replica's own secret until restart (set auth.signing_secret to share one)"
                );
                Signer::random()
            }
            (None, None) => Signer::random(),
        };
        let accounting = match (&store, &config.store) {
            (Some(store), Some(c)) => Some(Accounting::spawn(
                Arc::new(store.clone()) as Arc<dyn crate::store::accounting::RollupSink>,
                c.flush_interval,
            )),
            _ => None,
        };
        let mut access = Access::with_parts(store, limiter, usage);
        access.accounting = accounting;
        access.signer = signer;
        access.spool = spool;
        access.redis = redis;
        access
            .store_ready
            .store(migrated, std::sync::atomic::Ordering::Relaxed);
        if let Some(store) = &access.store {
            tokio::spawn(start_store(
                store.clone(),
                Arc::clone(&access.store_ready),
                access.spool.as_ref().map(Arc::downgrade),
            ));
        }
        if let (Limiters::Redis(redis), Some(store)) = (&*access.limiter, &access.store) {
            // Before the first request (when the store answered at start), so a Redis that lost
            // its counters cannot admit spend the store already knows of; then in the background.
            if migrated {
                reconcile::once_at_start(redis, store).await;
            }
            tokio::spawn(reconcile::run(
                Arc::downgrade(&access.limiter),
                store.clone(),
            ));
        }
        if let (Some(link), Some(_)) = (&access.redis, &access.store) {
            access.auth.share_changes(
                Arc::clone(link),
                crate::auth::broadcast::channel(&config.limits.redis_prefix),
            );
        }
        Ok(access)
    }

    /// Waits (at most `within`) for the usage rollups and queued usage records to reach the
    /// store: call after the server stopped.
    pub async fn drain(&self, within: Duration) {
        if let Some(accounting) = &self.accounting {
            match tokio::time::timeout(within, accounting.flush()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "usage rollups could not be written at shutdown")
                }
                Err(_) => tracing::warn!("writing the usage rollups at shutdown timed out"),
            }
        }
        if let Some(usage) = &self.usage {
            usage.drain(within).await;
        }
    }

    /// Authentication's counters as plain series for `/metrics` (`docs/metrics.md`).
    pub fn plain_metrics(&self) -> Vec<crate::telemetry::metrics::Plain> {
        use crate::telemetry::metrics::Plain;
        use std::sync::atomic::Ordering::Relaxed;
        let a = &self.auth.stats;
        let counter = |name, help, n: &std::sync::atomic::AtomicU64| Plain {
            name,
            kind: "counter",
            help,
            value: n.load(Relaxed) as f64,
        };
        let mut out = Vec::new();
        if let Some(spool) = &self.spool {
            let s = &spool.stats;
            out.extend([
                counter("nines_spool_records_total", "Records (usage records, ledger deltas) written to the on-disk spool because the store could not take them.", &s.spooled),
                counter("nines_spool_replayed_records_total", "Spooled records written to the store by replay.", &s.replayed),
                counter("nines_spool_dropped_records_total", "Records the spool dropped: refused because store.spool_max_bytes was reached, or unreadable at replay (a batch cut short by a crash counts 1).", &s.dropped),
                Plain { name: "nines_spool_bytes", kind: "gauge", help: "Bytes the spool holds on disk.", value: s.bytes.load(Relaxed) as f64 },
                Plain { name: "nines_spool_pending_batches", kind: "gauge", help: "Batches waiting in the spool for the store.", value: s.pending_batches.load(Relaxed) as f64 },
            ]);
        }
        if self.store.is_some() {
            out.extend([
                counter("nines_auth_store_lookups_total", "Virtual key lookups sent to the key store.", &a.store_lookups),
                counter("nines_auth_store_failures_total", "Virtual key lookups that failed or timed out.", &a.store_failures),
                counter("nines_auth_stale_grants_total", "Requests let through on a cached key past auth.cache_ttl because the key store could not answer (up to auth.stale_ttl).", &a.stale_grants),
                counter("nines_auth_negative_hits_total", "Requests answered 401 from the cache of keys the store does not know.", &a.known_unknown),
                counter("nines_auth_malformed_total", "Credentials refused for their shape without asking the key store.", &a.malformed),
                counter("nines_auth_unavailable_total", "Requests answered 503 at once: a key not cached here while the key store is down.", &a.unavailable),
                Plain {
                    name: "nines_auth_store_up",
                    kind: "gauge",
                    help: "1 while key lookups reach the key store, 0 while they find it down.",
                    value: if self.auth.store_down_since().is_some() { 0.0 } else { 1.0 },
                },
            ]);
        }
        out
    }

    /// Auth alone, for routes without admission (model lists, video jobs).
    pub async fn authorize(
        &self,
        config: &AccessConfig,
        statics: &StaticKeys,
        credential: Option<&Secret>,
    ) -> Result<Arc<Identity>, AccessError> {
        Ok(self
            .auth
            .authenticate(&config.auth, statics, credential)
            .await?)
    }

    /// Auth, the model allow-list, then admission by the limits. A refusal by the allow-list or
    /// the limits still yields the identity (the caller records the refusal under the key that
    /// asked).
    pub async fn admit(
        &self,
        config: &AccessConfig,
        statics: &StaticKeys,
        ask: Ask<'_>,
    ) -> Result<Admission, (AccessError, Option<Arc<Identity>>)> {
        let identity = self
            .authorize(config, statics, ask.credential)
            .await
            .map_err(|e| (e, None))?;
        if !identity.allows(ask.model) {
            let refused = AccessError::ModelNotAllowed {
                model: ask.model.to_owned(),
            };
            return Err((refused, Some(identity)));
        }
        let output = ask
            .max_output
            .unwrap_or(config.limits.default_max_output_tokens);
        let prompt = limits::estimate_tokens(ask.prompt_bytes, Some(0), 0);
        let mut plan = Plan::new(
            &identity,
            ask.model,
            prompt.saturating_add(output),
            SystemTime::now(),
        );
        if !plan.spends.is_empty() {
            plan.spend_reserve = cost_of(
                Usage {
                    input: prompt,
                    output,
                },
                (ask.price_ceiling)(),
            );
        }
        let admitted = if plan.is_empty() {
            Admitted {
                reservation: Reservation::default(),
                headers: RateHeaders::default(),
            }
        } else {
            match self.limiter.admit(&plan).await {
                Ok(a) => a,
                Err(refusal) => {
                    let error = match refusal {
                        Refusal::Limited(denied) => AccessError::Limited(denied),
                        Refusal::Unavailable(why) => AccessError::Unavailable(why),
                    };
                    return Err((error, Some(identity)));
                }
            }
        };
        Ok(Admission {
            identity,
            headers: admitted.headers,
            reservation: admitted.reservation,
            estimate: (prompt, output),
            limiter: Arc::clone(&self.limiter),
        })
    }
}

impl Admission {
    /// Settles the request, once, at its end: `served` at `price` with the `reported` usage (or,
    /// served without a report, the admission estimate), or not served (nothing charged). The
    /// unused token reservation goes back; the cost goes to the budgets.
    pub fn settle(self, served: Option<Price>, reported: Option<Usage>) -> Settled {
        let (usage, estimated) = match (reported, served) {
            (Some(u), _) => (u, false),
            // Served but no usage reported: the estimate is the best there is.
            (None, Some(_)) => (
                Usage {
                    input: self.estimate.0,
                    output: self.estimate.1,
                },
                true,
            ),
            (None, None) => (Usage::default(), false),
        };
        let cost = served.map_or(0.0, |p| cost_of(usage, p));
        let actual = (!estimated).then_some(usage.input.saturating_add(usage.output));
        if !self.reservation.is_empty() {
            match &*self.limiter {
                Limiters::Memory(m) => m.settle_now(&self.reservation, actual, cost),
                Limiters::Redis(_) => {
                    let limiter = Arc::clone(&self.limiter);
                    let reservation = self.reservation;
                    if let Ok(handle) = tokio::runtime::Handle::try_current() {
                        handle.spawn(async move {
                            limiter.settle(&reservation, actual, cost).await;
                        });
                    }
                }
            }
        }
        Settled {
            usage,
            estimated,
            cost,
        }
    }
}

/// USD for `usage` at `price` (per million tokens).
fn cost_of(usage: Usage, price: Price) -> f64 {
    (usage.input as f64 * price.input + usage.output as f64 * price.output) / 1_000_000.0
}

/// Migrates a store that was unreachable at start (retrying every 2 s until it answers), then
/// replays the spool for as long as the process runs.
async fn start_store(
    store: Store,
    ready: Arc<std::sync::atomic::AtomicBool>,
    spool: Option<std::sync::Weak<Spool>>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    while !ready.load(Relaxed) {
        match store.migrate().await {
            Ok(()) => {
                ready.store(true, Relaxed);
                tracing::info!("the store answers now: migrations applied");
            }
            Err(_) => tokio::time::sleep(Duration::from_secs(2)).await,
        }
    }
    if let Some(spool) = spool {
        crate::store::spool::replay(spool, store).await;
    }
}

fn limiter_for(config: &LimitsConfig, redis: Option<&Arc<RedisLink>>) -> Limiters {
    match redis {
        Some(link) => Limiters::Redis(RedisLimiter::new(Arc::clone(link), config)),
        None => Limiters::Memory(MemoryLimiter::new()),
    }
}

async fn seed_spend(memory: &MemoryLimiter, store: &Store) -> Result<(), String> {
    use crate::auth::Level;
    let now = SystemTime::now();
    for period in [limits::Period::day_of(now), limits::Period::month_of(now)] {
        for level in [Level::Org, Level::User, Level::Key] {
            let spent = store
                .spend_by(level, period.start_ms())
                .await
                .map_err(|e| format!("cannot read spend from the store: {e}"))?;
            for (id, usd) in spent {
                memory.seed_spend(level, &id, period, usd);
            }
        }
    }
    Ok(())
}

/// Whether a credential is the configured admin key (compared by hash, in constant time).
pub fn is_admin(config: &AccessConfig, credential: Option<&Secret>) -> bool {
    let (Some(admin), Some(given)) = (&config.auth.admin_key, credential) else {
        return false;
    };
    let a = crate::auth::hash_key(admin.expose());
    let b = crate::auth::hash_key(given.expose());
    a.bytes()
        .zip(b.bytes())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
        && a.len() == b.len()
}
