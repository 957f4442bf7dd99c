use super::*;
use crate::resilience::AttemptRecord;
use std::time::Duration;
use tokio::time::advance;

/// 2026-01-01T00:00:00Z: days and hours line up with the buckets.
const T0: u64 = 1_767_225_600_000;

fn ledger() -> Ledger {
    Ledger::new(&Settings::default(), Clock::at(T0))
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

fn served(ledger: &Ledger, model: &str, attempts: Vec<AttemptRecord>) -> RequestSummary {
    let now = ledger.clock().now_ms();
    RequestSummary {
        model: model.into(),
        routed: true,
        status: 200,
        outcome: "ok".into(),
        served: true,
        deployment: attempts.last().map(|a| a.deployment.clone()),
        attempts,
        ttfb: Some(Duration::from_millis(80)),
        upstream_ttfb: Some(Duration::from_millis(40)),
        started_at_ms: now,
        finished_at_ms: now,
        ..RequestSummary::default()
    }
}

fn failed(ledger: &Ledger, model: &str, attempts: Vec<AttemptRecord>) -> RequestSummary {
    RequestSummary {
        status: 502,
        outcome: "all_failed".into(),
        served: false,
        ttfb: None,
        upstream_ttfb: None,
        ..served(ledger, model, attempts)
    }
}

#[tokio::test(start_paused = true)]
async fn a_failover_is_a_route_success_and_a_deployment_failure() {
    let l = ledger();
    l.record(&served(
        &l,
        "chat",
        vec![
            attempt("a", FailureClass::Server),
            attempt("b", FailureClass::Ok),
        ],
    ));
    let hour = Duration::from_secs(3600);
    let route = l.tally(Scope::Route, "chat", hour);
    assert_eq!((route.requests, route.failures, route.fallbacks), (1, 0, 1));
    assert_eq!(route.class_breakdown(), vec![("server", 1)]);
    // What the client waited (80 ms) and what the serving upstream took (40 ms), within 1 %.
    let p50 = route.ttfb.percentile_ms(50.0).unwrap();
    assert!((p50 - 80.0).abs() <= 0.8, "{p50}");
    let a = l.tally(Scope::Deployment, "a", hour);
    assert_eq!((a.requests, a.failures), (1, 1));
    let b = l.tally(Scope::Deployment, "b", hour);
    assert_eq!((b.requests, b.failures), (1, 0));
    let p99 = b.ttfb.percentile_ms(99.0).unwrap();
    assert!((p99 - 40.0).abs() <= 0.4, "{p99}");
    assert_eq!(
        l.series(),
        vec![
            (Scope::Route, "chat".to_owned()),
            (Scope::Deployment, "a".to_owned()),
            (Scope::Deployment, "b".to_owned()),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn client_errors_unknown_models_and_cancellations_are_not_counted() {
    let l = ledger();
    // An upstream 400 relayed to the client: the request's fault, not availability.
    let mut rejected = failed(&l, "chat", vec![attempt("a", FailureClass::Client)]);
    rejected.status = 400;
    rejected.outcome = "upstream_rejected".into();
    l.record(&rejected);
    // A name the client made up never becomes a series, whatever happened.
    let mut unknown = failed(&l, "made-up", vec![]);
    unknown.routed = false;
    unknown.status = 503;
    l.record(&unknown);
    // A hedge that lost says nothing about its deployment.
    l.record(&served(
        &l,
        "chat",
        vec![
            attempt("a", FailureClass::Cancelled),
            attempt("b", FailureClass::Ok),
        ],
    ));
    let day = Duration::from_secs(86_400);
    assert_eq!(l.tally(Scope::Route, "chat", day).requests, 1);
    assert_eq!(l.tally(Scope::Deployment, "a", day).requests, 0);
    assert!(l.tally(Scope::Route, "made-up", day).is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_broken_stream_fails_the_route_and_the_serving_deployment() {
    let l = ledger();
    let mut broken = served(&l, "chat", vec![attempt("a", FailureClass::Ok)]);
    broken.outcome = "stream_broken".into();
    l.record(&broken);
    let hour = Duration::from_secs(3600);
    assert_eq!(l.tally(Scope::Route, "chat", hour).failures, 1);
    assert_eq!(l.tally(Scope::Deployment, "a", hour).failures, 1);
}

#[tokio::test(start_paused = true)]
async fn windows_roll_on_the_clock() {
    let l = ledger();
    l.record(&failed(
        &l,
        "chat",
        vec![attempt("a", FailureClass::Timeout)],
    ));
    for _ in 0..3 {
        l.record(&served(&l, "chat", vec![attempt("a", FailureClass::Ok)]));
    }
    let [h1, d1, d30, d90] = l.windows(Scope::Route, "chat");
    assert_eq!(h1.tally.requests, 4);
    assert_eq!(h1.availability, Some(0.75));
    assert_eq!(d90.tally.requests, 4);

    advance(Duration::from_secs(61 * 60)).await;
    assert_eq!(
        l.window(Scope::Route, "chat", STANDARD_WINDOWS[0])
            .tally
            .requests,
        0
    );
    assert_eq!(
        l.window(Scope::Route, "chat", STANDARD_WINDOWS[1])
            .tally
            .requests,
        4
    );

    // Past 25 h the minutes roll into hours; the long windows still see them.
    advance(Duration::from_secs(26 * 3600)).await;
    l.compact();
    assert_eq!(
        l.window(Scope::Route, "chat", STANDARD_WINDOWS[1])
            .tally
            .requests,
        0
    );
    let d30 = l.window(Scope::Route, "chat", d30.window);
    assert_eq!((d30.tally.requests, d30.tally.failures), (4, 1));

    advance(Duration::from_secs(30 * 86_400)).await;
    l.compact();
    assert_eq!(
        l.window(Scope::Route, "chat", STANDARD_WINDOWS[2])
            .tally
            .requests,
        0
    );
    assert_eq!(l.window(Scope::Route, "chat", d90.window).tally.requests, 4);

    // Past retention (100 days) the history is gone, series and all.
    advance(Duration::from_secs(70 * 86_400)).await;
    l.compact();
    assert_eq!(l.window(Scope::Route, "chat", d90.window).tally.requests, 0);
    assert!(l.series().is_empty());
    let _ = d1;
}

#[tokio::test(start_paused = true)]
async fn error_budget_and_burn_rate_follow_the_slo() {
    let l = ledger();
    let ok = Tally {
        requests: 998,
        ..Tally::default()
    };
    let bad = Tally {
        requests: 2,
        failures: 2,
        ..Tally::default()
    };
    l.add(Scope::Route, "chat", T0, &ok, false);
    l.add(Scope::Route, "chat", T0, &bad, false);
    let w = l.window(Scope::Route, "chat", Duration::from_secs(3600));
    assert_eq!(w.availability, Some(0.998));
    // 0.2% failing against a 0.1% budget: burning twice as fast as sustainable, a whole
    // budget overspent.
    assert!((w.burn_rate.unwrap_or(0.0) - 2.0).abs() < 1e-9);
    assert!((w.error_budget_left.unwrap_or(0.0) + 1.0).abs() < 1e-9);
    let quiet = l.window(Scope::Route, "other", Duration::from_secs(3600));
    assert_eq!(quiet.availability, None);
    assert_eq!(quiet.burn_rate, None);
}

#[tokio::test(start_paused = true)]
async fn daily_bars_end_today() {
    let l = ledger();
    let bad = Tally {
        requests: 3,
        failures: 1,
        ..Tally::default()
    };
    // Two days ago, at noon.
    l.add(Scope::Deployment, "a", T0 + 12 * 3_600_000, &bad, false);
    advance(Duration::from_secs(2 * 86_400 + 3600)).await;
    l.compact();
    let days = l.daily(Scope::Deployment, "a", 3);
    assert_eq!(days.len(), 3);
    assert_eq!(days[0].start_ms, T0);
    assert_eq!((days[0].requests, days[0].failures), (3, 1));
    assert_eq!((days[1].requests, days[2].requests), (0, 0));
    assert_eq!(days[2].start_ms, T0 + 2 * 86_400_000);
}

#[tokio::test(start_paused = true)]
async fn changes_drain_once_and_can_be_put_back() {
    let l = ledger();
    l.record(&served(&l, "chat", vec![attempt("a", FailureClass::Ok)]));
    let deltas = l.drain_dirty();
    assert_eq!(deltas.len(), 2);
    assert!(
        deltas
            .iter()
            .all(|d| d.minute_ms == T0 && d.tally.requests == 1)
    );
    assert!(l.drain_dirty().is_empty());
    l.restore_dirty(deltas.clone());
    assert_eq!(l.drain_dirty(), deltas);
    // History loaded from the store is not written back.
    l.add(Scope::Route, "chat", T0, &deltas[0].tally, false);
    assert!(l.drain_dirty().is_empty());
}

/// Requests add to one pending bucket per series, folded in when the minute changes or anything
/// reads: whatever order reads, drains and minutes come in, each request counts once in the
/// windows and once in what goes to the store.
#[tokio::test(start_paused = true)]
async fn pending_minutes_are_counted_once_whenever_they_are_read() {
    let l = ledger();
    let hour = Duration::from_secs(3600);
    let requests = |l: &Ledger, n: usize| {
        for _ in 0..n {
            l.record(&served(l, "chat", vec![attempt("a", FailureClass::Ok)]));
        }
    };
    requests(&l, 3);
    // Read mid-minute, then more of the same minute, then the next minute.
    assert_eq!(l.tally(Scope::Route, "chat", hour).requests, 3);
    requests(&l, 2);
    let first = l.drain_dirty();
    assert_eq!(first.len(), 2);
    assert!(
        first
            .iter()
            .all(|d| d.minute_ms == T0 && d.tally.requests == 5)
    );
    requests(&l, 1);
    advance(Duration::from_secs(60)).await;
    requests(&l, 4);
    assert_eq!(l.tally(Scope::Route, "chat", hour).requests, 10);
    assert_eq!(l.tally(Scope::Deployment, "a", hour).requests, 10);
    let minutes = l.minutes_between(Scope::Route, "chat", T0, T0 + 60_000);
    let counts: Vec<(u64, u64)> = minutes.iter().map(|(m, t)| (*m, t.requests)).collect();
    assert_eq!(counts, vec![(T0, 6), (T0 + 60_000, 4)]);
    let route: Vec<(u64, u64)> = l
        .drain_dirty()
        .iter()
        .filter(|d| d.scope == Scope::Route)
        .map(|d| (d.minute_ms, d.tally.requests))
        .collect();
    assert_eq!(route, vec![(T0, 1), (T0 + 60_000, 4)]);
    let ttfb = l.tally(Scope::Route, "chat", hour).ttfb;
    assert_eq!(ttfb.count(), 10);
}

#[tokio::test(start_paused = true)]
async fn an_incident_lasts_from_the_first_open_to_the_close() {
    let l = ledger();
    let event = |transition, at_ms| BreakerEvent {
        key_slot: "a#0".into(),
        deployment: "a".into(),
        transition,
        at_ms,
    };
    let opened = |reason: &str| Transition::Opened {
        until_ms: 0,
        reason: reason.into(),
    };
    l.on_breaker(&event(opened("5 consecutive failures"), T0));
    l.on_breaker(&event(Transition::HalfOpen, T0 + 30_000));
    l.on_breaker(&event(opened("probe failed"), T0 + 30_100));
    let open = l.incidents(0);
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].closed_at_ms, None);
    assert_eq!(open[0].trips, 2);
    assert_eq!(open[0].reason, "5 consecutive failures");
    l.on_breaker(&event(Transition::Closed, T0 + 90_000));
    let all = l.incidents(0);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].opened_at_ms, T0);
    assert_eq!(all[0].closed_at_ms, Some(T0 + 90_000));
    assert!(l.incidents(T0 + 90_001).is_empty());
    // Written when it opened and when it closed.
    let log = l.drain_incidents();
    assert_eq!(log.len(), 2);
    assert_eq!(log[1].closed_at_ms, Some(T0 + 90_000));
}

#[tokio::test(start_paused = true)]
async fn an_incident_loaded_open_is_closed_by_the_slots_first_success() {
    let l = ledger();
    let open = |slot: &str| Incident {
        deployment: slot.split('#').next().unwrap_or(slot).into(),
        key_slot: slot.into(),
        opened_at_ms: T0 - 60_000,
        closed_at_ms: None,
        reason: "5 consecutive failures".into(),
        trips: 1,
    };
    l.load_incidents(vec![open("a#0"), open("b#0")]);
    // Loading writes nothing back.
    assert!(l.drain_incidents().is_empty());
    // A success elsewhere, and a failure on the slot, change nothing.
    l.record(&served(
        &l,
        "chat",
        vec![
            attempt("a", FailureClass::Server),
            attempt("c", FailureClass::Ok),
        ],
    ));
    assert_eq!(
        l.incidents(0)
            .iter()
            .filter(|i| i.closed_at_ms.is_none())
            .count(),
        2
    );
    // b's breaker trips in this process: the incident is ours now, only a close ends it.
    l.on_breaker(&BreakerEvent {
        key_slot: "b#0".into(),
        deployment: "b".into(),
        transition: Transition::Opened {
            until_ms: 0,
            reason: "probe failed".into(),
        },
        at_ms: T0,
    });
    advance(Duration::from_secs(5)).await;
    l.record(&served(&l, "chat", vec![attempt("b", FailureClass::Ok)]));
    l.record(&served(&l, "chat", vec![attempt("a", FailureClass::Ok)]));
    let all = l.incidents(0);
    let a = all.iter().find(|i| i.key_slot == "a#0");
    assert_eq!(a.and_then(|i| i.closed_at_ms), Some(T0 + 5_000));
    let b = all.iter().find(|i| i.key_slot == "b#0");
    assert_eq!(b.map(|i| (i.closed_at_ms, i.trips)), Some((None, 2)));
    let log = l.drain_incidents();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].key_slot, "a#0");
    // A failed write puts them back ahead of newer ones.
    l.on_breaker(&BreakerEvent {
        key_slot: "c#0".into(),
        deployment: "c".into(),
        transition: Transition::Opened {
            until_ms: 0,
            reason: "x".into(),
        },
        at_ms: T0 + 6_000,
    });
    l.restore_incidents(log);
    let again = l.drain_incidents();
    assert_eq!(
        again
            .iter()
            .map(|i| i.key_slot.as_str())
            .collect::<Vec<_>>(),
        ["a#0", "c#0"]
    );
}

