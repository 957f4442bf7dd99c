//! SLA reports over real HTTP: traffic through the gateway with one deployment down (its
//! breaker opens, requests fail over, a probe closes it again), sessions, the ledger persisted
//! to the store, then `GET /admin/reports/sla` in JSON, CSV and Markdown with exact numbers;
//! and two gateways sharing one store reported as one.

use crate::harness::{Harness, hello};
use crate::status_page::route;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

const ADMIN: &str = "admin-secret-for-sla";

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nines-sla-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `d0` on mock0 and `d1` on mock1 in model `chat` (priority order); breakers trip after 3
/// failures in a row and cool down for 500 ms; sessions end after 300 ms idle.
fn config(store: &Path) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[resilience.probes]
enabled = false

[resilience.breaker]
consecutive_failures = 3
cooldown = "500ms"

[[deployments]]
name = "d0"
provider = "openai-compatible"
model = "up-model-0"
base_url = "{{mock0}}"
timeouts = {{ first_byte = "2s", idle = "2s", total = "10s" }}

[[deployments]]
name = "d1"
provider = "openai-compatible"
model = "up-model-1"
base_url = "{{mock1}}"
timeouts = {{ first_byte = "2s", idle = "2s", total = "10s" }}

[[models]]
name = "chat"
deployments = ["d0", "d1"]

[auth]
enabled = false
admin_key = "{ADMIN}"

[store]
data_dir = "{}"
flush_interval = "20ms"

[telemetry]
flush_interval = "50ms"

[telemetry.sessions]
idle = "300ms"
"#,
        store.display()
    )
}

async fn chat(h: &Harness, session: &str) -> reqwest::Response {
    h.client
        .post(h.url("/v1/chat/completions"))
        .header("x-nines-session", session)
        .json(&hello("chat"))
        .send()
        .await
        .unwrap()
}

