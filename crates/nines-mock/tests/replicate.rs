//! The Replicate predictions dialect: creation (sync and async), polling, streaming, errors,
//! job outcomes and faults.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] fns fail loudly"
)]

mod common;

use std::time::Duration;

use common::{
    SseEvent, event_names, post_with, read_until_reset, read_until_stall, script, send_with,
    sse_events, start, start_with,
};
use nines_mock::{FaultScript, MockServer};
use reqwest::Method;
use serde_json::{Value, json};

const MODEL_ROUTE: &str = "/v1/models/meta/llama-test/predictions";
const AUTH: (&str, &str) = ("authorization", "Bearer r8_test");
const WAIT: (&str, &str) = ("prefer", "wait");

fn input(prompt: &str) -> Value {
    json!({"input": {"prompt": prompt}})
}

async fn create(server: &MockServer, headers: &[(&str, &str)], body: &Value) -> reqwest::Response {
    post_with(server, MODEL_ROUTE, headers, body).await
}

/// Create with `Prefer: wait`; the finished prediction.
async fn create_waiting(server: &MockServer, body: &Value) -> Value {
    let resp = create(server, &[AUTH, WAIT], body).await;
    assert_eq!(resp.status(), 201);
    resp.json().await.unwrap()
}

/// Create without waiting; the `starting` prediction.
async fn create_async(server: &MockServer, body: &Value) -> Value {
    let resp = create(server, &[AUTH], body).await;
    assert_eq!(resp.status(), 201);
    resp.json().await.unwrap()
}

fn path_of(url: &Value) -> String {
    let url = url.as_str().unwrap();
    let rest = url.strip_prefix("http://").unwrap();
    rest[rest.find('/').unwrap()..].to_owned()
}

async fn stream_of(server: &MockServer, prediction: &Value) -> reqwest::Response {
    let path = path_of(&prediction["urls"]["stream"]);
    send_with(
        server,
        Method::GET,
        &path,
        &[("accept", "text/event-stream")],
    )
    .await
}

async fn stream_events(server: &MockServer, prediction: &Value) -> Vec<SseEvent> {
    let resp = stream_of(server, prediction).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    sse_events(&resp.text().await.unwrap())
}

async fn error_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

#[tokio::test]
async fn prefer_wait_answers_the_finished_prediction() {
    let server = start("m1").await;
    let body =
        json!({"input": {"prompt": "hi there", "system_prompt": "be nice", "temperature": 0.5}});
    let v = create_waiting(&server, &body).await;
    assert!(v["id"].as_str().unwrap().starts_with("mock"));
    assert_eq!(v["model"], "meta/llama-test");
    assert_eq!(v["version"], "mock");
    assert_eq!(v["input"], body["input"]);
    assert_eq!(v["status"], "succeeded");
    assert_eq!(v["error"], Value::Null);
    let output: Vec<&str> = v["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(
        output,
        ["Hello ", "from ", "m1! ", "You ", "said: ", "hi ", "there"]
    );
    assert_eq!(output.concat(), "Hello from m1! You said: hi there");
    // prompt ceil(8/4)+3 = 5, system prompt ceil(7/4)+3 = 5
    assert_eq!(v["metrics"]["input_token_count"], 10);
    assert_eq!(v["metrics"]["output_token_count"], 7);
    assert!(v["metrics"]["predict_time"].is_f64());
    assert!(v["created_at"].is_string() && v["completed_at"].is_string());
    let id = v["id"].as_str().unwrap();
    let origin = format!("http://{}", server.addr());
    assert_eq!(v["urls"]["get"], format!("{origin}/v1/predictions/{id}"));
    assert_eq!(
        v["urls"]["cancel"],
        format!("{origin}/v1/predictions/{id}/cancel")
    );
    assert_eq!(v["urls"]["stream"], format!("{origin}/v1/stream/{id}"));

    // `wait=N` is a wait too.
    let resp = create(&server, &[AUTH, ("prefer", "wait=5")], &input("hi")).await;
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["status"], "succeeded");
}

