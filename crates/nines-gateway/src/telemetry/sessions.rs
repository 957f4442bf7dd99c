//! Sessions: requests sharing a session header (`[telemetry.sessions] header`), judged against a
//! latency budget.
//!
//! An agent's trajectory is many requests; what its user feels is whether the whole run worked
//! and how long it took. Requests carrying the header are grouped in memory by (virtual key,
//! header value), so two tenants reusing an id stay apart. A session is over once no request
//! arrived for `idle`; it is then counted **good** when none of its requests had a
//! client-visible error ([`RequestSummary::client_visible_failure`]: a 5xx or a broken stream)
//! and the latencies of its requests, summed, stayed within `latency_budget`.
//!
//! Ended sessions are counted into the availability ledger ([`Tally::sessions`],
//! [`Tally::sessions_good`]) on the **route series of the session's first routed request**, in
//! the minute of its last request, so they are persisted with the rest of the ledger and show in
//! SLA reports. A session none of whose requests named a configured route (every request was
//! refused before routing) says nothing about a route and is not counted there.
//!
//! Bounds: at most [`MAX_LIVE`] live sessions; a new one beyond that ends the least recently
//! active one first (counted as it stands). Each replica groups the requests it serves: behind a
//! load balancer, route by the session header (sticky) for a session to be judged whole.
//! Idle time is tokio time (tests pause it); [`expire_periodically`] ends idle sessions.

use super::RequestSummary;
use super::ledger::{Ledger, Scope, Tally};
use crate::config::telemetry::Sessions as Settings;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::time::Instant;

/// Live sessions kept at most.
pub const MAX_LIVE: usize = 100_000;
/// Longer header values are kept as a hash (the value is the client's, its size is not).
const MAX_ID_BYTES: usize = 128;

#[derive(Debug)]
struct Live {
    /// The route of the first routed request.
    route: Option<Arc<str>>,
    requests: u64,
    latency: Duration,
    failed: bool,
    /// Unix ms when its last request finished (the minute it is counted in).
    last_ms: u64,
    /// Tokio time of its last request.
    seen: Instant,
    /// Its key in `Activity::order`: the time it was filed under (and a tie-breaker), which may be
    /// older than `seen`. Refiling on every request cost two ordered-map updates per request;
    /// instead a session is refiled under `seen` only when it reaches the front of the order.
    filed: (Instant, u64),
}

#[derive(Debug, Default)]
struct State {
    live: HashMap<Arc<str>, Live>,
    activity: Activity,
}

/// The sessions by the time each was filed under, oldest first; a session's real last activity
/// is its `seen`, never older than where it is filed ([`State::oldest`] refiles).
#[derive(Debug, Default)]
struct Activity {
    order: BTreeMap<(Instant, u64), Arc<str>>,
    /// Tie-breaker between sessions filed at the same instant.
    seq: u64,
}

impl Activity {
    /// Files a session under `at`; returns its key in the order.
    fn file(&mut self, id: &Arc<str>, at: Instant) -> (Instant, u64) {
        self.seq += 1;
        let key = (at, self.seq);
        self.order.insert(key, Arc::clone(id));
        key
    }
}

impl State {
    /// Takes the least recently active session out of the order (not out of `live`), if it has
    /// been idle since `before` or longer (`None`: any age). Sessions at the front that were
    /// active after they were filed are refiled under their last request first.
    fn oldest(&mut self, before: Option<Instant>) -> Option<Arc<str>> {
        loop {
            let entry = self.activity.order.first_entry()?;
            if before.is_some_and(|b| entry.key().0 > b) {
                return None;
            }
            let id = entry.remove();
            let Some(live) = self.live.get_mut(&id) else {
                continue;
            };
            if live.seen > live.filed.0 && before.is_none_or(|b| live.seen > b) {
                live.filed = self.activity.file(&id, live.seen);
                continue;
            }
            return Some(id);
        }
    }
}

/// A session that ended, as counted.
#[derive(Debug, Clone, PartialEq)]
pub struct Ended {
    pub route: Option<Arc<str>>,
    pub requests: u64,
    pub latency: Duration,
    pub failed: bool,
    pub good: bool,
    pub last_ms: u64,
}

#[derive(Debug, Default)]
pub struct SessionStats {
    pub ended: AtomicU64,
    pub good: AtomicU64,
    /// Ended early because [`MAX_LIVE`] sessions were live.
    pub evicted: AtomicU64,
    /// Ended without a routed request: not counted on any route.
    pub unattributed: AtomicU64,
}

#[derive(Debug)]
pub struct Sessions {
    budget: Duration,
    idle: Duration,
    max_live: usize,
    ledger: Option<Arc<Ledger>>,
    state: Mutex<State>,
    pub stats: SessionStats,
}

impl Sessions {
    /// Ended sessions are counted into `ledger` (none: only into [`Sessions::stats`]).
    pub fn new(settings: &Settings, ledger: Option<Arc<Ledger>>) -> Sessions {
        Sessions::with_limit(settings, ledger, MAX_LIVE)
    }

