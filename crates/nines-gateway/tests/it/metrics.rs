//! `GET /metrics` over real HTTP: scripted traffic (failovers, a 429, a stream, an unknown model,
//! a rate-limited key, a missing key, an outage that opens a breaker), then exact values read
//! back from the exposition; overhead that leaves out upstream time and policy waits; breaker
//! transitions; label hygiene (no secrets, no client-made names); a reload; `metrics = false`.

use crate::harness::{Harness, chain, error_of, hello, sse_data};
use nines_gateway::{AppState, Config, Runtime};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// One parsed exposition: every sample with its labels, checked for well-formedness on the way.
pub(crate) struct Exposition {
    pub(crate) text: String,
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Exposition {
    fn parse(text: String) -> Exposition {
        let mut types: BTreeMap<String, String> = BTreeMap::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(
                    types.insert(name.to_owned(), kind.to_owned()).is_none(),
                    "TYPE of {name} declared twice"
                );
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            assert!(
                !line.starts_with('#') && !line.is_empty(),
                "stray line {line:?}"
            );
            let (series, value) = line.rsplit_once(' ').unwrap();
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                v => v
                    .parse()
                    .unwrap_or_else(|_| panic!("bad value in {line:?}")),
            };
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}').unwrap())),
                None => (series, BTreeMap::new()),
            };
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s)
                        .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
                })
                .unwrap_or(name);
            assert!(
                types.contains_key(family),
                "{name} has no TYPE line before it"
            );
            assert!(
                name.starts_with("nines_")
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{name}"
            );
            samples.push((name.to_owned(), labels, value));
        }
        Exposition { text, samples }
    }

    pub(crate) fn find(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let found: Vec<f64> = self
            .samples
            .iter()
            .filter(|(n, l, _)| n == name && *l == want)
            .map(|(_, _, v)| *v)
            .collect();
        assert!(found.len() <= 1, "{name} {labels:?} appears twice");
        found.first().copied()
    }

    /// The value of the one series with exactly these labels.
    pub(crate) fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.find(name, labels).unwrap_or_else(|| {
            let family: Vec<&str> = self.text.lines().filter(|l| l.starts_with(name)).collect();
            panic!("no {name} {labels:?}; the family:\n{}", family.join("\n"))
        })
    }

    /// Sum over every series of `name` whose labels include these.
    pub(crate) fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| *v)
            .sum()
    }

    /// Values a label takes across a family.
    fn label_values(&self, name: &str, label: &str) -> BTreeSet<String> {
        self.samples
            .iter()
            .filter(|(n, _, _)| n == name)
            .filter_map(|(_, l, _)| l.get(label).cloned())
            .collect()
    }
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut chars = text.chars().peekable();
    while chars.peek().is_some() {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        assert_eq!(chars.next(), Some('"'), "in {text}");
        let mut value = String::new();
        loop {
            match chars.next().unwrap() {
                '\\' => match chars.next().unwrap() {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        labels.insert(name, value);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    labels
}

pub(crate) async fn scrape(h: &Harness) -> Exposition {
    let r = h.client.get(h.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    Exposition::parse(r.text().await.unwrap())
}

/// Tokens a response reported: `usage` of a body, or of a stream's usage chunk.
fn usage(body: &Value) -> (u64, u64) {
    let u = &body["usage"];
    (
        u["prompt_tokens"].as_u64().unwrap(),
        u["completion_tokens"].as_u64().unwrap(),
    )
}

const MAIN_KEY: &str = "sk-metrics-main-key-0001";
const LIMITED_KEY: &str = "sk-metrics-limited-key-0002";

fn scenario_config() -> String {
    r#"
[server]
listen = "127.0.0.1:0"

[resilience]
max_attempts_per_deployment = 1

[resilience.probes]
enabled = false

[resilience.breaker]
cooldown = "60s"

[resilience.retry_budget]
ratio = 0.5
min_per_second = 1
window = "10m"

[[deployments]]
name = "d0"
provider = "openai-compatible"
model = "up-model-0"
base_url = "{mock0}"
api_keys = ["env:TEST_KEY"]
price = { input = 1.0, output = 2.0 }
timeouts = { first_byte = "2s", idle = "2s", total = "10s" }

[[deployments]]
name = "d1"
provider = "openai-compatible"
model = "up-model-1"
base_url = "{mock1}"
api_keys = ["env:TEST_KEY"]
price = { input = 3.0, output = 4.0 }
timeouts = { first_byte = "2s", idle = "2s", total = "10s" }

[[models]]
name = "chat"
deployments = ["d0", "d1"]

[auth]
[[auth.keys]]
key = "sk-metrics-main-key-0001"
name = "main"
[[auth.keys]]
key = "sk-metrics-limited-key-0002"
name = "limited"
limits = { rpm = 1 }
"#
    .to_owned()
}

#[tokio::test]
async fn scripted_traffic_is_counted_exactly() {
    let h = Harness::start(2, &scenario_config()).await;
    let post = |key: Option<&'static str>, body: Value| {
        let mut request = h.client.post(h.url("/v1/chat/completions")).json(&body);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.send()
    };
    // Tokens per serving deployment, as the mock reported them.
    let mut tokens: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    let mut served = |deployment: &'static str, (i, o): (u64, u64)| {
        let t = tokens.entry(deployment).or_default();
        t.0 += i;
        t.1 += o;
    };
    let mut request_ids = Vec::new();

    // A: d0 answers 500 once, d1 serves (a fallback; 2 attempts).
    h.fault(0, json!({"status": 500, "times": 1}));
    let r = post(Some(MAIN_KEY), hello("chat")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-nines-deployment"], "d1");
    request_ids.push(r.headers()["x-request-id"].to_str().unwrap().to_owned());
    served("d1", usage(&r.json().await.unwrap()));
    // B: d0 is fine again (1 attempt).
    let r = post(Some(MAIN_KEY), hello("chat")).await.unwrap();
    assert_eq!(r.headers()["x-nines-deployment"], "d0");
    served("d0", usage(&r.json().await.unwrap()));
    // C: d0 rate-limits once, d1 serves (a fallback; 2 attempts).
    h.fault(0, json!({"status": 429, "times": 1}));
    let r = post(Some(MAIN_KEY), hello("chat")).await.unwrap();
    assert_eq!(r.headers()["x-nines-deployment"], "d1");
    served("d1", usage(&r.json().await.unwrap()));
    // D: a stream on d0 with its usage chunk.
    let mut body = hello("chat");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let r = post(Some(MAIN_KEY), body).await.unwrap();
    assert_eq!(r.headers()["x-nines-deployment"], "d0");
    let events = sse_data(r).await;
    let usage_chunk = events
        .iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .find(|c| c["usage"].is_object())
        .expect("a usage chunk");
    served("d0", usage(&usage_chunk));
    // E: a model nobody configured: 404, and its name must not become a label.
    let r = post(Some(MAIN_KEY), hello("made-up-model-xyz"))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // F: the limited key's first request passes, its second is refused at the key level.
    let r = post(Some(LIMITED_KEY), hello("chat")).await.unwrap();
    assert_eq!(r.headers()["x-nines-deployment"], "d0");
    served("d0", usage(&r.json().await.unwrap()));
    let r = post(Some(LIMITED_KEY), hello("chat")).await.unwrap();
    assert_eq!(r.status(), 429);
    // G: no key at all.
    let r = post(None, hello("chat")).await.unwrap();
    assert_eq!(r.status(), 401);
    // H: d0 goes down; five failovers trip its breaker (5 consecutive failures).
    h.fault(0, json!({"status": 500}));
    for _ in 0..5 {
        let r = post(Some(MAIN_KEY), hello("chat")).await.unwrap();
        assert_eq!(r.headers()["x-nines-attempts"], "2");
        served("d1", usage(&r.json().await.unwrap()));
    }
    // I: d0's breaker is open: skipped without an attempt, so not a fallback.
    let r = post(Some(MAIN_KEY), hello("chat")).await.unwrap();
    assert_eq!(r.headers()["x-nines-attempts"], "1");
    assert_eq!(r.headers()["x-nines-deployment"], "d1");
    served("d1", usage(&r.json().await.unwrap()));
    assert_eq!((h.chat_hits(0), h.chat_hits(1)), (10, 8));

    let m = scrape(&h).await;
    let oc = "openai-compatible";

    // Requests by model, deployment, endpoint and outcome.
    let requests = |model: &str, deployment: &str, provider: &str, code: &str, outcome: &str| {
        m.get(
            "nines_requests_total",
            &[
                ("model", model),
                ("deployment", deployment),
                ("provider", provider),
                ("endpoint", "chat_completions"),
                ("code", code),
                ("outcome", outcome),
            ],
        )
    };
    assert_eq!(requests("chat", "d1", oc, "200", "ok"), 8.0); // A, C, H×5, I
    assert_eq!(requests("chat", "d0", oc, "200", "ok"), 3.0); // B, D, F
    assert_eq!(requests("", "", "", "404", "model_not_found"), 1.0);
    assert_eq!(requests("", "", "", "429", "rate_limited"), 1.0);
    assert_eq!(requests("", "", "", "401", "unauthorized"), 1.0);
    assert_eq!(m.sum("nines_requests_total", &[]), 14.0);
    assert!(
        !m.text.contains("made-up-model-xyz"),
        "a client-made model name became a label"
    );

    // Attempts per request: B, D, F, I took 1; A, C, H×5 took 2.
    let attempts = |le: &str| {
        m.get(
            "nines_request_attempts_bucket",
            &[("model", "chat"), ("le", le)],
        )
    };
    assert_eq!(attempts("1"), 4.0);
    assert_eq!(attempts("2"), 11.0);
    assert_eq!(attempts("10"), 11.0);
    assert_eq!(attempts("+Inf"), 11.0);
    assert_eq!(
        m.get("nines_request_attempts_count", &[("model", "chat")]),
        11.0
    );
    assert_eq!(
        m.get("nines_request_attempts_sum", &[("model", "chat")]),
        18.0
    );

    // Fallbacks: A, C and the five outage requests.
    assert_eq!(m.get("nines_fallbacks_total", &[("model", "chat")]), 7.0);

    // Upstream attempts by class.
    let by_class = |deployment: &str, class: &str| {
        m.find(
            "nines_upstream_attempts_total",
            &[
                ("deployment", deployment),
                ("provider", oc),
                ("class", class),
            ],
        )
    };
    assert_eq!(by_class("d0", "server"), Some(6.0));
    assert_eq!(by_class("d0", "rate_limited"), Some(1.0));
    assert_eq!(by_class("d0", "ok"), Some(3.0));
    assert_eq!(by_class("d1", "ok"), Some(8.0));
    assert_eq!(
        by_class("d1", "server"),
        None,
        "no series for what never happened"
    );
    assert_eq!(
        m.sum("nines_upstream_attempts_total", &[]),
        (h.chat_hits(0) + h.chat_hits(1)) as f64,
        "one count per upstream call"
    );

    // Tokens and cost match what the mock reported.
    for (deployment, (input, output), price) in [
        ("d0", tokens["d0"], (1.0, 2.0)),
        ("d1", tokens["d1"], (3.0, 4.0)),
    ] {
        assert!(input > 0 && output > 0);
        let labels = [
            ("model", "chat"),
            ("deployment", deployment),
            ("provider", oc),
        ];
        let typed = |kind| {
            let mut l = labels.to_vec();
            l.push(("type", kind));
            m.get("nines_tokens_total", &l)
        };
        assert_eq!(typed("input"), input as f64, "{deployment}");
        assert_eq!(typed("output"), output as f64, "{deployment}");
        let cost = m.get("nines_cost_usd_total", &labels);
        let expected = (input as f64 * price.0 + output as f64 * price.1) / 1e6;
        assert!((cost - expected).abs() < 1e-12, "{cost} vs {expected}");
    }

    // Latency histograms: one observation per served request per deployment.
    for (deployment, n) in [("d0", 3.0), ("d1", 8.0)] {
        let route = [
            ("model", "chat"),
            ("deployment", deployment),
            ("provider", oc),
        ];
        let dep = [("deployment", deployment), ("provider", oc)];
        assert_eq!(m.get("nines_ttfb_seconds_count", &route), n);
        assert_eq!(m.get("nines_request_duration_seconds_count", &route), n);
        assert_eq!(m.get("nines_upstream_ttfb_seconds_count", &dep), n);
        assert_eq!(m.get("nines_overhead_seconds_count", &dep), n);
        let mut inf = route.to_vec();
        inf.push(("le", "+Inf"));
        assert_eq!(m.get("nines_request_duration_seconds_bucket", &inf), n);
    }
    // The three requests that never reached a deployment have a duration but no TTFB.
    let nowhere = [("model", ""), ("deployment", ""), ("provider", "")];
    assert_eq!(m.get("nines_request_duration_seconds_count", &nowhere), 3.0);
    assert_eq!(m.find("nines_ttfb_seconds_count", &nowhere), None);

    // Rate-limit rejections by level.
    let limited = |level: &str, reason: &str| {
        m.get(
            "nines_rate_limited_total",
            &[("level", level), ("reason", reason)],
        )
    };
    assert_eq!(limited("key", "rate_limited"), 1.0);
    assert_eq!(limited("user", "rate_limited"), 0.0);
    assert_eq!(limited("org", "rate_limited"), 0.0);
    assert_eq!(limited("key", "budget_exhausted"), 0.0);

    // Breakers: d0's is open after the outage, d1's closed; one transition so far.
    let state = |deployment: &str, slot: &str, state: &str| {
        m.get(
            "nines_breaker_state",
            &[
                ("deployment", deployment),
                ("key_slot", slot),
                ("state", state),
            ],
        )
    };
    assert_eq!(state("d0", "d0#0", "open"), 1.0);
    assert_eq!(state("d0", "d0#0", "closed"), 0.0);
    assert_eq!(state("d0", "d0#0", "half_open"), 0.0);
    assert_eq!(state("d1", "d1#0", "closed"), 1.0);
    assert_eq!(state("d1", "d1#0", "open"), 0.0);
    assert_eq!(
        m.get(
            "nines_breaker_transitions_total",
            &[
                ("deployment", "d0"),
                ("key_slot", "d0#0"),
                ("transition", "opened")
            ]
        ),
        1.0
    );
    assert_eq!(m.sum("nines_breaker_transitions_total", &[]), 1.0);

    // Nothing in flight once every answer (the stream included) has ended.
    for deployment in ["d0", "d1"] {
        assert_eq!(
            m.get(
                "nines_in_flight",
                &[("deployment", deployment), ("provider", oc)]
            ),
            0.0
        );
    }

    // Retry budget: 1/s × 600 s + 0.5 × 11 requests that reached an upstream − 7 extra attempts.
    assert_eq!(m.get("nines_retry_budget_remaining", &[]), 598.5);

    // Labels come from the configuration only: no key, no upstream secret, no request id.
    for secret in [
        "sk-upstream-secret",
        MAIN_KEY,
        LIMITED_KEY,
        request_ids[0].as_str(),
    ] {
        assert!(!m.text.contains(secret), "{secret} in the exposition");
    }
    assert_eq!(
        m.label_values("nines_requests_total", "model"),
        ["", "chat"].map(String::from).into()
    );
    h.stop().await;
}

#[tokio::test]
async fn overhead_leaves_out_upstream_time_and_breaker_waits() {
    let config = format!(
        "{}\n[resilience]\nmax_attempts_per_deployment = 1\n\n[resilience.breaker]\ncooldown = \"300ms\"\n",
        chain(1)
    );
    let h = Harness::start(1, &config).await;
    // Five failures open d0#0's breaker.
    h.fault(0, json!({"status": 500, "times": 5}));
    for _ in 0..5 {
        assert_eq!(h.chat(&hello("chat")).await.status(), 502);
    }
    // The next request waits for the reopening (300 ms), is the half-open probe, and the
    // upstream takes 400 ms to answer: at least 0.7 s of latency, almost none of it nines'.
    h.fault(0, json!({"latency_ms": 400}));
    let r = h.chat(&hello("chat")).await;
    assert_eq!(r.status(), 200);
    // A stream whose events come 300 ms apart: the relay's time is the upstream's, not nines'.
    h.fault(0, json!({"chunk_delay_ms": 300}));
    let mut body = hello("chat");
    body["stream"] = json!(true);
    let r = h.chat(&body).await;
    assert_eq!(r.status(), 200);
    let events = sse_data(r).await;
    assert!(events.len() >= 3, "{events:?}");

    let m = scrape(&h).await;
    let oc = "openai-compatible";
    let route = [("model", "chat"), ("deployment", "d0"), ("provider", oc)];
    let dep = [("deployment", "d0"), ("provider", oc)];
    let bucket = |name: &str, labels: &[(&str, &str)], le: &str| {
        let mut l = labels.to_vec();
        l.push(("le", le));
        m.get(&format!("{name}_bucket"), &l)
    };
    let requests = |code: &str, outcome: &str| {
        let mut l = route.to_vec();
        l.extend([
            ("endpoint", "chat_completions"),
            ("code", code),
            ("outcome", outcome),
        ]);
        m.get("nines_requests_total", &l)
    };
    assert_eq!(requests("502", "all_failed"), 5.0);
    assert_eq!(requests("200", "ok"), 2.0);
    assert_eq!(m.get("nines_request_duration_seconds_count", &route), 7.0);
    assert_eq!(
        bucket("nines_request_duration_seconds", &route, "0.5"),
        5.0,
        "the probe (≥ 0.7 s) and the stream (≥ 0.6 s) are slow"
    );
    assert_eq!(m.get("nines_overhead_seconds_count", &dep), 7.0);
    assert_eq!(
        bucket("nines_overhead_seconds", &dep, "0.25"),
        7.0,
        "upstream time, the breaker wait and the stream relay are not overhead"
    );
    // The upstream's own first byte: 400 ms for the probe, quick for the stream.
    assert_eq!(m.get("nines_upstream_ttfb_seconds_count", &dep), 2.0);
    assert_eq!(bucket("nines_upstream_ttfb_seconds", &dep, "0.25"), 1.0);

    // The breaker went round: opened, half-open (the probe), closed (its success).
    for transition in ["opened", "half_open", "closed"] {
        assert_eq!(
            m.get(
                "nines_breaker_transitions_total",
                &[
                    ("deployment", "d0"),
                    ("key_slot", "d0#0"),
                    ("transition", transition)
                ]
            ),
            1.0,
            "{transition}"
        );
    }
    assert_eq!(
        m.get(
            "nines_breaker_state",
            &[
                ("deployment", "d0"),
                ("key_slot", "d0#0"),
                ("state", "closed")
            ]
        ),
        1.0
    );
    h.stop().await;
}

#[tokio::test]
async fn a_retry_after_wait_is_not_overhead() {
    let h = Harness::start(1, &chain(1)).await;
    h.fault(0, json!({"status": 429, "retry_after_ms": 400, "times": 1}));
    let r = h.chat(&hello("chat")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-nines-attempts"], "2");
    let m = scrape(&h).await;
    let dep = [
        ("deployment", "d0"),
        ("provider", "openai-compatible"),
        ("le", "0.25"),
    ];
    let route = [
        ("model", "chat"),
        ("deployment", "d0"),
        ("provider", "openai-compatible"),
        ("le", "0.25"),
    ];
    assert_eq!(
        m.get("nines_request_duration_seconds_bucket", &route),
        0.0,
        "waited 400 ms"
    );
    assert_eq!(m.get("nines_overhead_seconds_bucket", &dep), 1.0);
    assert_eq!(
        m.get(
            "nines_upstream_attempts_total",
            &[
                ("deployment", "d0"),
                ("provider", "openai-compatible"),
                ("class", "rate_limited")
            ]
        ),
        1.0
    );
    h.stop().await;
}

#[tokio::test]
async fn a_hedged_race_is_upstream_time_and_its_loser_is_cancelled() {
    let config = chain(2).replace(
        "name = \"chat\"\n",
        "name = \"chat\"\nhedge = { enabled = true, delay = \"100ms\", max_percent = 100 }\n",
    );
    let h = Harness::start(2, &config).await;
    // d0 is slow, so d1 is hedged in after 100 ms and answers 300 ms later.
    h.fault(0, json!({"first_byte_ms": 1500}));
    h.fault(1, json!({"first_byte_ms": 300}));
    let r = h.chat(&hello("chat")).await;
    assert_eq!(r.headers()["x-nines-deployment"], "d1");
    assert_eq!(r.headers()["x-nines-attempts"], "2");
    let m = scrape(&h).await;
    let oc = "openai-compatible";
    let class = |deployment: &str, class: &str| {
        m.get(
            "nines_upstream_attempts_total",
            &[
                ("deployment", deployment),
                ("provider", oc),
                ("class", class),
            ],
        )
    };
    assert_eq!(class("d0", "cancelled"), 1.0);
    assert_eq!(class("d1", "ok"), 1.0);
    assert_eq!(m.get("nines_fallbacks_total", &[("model", "chat")]), 1.0);
    let route = [
        ("model", "chat"),
        ("deployment", "d1"),
        ("provider", oc),
        ("le", "0.25"),
    ];
    assert_eq!(m.get("nines_request_duration_seconds_bucket", &route), 0.0);
    assert_eq!(
        m.get(
            "nines_overhead_seconds_bucket",
            &[("deployment", "d1"), ("provider", oc), ("le", "0.25")]
        ),
        1.0,
        "the race, hedge delay included, is upstream time"
    );
    h.stop().await;
}

#[tokio::test]
async fn derived_names_are_labels_and_a_reload_keeps_counting() {
    let state: Arc<Mutex<Option<Arc<AppState>>>> = Arc::default();
    let keep = Arc::clone(&state);
    let h = Harness::start_with(2, &chain(1), |runtime| async move {
        let s = AppState::new(runtime);
        *keep.lock().unwrap() = Some(Arc::clone(&s));
        s
    })
    .await;
    let state = state.lock().unwrap().clone().unwrap();
    assert_eq!(h.chat(&hello("chat")).await.status(), 200);
    // `provider/upstream-model` is a name the configuration defines: it is a label.
    let r = h.chat(&hello("openai-compatible/up-model-0")).await;
    assert_eq!(r.status(), 200);

    // Reload: d1 (on mock1) joins and takes over `chat`.
    let text = format!(
        "{}\n[[deployments]]\nname = \"d1\"\nprovider = \"openai\"\nmodel = \"up-model-1\"\nbase_url = \"{}\"\napi_keys = [\"env:TEST_KEY\"]\n",
        chain(1).replace("deployments = [\"d0\"]", "deployments = [\"d1\"]"),
        h.mock(1).base_url()
    )
    .replace("{mock0}", &h.mock(0).base_url());
    let config = Config::parse(Path::new("reload.toml"), &text, &|name| {
        (name == "TEST_KEY").then(|| "sk-upstream-secret-0001".to_owned())
    })
    .unwrap();
    state.replace(Runtime::build(config).unwrap());
    let r = h.chat(&hello("chat")).await;
    assert_eq!(r.headers()["x-nines-deployment"], "d1");

    let m = scrape(&h).await;
    let requests = |model: &str, deployment: &str, provider: &str| {
        m.get(
            "nines_requests_total",
            &[
                ("model", model),
                ("deployment", deployment),
                ("provider", provider),
                ("endpoint", "chat_completions"),
                ("code", "200"),
                ("outcome", "ok"),
            ],
        )
    };
    assert_eq!(
        requests("chat", "d0", "openai-compatible"),
        1.0,
        "kept across the reload"
    );
    assert_eq!(
        requests("openai-compatible/up-model-0", "d0", "openai-compatible"),
        1.0
    );
    assert_eq!(
        requests("chat", "d1", "openai"),
        1.0,
        "the new deployment, its provider"
    );
    // The live gauges follow the new runtime.
    assert_eq!(
        m.get(
            "nines_breaker_state",
            &[
                ("deployment", "d1"),
                ("key_slot", "d1#0"),
                ("state", "closed")
            ]
        ),
        1.0
    );
    assert_eq!(
        m.get(
            "nines_in_flight",
            &[("deployment", "d1"), ("provider", "openai")]
        ),
        0.0
    );
    h.stop().await;
}

#[tokio::test]
async fn metrics_off_answers_404() {
    let config = format!("{}\n[telemetry]\nmetrics = false\n", chain(1));
    let h = Harness::start(1, &config).await;
    assert_eq!(h.chat(&hello("chat")).await.status(), 200);
    let r = h.client.get(h.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_of(r).await["code"], "unknown_url");
    h.stop().await;
}