#[tokio::test]
async fn async_predictions_start_then_poll_and_stream() {
    let server = start("m1").await;
    let created = create_async(&server, &input("hi")).await;
    assert_eq!(created["status"], "starting");
    assert_eq!(created["output"], Value::Null);
    assert!(created.get("completed_at").is_none());

    let id = created["id"].as_str().unwrap();
    let polled = send_with(
        &server,
        Method::GET,
        &path_of(&created["urls"]["get"]),
        &[AUTH],
    )
    .await;
    assert_eq!(polled.status(), 200);
    let polled: Value = polled.json().await.unwrap();
    assert_eq!(polled["id"], id);
    assert_eq!(polled["status"], "succeeded");
    assert_eq!(polled["output"].as_array().unwrap().len(), 6);

    let events = stream_events(&server, &created).await;
    assert_eq!(
        event_names(&events),
        [
            "output", "output", "output", "output", "output", "output", "done"
        ]
    );
    let ids: Vec<&str> = events[..6]
        .iter()
        .map(|e| e.id.as_deref().unwrap())
        .collect();
    assert_eq!(ids, ["0", "1", "2", "3", "4", "5"]);
    let text: String = events[..6].iter().map(|e| e.data.as_str()).collect();
    assert_eq!(text, "Hello from m1! You said: hi");
    assert_eq!(events[6].json(), json!({}));

    // Canceling a finished prediction changes nothing.
    let cancel = path_of(&created["urls"]["cancel"]);
    let canceled = send_with(&server, Method::POST, &cancel, &[AUTH]).await;
    assert_eq!(canceled.status(), 200);
    let canceled: Value = canceled.json().await.unwrap();
    assert_eq!(canceled["status"], "succeeded");
}

#[tokio::test]
async fn version_route_and_input_options() {
    let server = start("m1").await;
    let body =
        json!({"version": "meta/llama-2:5c7854e8", "input": {"prompt": "hi", "max_tokens": 2}});
    let resp = post_with(&server, "/v1/predictions", &[AUTH, WAIT], &body).await;
    assert_eq!(resp.status(), 201);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["model"], "meta/llama-2");
    assert_eq!(v["version"], "5c7854e8");
    assert_eq!(v["output"], json!(["Hello ", "from"]));
    assert_eq!(v["metrics"]["output_token_count"], 2);

    let v = create_waiting(
        &server,
        &json!({"input": {"prompt": "hi", "max_new_tokens": 1}}),
    )
    .await;
    assert_eq!(v["output"], json!(["Hello"]));

    let resp = post_with(
        &server,
        "/v1/predictions",
        &[AUTH, WAIT],
        &json!({"version": "abc123", "input": {"prompt": "x"}}),
    )
    .await;
    assert_eq!(resp.status(), 201);
}

#[tokio::test]
async fn auth_and_input_are_validated() {
    let server = start("m1").await;
    let (status, v) = error_of(create(&server, &[WAIT], &input("hi")).await).await;
    assert_eq!(status, 401);
    assert_eq!(v["detail"], "Unauthenticated");
    let token = create(
        &server,
        &[("authorization", "Token r8_old"), WAIT],
        &input("hi"),
    )
    .await;
    assert_eq!(token.status(), 201, "the older Token scheme works too");

    for (body, status) in [
        (json!({}), 422),
        (json!({"input": "hi"}), 422),
        (json!({"input": {"max_tokens": 3}}), 422),
    ] {
        let (got, v) = error_of(create(&server, &[AUTH], &body).await).await;
        assert_eq!(got, status, "{body}");
        assert_eq!(v["status"], status);
        assert!(v["detail"].is_string());
    }
    let (status, _) =
        error_of(post_with(&server, "/v1/predictions", &[AUTH], &input("hi")).await).await;
    assert_eq!(status, 422, "version is required on /v1/predictions");

    let missing = send_with(&server, Method::GET, "/v1/predictions/nope", &[AUTH]).await;
    assert_eq!(
        error_of(missing).await,
        (404, json!({"detail": "Not found.", "status": 404}))
    );
    let missing = send_with(&server, Method::GET, "/v1/stream/nope", &[]).await;
    assert_eq!(missing.status(), 404);
    let unauthenticated = send_with(&server, Method::GET, "/v1/predictions/nope", &[]).await;
    assert_eq!(unauthenticated.status(), 401);
}

