//! Budgets across replicas: Redis holds each subject's spend this UTC day and month, added to by
//! every replica's settlement and checked by every replica's admission (`limits::redis`); the
//! store's usage rollups are the durable record. Reconciling raises each Redis counter to at least
//! the rollups' sum, never lowers it (the rollups lag Redis by up to one flush interval), so a
//! Redis that restarted empty, was flushed, or missed settlements while it was unreachable
//! (`on_redis_error = "open"`) goes back to what the store knows.
//!
//! When: once before the first request, then every [`TICK`] if Redis forgot the marker key set by
//! the last reconciliation (it lost its data), if the limiter failed a call since, or every
//! [`FULL_EVERY`] regardless. On the shared link (`[redis]`, `replicas/link.rs`), so it works
//! on one server, behind Sentinel or on a Cluster; each call is bounded by the limiter's timeout.

use crate::auth::Level;
use crate::limits::{Limiters, Period, redis::RedisLimiter};
use crate::store::Store;
use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

const TICK: Duration = Duration::from_secs(5);
const FULL_EVERY: Duration = Duration::from_secs(60);
/// The first reconciliation may hold up the start this long at most.
const AT_START: Duration = Duration::from_secs(5);

/// Raises every subject's Redis spend counters to the rollups' sums; returns how many it raised.
pub(crate) async fn reconcile(redis: &RedisLimiter, store: &Store) -> Result<usize, String> {
    let now = SystemTime::now();
    let mut floors = Vec::new();
    for period in [Period::day_of(now), Period::month_of(now)] {
        for level in [Level::Org, Level::User, Level::Key] {
            let spent = store
                .spend_by(level, period.start_ms())
                .await
                .map_err(|e| format!("cannot read spend from the store: {e}"))?;
            floors.extend(spent.into_iter().map(|(id, usd)| (level, id, period, usd)));
        }
    }
    redis.raise_spend(&floors, now).await
}

pub(super) async fn once_at_start(redis: &RedisLimiter, store: &Store) {
    match tokio::time::timeout(AT_START, reconcile(redis, store)).await {
        Ok(Ok(raised)) => tracing::debug!(raised, "budgets reconciled with the store"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "budgets could not be reconciled with the store at start; retrying in the background")
        }
        Err(_) => tracing::warn!(
            "reconciling budgets with the store at start timed out; retrying in the background"
        ),
    }
}

pub(super) async fn run(limiter: Weak<Limiters>, store: Store) {
    let mut last_full = Instant::now();
    let mut failures_seen = None;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(limiter) = limiter.upgrade() else {
            return;
        };
        let Limiters::Redis(redis) = &*limiter else {
            return;
        };
        let failures = redis.stats.failures.load(Ordering::Relaxed);
        let due = last_full.elapsed() >= FULL_EVERY
            || failures_seen != Some(failures)
            || !redis.reconciled_marker().await.unwrap_or(true);
        if !due {
            continue;
        }
        match reconcile(redis, &store).await {
            Ok(raised) => {
                last_full = Instant::now();
                failures_seen = Some(failures);
                if raised > 0 {
                    tracing::info!(
                        raised,
                        "budget counters in Redis raised to the store's spend"
                    );
                }
            }
            // Redis or the store is down: their own counters say so; try again next tick.
            Err(e) => tracing::debug!(error = %e, "budgets not reconciled"),
        }
    }
}
