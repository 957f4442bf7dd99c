use super::*;
use crate::clock::Clock;
use crate::config::Config;
use crate::telemetry::ledger::Tally;
use std::path::Path;
use tokio::time::advance;

/// 2026-01-01T00:00:00Z.
const T0: u64 = 1_767_225_600_000;
/// The clock starts half a minute in, so "now" is inside the first minute bucket.
const START: u64 = T0 + 30_000;
const MINUTE: Duration = Duration::from_secs(60);

fn settings() -> Settings {
    Settings {
        webhook_url: Secret::new("http://127.0.0.1:9/hook".into()),
        fallback_rate: 0.3,
        fallback_window: 5 * MINUTE,
        min_requests: 10,
        burn_rate: 14.4,
        burn_window: 60 * MINUTE,
        breaker: true,
        interval: Duration::from_secs(15),
        timeout: Duration::from_secs(2),
        retries: 0,
        retry_backoff: Duration::from_millis(10),
    }
}

fn ledger() -> Arc<Ledger> {
    Arc::new(Ledger::new(
        &crate::config::telemetry::Telemetry::default(),
        Clock::at(START),
    ))
}

fn evaluator() -> Evaluator {
    Evaluator::new(&settings(), 0.999)
}

/// Route `chat` traffic counted now.
fn traffic(l: &Ledger, requests: u64, fallbacks: u64, failures: u64) {
    let tally = Tally {
        requests,
        fallbacks,
        failures,
        ..Tally::default()
    };
    l.add(Scope::Route, "chat", l.clock().now_ms(), &tally, false);
}

fn event(key_slot: &str, transition: Transition, at_ms: u64) -> BreakerEvent {
    BreakerEvent {
        key_slot: key_slot.into(),
        deployment: key_slot.split('#').next().unwrap_or_default().into(),
        transition,
        at_ms,
    }
}

fn opened(reason: &str) -> Transition {
    Transition::Opened {
        until_ms: u64::MAX,
        reason: reason.into(),
    }
}

fn only(mut notices: Vec<Notice>) -> Notice {
    assert_eq!(notices.len(), 1, "{notices:#?}");
    notices.remove(0)
}

/// Evaluates `n` times; every evaluation must announce nothing.
fn quiet(e: &mut Evaluator, l: &Ledger, n: usize) {
    for _ in 0..n {
        let notices = e.evaluate(l);
        assert!(notices.is_empty(), "{notices:#?}");
    }
}

#[tokio::test(start_paused = true)]
async fn fallback_rate_fires_once_and_resolves_once_below_the_hysteresis_band() {
    let l = ledger();
    let mut e = evaluator();
    traffic(&l, 10, 4, 0);
    let n = only(e.evaluate(&l));
    assert_eq!(
        (n.kind, n.state, n.subject.as_str()),
        (Kind::FallbackRate, AlertState::Firing, "chat")
    );
    assert_eq!(
        n.payload,
        json!({
            "text": ":red_circle: nines: route chat fallback rate 40.0% over 5m (threshold 30.0%): \
                     4 of 10 requests served by a fallback",
            "nines": {
                "alert": "fallback_rate",
                "state": "firing",
                "route": "chat",
                "value": 0.4,
                "threshold": 0.3,
                "window": "5m",
                "requests": 10,
                "fallbacks": 4,
                "at": "2026-01-01T00:00:30.000Z"
            }
        })
    );
    quiet(&mut e, &l, 50);

    // 4 of 15 = 26.7%: under the threshold, but not under 80% of it.
    traffic(&l, 5, 0, 0);
    advance(Duration::from_secs(15)).await;
    quiet(&mut e, &l, 5);
    assert_eq!(e.firing(), vec![(Kind::FallbackRate, "chat".to_owned())]);

    // 4 of 17 = 23.5% < 24%: resolved, once.
    traffic(&l, 2, 0, 0);
    let n = only(e.evaluate(&l));
    assert_eq!(
        (n.kind, n.state),
        (Kind::FallbackRate, AlertState::Resolved)
    );
    assert_eq!(
        n.text(),
        ":large_green_circle: nines: resolved: route chat fallback rate 23.5% over 5m \
         (threshold 30.0%), after 15s"
    );
    assert_eq!(n.payload["nines"]["state"], "resolved");
    assert_eq!(n.payload["nines"]["since"], "2026-01-01T00:00:30.000Z");
    assert_eq!(n.payload["nines"]["at"], "2026-01-01T00:00:45.000Z");
    assert_eq!(n.payload["nines"]["fallbacks"], 4);
    quiet(&mut e, &l, 20);

    // Back between the band and the threshold (5 of 18): no new alert.
    traffic(&l, 1, 1, 0);
    quiet(&mut e, &l, 5);
    // Over it again (7 of 20 = 35%): a new alert.
    traffic(&l, 2, 2, 0);
    let n = only(e.evaluate(&l));
    assert_eq!((n.kind, n.state), (Kind::FallbackRate, AlertState::Firing));
    assert_eq!(n.payload["nines"]["value"], 0.35);
    assert!(e.firing().len() == 1);
}

