//! The ledger in a real store: SQLite in a temporary directory, and Postgres when
//! `DATABASE_URL` is set (a database of its own per test, dropped afterwards). Real time, not
//! paused (sqlx's pool timeouts run on tokio time); the ledgers' wall clocks are anchored.

use super::*;
use crate::clock::Clock;
use crate::config::Secret;
use crate::config::access::StoreConfig;
use crate::config::telemetry::Telemetry as Settings;
use crate::resilience::events::{BreakerEvent, Transition};
use crate::resilience::{AttemptRecord, FailureClass};
use crate::status::report::{self, Report, Source};
use crate::telemetry::RequestSummary;
use crate::telemetry::ledger::{DAY_MS, Incident, Scope, Tally};
use std::path::PathBuf;

/// 2026-01-01T00:00:00Z.
const T0: u64 = 1_767_225_600_000;
const MINUTE: u64 = 60_000;
const DAYS_30: Duration = Duration::from_secs(30 * 86_400);

struct Backend {
    label: &'static str,
    store: Store,
    dir: Option<PathBuf>,
    /// Admin connection URL and the database to drop.
    postgres: Option<(String, String)>,
}

impl Backend {
    async fn cleanup(self) {
        drop(self.store);
        if let Some(dir) = self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let Some((url, name)) = self.postgres
            && let Ok(mut conn) = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await
        {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await;
        }
    }
}

async fn sqlite() -> Backend {
    let dir = std::env::temp_dir().join(format!("nines-ledger-{}", uuid::Uuid::new_v4()));
    let store = Store::open(&StoreConfig::sqlite_in(&dir)).await.unwrap();
    Backend {
        label: "sqlite",
        store,
        dir: Some(dir),
        postgres: None,
    }
}

/// SQLite, plus Postgres when `DATABASE_URL` is set.
async fn backends() -> Vec<Backend> {
    let mut out = vec![sqlite().await];
    let Ok(url) = std::env::var("DATABASE_URL") else {
        println!(
            "Postgres part skipped: DATABASE_URL is not set (e.g. postgres://postgres@127.0.0.1:5432/test)"
        );
        return out;
    };
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("DATABASE_URL is set but Postgres is unreachable: {e}"));
    let name = format!("nines_ledger_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let base = url.rsplit_once('/').map_or(url.as_str(), |(b, _)| b);
    let config = StoreConfig {
        url: Secret::new(format!("{base}/{name}")),
        ..StoreConfig::sqlite_in(std::path::Path::new("unused"))
    };
    out.push(Backend {
        label: "postgres",
        store: Store::open(&config).await.unwrap(),
        dir: None,
        postgres: Some((url, name)),
    });
    out
}

fn ledger_at(ms: u64) -> Arc<Ledger> {
    Arc::new(Ledger::new(&Settings::default(), Clock::at(ms)))
}

fn attempt(deployment: &str, class: FailureClass) -> AttemptRecord {
    AttemptRecord {
        deployment: deployment.into(),
        key_alias: format!("{deployment}#0"),
        class,
        status: None,
        elapsed: Duration::from_millis(5),
        detail: String::new(),
        retry_after: None,
        span: None,
    }
}

fn request(ledger: &Ledger, attempts: Vec<AttemptRecord>, status: u16) -> RequestSummary {
    let now = ledger.clock().now_ms();
    let served = status < 500;
    RequestSummary {
        model: "chat".into(),
        routed: true,
        status,
        outcome: if served { "ok" } else { "all_failed" }.into(),
        served,
        deployment: attempts.last().map(|a| a.deployment.clone()),
        attempts,
        ttfb: served.then(|| Duration::from_millis(80)),
        upstream_ttfb: served.then(|| Duration::from_millis(40)),
        started_at_ms: now,
        finished_at_ms: now,
        ..RequestSummary::default()
    }
}

fn event(slot: &str, transition: Transition, at_ms: u64) -> BreakerEvent {
    BreakerEvent {
        key_slot: slot.into(),
        deployment: slot.split('#').next().unwrap_or(slot).into(),
        transition,
        at_ms,
    }
}

fn opened(reason: &str) -> Transition {
    Transition::Opened {
        until_ms: 0,
        reason: reason.into(),
    }
}

