//! Named OpenAI-compatible providers (`provider = "groq"`, `"ollama"`, …) over real HTTP: their
//! base URL overridden to a mock, bearer auth, their provider-prefixed names, and a service's
//! documented gaps filtering it out before the attempt.

use crate::harness::{Harness, hello};
use serde_json::{Value, json};

fn named() -> &'static str {
    r#"
[server]
listen = "127.0.0.1:0"

[resilience.probes]
enabled = false

[[deployments]]
name = "fast"
provider = "groq"
model = "llama-3.1-8b-instant"
base_url = "{mock0}"
api_keys = ["env:TEST_KEY"]

[[deployments]]
name = "laptop"
provider = "ollama"
model = "llama3.2"
base_url = "{mock1}"

[[models]]
name = "chat"
deployments = ["fast", "laptop"]
"#
}

#[tokio::test]
async fn a_named_provider_is_an_openai_compatible_upstream_with_bearer_auth() {
    let h = Harness::start(2, named()).await;
    let r = h.chat(&hello("chat")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-nines-deployment"], "fast");
    let sent = h.mock(0).requests();
    let sent = sent
        .iter()
        .find(|r| r.route == "/v1/chat/completions")
        .unwrap();
    assert!(
        sent.headers
            .iter()
            .any(|(k, v)| k == "authorization" && v == "Bearer sk-upstream-secret-0001"),
        "{:?}",
        sent.headers
    );
    let body: Value = serde_json::from_str(&sent.body).unwrap();
    assert_eq!(body["model"], "llama-3.1-8b-instant");

    // The preset's name is the provider in provider-prefixed model names.
    let r = h.chat(&hello("groq/llama-3.1-8b-instant")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-nines-deployment"], "fast");
    let r = h.chat(&hello("ollama/llama3.2")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-nines-deployment"], "laptop");
    // The local server got no key at all.
    let sent = h.mock(1).requests();
    assert!(
        sent.iter()
            .all(|r| r.headers.iter().all(|(k, _)| k != "authorization")),
        "a local server without a key gets no Authorization header"
    );
}

#[tokio::test]
async fn a_documented_gap_skips_the_named_provider_before_the_attempt() {
    let h = Harness::start(2, named()).await;
    // Groq documents that `n` must be 1: the request goes to the server that can answer it.
    let mut body = hello("chat");
    body["n"] = json!(2);
    let r = h.chat(&body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-nines-deployment"], "laptop");
    assert_eq!(h.chat_hits(0), 0, "groq was not attempted");
    assert_eq!(h.chat_hits(1), 1);
    // With only groq left, the refusal names the gap.
    let r = h
        .chat(&{
            let mut b = hello("groq/llama-3.1-8b-instant");
            b["logprobs"] = json!(true);
            b
        })
        .await;
    assert_eq!(r.status(), 400);
    let text = r.text().await.unwrap();
    assert!(text.contains("logprobs"), "{text}");
    assert_eq!(h.chat_hits(0), 0);
}
