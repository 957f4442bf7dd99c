//! Alerts over real HTTP: the gateway in front of chaos mocks, a local webhook receiver recording
//! every notice, exact notice counts over many evaluations.

use crate::harness::{Harness, chain, eventually, hello};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use nines_gateway::AppState;
use nines_gateway::telemetry::alerts::AlertStats;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

const WAIT: Duration = Duration::from_secs(10);

/// A Slack-like webhook on 127.0.0.1:0 that records every body it is sent.
struct Hook {
    url: String,
    inner: Arc<Inner>,
}

struct Inner {
    bodies: Mutex<Vec<Value>>,
    /// Statuses to answer, in order; 200 once used up.
    script: Mutex<VecDeque<u16>>,
    /// While `false`, requests are recorded but not answered.
    gate: watch::Sender<bool>,
}

async fn receive(State(inner): State<Arc<Inner>>, body: String) -> StatusCode {
    let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    inner.bodies.lock().unwrap().push(value);
    let mut open = inner.gate.subscribe();
    let _ = open.wait_for(|open| *open).await;
    let status = inner.script.lock().unwrap().pop_front().unwrap_or(200);
    StatusCode::from_u16(status).unwrap()
}

impl Hook {
    async fn start() -> Hook {
        let (gate, _) = watch::channel(true);
        let inner = Arc::new(Inner {
            bodies: Mutex::default(),
            script: Mutex::default(),
            gate,
        });
        let app = axum::Router::new()
            .route("/hooks/{token}", post(receive))
            .with_state(Arc::clone(&inner));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/hooks/T0KEN-in-the-url",
            listener.local_addr().unwrap()
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Hook { url, inner }
    }

    fn bodies(&self) -> Vec<Value> {
        self.inner.bodies.lock().unwrap().clone()
    }

    /// `(alert, state, subject)` of every notice received, in order.
    fn notices(&self) -> Vec<(String, String, String)> {
        self.bodies()
            .iter()
            .map(|b| {
                let n = &b["nines"];
                let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
                let subject = if n["alert"] == "breaker" {
                    &n["key_slot"]
                } else {
                    &n["route"]
                };
                (text(&n["alert"]), text(&n["state"]), text(subject))
            })
            .collect()
    }

    fn count(&self, alert: &str, state: &str, subject: &str) -> usize {
        self.notices()
            .iter()
            .filter(|(a, s, x)| a == alert && s == state && x == subject)
            .count()
    }

    /// The one notice of this alert, state and subject.
    fn find(&self, alert: &str, state: &str, subject: &str) -> Value {
        let found: Vec<Value> = self
            .bodies()
            .into_iter()
            .zip(self.notices())
            .filter(|(_, (a, s, x))| a == alert && s == state && x == subject)
            .map(|(b, _)| b)
            .collect();
        assert_eq!(found.len(), 1, "{:#?}", self.notices());
        found.into_iter().next().unwrap()
    }
}

/// `chain(2)` with short breaker cooldowns, plus `[telemetry.alerts]` posting to `hook`.
fn config(hook: &Hook, extra: &str, alerts: &str) -> String {
    format!(
        "{}{extra}\n[telemetry.alerts]\nwebhook_url = \"{}\"\nfallback_rate = 0.3\n\
         fallback_window = \"10m\"\nmin_requests = 10\nburn_window = \"10m\"\ninterval = \"50ms\"\n\
         retry_backoff = \"10ms\"\n{alerts}",
        chain(2),
        hook.url
    )
}

/// The harness, and the state it serves (for the alert counters).
async fn start(template: &str) -> (Harness, Arc<AppState>) {
    let slot: Arc<Mutex<Option<Arc<AppState>>>> = Arc::default();
    let keep = Arc::clone(&slot);
    let h = Harness::start_with(2, template, move |runtime| async move {
        let state = AppState::new(runtime);
        *keep.lock().unwrap() = Some(Arc::clone(&state));
        state
    })
    .await;
    let state = slot.lock().unwrap().take().unwrap();
    (h, state)
}

fn stats(state: &AppState) -> AlertStats {
    state.telemetry.alerts.as_ref().unwrap().stats()
}