#[tokio::test]
async fn status_faults_fail_the_creation() {
    let server = start("m1").await;
    for (code, detail) in [
        (
            429,
            "Request was throttled. Expected available in 1 second.",
        ),
        (500, "mock fault: status 500"),
        (503, "mock fault: status 503"),
    ] {
        server.set_fault(Some(script(json!({"status": code, "retry_after": "1"}))));
        let resp = create(&server, &[AUTH], &input("hi")).await;
        assert_eq!(resp.headers()["retry-after"], "1");
        assert_eq!(
            error_of(resp).await,
            (code, json!({"detail": detail, "status": code}))
        );
    }
}

#[tokio::test]
async fn polls_follow_the_creation_not_the_script() {
    let server = start("m1").await;
    let created = create_async(&server, &input("hi")).await;
    server.set_fault(Some(FaultScript::status(500)));
    let get = path_of(&created["urls"]["get"]);
    assert_eq!(
        send_with(&server, Method::GET, &get, &[AUTH])
            .await
            .status(),
        200
    );
    assert_eq!(stream_events(&server, &created).await.len(), 7);
    // A fault header on the poll itself does apply.
    let faulted = send_with(
        &server,
        Method::GET,
        &get,
        &[AUTH, ("x-mock-fault", r#"{"status":502}"#)],
    )
    .await;
    assert_eq!(faulted.status(), 502);
}

#[tokio::test]
async fn prediction_status_ends_the_prediction_failed_or_canceled() {
    let server = start_with("m1", Some(script(json!({"prediction_status": "failed"})))).await;
    let v = create_waiting(&server, &input("hi")).await;
    assert_eq!(v["status"], "failed");
    assert_eq!(v["error"], "mock prediction failed");
    assert_eq!(v["output"], Value::Null);
    let created = create_async(&server, &input("hi")).await;
    let events = stream_events(&server, &created).await;
    assert_eq!(event_names(&events), ["error", "done"]);
    assert_eq!(
        events[0].json(),
        json!({"detail": "mock prediction failed"})
    );
    assert_eq!(events[1].json(), json!({"reason": "error"}));

    server.set_fault(Some(script(json!({"prediction_status": "canceled"}))));
    let v = create_waiting(&server, &input("hi")).await;
    assert_eq!(v["status"], "canceled");
    assert_eq!(v["output"], Value::Null);
    let created = create_async(&server, &input("hi")).await;
    let events = stream_events(&server, &created).await;
    assert_eq!(event_names(&events), ["done"]);
    assert_eq!(events[0].json(), json!({"reason": "canceled"}));
}

#[tokio::test]
async fn content_filter_and_context_too_long_fail_the_prediction() {
    let server = start_with("m1", Some(script(json!({"content_filter": true})))).await;
    let v = create_waiting(&server, &input("hi")).await;
    assert_eq!(v["status"], "failed");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("flagged as sensitive")
    );

    server.set_fault(Some(script(json!({"context_too_long": true}))));
    let v = create_waiting(&server, &input("hi")).await;
    assert_eq!(v["status"], "failed");
    assert_eq!(
        v["error"],
        "prompt length (8196 tokens) exceeds the model's context window (8192 tokens)"
    );
}

#[tokio::test]
async fn stream_faults_drawn_at_creation_break_the_stream() {
    let server = start("m1").await;

    // `times: 1` is spent by the creation; the stream read does not draw again.
    server.set_fault(Some(script(json!({"error_event_at": 1, "times": 1}))));
    let created = create_async(&server, &input("hi")).await;
    let events = stream_events(&server, &created).await;
    assert_eq!(event_names(&events), ["output", "error"]);
    assert_eq!(events[1].json(), json!({"detail": "mock in-stream error"}));
    let clean = create_async(&server, &input("hi")).await;
    assert_eq!(stream_events(&server, &clean).await.len(), 7);

    server.set_fault(Some(script(json!({"no_done": true}))));
    let created = create_async(&server, &input("hi")).await;
    let events = stream_events(&server, &created).await;
    assert_eq!(event_names(&events), ["output"; 6]);

    // Output data is raw text, so a malformed event is one that is not UTF-8.
    server.set_fault(Some(script(json!({"malformed_chunk_at": 0}))));
    let created = create_async(&server, &input("hi")).await;
    let bytes = stream_of(&server, &created).await.bytes().await.unwrap();
    assert!(bytes.starts_with(b"event: output\nid: 0\ndata: \xff\xfe\n\n"));
    assert!(std::str::from_utf8(&bytes).is_err());

    // Without a wait, a reset is for the stream; with one, it aborts the creation.
    server.set_fault(Some(script(json!({"reset_after_chunks": 2}))));
    let created = create_async(&server, &input("hi")).await;
    let text = read_until_reset(stream_of(&server, &created).await).await;
    assert_eq!(sse_events(&text).len(), 2);
    let waited = common::client()
        .post(format!("http://{}{MODEL_ROUTE}", server.addr()))
        .header(AUTH.0, AUTH.1)
        .header(WAIT.0, WAIT.1)
        .json(&input("hi"))
        .send()
        .await;
    if let Ok(resp) = waited {
        assert!(resp.bytes().await.is_err());
    }

    // A fault header on the stream request replaces the creation's fault.
    server.set_fault(None);
    let created = create_async(&server, &input("hi")).await;
    let path = path_of(&created["urls"]["stream"]);
    let resp = send_with(
        &server,
        Method::GET,
        &path,
        &[("x-mock-fault", r#"{"error_event_at":0}"#)],
    )
    .await;
    let events = sse_events(&resp.text().await.unwrap());
    assert_eq!(event_names(&events), ["error"]);
}

#[tokio::test(start_paused = true)]
async fn stall_applies_to_the_stream() {
    let server = start_with("m1", Some(script(json!({"stall_after_chunks": 2})))).await;
    let created = create_async(&server, &input("hi")).await;
    let resp = stream_of(&server, &created).await;
    let text = read_until_stall(resp, 2, Duration::from_secs(600)).await;
    assert_eq!(event_names(&sse_events(&text)), ["output", "output"]);
}

#[tokio::test]
async fn hits_are_counted_per_route_and_requests_recorded() {
    let server = start("m1").await;
    let created = create_async(&server, &input("hi")).await;
    post_with(
        &server,
        "/v1/predictions",
        &[AUTH],
        &json!({"version": "v", "input": {"prompt": "x"}}),
    )
    .await;
    send_with(
        &server,
        Method::GET,
        &path_of(&created["urls"]["get"]),
        &[AUTH],
    )
    .await;
    send_with(
        &server,
        Method::POST,
        &path_of(&created["urls"]["cancel"]),
        &[AUTH],
    )
    .await;
    stream_of(&server, &created).await.text().await.unwrap();
    stream_of(&server, &created).await.text().await.unwrap();

    assert_eq!(server.hits("/v1/models/{owner}/{name}/predictions"), 1);
    assert_eq!(server.hits("/v1/predictions"), 1);
    assert_eq!(server.hits("/v1/predictions/{id}"), 1);
    assert_eq!(server.hits("/v1/predictions/{id}/cancel"), 1);
    assert_eq!(server.hits("/v1/stream/{id}"), 2);
    assert_eq!(server.hits("/v1/models/{id}"), 0);

    let recorded = server.requests();
    assert_eq!(recorded[0].route, "/v1/models/{owner}/{name}/predictions");
    assert!(
        recorded[0]
            .headers
            .contains(&("authorization".to_owned(), "Bearer r8_test".to_owned()))
    );
    assert_eq!(
        serde_json::from_str::<Value>(&recorded[0].body).unwrap(),
        input("hi")
    );

    // A reset forgets the predictions too.
    server.reset();
    let gone = send_with(
        &server,
        Method::GET,
        &path_of(&created["urls"]["get"]),
        &[AUTH],
    )
    .await;
    assert_eq!(gone.status(), 404);
}

#[tokio::test]
async fn the_model_lookup_still_owns_get_on_the_shared_path() {
    let server = start("m1").await;
    let resp = send_with(&server, Method::GET, MODEL_ROUTE, &[]).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["id"], "meta/llama-test/predictions");
    assert_eq!(server.hits("/v1/models/{id}"), 1);

    let other = post_with(&server, "/v1/models/meta/llama", &[AUTH], &input("hi")).await;
    assert_eq!(other.status(), 404);
    assert_eq!(server.hits("/v1/models/{owner}/{name}/predictions"), 0);
}
