//! `nines serve` with `[telemetry.otlp]`: the request log line names the trace, and spans still
//! buffered when SIGTERM arrives reach the collector before the process exits.

use crate::process::{Nines, command};
use crate::serve::tempdir;
use nines_mock::{MockOptions, MockServer};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// An OTLP/HTTP collector keeping each JSON export body.
async fn collector() -> (String, Arc<Mutex<Vec<Value>>>) {
    let bodies: Arc<Mutex<Vec<Value>>> = Arc::default();
    let kept = Arc::clone(&bodies);
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| async move {
            kept.lock()
                .unwrap()
                .push(serde_json::from_slice(&body).unwrap());
            ([("content-type", "application/json")], "{}")
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, bodies)
}

#[tokio::test]
async fn request_line_names_the_trace_and_spans_are_flushed_on_sigterm() {
    let mock = MockServer::start("127.0.0.1:0".parse().unwrap(), MockOptions::default())
        .await
        .unwrap();
    let (collector, bodies) = collector().await;
    let dir = tempdir();
    let path = dir.join("nines.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[server]
listen = "127.0.0.1:0"

[[deployments]]
name = "d"
provider = "openai-compatible"
model = "m"
base_url = "{}"

[[models]]
name = "chat"
deployments = ["d"]

[telemetry.otlp]
endpoint = "{collector}"
protocol = "http/json"
"#,
            mock.base_url()
        ),
    )
    .unwrap();
    let mut nines = Nines::spawn(command(&["serve", "--config", path.to_str().unwrap()]));
    let base = nines.base().await;
    let response = crate::process::client()
        .post(format!("{base}/v1/chat/completions"))
        .header("traceparent", format!("00-{TRACE}-00f067aa0ba902b7-01"))
        .json(&json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let line = nines.wait_for("request").await;
    assert_eq!(line["trace_id"], TRACE, "{line}");

    // Straight to SIGTERM: the spans are still waiting for their batch.
    let (status, _) = nines.terminate().await;
    assert!(status.success(), "exit {status:?}");
    let bodies = bodies.lock().unwrap().clone();
    let spans: Vec<&Value> = bodies
        .iter()
        .flat_map(|b| b["resourceSpans"].as_array().unwrap())
        .flat_map(|r| r["scopeSpans"].as_array().unwrap())
        .flat_map(|s| s["spans"].as_array().unwrap())
        .collect();
    assert_eq!(spans.len(), 2, "request and attempt spans: {bodies:?}");
    assert!(spans.iter().all(|s| s["traceId"] == TRACE), "{spans:?}");
}
