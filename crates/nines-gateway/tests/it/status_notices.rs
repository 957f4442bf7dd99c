//! Operator notices over the admin API: posted, shown on the page (escaped) and in
//! `/status.json`, resolved, listed in the SLA report, refused with a reason when wrong, and
//! kept by the store across a restart.

use crate::harness::{Harness, chain, hello};
use serde_json::{Value, json};
use std::time::Duration;

const ADMIN: &str = "sk-notice-admin";

fn config(store: &str) -> String {
    format!(
        "{}\n[auth]\nenabled = false\nadmin_key = \"{ADMIN}\"\n\n[store]\ndatabase_url = \"{store}\"\n",
        chain(1)
    )
}

async fn post(h: &Harness, path: &str, body: Option<Value>) -> reqwest::Response {
    let mut request = h.client.post(h.url(path)).bearer_auth(ADMIN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

async fn page(h: &Harness) -> String {
    let response = h.client.get(h.url("/status")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

#[tokio::test]
async fn operators_post_notices_that_the_page_and_the_report_show() {
    let (dir, url) = scratch_db();
    let h = Harness::start_opened(1, &config(&url)).await;
    assert_eq!(h.chat(&hello("chat")).await.status(), 200);

    // An incident update with markup in it, and a maintenance window.
    let response = post(
        &h,
        "/admin/status/notices",
        Some(json!({
            "kind": "incident",
            "title": "Elevated errors on <chat>",
            "body": "We are <b>investigating</b> & will update.",
            "models": ["chat"],
        })),
    )
    .await;
    assert_eq!(response.status(), 201);
    let incident: Value = response.json().await.unwrap();
    let id = incident["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("ntc_"), "{incident}");
    let response = post(
        &h,
        "/admin/status/notices",
        Some(json!({
            "kind": "maintenance",
            "title": "Database upgrade",
            "starts_at": "2099-01-01T22:00:00Z",
            "ends_at": "2099-01-01T23:00:00Z",
        })),
    )
    .await;
    assert_eq!(response.status(), 201);

    // The public JSON and the page, at once (the cached page is dropped on a change).
    let public = h.get_json("/status.json", None).await;
    let active = public["notices"]["active"].as_array().unwrap();
    assert_eq!(active.len(), 2, "{public:#}");
    assert_eq!(active[0]["title"], "Elevated errors on <chat>");
    let html = page(&h).await;
    assert!(html.contains("Elevated errors on &lt;chat&gt;"), "{html}");
    assert!(html.contains("We are &lt;b&gt;investigating&lt;/b&gt; &amp; will update."));
    assert!(
        !html.contains("<b>investigating"),
        "operator text is escaped"
    );
    assert!(html.contains(&format!("data-notice=\"{id}\"")));
    assert!(html.contains(">Scheduled<"), "the maintenance is ahead");
    assert!(html.contains("2099-01-01 22:00 UTC to 2099-01-01 23:00 UTC"));

    // Resolved: listed as past, in the report too.
    let response = post(&h, &format!("/admin/status/notices/{id}/resolve"), None).await;
    assert_eq!(response.status(), 200);
    let resolved: Value = response.json().await.unwrap();
    assert!(resolved["resolved_at_ms"].as_u64().is_some());
    let public = h.get_json("/status.json", None).await;
    assert_eq!(public["notices"]["active"].as_array().unwrap().len(), 1);
    assert_eq!(public["notices"]["past"][0]["id"], id.as_str());
    let html = page(&h).await;
    assert!(html.contains("data-notice-state=\"past\""));
    let report = h
        .client
        .get(h.url("/admin/reports/sla?window=1h&format=md"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        report.contains("## Notices (posted by operators)"),
        "{report}"
    );
    assert!(
        report.contains("Elevated errors on &lt;chat&gt;"),
        "{report}"
    );
    assert!(report.contains("Database upgrade"), "{report}");
    let listed = h.get_json("/admin/status/notices", Some(ADMIN)).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 2);
    h.stop().await;

    // The store keeps them: a new process shows them once it has read the store.
    let h = Harness::start_opened(1, &config(&url)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let listed = h.get_json("/admin/status/notices", Some(ADMIN)).await;
        if listed["data"].as_array().is_some_and(|l| l.len() == 2) {
            let past = listed["data"]
                .as_array()
                .unwrap()
                .iter()
                .find(|n| n["id"] == id.as_str())
                .unwrap();
            assert!(past["resolved_at_ms"].as_u64().is_some());
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{listed:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn bad_notices_are_refused_with_the_reason() {
    let (dir, url) = scratch_db();
    let h = Harness::start_opened(1, &config(&url)).await;
    for (body, status, words) in [
        (json!({"kind": "outage", "title": "x"}), 400, "kind must be"),
        (json!({"kind": "incident", "title": " "}), 400, "title"),
        (
            json!({"kind": "incident", "title": "x", "models": ["nope"]}),
            400,
            "no model 'nope'",
        ),
        (
            json!({"kind": "maintenance", "title": "x", "starts_at": "tomorrow"}),
            400,
            "RFC 3339",
        ),
        (
            json!({"kind": "maintenance", "title": "x", "starts_at": "2099-01-02T00:00:00Z", "ends_at": "2099-01-01T00:00:00Z"}),
            400,
            "after starts_at",
        ),
        (
            json!({"kind": "incident", "title": "x", "extra": 1}),
            400,
            "extra",
        ),
    ] {
        let response = post(&h, "/admin/status/notices", Some(body.clone())).await;
        assert_eq!(response.status(), status, "{body}");
        let error: Value = response.json().await.unwrap();
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains(words), "{body}: {message}");
    }
    let response = post(&h, "/admin/status/notices/ntc_missing/resolve", None).await;
    assert_eq!(response.status(), 404);
    // Without the admin key: refused, and nothing posted.
    let response = h
        .client
        .post(h.url("/admin/status/notices"))
        .json(&json!({"kind": "incident", "title": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let listed = h.get_json("/admin/status/notices", Some(ADMIN)).await;
    assert_eq!(listed["data"], json!([]));
    h.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// A SQLite file of this test's own: its directory and URL.
fn scratch_db() -> (std::path::PathBuf, String) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("notices-{}-{nanos}", std::process::id()));
    let url = format!("sqlite://{}/nines.db", dir.display());
    (dir, url)
}
