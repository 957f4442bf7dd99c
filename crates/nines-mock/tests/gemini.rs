//! The Gemini dialect: generateContent, streamGenerateContent, embeddings, errors and faults.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] fns fail loudly"
)]

mod common;

use std::time::Duration;

use common::{
    post, post_with, read_until_reset, read_until_stall, script, send_with, sse_events, start,
    start_with,
};
use nines_mock::{FaultScript, MockServer};
use serde_json::{Value, json};

const GENERATE: &str = "/v1beta/models/gemini-test:generateContent";
const STREAM: &str = "/v1beta/models/gemini-test:streamGenerateContent?alt=sse";
const KEY: [(&str, &str); 1] = [("x-goog-api-key", "AIza-test")];

fn body(text: &str, extra: Value) -> Value {
    let mut body = json!({"contents": [{"role": "user", "parts": [{"text": text}]}]});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    body
}

async fn call(server: &MockServer, path: &str, body: &Value) -> reqwest::Response {
    post_with(server, path, &KEY, body).await
}

async fn generate(server: &MockServer, body: &Value) -> Value {
    let resp = call(server, GENERATE, body).await;
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

/// The chunks of an `alt=sse` stream: `data:` events only, no `[DONE]`.
async fn stream(server: &MockServer, body: &Value) -> Vec<Value> {
    let resp = call(server, STREAM, body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    sse_events(&resp.text().await.unwrap())
        .iter()
        .map(|e| {
            assert_eq!(e.event, None);
            e.json()
        })
        .collect()
}

async fn error_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], status, "{v}");
    (status, v["error"].clone())
}

fn text_of(chunk: &Value) -> &str {
    chunk["candidates"][0]["content"]["parts"][0]["text"]
        .as_str()
        .unwrap()
}

#[tokio::test]
async fn generate_content_is_deterministic() {
    let server = start("m1").await;
    let req = body(
        "hi there",
        json!({"systemInstruction": {"parts": [{"text": "be nice"}]}}),
    );
    let resp = call(&server, GENERATE, &req).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-mock-name"], "m1");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v["candidates"],
        json!([{
            "content": {"role": "model", "parts": [{"text": "Hello from m1! You said: hi there"}]},
            "finishReason": "STOP",
            "index": 0,
        }])
    );
    // system ceil(7/4)+3 = 5, content ceil(8/4)+3 = 5; seven words.
    assert_eq!(
        v["usageMetadata"],
        json!({"promptTokenCount": 10, "candidatesTokenCount": 7, "totalTokenCount": 17})
    );
    assert_eq!(v["modelVersion"], "gemini-test");

    // A multi-turn conversation echoes the last user turn; inline data carries no text.
    let req = json!({"contents": [
        {"role": "user", "parts": [{"text": "first"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}]},
        {"role": "user", "parts": [{"inlineData": {"mimeType": "image/png", "data": "AAAA"}}, {"text": "look"}]},
    ]});
    let v = generate(&server, &req).await;
    assert_eq!(text_of(&v), "Hello from m1! You said: look");
}

