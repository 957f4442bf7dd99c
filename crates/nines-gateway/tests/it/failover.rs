//! Ordered failover before the commit point, with exact upstream attempt counts.

use crate::harness::{Harness, chain, error_of, hello};
use serde_json::json;

#[tokio::test]
async fn retryable_statuses_fail_over_to_the_next_deployment() {
    for status in [429u16, 500, 502, 503, 504, 529] {
        let h = Harness::start(2, &chain(2)).await;
        h.fault(0, json!({"status": status}));
        let response = h.chat(&hello("chat")).await;
        assert_eq!(response.status(), 200, "status {status}");
        assert_eq!(response.headers()["x-nines-deployment"], "d1");
        assert_eq!(response.headers()["x-nines-attempts"], "2");
        assert_eq!((h.chat_hits(0), h.chat_hits(1)), (1, 1), "status {status}");
    }
}

#[tokio::test]
async fn broken_upstream_key_fails_over() {
    let h = Harness::start(2, &chain(2)).await;
    h.fault(0, json!({"status": 401}));
    let response = h.chat(&hello("chat")).await;
    assert_eq!(response.status(), 200);
    assert_eq!((h.chat_hits(0), h.chat_hits(1)), (1, 1));
}

#[tokio::test]
async fn connection_refused_fails_over() {
    let template = chain(2).replace("{mock0}", "http://127.0.0.1:9/v1");
    let h = Harness::start(2, &template).await;
    let response = h.chat(&hello("chat")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-nines-attempts"], "2");
    assert_eq!(h.chat_hits(1), 1);
}

#[tokio::test]
async fn reset_and_malformed_bodies_fail_over() {
    let h = Harness::start(2, &chain(2)).await;
    h.fault(0, json!({"reset_after_chunks": 0}));
    let response = h.chat(&hello("chat")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-nines-deployment"], "d1");

    h.fault(0, json!({"status": 200, "body": "<html>oops</html>"}));
    let response = h.chat(&hello("chat")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-nines-deployment"], "d1");
    assert_eq!((h.chat_hits(0), h.chat_hits(1)), (2, 2));
}

#[tokio::test]
async fn first_byte_timeout_fails_over() {
    let template = chain(2).replace("first_byte = \"2s\"", "first_byte = \"300ms\"");
    let h = Harness::start(2, &template).await;
    h.fault(0, json!({"hang": true}));
    let response = h.chat(&hello("chat")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-nines-deployment"], "d1");
    assert_eq!((h.chat_hits(0), h.chat_hits(1)), (1, 1));
}

#[tokio::test]
async fn all_failing_is_502_listing_every_attempt_without_secrets() {
    // One attempt per deployment, so the list is exactly the three failovers.
    let config = format!(
        "{}\n[resilience]\nmax_attempts_per_deployment = 1\n",
        chain(3)
    );
    let h = Harness::start(3, &config).await;
    h.fault(0, json!({"status": 500}));
    h.fault(1, json!({"status": 429, "retry_after": "3"}));
    h.fault(2, json!({"status": 503}));
    let response = h.chat(&hello("chat")).await;
    assert_eq!(response.status(), 502);
    assert_eq!(response.headers()["x-nines-attempts"], "3");
    assert_eq!(response.headers()["x-should-retry"], "false");
    let error = error_of(response).await;
    let message = error["message"].as_str().unwrap();
    assert_eq!(error["code"], "all_attempts_failed");
    for needle in [
        "deployment=d0",
        "key=d0#0",
        "class=server",
        "status=500",
        "deployment=d1",
        "class=rate_limited",
        "d2#0",
    ] {
        assert!(message.contains(needle), "missing {needle}: {message}");
    }
    assert!(!message.contains("sk-upstream-secret"), "{message}");
    assert_eq!((h.chat_hits(0), h.chat_hits(1), h.chat_hits(2)), (1, 1, 1));
}

#[tokio::test]
async fn deadline_running_out_is_504() {
    let template = chain(2).replace("total = \"10s\"", "total = \"400ms\"");
    let h = Harness::start(2, &template).await;
    h.fault(0, json!({"hang": true}));
    h.fault(1, json!({"hang": true}));
    let response = h.chat(&hello("chat")).await;
    assert_eq!(response.status(), 504);
    let error = error_of(response).await;
    assert_eq!(error["code"], "deadline_exceeded");
    assert_eq!(h.chat_hits(0), 1);
}

#[tokio::test]
async fn keys_of_a_deployment_are_separate_slots() {
    let template = chain(1).replace(
        "api_keys = [\"env:TEST_KEY\"]",
        "api_keys = [\"env:TEST_KEY\", \"env:TEST_KEY_2\"]",
    );
    let h = Harness::start(1, &template).await;
    h.fault(0, json!({"status": 401, "times": 1}));
    let response = h.chat(&hello("chat")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-nines-attempts"], "2");
    let auths: Vec<String> = h
        .mock(0)
        .requests()
        .iter()
        .flat_map(|r| {
            r.headers
                .iter()
                .filter(|(k, _)| k == "authorization")
                .map(|(_, v)| v.clone())
        })
        .collect();
    assert_eq!(auths.len(), 2);
    assert_ne!(auths[0], auths[1], "the second attempt used the other key");
}
