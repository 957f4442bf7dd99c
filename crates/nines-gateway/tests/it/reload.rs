//! Hot reload over real HTTP: `POST /admin/reload`, an invalid file refused with the old
//! configuration still serving, state that survives a reload, in-flight requests finishing on the
//! configuration they started with, and the file watch following a ConfigMap-style symlink swap.
//! (SIGHUP is the binary's, tested with real processes in `nines/tests/cli/lifecycle.rs`.)

use crate::harness::{Harness, chain, eventually, hello};
use crate::metrics::scrape;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

const ADMIN: &str = "sk-reload-admin";
const TENANT: &str = "sk-reload-tenant-0001";

/// A fresh directory under the system temp dir.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nines-{name}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `chain(2)` with a tenant key limited to 8 requests a minute and the admin key; `extra` at the
/// end.
fn config(extra: &str) -> String {
    format!(
        "{}\n[auth]\nadmin_key = \"{ADMIN}\"\n[[auth.keys]]\nkey = \"{TENANT}\"\nname = \"tenant\"\nlimits = {{ rpm = 8 }}\n\n[store]\ndatabase_url = \"sqlite::memory:\"\n{extra}",
        chain(2)
    )
}

async fn chat(h: &Harness) -> reqwest::Response {
    h.client
        .post(h.url("/v1/chat/completions"))
        .bearer_auth(TENANT)
        .json(&hello("chat"))
        .send()
        .await
        .unwrap()
}

