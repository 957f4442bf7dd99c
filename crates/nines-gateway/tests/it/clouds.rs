//! The cloud-hosted kinds beyond the conformance suite: what their auth does when it is wrong,
//! Vertex's token cache, Azure's two ways to authenticate, and extra `headers` on any deployment.
//! The mock checks auth as the services do (SigV4 against the test credentials, Azure's
//! `api-key` and `api-version`, tokens from its own token endpoint).

use crate::harness::{Harness, error_of};
use serde_json::{Value, json};
use std::time::Duration;

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "Hello there"}]})
}

/// `primary` (the kind under test, on mock0), then an OpenAI-compatible `fallback` on mock1.
fn with_fallback(primary: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[resilience]
max_attempts_per_deployment = 1

[resilience.probes]
enabled = false

[[deployments]]
name = "primary"
{primary}

[[deployments]]
name = "fallback"
provider = "openai-compatible"
model = "fallback-up"
base_url = "{{mock1}}"
api_keys = ["env:TEST_KEY_2"]

[[models]]
name = "chat"
deployments = ["primary", "fallback"]

[[models]]
name = "solo"
deployments = ["primary"]
"#
    )
}

const BEDROCK_MODEL: &str = "anthropic.claude-up-v1:0";

/// Header `name` of the first request mock0 received.
fn first_sent(h: &Harness, name: &str) -> Option<String> {
    h.mock(0).requests()[0]
        .headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

#[tokio::test]
async fn a_bedrock_signature_with_the_wrong_secret_is_refused_and_fails_over() {
    let primary = r#"provider = "bedrock"
model = "anthropic.claude-up-v1:0"
base_url = "{mock0_root}"
region = "us-east-1"
aws_access_key_id = "env:TEST_AWS_ACCESS_KEY_ID"
aws_secret_access_key = "not-the-test-secret-0001""#;
    let h = Harness::start(2, &with_fallback(primary)).await;
    let r = h.chat(&chat("chat")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-nines-deployment"], "fallback");
    assert_eq!(h.mock(0).hits("/model/{model}/converse"), 1);
    let authorization = first_sent(&h, "authorization").unwrap();
    assert!(
        authorization.starts_with("AWS4-HMAC-SHA256 Credential="),
        "{authorization}"
    );
    assert!(
        !authorization.contains("not-the-test-secret"),
        "the secret never travels"
    );

    // With nothing left the client learns the class, not the secret.
    let r = h.chat(&chat("solo")).await;
    assert_eq!(r.status(), 502);
    let error = error_of(r).await;
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("class=upstream_auth"), "{message}");
    assert!(!message.contains("not-the-test-secret"), "{message}");
}

#[tokio::test]
async fn a_bedrock_session_token_is_signed_and_sent() {
    let primary = r#"provider = "bedrock"
model = "anthropic.claude-up-v1:0"
base_url = "{mock0_root}"
region = "eu-west-1"
aws_access_key_id = "env:TEST_AWS_ACCESS_KEY_ID"
aws_secret_access_key = "env:TEST_AWS_SECRET_ACCESS_KEY"
aws_session_token = "session-token-for-tests""#;
    let h = Harness::start(2, &with_fallback(primary)).await;
    let r = h.chat(&chat("chat")).await;
    assert_eq!(r.headers()["x-nines-deployment"], "primary");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["model"], BEDROCK_MODEL);
    let header = |name: &str| first_sent(&h, name).unwrap_or_default();
    assert_eq!(header("x-amz-security-token"), "session-token-for-tests");
    assert!(header("authorization").contains("/eu-west-1/bedrock/aws4_request"));
    assert!(header("authorization").contains("x-amz-security-token"));
}