/// Waits for `n` more evaluations, so a duplicate notice would have had its chances.
async fn evaluations(state: &AppState, n: u64) {
    let from = stats(state).evaluations;
    eventually(WAIT, || stats(state).evaluations >= from + n).await;
}

/// Sends requests (each must succeed) until `done` holds; fails after [`WAIT`].
async fn chat_until(h: &Harness, hook: &Hook, mut done: impl FnMut() -> bool) -> u32 {
    let deadline = Instant::now() + WAIT;
    let mut sent = 0;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "not reached: {:#?}",
            hook.notices()
        );
        assert_eq!(h.chat(&hello("chat")).await.status(), 200);
        sent += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sent
}

fn sorted(mut v: Vec<(String, String, String)>) -> Vec<(String, String, String)> {
    v.sort();
    v
}

fn triple(alert: &str, state: &str, subject: &str) -> (String, String, String) {
    (alert.into(), state.into(), subject.into())
}

#[tokio::test]
async fn fallbacks_and_an_open_breaker_alert_once_then_resolve_once() {
    let hook = Hook::start().await;
    let (h, state) = start(&config(
        &hook,
        "\n[resilience.breaker]\ncooldown = \"200ms\"\nmax_cooldown = \"400ms\"\n",
        "",
    ))
    .await;
    h.fault(0, json!({"status": 500}));
    for _ in 0..12 {
        let r = h.chat(&hello("chat")).await;
        assert_eq!(r.status(), 200, "the client never sees d0 failing");
        assert_eq!(r.headers()["x-nines-deployment"], "d1");
    }
    // Five failovers opened d0's breaker; after that d1 is tried first (no fallback) until a
    // half-open probe fails over again: at least 5 of 12 requests fell back.
    eventually(WAIT, || {
        hook.count("fallback_rate", "firing", "chat") == 1
            && hook.count("breaker", "firing", "d0#0") == 1
    })
    .await;
    evaluations(&state, 20).await;
    assert_eq!(
        sorted(hook.notices()),
        vec![
            triple("breaker", "firing", "d0#0"),
            triple("fallback_rate", "firing", "chat"),
        ],
        "one notice each, however many evaluations"
    );
    let fallback = hook.find("fallback_rate", "firing", "chat");
    let n = &fallback["nines"];
    assert_eq!(
        (&n["threshold"], &n["window"]),
        (&json!(0.3), &json!("10m"))
    );
    assert!(n["requests"].as_u64().unwrap() >= 10, "{n}");
    assert!(n["fallbacks"].as_u64().unwrap() >= 5, "{n}");
    assert!(n["value"].as_f64().unwrap() >= 0.3, "{n}");
    let text = fallback["text"].as_str().unwrap();
    assert!(
        text.starts_with(":red_circle: nines: route chat fallback rate ")
            && text.contains("over 10m (threshold 30.0%)"),
        "{text}"
    );
    let breaker = hook.find("breaker", "firing", "d0#0");
    assert_eq!(breaker["nines"]["deployment"], "d0");
    assert_eq!(breaker["nines"]["reason"], "5 consecutive failures");
    assert_eq!(
        breaker["text"],
        ":red_circle: nines: breaker d0#0 (deployment d0) opened: 5 consecutive failures"
    );

    // d0 recovers: once its cooldown is over a request probes it and closes the breaker, and
    // requests without failover bring the fallback share under 80% of the threshold.
    h.mock(0).set_fault(None);
    chat_until(&h, &hook, || {
        hook.count("breaker", "resolved", "d0#0") == 1
            && hook.count("fallback_rate", "resolved", "chat") == 1
    })
    .await;
    evaluations(&state, 20).await;
    let notices = hook.notices();
    assert_eq!(
        sorted(notices.clone()),
        vec![
            triple("breaker", "firing", "d0#0"),
            triple("breaker", "resolved", "d0#0"),
            triple("fallback_rate", "firing", "chat"),
            triple("fallback_rate", "resolved", "chat"),
        ],
        "{notices:#?}"
    );
    for (alert, subject) in [("breaker", "d0#0"), ("fallback_rate", "chat")] {
        let at = |state: &str| {
            notices
                .iter()
                .position(|n| *n == triple(alert, state, subject))
                .unwrap()
        };
        assert!(at("firing") < at("resolved"), "{notices:#?}");
    }
    let resolved = hook.find("fallback_rate", "resolved", "chat");
    assert!(
        resolved["nines"]["value"].as_f64().unwrap() < 0.24,
        "{resolved}"
    );
    assert_eq!(
        resolved["nines"]["since"],
        hook.find("fallback_rate", "firing", "chat")["nines"]["at"]
    );
    let closed = hook.find("breaker", "resolved", "d0#0");
    assert!(
        closed["text"]
            .as_str()
            .unwrap()
            .starts_with(":large_green_circle: nines: breaker d0#0 (deployment d0) closed after "),
        "{closed}"
    );
    let s = stats(&state);
    assert_eq!(
        (s.notices, s.delivered, s.failed, s.dropped, s.attempts),
        (4, 4, 0, 0, 4)
    );
    for body in hook.bodies() {
        assert!(!body.to_string().contains("T0KEN"), "{body}");
    }
}

