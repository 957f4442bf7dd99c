//! Key changes shared between replicas through Redis pub/sub, so a revocation (or a new key, or
//! changed limits) made on one replica applies on every replica within about a second instead
//! of after their `auth.cache_ttl`.
//!
//! An admin change calls `Authenticator::invalidate`, which clears this replica's cache and
//! [`Announcer::announce`]s: the message (this process's random id, nothing about the key) goes
//! to the channel `{prefix}:auth:changes` (`limits.redis_prefix`) through the shared
//! [`RedisLink`], whatever its shape: one server, TLS, a Sentinel master (followed through a
//! failover) or a cluster (where `PUBLISH` reaches every node, so one subscription hears every
//! replica). Every replica subscribes and, on a message from another process, clears its cache;
//! the next request for a key reads the store again. A subscription that drops is reopened
//! (backoff up to 2 s), and the cache is cleared when it is, since announcements may have been
//! missed meanwhile. Redis down: nothing is shared, `cache_ttl` bounds how long a change takes,
//! and `/health/ready` says so (`checks.auth.shared_changes = false`).
//!
//! The subscription is a connection of its own (a subscribed connection can do nothing else);
//! announcements go over the link's shared connection.

use super::Authenticator;
use crate::replicas::RedisLink;
use futures_util::StreamExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::mpsc;

const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(2);
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(1);

/// The channel of key changes for the Redis key prefix `limits.redis_prefix`.
pub fn channel(prefix: &str) -> String {
    format!("{{{prefix}}}:auth:changes")
}

/// Announces one change from a process that keeps no cache (the CLI), through a link it opened
/// from the same `[redis]`: every gateway sharing this Redis forgets its cached keys.
pub async fn announce_once(link: &RedisLink, channel: &str) -> Result<(), String> {
    let started = tokio::time::Instant::now();
    // A cluster or a Sentinel master is found in the background once the link is open.
    link.connected(PUBLISH_TIMEOUT).await?;
    let left = PUBLISH_TIMEOUT.saturating_sub(started.elapsed());
    link.query_within::<i64>(redis::cmd("PUBLISH").arg(channel).arg("cli"), left)
        .await
        .map(drop)
}

/// The publishing end, held by the [`Authenticator`].
pub struct Announcer {
    tx: mpsc::Sender<()>,
    subscribed: Arc<AtomicBool>,
}

impl Announcer {
    /// Tells the other replicas to forget their cached keys; never waits.
    pub fn announce(&self) {
        // A full queue already holds an announcement that will do the same.
        let _ = self.tx.try_send(());
    }

    /// Whether the subscription is live now.
    pub fn subscribed(&self) -> bool {
        self.subscribed.load(Ordering::Relaxed)
    }
}

/// Starts the publisher and the subscriber for `auth` (tasks end when it is dropped).
pub(super) fn start(link: Arc<RedisLink>, channel: String, auth: Weak<Authenticator>) -> Announcer {
    let origin = crate::auth::signing::random_secret();
    let (tx, rx) = mpsc::channel(16);
    let subscribed = Arc::new(AtomicBool::new(false));
    tokio::spawn(publish(
        Arc::clone(&link),
        channel.clone(),
        origin.clone(),
        rx,
    ));
    tokio::spawn(subscribe(
        link,
        channel,
        origin,
        auth,
        Arc::clone(&subscribed),
    ));
    Announcer { tx, subscribed }
}

async fn publish(
    link: Arc<RedisLink>,
    channel: String,
    origin: String,
    mut rx: mpsc::Receiver<()>,
) {
    while rx.recv().await.is_some() {
        // Several changes in a row need one message.
        while rx.try_recv().is_ok() {}
        let mut publish = redis::cmd("PUBLISH");
        publish.arg(&channel).arg(&origin);
        for _ in 0..3 {
            let sent = link.query_within::<i64>(&publish, PUBLISH_TIMEOUT).await;
            if sent.is_ok() {
                break;
            }
            tokio::time::sleep(RECONNECT_MIN).await;
        }
    }
}

async fn subscribe(
    link: Arc<RedisLink>,
    channel: String,
    origin: String,
    auth: Weak<Authenticator>,
    subscribed: Arc<AtomicBool>,
) {
    let mut backoff = RECONNECT_MIN;
    let mut logged = false;
    loop {
        if auth.strong_count() == 0 {
            return;
        }
        let opened = async {
            // At start a cluster or a Sentinel master is still being found: not an outage.
            let _ = link.connected(RECONNECT_MAX).await;
            let mut pubsub = link.pubsub().await?;
            pubsub
                .subscribe(&channel)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(pubsub)
        };
        match tokio::time::timeout(RECONNECT_MAX, opened).await {
            Ok(Ok(pubsub)) => {
                subscribed.store(true, Ordering::Relaxed);
                backoff = RECONNECT_MIN;
                if logged {
                    tracing::info!("key changes are shared through Redis again");
                    logged = false;
                }
                // Announcements may have been missed while unsubscribed.
                if let Some(a) = auth.upgrade() {
                    a.forget();
                }
                let mut messages = pubsub.into_on_message();
                while let Some(msg) = messages.next().await {
                    let Some(a) = auth.upgrade() else { return };
                    if msg.get_payload_bytes() != origin.as_bytes() {
                        a.forget();
                    }
                }
                subscribed.store(false, Ordering::Relaxed);
            }
            Ok(Err(e)) if !logged => {
                tracing::warn!(error = %e, "key changes cannot be shared through Redis; other replicas' changes apply within auth.cache_ttl");
                logged = true;
            }
            _ => {}
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RECONNECT_MAX);
    }
}
