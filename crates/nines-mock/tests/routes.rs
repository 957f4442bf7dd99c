//! Embeddings, models, hit counting, the request log and the `/_mock` control routes.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] fns fail loudly"
)]

mod common;

use std::time::Duration;

use common::{CHAT, chat, chat_body, client, post, start};
use nines_mock::FaultScript;
use serde_json::{Value, json};

#[tokio::test]
async fn embeddings_are_deterministic_per_input() {
    let server = start("m1").await;
    let body = json!({"model": "emb", "input": ["hello", "world", "hello"]});
    let resp = post(&server, "/v1/embeddings", &body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-mock-name"], "m1");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "emb");
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    assert_eq!(data[1]["object"], "embedding");
    assert_eq!(data[1]["index"], 1);
    let vector = |i: usize| -> Vec<f64> {
        data[i]["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    assert_eq!(vector(0).len(), 8, "default dimensions");
    assert_eq!(vector(0), vector(2));
    assert_ne!(vector(0), vector(1));
    let norm: f64 = vector(0).iter().map(|x| x * x).sum::<f64>().sqrt();
    assert!((norm - 1.0).abs() < 1e-3);
    // ceil(5/4) = 2 per input
    assert_eq!(v["usage"], json!({"prompt_tokens": 6, "total_tokens": 6}));
}

#[tokio::test]
async fn embeddings_accept_strings_tokens_dimensions_and_base64() {
    let server = start("m1").await;
    let one: Value = post(
        &server,
        "/v1/embeddings",
        &json!({"model": "e", "input": "hi", "dimensions": 3}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(one["data"][0]["embedding"].as_array().unwrap().len(), 3);

    let tokens: Value = post(
        &server,
        "/v1/embeddings",
        &json!({"model": "e", "input": [[1, 2, 3], [4]]}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(tokens["data"].as_array().unwrap().len(), 2);
    assert_eq!(tokens["usage"]["prompt_tokens"], 4);

    let single_tokens: Value = post(
        &server,
        "/v1/embeddings",
        &json!({"model": "e", "input": [1, 2, 3]}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(single_tokens["data"].as_array().unwrap().len(), 1);

    let b64: Value = post(
        &server,
        "/v1/embeddings",
        &json!({"model": "e", "input": "hi", "dimensions": 4, "encoding_format": "base64"}),
    )
    .await
    .json()
    .await
    .unwrap();
    // 4 f32 = 16 bytes = 24 base64 chars
    assert_eq!(b64["data"][0]["embedding"].as_str().unwrap().len(), 24);

    for bad in [
        json!({"input": "hi"}),
        json!({"model": "e", "input": []}),
        json!({"model": "e", "input": [true]}),
        json!({"model": "e", "input": "hi", "encoding_format": "hex"}),
        json!({"model": "e", "input": "hi", "dimensions": 0}),
    ] {
        let resp = post(&server, "/v1/embeddings", &bad).await;
        assert_eq!(resp.status(), 400, "{bad}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }
}

#[tokio::test]
async fn models_are_listed_and_any_id_can_be_fetched() {
    let server = start("m1").await;
    let resp = client()
        .get(format!("{}/models", server.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-mock-name"], "m1");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["mock-a", "mock-b"]);
    assert_eq!(v["data"][0]["object"], "model");
    assert_eq!(v["data"][0]["owned_by"], "nines-mock");
    assert!(v["data"][0]["created"].is_u64());

    let one: Value = client()
        .get(format!("{}/models/meta/llama-3", server.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["id"], "meta/llama-3");
    assert_eq!(one["object"], "model");
    assert_eq!(server.hits("/v1/models"), 1);
    assert_eq!(server.hits("/v1/models/{id}"), 1);
}

#[tokio::test]
async fn hits_are_counted_per_route_and_control_routes_are_not() {
    let server = start("m1").await;
    let control = format!("http://{}/_mock", server.addr());
    for _ in 0..3 {
        chat(&server, &chat_body("hi", json!({}))).await;
    }
    post(
        &server,
        "/v1/embeddings",
        &json!({"model": "e", "input": "x"}),
    )
    .await;
    // Even a 400 is a hit: the gateway did send the request.
    post(&server, CHAT, &json!({})).await;

    assert_eq!(server.hits(CHAT), 4);
    assert_eq!(server.hits("/v1/embeddings"), 1);
    assert_eq!(server.hits("/nope"), 0);
    assert_eq!(server.total_hits(), 5);

    let hits: Value = client()
        .get(format!("{control}/hits"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(hits["total"], 5);
    assert_eq!(hits["routes"][CHAT], 4);
    assert_eq!(hits["max_in_flight"][CHAT], 1);
    assert_eq!(server.total_hits(), 5, "control routes are not counted");

    let reset = client()
        .post(format!("{control}/reset"))
        .send()
        .await
        .unwrap();
    assert!(reset.status().is_success());
    assert_eq!(server.total_hits(), 0);
    assert_eq!(server.max_in_flight(CHAT), 0);
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn requests_are_recorded_with_headers_and_body() {
    let server = start("m1").await;
    let body = chat_body("remember me", json!({}));
    client()
        .post(format!("{}/chat/completions", server.base_url()))
        .header("authorization", "Bearer sk-test")
        .json(&body)
        .send()
        .await
        .unwrap();
    let recorded = server.requests();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].route, CHAT);
    assert!(
        recorded[0]
            .headers
            .contains(&("authorization".to_owned(), "Bearer sk-test".to_owned()))
    );
    let sent: Value = serde_json::from_str(&recorded[0].body).unwrap();
    assert_eq!(sent, body);

    let over_http: Value = client()
        .get(format!("http://{}/_mock/requests", server.addr()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(over_http[0]["route"], CHAT);

    // Only the last 256 are kept.
    let http = client();
    for _ in 0..300 {
        http.get(format!("{}/models", server.base_url()))
            .send()
            .await
            .unwrap();
    }
    let recorded = server.requests();
    assert_eq!(recorded.len(), 256);
    assert!(recorded.iter().all(|r| r.route == "/v1/models"));
}

#[tokio::test]
async fn fault_can_be_set_read_and_cleared_over_http() {
    let server = start("m1").await;
    let url = format!("http://{}/_mock/fault", server.addr());
    let set = client()
        .post(&url)
        .body(r#"{"status":429,"retry_after":"1"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    let read: Option<FaultScript> = client()
        .get(&url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read.unwrap().status, Some(429));
    assert_eq!(
        chat(&server, &chat_body("hi", json!({}))).await.status(),
        429
    );

    // A typo or a meaningless number is refused and leaves the script in place.
    for bad in [r#"{"stauts":500}"#, r#"{"status":42}"#, "{"] {
        let resp = client().post(&url).body(bad).send().await.unwrap();
        assert_eq!(resp.status(), 400, "{bad}");
    }
    assert_eq!(
        chat(&server, &chat_body("hi", json!({}))).await.status(),
        429
    );

    let cleared = client().delete(&url).send().await.unwrap();
    assert!(cleared.status().is_success());
    assert_eq!(
        chat(&server, &chat_body("hi", json!({}))).await.status(),
        200
    );

    client()
        .post(&url)
        .body(r#"{"status":500}"#)
        .send()
        .await
        .unwrap();
    client().post(&url).body("null").send().await.unwrap();
    assert_eq!(
        chat(&server, &chat_body("hi", json!({}))).await.status(),
        200
    );
}

/// Waits (briefly, in real time) until `cond` holds; the mock runs on the same runtime.
async fn eventually(mut cond: impl FnMut() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("condition never became true");
}

#[tokio::test]
async fn max_in_flight_counts_concurrent_requests_including_open_streams() {
    let server = start("m1").await;
    let url = format!("{}/chat/completions", server.base_url());
    let hung: Vec<_> = (0..3)
        .map(|_| {
            let request = client()
                .post(&url)
                .header("x-mock-fault", r#"{"hang":true}"#)
                .json(&chat_body("hi", json!({})));
            tokio::spawn(async move { request.send().await })
        })
        .collect();
    eventually(|| server.hits(CHAT) == 3).await;
    assert_eq!(server.max_in_flight(CHAT), 3);
    for task in hung {
        task.abort();
    }

    // A stalled stream has answered, but is still in flight until its body ends.
    server.reset();
    let stalled = client()
        .post(&url)
        .header("x-mock-fault", r#"{"stall_after_chunks":1}"#)
        .json(&chat_body("hi", json!({"stream": true})))
        .send()
        .await
        .unwrap();
    assert_eq!(stalled.status(), 200);
    chat(&server, &chat_body("hi", json!({}))).await;
    assert_eq!(server.max_in_flight(CHAT), 2);
    drop(stalled);
}

#[tokio::test]
async fn shutdown_ends_hung_requests() {
    let server = start("m1").await;
    let request = client()
        .post(format!("{}/chat/completions", server.base_url()))
        .header("x-mock-fault", r#"{"hang":true}"#)
        .json(&chat_body("hi", json!({})));
    let pending = tokio::spawn(async move {
        match request.send().await {
            Ok(resp) => resp.bytes().await.is_err(),
            Err(_) => true,
        }
    });
    eventually(|| server.hits(CHAT) == 1).await;
    tokio::time::timeout(Duration::from_secs(5), server.shutdown())
        .await
        .unwrap();
    assert!(
        pending.await.unwrap(),
        "the hung request must fail, not succeed"
    );
}
