use super::*;
use crate::clock::Clock;
use crate::config::telemetry::Telemetry as TelemetrySettings;
use tokio::time::advance;

/// 2026-01-01T00:00:00Z.
const T0: u64 = 1_767_225_600_000;
const HOUR: Duration = Duration::from_secs(3600);

fn settings() -> Settings {
    Settings {
        header: "x-nines-session".into(),
        latency_budget: Duration::from_secs(60),
        idle: Duration::from_secs(300),
    }
}

fn setup(max_live: usize) -> (Arc<Ledger>, Sessions) {
    let ledger = Arc::new(Ledger::new(&TelemetrySettings::default(), Clock::at(T0)));
    let sessions = Sessions::with_limit(&settings(), Some(Arc::clone(&ledger)), max_live);
    (ledger, sessions)
}

fn request(ledger: &Ledger, session: &str, latency_ms: u64, status: u16) -> RequestSummary {
    let now = ledger.clock().now_ms();
    RequestSummary {
        model: "chat".into(),
        routed: true,
        session: Some(session.into()),
        status,
        outcome: if status < 500 { "ok" } else { "all_failed" }.into(),
        served: status < 500,
        latency: Duration::from_millis(latency_ms),
        started_at_ms: now,
        finished_at_ms: now,
        ..RequestSummary::default()
    }
}

fn sessions_on(ledger: &Ledger, route: &str) -> (u64, u64) {
    let t = ledger.tally(Scope::Route, route, HOUR);
    (t.sessions, t.sessions_good)
}

#[tokio::test(start_paused = true)]
async fn a_session_without_errors_within_budget_is_good_once_idle() {
    let (ledger, sessions) = setup(MAX_LIVE);
    sessions.record(&request(&ledger, "s1", 1_000, 200));
    advance(Duration::from_secs(200)).await;
    sessions.record(&request(&ledger, "s1", 2_000, 200));
    // Idle is measured from the last request: 299 s later it still runs.
    advance(Duration::from_secs(299)).await;
    assert!(sessions.expire().is_empty());
    assert_eq!(sessions.live(), 1);
    assert_eq!(sessions_on(&ledger, "chat"), (0, 0));
    advance(Duration::from_secs(1)).await;
    let ended = sessions.expire();
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].requests, 2);
    assert_eq!(ended[0].latency, Duration::from_secs(3));
    assert!(ended[0].good);
    // Counted in the minute of its last request, on its route, and marked for the store.
    assert_eq!(ended[0].last_ms, T0 + 200_000);
    assert_eq!(sessions_on(&ledger, "chat"), (1, 1));
    assert!(
        ledger
            .drain_dirty()
            .iter()
            .any(|d| d.minute_ms == T0 + 180_000 && d.tally.sessions == 1)
    );
    assert_eq!(sessions.live(), 0);
}