#[tokio::test(start_paused = true)]
async fn thresholds_are_inclusive_and_the_band_edge_holds() {
    let l = ledger();
    let mut e = evaluator();
    // 3 of 10 is the threshold itself: it fires.
    traffic(&l, 10, 3, 0);
    assert_eq!(only(e.evaluate(&l)).state, AlertState::Firing);
    // 6 of 25 is exactly 80% of it: not below, so it holds.
    traffic(&l, 15, 3, 0);
    quiet(&mut e, &l, 3);
    // 6 of 26 is below.
    traffic(&l, 1, 0, 0);
    assert_eq!(only(e.evaluate(&l)).state, AlertState::Resolved);
}

#[tokio::test(start_paused = true)]
async fn too_few_requests_are_not_judged_and_an_empty_window_resolves() {
    let l = ledger();
    let mut e = evaluator();
    traffic(&l, 9, 9, 0);
    quiet(&mut e, &l, 3);
    traffic(&l, 1, 1, 0);
    let n = only(e.evaluate(&l));
    assert_eq!(n.state, AlertState::Firing);
    assert_eq!(n.payload["nines"]["value"], 1.0);

    // The traffic leaves the 5 minute window: nothing falls back any more.
    advance(6 * MINUTE).await;
    let n = only(e.evaluate(&l));
    assert_eq!(
        (n.kind, n.state),
        (Kind::FallbackRate, AlertState::Resolved)
    );
    assert_eq!(n.payload["nines"]["value"], Value::Null);
    assert_eq!(n.payload["nines"]["requests"], 0);
    assert!(
        n.text().contains("fallback rate no requests over 5m"),
        "{}",
        n.text()
    );
    assert!(n.text().ends_with("after 6m"), "{}", n.text());

    // Firing, then too few requests to judge but still falling back: it stays firing.
    traffic(&l, 10, 10, 0);
    assert_eq!(only(e.evaluate(&l)).state, AlertState::Firing);
    advance(6 * MINUTE).await;
    traffic(&l, 3, 3, 0);
    quiet(&mut e, &l, 3);
    assert_eq!(e.firing().len(), 1);
    advance(6 * MINUTE).await;
    assert_eq!(only(e.evaluate(&l)).state, AlertState::Resolved);
    assert!(e.firing().is_empty());
}