#[tokio::test]
async fn generation_config_limits_and_shapes_the_reply() {
    let server = start("m1").await;
    let v = generate(
        &server,
        &body("hi", json!({"generationConfig": {"maxOutputTokens": 3}})),
    )
    .await;
    assert_eq!(text_of(&v), "Hello from m1!");
    assert_eq!(v["candidates"][0]["finishReason"], "MAX_TOKENS");
    assert_eq!(v["usageMetadata"]["candidatesTokenCount"], 3);

    let v = generate(
        &server,
        &body(
            "hi",
            json!({"generationConfig": {"stopSequences": ["You"]}}),
        ),
    )
    .await;
    assert_eq!(text_of(&v), "Hello from m1!");
    assert_eq!(v["candidates"][0]["finishReason"], "STOP");

    let v = generate(
        &server,
        &body("hi", json!({"generationConfig": {"candidateCount": 2}})),
    )
    .await;
    let candidates = v["candidates"].as_array().unwrap();
    assert_eq!(candidates.len(), 2);
    assert_eq!(candidates[1]["index"], 1);
    assert_eq!(v["usageMetadata"]["candidatesTokenCount"], 12);

    let json_mode = json!({"generationConfig": {"responseMimeType": "application/json", "temperature": 0.2, "topP": 0.9}});
    let v = generate(&server, &body("hi", json_mode)).await;
    let content: Value = serde_json::from_str(text_of(&v)).unwrap();
    assert_eq!(content, json!({"mock": true, "from": "m1"}));

    // snake_case field names are accepted too, as the real API does.
    let v = generate(
        &server,
        &body("hi", json!({"generation_config": {"max_output_tokens": 1}})),
    )
    .await;
    assert_eq!(text_of(&v), "Hello");
}

#[tokio::test]
async fn function_declarations_get_a_function_call() {
    let server = start("m1").await;
    let tools = json!([{"functionDeclarations": [
        {"name": "get_weather", "description": "w", "parameters": {"type": "object"}},
        {"name": "get_time"},
    ]}]);
    let v = generate(&server, &body("hi", json!({"tools": tools}))).await;
    assert_eq!(
        v["candidates"][0]["content"]["parts"],
        json!([{"functionCall": {"name": "get_weather", "args": {"mock": true}}}])
    );
    assert_eq!(v["candidates"][0]["finishReason"], "STOP");
    assert_eq!(v["usageMetadata"]["candidatesTokenCount"], 4);

    let any = json!({"tools": tools, "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_time"]}}});
    let v = generate(&server, &body("hi", any)).await;
    assert_eq!(
        v["candidates"][0]["content"]["parts"][0]["functionCall"]["name"],
        "get_time"
    );

    let none = json!({"tools": tools, "toolConfig": {"functionCallingConfig": {"mode": "NONE"}}});
    let v = generate(&server, &body("hi", none)).await;
    assert_eq!(text_of(&v), "Hello from m1! You said: hi");
}

#[tokio::test]
async fn sse_streams_one_chunk_per_word_and_finishes_on_the_last() {
    let server = start("m1").await;
    let chunks = stream(&server, &body("hi", json!({}))).await;
    assert_eq!(chunks.len(), 6, "six words, no terminator event");
    let text: String = chunks.iter().map(text_of).collect();
    assert_eq!(text, "Hello from m1! You said: hi");
    for chunk in &chunks[..5] {
        assert_eq!(chunk["candidates"][0]["content"]["role"], "model");
        assert!(chunk["candidates"][0].get("finishReason").is_none());
        assert!(chunk.get("usageMetadata").is_none());
        assert_eq!(chunk["modelVersion"], "gemini-test");
    }
    let last = &chunks[5];
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    assert_eq!(
        last["usageMetadata"],
        json!({"promptTokenCount": 4, "candidatesTokenCount": 6, "totalTokenCount": 10})
    );
    assert_eq!(text_of(last), "hi");
}

#[tokio::test]
async fn streamed_function_call_arrives_whole() {
    let server = start("m1").await;
    let req = body(
        "hi",
        json!({"tools": [{"functionDeclarations": [{"name": "lookup"}]}]}),
    );
    let chunks = stream(&server, &req).await;
    assert_eq!(chunks.len(), 1);
    assert_eq!(
        chunks[0]["candidates"][0]["content"]["parts"],
        json!([{"functionCall": {"name": "lookup", "args": {"mock": true}}}])
    );
    assert_eq!(chunks[0]["candidates"][0]["finishReason"], "STOP");
    assert_eq!(chunks[0]["usageMetadata"]["candidatesTokenCount"], 4);
}