fn tally(requests: u64, failures: u64) -> Tally {
    Tally {
        requests,
        failures,
        ..Tally::default()
    }
}

#[tokio::test]
async fn two_replicas_add_up_in_one_store_and_a_restart_loads_the_history() {
    for b in backends().await {
        let now = T0 + 3_600_000;
        // Two replicas on one store, in the same minute.
        let a = ledger_at(now);
        let pa = LedgerWriter::new(Arc::clone(&a), b.store.clone(), Duration::from_secs(10));
        let r = ledger_at(now);
        let pb = LedgerWriter::new(Arc::clone(&r), b.store.clone(), Duration::from_secs(10));
        use FailureClass::{Ok as Served, Server, Timeout};
        a.record(&request(
            &a,
            vec![attempt("d0", Server), attempt("d1", Served)],
            200,
        ));
        a.record(&request(&a, vec![attempt("d0", Served)], 200));
        a.record(&request(&a, vec![attempt("d0", Served)], 200));
        r.record(&request(
            &r,
            vec![attempt("d0", Server), attempt("d1", Timeout)],
            502,
        ));
        r.record(&request(&r, vec![attempt("d0", Served)], 200));
        // Older traffic (two days ago), with sessions: in hour buckets in memory, a minute row
        // in the store.
        let old = Tally {
            sessions: 4,
            sessions_good: 3,
            ..tally(10, 1)
        };
        a.add(Scope::Route, "chat", now - 2 * DAY_MS, &old, true);
        a.add(
            Scope::Deployment,
            "d0",
            now - 2 * DAY_MS,
            &tally(11, 2),
            true,
        );

        assert_eq!(pa.flush().await.unwrap(), 5, "{}", b.label);
        assert_eq!(pb.flush().await.unwrap(), 3, "{}", b.label);
        // Nothing new: nothing written.
        assert_eq!(pa.flush().await.unwrap(), 0);

        // The minute both replicas wrote holds the sum of both.
        let minute = now / MINUTE * MINUTE;
        let rows = b
            .store
            .ledger_sums(minute, minute + MINUTE, Some(MINUTE))
            .await
            .unwrap();
        let chat = rows
            .iter()
            .find(|r| r.scope == Scope::Route && r.name == "chat")
            .unwrap();
        assert_eq!(chat.bucket_ms, minute);
        let mut both = a.tally(Scope::Route, "chat", Duration::from_secs(3600));
        both.add(&r.tally(Scope::Route, "chat", Duration::from_secs(3600)));
        assert_eq!(chat.tally, both, "{}", b.label);
        assert_eq!(
            (
                chat.tally.requests,
                chat.tally.failures,
                chat.tally.fallbacks
            ),
            (5, 1, 1)
        );

        // The report over 30 days sums every replica's rows.
        let inputs = report::read_store(&b.store, now - 30 * DAY_MS, now, Default::default())
            .await
            .unwrap();
        let report = Report::build(
            inputs,
            DAYS_30,
            now - 30 * DAY_MS,
            now,
            0.999,
            Source::Store,
        );
        let route = &report.routes[0];
        assert_eq!(route.route, "chat");
        assert_eq!(
            (route.requests, route.failures, route.failovers),
            (15, 2, 1)
        );
        assert_eq!(route.availability, Some(13.0 / 15.0));
        assert_eq!(route.errors.get("server"), Some(&2));
        assert_eq!(route.errors.get("timeout"), Some(&1));
        assert_eq!((route.sessions.count, route.sessions.good), (4, 3));
        let d0 = &report.deployments[0];
        assert_eq!(
            (d0.deployment.as_str(), d0.requests, d0.failures),
            ("d0", 16, 4)
        );
        let d1 = &report.deployments[1];
        assert_eq!(
            (d1.deployment.as_str(), d1.requests, d1.failures),
            ("d1", 2, 1)
        );
        let p50 = d1.ttfb.p50_ms.unwrap_or_default();
        assert!((p50 - 40.0).abs() <= 0.4, "{p50}");

        // A restart five minutes later loads all of it, not marked for writing back.
        let c = ledger_at(now + 5 * MINUTE);
        let pc = LedgerWriter::new(Arc::clone(&c), b.store.clone(), Duration::from_secs(10));
        assert!(!pc.is_loaded());
        pc.load().await.unwrap();
        assert!(pc.is_loaded());
        let month = c.tally(Scope::Route, "chat", DAYS_30);
        assert_eq!(
            (
                month.requests,
                month.failures,
                month.fallbacks,
                month.sessions
            ),
            (15, 2, 1, 4),
            "{}",
            b.label
        );
        assert_eq!(
            c.tally(Scope::Route, "chat", Duration::from_secs(3600)),
            both
        );
        assert_eq!(c.tally(Scope::Deployment, "d0", DAYS_30).requests, 16);
        assert!(c.drain_dirty().is_empty());
        assert_eq!(pc.flush().await.unwrap(), 0);
        b.cleanup().await;
    }
}