#[tokio::test(start_paused = true)]
async fn burn_rate_needs_the_long_and_the_recent_window_and_resolves_with_the_recent_one() {
    assert_eq!(recent_window(60 * MINUTE), 5 * MINUTE);
    assert_eq!(recent_window(24 * 60 * MINUTE), 120 * MINUTE);
    assert_eq!(recent_window(2 * MINUTE), 2 * MINUTE);

    let l = ledger();
    let mut e = evaluator();
    // Every request failed, but 5 requests are too few to judge.
    traffic(&l, 5, 0, 5);
    quiet(&mut e, &l, 3);
    // 10 of 100 failed against a 99.9% SLO: 100× the sustainable burn.
    traffic(&l, 95, 0, 5);
    let n = only(e.evaluate(&l));
    assert_eq!(
        (n.kind, n.state, n.subject.as_str()),
        (Kind::BurnRate, AlertState::Firing, "chat")
    );
    assert_eq!(
        n.text(),
        ":red_circle: nines: route chat is burning its error budget at 100.0× over 1h and 100.0× \
         over the last 5m (threshold 14.4×, SLO 99.9%): 10 of 100 requests failed"
    );
    let nines = &n.payload["nines"];
    assert!(
        (nines["value"].as_f64().unwrap() - 100.0).abs() < 1e-6,
        "{nines}"
    );
    assert_eq!(nines["threshold"], 14.4);
    assert_eq!(nines["window"], "1h");
    assert_eq!(nines["recent_window"], "5m");
    assert_eq!(
        (nines["requests"].as_u64(), nines["failures"].as_u64()),
        (Some(100), Some(10))
    );
    assert_eq!(nines["slo"], 0.999);
    quiet(&mut e, &l, 20);

    // Ten minutes later the route is healthy: the hour still burns at 50×, the last 5 minutes
    // not at all, so it resolves (and does not fire again while the recent window is cool).
    advance(10 * MINUTE).await;
    traffic(&l, 100, 0, 0);
    let n = only(e.evaluate(&l));
    assert_eq!((n.kind, n.state), (Kind::BurnRate, AlertState::Resolved));
    assert!((n.payload["nines"]["value"].as_f64().unwrap() - 50.0).abs() < 1e-6);
    assert_eq!(n.payload["nines"]["recent_value"], 0.0);
    assert!(n.text().ends_with("after 10m"), "{}", n.text());
    quiet(&mut e, &l, 5);

    // No recent traffic is no evidence of burning: the hour alone does not fire.
    advance(10 * MINUTE).await;
    quiet(&mut e, &l, 3);
    // Failing again: both windows burn.
    traffic(&l, 20, 0, 20);
    let n = only(e.evaluate(&l));
    assert_eq!((n.kind, n.state), (Kind::BurnRate, AlertState::Firing));
    assert_eq!(n.payload["nines"]["failures"], 30);
}

#[tokio::test(start_paused = true)]
async fn a_flapping_breaker_is_one_alert_until_it_closes() {
    let l = ledger();
    let mut e = evaluator();
    e.on_breaker(&event("d0#0", opened("5 consecutive failures"), START));
    let n = only(e.evaluate(&l));
    assert_eq!(
        n.payload,
        json!({
            "text": ":red_circle: nines: breaker d0#0 (deployment d0) opened: 5 consecutive failures",
            "nines": {
                "alert": "breaker",
                "state": "firing",
                "key_slot": "d0#0",
                "deployment": "d0",
                "reason": "5 consecutive failures",
                "trips": 1,
                "at": "2026-01-01T00:00:30.000Z"
            }
        })
    );
    assert_eq!(n.subject, "d0#0");
    // Cooldown over, the probe fails, twice: the same alert.
    for i in 1..=2 {
        e.on_breaker(&event("d0#0", Transition::HalfOpen, START + i * 10_000));
        quiet(&mut e, &l, 3);
        e.on_breaker(&event(
            "d0#0",
            opened("probe failed"),
            START + i * 10_000 + 5,
        ));
        quiet(&mut e, &l, 3);
    }
    // Another key slot is its own alert.
    e.on_breaker(&event(
        "d1#0",
        opened("key rejected by the provider"),
        START + 40_000,
    ));
    let n = only(e.evaluate(&l));
    assert_eq!((n.kind, n.subject.as_str()), (Kind::Breaker, "d1#0"));

    e.on_breaker(&event("d0#0", Transition::HalfOpen, START + 89_000));
    e.on_breaker(&event("d0#0", Transition::Closed, START + 90_000));
    let n = only(e.evaluate(&l));
    assert_eq!(
        (n.state, n.subject.as_str()),
        (AlertState::Resolved, "d0#0")
    );
    assert_eq!(
        n.text(),
        ":large_green_circle: nines: breaker d0#0 (deployment d0) closed after 1m 30s (opened 3 \
         times; first: 5 consecutive failures)"
    );
    let nines = &n.payload["nines"];
    assert_eq!(nines["trips"], 3);
    assert_eq!(nines["since"], "2026-01-01T00:00:30.000Z");
    assert_eq!(nines["at"], "2026-01-01T00:02:00.000Z");
    quiet(&mut e, &l, 5);
    assert_eq!(e.firing(), vec![(Kind::Breaker, "d1#0".to_owned())]);

    // Opening again later is a new alert with its own reason.
    e.on_breaker(&event(
        "d0#0",
        opened("3 of 10 attempts failed"),
        START + 200_000,
    ));
    let n = only(e.evaluate(&l));
    assert_eq!(n.state, AlertState::Firing);
    assert_eq!(n.payload["nines"]["reason"], "3 of 10 attempts failed");
    assert_eq!(n.payload["nines"]["trips"], 1);
}