#[tokio::test]
async fn stream_without_alt_sse_is_one_json_array() {
    let server = start("m1").await;
    let resp = call(
        &server,
        "/v1beta/models/gemini-test:streamGenerateContent",
        &body("hi", json!({})),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let chunks: Vec<Value> = resp.json().await.unwrap();
    assert_eq!(chunks.len(), 6);
    assert_eq!(chunks[5]["candidates"][0]["finishReason"], "STOP");
}

#[tokio::test]
async fn api_key_is_required_in_header_or_query() {
    let server = start("m1").await;
    let req = body("hi", json!({}));
    let query = post(&server, &format!("{GENERATE}?key=AIza-q"), &req).await;
    assert_eq!(query.status(), 200);
    let bearer = post_with(
        &server,
        GENERATE,
        &[("authorization", "Bearer ya29.token")],
        &req,
    )
    .await;
    assert_eq!(bearer.status(), 200);

    let (status, error) = error_of(post(&server, GENERATE, &req).await).await;
    assert_eq!(
        (status, error["status"].as_str()),
        (403, Some("PERMISSION_DENIED"))
    );
    let resp = post_with(&server, GENERATE, &[("authorization", "Basic abc")], &req).await;
    let (status, error) = error_of(resp).await;
    assert_eq!(
        (status, error["status"].as_str()),
        (401, Some("UNAUTHENTICATED"))
    );
    let (status, error) = error_of(post(&server, &format!("{GENERATE}?key="), &req).await).await;
    assert_eq!(
        (status, error["status"].as_str()),
        (400, Some("INVALID_ARGUMENT"))
    );
}

#[tokio::test]
async fn bad_requests_get_invalid_argument() {
    let server = start("m1").await;
    for bad in [
        json!({}),
        json!({"contents": []}),
        json!({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}),
        json!({"contents": "nope"}),
        body("hi", json!({"generationConfig": {"candidateCount": 9}})),
    ] {
        let (status, error) = error_of(call(&server, GENERATE, &bad).await).await;
        assert_eq!(status, 400, "{bad}");
        assert_eq!(error["status"], "INVALID_ARGUMENT", "{bad}");
    }
    let resp = call(
        &server,
        "/v1beta/models/gemini-test:countTokens",
        &body("hi", json!({})),
    )
    .await;
    let (status, error) = error_of(resp).await;
    assert_eq!((status, error["status"].as_str()), (404, Some("NOT_FOUND")));
}

#[tokio::test]
async fn status_faults_get_google_error_statuses() {
    let server = start("m1").await;
    let cases = [
        (429, "RESOURCE_EXHAUSTED"),
        (503, "UNAVAILABLE"),
        (529, "UNAVAILABLE"),
        (500, "INTERNAL"),
        (502, "INTERNAL"),
        (504, "DEADLINE_EXCEEDED"),
        (400, "INVALID_ARGUMENT"),
        (401, "UNAUTHENTICATED"),
        (403, "PERMISSION_DENIED"),
        (404, "NOT_FOUND"),
    ];
    for (code, name) in cases {
        server.set_fault(Some(FaultScript::status(code)));
        let resp = call(&server, GENERATE, &body("hi", json!({}))).await;
        assert_eq!(resp.headers()["content-type"], "application/json");
        let (status, error) = error_of(resp).await;
        assert_eq!(status, code);
        assert_eq!(error["status"], name, "status {code}");
        assert!(error["message"].is_string());
    }
    server.set_fault(Some(FaultScript::status(429)));
    let (_, error) = error_of(call(&server, STREAM, &body("hi", json!({}))).await).await;
    assert_eq!(
        error["message"],
        "Resource has been exhausted (e.g. check quota)."
    );
    let resp = call(
        &server,
        "/v1beta/models/e:embedContent",
        &json!({"content": {"parts": [{"text": "x"}]}}),
    )
    .await;
    assert_eq!(resp.status(), 429, "embeddings are faulted too");
}

#[tokio::test]
async fn content_filter_finishes_with_safety_and_no_content() {
    let server = start_with("m1", Some(script(json!({"content_filter": true})))).await;
    let v = generate(&server, &body("hi", json!({}))).await;
    let candidate = &v["candidates"][0];
    assert_eq!(candidate["finishReason"], "SAFETY");
    assert!(candidate.get("content").is_none());
    assert_eq!(candidate["safetyRatings"][0]["blocked"], true);
    assert_eq!(
        v["usageMetadata"],
        json!({"promptTokenCount": 4, "totalTokenCount": 4})
    );

    let chunks = stream(&server, &body("hi", json!({}))).await;
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0]["candidates"][0]["finishReason"], "SAFETY");
    assert!(chunks[0]["candidates"][0].get("content").is_none());
}