#[tokio::test(start_paused = true)]
async fn windows_longer_than_the_data_say_since_when() {
    let l = ledger();
    assert_eq!(l.first_data_ms(Scope::Route, "chat"), None);
    advance(Duration::from_secs(2 * 3600)).await;
    l.record(&served(&l, "chat", vec![attempt("a", FailureClass::Ok)]));
    let first = T0 + 2 * 3_600_000;
    assert_eq!(l.first_data_ms(Scope::Route, "chat"), Some(first));
    advance(Duration::from_secs(90 * 60)).await;
    let [hour, day, month, quarter] = l.windows(Scope::Route, "chat");
    // The data began 90 minutes ago: they cover the last hour, not the longer windows.
    assert_eq!(hour.since_ms, None);
    for w in [day, month, quarter] {
        assert_eq!(w.since_ms, Some(first), "{:?}", w.window);
        assert_eq!(w.availability, Some(1.0));
    }
    assert_eq!(
        super::since(Some(first), first - 30_000, Duration::from_secs(3600)),
        None
    );
}

#[test]
fn a_delta_spooled_before_the_latency_sketch_still_reads() {
    let mut delta = Delta {
        scope: Scope::Route,
        name: "chat".into(),
        minute_ms: T0,
        tally: Tally::default(),
    };
    delta.tally.requests = 3;
    let mut line = serde_json::to_value(&delta).unwrap();
    line["tally"].as_object_mut().unwrap().remove("latency");
    let read: Delta = serde_json::from_value(line).unwrap();
    assert_eq!(read, delta);
}

