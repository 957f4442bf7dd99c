//! The Runway task dialect: creation, polling progress, deletion, errors and job outcomes.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] fns fail loudly"
)]

mod common;

use std::time::Duration;

use common::{post_with, script, send_with, start, start_with};
use nines_mock::{FaultScript, MockServer};
use reqwest::Method;
use serde_json::{Value, json};

const TEXT: &str = "/v1/text_to_video";
const IMAGE: &str = "/v1/image_to_video";
const HEADERS: [(&str, &str); 2] = [
    ("authorization", "Bearer key_test"),
    ("x-runway-version", "2024-11-06"),
];

fn text_body() -> Value {
    json!({"model": "gen4_turbo", "promptText": "a cat", "ratio": "1280:720", "duration": 5})
}

async fn create(server: &MockServer, path: &str, body: &Value) -> reqwest::Response {
    post_with(server, path, &HEADERS, body).await
}

async fn create_id(server: &MockServer) -> String {
    let resp = create(server, TEXT, &text_body()).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    v["id"].as_str().unwrap().to_owned()
}

async fn poll(server: &MockServer, id: &str) -> (u16, Value) {
    let resp = send_with(server, Method::GET, &format!("/v1/tasks/{id}"), &HEADERS).await;
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

async fn error_of(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.unwrap();
    (status, v["error"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn tasks_progress_by_polls_to_success() {
    let server = start("m1").await;
    let resp = create(&server, TEXT, &text_body()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-mock-name"], "m1");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v.as_object().unwrap().len(), 1, "only the id: {v}");
    let id = v["id"].as_str().unwrap();
    let groups: Vec<usize> = id.split('-').map(str::len).collect();
    assert_eq!(groups, [8, 4, 4, 4, 12], "uuid-shaped: {id}");

    let (status, first) = poll(&server, id).await;
    assert_eq!(status, 200);
    assert_eq!(first["id"], id);
    assert_eq!(first["status"], "RUNNING");
    assert_eq!(first["progress"], 0.5);
    assert!(first["createdAt"].is_string());
    assert!(first.get("output").is_none());

    for _ in 0..2 {
        let (_, done) = poll(&server, id).await;
        assert_eq!(done["status"], "SUCCEEDED");
        assert_eq!(
            done["output"],
            json!([format!("https://mock.runway.invalid/videos/{id}.mp4")])
        );
        assert!(done.get("progress").is_none());
    }
    let other = create_id(&server).await;
    assert_ne!(other, id);
}

#[tokio::test]
async fn image_to_video_needs_an_image() {
    let server = start("m1").await;
    let ok = json!({"model": "gen4_turbo", "promptImage": "https://example.invalid/a.png", "ratio": "1280:720"});
    assert_eq!(create(&server, IMAGE, &ok).await.status(), 200);
    let positioned = json!({"model": "gen4_turbo", "promptImage": [{"uri": "data:image/png;base64,AAAA", "position": "first"}], "promptText": "zoom"});
    assert_eq!(create(&server, IMAGE, &positioned).await.status(), 200);

    for (path, bad) in [
        (
            IMAGE,
            json!({"model": "gen4_turbo", "promptText": "no image"}),
        ),
        (TEXT, json!({"model": "gen4_turbo"})),
        (TEXT, json!({"promptText": "no model"})),
        (TEXT, json!("nope")),
    ] {
        let (status, message) = error_of(create(&server, path, &bad).await).await;
        assert_eq!(status, 400, "{bad}");
        assert!(!message.is_empty());
    }
}

#[tokio::test]
async fn every_route_needs_a_key_and_a_version() {
    let server = start("m1").await;
    let (status, _) = error_of(post_with(&server, TEXT, &[HEADERS[1]], &text_body()).await).await;
    assert_eq!(status, 401);
    let (status, message) =
        error_of(post_with(&server, TEXT, &[HEADERS[0]], &text_body()).await).await;
    assert_eq!(status, 400);
    assert!(message.contains("X-Runway-Version"));

    let id = create_id(&server).await;
    let path = format!("/v1/tasks/{id}");
    assert_eq!(
        send_with(&server, Method::GET, &path, &[HEADERS[1]])
            .await
            .status(),
        401
    );
    assert_eq!(
        send_with(&server, Method::GET, &path, &[HEADERS[0]])
            .await
            .status(),
        400
    );
    assert_eq!(
        send_with(&server, Method::DELETE, &path, &[HEADERS[0]])
            .await
            .status(),
        400
    );
}

#[tokio::test]
async fn unknown_and_deleted_tasks_are_not_found() {
    let server = start("m1").await;
    let (status, v) = poll(&server, "00000000-0000-4000-8000-000000000000").await;
    assert_eq!(status, 404);
    assert!(v["error"].is_string());

    let id = create_id(&server).await;
    let path = format!("/v1/tasks/{id}");
    let deleted = send_with(&server, Method::DELETE, &path, &HEADERS).await;
    assert_eq!(deleted.status(), 204);
    assert_eq!(poll(&server, &id).await.0, 404);
    assert_eq!(
        send_with(&server, Method::DELETE, &path, &HEADERS)
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn status_faults_apply_to_creation_only() {
    let server = start("m1").await;
    let id = create_id(&server).await;
    for (code, message) in [
        (
            429,
            "You have exceeded the rate limit for this API key. Please retry later.",
        ),
        (500, "mock fault: status 500"),
        (502, "mock fault: status 502"),
    ] {
        server.set_fault(Some(FaultScript::status(code)));
        let resp = create(&server, TEXT, &text_body()).await;
        assert_eq!(resp.headers()["content-type"], "application/json");
        assert_eq!(error_of(resp).await, (code, message.to_owned()));
    }
    let v: Value = create(&server, IMAGE, &json!({"model": "m", "promptImage": "x"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v, json!({"error": "mock fault: status 502"}));
    // Polls do not draw from the script; a fault header on a poll applies.
    assert_eq!(poll(&server, &id).await.0, 200);
    let path = format!("/v1/tasks/{id}");
    let faulted = send_with(
        &server,
        Method::GET,
        &path,
        &[
            HEADERS[0],
            HEADERS[1],
            ("x-mock-fault", r#"{"status":503}"#),
        ],
    )
    .await;
    assert_eq!(faulted.status(), 503);
}

#[tokio::test(start_paused = true)]
async fn latency_delays_the_creation() {
    let server = start_with("m1", Some(script(json!({"latency_ms": 3000, "times": 1})))).await;
    let started = tokio::time::Instant::now();
    let id = create_id(&server).await;
    assert!(started.elapsed() >= Duration::from_millis(3000));
    let started = tokio::time::Instant::now();
    assert_eq!(poll(&server, &id).await.0, 200);
    assert!(started.elapsed() < Duration::from_millis(3000));
}

#[tokio::test]
async fn prediction_status_ends_the_task() {
    let server = start_with("m1", Some(script(json!({"prediction_status": "failed"})))).await;
    let id = create_id(&server).await;
    assert_eq!(poll(&server, &id).await.1["status"], "RUNNING");
    let (_, failed) = poll(&server, &id).await;
    assert_eq!(failed["status"], "FAILED");
    assert_eq!(failed["failure"], "mock task failed");
    assert_eq!(failed["failureCode"], "INTERNAL");
    assert!(failed.get("output").is_none());

    server.set_fault(Some(script(json!({"prediction_status": "canceled"}))));
    let id = create_id(&server).await;
    poll(&server, &id).await;
    assert_eq!(poll(&server, &id).await.1["status"], "CANCELLED");
}

#[tokio::test]
async fn content_filter_and_context_too_long() {
    let server = start_with("m1", Some(script(json!({"content_filter": true})))).await;
    let id = create_id(&server).await;
    poll(&server, &id).await;
    let (_, failed) = poll(&server, &id).await;
    assert_eq!(failed["status"], "FAILED");
    assert_eq!(failed["failureCode"], "SAFETY.OUTPUT.VIDEO");

    server.set_fault(Some(script(json!({"context_too_long": true}))));
    let (status, message) = error_of(create(&server, TEXT, &text_body()).await).await;
    assert_eq!(status, 400);
    assert!(
        message.contains("promptText is too long (1005 characters > 1000 maximum)"),
        "{message}"
    );
}

#[tokio::test]
async fn hits_are_counted_per_route_and_requests_recorded() {
    let server = start("m1").await;
    let id = create_id(&server).await;
    create(&server, IMAGE, &json!({"model": "m", "promptImage": "x"})).await;
    poll(&server, &id).await;
    poll(&server, &id).await;
    send_with(
        &server,
        Method::DELETE,
        &format!("/v1/tasks/{id}"),
        &HEADERS,
    )
    .await;

    assert_eq!(server.hits(TEXT), 1);
    assert_eq!(server.hits(IMAGE), 1);
    assert_eq!(server.hits("/v1/tasks/{id}"), 3);
    assert_eq!(server.total_hits(), 5);

    let recorded = server.requests();
    assert_eq!(recorded[0].route, TEXT);
    let has = |name: &str, value: &str| {
        recorded[0]
            .headers
            .contains(&(name.to_owned(), value.to_owned()))
    };
    assert!(has("authorization", "Bearer key_test"));
    assert!(has("x-runway-version", "2024-11-06"));
    assert_eq!(
        serde_json::from_str::<Value>(&recorded[0].body).unwrap(),
        text_body()
    );
}

#[tokio::test]
async fn the_organization_lookup_checks_headers_and_obeys_faults() {
    let server = start("m1").await;
    let resp = send_with(&server, Method::GET, "/v1/organization", &HEADERS).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert!(v["creditBalance"].as_u64().is_some(), "{v}");
    let resp = send_with(&server, Method::GET, "/v1/organization", &[HEADERS[1]]).await;
    assert_eq!(error_of(resp).await.0, 401);

    server.set_fault(Some(script(json!({"status": 500, "times": 1}))));
    let resp = send_with(&server, Method::GET, "/v1/organization", &HEADERS).await;
    assert_eq!(error_of(resp).await.0, 500);
    assert_eq!(server.hits("/v1/organization"), 3);
}
