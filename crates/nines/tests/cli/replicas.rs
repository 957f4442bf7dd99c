//! Two gateway processes sharing one store and one Redis: a key change made through one reaches
//! the other within a second (Redis pub/sub), although its `cache_ttl` is an hour — on a plain
//! Redis, on a three-master Redis Cluster and through a Sentinel URL.

use crate::process::{Nines, client, command};
use crate::redis_servers::{RedisProcesses, missing_tools};
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
    let prefix = format!("revoke-{}", uuid::Uuid::new_v4().simple());
    changes_reach_the_other_replica(
        "plain Redis",
        &format!("[limits]\nredis_url = \"{redis}\"\nredis_prefix = \"{prefix}\"\n\n[store]\n"),
    )
    .await;
}

/// The same on a three-master Redis Cluster: `PUBLISH` reaches every node, so a replica
/// subscribed on the seed node hears one that published through another. The store is Postgres.
#[tokio::test]
async fn a_revocation_reaches_the_other_replica_through_a_redis_cluster() {
    const TEST: &str = "a_revocation_reaches_the_other_replica_through_a_redis_cluster";
    let Some(store) = postgres_store(TEST) else {
        return;
    };
    if let Some(why) = missing_tools() {
        return crate::skipped(TEST, &why);
    }
    let cluster = RedisProcesses::cluster();
    let prefix = format!("revoke-{}", uuid::Uuid::new_v4().simple());
    // The seed does not own the limits' slot: a client that did not follow the cluster would
    // fail the limiter and the announcements alike.
    let seed = cluster.node_not_owning(&format!("{{{prefix}}}"));
    changes_reach_the_other_replica(
        "Redis Cluster",
        &format!(
            "[redis]\nurl = \"{seed}\"\ncluster = true\n\n\
             [limits]\nredis_prefix = \"{prefix}\"\n\n{store}"
        ),
    )
    .await;
}

/// The same through a Sentinel URL: the replicas and the CLI find the master by name.
#[tokio::test]
async fn a_revocation_reaches_the_other_replica_through_sentinel() {
    const TEST: &str = "a_revocation_reaches_the_other_replica_through_sentinel";
    let Some(store) = postgres_store(TEST) else {
        return;
    };
    if let Some(why) = missing_tools() {
        return crate::skipped(TEST, &why);
    }
    let sentinel = RedisProcesses::sentinel();
    let prefix = format!("revoke-{}", uuid::Uuid::new_v4().simple());
    changes_reach_the_other_replica(
        "Sentinel",
        &format!(
            "[redis]\nurl = \"redis+sentinel://127.0.0.1:{}/mymaster\"\n\n\
             [limits]\nredis_prefix = \"{prefix}\"\n\n{store}",
            sentinel.ports[1]
        ),
    )
    .await;
}

/// `[store]` on the Postgres of `DATABASE_URL`, or `None` (and a visible skip) without it.
fn postgres_store(test: &str) -> Option<String> {
    let Ok(url) = std::env::var("DATABASE_URL") else {
        crate::skipped(
            test,
            "DATABASE_URL is not set (e.g. postgres://postgres@127.0.0.1:5432/test)",
        );
        return None;
    };
    Some(format!("[store]\ndatabase_url = \"{url}\"\n"))
}

/// Two gateways on `shared` (the `[limits]`/`[redis]` and `[store]` sections): key changes made
/// through A — revocations, an import — and a revocation made with the CLI reach B within a
/// second; the figures are printed under `label`.
async fn changes_reach_the_other_replica(label: &str, shared: &str) {
    let mock = MockServer::start("127.0.0.1:0".parse().unwrap(), MockOptions::default())
        .await
        .unwrap();
    let dir = tempdir();
    let path = dir.join("nines.toml");
    let rest = format!("\n[auth]\nadmin_key = \"{ADMIN}\"\ncache_ttl = \"1h\"\n\n{shared}");
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
    // Unique names: a Postgres store is shared with other tests.
    let org = format!("acme-{}", uuid::Uuid::new_v4().simple());
    admin(&a_base, Method::POST, "/admin/orgs", json!({"name": org})).await;
    let user = admin(
        &a_base,
        Method::POST,
        "/admin/users",
        json!({"org": org, "name": "al"}),
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
    println!("{label}: revocation reached the other replica after (sorted): {measured:?}");

    // A key imported on A after B was asked for it (B remembers it as unknown) works on B too.
    let imported = format!("sk-legacy-{}", uuid::Uuid::new_v4().simple());
    let imported = imported.as_str();
    assert_eq!(chat_status(&b_base, imported).await, 401);
    let import = admin(
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
    println!("{label}: the import reached the other replica after {took:?}");

    // A revocation made with the CLI (no gateway involved) is announced too.
    assert_eq!(chat_status(&a_base, imported).await, 200);
    let id = import["id"].as_str().unwrap();
    let out = command(&["keys", "revoke", id, "--config", config])
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
        println!("{label}: the CLI's revocation reached {base} after {took:?}");
    }
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("could not be announced"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = a.terminate().await;
    let _ = b.terminate().await;
}