#[tokio::test(start_paused = true)]
async fn breaker_changes_between_evaluations_collapse_and_breaker_alerts_can_be_off() {
    let l = ledger();
    let mut e = evaluator();
    // Opened and closed between two evaluations: not announced.
    e.on_breaker(&event(
        "d0#0",
        opened("rate limited with Retry-After"),
        START,
    ));
    e.on_breaker(&event("d0#0", Transition::Closed, START + 1000));
    quiet(&mut e, &l, 2);
    assert!(e.firing().is_empty());

    // Announced, then closed and reopened between two evaluations: still the one alert.
    e.on_breaker(&event(
        "d0#0",
        opened("5 consecutive failures"),
        START + 2000,
    ));
    assert_eq!(only(e.evaluate(&l)).state, AlertState::Firing);
    e.on_breaker(&event("d0#0", Transition::Closed, START + 3000));
    e.on_breaker(&event(
        "d0#0",
        opened("5 consecutive failures"),
        START + 4000,
    ));
    quiet(&mut e, &l, 2);
    e.on_breaker(&event("d0#0", Transition::Closed, START + 5000));
    let n = only(e.evaluate(&l));
    assert_eq!(n.state, AlertState::Resolved);
    assert_eq!(n.payload["nines"]["trips"], 2);

    let mut off = Evaluator::new(
        &Settings {
            breaker: false,
            ..settings()
        },
        0.999,
    );
    off.on_breaker(&event("d0#0", opened("5 consecutive failures"), START));
    quiet(&mut off, &l, 2);
}

