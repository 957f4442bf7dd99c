//! The chat completions route without faults: content, usage, tools, streaming, validation.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] fns fail loudly"
)]

mod common;

use common::{chat, chat_body, client, sse_chunks, start};
use serde_json::{Value, json};

#[tokio::test]
async fn plain_chat_is_deterministic() {
    let server = start("m1").await;
    let body = json!({
        "model": "gpt-x",
        "messages": [
            {"role": "system", "content": "be nice"},
            {"role": "user", "content": "hi there"},
        ],
    });
    let resp = chat(&server, &body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-mock-name"], "m1");
    let v: Value = resp.json().await.unwrap();
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-mock-"));
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["created"], 1_700_000_000);
    assert_eq!(v["model"], "gpt-x");
    assert_eq!(v["system_fingerprint"], "nines-mock");
    let choice = &v["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(
        choice["message"]["content"],
        "Hello from m1! You said: hi there"
    );
    assert_eq!(choice["finish_reason"], "stop");
    // ceil(7/4)+3 + ceil(8/4)+3 = 10; seven words.
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 10, "completion_tokens": 7, "total_tokens": 17})
    );

    // Ids count up, so two completions are distinguishable.
    let again: Value = chat(&server, &body).await.json().await.unwrap();
    assert_ne!(again["id"], v["id"]);
}

#[tokio::test]
async fn max_tokens_truncates_with_finish_reason_length() {
    let server = start("m1").await;
    for field in ["max_tokens", "max_completion_tokens"] {
        let body = chat_body("hi", json!({ field: 3 }));
        let v: Value = chat(&server, &body).await.json().await.unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "Hello from m1!");
        assert_eq!(v["choices"][0]["finish_reason"], "length");
        assert_eq!(v["usage"]["completion_tokens"], 3);
    }
    // A limit that is not reached changes nothing.
    let v: Value = chat(&server, &chat_body("hi", json!({"max_tokens": 100})))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn content_parts_echo_only_text_and_truncate_to_sixty_chars() {
    let server = start("m1").await;
    let body = json!({
        "model": "m",
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "look"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        ]}],
    });
    let v: Value = chat(&server, &body).await.json().await.unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello from m1! You said: look"
    );

    let long = "a".repeat(100);
    let v: Value = chat(&server, &chat_body(&long, json!({})))
        .await
        .json()
        .await
        .unwrap();
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(
        content,
        format!("Hello from m1! You said: {}", "a".repeat(60))
    );
}

#[tokio::test]
async fn n_gives_that_many_choices() {
    let server = start("m1").await;
    let v: Value = chat(&server, &chat_body("hi", json!({"n": 2})))
        .await
        .json()
        .await
        .unwrap();
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 2);
    assert_eq!(choices[0]["index"], 0);
    assert_eq!(choices[1]["index"], 1);
    assert_eq!(choices[0]["message"], choices[1]["message"]);
    assert_eq!(v["usage"]["completion_tokens"], 12);
}

fn tools() -> Value {
    json!([
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
        {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}},
    ])
}

#[tokio::test]
async fn tools_get_one_call_to_the_chosen_tool() {
    let server = start("m1").await;
    let v: Value = chat(&server, &chat_body("hi", json!({"tools": tools()})))
        .await
        .json()
        .await
        .unwrap();
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], Value::Null);
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["id"], "call_mock_0");
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(call["function"]["arguments"], r#"{"mock":true}"#);

    let named = json!({
        "tools": tools(),
        "tool_choice": {"type": "function", "function": {"name": "get_time"}},
    });
    let v: Value = chat(&server, &chat_body("hi", named))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
        "get_time"
    );

    let none = json!({"tools": tools(), "tool_choice": "none"});
    let v: Value = chat(&server, &chat_body("hi", none))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["choices"][0]["message"]["content"].is_string());
}

#[tokio::test]
async fn json_response_format_gets_json_content() {
    let server = start("m1").await;
    for format in [
        json!({"type": "json_object"}),
        json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}),
    ] {
        let body = chat_body("hi", json!({ "response_format": format }));
        let v: Value = chat(&server, &body).await.json().await.unwrap();
        let content = v["choices"][0]["message"]["content"].as_str().unwrap();
        let parsed: Value = serde_json::from_str(content).unwrap();
        assert_eq!(parsed, json!({"mock": true, "from": "m1"}));
    }
}

