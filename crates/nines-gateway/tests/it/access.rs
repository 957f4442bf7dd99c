//! Access over real HTTP: keys (static and virtual), 401/403 before any upstream call, RPM/TPM
//! limits at org, user and key level, TPM reconciliation, concurrency, budgets, revocation and
//! expiry, SQLite and Postgres stores, Redis shared by two gateways and Redis stopped mid-test,
//! store outage with buffering.

use crate::harness::{Harness, error_of, hello};
use nines_gateway::AppState;
use nines_gateway::access::Access;
use nines_gateway::limits::Limiters;
use nines_gateway::limits::memory::MemoryLimiter;
use nines_gateway::store::usage::WriterSettings;
use nines_gateway::store::{Store, UsageRecord, UsageSink, UsageWriter};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const ADMIN: &str = "admin-secret-for-tests";

/// One deployment `d0` on mock0 in model `chat` (and `other`), with a price, plus `extra`.
fn config(extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[resilience.probes]
enabled = false

[[deployments]]
name = "d0"
provider = "openai-compatible"
model = "up-model"
base_url = "{{mock0}}"
price = {{ input = 1.0, output = 2.0 }}
timeouts = {{ first_byte = "2s", idle = "2s", total = "10s" }}

[[models]]
name = "chat"
deployments = ["d0"]

[[models]]
name = "other"
deployments = ["d0"]
{extra}
"#
    )
}

/// A fresh directory under the system temp dir.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nines-{name}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The test config with the admin key and a SQLite store in `dir`.
fn admin_and_store(dir: &std::path::Path) -> String {
    config(&format!(
        "\n[auth]\nadmin_key = \"{ADMIN}\"\n{}",
        store_section(dir)
    ))
}

fn store_section(dir: &std::path::Path) -> String {
    format!(
        "\n[store]\ndata_dir = \"{}\"\nflush_interval = \"20ms\"\nrequest_records = \"all\"\n",
        dir.display()
    )
}