/// Lets spawned tasks run (the paused clock does not move).
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn the_background_evaluator_runs_every_interval_and_announces_once() {
    let l = ledger();
    let sink = EventSink::new(l.clock());
    let alerts = Arc::new(Alerts::new(&settings(), 0.999));
    let mut queue = alerts.take_queue().unwrap();
    traffic(&l, 10, 5, 0);
    let task = alerts.spawn_evaluator(&l, &sink);
    settle().await;
    // The first evaluation runs at once.
    assert_eq!(alerts.stats().evaluations, 1);
    let n = queue.try_recv().unwrap();
    assert_eq!((n.kind, n.state), (Kind::FallbackRate, AlertState::Firing));

    // 15 more (the traffic stays inside the 5 minute window).
    for i in 0..15u64 {
        advance(Duration::from_secs(15)).await;
        settle().await;
        assert_eq!(alerts.stats().evaluations, 2 + i);
    }
    assert!(queue.try_recv().is_err(), "one notice for 16 evaluations");
    assert_eq!(alerts.stats().notices, 1);

    // A breaker transition is followed at once and judged at the next evaluation.
    sink.emit(
        "d0#0",
        Transition::Opened {
            until_ms: START + 60_000,
            reason: "5 consecutive failures".into(),
        },
    );
    settle().await;
    assert!(queue.try_recv().is_err());
    advance(Duration::from_secs(14)).await;
    settle().await;
    assert!(queue.try_recv().is_err(), "not before the interval");
    advance(Duration::from_secs(1)).await;
    settle().await;
    let n = queue.try_recv().unwrap();
    assert_eq!(
        (n.kind, n.state, n.subject.as_str()),
        (Kind::Breaker, AlertState::Firing, "d0#0")
    );

    // The task ends with the hub.
    drop(alerts);
    advance(Duration::from_secs(15)).await;
    settle().await;
    assert!(task.is_finished());
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_drops_notices_and_counts_them() {
    let alerts = Alerts::new(&settings(), 0.999);
    let mut e = evaluator();
    let l = ledger();
    for i in 0..QUEUE as u64 + 5 {
        e.on_breaker(&event(&format!("d{i}#0"), opened("x"), START));
    }
    for n in e.evaluate(&l) {
        alerts.enqueue(n);
    }
    let stats = alerts.stats();
    assert_eq!((stats.notices, stats.dropped), (QUEUE as u64 + 5, 5));
}

#[tokio::test]
async fn delivery_failures_never_name_the_webhook_url() {
    let s = Settings {
        // Port 9 (discard) refuses connections.
        webhook_url: Secret::new("http://127.0.0.1:9/services/T0P-SECRET-TOKEN".into()),
        retries: 1,
        retry_backoff: Duration::from_millis(1),
        ..settings()
    };
    let webhook = Webhook::new(&s).unwrap();
    let counters = Counters::default();
    let n = notice(
        Kind::Breaker,
        AlertState::Firing,
        "d0#0",
        T0,
        None,
        "x".into(),
        Map::new(),
    );
    let (attempts, error) = webhook.post(&n, &counters).await.unwrap_err();
    assert_eq!(attempts, 2, "one retry");
    assert_eq!(counters.attempts.load(Ordering::Relaxed), 2);
    assert_eq!(error, "could not connect");
    for text in [
        error,
        format!("{webhook:?}"),
        format!("{:?}", Alerts::new(&s, 0.999)),
    ] {
        assert!(!text.contains("T0P-SECRET"), "{text}");
        assert!(!text.contains("127.0.0.1:9"), "{text}");
    }
}

#[test]
fn alerts_settings_are_checked_and_the_url_never_printed() {
    let env = |name: &str| (name == "HOOK").then(|| "https://hooks.example/T0P-SECRET".to_owned());
    let parse = |text: &str| Config::parse(Path::new("nines.toml"), text, &env);
    let base = "[telemetry.alerts]\nwebhook_url = \"env:HOOK\"\n";
    let config = parse(base).unwrap();
    let a = config.telemetry.alerts.as_ref().unwrap();
    assert_eq!(a.webhook_url.expose(), "https://hooks.example/T0P-SECRET");
    assert_eq!(
        (a.fallback_rate, a.fallback_window, a.min_requests),
        (0.05, 5 * MINUTE, 20)
    );
    assert_eq!(
        (a.burn_rate, a.burn_window, a.breaker),
        (14.4, 60 * MINUTE, true)
    );
    assert_eq!(
        (a.interval, a.timeout, a.retries, a.retry_backoff),
        (
            Duration::from_secs(15),
            Duration::from_secs(5),
            3,
            Duration::from_secs(1)
        )
    );
    assert!(!format!("{config:?}").contains("T0P-SECRET"));

    for (extra, key) in [
        (
            "fallback_window = \"30s\"",
            "telemetry.alerts.fallback_window",
        ),
        ("burn_window = \"59s\"", "telemetry.alerts.burn_window"),
        ("interval = \"0s\"", "telemetry.alerts.interval"),
        ("timeout = \"0s\"", "telemetry.alerts.timeout"),
        ("retries = 11", "telemetry.alerts.retries"),
        ("fallback_rate = 1.5", "telemetry.alerts.fallback_rate"),
        ("burn_rate = 0", "telemetry.alerts.burn_rate"),
    ] {
        let e = parse(&format!("{base}{extra}\n")).unwrap_err();
        assert_eq!(e.path, key, "{extra}: {e}");
    }
    let e = parse("[telemetry.alerts]\nwebhook_url = \"ftp://T0P-SECRET\"\n").unwrap_err();
    assert_eq!(e.path, "telemetry.alerts.webhook_url");
    assert!(!e.to_string().contains("T0P-SECRET"), "{e}");
    let e = parse(&format!("[telemetry]\nledger = false\n\n{base}")).unwrap_err();
    assert_eq!(e.path, "telemetry.alerts");
}