#[tokio::test]
async fn context_too_long_is_invalid_argument() {
    let server = start_with("m1", Some(script(json!({"context_too_long": true})))).await;
    let (status, error) = error_of(call(&server, GENERATE, &body("hi", json!({}))).await).await;
    assert_eq!(status, 400);
    assert_eq!(
        error,
        json!({
            "code": 400,
            "status": "INVALID_ARGUMENT",
            "message": "The input token count (1048580) exceeds the maximum number of tokens allowed (1048576).",
        })
    );
}

#[tokio::test]
async fn stream_faults_apply_by_chunk_index() {
    let server = start("m1").await;
    let req = body("hi", json!({}));

    server.set_fault(Some(script(json!({"error_event_at": 2}))));
    let text = call(&server, STREAM, &req).await.text().await.unwrap();
    let events = sse_events(&text);
    assert_eq!(events.len(), 3);
    assert_eq!(
        events[2].json(),
        json!({"error": {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}})
    );

    server.set_fault(Some(script(json!({"no_done": true}))));
    let chunks = stream(&server, &req).await;
    assert_eq!(chunks.len(), 6, "all the text arrives");
    assert!(chunks[5]["candidates"][0].get("finishReason").is_none());
    assert!(chunks[5].get("usageMetadata").is_none());

    server.set_fault(Some(script(json!({"malformed_chunk_at": 1}))));
    let text = call(&server, STREAM, &req).await.text().await.unwrap();
    let events = sse_events(&text);
    assert_eq!(events.len(), 6);
    assert_eq!(events[1].data, "{not json");

    server.set_fault(Some(script(json!({"reset_after_chunks": 2}))));
    let text = read_until_reset(call(&server, STREAM, &req).await).await;
    assert_eq!(sse_events(&text).len(), 2);
}

#[tokio::test(start_paused = true)]
async fn stall_keeps_the_stream_open() {
    let server = start_with("m1", Some(script(json!({"stall_after_chunks": 1})))).await;
    let resp = call(&server, STREAM, &body("hi", json!({}))).await;
    let text = read_until_stall(resp, 1, Duration::from_secs(600)).await;
    assert_eq!(sse_events(&text).len(), 1);
}