async fn reload(h: &Harness) -> (u16, Value) {
    let r = h
        .client
        .post(h.url("/admin/reload"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

fn rewrite(h: &Harness, file: &Path, template: &str) {
    std::fs::write(file, h.fill(template)).unwrap();
}

#[tokio::test]
async fn a_reload_swaps_the_config_and_keeps_what_was_learned() {
    let dir = temp_dir("reload");
    let file = dir.join("nines.toml");
    let h = Harness::start_reloadable(2, &config(""), &file).await;
    let hash_before = h.get_json("/health", None).await["config_hash"].clone();

    // d0 fails five times: each request fails over to d1, and d0's breaker opens.
    h.fault(0, json!({"status": 500}));
    for _ in 0..5 {
        let r = chat(&h).await;
        assert_eq!(r.headers()["x-nines-deployment"], "d1");
    }
    assert_eq!(h.chat_hits(0), 5);
    let open = |m: &crate::metrics::Exposition| {
        m.get(
            "nines_breaker_state",
            &[
                ("deployment", "d0"),
                ("key_slot", "d0#0"),
                ("state", "open"),
            ],
        )
    };
    assert_eq!(open(&scrape(&h).await), 1.0);

    // A change elsewhere in the file (one more model): reloaded.
    rewrite(
        &h,
        &file,
        &config("\n[[models]]\nname = \"extra\"\ndeployments = [\"d1\"]\n"),
    );
    let (status, body) = reload(&h).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "reloaded");
    assert_eq!(body["restart_needed"], json!([]));
    assert_ne!(body["config_hash"], hash_before);
    let reloaded_hash = body["config_hash"].clone();
    assert_eq!(
        h.get_json("/health", None).await["config_hash"],
        body["config_hash"]
    );
    let models = h
        .client
        .get(h.url("/v1/models"))
        .bearer_auth(TENANT)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert!(models.to_string().contains("\"extra\""), "{models}");

    // What was learned survives: d0's breaker is still open (skipped, no new hit), and the
    // tenant's window still holds its 5 requests (8 a minute: 3 more, then 429).
    let m = scrape(&h).await;
    assert_eq!(open(&m), 1.0);
    for _ in 0..3 {
        let r = chat(&h).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-nines-attempts"], "1");
    }
    assert_eq!(h.chat_hits(0), 5, "the open slot was not called");
    assert_eq!(chat(&h).await.status(), 429, "the window carried over");
    assert_eq!(
        scrape(&h)
            .await
            .get("nines_config_reloads_total", &[("result", "ok")]),
        1.0
    );

    // An invalid file is refused with its line, and the running configuration keeps serving.
    std::fs::write(
        &file,
        "[server]\nlisten = \"127.0.0.1:0\"\nmax_body_bytes = \"lots\"\n",
    )
    .unwrap();
    let (status, body) = reload(&h).await;
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("nines.toml") && message.contains("max_body_bytes"),
        "{message}"
    );
    assert_eq!(
        h.get_json("/health", None).await["config_hash"],
        reloaded_hash,
        "the running configuration stayed"
    );
    let r = h
        .client
        .get(h.url("/v1/models"))
        .bearer_auth(TENANT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "still serving");
    let m = scrape(&h).await;
    assert_eq!(
        m.get("nines_config_reloads_total", &[("result", "invalid")]),
        1.0
    );

    // A setting read once at start is named, and the rest applies.
    rewrite(
        &h,
        &file,
        &config("\n[[models]]\nname = \"extra\"\ndeployments = [\"d1\"]\n")
            .replace("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:1\""),
    );
    let (status, body) = reload(&h).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["restart_needed"], json!(["server.listen"]));
    // The same text again: nothing to do.
    let (status, body) = reload(&h).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("unchanged")));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_request_in_flight_finishes_on_the_config_it_started_with() {
    let dir = temp_dir("reload-inflight");
    let file = dir.join("nines.toml");
    let h = Harness::start_reloadable(2, &config(""), &file).await;
    h.fault(0, json!({"latency_ms": 800}));
    let slow = {
        let client = h.client.clone();
        let url = h.url("/v1/chat/completions");
        tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(TENANT)
                .json(&hello("chat"))
                .send()
                .await
                .unwrap()
        })
    };
    eventually(Duration::from_secs(5), || h.chat_hits(0) == 1).await;
    // `chat` now routes to d1 only.
    rewrite(
        &h,
        &file,
        &config("").replace(
            "name = \"chat\"\ndeployments = [\"d0\", \"d1\"]",
            "name = \"chat\"\ndeployments = [\"d1\"]",
        ),
    );
    assert_eq!(reload(&h).await.0, 200);
    let fresh = chat(&h).await;
    assert_eq!(fresh.headers()["x-nines-deployment"], "d1");
    let slow = slow.await.unwrap();
    assert_eq!(slow.status(), 200);
    assert_eq!(
        slow.headers()["x-nines-deployment"],
        "d0",
        "the in-flight request kept its configuration"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_watch_follows_a_configmap_symlink_swap() {
    // The layout a Kubernetes ConfigMap volume has: nines.toml -> ..data/nines.toml, and
    // ..data -> ..<timestamp>/, swapped by renaming a new symlink over ..data.
    let dir = temp_dir("reload-watch");
    let first = dir.join("..2026_12_06_a");
    std::fs::create_dir_all(&first).unwrap();
    std::os::unix::fs::symlink("..2026_12_06_a", dir.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/nines.toml", dir.join("nines.toml")).unwrap();
    let file = dir.join("nines.toml");
    let h = Harness::start_reloadable(2, &config(""), &file).await;
    let _watch = nines_gateway::state::watch::watch(&h.state).unwrap();
    let before = h.state.runtime().config.hash.clone();

    // Rewriting the same text through a swap changes nothing.
    let swap = |name: &str, text: &str| {
        let next = dir.join(name);
        std::fs::create_dir_all(&next).unwrap();
        std::fs::write(next.join("nines.toml"), text).unwrap();
        let tmp = dir.join("..data_tmp");
        std::os::unix::fs::symlink(name, &tmp).unwrap();
        std::fs::rename(&tmp, dir.join("..data")).unwrap();
    };
    swap("..2026_12_06_b", &h.fill(&config("")));
    tokio::time::sleep(nines_gateway::state::watch::QUIET * 3).await;
    assert_eq!(
        h.state.runtime().config.hash,
        before,
        "same text, no reload"
    );

    swap(
        "..2026_12_06_c",
        &h.fill(&config(
            "\n[[models]]\nname = \"extra\"\ndeployments = [\"d1\"]\n",
        )),
    );
    eventually(Duration::from_secs(5), || {
        h.state.runtime().config.hash != before
    })
    .await;
    assert!(h.state.runtime().table.resolve("extra").is_some());
    // The new runtime is published a moment before the reload is counted.
    let mut counted = None;
    for _ in 0..50 {
        counted = scrape(&h)
            .await
            .find("nines_config_reloads_total", &[("result", "ok")]);
        if counted.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(counted, Some(1.0));
    let _ = std::fs::remove_dir_all(&dir);
}
