//! The OpenAI-compatible surface: pass-through, models, embeddings, headers.

use crate::harness::{Harness, chain, hello};
use serde_json::{Value, json};

#[tokio::test]
async fn chat_body_is_forwarded_untouched_except_model() {
    let h = Harness::start(1, &chain(1)).await;
    let body = r#"{"model":"chat","messages":[{"role":"user","content":"héllo"}],"x_unknown":{"keep":[1,2.50,"x"]},"temperature":0.25}"#;
    let response = h
        .client
        .post(h.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .header("authorization", "Bearer client-key-must-not-be-forwarded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-nines-deployment"], "d0");
    assert_eq!(response.headers()["x-nines-attempts"], "1");
    assert!(response.headers().contains_key("x-request-id"));
    let reply: Value = response.json().await.unwrap();
    assert_eq!(reply["object"], "chat.completion");
    assert!(
        reply["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains("mock0")
    );

    let recorded = h.mock(0).requests();
    let request = recorded
        .iter()
        .find(|r| r.route == "/v1/chat/completions")
        .unwrap();
    assert_eq!(
        request.body,
        body.replace(r#""model":"chat""#, r#""model":"up-model-0""#)
    );
    let auth: Vec<&str> = request
        .headers
        .iter()
        .filter(|(k, _)| k == "authorization")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(auth, vec!["Bearer sk-upstream-secret-0001"]);
}

#[tokio::test]
async fn tools_response_format_and_n_pass_through() {
    let h = Harness::start(1, &chain(1)).await;
    let tools = json!({
        "model": "chat",
        "messages": [{"role": "user", "content": "weather?"}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
        "tool_choice": "auto"
    });
    let reply: Value = h.chat(&tools).await.json().await.unwrap();
    assert_eq!(reply["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        reply["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
        "get_weather"
    );

    let mut n2 = hello("chat");
    n2["n"] = json!(2);
    n2["response_format"] = json!({"type": "json_object"});
    let reply: Value = h.chat(&n2).await.json().await.unwrap();
    assert_eq!(reply["choices"].as_array().unwrap().len(), 2);
    let content: Value =
        serde_json::from_str(reply["choices"][1]["message"]["content"].as_str().unwrap()).unwrap();
    assert_eq!(content["mock"], true);
}

#[tokio::test]
async fn models_are_listed_and_fetchable() {
    let h = Harness::start(2, &chain(2)).await;
    let list: Value = h
        .client
        .get(h.url("/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["object"], "list");
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![
            "chat",
            "embed",
            "openai-compatible/up-model-0",
            "openai-compatible/up-model-1"
        ]
    );
    assert_eq!(list["data"][0]["object"], "model");

    let one = h.client.get(h.url("/v1/models/chat")).send().await.unwrap();
    assert_eq!(one.status(), 200);
    assert_eq!(one.json::<Value>().await.unwrap()["id"], "chat");
    let prefixed = h
        .client
        .get(h.url("/v1/models/openai-compatible/up-model-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(prefixed.status(), 200);
    let missing = h.client.get(h.url("/v1/models/nope")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn provider_prefixed_name_routes_without_a_model_entry() {
    let h = Harness::start(2, &chain(2)).await;
    let response = h.chat(&hello("openai-compatible/up-model-1")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-nines-deployment"], "d1");
    assert_eq!(h.chat_hits(0), 0);
    assert_eq!(h.chat_hits(1), 1);
}

#[tokio::test]
async fn embeddings_route_and_fail_over() {
    // Declared interchangeable (same family), so embeddings may fail over between them.
    let template = chain(2).replace(
        "context_window = ",
        "embedding_family = \"mock-embed-8\"\ncontext_window = ",
    );
    let h = Harness::start(2, &template).await;
    h.fault(0, json!({"status": 500}));
    let response = h
        .post_json(
            "/v1/embeddings",
            &json!({"model": "embed", "input": ["a", "b"]}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-nines-deployment"], "d1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "list");
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    assert_eq!(h.mock(0).hits("/v1/embeddings"), 1);
    assert_eq!(h.mock(1).hits("/v1/embeddings"), 1);
}

#[tokio::test]
async fn client_request_id_is_echoed() {
    let h = Harness::start(1, &chain(1)).await;
    let response = h
        .client
        .post(h.url("/v1/chat/completions"))
        .header("x-request-id", "my-trace-123")
        .json(&hello("chat"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "my-trace-123");
    let recorded = h.mock(0).requests();
    assert!(
        recorded[0]
            .headers
            .iter()
            .any(|(k, v)| k == "x-request-id" && v == "my-trace-123")
    );
    // Errors carry it too.
    let response = h
        .client
        .get(h.url("/nope"))
        .header("x-request-id", "abc")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "abc");
}

#[tokio::test]
async fn health_endpoints() {
    let h = Harness::start(1, &chain(1)).await;
    for (path, status) in [
        ("/health", "ok"),
        ("/health/live", "live"),
        ("/health/ready", "ready"),
    ] {
        let response = h.client.get(h.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.json::<Value>().await.unwrap()["status"], status);
    }
    h.stop().await;
}

#[tokio::test]
async fn routes_without_v1_prefix_work_too() {
    let h = Harness::start(1, &chain(1)).await;
    let response = h.post_json("/chat/completions", &hello("chat")).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn embeddings_never_fail_over_to_another_family() {
    // d0 and d1 serve different upstream models and declare no family: their vectors differ, so
    // a failover would silently change the embedding space.
    let h = Harness::start(2, &chain(2)).await;
    h.fault(0, json!({"status": 500}));
    let response = h
        .post_json("/v1/embeddings", &json!({"model": "embed", "input": "a"}))
        .await;
    assert_eq!(response.status(), 502);
    assert_eq!(h.mock(1).hits("/v1/embeddings"), 0);
}