#[tokio::test]
async fn history_older_than_a_day_loads_into_hours_and_recent_minutes_stay_exact() {
    for b in backends().await {
        let now = T0 + 10 * DAY_MS;
        let writer = ledger_at(now);
        let p = LedgerWriter::new(Arc::clone(&writer), b.store.clone(), Duration::from_secs(1));
        // Three minutes of one old hour, and one minute 30 minutes ago.
        for m in [0, 7, 59] {
            writer.add(
                Scope::Route,
                "chat",
                now - 3 * DAY_MS + m * MINUTE,
                &tally(1, 0),
                true,
            );
        }
        writer.add(Scope::Route, "chat", now - 30 * MINUTE, &tally(2, 1), true);
        p.flush().await.unwrap();
        let hours = b
            .store
            .ledger_sums(now - 4 * DAY_MS, now, Some(3_600_000))
            .await
            .unwrap();
        assert_eq!(hours.len(), 2, "{}", b.label);
        assert_eq!(hours[0].bucket_ms, now - 3 * DAY_MS);
        assert_eq!(hours[0].tally.requests, 3);

        let c = ledger_at(now + MINUTE);
        LedgerWriter::new(Arc::clone(&c), b.store.clone(), Duration::from_secs(1))
            .load()
            .await
            .unwrap();
        assert_eq!(
            c.tally(Scope::Route, "chat", Duration::from_secs(3600)),
            tally(2, 1)
        );
        assert_eq!(
            c.tally(Scope::Route, "chat", Duration::from_secs(4 * 86_400))
                .requests,
            5
        );
        b.cleanup().await;
    }
}

#[tokio::test]
async fn retention_prunes_old_rows_and_incidents() {
    for b in backends().await {
        let now = T0 + 200 * DAY_MS;
        let l = ledger_at(now);
        let p = LedgerWriter::new(Arc::clone(&l), b.store.clone(), Duration::from_secs(1));
        l.add(Scope::Route, "chat", now - 101 * DAY_MS, &tally(1, 0), true);
        l.add(Scope::Route, "chat", now - 99 * DAY_MS, &tally(2, 0), true);
        l.on_breaker(&event(
            "d0#0",
            opened("5 consecutive failures"),
            now - 101 * DAY_MS,
        ));
        l.on_breaker(&event(
            "d0#0",
            Transition::Closed,
            now - 101 * DAY_MS + MINUTE,
        ));
        l.on_breaker(&event(
            "d0#0",
            opened("5 consecutive failures"),
            now - DAY_MS,
        ));
        l.on_breaker(&event("d0#0", Transition::Closed, now - DAY_MS + MINUTE));
        p.flush().await.unwrap();
        // Retention is 100 days by default.
        assert_eq!(p.prune().await.unwrap(), (1, 1), "{}", b.label);
        assert_eq!(p.prune().await.unwrap(), (0, 0));
        let left = b.store.ledger_sums(0, u64::MAX / 2, None).await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].tally.requests, 2);
        let incidents = b
            .store
            .ledger_incidents(0, u64::MAX / 2, 100)
            .await
            .unwrap();
        assert_eq!(incidents.len(), 1);
        assert_eq!(incidents[0].opened_at_ms, now - DAY_MS);
        b.cleanup().await;
    }
}