async fn report(h: &Harness, query: &str) -> reqwest::Response {
    h.client
        .get(h.url(&format!("/admin/reports/sla{query}")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
}

async fn report_json(h: &Harness, query: &str) -> Value {
    let r = report(h, query).await;
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{v}");
    v
}

/// Polls the JSON report until `done` holds (sessions end and breaker events land in the
/// background); fails after 10 s.
async fn report_when(h: &Harness, query: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let v = report_json(h, query).await;
        if done(&v) {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "report never got there: {v:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers()[name].to_str().unwrap()
}

#[tokio::test]
async fn an_outage_absorbed_by_failover_shows_in_the_report() {
    let dir = temp_dir();
    let h = Harness::start_opened(2, &config(&dir)).await;
    h.fault(0, json!({"status": 500}));
    // Three requests fail over; the third failure in a row opens d0's breaker.
    for _ in 0..3 {
        let r = chat(&h, "agent-1").await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-nines-deployment"), "d1");
        assert_eq!(header(&r, "x-nines-attempts"), "2");
    }
    // While it is open, d1 serves first: no failover, d0 not even asked.
    for _ in 0..2 {
        let r = chat(&h, "agent-1").await;
        assert_eq!(header(&r, "x-nines-deployment"), "d1");
        assert_eq!(header(&r, "x-nines-attempts"), "1");
    }
    assert_eq!((h.chat_hits(0), h.chat_hits(1)), (3, 5));
    // d0 recovers; after the cooldown one request probes it and closes the breaker.
    h.mock(0).set_fault(None);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let r = chat(&h, "agent-2").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-nines-deployment"), "d0");
    assert_eq!(h.chat_hits(0), 4);

    // Both sessions end (300 ms idle) and the incident closes in the background.
    let v = report_when(&h, "?window=1h", |v| {
        v["routes"][0]["sessions"]["count"] == 2 && v["incidents"][0]["closed_at"].is_string()
    })
    .await;
    assert_eq!(v["window"], "1h");
    assert_eq!(v["source"], "store");
    assert_eq!(v["slo"], 0.999);
    assert_eq!(v["routes"].as_array().unwrap().len(), 1);
    let chat = &v["routes"][0];
    assert_eq!(chat["route"], "chat");
    // What clients saw: every request answered.
    assert_eq!(chat["availability"], 1.0);
    assert_eq!(chat["requests"], 6);
    assert_eq!(chat["failures"], 0);
    assert_eq!(chat["failovers"], 3);
    assert_eq!(chat["errors"], json!({"server": 3}));
    assert_eq!(chat["error_budget"]["failures"], 0);
    assert_eq!(chat["error_budget"]["used"], 0.0);
    assert_eq!(chat["error_budget"]["left"], 1.0);
    let allowed = chat["error_budget"]["allowed_failures"].as_f64().unwrap();
    assert!((allowed - 0.006).abs() < 1e-9, "{allowed}");
    assert_eq!(
        chat["sessions"],
        json!({"count": 2, "good": 2, "good_share": 1.0})
    );
    let p50 = chat["ttfb"]["p50_ms"].as_f64().unwrap();
    let p99 = chat["ttfb"]["p99_ms"].as_f64().unwrap();
    assert!(p50 > 0.0 && p50 <= p99, "{chat}");
    // What the providers did: d0 failed 3 of its 4 attempts, d1 none of 5.
    let deployments = v["deployments"].as_array().unwrap();
    assert_eq!(deployments.len(), 2);
    let d0 = &deployments[0];
    assert_eq!(d0["deployment"], "d0");
    assert_eq!(
        (d0["requests"].as_u64(), d0["failures"].as_u64()),
        (Some(4), Some(3))
    );
    assert_eq!(d0["availability"], 0.25);
    assert_eq!(d0["errors"], json!({"server": 3}));
    let d1 = &deployments[1];
    assert_eq!(d1["deployment"], "d1");
    assert_eq!(
        (d1["requests"].as_u64(), d1["failures"].as_u64()),
        (Some(5), Some(0))
    );
    assert_eq!(d1["availability"], 1.0);
    // The breaker's open period, opened and closed by nines itself.
    let incidents = v["incidents"].as_array().unwrap();
    assert_eq!(incidents.len(), 1, "{v:#}");
    let i = &incidents[0];
    assert_eq!(i["deployment"], "d0");
    assert_eq!(i["key_slot"], "d0#0");
    assert_eq!(i["reason"], "3 consecutive failures");
    assert_eq!(i["trips"], 1);
    assert_eq!(i["ongoing"], false);
    let duration = i["duration_ms"].as_u64().unwrap();
    assert!((500..10_000).contains(&duration), "{duration}");
    assert_eq!(
        i["closed_at_ms"].as_u64().unwrap() - i["opened_at_ms"].as_u64().unwrap(),
        duration
    );

    // CSV: a row per route and deployment, then the incident block.
    let r = report(&h, "?window=1h&format=csv").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "text/csv; charset=utf-8");
    let csv = r.text().await.unwrap();
    // Blocks: series, incidents, latency objectives, notices.
    let blocks: Vec<&str> = csv.split("\r\n\r\n").collect();
    assert_eq!(blocks.len(), 4, "{csv}");
    let (series, incidents) = (blocks[0], blocks[1]);
    assert!(blocks[2].starts_with("objective_route,objective,bound_ms,"));
    assert!(blocks[3].starts_with("notice_id,kind,title,"));
    let rows: Vec<&str> = series.split("\r\n").collect();
    assert_eq!(rows.len(), 4, "{csv}");
    assert!(rows[0].starts_with("kind,name,availability,requests,failures,failovers,"));
    assert!(
        rows[1].starts_with("route,chat,1.000000,6,0,3,"),
        "{}",
        rows[1]
    );
    assert!(
        rows[2].starts_with("deployment,d0,0.250000,4,3,,"),
        "{}",
        rows[2]
    );
    assert!(
        rows[3].starts_with("deployment,d1,1.000000,5,0,,"),
        "{}",
        rows[3]
    );
    let width = rows[0].split(',').count();
    assert!(rows.iter().all(|r| r.split(',').count() == width));
    let incident_rows: Vec<&str> = incidents.trim_end().split("\r\n").collect();
    assert_eq!(incident_rows.len(), 2);
    assert!(incident_rows[0].starts_with("incident_deployment,key_slot,opened_at,closed_at,"));
    assert!(incident_rows[1].starts_with("d0,d0#0,"));
    assert!(incident_rows[1].ends_with(",false,3 consecutive failures,1"));

    // Markdown: the same numbers as tables.
    let r = report(&h, "?window=1h&format=md").await;
    assert_eq!(header(&r, "content-type"), "text/markdown; charset=utf-8");
    let md = r.text().await.unwrap();
    assert!(md.starts_with("# SLA report: last 1h\n"), "{md}");
    // A minute of data in an hour's window: each row says since when.
    for (name, figures) in [
        ("chat", " | 100.000% | 6 | 0 | 3 |"),
        ("d0", " | 25.000% | 4 | 3 |"),
        ("d1", " | 100.000% | 5 | 0 |"),
    ] {
        let row = md
            .lines()
            .find(|l| l.starts_with(&format!("| {name} (since 20")))
            .unwrap_or_else(|| panic!("no row for {name}: {md}"));
        assert!(row.contains("Z)") && row.contains(figures), "{row}");
    }
    assert!(md.contains("| d0 | d0#0 |"), "{md}");
    assert!(md.contains("| 3 consecutive failures | 1 |"), "{md}");

    // The default window is 30 days; the numbers are the same.
    let month = report_json(&h, "").await;
    assert_eq!(month["window"], "30d");
    assert_eq!(month["routes"], v["routes"]);

    // Admin only; bad parameters are 400s that say why.
    let r = h
        .client
        .get(h.url("/admin/reports/sla"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = report(&h, "?window=soon").await;
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not a duration")
    );
    let r = report(&h, "?window=365d").await;
    assert_eq!(r.status(), 400);
    let r = report(&h, "?format=xml").await;
    assert_eq!(r.status(), 400);
    let status: Value = h
        .client
        .get(h.url("/admin/status"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["ledger"]["loaded"], true, "{status}");
    assert_eq!(status["ledger"]["healthy"], true, "{status}");
    h.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn two_gateways_sharing_a_store_are_reported_as_one() {
    let dir = temp_dir();
    let a = Harness::start_opened(2, &config(&dir)).await;
    let b = Harness::start_opened(2, &config(&dir)).await;
    // A replica with d0 failing, and one without trouble.
    a.fault(0, json!({"status": 503}));
    for _ in 0..2 {
        assert_eq!(a.chat(&hello("chat")).await.status(), 200);
    }
    for _ in 0..3 {
        assert_eq!(b.chat(&hello("chat")).await.status(), 200);
    }
    // A's own changes are written before it reads; B's arrive with its next flush.
    let v = report_when(&a, "?window=1h", |v| v["routes"][0]["requests"] == 5).await;
    let chat = &v["routes"][0];
    assert_eq!(
        (chat["failures"].as_u64(), chat["failovers"].as_u64()),
        (Some(0), Some(2))
    );
    let d0 = &v["deployments"][0];
    assert_eq!(
        (d0["requests"].as_u64(), d0["failures"].as_u64()),
        (Some(5), Some(2))
    );
    let availability = d0["availability"].as_f64().unwrap();
    assert!((availability - 0.6).abs() < 1e-9, "{availability}");
    // B answers the same.
    let from_b = report_when(&b, "?window=1h", |v| v["routes"][0]["requests"] == 5).await;
    assert_eq!(from_b["routes"], v["routes"]);
    assert_eq!(from_b["deployments"], v["deployments"]);
    a.stop().await;
    b.stop().await;

    // A third gateway started on the store later reports the same history.
    let c = Harness::start_opened(2, &config(&dir)).await;
    let later = report_json(&c, "?window=1h").await;
    assert_eq!(later["routes"][0]["requests"], 5);
    assert_eq!(later["deployments"], v["deployments"]);
    c.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// The anonymous and the admin's `/status.json` once they count `samples` answers for `chat`
/// (each is built at most once a second).
async fn status_views(h: &Harness, samples: u64) -> (Value, Value) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let public: Value = h
            .client
            .get(h.url("/status.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let private: Value = h
            .client
            .get(h.url("/status.json"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let counted = |v: &Value| route(v, "chat")["ttfb_ms"]["samples"] == samples;
        if counted(&public) && counted(&private) {
            return (public, private);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "status never counted {samples}: {private:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_page_status_json_and_the_report_agree_on_time_to_first_byte() {
    let dir = temp_dir();
    let h = Harness::start_opened(2, &config(&dir)).await;
    // 6 answers after 30 ms, 6 after 90 ms, one after 250 ms: p50 is a 90 ms one, p95 and p99
    // the 250 ms one.
    for (latency, n) in [(30, 6), (90, 6), (250, 1)] {
        h.fault(0, json!({"latency_ms": latency}));
        for _ in 0..n {
            let r = chat(&h, "ttfb").await;
            assert_eq!(r.status(), 200);
            assert_eq!(header(&r, "x-nines-deployment"), "d0");
        }
    }
    let (public, private) = status_views(&h, 13).await;
    // The report lands in the background too: wait until it has counted all 13.
    let report = report_when(&h, "?window=1h", |r| {
        r["routes"].as_array().is_some_and(|routes| {
            routes
                .iter()
                .any(|x| x["route"] == "chat" && x["ttfb"]["samples"] == 13)
        })
    })
    .await;
    let reported = |kind: &str, key: &str, name: &str| -> Value {
        report[kind]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r[key] == name)
            .unwrap_or_else(|| panic!("no {name} in {report:#}"))["ttfb"]
            .clone()
    };
    let page = route(&public, "chat")["ttfb_ms"].clone();
    // One sketch, one computation: the same numbers everywhere.
    assert_eq!(page, route(&private, "chat")["ttfb_ms"]);
    assert_eq!(page, reported("routes", "route", "chat"));
    let d0 = route(&private, "chat")["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "d0")
        .unwrap()["ttfb_ms"]
        .clone();
    assert_eq!(d0, reported("deployments", "deployment", "d0"));
    assert_eq!(page["samples"], 13);
    // And within the stated bound of what the answers took (each at least its latency; the
    // gateway's own time on top is well under the slack).
    let alpha = page["relative_error"].as_f64().unwrap();
    assert_eq!(alpha, 0.01);
    let p50 = page["p50_ms"].as_f64().unwrap();
    assert!(
        p50 >= 90.0 * (1.0 - alpha) && p50 < 90.0 * (1.0 + alpha) + 60.0,
        "{page}"
    );
    for p in ["p95_ms", "p99_ms"] {
        let v = page[p].as_f64().unwrap();
        assert!(
            v >= 250.0 * (1.0 - alpha) && v < 250.0 * (1.0 + alpha) + 60.0,
            "{page}"
        );
    }
    // The data are a minute old: the report says since when, for a day as for a month.
    for window in ["24h", "30d"] {
        let v = report_json(&h, &format!("?window={window}")).await;
        let since = v["routes"][0]["since"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(since.ends_with('Z'), "{window}: {v:#}");
        assert!(since.as_str() >= v["from"].as_str().unwrap(), "{v:#}");
    }
    h.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