#[tokio::test(start_paused = true)]
async fn one_client_visible_error_spoils_the_session() {
    let (ledger, sessions) = setup(MAX_LIVE);
    sessions.record(&request(&ledger, "s1", 100, 200));
    sessions.record(&request(&ledger, "s1", 100, 502));
    sessions.record(&request(&ledger, "s1", 100, 200));
    // A client's own 4xx is not the gateway failing it.
    sessions.record(&request(&ledger, "s2", 100, 400));
    let mut broken = request(&ledger, "s3", 100, 200);
    broken.outcome = "stream_broken".into();
    sessions.record(&broken);
    advance(Duration::from_secs(300)).await;
    let mut ended = sessions.expire();
    ended.sort_by_key(|e| e.requests);
    assert_eq!(ended.len(), 3);
    assert_eq!(sessions_on(&ledger, "chat"), (3, 1));
    assert_eq!(ended.iter().filter(|e| e.failed).count(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_session_over_its_latency_budget_is_not_good() {
    let (ledger, sessions) = setup(MAX_LIVE);
    // 40 s + 20 s = 60 s: exactly the budget, still good.
    sessions.record(&request(&ledger, "exact", 40_000, 200));
    sessions.record(&request(&ledger, "exact", 20_000, 200));
    // 40 s + 20.001 s: over.
    sessions.record(&request(&ledger, "over", 40_000, 200));
    sessions.record(&request(&ledger, "over", 20_001, 200));
    advance(Duration::from_secs(300)).await;
    let ended = sessions.expire();
    assert_eq!(ended.len(), 2);
    let over = ended.iter().find(|e| e.latency > Duration::from_secs(60));
    assert!(over.is_some_and(|e| !e.good && !e.failed));
    assert_eq!(sessions_on(&ledger, "chat"), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn the_expiry_task_ends_idle_sessions_on_tokio_time() {
    let (ledger, sessions) = setup(MAX_LIVE);
    let sessions = Arc::new(sessions);
    tokio::spawn(expire_periodically(Arc::downgrade(&sessions)));
    sessions.record(&request(&ledger, "a", 10, 200));
    advance(Duration::from_secs(100)).await;
    sessions.record(&request(&ledger, "b", 10, 200));
    // a's idle time runs out (plus at most one tick); b still runs.
    advance(Duration::from_secs(200) + sessions.tick()).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(sessions.live(), 1);
    assert_eq!(sessions_on(&ledger, "chat"), (1, 1));
    advance(Duration::from_secs(100)).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(sessions.live(), 0);
    assert_eq!(sessions_on(&ledger, "chat"), (2, 2));
    assert_eq!(sessions.stats.ended.load(Ordering::Relaxed), 2);
}

#[tokio::test(start_paused = true)]
async fn sessions_belong_to_their_first_routed_request_and_their_key() {
    let (ledger, sessions) = setup(MAX_LIVE);
    // Refused before routing (a made-up model): no route yet.
    let mut unknown = request(&ledger, "s", 10, 404);
    unknown.routed = false;
    unknown.model = "made-up".into();
    sessions.record(&unknown);
    let mut other = request(&ledger, "s", 10, 200);
    other.model = "other".into();
    sessions.record(&other);
    sessions.record(&request(&ledger, "s", 10, 200));
    // The same id under another key is another session.
    let mut tenant = request(&ledger, "s", 10, 200);
    tenant.key_id = Some("key_b".into());
    sessions.record(&tenant);
    // Only unrouted requests: counted nowhere.
    let mut lost = request(&ledger, "lost", 10, 404);
    lost.routed = false;
    sessions.record(&lost);
    // No header (or an empty one): not a session.
    let mut none = request(&ledger, "", 10, 200);
    sessions.record(&none);
    none.session = None;
    sessions.record(&none);
    assert_eq!(sessions.live(), 3);
    advance(Duration::from_secs(300)).await;
    assert_eq!(sessions.expire().len(), 3);
    assert_eq!(sessions_on(&ledger, "other"), (1, 1));
    assert_eq!(sessions_on(&ledger, "chat"), (1, 1));
    assert_eq!(sessions_on(&ledger, "made-up"), (0, 0));
    assert_eq!(sessions.stats.unattributed.load(Ordering::Relaxed), 1);
}

#[tokio::test(start_paused = true)]
async fn beyond_the_cap_the_least_recently_active_session_ends_first() {
    let (ledger, sessions) = setup(2);
    sessions.record(&request(&ledger, "a", 10, 200));
    advance(Duration::from_secs(1)).await;
    sessions.record(&request(&ledger, "b", 10, 502));
    advance(Duration::from_secs(1)).await;
    // a is active again: b is now the least recently active.
    sessions.record(&request(&ledger, "a", 10, 200));
    sessions.record(&request(&ledger, "c", 10, 200));
    assert_eq!(sessions.live(), 2);
    assert_eq!(sessions.stats.evicted.load(Ordering::Relaxed), 1);
    assert_eq!(sessions_on(&ledger, "chat"), (1, 0));
    // At shutdown the rest are counted as they stand.
    let ended = sessions.end_all();
    assert_eq!(ended.len(), 2);
    assert_eq!(sessions_on(&ledger, "chat"), (3, 2));
    assert_eq!(sessions.live(), 0);
}

#[test]
fn long_ids_are_hashed_and_keys_kept_apart() {
    let long = "x".repeat(10_000);
    let key = session_key(None, &long);
    assert!(key.len() < 100);
    assert_ne!(session_key(Some("k1"), "s"), session_key(Some("k2"), "s"));
    assert_ne!(
        session_key(None, &long),
        session_key(None, &"y".repeat(10_000))
    );
}