#[tokio::test]
async fn streaming_sends_role_words_finish_and_done() {
    let server = start("m1").await;
    let plain: Value = chat(&server, &chat_body("hi there", json!({})))
        .await
        .json()
        .await
        .unwrap();

    let resp = chat(&server, &chat_body("hi there", json!({"stream": true}))).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    assert_eq!(resp.headers()["x-mock-name"], "m1");
    let chunks = sse_chunks(&resp.text().await.unwrap());

    // role chunk + 7 words + finish chunk
    assert_eq!(chunks.len(), 9);
    let id = &chunks[0]["id"];
    for chunk in &chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(&chunk["id"], id);
        assert_eq!(chunk["model"], "gpt-test");
        assert_eq!(chunk["created"], 1_700_000_000);
        assert!(chunk.get("usage").is_none(), "usage was not requested");
    }
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "Hello ");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, plain["choices"][0]["message"]["content"]);
    let last = &chunks[8]["choices"][0];
    assert_eq!(last["delta"], json!({}));
    assert_eq!(last["finish_reason"], "stop");
    assert!(
        chunks[..8]
            .iter()
            .all(|c| c["choices"][0]["finish_reason"].is_null())
    );
}

#[tokio::test]
async fn streaming_usage_comes_in_a_final_empty_choices_chunk() {
    let server = start("m1").await;
    let body = chat_body(
        "hi there",
        json!({"stream": true, "stream_options": {"include_usage": true}}),
    );
    let chunks = sse_chunks(&chat(&server, &body).await.text().await.unwrap());
    let (usage_chunk, rest) = chunks.split_last().unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(
        usage_chunk["usage"],
        json!({"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12})
    );
    assert!(rest.iter().all(|c| c["usage"].is_null()));
}

#[tokio::test]
async fn streaming_tool_call_arrives_in_pieces() {
    let server = start("m1").await;
    let body = chat_body("hi", json!({"stream": true, "tools": tools()}));
    let chunks = sse_chunks(&chat(&server, &body).await.text().await.unwrap());
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"].get("tool_calls"))
        .collect();
    assert_eq!(calls.len(), 4, "header delta plus three argument pieces");
    assert_eq!(calls[0][0]["id"], "call_mock_0");
    assert_eq!(calls[0][0]["type"], "function");
    assert_eq!(calls[0][0]["function"]["name"], "get_weather");
    assert_eq!(calls[0][0]["function"]["arguments"], "");
    let arguments: String = calls
        .iter()
        .map(|c| c[0]["function"]["arguments"].as_str().unwrap())
        .collect();
    assert_eq!(arguments, r#"{"mock":true}"#);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "tool_calls");
}

#[tokio::test]
async fn streaming_n_streams_every_choice() {
    let server = start("m1").await;
    let body = chat_body("hi", json!({"stream": true, "n": 2}));
    let chunks = sse_chunks(&chat(&server, &body).await.text().await.unwrap());
    for index in 0..2 {
        let text: String = chunks
            .iter()
            .filter(|c| c["choices"][0]["index"] == index)
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, "Hello from m1! You said: hi");
    }
}

#[tokio::test]
async fn bad_requests_get_openai_shaped_400s() {
    let server = start("m1").await;
    let url = format!("{}/chat/completions", server.base_url());
    let malformed = client()
        .post(&url)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    assert_eq!(malformed.headers()["x-mock-name"], "m1");
    let v: Value = malformed.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(v["error"]["message"].is_string());
    assert_eq!(v["error"]["param"], Value::Null);
    assert_eq!(v["error"]["code"], Value::Null);

    for body in [
        json!({"messages": [{"role": "user", "content": "hi"}]}),
        json!({"model": "m"}),
        json!({"model": "m", "messages": []}),
    ] {
        let resp = chat(&server, &body).await;
        assert_eq!(resp.status(), 400, "{body}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }

    let missing = client()
        .get(format!("http://{}/v2/nothing", server.addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.headers()["x-mock-name"], "m1");
}

/// `messages` ending with an assistant prefill of `prefill` after the user says "hi there".
fn prefilled(prefill: &str, extra: Value) -> Value {
    let mut body = chat_body("hi there", extra);
    body["messages"]
        .as_array_mut()
        .unwrap()
        .push(json!({"role": "assistant", "content": prefill}));
    body
}

#[tokio::test]
async fn assistant_prefill_is_continued_not_repeated() {
    let server = start("m1").await;
    // The full reply is "Hello from m1! You said: hi there".
    let v: Value = chat(&server, &prefilled("Hello from m", json!({})))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "1! You said: hi there"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        v["usage"]["completion_tokens"], 5,
        "the continuation's words"
    );

    let body = prefilled(
        "Hello from ",
        json!({"stream": true, "stream_options": {"include_usage": true}}),
    );
    let chunks = sse_chunks(&chat(&server, &body).await.text().await.unwrap());
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    let pieces: Vec<&str> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .filter(|p| !p.is_empty())
        .collect();
    assert_eq!(pieces, ["m1! ", "You ", "said: ", "hi ", "there"]);
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(usage["completion_tokens"], 5, "{usage}");

    // A prefill the reply does not start with is ignored: the whole reply comes.
    let v: Value = chat(&server, &prefilled("Bonjour", json!({})))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello from m1! You said: hi there"
    );
    // The whole reply as prefill leaves nothing to add.
    let v: Value = chat(
        &server,
        &prefilled("Hello from m1! You said: hi there", json!({})),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "");
    assert_eq!(v["usage"]["completion_tokens"], 0);
}