#[tokio::test]
async fn every_deployment_failing_burns_the_budget_once_until_it_recovers() {
    let hook = Hook::start().await;
    // Breakers that never trip and one attempt per deployment: every request fails with 502.
    // With a 50% SLO, burning 1.5× means 75% of requests failing; it resolves under 60%.
    let (h, state) = start(&config(
        &hook,
        "\n[resilience]\nmax_attempts_per_deployment = 1\n\n[resilience.breaker]\n\
         consecutive_failures = 1000000\nmin_requests = 1000000\n\n[telemetry]\nslo = 0.5\n",
        "burn_rate = 1.5\n",
    ))
    .await;
    h.fault(0, json!({"status": 500}));
    h.fault(1, json!({"status": 503}));
    for _ in 0..12 {
        assert_eq!(h.chat(&hello("chat")).await.status(), 502);
    }
    eventually(WAIT, || hook.count("burn_rate", "firing", "chat") == 1).await;
    evaluations(&state, 20).await;
    assert_eq!(
        hook.notices(),
        vec![triple("burn_rate", "firing", "chat")],
        "no fallback (nothing was served) and no breaker alert (none opened)"
    );
    let burn = hook.find("burn_rate", "firing", "chat");
    let n = &burn["nines"];
    // An evaluation may fall while the 12 requests are still being sent (a loaded machine): it
    // fires on what it saw, every one of them failed.
    let seen = n["requests"].as_u64().unwrap();
    assert!((1..=12).contains(&seen), "{n}");
    assert_eq!(
        (&n["failures"], &n["value"], &n["recent_value"]),
        (&json!(seen), &json!(2.0), &json!(2.0))
    );
    assert_eq!((&n["threshold"], &n["slo"]), (&json!(1.5), &json!(0.5)));
    assert_eq!(
        (&n["window"], &n["recent_window"]),
        (&json!("10m"), &json!("5m"))
    );
    assert_eq!(
        burn["text"],
        format!(
            ":red_circle: nines: route chat is burning its error budget at 2.0× over 10m and \
             2.0× over the last 5m (threshold 1.5×, SLO 50%): {seen} of {seen} requests failed"
        )
    );

    h.mock(0).set_fault(None);
    h.mock(1).set_fault(None);
    chat_until(&h, &hook, || {
        hook.count("burn_rate", "resolved", "chat") == 1
    })
    .await;
    // Resolved under 80% of the threshold, not at it: 12 failures need 9 successes besides.
    let resolved = hook.find("burn_rate", "resolved", "chat");
    let n = &resolved["nines"];
    assert!(n["recent_value"].as_f64().unwrap() < 1.2, "{n}");
    assert!(n["requests"].as_u64().unwrap() >= 21, "{n}");
    assert_eq!(n["failures"], 12);
    evaluations(&state, 20).await;
    assert_eq!(
        hook.notices(),
        vec![
            triple("burn_rate", "firing", "chat"),
            triple("burn_rate", "resolved", "chat"),
        ]
    );
}