/// A request that ends before the minutes kept (history, a clock step back) is built apart and
/// added to its hour and to the changes for the store, each once, sketches included.
#[tokio::test(start_paused = true)]
async fn a_request_older_than_the_minutes_kept_counts_once_in_its_hour() {
    let l = ledger();
    let old = served(&l, "chat", vec![attempt("a", FailureClass::Ok)]);
    advance(Duration::from_secs(27 * 3600)).await;
    l.compact();
    assert!(l.minutes_from() > T0);
    l.record(&old);
    let d30 = l.window(Scope::Route, "chat", STANDARD_WINDOWS[2]).tally;
    assert_eq!(
        (d30.requests, d30.ttfb.count(), d30.latency.count()),
        (1, 1, 1)
    );
    let a = l.window(Scope::Deployment, "a", STANDARD_WINDOWS[2]).tally;
    assert_eq!((a.requests, a.ttfb.count()), (1, 1));
    let deltas = l.drain_dirty();
    let counts: Vec<(Scope, u64, u64, u64)> = deltas
        .iter()
        .map(|d| (d.scope, d.minute_ms, d.tally.requests, d.tally.ttfb.count()))
        .collect();
    assert_eq!(
        counts,
        vec![(Scope::Route, T0, 1, 1), (Scope::Deployment, T0, 1, 1)]
    );
}