async fn post(h: &Harness, key: Option<&str>, body: &Value) -> reqwest::Response {
    let mut req = h.client.post(h.url("/v1/chat/completions")).json(body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    req.send().await.unwrap()
}

async fn admin(h: &Harness, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let mut req = h.client.request(method, h.url(path)).bearer_auth(ADMIN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let v: Value = res.json().await.unwrap();
    assert!(status.is_success(), "{path}: {status} {v}");
    v
}

/// An org, a user in it and a key for the user, with the given limits; returns the key.
async fn org_user_key(h: &Harness, org: Value, user: Value, key: Value) -> (String, Value) {
    let o = admin(h, reqwest::Method::POST, "/admin/orgs", Some(org)).await;
    let mut user = user;
    user["org"] = o["name"].clone();
    let u = admin(h, reqwest::Method::POST, "/admin/users", Some(user)).await;
    let mut key = key;
    key["user"] = u["id"].clone();
    let k = admin(h, reqwest::Method::POST, "/admin/keys", Some(key)).await;
    (k["key"].as_str().unwrap().to_owned(), k)
}

/// The key's usage records once `count` of them are written (the batch writer is asynchronous),
/// or what is there after two seconds.
async fn usage_records(h: &Harness, key_id: &str, count: usize) -> Vec<Value> {
    let mut records = Vec::new();
    for _ in 0..100 {
        let listed = admin(
            h,
            reqwest::Method::GET,
            &format!("/admin/usage?key={key_id}"),
            None,
        )
        .await;
        records = listed["data"].as_array().unwrap().clone();
        if records.len() == count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    records
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn static_keys_are_required_and_checked_before_any_upstream_call() {
    let h = Harness::start(
        1,
        &config(
            r#"
[auth]
[[auth.keys]]
key = "sk-static-team-key-0001"
name = "team"
[[auth.keys]]
key = "sk-static-chat-only-0002"
name = "chat-only"
models = ["chat"]
"#,
        ),
    )
    .await;
    // Missing, wrong: 401 in OpenAI's shape, and the mock never hears of it.
    let r = post(&h, None, &hello("chat")).await;
    assert_eq!(r.status(), 401);
    assert_eq!(header(&r, "x-should-retry"), "false");
    let e = error_of(r).await;
    assert_eq!(e["code"], "missing_api_key");
    let r = post(
        &h,
        Some("sk-nines-not-a-real-key-at-all-00000000000000"),
        &hello("chat"),
    )
    .await;
    assert_eq!(r.status(), 401);
    let e = error_of(r).await;
    assert_eq!(e["code"], "invalid_api_key");
    assert!(
        !e["message"]
            .as_str()
            .unwrap()
            .contains("not-a-real-key-at-all")
    );
    assert_eq!(h.chat_hits(0), 0);

    // Bearer and x-api-key both work.
    let r = post(&h, Some("sk-static-team-key-0001"), &hello("chat")).await;
    assert_eq!(r.status(), 200);
    let r = h
        .client
        .post(h.url("/v1/chat/completions"))
        .header("x-api-key", "sk-static-team-key-0001")
        .json(&hello("chat"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(h.chat_hits(0), 2);

    // Model restrictions: 403 for another model; the model list shows only what it may use.
    let r = post(&h, Some("sk-static-chat-only-0002"), &hello("other")).await;
    assert_eq!(r.status(), 403);
    assert_eq!(error_of(r).await["code"], "model_not_allowed");
    assert_eq!(h.chat_hits(0), 2);
    let models: Value = h
        .client
        .get(h.url("/v1/models"))
        .bearer_auth("sk-static-chat-only-0002")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["chat"]);
    let r = h.client.get(h.url("/v1/models")).send().await.unwrap();
    assert_eq!(r.status(), 401);

    // Anthropic ingress: 401 in Anthropic's shape.
    let r = h
        .client
        .post(h.url("/v1/messages"))
        .json(&json!({"model": "chat", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["type"], "error");
    h.stop().await;
}

#[tokio::test]
async fn one_hundred_parallel_requests_against_a_limit_of_ten_admit_exactly_ten() {
    let h = Harness::start(
        1,
        &config(
            r#"
[auth]
[[auth.keys]]
key = "sk-static-parallel-0001"
name = "parallel"
limits = { rpm = 10 }
"#,
        ),
    )
    .await;
    let h = Arc::new(h);
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let h = Arc::clone(&h);
        tasks.push(tokio::spawn(async move {
            post(&h, Some("sk-static-parallel-0001"), &hello("chat"))
                .await
                .status()
                .as_u16()
        }));
    }
    let mut ok = 0;
    let mut limited = 0;
    for t in tasks {
        match t.await.unwrap() {
            200 => ok += 1,
            429 => limited += 1,
            s => panic!("unexpected status {s}"),
        }
    }
    assert_eq!((ok, limited), (10, 90));
    assert_eq!(h.chat_hits(0), 10);
}

#[tokio::test]
async fn each_level_trips_with_its_name_headers_and_retry_after() {
    let dir = temp_dir("levels");
    let h = Harness::start_opened(1, &admin_and_store(&dir)).await;
    // Org: 2 rpm, shared by two users' keys.
    let (k1, _) = org_user_key(
        &h,
        json!({"name": "acme", "limits": {"rpm": 2}}),
        json!({"name": "alice"}),
        json!({}),
    )
    .await;
    let u2 = admin(
        &h,
        reqwest::Method::POST,
        "/admin/users",
        Some(json!({"org": "acme", "name": "bob"})),
    )
    .await;
    let k2 = admin(
        &h,
        reqwest::Method::POST,
        "/admin/keys",
        Some(json!({"user": u2["id"]})),
    )
    .await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = post(&h, Some(&k1), &hello("chat")).await;
    assert_eq!(r.status(), 200);
    // Success carries the tightest window's headers.
    assert_eq!(header(&r, "x-ratelimit-limit-requests"), "2");
    assert_eq!(header(&r, "x-ratelimit-remaining-requests"), "1");
    assert!(header(&r, "x-ratelimit-reset-requests").ends_with('s'));
    assert_eq!(post(&h, Some(&k2), &hello("chat")).await.status(), 200);
    let r = post(&h, Some(&k1), &hello("chat")).await;
    assert_eq!(r.status(), 429);
    assert_eq!(header(&r, "x-nines-limit"), "org:requests");
    assert_eq!(header(&r, "x-should-retry"), "true");
    let retry: u64 = header(&r, "retry-after").parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let retry_ms: u64 = header(&r, "retry-after-ms").parse().unwrap();
    assert!(retry_ms > 20_000 && retry_ms <= 30_000, "{retry_ms}");
    assert_eq!(header(&r, "x-ratelimit-remaining-requests"), "0");
    let e = error_of(r).await;
    assert_eq!(e["code"], "rate_limit_exceeded");
    assert_eq!(e["type"], "requests");
    assert!(e["message"].as_str().unwrap().contains("org 'acme'"), "{e}");
    assert_eq!(h.chat_hits(0), 2);

    // User: 1 rpm; key: 1 rpm (per user, per key).
    let (k3, _) = org_user_key(
        &h,
        json!({"name": "globex"}),
        json!({"name": "carol", "limits": {"rpm": 1}}),
        json!({}),
    )
    .await;
    assert_eq!(post(&h, Some(&k3), &hello("chat")).await.status(), 200);
    let r = post(&h, Some(&k3), &hello("chat")).await;
    assert_eq!(header(&r, "x-nines-limit"), "user:requests");
    assert!(
        error_of(r).await["message"]
            .as_str()
            .unwrap()
            .contains("user 'carol'")
    );

    let (k4, _) = org_user_key(
        &h,
        json!({"name": "initech"}),
        json!({"name": "dave"}),
        json!({"name": "dave-laptop", "limits": {"rpm": 1}}),
    )
    .await;
    assert_eq!(post(&h, Some(&k4), &hello("chat")).await.status(), 200);
    let r = post(&h, Some(&k4), &hello("chat")).await;
    assert_eq!(header(&r, "x-nines-limit"), "key:requests");
    assert!(
        error_of(r).await["message"]
            .as_str()
            .unwrap()
            .contains("key 'dave-laptop'")
    );

    // Per model: 1 rpm on `chat` only.
    let (k5, _) = org_user_key(
        &h,
        json!({"name": "umbrella"}),
        json!({"name": "erin"}),
        json!({"limits": {"models": {"chat": {"rpm": 1}}}}),
    )
    .await;
    assert_eq!(post(&h, Some(&k5), &hello("chat")).await.status(), 200);
    let r = post(&h, Some(&k5), &hello("chat")).await;
    assert_eq!(r.status(), 429);
    assert!(
        error_of(r).await["message"]
            .as_str()
            .unwrap()
            .contains("model 'chat'")
    );
    assert_eq!(post(&h, Some(&k5), &hello("other")).await.status(), 200);
    h.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn token_reservations_are_reconciled_with_real_usage() {
    let h = Harness::start(
        1,
        &config(
            r#"
[auth]
[[auth.keys]]
key = "sk-static-tpm-0001"
name = "tpm"
limits = { tpm = 1000 }
"#,
        ),
    )
    .await;
    let key = Some("sk-static-tpm-0001");
    // Each request reserves ~611 tokens (prompt bytes/4 + max_tokens 600) but uses ~15: two in
    // a row fit only because the first one's reservation came back.
    let mut body = hello("chat");
    body["max_tokens"] = json!(600);
    let r = post(&h, key, &body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-ratelimit-limit-tokens"), "1000");
    let first_remaining: u64 = header(&r, "x-ratelimit-remaining-tokens").parse().unwrap();
    assert!((380..=400).contains(&first_remaining), "{first_remaining}");
    let used: Value = r.json().await.unwrap();
    let used = used["usage"]["total_tokens"].as_u64().unwrap();
    let r = post(&h, key, &body).await;
    assert_eq!(r.status(), 200, "the first reservation was not returned");
    let remaining: u64 = header(&r, "x-ratelimit-remaining-tokens").parse().unwrap();
    // 1000 - used - 611, plus a few tokens of refill.
    let expected = 1000 - used - (1000 - first_remaining);
    assert!(
        remaining >= expected && remaining <= expected + 10,
        "{remaining} vs {expected}"
    );
    r.bytes().await.unwrap();

    // A stream that reports its usage is reconciled from the final usage chunk ...
    let mut stream = body.clone();
    stream["stream"] = json!(true);
    stream["stream_options"] = json!({"include_usage": true});
    for _ in 0..3 {
        let r = post(&h, key, &stream).await;
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
    // ... one that does not keeps its reservation: the next big one no longer fits.
    stream["stream_options"] = json!({"include_usage": false});
    let r = post(&h, key, &stream).await;
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    let r = post(&h, key, &body).await;
    assert_eq!(r.status(), 429);
    assert_eq!(header(&r, "x-nines-limit"), "key:tokens");
    assert_eq!(error_of(r).await["type"], "tokens");

    // Larger than the whole window: never admissible, so not worth retrying.
    let mut huge = hello("chat");
    huge["max_tokens"] = json!(5000);
    let r = post(&h, key, &huge).await;
    assert_eq!(r.status(), 429);
    assert_eq!(header(&r, "x-should-retry"), "false");
    assert!(
        error_of(r).await["message"]
            .as_str()
            .unwrap()
            .contains("too large")
    );
    h.stop().await;
}

#[tokio::test]
async fn virtual_keys_revocation_expiry_budgets_and_usage_in_sqlite() {
    let dir = temp_dir("keys");
    let template = admin_and_store(&dir);
    let h = Harness::start_opened(1, &template).await;
    // The admin API wants its key.
    let r = h.client.get(h.url("/admin/orgs")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = h
        .client
        .get(h.url("/admin/orgs"))
        .bearer_auth("sk-wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let (key, row) = org_user_key(
        &h,
        json!({"name": "acme"}),
        json!({"name": "alice"}),
        json!({"name": "laptop", "limits": {"daily_budget": 5.0}}),
    )
    .await;
    assert!(key.starts_with("sk-nines-") && key.len() >= 50);
    let key_id = row["id"].as_str().unwrap().to_owned();
    // Listed without the key or its hash.
    let listed = admin(&h, reqwest::Method::GET, "/admin/keys", None).await;
    let text = listed.to_string();
    assert!(!text.contains(&key) && !text.contains("hash"));
    assert!(text.contains(row["display"].as_str().unwrap()));

    // Budget: $1 and $2 per token, so one request costs far more than $5: the next is refused
    // before any upstream call, with 429 insufficient_quota and no retry.
    let r = post(&h, Some(&key), &hello("chat")).await;
    assert_eq!(r.status(), 200);
    let usage: Value = r.json().await.unwrap();
    let expected_cost = usage["usage"]["prompt_tokens"].as_f64().unwrap() * 1e-6
        + usage["usage"]["completion_tokens"].as_f64().unwrap() * 2e-6;
    // Spend is only $1e-5 at these prices: raise prices by lowering the budget instead.
    admin(
        &h,
        reqwest::Method::PATCH,
        &format!("/admin/keys/{key_id}"),
        Some(json!({"limits": {"daily_budget": expected_cost / 2.0}})),
    )
    .await;
    let r = post(&h, Some(&key), &hello("chat")).await;
    assert_eq!(r.status(), 429);
    assert_eq!(header(&r, "x-should-retry"), "false");
    assert_eq!(header(&r, "x-nines-limit"), "key:daily_budget");
    let retry: u64 = header(&r, "retry-after").parse().unwrap();
    assert!(retry > 0 && retry <= 86_400);
    let e = error_of(r).await;
    assert_eq!(e["code"], "insufficient_quota");
    assert!(e["message"].as_str().unwrap().contains("key 'laptop'"));
    assert_eq!(h.chat_hits(0), 1);

    // The admin API shows the spend and the usage record (written by the batch writer).
    let mut shown = Value::Null;
    for _ in 0..100 {
        shown = admin(
            &h,
            reqwest::Method::GET,
            &format!("/admin/keys/{key_id}"),
            None,
        )
        .await;
        if shown["spend"]["today"].as_f64().unwrap() > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let spent = shown["spend"]["today"].as_f64().unwrap();
    assert!(
        (spent - expected_cost).abs() < 1e-12,
        "{spent} vs {expected_cost}"
    );
    // The refused request's record may come in a later batch than the served one's.
    let records = usage_records(&h, &key_id, 2).await;
    assert_eq!(records.len(), 2, "{records:?}");
    let served = records.iter().find(|r| r["status"] == 200).unwrap();
    assert_eq!(served["deployment"], "d0");
    assert_eq!(served["model"], "chat");
    assert_eq!(served["outcome"], "ok");
    assert_eq!(served["attempts"], 1);
    assert_eq!(served["tokens_in"], usage["usage"]["prompt_tokens"]);
    assert_eq!(served["tokens_out"], usage["usage"]["completion_tokens"]);
    assert!(served["ttfb_ms"].as_f64().unwrap() > 0.0);
    assert!(served["latency_ms"].as_f64().unwrap() > 0.0);
    assert!(served["user_id"].as_str().unwrap().starts_with("user_"));
    assert!(served["org_id"].as_str().unwrap().starts_with("org_"));
    let refused = records.iter().find(|r| r["status"] == 429).unwrap();
    assert_eq!(refused["outcome"], "budget_exhausted");
    assert_eq!(refused["cost"], 0.0);

    // Revocation takes effect at once on this replica.
    let (key2, row2) = org_user_key(
        &h,
        json!({"name": "globex"}),
        json!({"name": "bob"}),
        json!({}),
    )
    .await;
    assert_eq!(post(&h, Some(&key2), &hello("chat")).await.status(), 200);
    let revoked = admin(
        &h,
        reqwest::Method::POST,
        &format!("/admin/keys/{}/revoke", row2["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert!(revoked["revoked_at"].as_i64().is_some());
    let r = post(&h, Some(&key2), &hello("chat")).await;
    assert_eq!(r.status(), 401);
    assert_eq!(error_of(r).await["code"], "key_revoked");

    // Expiry.
    let users = admin(&h, reqwest::Method::GET, "/admin/users?org=globex", None).await;
    let bob = users["data"][0]["id"].as_str().unwrap().to_owned();
    let short = admin(
        &h,
        reqwest::Method::POST,
        "/admin/keys",
        Some(json!({"user": bob, "expires_in": "400ms"})),
    )
    .await;
    let short = short["key"].as_str().unwrap().to_owned();
    assert_eq!(post(&h, Some(&short), &hello("chat")).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = post(&h, Some(&short), &hello("chat")).await;
    assert_eq!(r.status(), 401);
    assert_eq!(error_of(r).await["code"], "key_expired");

    // A failed request is recorded with its failure class.
    let failing = admin(
        &h,
        reqwest::Method::POST,
        "/admin/keys",
        Some(json!({"user": bob})),
    )
    .await;
    h.fault(0, json!({"status": 500}));
    let r = post(&h, failing["key"].as_str(), &hello("chat")).await;
    assert_eq!(r.status(), 502);
    let attempts: u64 = header(&r, "x-nines-attempts").parse().unwrap();
    h.mock(0).set_fault(None);
    let path = format!("/admin/usage?key={}", failing["id"].as_str().unwrap());
    let mut record = Value::Null;
    for _ in 0..100 {
        record = admin(&h, reqwest::Method::GET, &path, None).await["data"][0].clone();
        if !record.is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(record["status"], 502, "{record}");
    assert_eq!(record["outcome"], "server");
    assert_eq!(record["attempts"], attempts);
    assert_eq!(record["cost"], 0.0);
    // The record keeps the plan and every attempt (issue 5: explainable routing).
    let plan = record["plan"].as_str().unwrap();
    assert!(plan.starts_with("d0#0("), "{record}");
    let trail = record["attempt_trail"].as_str().unwrap();
    assert_eq!(trail.split("; ").count() as u64, attempts, "{record}");
    assert!(trail.contains(" server 500 "), "{record}");

    // Readiness reports the store.
    let ready: Value = h
        .client
        .get(h.url("/health/ready"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["checks"]["store"]["status"], "ok", "{ready}");
    assert_eq!(ready["checks"]["store"]["backend"], "sqlite");
    h.stop().await;

    // The SQLite file survives a restart: keys still work, and the budget's spend is still
    // counted (loaded from the usage records).
    assert!(dir.join("nines.db").exists());
    let h = Harness::start_opened(1, &template).await;
    let r = post(&h, Some(&key), &hello("chat")).await;
    assert_eq!(r.status(), 429);
    assert_eq!(header(&r, "x-nines-limit"), "key:daily_budget");
    assert_eq!(post(&h, Some(&key2), &hello("chat")).await.status(), 401);
    assert_eq!(h.chat_hits(0), 0);
    h.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn postgres_store_when_database_url_is_set() {
    let Some(db) = crate::harness::fresh_postgres_database().await else {
        return;
    };
    let db_url = db.url.clone();
    let h = Harness::start_opened(
        1,
        &config(&format!(
            "\n[auth]\nadmin_key = \"{ADMIN}\"\n\n[store]\ndatabase_url = \"{db_url}\"\nflush_interval = \"20ms\"\nrequest_records = \"all\"\n"
        )),
    )
    .await;
    let (key, row) = org_user_key(
        &h,
        json!({"name": "acme", "limits": {"rpm": 1}}),
        json!({"name": "alice"}),
        json!({}),
    )
    .await;
    assert_eq!(post(&h, Some(&key), &hello("chat")).await.status(), 200);
    let r = post(&h, Some(&key), &hello("chat")).await;
    assert_eq!(r.status(), 429);
    assert_eq!(header(&r, "x-nines-limit"), "org:requests");
    let key_id = row["id"].as_str().unwrap();
    let records = usage_records(&h, key_id, 2).await;
    assert_eq!(records.len(), 2);
    assert!(
        records
            .iter()
            .any(|r| r["status"] == 200 && r["tokens_in"].as_u64().unwrap() > 0)
    );
    let ready: Value = h
        .client
        .get(h.url("/health/ready"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["checks"]["store"]["backend"], "postgres");
    assert_eq!(ready["checks"]["store"]["status"], "ok");
    h.stop().await;
    db.remove().await;
}

fn redis_limits(url: &str, prefix: &str, fail: &str, timeout: &str) -> String {
    config(&format!(
        r#"
[auth]
admin_key = "{ADMIN}"
[[auth.keys]]
key = "sk-static-shared-0001"
name = "shared"
limits = {{ rpm = 10, tpm = 100000 }}
[[auth.keys]]
key = "sk-static-shared-0002"
name = "sequential"
limits = {{ rpm = 10 }}

[store]
database_url = "sqlite::memory:"

[limits]
redis_url = "{url}"
redis_prefix = "{prefix}"
on_redis_error = "{fail}"
redis_timeout = "{timeout}"
"#
    ))
}

#[tokio::test]
async fn redis_limits_hold_across_two_gateways() {
    let Ok(url) = std::env::var("REDIS_URL") else {
        println!("skipped: REDIS_URL is not set (e.g. redis://127.0.0.1:6379)");
        return;
    };
    let prefix = format!("nines-test-{}", uuid::Uuid::new_v4());
    // A generous timeout: this test is about sharing, and CI machines are busy.
    let template = redis_limits(&url, &prefix, "closed", "500ms");
    let a = Arc::new(Harness::start_opened(1, &template).await);
    let b = Arc::new(Harness::start_opened(1, &template).await);
    for h in [&a, &b] {
        // Connect before the burst (readiness pings Redis).
        let ready: Value = h
            .client
            .get(h.url("/health/ready"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(ready["checks"]["limits"]["status"], "ok", "{ready}");
    }
    let mut tasks = Vec::new();
    for i in 0..40 {
        let h = Arc::clone(if i % 2 == 0 { &a } else { &b });
        tasks.push(tokio::spawn(async move {
            let r = post(&h, Some("sk-static-shared-0001"), &hello("chat")).await;
            let status = r.status().as_u16();
            if status == 429 {
                assert_eq!(header(&r, "x-nines-limit"), "key:requests");
            }
            status
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            200 => ok += 1,
            429 => {}
            s => panic!("unexpected status {s}"),
        }
    }
    assert_eq!(ok, 10, "the limit of 10 must hold across both gateways");
    assert_eq!(a.chat_hits(0) + b.chat_hits(0), 10);

    // In turn: 6 through one, then the other has only 4 left (alone it would allow 10).
    let key = Some("sk-static-shared-0002");
    for _ in 0..6 {
        assert_eq!(post(&a, key, &hello("chat")).await.status(), 200);
    }
    for left in ["3", "2", "1", "0"] {
        let r = post(&b, key, &hello("chat")).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-ratelimit-remaining-requests"), left);
    }
    let r = post(&b, key, &hello("chat")).await;
    assert_eq!(r.status(), 429);
    assert_eq!(header(&r, "x-nines-limit"), "key:requests");
    assert_eq!(post(&a, key, &hello("chat")).await.status(), 429);
}

/// A redis-server of the test's own on a free port, so it can be stopped.
struct OwnRedis {
    child: std::process::Child,
    url: String,
}

impl OwnRedis {
    fn start() -> Option<OwnRedis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        Some(OwnRedis {
            child,
            url: format!("redis://127.0.0.1:{port}"),
        })
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test]
async fn redis_stopped_mid_test_fails_open_or_closed_as_configured() {
    let Some(mut redis) = OwnRedis::start() else {
        println!("skipped: redis-server is not on PATH");
        return;
    };
    let prefix = format!("nines-test-{}", uuid::Uuid::new_v4());
    let open = Harness::start_opened(1, &redis_limits(&redis.url, &prefix, "open", "50ms")).await;
    let closed =
        Harness::start_opened(1, &redis_limits(&redis.url, &prefix, "closed", "50ms")).await;
    let key = Some("sk-static-shared-0001");
    // Up (it may take a moment to accept connections): limits are shared and enforced.
    let mut up = false;
    for _ in 0..100 {
        let ready: Value = closed
            .client
            .get(closed.url("/health/ready"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if ready["checks"]["limits"]["status"] == "ok" {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(up, "own redis-server never came up");
    let r = post(&open, key, &hello("chat")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-ratelimit-remaining-requests"), "9");
    let r = post(&closed, key, &hello("chat")).await;
    assert_eq!(header(&r, "x-ratelimit-remaining-requests"), "8");

    redis.stop();
    // Down: fail-open admits (without limit headers), fail-closed refuses with 503; neither
    // waits longer than the timeout.
    for _ in 0..15 {
        let started = tokio::time::Instant::now();
        let r = post(&open, key, &hello("chat")).await;
        assert_eq!(r.status(), 200);
        assert!(r.headers().get("x-ratelimit-limit-requests").is_none());
        let r = post(&closed, key, &hello("chat")).await;
        assert_eq!(r.status(), 503);
        assert_eq!(error_of(r).await["code"], "access_unavailable");
        assert!(started.elapsed() < Duration::from_secs(1));
    }
    let ready = closed
        .client
        .get(closed.url("/health/ready"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["failing"], "limits");
    let ready: Value = open
        .client
        .get(open.url("/health/ready"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "degraded");
    assert!(ready["checks"]["limits"]["failed_open"].as_u64().unwrap() >= 15);
    // The same counts are Prometheus metrics, each gateway its own answer.
    let scrape = |h: &'static str| {
        let gateway = if h == "open" { &open } else { &closed };
        let url = gateway.url("/metrics");
        let client = gateway.client.clone();
        async move { client.get(url).send().await.unwrap().text().await.unwrap() }
    };
    let counter = |text: &str, series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{series} missing from /metrics"))
    };
    let open_metrics = scrape("open").await;
    assert!(
        counter(
            &open_metrics,
            "nines_limiter_redis_fallback_total{answer=\"open\"}"
        ) >= 15.0
    );
    assert_eq!(
        counter(
            &open_metrics,
            "nines_limiter_redis_fallback_total{answer=\"closed\"}"
        ),
        0.0
    );
    assert!(counter(&open_metrics, "nines_limiter_redis_errors_total") >= 1.0);
    let closed_metrics = scrape("closed").await;
    assert!(
        counter(
            &closed_metrics,
            "nines_limiter_redis_fallback_total{answer=\"closed\"}"
        ) >= 15.0
    );
    assert_eq!(
        counter(
            &closed_metrics,
            "nines_limiter_redis_fallback_total{answer=\"open\"}"
        ),
        0.0
    );
    open.stop().await;
    closed.stop().await;
}

/// The real store behind a switch that can make every write fail.
struct Flaky {
    store: Store,
    down: AtomicBool,
}

impl UsageSink for Flaky {
    fn write<'a>(
        &'a self,
        batch: &'a [UsageRecord],
    ) -> futures_util::future::BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            if self.down.load(Ordering::SeqCst) {
                return Err("store is down (test)".into());
            }
            self.store
                .insert_usage(batch)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

#[tokio::test]
async fn usage_is_buffered_while_the_store_is_down_and_drops_are_counted() {
    let dir = temp_dir("outage");
    let store = Store::open(&nines_gateway::config::access::StoreConfig::sqlite_in(&dir))
        .await
        .unwrap();
    let flaky = Arc::new(Flaky {
        store: store.clone(),
        down: AtomicBool::new(true),
    });
    let (writer, _task) = UsageWriter::spawn(
        Arc::clone(&flaky) as Arc<dyn UsageSink>,
        WriterSettings {
            queue: 1000,
            buffer: 5,
            batch: 100,
            flush_interval: Duration::from_millis(10),
            records: nines_gateway::config::access::RequestRecords::All,
        },
        None,
    );
    let stats = Arc::clone(&writer.stats);
    let access = Access::with_parts(
        Some(store.clone()),
        Limiters::Memory(MemoryLimiter::new()),
        Some(writer),
    );
    let h = Harness::start_with(1, &config(""), move |runtime| async move {
        AppState::with_access(runtime, access)
    })
    .await;
    // Requests are served while the store is down; records wait in the buffer (5 at most).
    for _ in 0..8 {
        let started = tokio::time::Instant::now();
        assert_eq!(post(&h, None, &hello("chat")).await.status(), 200);
        assert!(started.elapsed() < Duration::from_secs(1));
    }
    crate::harness::eventually(Duration::from_secs(5), || {
        stats.failed_writes.load(Ordering::Relaxed) > 0
            && stats.buffered.load(Ordering::Relaxed) == 5
            && stats.dropped.load(Ordering::Relaxed) == 3
    })
    .await;
    assert!(!stats.healthy.load(Ordering::Relaxed));
    assert!(store.recent_usage(None, 100).await.unwrap().is_empty());
    // The store comes back: the buffer is flushed in order.
    flaky.down.store(false, Ordering::SeqCst);
    crate::harness::eventually(Duration::from_secs(10), || {
        stats.written.load(Ordering::Relaxed) == 5
    })
    .await;
    let rows = store.recent_usage(None, 100).await.unwrap();
    assert_eq!(rows.len(), 5);
    assert!(rows.iter().all(|r| r.status == 200 && r.key_id.is_none()));
    assert!(stats.healthy.load(Ordering::Relaxed));
    assert_eq!(stats.buffered.load(Ordering::Relaxed), 0);
    assert_eq!(stats.pending.load(Ordering::Relaxed), 0);
    assert_eq!(stats.dropped.load(Ordering::Relaxed), 3);
    h.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// Streamed answers are settled from what the relays tallied as the events passed: the usage
/// record of an OpenAI client's stream and of an Anthropic client's stream (translated from the
/// same OpenAI upstream) both carry the upstream's reported counts, not an estimate.
#[tokio::test]
async fn streamed_usage_is_recorded_from_the_relays_tally() {
    let dir = temp_dir("stream-usage");
    let template = admin_and_store(&dir);
    let h = Harness::start_opened(1, &template).await;
    let (key, row) = org_user_key(
        &h,
        json!({"name": "streams"}),
        json!({"name": "sam"}),
        json!({"name": "cli"}),
    )
    .await;
    let key_id = row["id"].as_str().unwrap().to_owned();

    // The OpenAI client: its own usage chunk says what the record must hold.
    let mut body = hello("chat");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let r = post(&h, Some(&key), &body).await;
    assert_eq!(r.status(), 200);
    let chunks = crate::harness::sse_data(r).await;
    let usage: Value = chunks
        .iter()
        .filter_map(|c| serde_json::from_str::<Value>(c).ok())
        .find(|c| c["usage"].is_object())
        .expect("a usage chunk")["usage"]
        .clone();

    // The Anthropic client, served by the same OpenAI upstream through the translating relay.
    let anthropic = json!({"model": "chat", "max_tokens": 32, "stream": true,
        "messages": [{"role": "user", "content": "Hello there"}]});
    let r = h
        .client
        .post(h.url("/v1/messages"))
        .header("x-api-key", &key)
        .json(&anthropic)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains("event: message_stop"), "{text}");

    let records = usage_records(&h, &key_id, 2).await;
    assert_eq!(records.len(), 2, "{records:?}");
    for record in &records {
        assert_eq!(record["stream"], true, "{record}");
        assert_eq!(record["outcome"], "ok", "{record}");
        assert_eq!(record["usage_estimated"], false, "{record}");
        assert_eq!(record["tokens_in"], usage["prompt_tokens"], "{record}");
        assert_eq!(record["tokens_out"], usage["completion_tokens"], "{record}");
    }
    assert_eq!(h.chat_hits(0), 2);
}

/// Every request is counted in the per-minute rollups, which spend reads; with the default
/// `store.request_records = "errors"` only the refused request gets a per-request row.
#[tokio::test]
async fn rollups_count_every_request_and_only_errors_get_records_by_default() {
    let dir = temp_dir("rollups");
    let template = config(&format!(
        "\n[auth]\nadmin_key = \"{ADMIN}\"\n\n[store]\ndata_dir = \"{}\"\nflush_interval = \"20ms\"\n",
        dir.display()
    ));
    let h = Harness::start_opened(1, &template).await;
    let (key, row) = org_user_key(
        &h,
        json!({"name": "rollups"}),
        json!({"name": "ann"}),
        json!({"limits": {"rpm": 3}}),
    )
    .await;
    for _ in 0..3 {
        assert_eq!(post(&h, Some(&key), &hello("chat")).await.status(), 200);
    }
    assert_eq!(post(&h, Some(&key), &hello("chat")).await.status(), 429);
    let key_id = row["id"].as_str().unwrap();
    let path = format!("/admin/usage/summary?by=deployment&window=day&key={key_id}");
    let mut summary = Value::Null;
    for _ in 0..100 {
        summary = admin(&h, reqwest::Method::GET, &path, None).await;
        if summary["total"]["requests"] == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(summary["by"], "deployment");
    assert_eq!(summary["total"]["requests"], 4, "{summary}");
    assert_eq!(summary["total"]["errors"], 1, "{summary}");
    let groups = summary["groups"].as_array().unwrap();
    let served = groups.iter().find(|g| g["id"] == "d0").unwrap();
    assert_eq!(
        (&served["requests"], &served["errors"]),
        (&json!(3), &json!(0))
    );
    assert!(served["tokens_in"].as_u64().unwrap() > 0);
    // The refusal was served by no deployment.
    let refused = groups.iter().find(|g| g["id"] == "").unwrap();
    assert_eq!(
        (&refused["requests"], &refused["errors"]),
        (&json!(1), &json!(1))
    );
    // Spend is the rollups' cost.
    let cost = summary["total"]["cost"].as_f64().unwrap();
    assert!(cost > 0.0);
    let shown = admin(
        &h,
        reqwest::Method::GET,
        &format!("/admin/keys/{key_id}"),
        None,
    )
    .await;
    assert_eq!(shown["spend"]["today"].as_f64().unwrap(), cost);
    // One detail row: the refusal's.
    let records = usage_records(&h, key_id, 1).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["status"], 429);
    // A report asked for wrongly is a 400 naming what is wrong.
    for (query, wanted) in [
        ("by=colour", "by must be"),
        ("window=forever", "window must be"),
    ] {
        let r = h
            .client
            .get(h.url(&format!("/admin/usage/summary?{query}")))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let e = error_of(r).await;
        assert!(e["message"].as_str().unwrap().contains(wanted), "{e}");
    }
    h.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// Spend the store knows of counts against budgets kept in Redis: at start (another replica's
/// spend, or a Redis that restarted empty) and again when Redis loses its counters while the
/// gateway runs.
#[tokio::test]
async fn budgets_in_redis_are_reconciled_with_the_stores_rollups() {
    use nines_gateway::store::{RollupKey, RollupSums};
    let Ok(url) = std::env::var("REDIS_URL") else {
        println!("skipped: REDIS_URL is not set (e.g. redis://127.0.0.1:6379)");
        return;
    };
    let dir = temp_dir("reconcile");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let store = Store::open(&nines_gateway::config::access::StoreConfig::sqlite_in(&dir))
        .await
        .unwrap();
    // Spent today, as the rollups of earlier traffic recorded it.
    store
        .add_usage_rollups(&[(
            RollupKey {
                minute_ms: now_ms - now_ms % 60_000,
                org_id: "".into(),
                user_id: "".into(),
                key_id: "static:budgeted".into(),
                model: "chat".into(),
                deployment: "d0".into(),
                fallback: "".into(),
            },
            RollupSums {
                requests: 4,
                cost: 2.0,
                ..RollupSums::default()
            },
        )])
        .await
        .unwrap();
    let prefix = format!("nines-test-{}", uuid::Uuid::new_v4());
    let template = config(&format!(
        r#"
[auth]
admin_key = "{ADMIN}"
[[auth.keys]]
key = "sk-static-budget-0001"
name = "budgeted"
limits = {{ daily_budget = 1.5 }}

[store]
data_dir = "{}"

[limits]
redis_url = "{url}"
redis_prefix = "{prefix}"
redis_timeout = "500ms"
on_redis_error = "closed"
"#,
        dir.display()
    ));
    let h = Harness::start_opened(1, &template).await;
    let refused = |r: reqwest::Response| {
        assert_eq!(r.status(), 429);
        assert_eq!(header(&r, "x-nines-limit"), "key:daily_budget");
    };
    refused(post(&h, Some("sk-static-budget-0001"), &hello("chat")).await);

    // Redis forgets everything of this prefix (a restart without persistence).
    let mut redis = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{{{prefix}}}*"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(
        keys.iter().any(|k| k.ends_with(":spend:reconciled")),
        "{keys:?}"
    );
    let _: i64 = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut redis)
        .await
        .unwrap();
    // The reconciler notices within its tick and raises the counters again.
    let counter = keys
        .iter()
        .find(|k| k.contains(":spend:key:static:budgeted:"))
        .unwrap()
        .clone();
    let mut restored = None;
    for _ in 0..150 {
        restored = redis::cmd("GET")
            .arg(&counter)
            .query_async::<Option<f64>>(&mut redis)
            .await
            .unwrap();
        if restored.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(restored, Some(2.0));
    refused(post(&h, Some("sk-static-budget-0001"), &hello("chat")).await);
    assert_eq!(h.chat_hits(0), 0);
    h.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}