#[tokio::test]
async fn a_failing_webhook_is_retried_and_never_holds_up_requests() {
    let hook = Hook::start().await;
    let (h, state) = start(&config(
        &hook,
        "",
        "breaker = false\nretries = 2\ntimeout = \"30s\"\n",
    ))
    .await;
    // The webhook holds its first answer, then answers 500 to three attempts.
    hook.inner.gate.send_replace(false);
    hook.inner.script.lock().unwrap().extend([500u16, 500, 500]);
    h.fault(0, json!({"status": 500}));
    for _ in 0..10 {
        assert_eq!(h.chat(&hello("chat")).await.status(), 200);
    }
    eventually(WAIT, || hook.bodies().len() == 1).await;

    // Delivery is stuck on the webhook; requests and evaluation go on regardless. (Another
    // route, so that `chat`'s fallback share, and its alert, stay as they are.)
    for _ in 0..20 {
        let started = Instant::now();
        assert_eq!(h.chat(&hello("embed")).await.status(), 200);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }
    evaluations(&state, 10).await;
    assert_eq!(
        hook.bodies().len(),
        1,
        "one attempt in flight, nothing else sent"
    );

    hook.inner.gate.send_replace(true);
    eventually(WAIT, || stats(&state).failed == 1).await;
    let bodies = hook.bodies();
    assert_eq!(bodies.len(), 3, "the first attempt and two retries");
    assert!(
        bodies.iter().all(|b| *b == bodies[0]),
        "the same notice each time"
    );
    assert_eq!(bodies[0]["nines"]["alert"], "fallback_rate");
    let s = stats(&state);
    assert_eq!((s.notices, s.delivered, s.failed, s.attempts), (1, 0, 1, 3));

    // The webhook works again: the next notice is delivered at the first attempt.
    h.mock(0).set_fault(None);
    chat_until(&h, &hook, || {
        hook.count("fallback_rate", "resolved", "chat") == 1
    })
    .await;
    eventually(WAIT, || stats(&state).delivered == 1).await;
    let s = stats(&state);
    assert_eq!((s.notices, s.delivered, s.failed, s.attempts), (2, 1, 1, 4));
    assert_eq!(hook.bodies().len(), 4);
}

#[tokio::test]
async fn a_route_missing_its_latency_objective_alerts_once_until_it_is_fast_again() {
    let hook = Hook::start().await;
    // `slow` is d0 alone, promised a median time to first token within 100 ms; half its minute
    // windows may miss it (`windows = 0.5`), so every minute missing burns 2×.
    let (h, state) = start(&config(
        &hook,
        "\n[[models]]\nname = \"slow\"\ndeployments = [\"d0\"]\n\
         slo = { ttft_p50 = \"100ms\", windows = 0.5 }\n",
        "burn_rate = 1.5\n",
    ))
    .await;
    h.fault(0, json!({"latency_ms": 250}));
    for _ in 0..10 {
        assert_eq!(h.chat(&hello("slow")).await.status(), 200);
    }
    eventually(WAIT, || {
        hook.count("latency_objective", "firing", "slow") == 1
    })
    .await;
    evaluations(&state, 20).await;
    assert_eq!(
        hook.notices(),
        vec![triple("latency_objective", "firing", "slow")],
        "one notice however many evaluations; nothing failed, so no other alert"
    );
    let firing = hook.find("latency_objective", "firing", "slow");
    let n = &firing["nines"];
    assert_eq!(n["objective"], "ttft_p50");
    assert_eq!(n["bound_ms"], 100.0);
    assert_eq!(
        (&n["value"], &n["recent_value"]),
        (&json!(2.0), &json!(2.0))
    );
    assert_eq!(
        n["minutes"], n["minutes_missed"],
        "every minute judged missed"
    );
    assert_eq!(n["windows_objective"], 0.5);
    let text = firing["text"].as_str().unwrap();
    assert!(
        text.starts_with(
            ":red_circle: nines: route slow is missing its latency objective ttft_p50 ≤ 100 ms: "
        ),
        "{text}"
    );

    // Fast again: once the minutes' medians are within the bound (or at most half the minutes
    // missed), it resolves, once.
    h.mock(0).set_fault(None);
    let deadline = Instant::now() + WAIT;
    while hook.count("latency_objective", "resolved", "slow") == 0 {
        assert!(Instant::now() < deadline, "{:#?}", hook.notices());
        assert_eq!(h.chat(&hello("slow")).await.status(), 200);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    evaluations(&state, 20).await;
    assert_eq!(
        hook.notices(),
        vec![
            triple("latency_objective", "firing", "slow"),
            triple("latency_objective", "resolved", "slow"),
        ]
    );
    h.stop().await;
}