#[tokio::test]
async fn a_bedrock_stream_error_before_content_is_classed_and_fails_over() {
    let primary = r#"provider = "bedrock"
model = "anthropic.claude-up-v1:0"
base_url = "{mock0_root}"
region = "us-east-1"
aws_access_key_id = "env:TEST_AWS_ACCESS_KEY_ID"
aws_secret_access_key = "env:TEST_AWS_SECRET_ACCESS_KEY""#;
    let h = Harness::start(2, &with_fallback(primary)).await;
    h.fault(0, json!({"error_event_at": 0}));
    let mut body = chat("chat");
    body["stream"] = json!(true);
    let r = h.chat(&body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-nines-deployment"], "fallback");
    assert_eq!(h.mock(0).hits("/model/{model}/converse-stream"), 1);
    // With nothing left, the frame's class shows: an overload, like a 503.
    let mut body = chat("solo");
    body["stream"] = json!(true);
    let r = h.chat(&body).await;
    assert_eq!(r.status(), 502);
    let error = error_of(r).await;
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("class=overloaded"), "{message}");
}

/// What Converse cannot be told is never left out by the encoder: the request goes to a
/// deployment that can take it, and with none left the client learns what was missing.
#[tokio::test]
async fn bedrock_is_skipped_for_image_urls_and_tool_choice_none_after_tool_calls() {
    let primary = r#"provider = "bedrock"
model = "anthropic.claude-up-v1:0"
base_url = "{mock0_root}"
region = "us-east-1"
aws_access_key_id = "env:TEST_AWS_ACCESS_KEY_ID"
aws_secret_access_key = "env:TEST_AWS_SECRET_ACCESS_KEY""#;
    let h = Harness::start(2, &with_fallback(primary)).await;
    let image_by_url = |model: &str| {
        json!({"model": model, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "https://img.test/cat.png"}}
        ]}]})
    };
    let r = h.chat(&image_by_url("chat")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-nines-deployment"], "fallback");
    assert_eq!(h.mock(0).total_hits(), 0, "Converse was never asked");
    let r = h.chat(&image_by_url("solo")).await;
    assert_eq!(r.status(), 400);
    let error = error_of(r).await;
    assert_eq!(error["code"], "unsupported_capability", "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("image_urls"), "{message}");

    let tool = json!({"type": "function", "function": {"name": "lookup",
        "parameters": {"type": "object"}}});
    let after_a_call = |model: &str| {
        json!({"model": model, "tools": [tool], "tool_choice": "none", "messages": [
            {"role": "user", "content": "Look it up"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1",
                "type": "function", "function": {"name": "lookup", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "42"}
        ]})
    };
    let r = h.chat(&after_a_call("chat")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-nines-deployment"], "fallback");
    let r = h.chat(&after_a_call("solo")).await;
    assert_eq!(r.status(), 400);
    let message = error_of(r).await["message"].as_str().unwrap().to_owned();
    assert!(message.contains("tool_choice_none"), "{message}");
    assert_eq!(h.mock(0).total_hits(), 0);

    // "none" with no calls in the history is served by Converse, the tools left out.
    let mut fresh = after_a_call("solo");
    fresh["messages"] = json!([{"role": "user", "content": "Just answer"}]);
    let r = h.chat(&fresh).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-nines-deployment"], "primary");
    let sent: Value = serde_json::from_str(&h.mock(0).requests()[0].body).unwrap();
    assert!(sent.get("toolConfig").is_none(), "{sent}");
}

fn vertex(account: &str) -> String {
    format!(
        r#"provider = "vertex"
model = "gemini-up"
base_url = "{{mock0_root}}"
project = "nines-test-project"
region = "us-central1"
credentials_file = "{account}""#
    )
}

#[tokio::test]
async fn vertex_tokens_are_cached_fetched_once_by_concurrent_requests_and_refreshed() {
    let h = Harness::start(2, &with_fallback(&vertex("{mock0_service_account}"))).await;
    let body = chat("chat");
    let requests = (0..8).map(|_| h.chat(&body));
    for r in futures_util::future::join_all(requests).await {
        assert_eq!(r.headers()["x-nines-deployment"], "primary");
    }
    assert_eq!(
        h.mock(0).tokens_issued(),
        1,
        "one exchange for eight requests"
    );
    let generate = "/v1/projects/{project}/locations/{location}/publishers/google/models/{model}:generateContent";
    assert_eq!(h.mock(0).hits(generate), 8);
}

#[tokio::test]
async fn a_short_lived_vertex_token_is_refreshed_before_it_expires() {
    let h = Harness::start(2, &with_fallback(&vertex("{mock0_service_account}"))).await;
    h.mock(0).set_token_lifetime(Duration::from_secs(2));
    let r = h.chat(&chat("chat")).await;
    assert_eq!(r.headers()["x-nines-deployment"], "primary");
    assert_eq!(h.mock(0).tokens_issued(), 1);
    // Refreshed at half the lifetime (1 s): a real wait, since the mock's token endpoint and
    // the gateway's cache run on the wall clock of real sockets.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r = h.chat(&chat("chat")).await;
    assert_eq!(r.headers()["x-nines-deployment"], "primary");
    assert_eq!(
        h.mock(0).tokens_issued(),
        2,
        "a fresh token before the old one expired"
    );
}

#[tokio::test]
async fn a_service_account_the_token_endpoint_refuses_is_an_upstream_auth_failure() {
    let h = Harness::start(
        2,
        &with_fallback(&vertex("{mock0_foreign_service_account}")),
    )
    .await;
    let r = h.chat(&chat("chat")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-nines-deployment"], "fallback");
    assert_eq!(h.mock(0).tokens_issued(), 0);
    assert_eq!(h.mock(0).total_hits(), 0, "no call without a token");
    let r = h.chat(&chat("solo")).await;
    assert_eq!(r.status(), 502);
    let error = error_of(r).await;
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("class=upstream_auth"), "{message}");
    assert!(!message.contains("PRIVATE KEY"), "{message}");
}

fn azure(auth: &str) -> String {
    format!(
        r#"provider = "azure"
model = "gpt-up"
base_url = "{{mock0_root}}"
{auth}"#
    )
}

#[tokio::test]
async fn azure_sends_its_key_as_api_key_or_an_entra_token_as_bearer_with_the_api_version() {
    let h = Harness::start(2, &with_fallback(&azure(r#"api_keys = ["env:TEST_KEY"]"#))).await;
    let r = h.chat(&chat("chat")).await;
    // Served by the primary: the mock answers 404 without an `api-version`, 401 without auth.
    assert_eq!(r.headers()["x-nines-deployment"], "primary");
    let header = |name: &str| first_sent(&h, name);
    assert_eq!(
        header("api-key").as_deref(),
        Some("sk-upstream-secret-0001")
    );
    assert_eq!(header("authorization"), None);

    let h = Harness::start(
        2,
        &with_fallback(&azure(
            "azure_ad_token = \"env:TEST_KEY_2\"\napi_version = \"2025-01-01-preview\"",
        )),
    )
    .await;
    let r = h.chat(&chat("chat")).await;
    assert_eq!(r.headers()["x-nines-deployment"], "primary");
    let header = |name: &str| first_sent(&h, name);
    assert_eq!(
        header("authorization").as_deref(),
        Some("Bearer sk-upstream-secret-0002")
    );
    assert_eq!(header("api-key"), None);
}

#[tokio::test]
async fn the_mock_refuses_azure_requests_as_azure_does() {
    let h = Harness::start(1, &with_fallback_one()).await;
    let url = |query: &str| {
        format!(
            "http://{}/openai/deployments/gpt-up/chat/completions{query}",
            h.mock(0).addr()
        )
    };
    let client = &h.client;
    let without_version = client
        .post(url(""))
        .header("api-key", "k")
        .json(&chat("gpt-up"))
        .send()
        .await
        .unwrap();
    assert_eq!(without_version.status(), 404);
    let without_key = client
        .post(url("?api-version=2024-10-21"))
        .json(&chat("gpt-up"))
        .send()
        .await
        .unwrap();
    assert_eq!(without_key.status(), 401);
}

/// One mock, an OpenAI-compatible deployment on it (for tests that call the mock directly).
fn with_fallback_one() -> String {
    r#"
[server]
listen = "127.0.0.1:0"

[[deployments]]
name = "only"
provider = "openai-compatible"
model = "up"
base_url = "{mock0}"

[[models]]
name = "chat"
deployments = ["only"]
"#
    .to_owned()
}

#[tokio::test]
async fn extra_headers_reach_the_upstream_and_never_the_client_or_the_logs() {
    let primary = r#"provider = "openai-compatible"
model = "up"
base_url = "{mock0}"
headers = { "X-Title" = "nines-test", "X-Tenant-Token" = "env:TEST_KEY" }"#;
    let h = Harness::start(2, &with_fallback(primary)).await;
    let r = h.chat(&chat("chat")).await;
    assert_eq!(r.status(), 200);
    let header = |name: &str| first_sent(&h, name);
    assert_eq!(header("x-title").as_deref(), Some("nines-test"));
    assert_eq!(
        header("x-tenant-token").as_deref(),
        Some("sk-upstream-secret-0001")
    );
    let config = format!("{:?}", h.state.runtime().config);
    assert!(!config.contains("sk-upstream-secret-0001"), "{config}");
    assert!(
        !config.contains("nines-test"),
        "header values are not shown: {config}"
    );
}

#[tokio::test]
async fn azure_serves_embeddings_at_its_deployment_url() {
    let h = Harness::start(2, &with_fallback(&azure(r#"api_keys = ["env:TEST_KEY"]"#))).await;
    let r = h
        .post_json(
            "/v1/embeddings",
            &json!({"model": "solo", "input": "hello"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-nines-deployment"], "primary");
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["data"][0]["embedding"].as_array().unwrap().len(),
        8,
        "{body}"
    );
    assert_eq!(
        h.mock(0)
            .hits("/openai/deployments/{deployment}/embeddings"),
        1
    );
}

#[tokio::test]
async fn azure_serves_the_responses_api_natively() {
    let h = Harness::start(2, &with_fallback(&azure(r#"api_keys = ["env:TEST_KEY"]"#))).await;
    let r = h
        .post_json(
            "/v1/responses",
            &json!({"model": "solo", "input": "Hello there"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-nines-deployment"], "primary");
    // Azure's v1 Responses API (the mock answers 404 without an `api-version`, 401 without
    // auth), not its chat URL: the request went as it came, the deployment's name as `model`.
    assert_eq!(
        first_sent(&h, "api-key").as_deref(),
        Some("sk-upstream-secret-0001")
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["object"], "response", "{body}");
    assert_eq!(h.mock(0).hits("/openai/v1/responses"), 1);
    assert_eq!(
        h.mock(0)
            .hits("/openai/deployments/{deployment}/chat/completions"),
        0
    );
}

#[tokio::test]
async fn azure_serves_legacy_completions_at_its_deployment_url() {
    let h = Harness::start(2, &with_fallback(&azure(r#"api_keys = ["env:TEST_KEY"]"#))).await;
    let r = h
        .post_json(
            "/v1/completions",
            &json!({"model": "solo", "prompt": "Say this is a test", "max_tokens": 50}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-nines-deployment"], "primary");
    // Azure's deployment URL with its `api-version` and `api-key` (the mock refuses either
    // missing), not OpenAI's `/v1/completions`.
    assert_eq!(
        first_sent(&h, "api-key").as_deref(),
        Some("sk-upstream-secret-0001")
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["object"], "text_completion", "{body}");
    assert!(
        body["choices"][0]["text"]
            .as_str()
            .unwrap()
            .contains("Say this is a test"),
        "{body}"
    );
    let routes: Vec<String> = h.mock(0).requests().into_iter().map(|r| r.route).collect();
    assert_eq!(
        h.mock(0)
            .hits("/openai/deployments/{deployment}/completions"),
        1,
        "{routes:?}"
    );
    assert_eq!(h.mock(0).hits("/v1/completions"), 0);
}
