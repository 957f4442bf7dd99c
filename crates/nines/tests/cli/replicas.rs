//! Two gateway processes sharing one store and one Redis: a key change made through one reaches
//! the other within a second (Redis pub/sub), although its `cache_ttl` is an hour.

use crate::process::{Nines, client, command};
use crate::serve::tempdir;
use crate::store_outage::{ADMIN, admin, chat, gateway_config};
use nines_mock::{MockOptions, MockServer};
use serde_json::{Value, json};
use std::time::Duration;

async fn chat_status(base: &str, key: &str) -> u16 {
    chat(base, Some(key)).await.status().as_u16()
}

/// How long after `change` returns until `key` gets `wanted` on `base` (polled every 10 ms).
async fn time_until(base: &str, key: &str, wanted: u16) -> Duration {
    let started = tokio::time::Instant::now();
    loop {
        if chat_status(base, key).await == wanted {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{key}: never {wanted} on {base}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_revocation_on_one_replica_applies_on_the_other_within_a_second() {
    let Ok(redis) = std::env::var("REDIS_URL") else {
        crate::skipped(
            "a_revocation_on_one_replica_applies_on_the_other_within_a_second",
            "REDIS_URL is not set (e.g. redis://127.0.0.1:6379)",
        );
        return;
    };
    let mock = MockServer::start("127.0.0.1:0".parse().unwrap(), MockOptions::default())
        .await
        .unwrap();
    let dir = tempdir();
    let path = dir.join("nines.toml");
    let prefix = format!("revoke-{}", uuid::Uuid::new_v4().simple());
    let rest = format!(
        "\n[auth]\nadmin_key = \"{ADMIN}\"\ncache_ttl = \"1h\"\n\n\
         [limits]\nredis_url = \"{redis}\"\nredis_prefix = \"{prefix}\"\n\n[store]\n"
    );
    std::fs::write(&path, gateway_config(&mock, &rest)).unwrap();
    let config = path.to_str().unwrap();
    let mut a = Nines::spawn(command(&["serve", "--config", config]));
    let a_base = a.base().await;
    let mut b = Nines::spawn(command(&["serve", "--config", config]));
    let b_base = b.base().await;
    // Each subscribes in the background once started.
    for base in [&a_base, &b_base] {
        let started = tokio::time::Instant::now();
        loop {
            let ready: Value = client()
                .get(format!("{base}/health/ready"))
                .bearer_auth(ADMIN)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if ready["checks"]["auth"]["shared_changes"] == true {
                assert_eq!(ready["status"], "ready", "{ready}");
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(5), "{ready}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    use reqwest::Method;
    admin(
        &a_base,
        Method::POST,
        "/admin/orgs",
        json!({"name": "acme"}),
    )
    .await;
    let user = admin(
        &a_base,
        Method::POST,
        "/admin/users",
        json!({"org": "acme", "name": "al"}),
    )
    .await;
    let mut measured = Vec::new();
    for _ in 0..5 {
        let key = admin(
            &a_base,
            Method::POST,
            "/admin/keys",
            json!({"user": user["id"]}),
        )
        .await;
        let secret = key["key"].as_str().unwrap();
        // B caches the key (for an hour, by its config).
        assert_eq!(chat_status(&b_base, secret).await, 200);
        let path = format!("/admin/keys/{}/revoke", key["id"].as_str().unwrap());
        admin(&a_base, Method::POST, &path, json!({})).await;
        let took = time_until(&b_base, secret, 401).await;
        assert!(
            took < Duration::from_secs(1),
            "revocation reached B after {took:?}"
        );
        measured.push(took);
    }
    measured.sort();
    println!("revocation reached the other replica after (sorted): {measured:?}");

    // A key imported on A after B was asked for it (B remembers it as unknown) works on B too.
    let imported = "sk-legacy-7Hq2Lm9Xv4Rt8Wp3Zs6Kd1Nf5Bc0Jg";
    assert_eq!(chat_status(&b_base, imported).await, 401);
    admin(
        &a_base,
        Method::POST,
        "/admin/keys",
        json!({"user": user["id"], "key": imported}),
    )
    .await;
    let took = time_until(&b_base, imported, 200).await;
    assert!(
        took < Duration::from_secs(1),
        "the import reached B after {took:?}"
    );

    // A revocation made with the CLI (no gateway involved) is announced too.
    assert_eq!(chat_status(&a_base, imported).await, 200);
    let keys = admin(&a_base, Method::GET, "/admin/keys", json!({})).await;
    let id = keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["revoked_at"].is_null())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = command(&["keys", "revoke", &id, "--config", config])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for base in [&a_base, &b_base] {
        let took = time_until(base, imported, 401).await;
        assert!(
            took < Duration::from_secs(1),
            "the CLI's revocation reached {base} after {took:?}"
        );
    }
    let _ = a.terminate().await;
    let _ = b.terminate().await;
}
