//! Breaker state shared between replicas through Redis.
//!
//! A transition of a breaker here (opened, half-open, closed) is published on the channel
//! `{prefix}:breakers` and kept under `{prefix}:breaker:<key slot>` (an open state until its
//! period ends, a half-open one for a few probe leases; a close deletes it). Every replica
//! subscribes and applies what others published (`Breaker::apply_remote`, which never reports
//! again: no echo), and logs how long after the transition it applied it (`lag_ms`, the wall
//! clocks of one host or NTP-synchronised ones). A replica that subscribes — at start, or again
//! after Redis came back — first reads the kept states, so it does not start blind.
//!
//! Leases (`lease.rs`): a breaker whose cooldown ended asks for `{prefix}:lease:probe:<slot>`;
//! the replica that gets it goes half-open and probes, the others hold back. A request that
//! wants to probe an open slot early asks for `{prefix}:lease:early:<slot>`, taken only if free
//! for one `early_probe_interval` and never renewed: one early probe per slot per interval across
//! all replicas; a refusal (or a Redis error) sends the waiting requests on at once. Every
//! replica also tries to hold `{prefix}:lease:prober:<deployment>` for each deployment, renewed
//! every third of `probe_lease`; the holder is the deployment's one active prober.
//!
//! Redis down (the subscription broke, or a `PING` failed): `Coordination` says "local", and
//! every breaker and prober works alone, as on a single replica, until the subscription is back;
//! `/health/ready` and `nines_redis_up` say so.

use super::lease;
use super::link::RedisLink;
use crate::clock::Clock;
use crate::resilience::Health;
use crate::resilience::breaker::{Breaker, Remote};
use crate::resilience::events::{BreakerEvent, EventSink, Transition};
use crate::resilience::shared::Coordination;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::time::Instant;

/// How often leases are looked at (half-open probe leases are also asked for on demand).
const LEASE_TICK: Duration = Duration::from_millis(100);
/// How soon a broken subscription is tried again.
const RESUBSCRIBE: Duration = Duration::from_millis(500);

/// What a replica needs of the current runtime: its health and its deployments' names.
pub struct View {
    pub health: Arc<Health>,
    pub deployments: Vec<String>,
}

/// The current runtime's view, or `None` once the process is going away.
pub type Source = Arc<dyn Fn() -> Option<View> + Send + Sync>;

/// Counters for `/metrics` and `/health/ready`.
#[derive(Debug, Default)]
pub struct SharedStats {
    /// Subscribed and answering: breakers are shared.
    pub up: AtomicBool,
    /// Redis was tried at least once (before that, readiness says `connecting`).
    pub tried: AtomicBool,
    subscribed: AtomicBool,
    reachable: AtomicBool,
    pub published: AtomicU64,
    pub applied: AtomicU64,
    /// Publications, reads and lease calls that failed.
    pub errors: AtomicU64,
}

/// One transition as published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Message {
    /// The publishing replica.
    origin: String,
    slot: String,
    /// `opened`, `half_open` or `closed`.
    transition: String,
    /// Open until (Unix ms); 0 otherwise.
    #[serde(default)]
    until_ms: u64,
    #[serde(default)]
    hinted: bool,
    #[serde(default)]
    trips: u32,
    /// When it happened (Unix ms).
    at_ms: u64,
}

/// Shares breaker state through `link` from now on; returns the counters.
pub fn start(
    link: Arc<RedisLink>,
    coordination: Arc<Coordination>,
    events: &EventSink,
    source: Source,
) -> Arc<SharedStats> {
    let stats = Arc::new(SharedStats::default());
    let clock = events.clock();
    tokio::spawn(publish(
        Arc::clone(&link),
        events.subscribe(),
        Arc::clone(&source),
        Arc::clone(&stats),
    ));
    tokio::spawn(subscribe(
        Arc::clone(&link),
        Arc::clone(&coordination),
        clock,
        Arc::clone(&source),
        Arc::clone(&stats),
    ));
    tokio::spawn(leases(link, coordination, source, Arc::clone(&stats)));
    stats
}

fn channel(link: &RedisLink) -> String {
    format!("{}:breakers", link.tag())
}

fn state_key(link: &RedisLink, slot: &str) -> String {
    format!("{}:breaker:{slot}", link.tag())
}

/// Breakers are shared while the subscription is live and Redis answers.
fn refresh(stats: &SharedStats, coordination: &Coordination) {
    let up = stats.subscribed.load(Ordering::Acquire) && stats.reachable.load(Ordering::Acquire);
    let was = stats.up.swap(up, Ordering::AcqRel);
    coordination.set_shared(up);
    if was != up {
        if up {
            tracing::info!("breaker state shared with other replicas through redis");
        } else {
            tracing::warn!(
                "redis unreachable: breakers and probes decide on this replica alone until it is back"
            );
        }
    }
}