#[tokio::test]
async fn incidents_are_stored_merged_across_replicas_and_reloaded() {
    for b in backends().await {
        let now = T0 + DAY_MS;
        let a = ledger_at(now);
        let pa = LedgerWriter::new(Arc::clone(&a), b.store.clone(), Duration::from_secs(1));
        let r = ledger_at(now);
        let pb = LedgerWriter::new(Arc::clone(&r), b.store.clone(), Duration::from_secs(1));
        // Replica A: d0#0 trips, a probe fails, then it closes; d1#0 opens and stays open.
        a.on_breaker(&event(
            "d0#0",
            opened("5 consecutive failures"),
            now - 10 * MINUTE,
        ));
        pa.flush().await.unwrap();
        let stored = b.store.ledger_incidents(0, now, 10).await.unwrap();
        assert_eq!(stored.len(), 1, "{}", b.label);
        assert_eq!(stored[0].closed_at_ms, None);
        a.on_breaker(&event("d0#0", Transition::HalfOpen, now - 9 * MINUTE));
        a.on_breaker(&event("d0#0", opened("probe failed"), now - 9 * MINUTE));
        a.on_breaker(&event("d0#0", Transition::Closed, now - 5 * MINUTE));
        a.on_breaker(&event(
            "d1#0",
            opened("key rejected by the provider"),
            now - 2 * MINUTE,
        ));
        pa.flush().await.unwrap();
        // Replica B's breaker for d0#0 saw the same outage, a little later.
        r.on_breaker(&event(
            "d0#0",
            opened("3 of 10 attempts failed"),
            now - 8 * MINUTE,
        ));
        r.on_breaker(&event("d0#0", Transition::Closed, now - 4 * MINUTE));
        pb.flush().await.unwrap();

        let stored = b.store.ledger_incidents(0, now, 10).await.unwrap();
        assert_eq!(stored.len(), 3);
        let a_d0 = stored
            .iter()
            .find(|i| i.key_slot == "d0#0" && i.opened_at_ms == now - 10 * MINUTE)
            .unwrap();
        assert_eq!(
            (a_d0.closed_at_ms, a_d0.trips, a_d0.reason.as_str()),
            (Some(now - 5 * MINUTE), 2, "5 consecutive failures")
        );
        // Writing the open state again (a retried flush) does not reopen or shrink it.
        let mut stale = a_d0.clone();
        stale.closed_at_ms = None;
        stale.trips = 1;
        b.store.upsert_incident(&stale).await.unwrap();
        let again = b.store.ledger_incidents(0, now, 10).await.unwrap();
        assert_eq!(again, stored);

        // The report shows one incident per outage and slot.
        let inputs = report::read_store(&b.store, now - DAY_MS, now, Default::default())
            .await
            .unwrap();
        let report = Report::build(
            inputs,
            Duration::from_secs(86_400),
            now - DAY_MS,
            now,
            0.999,
            Source::Store,
        );
        assert_eq!(report.incidents.len(), 2);
        let d0 = &report.incidents[0];
        assert_eq!(
            (
                d0.key_slot.as_str(),
                d0.opened_at_ms,
                d0.closed_at_ms,
                d0.trips
            ),
            ("d0#0", now - 10 * MINUTE, Some(now - 4 * MINUTE), 3)
        );
        assert_eq!((d0.duration_ms, d0.ongoing), (6 * MINUTE, false));
        let d1 = &report.incidents[1];
        assert_eq!((d1.deployment.as_str(), d1.ongoing), ("d1", true));
        assert_eq!(d1.duration_ms, 2 * MINUTE);

        // A restart loads them; the open one is adopted and closed by the slot's first success.
        let c = ledger_at(now + MINUTE);
        let pc = LedgerWriter::new(Arc::clone(&c), b.store.clone(), Duration::from_secs(1));
        pc.load().await.unwrap();
        let loaded = c.incidents(0);
        assert_eq!(loaded.len(), 3);
        assert_eq!(loaded[0].key_slot, "d1#0");
        assert_eq!(loaded[0].closed_at_ms, None);
        let success = request(&c, vec![attempt("d1", FailureClass::Ok)], 200);
        c.record(&success);
        assert_eq!(c.incidents(0)[0].closed_at_ms, Some(success.finished_at_ms));
        pc.flush().await.unwrap();
        let d1 = b
            .store
            .ledger_incidents(0, now + DAY_MS, 10)
            .await
            .unwrap()
            .into_iter()
            .find(|i| i.key_slot == "d1#0")
            .unwrap();
        assert!(d1.closed_at_ms.is_some_and(|c| c >= now + MINUTE));
        b.cleanup().await;
    }
}

