//! `nines demo`: no keys, no network; answers during its scripted outage, and the outage shows on
//! its status page while its routes stay available.

use crate::process::{Nines, command};
use serde_json::{Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Polls the admin's (private) `/status.json` every 200 ms until `cond` holds; fails with the
/// last body after `within`.
async fn status_when(
    client: &reqwest::Client,
    base: &str,
    admin_key: &str,
    within: Duration,
    cond: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let status: Value = client
            .get(format!("{base}/status.json"))
            .bearer_auth(admin_key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if cond(&status) {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the status page did not get there within {within:?}: {status:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn route<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap()
}

fn state_of(route: &Value, deployment: &str) -> String {
    route["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == deployment)
        .map(|d| d["state"].as_str().unwrap().to_owned())
        .unwrap()
}

/// Every configured route answered every request it got.
fn routes_available(status: &Value) {
    for r in status["routes"].as_array().unwrap() {
        assert_ne!(r["state"], "down", "{r:#}");
        assert_eq!(r["availability"]["1h"]["failures"], 0, "{r:#}");
    }
}

#[tokio::test]
async fn demo_answers_during_its_outage_and_its_status_page_shows_it() {
    let mut nines = Nines::spawn(command(&["demo", "--listen", "127.0.0.1:0"]));
    let base = nines.base().await;
    // The mocks (and so the primary's outage cycle) started before the listening line.
    let started_by_ms = now_ms();
    let client = crate::process::client();

    // The primary's outage starts at time 0 and lasts 8 s, so these requests land inside it;
    // once its breaker opens they go to the secondary directly.
    for _ in 0..5 {
        let response = client
            .post(format!("{base}/v1/chat/completions"))
            .json(&json!({"model": "chat-default", "messages": [{"role": "user", "content": "Hello!"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-nines-deployment"], "secondary");
        let attempts = response.headers()["x-nines-attempts"].to_str().unwrap();
        assert!(attempts == "1" || attempts == "2", "{attempts}");
        let body: Value = response.json().await.unwrap();
        assert!(
            body["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .contains("secondary")
        );
    }

    // The banner: where the page is, the admin key and the SLA report command.
    let page = nines.line_containing("Status page:").await;
    assert!(
        page.starts_with(&format!("Status page:  {base}/status ")),
        "{page}"
    );
    let report = nines.line_containing("nines report sla --url").await;
    let key = report
        .split_whitespace()
        .skip_while(|w| *w != "--admin-key")
        .nth(1)
        .unwrap();
    assert!(report.contains(&format!("--url {base} ")), "{report}");
    assert!(key.starts_with("sk-nines-"), "{report}");
    let admin = client
        .get(format!("{base}/admin/status"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 200, "the printed admin key is the demo's");
    // The command works as printed, pasted into a shell (`nines` is not on the test's PATH, so
    // the banner names this binary by its path).
    let command = report.trim_start_matches("SLA report:").trim();
    let pasted = tokio::process::Command::new("sh")
        .args(["-c", &format!("{command} --format json")])
        .output()
        .await
        .unwrap();
    assert!(
        pasted.status.success(),
        "{command}: {}",
        String::from_utf8_lossy(&pasted.stderr)
    );
    let sla: Value = serde_json::from_slice(&pasted.stdout).unwrap();
    assert!(sla.is_object(), "{sla}");

    // The outage on the status page: the primary's breaker opened within the scripted window,
    // and the routes kept answering through it.
    let during = status_when(&client, &base, key, Duration::from_secs(20), |s| {
        state_of(route(s, "chat-default"), "primary") == "down"
            && !s["incidents"]["current"].as_array().unwrap().is_empty()
    })
    .await;
    let incident = &during["incidents"]["current"][0];
    assert_eq!(incident["key_slot"], "primary#0");
    assert_eq!(
        incident["routes"],
        json!(["chat-default", "chat-cheap", "embed-default"])
    );
    let opened = incident["opened_at_ms"].as_u64().unwrap();
    assert!(
        opened < started_by_ms + 8_000,
        "opened {} ms after start, after the 8 s outage",
        opened.saturating_sub(started_by_ms)
    );
    // Clients saw nothing: the model is operational with a quiet note, the banner green.
    let chat = route(&during, "chat-default");
    assert_eq!(chat["state"], "operational", "{chat:#}");
    assert!(
        chat["note"]
            .as_str()
            .is_some_and(|n| n.starts_with("1 of 3 providers failing")),
        "{chat:#}"
    );
    assert_eq!(state_of(chat, "secondary"), "operational");
    assert!(chat["availability"]["1h"]["requests"].as_u64().unwrap() >= 5);
    routes_available(&during);
    assert_eq!(during["state"], "operational");
    // Anonymous visitors see the models, not the primary nor its breaker.
    let public = client
        .get(format!("{base}/status.json"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(public.contains("\"view\":\"public\"") && public.contains("chat-default"));
    for internal in ["primary", "breaker", "key_slot", "in_flight"] {
        assert!(!public.contains(internal), "{internal} in {public}");
    }

    // And the recovery: the primary serves again, the incident is closed, nothing was lost.
    let after = status_when(&client, &base, key, Duration::from_secs(40), |s| {
        state_of(route(s, "chat-default"), "primary") == "operational"
            && s["incidents"]["recent"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i["opened_at_ms"] == opened)
    })
    .await;
    routes_available(&after);
    let primary_1h = &route(&after, "chat-default")["deployments"][0]["availability"]["1h"];
    assert!(
        primary_1h["failures"].as_u64().unwrap() > 0,
        "the upstream's failures are counted: {primary_1h}"
    );

    let (status, _) = nines.terminate().await;
    assert!(status.success());
}
