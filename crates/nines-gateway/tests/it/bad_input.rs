//! Every kind of bad input gets an OpenAI-shaped error with the right status, and no upstream call.

use crate::harness::{Harness, chain, error_of, hello};
use serde_json::json;

async fn raw(
    h: &Harness,
    method: reqwest::Method,
    path: &str,
    body: &'static [u8],
) -> reqwest::Response {
    h.client
        .request(method, h.url(path))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn malformed_json_is_400() {
    let h = Harness::start(1, &chain(1)).await;
    for body in [
        &b"{not json"[..],
        b"",
        b"[1,2]",
        b"\"str\"",
        b"{\"model\":\"chat\",\"messages\":[}",
        b"\xff\xfe",
    ] {
        let response = raw(&h, reqwest::Method::POST, "/v1/chat/completions", body).await;
        assert_eq!(response.status(), 400, "{body:?}");
        let error = error_of(response).await;
        assert_eq!(error["type"], "invalid_request_error");
    }
    assert_eq!(h.mock(0).total_hits(), 0);
}

#[tokio::test]
async fn missing_or_bad_model_is_400() {
    let h = Harness::start(1, &chain(1)).await;
    for body in [
        json!({"messages": []}),
        json!({"model": 5, "messages": []}),
        json!({"model": "", "messages": []}),
    ] {
        let response = h.chat(&body).await;
        assert_eq!(response.status(), 400, "{body}");
        let error = error_of(response).await;
        assert_eq!(error["param"], "model");
    }
    let response = h.chat(&json!({"model": "chat"})).await;
    assert_eq!(response.status(), 400);
    assert_eq!(error_of(response).await["param"], "messages");
    let response = h
        .post_json("/v1/embeddings", &json!({"model": "embed"}))
        .await;
    assert_eq!(response.status(), 400);
    assert_eq!(h.mock(0).total_hits(), 0);
}

#[tokio::test]
async fn unknown_model_is_404_and_says_how_to_list() {
    let h = Harness::start(1, &chain(1)).await;
    let response = h.chat(&hello("gpt-nonexistent")).await;
    assert_eq!(response.status(), 404);
    let error = error_of(response).await;
    assert_eq!(error["code"], "model_not_found");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("GET /v1/models"),
        "{error}"
    );
    assert_eq!(h.mock(0).total_hits(), 0);
}

#[tokio::test]
async fn oversized_body_is_413() {
    let h = Harness::start(1, &chain(1)).await; // limit 64 KiB in the harness config
    let big = "x".repeat(70 * 1024);
    let response = h
        .chat(&json!({"model": "chat", "messages": [{"role": "user", "content": big}]}))
        .await;
    assert_eq!(response.status(), 413);
    let error = error_of(response).await;
    assert!(
        error["message"].as_str().unwrap().contains("65536"),
        "{error}"
    );
    assert_eq!(h.mock(0).total_hits(), 0);
    // Just under the limit still works.
    let fits = "x".repeat(60 * 1024);
    let response = h
        .chat(&json!({"model": "chat", "messages": [{"role": "user", "content": fits}]}))
        .await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn wrong_method_is_405_and_unknown_path_404() {
    let h = Harness::start(1, &chain(1)).await;
    let response = raw(&h, reqwest::Method::GET, "/v1/chat/completions", b"").await;
    assert_eq!(response.status(), 405);
    error_of(response).await;
    let response = raw(&h, reqwest::Method::DELETE, "/v1/models", b"").await;
    assert_eq!(response.status(), 405);
    let response = raw(&h, reqwest::Method::POST, "/v1/nothing-here", b"{}").await;
    assert_eq!(response.status(), 404);
    assert_eq!(error_of(response).await["code"], "unknown_url");
}

#[tokio::test]
async fn upstream_4xx_is_relayed_with_its_status_and_not_retried() {
    let h = Harness::start(2, &chain(2)).await;
    let body = r#"{"error":{"message":"Invalid value for 'temperature'","type":"invalid_request_error","param":"temperature","code":null}}"#;
    h.fault(0, json!({"status": 400, "body": body}));
    let response = h.chat(&hello("chat")).await;
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["x-nines-attempts"], "1");
    let error = error_of(response).await;
    assert_eq!(error["message"], "Invalid value for 'temperature'");
    assert_eq!(error["param"], "temperature");
    assert_eq!(h.chat_hits(0), 1);
    assert_eq!(
        h.chat_hits(1),
        0,
        "a client error must not be retried elsewhere"
    );

    h.fault(0, json!({"status": 422, "body": "plain text complaint"}));
    let response = h.chat(&hello("chat")).await;
    assert_eq!(response.status(), 422);
    let error = error_of(response).await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("plain text complaint")
    );
}

#[tokio::test]
async fn many_bad_requests_in_parallel_never_hang_or_crash() {
    let h = Harness::start(1, &chain(1)).await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let client = h.client.clone();
        let url = h.url("/v1/chat/completions");
        tasks.push(tokio::spawn(async move {
            let body: Vec<u8> = match i % 5 {
                0 => b"{".to_vec(),
                1 => vec![0xff; 100],
                2 => b"{\"model\":null,\"messages\":[]}".to_vec(),
                3 => b"{\"model\":\"chat\",\"messages\":[],\"stream\":\"yes\"}".to_vec(),
                _ => b"{\"model\":\"chat\",\"messages\":[{\"role\":\"user\",\"content\":\"ok\"}]}"
                    .to_vec(),
            };
            client
                .post(url)
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 10);
    assert_eq!(statuses.iter().filter(|s| **s == 400).count(), 40);
    let response = h.chat(&hello("chat")).await;
    assert_eq!(response.status(), 200, "still serving");
}