#[tokio::test]
async fn a_failed_flush_keeps_the_changes_for_the_next_one() {
    let b = sqlite().await;
    let dir = b.dir.clone().unwrap();
    let side = sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.join("nines.db").display()))
        .await
        .unwrap();
    let l = ledger_at(T0);
    let p = LedgerWriter::new(Arc::clone(&l), b.store.clone(), Duration::from_secs(1));
    l.record(&request(&l, vec![attempt("d0", FailureClass::Ok)], 200));
    l.on_breaker(&event("d1#0", opened("5 consecutive failures"), T0));
    // The tables go away: the flush fails and keeps everything.
    for sql in [
        "ALTER TABLE ledger_buckets RENAME TO ledger_buckets_away",
        "ALTER TABLE ledger_incidents RENAME TO ledger_incidents_away",
    ] {
        sqlx::query(sql).execute(&side).await.unwrap();
    }
    assert!(p.flush().await.is_err());
    assert!(!p.stats.healthy.load(Ordering::Relaxed));
    // More traffic in the same minute while the store is down.
    l.record(&request(&l, vec![attempt("d0", FailureClass::Ok)], 200));
    sqlx::query("ALTER TABLE ledger_buckets_away RENAME TO ledger_buckets")
        .execute(&side)
        .await
        .unwrap();
    // Buckets are written; the incident still fails and is kept.
    assert!(p.flush().await.is_err());
    let rows = b.store.ledger_sums(0, T0 + DAY_MS, None).await.unwrap();
    let route = rows.iter().find(|r| r.scope == Scope::Route).unwrap();
    assert_eq!(route.tally.requests, 2);
    sqlx::query("ALTER TABLE ledger_incidents_away RENAME TO ledger_incidents")
        .execute(&side)
        .await
        .unwrap();
    assert_eq!(p.flush().await.unwrap(), 0);
    assert!(p.stats.healthy.load(Ordering::Relaxed));
    let incidents: Vec<Incident> = b.store.ledger_incidents(0, T0 + DAY_MS, 10).await.unwrap();
    assert_eq!(incidents.len(), 1);
    // Written exactly once.
    let rows = b.store.ledger_sums(0, T0 + DAY_MS, None).await.unwrap();
    let route = rows.iter().find(|r| r.scope == Scope::Route).unwrap();
    assert_eq!(route.tally.requests, 2);
    side.close().await;
    b.cleanup().await;
}

#[tokio::test]
async fn the_background_task_loads_then_flushes_on_its_own() {
    let b = sqlite().await;
    let old = ledger_at(T0);
    let p = LedgerWriter::new(Arc::clone(&old), b.store.clone(), Duration::from_secs(1));
    old.add(Scope::Route, "chat", T0 - DAY_MS, &tally(7, 0), true);
    p.flush().await.unwrap();

    let l = ledger_at(T0 + MINUTE);
    let p = Arc::new(LedgerWriter::new(
        Arc::clone(&l),
        b.store.clone(),
        Duration::from_millis(20),
    ));
    tokio::spawn(run(Arc::downgrade(&p)));
    l.record(&request(&l, vec![attempt("d0", FailureClass::Ok)], 200));
    let deadline = Instant::now() + Duration::from_secs(10);
    while p.stats.rows_written.load(Ordering::Relaxed) < 2 {
        assert!(Instant::now() < deadline, "never flushed: {}", p.snapshot());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(p.is_loaded());
    assert_eq!(l.tally(Scope::Route, "chat", DAYS_30).requests, 8);
    let rows = b.store.ledger_sums(0, T0 + DAY_MS, None).await.unwrap();
    let route = rows.iter().find(|r| r.scope == Scope::Route).unwrap();
    assert_eq!(route.tally.requests, 8);
    drop(p);
    b.cleanup().await;
}