/// Publishes every local transition.
async fn publish(
    link: Arc<RedisLink>,
    mut events: broadcast::Receiver<BreakerEvent>,
    source: Source,
    stats: Arc<SharedStats>,
) {
    loop {
        let event = match events.recv().await {
            Ok(event) => event,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "breaker publication fell behind");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let Some(view) = source() else { return };
        let shared = view
            .health
            .breaker_by_alias(&event.key_slot)
            .map(|b| b.shared_state());
        drop(view);
        let message = Message {
            origin: link.replica.clone(),
            slot: event.key_slot.clone(),
            transition: event.transition.as_str().to_owned(),
            until_ms: match &event.transition {
                Transition::Opened { until_ms, .. } => *until_ms,
                _ => 0,
            },
            hinted: shared.is_some_and(|s| s.hinted),
            trips: shared.map_or(0, |s| s.trips),
            at_ms: event.at_ms,
        };
        if let Err(e) = send(&link, &message).await {
            stats.errors.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(error = %e, key_slot = %message.slot, "breaker transition not published");
        } else {
            stats.published.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn send(link: &RedisLink, message: &Message) -> Result<(), String> {
    let text = serde_json::to_string(message).map_err(|e| e.to_string())?;
    let key = state_key(link, &message.slot);
    let now_ms = Clock::system().now_ms();
    // Kept while it matters: an open state until a minute past its end, a half-open one for
    // three leases (a probe that outlives them was abandoned).
    let keep_ms = match message.transition.as_str() {
        "opened" => message.until_ms.saturating_sub(now_ms) + 60_000,
        "half_open" => 3 * link.config.probe_lease.as_millis() as u64,
        _ => 0,
    };
    if keep_ms > 0 {
        let mut set = redis::cmd("SET");
        set.arg(&key).arg(&text).arg("PX").arg(keep_ms);
        link.query::<()>(&set).await?;
    } else {
        link.query::<()>(redis::cmd("DEL").arg(&key)).await?;
    }
    link.query::<i64>(redis::cmd("PUBLISH").arg(channel(link)).arg(&text))
        .await?;
    if message.transition != "half_open" {
        // The probe is over: the next cooldown's probe must not wait for this lease to expire.
        lease::release(link, &lease::key(link, &format!("probe:{}", message.slot))).await?;
    }
    Ok(())
}

/// Applies what other replicas publish; reads the kept states first, again after every
/// reconnection.
async fn subscribe(
    link: Arc<RedisLink>,
    coordination: Arc<Coordination>,
    clock: Clock,
    source: Source,
    stats: Arc<SharedStats>,
) {
    loop {
        if source().is_none() {
            return;
        }
        match link.pubsub().await {
            Ok(mut pubsub) => match pubsub.subscribe(channel(&link)).await {
                Ok(()) => {
                    if let Err(e) = catch_up(&link, clock, &source, &stats).await {
                        tracing::warn!(error = %e, "could not read the shared breaker states");
                    }
                    stats.subscribed.store(true, Ordering::Release);
                    refresh(&stats, &coordination);
                    let mut messages = pubsub.on_message();
                    while let Some(msg) = messages.next().await {
                        let Ok(text) = msg.get_payload::<String>() else {
                            continue;
                        };
                        apply_text(&link, clock, &source, &stats, &text);
                    }
                    stats.subscribed.store(false, Ordering::Release);
                    refresh(&stats, &coordination);
                }
                Err(e) => tracing::debug!(error = %e, "redis subscription failed"),
            },
            Err(e) => tracing::debug!(error = %e, "redis pub/sub connection failed"),
        }
        tokio::time::sleep(RESUBSCRIBE).await;
    }
}

/// Reads the states kept for this configuration's key slots and applies them.
async fn catch_up(
    link: &RedisLink,
    clock: Clock,
    source: &Source,
    stats: &SharedStats,
) -> Result<(), String> {
    let Some(view) = source() else {
        return Ok(());
    };
    let slots: Vec<String> = view
        .health
        .breakers
        .iter()
        .flatten()
        .map(|b| b.alias().to_owned())
        .collect();
    drop(view);
    if slots.is_empty() {
        return Ok(());
    }
    let mut mget = redis::cmd("MGET");
    for slot in &slots {
        mget.arg(state_key(link, slot));
    }
    let kept: Vec<Option<String>> = link.query(&mget).await?;
    for text in kept.into_iter().flatten() {
        apply_text(link, clock, source, stats, &text);
    }
    Ok(())
}

fn apply_text(link: &RedisLink, clock: Clock, source: &Source, stats: &SharedStats, text: &str) {
    let Ok(message) = serde_json::from_str::<Message>(text) else {
        tracing::debug!("ignored a breaker message that is not one");
        return;
    };
    if message.origin == link.replica {
        return;
    }
    let now_ms = clock.now_ms();
    let remote = match message.transition.as_str() {
        "opened" => Remote::Opened {
            until: Instant::now() + Duration::from_millis(message.until_ms.saturating_sub(now_ms)),
            hinted: message.hinted,
            trips: message.trips,
        },
        "half_open" => Remote::HalfOpen,
        "closed" => Remote::Closed,
        _ => return,
    };
    let Some(view) = source() else { return };
    let Some(breaker) = view.health.breaker_by_alias(&message.slot) else {
        return;
    };
    if breaker.apply_remote(remote) {
        stats.applied.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            key_slot = %message.slot,
            transition = %message.transition,
            from_replica = %message.origin,
            lag_ms = now_ms.saturating_sub(message.at_ms),
            "breaker state from another replica applied"
        );
    }
}

/// Takes half-open probe leases when breakers ask, holds prober leases, and checks that Redis
/// answers.
async fn leases(
    link: Arc<RedisLink>,
    coordination: Arc<Coordination>,
    source: Source,
    stats: Arc<SharedStats>,
) {
    let ttl = link.config.probe_lease;
    let renew_every = ttl / 3;
    let mut renewed: Option<Instant> = None;
    let mut probing: HashSet<String> = HashSet::new();
    loop {
        tokio::select! {
            () = tokio::time::sleep(LEASE_TICK) => {}
            () = coordination.lease_wanted() => {}
        }
        let Some(view) = source() else { return };
        let now = Instant::now();
        if renewed.is_none_or(|at| now.duration_since(at) >= renew_every) {
            renewed = Some(now);
            let reachable = link.ping().await.is_ok();
            stats.reachable.store(reachable, Ordering::Release);
            if reachable {
                // Give the subscription a moment to come up before calling it down.
                for _ in 0..20 {
                    if stats.subscribed.load(Ordering::Acquire) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
            }
            stats.tried.store(true, Ordering::Release);
            refresh(&stats, &coordination);
            let mut held = HashSet::new();
            if reachable {
                for name in &view.deployments {
                    match lease::hold(&link, &lease::key(&link, &format!("prober:{name}")), ttl)
                        .await
                    {
                        Ok(true) => {
                            held.insert(name.clone());
                        }
                        Ok(false) => {}
                        Err(_) => {
                            stats.errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            if held != probing {
                tracing::info!(deployments = ?held, "this replica probes these deployments");
                probing = held.clone();
            }
            coordination.set_probing(held);
        }
        if !coordination.is_shared() {
            // Requests waiting for an early-probe lease decide alone now.
            for breaker in view.health.breakers.iter().flatten() {
                breaker.unshare_early_lease();
            }
            continue;
        }
        for (d, breakers) in view.health.breakers.iter().enumerate() {
            // The deployment's prober takes the lease unasked; others when a request asked.
            let prober = view
                .deployments
                .get(d)
                .is_some_and(|name| coordination.probes(name));
            for breaker in breakers {
                if let Some(interval) = breaker.needs_early_lease() {
                    early_lease(&link, breaker, interval, &stats).await;
                }
                if !breaker.needs_probe_lease(prober) {
                    continue;
                }
                let key = lease::key(&link, &format!("probe:{}", breaker.alias()));
                match lease::hold(&link, &key, ttl).await {
                    // A little short of Redis's expiry, so this replica stops first.
                    Ok(true) => breaker.grant_probe_lease(Instant::now() + ttl.mul_f64(0.9)),
                    Ok(false) => {}
                    Err(_) => {
                        stats.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}

/// Asks for `breaker`'s early-probe lease, for one interval, only if it is free (`lease::take`):
/// at most one early probe per slot per interval across all replicas. A refusal or a failed
/// call answers the breaker too, so requests waiting for the lease never hang on it.
async fn early_lease(link: &RedisLink, breaker: &Breaker, interval: Duration, stats: &SharedStats) {
    let key = lease::key(link, &format!("early:{}", breaker.alias()));
    match lease::take(link, &key, interval).await {
        // A little short of Redis's expiry, so no request here probes on a lease that lapsed.
        Ok(lease::Taken::Yes) => breaker.grant_early_lease(Instant::now() + interval.mul_f64(0.9)),
        Ok(lease::Taken::HeldFor(left)) => breaker.refuse_early_lease(left),
        Err(e) => {
            stats.errors.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(error = %e, key_slot = %breaker.alias(), "early-probe lease not taken");
            // Not knowing who probes, this replica leaves the slot alone for an interval; if
            // Redis is really down it soon decides alone (and probes early as on one replica).
            breaker.refuse_early_lease(interval);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_tolerate_missing_optional_fields() {
        let m = Message {
            origin: "a".into(),
            slot: "d#0".into(),
            transition: "opened".into(),
            until_ms: 10,
            hinted: true,
            trips: 2,
            at_ms: 5,
        };
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<Message>(&text).unwrap(), m);
        let closed: Message =
            serde_json::from_str(r#"{"origin":"b","slot":"d#1","transition":"closed","at_ms":7}"#)
                .unwrap();
        assert_eq!((closed.until_ms, closed.trips), (0, 0));
    }
}