fn values(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[tokio::test]
async fn embeddings_match_the_openai_vectors() {
    let server = start("m1").await;
    let one = call(
        &server,
        "/v1beta/models/text-embedding-004:embedContent",
        &json!({"model": "models/text-embedding-004", "content": {"parts": [{"text": "hello"}]}}),
    )
    .await;
    assert_eq!(one.status(), 200);
    let one: Value = one.json().await.unwrap();
    let vector = values(&one["embedding"]["values"]);
    assert_eq!(vector.len(), 8);

    let openai: Value = post(
        &server,
        "/v1/embeddings",
        &json!({"model": "e", "input": "hello"}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(vector, values(&openai["data"][0]["embedding"]));

    let batch: Value = call(
        &server,
        "/v1beta/models/text-embedding-004:batchEmbedContents",
        &json!({"requests": [
            {"model": "models/text-embedding-004", "content": {"parts": [{"text": "hello"}]}},
            {"model": "models/text-embedding-004", "content": {"parts": [{"text": "world"}]}, "outputDimensionality": 3},
        ]}),
    )
    .await
    .json()
    .await
    .unwrap();
    let embeddings = batch["embeddings"].as_array().unwrap();
    assert_eq!(embeddings.len(), 2);
    assert_eq!(values(&embeddings[0]["values"]), vector);
    assert_eq!(values(&embeddings[1]["values"]).len(), 3);

    for (path, bad) in [
        (":embedContent", json!({})),
        (
            ":embedContent",
            json!({"content": {"parts": [{"text": "x"}]}, "outputDimensionality": 0}),
        ),
        (":batchEmbedContents", json!({"requests": []})),
    ] {
        let resp = call(&server, &format!("/v1beta/models/e{path}"), &bad).await;
        let (status, error) = error_of(resp).await;
        assert_eq!(
            (status, error["status"].as_str()),
            (400, Some("INVALID_ARGUMENT")),
            "{bad}"
        );
    }
    let resp = post(
        &server,
        "/v1beta/models/e:embedContent",
        &json!({"content": {"parts": []}}),
    )
    .await;
    assert_eq!(resp.status(), 403, "embeddings need a key too");
}

#[tokio::test]
async fn hits_are_counted_per_action_and_requests_recorded() {
    let server = start("m1").await;
    let req = body("hi", json!({}));
    call(&server, GENERATE, &req).await;
    call(&server, GENERATE, &req).await;
    call(&server, STREAM, &req).await.text().await.unwrap();
    let embed = json!({"content": {"parts": [{"text": "x"}]}});
    call(&server, "/v1beta/models/e:embedContent", &embed).await;
    call(
        &server,
        "/v1beta/models/e:batchEmbedContents",
        &json!({"requests": [embed]}),
    )
    .await;
    call(&server, "/v1beta/models/e:countTokens", &req).await;

    assert_eq!(server.hits("/v1beta/models/{model}:generateContent"), 2);
    assert_eq!(
        server.hits("/v1beta/models/{model}:streamGenerateContent"),
        1
    );
    assert_eq!(server.hits("/v1beta/models/{model}:embedContent"), 1);
    assert_eq!(server.hits("/v1beta/models/{model}:batchEmbedContents"), 1);
    assert_eq!(server.total_hits(), 5, "unknown actions are not counted");

    let recorded = server.requests();
    assert_eq!(recorded.len(), 5);
    assert_eq!(recorded[0].route, "/v1beta/models/{model}:generateContent");
    assert!(
        recorded[0]
            .headers
            .contains(&("x-goog-api-key".to_owned(), "AIza-test".to_owned()))
    );
    assert_eq!(
        serde_json::from_str::<Value>(&recorded[0].body).unwrap(),
        req
    );
}

#[tokio::test]
async fn the_model_lookup_is_a_cheap_get_with_key_and_faults() {
    let server = start("g1").await;
    let resp = send_with(
        &server,
        reqwest::Method::GET,
        "/v1beta/models/gemini-test",
        &KEY,
    )
    .await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["name"], "models/gemini-test");
    assert!(v["inputTokenLimit"].as_u64().unwrap() > 0);

    let resp = send_with(
        &server,
        reqwest::Method::GET,
        "/v1beta/models/gemini-test",
        &[],
    )
    .await;
    assert_eq!(error_of(resp).await.0, 403, "no key");

    server.set_fault(Some(script(json!({"status": 503, "times": 1}))));
    let resp = send_with(
        &server,
        reqwest::Method::GET,
        "/v1beta/models/gemini-test",
        &KEY,
    )
    .await;
    let (status, error) = error_of(resp).await;
    assert_eq!(
        (status, error["status"].as_str()),
        (503, Some("UNAVAILABLE"))
    );
    assert_eq!(server.hits("/v1beta/models/{model}"), 3);
    assert_eq!(server.total_hits(), 3);
}
