//! Tenants declared in the config file and keys imported with a chosen string: organisations and
//! users with limits in `[[auth.orgs]]`/`[[auth.users]]`, shared by the config's keys and by
//! virtual keys of a store tenant of the same name (the file wins), and `POST /admin/keys` with
//! `key`.

use crate::harness::{Harness, error_of, hello};
use serde_json::{Value, json};

const ADMIN: &str = "admin-secret-for-tenant-tests";
const ALICE_1: &str = "alice-laptop-key-0000000000001";
const ALICE_2: &str = "alice-server-key-0000000000002";
const BOB: &str = "bob-key-000000000000000000003";

fn config(dir: &std::path::Path) -> String {
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

[[models]]
name = "chat"
deployments = ["d0"]

[auth]
admin_key = "{ADMIN}"

[[auth.orgs]]
name = "acme"
limits = {{ rpm = 4 }}

[[auth.users]]
name = "alice"
org = "acme"
limits = {{ rpm = 2 }}

[[auth.users]]
name = "bob"
org = "acme"

[[auth.keys]]
key = "{ALICE_1}"
name = "alice-laptop"
user = "alice"

[[auth.keys]]
key = "{ALICE_2}"
name = "alice-server"
user = "alice"

[[auth.keys]]
key = "{BOB}"
name = "bob"
user = "bob"

[store]
data_dir = "{}"
"#,
        dir.display()
    )
}

async fn post(h: &Harness, key: &str) -> reqwest::Response {
    h.client
        .post(h.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&hello("chat"))
        .send()
        .await
        .unwrap()
}

async fn admin(h: &Harness, path: &str, body: Value) -> reqwest::Response {
    h.client
        .post(h.url(path))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn limit_of(r: &reqwest::Response) -> String {
    r.headers()
        .get("x-nines-limit")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn config_tenants_share_limits_with_each_other_and_with_store_tenants_of_the_same_name() {
    let dir = std::env::temp_dir().join(format!("nines-tenants-{}", uuid::Uuid::new_v4()));
    let h = Harness::start_opened(1, &config(&dir)).await;
    // User alice (2 rpm) is shared by her two keys.
    assert_eq!(post(&h, ALICE_1).await.status(), 200);
    assert_eq!(post(&h, ALICE_2).await.status(), 200);
    let r = post(&h, ALICE_1).await;
    assert_eq!(r.status(), 429);
    assert_eq!(limit_of(&r), "user:requests");
    // Org acme (4 rpm) is shared by alice, bob and a virtual key of the store's org "acme":
    // the file's tenant wins over the store's.
    assert_eq!(
        admin(
            &h,
            "/admin/orgs",
            json!({"name": "acme", "limits": {"rpm": 1000}})
        )
        .await
        .status(),
        201
    );
    let u = admin(&h, "/admin/users", json!({"org": "acme", "name": "carol"})).await;
    let user: Value = u.json().await.unwrap();
    let k: Value = admin(&h, "/admin/keys", json!({"user": user["id"]}))
        .await
        .json()
        .await
        .unwrap();
    let carol = k["key"].as_str().unwrap();
    assert_eq!(post(&h, BOB).await.status(), 200);
    assert_eq!(post(&h, carol).await.status(), 200);
    let r = post(&h, carol).await;
    assert_eq!(
        r.status(),
        429,
        "acme's 4 rpm from the file, not the store's 1000"
    );
    assert_eq!(limit_of(&r), "org:requests");
    let e = error_of(r).await;
    assert!(e["message"].as_str().unwrap().contains("org 'acme'"), "{e}");
    assert_eq!(post(&h, BOB).await.status(), 429);
    assert_eq!(h.chat_hits(0), 4);
}

#[tokio::test]
async fn keys_are_imported_with_a_chosen_string_that_must_be_hard_to_guess() {
    let dir = std::env::temp_dir().join(format!("nines-import-{}", uuid::Uuid::new_v4()));
    let h = Harness::start_opened(1, &config(&dir)).await;
    admin(&h, "/admin/orgs", json!({"name": "globex"})).await;
    let user: Value = admin(&h, "/admin/users", json!({"org": "globex", "name": "dan"}))
        .await
        .json()
        .await
        .unwrap();
    let chosen = "sk-litellm-Vb3Nm7Qw2Er9Ty4Ui8Op1As6Df";
    // Unknown before the import (and remembered so): 401.
    assert_eq!(post(&h, chosen).await.status(), 401);
    let r = admin(
        &h,
        "/admin/keys",
        json!({"user": user["id"], "key": chosen}),
    )
    .await;
    assert_eq!(r.status(), 201);
    let row: Value = r.json().await.unwrap();
    assert!(
        row.get("key").is_none(),
        "a chosen key is not echoed: {row}"
    );
    assert!(!row.to_string().contains(chosen));
    // The import cleared this replica's memory of it as unknown: it works at once.
    assert_eq!(post(&h, chosen).await.status(), 200);
    // The same string twice is a conflict, not a second key.
    assert_eq!(
        admin(
            &h,
            "/admin/keys",
            json!({"user": user["id"], "key": chosen})
        )
        .await
        .status(),
        409
    );
    for (weak, why) in [
        ("short-key", "20 to 256"),
        ("sk-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "too easy to guess"),
        ("sk-has spaces 0123456789abcdef", "letters, digits"),
    ] {
        let r = admin(&h, "/admin/keys", json!({"user": user["id"], "key": weak})).await;
        assert_eq!(r.status(), 400, "{weak}");
        let body = r.text().await.unwrap();
        assert!(body.contains(why), "{weak}: {body}");
        assert!(!body.contains(weak), "the key is not repeated: {body}");
    }
}