    pub fn with_limit(
        settings: &Settings,
        ledger: Option<Arc<Ledger>>,
        max_live: usize,
    ) -> Sessions {
        Sessions {
            budget: settings.latency_budget,
            idle: settings.idle,
            max_live: max_live.max(1),
            ledger,
            state: Mutex::new(State::default()),
            stats: SessionStats::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How often [`expire_periodically`] looks for idle sessions: a session is counted at most
    /// this long after its idle time ran out.
    pub fn tick(&self) -> Duration {
        (self.idle / 10).clamp(Duration::from_millis(10), Duration::from_secs(5))
    }

    /// Live sessions now.
    pub fn live(&self) -> usize {
        self.lock().live.len()
    }

    /// Adds one finished request to its session (requests without the header: nothing).
    pub fn record(&self, s: &RequestSummary) {
        let Some(id) = s.session.as_deref().filter(|id| !id.is_empty()) else {
            return;
        };
        let key = session_key(s.key_id.as_deref(), id);
        let now = Instant::now();
        let failed = s.client_visible_failure();
        let mut evicted = None;
        {
            let mut guard = self.lock();
            let state = &mut *guard;
            match state.live.get_mut(key.as_str()) {
                Some(live) => {
                    live.seen = now;
                    live.requests += 1;
                    live.latency += s.latency;
                    live.failed |= failed;
                    live.last_ms = live.last_ms.max(s.finished_at_ms);
                    if live.route.is_none() && s.routed {
                        live.route = Some(Arc::from(s.model.as_str()));
                    }
                }
                None => {
                    if state.live.len() >= self.max_live
                        && let Some(oldest) = state.oldest(None)
                    {
                        evicted = state.live.remove(&oldest);
                    }
                    let id: Arc<str> = Arc::from(key);
                    let filed = state.activity.file(&id, now);
                    state.live.insert(
                        id,
                        Live {
                            route: s.routed.then(|| Arc::from(s.model.as_str())),
                            requests: 1,
                            latency: s.latency,
                            failed,
                            last_ms: s.finished_at_ms,
                            seen: now,
                            filed,
                        },
                    );
                }
            }
        }
        if let Some(live) = evicted {
            self.stats.evicted.fetch_add(1, Ordering::Relaxed);
            self.count(live);
        }
    }

    /// Ends the sessions idle for `idle` or longer and counts them. Returns them.
    pub fn expire(&self) -> Vec<Ended> {
        let now = Instant::now();
        let mut over = Vec::new();
        {
            let mut state = self.lock();
            // Idle for `idle` or longer: last active at or before this.
            let before = now.checked_sub(self.idle);
            while let Some(id) = before.and_then(|b| state.oldest(Some(b))) {
                if let Some(live) = state.live.remove(&id) {
                    over.push(live);
                }
            }
        }
        over.into_iter().map(|live| self.count(live)).collect()
    }

    /// Ends every live session now (shutdown: what this process holds must not be lost).
    pub fn end_all(&self) -> Vec<Ended> {
        let live: Vec<Live> = {
            let mut state = self.lock();
            state.activity.order.clear();
            state.live.drain().map(|(_, l)| l).collect()
        };
        live.into_iter().map(|live| self.count(live)).collect()
    }

    fn count(&self, live: Live) -> Ended {
        let good = !live.failed && live.latency <= self.budget;
        self.stats.ended.fetch_add(1, Ordering::Relaxed);
        if good {
            self.stats.good.fetch_add(1, Ordering::Relaxed);
        }
        match (&live.route, &self.ledger) {
            (Some(route), Some(ledger)) => {
                let tally = Tally {
                    sessions: 1,
                    sessions_good: u64::from(good),
                    ..Tally::default()
                };
                ledger.add(Scope::Route, route, live.last_ms, &tally, true);
            }
            (None, _) => {
                self.stats.unattributed.fetch_add(1, Ordering::Relaxed);
            }
            (Some(_), None) => {}
        }
        Ended {
            route: live.route,
            requests: live.requests,
            latency: live.latency,
            failed: live.failed,
            good,
            last_ms: live.last_ms,
        }
    }
}

/// The map key: the virtual key's id (tenants apart) and the header value, hashed when long.
fn session_key(key_id: Option<&str>, id: &str) -> String {
    use std::fmt::Write as _;
    let key_id = key_id.unwrap_or("");
    // One buffer (this runs for every request with the header).
    let hashed = id.len() > MAX_ID_BYTES;
    // A SHA-256 in hex is 64 characters.
    let id_len = if hashed { 64 } else { id.len() };
    let mut key = String::with_capacity(key_id.len() + 1 + id_len);
    key.push_str(key_id);
    key.push('\u{0}');
    if hashed {
        use sha2::Digest;
        for b in sha2::Sha256::digest(id.as_bytes()) {
            let _ = write!(key, "{b:02x}");
        }
    } else {
        key.push_str(id);
    }
    key
}

/// Ends idle sessions every [`Sessions::tick`] until the sessions are dropped.
pub async fn expire_periodically(sessions: Weak<Sessions>) {
    let Some(period) = sessions.upgrade().map(|s| s.tick()) else {
        return;
    };
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match sessions.upgrade() {
            Some(s) => {
                s.expire();
            }
            None => return,
        }
    }
}

#[cfg(test)]
mod tests;
