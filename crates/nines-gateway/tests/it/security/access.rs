//! Finding 1: video jobs bypassed access control. Finding 5: `/v1/models/{id}` answered models
//! the key may not use.

use crate::harness::{Harness, error_of};
use serde_json::{Value, json};
use std::time::Duration;

const ADMIN: &str = "sk-admin-security-0001";
const FAST_ONLY: &str = "sk-fast-only-000001";
const OTHER: &str = "sk-other-tenant-0001";

/// Two Runway deployments, models `fast` and `slow`; a key limited to `fast` at 5 RPM, and
/// another key.
fn config() -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"

[resilience.probes]
enabled = false

[auth]
admin_key = "{ADMIN}"
[[auth.keys]]
key = "{FAST_ONLY}"
name = "fast-only"
models = ["fast"]
limits = {{ rpm = 5 }}
[[auth.keys]]
key = "{OTHER}"
name = "other"

[store]
database_url = "sqlite::memory:"
flush_interval = "20ms"
request_records = "all"

[[deployments]]
name = "w0"
provider = "runway"
model = "gen4_turbo"
base_url = "{{mock0_root}}"
api_keys = ["env:TEST_KEY"]

[[deployments]]
name = "w1"
provider = "runway"
model = "gen4_turbo"
base_url = "{{mock1_root}}"
api_keys = ["env:TEST_KEY"]

[[models]]
name = "fast"
deployments = ["w0"]

[[models]]
name = "slow"
deployments = ["w1"]
"#
    )
}

fn job(model: &str) -> Value {
    json!({"model": model, "prompt": "a lighthouse at dusk"})
}

async fn create(h: &Harness, key: &str, model: &str) -> reqwest::Response {
    h.client
        .post(h.url("/v1/videos"))
        .bearer_auth(key)
        .json(&job(model))
        .send()
        .await
        .unwrap()
}

async fn poll(h: &Harness, key: &str, id: &str) -> reqwest::Response {
    h.client
        .get(h.url(&format!("/v1/videos/{id}")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn video_jobs_obey_the_allowance_the_limits_and_leave_usage_records() {
    let h = Harness::start_opened(2, &config()).await;
    // Another model than the key's: refused before any upstream call.
    let refused = create(&h, FAST_ONLY, "slow").await;
    assert_eq!(refused.status(), 403);
    assert_eq!(h.mock(1).hits("/v1/text_to_video"), 0);
    // No key: 401.
    let anonymous = h
        .client
        .post(h.url("/v1/videos"))
        .json(&job("fast"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    // 5 RPM: five jobs, then 429 without an upstream call.
    let mut ids = Vec::new();
    for _ in 0..5 {
        let created = create(&h, FAST_ONLY, "fast").await;
        assert_eq!(created.status(), 200);
        let body: Value = created.json().await.unwrap();
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    let limited = create(&h, FAST_ONLY, "fast").await;
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().contains_key("retry-after"));
    assert_eq!(h.mock(0).hits("/v1/text_to_video"), 5);

    // Every job has its usage record, the refusals too, under the key.
    let mut records = Vec::new();
    for _ in 0..200 {
        let listed = h
            .get_json("/admin/usage?key=static:fast-only", Some(ADMIN))
            .await;
        records = listed["data"].as_array().unwrap().clone();
        if records.len() >= 7 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let with_status = |status: u64| records.iter().filter(|r| r["status"] == status).count();
    assert_eq!(
        (with_status(200), with_status(403), with_status(429)),
        (5, 1, 1),
        "{records:?}"
    );
    assert!(
        records
            .iter()
            .all(|r| r["key_id"] == "static:fast-only" && r["endpoint"] == "videos"),
        "{records:?}"
    );

    // The job is its creator's: another key's poll, and a forged or altered id, are 404.
    let id = &ids[0];
    assert_eq!(poll(&h, FAST_ONLY, id).await.status(), 200);
    let foreign = poll(&h, OTHER, id).await;
    assert_eq!(foreign.status(), 404);
    assert_eq!(error_of(foreign).await["code"], "video_job_not_found");
    let (payload, _tag) = id.rsplit_once('.').unwrap();
    for forged in [
        format!("{payload}.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        format!("{}x.{}", payload, id.rsplit_once('.').unwrap().1),
        "vid_eyJkIjoidzAiLCJrIjowfQ".to_owned(),
    ] {
        assert_eq!(poll(&h, FAST_ONLY, &forged).await.status(), 404, "{forged}");
    }
    h.stop().await;
}

#[tokio::test]
async fn a_model_outside_the_allowance_does_not_exist_for_the_key() {
    let h = Harness::start_opened(2, &config()).await;
    let get = |key: &'static str, model: &'static str| {
        h.client
            .get(h.url(&format!("/v1/models/{model}")))
            .bearer_auth(key)
            .send()
    };
    assert_eq!(get(FAST_ONLY, "fast").await.unwrap().status(), 200);
    let hidden = get(FAST_ONLY, "slow").await.unwrap();
    assert_eq!(hidden.status(), 404);
    assert_eq!(error_of(hidden).await["code"], "model_not_found");
    assert_eq!(get(OTHER, "slow").await.unwrap().status(), 200);
    h.stop().await;
}
