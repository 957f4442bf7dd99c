//! The capacity model seen from a client: slots, the line, service and decoding time, a full
//! line refused, answers as long as `max_tokens`. On a paused clock, so the waits are exact.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] fns fail loudly"
)]

mod common;

use std::time::Duration;

use common::{CHAT, chat, chat_body, client, sse_data, start};
use nines_mock::Capacity;
use serde_json::{Value, json};
use tokio::time::Instant;

fn capacity(v: Value) -> Capacity {
    serde_json::from_value(v).unwrap()
}

#[tokio::test(start_paused = true)]
async fn requests_beyond_the_slots_wait_in_line() {
    let server = start("busy").await;
    server.set_capacity(Some(capacity(
        json!({"max_concurrency": 2, "service_ms": 1000}),
    )));
    let started = Instant::now();
    let requests = (0..4).map(|_| {
        let server = &server;
        async move {
            let response = chat(server, &chat_body("hi", json!({}))).await;
            assert_eq!(response.status(), 200);
            started.elapsed()
        }
    });
    let mut took = futures_util::future::join_all(requests).await;
    took.sort();
    // Two slots of 1 s each: two answers after 1 s, the two that queued after 2 s.
    assert!(
        took[1] >= Duration::from_millis(1000) && took[1] < Duration::from_millis(2000),
        "{took:?}"
    );
    assert!(took[2] >= Duration::from_millis(2000), "{took:?}");
    assert_eq!(
        server.max_in_flight(CHAT),
        4,
        "queued requests count as in flight"
    );
}

#[tokio::test(start_paused = true)]
async fn streams_hold_their_slot_per_event_and_answers_per_token() {
    let server = start("busy").await;
    server.set_capacity(Some(capacity(
        json!({"max_concurrency": 1, "service_ms": 500, "token_ms": 100}),
    )));
    let started = Instant::now();
    let response = chat(&server, &chat_body("hi", json!({"stream": true}))).await;
    let head = started.elapsed();
    let events = sse_data(&response.text().await.unwrap());
    assert!(head >= Duration::from_millis(500), "{head:?}");
    // role + 6 words + finish + [DONE] = 9 events: 8 more after the first, 100 ms each.
    assert_eq!(events.len(), 9);
    assert!(started.elapsed() >= Duration::from_millis(500 + 800));

    // Not streamed: 500 ms + 6 output tokens × 100 ms before the answer.
    let started = Instant::now();
    let body: Value = chat(&server, &chat_body("hi", json!({})))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["usage"]["completion_tokens"], 6);
    assert!(started.elapsed() >= Duration::from_millis(1100));
}

#[tokio::test(start_paused = true)]
async fn a_full_line_is_refused_at_once() {
    let server = start("busy").await;
    server.set_capacity(Some(capacity(
        json!({"max_concurrency": 1, "service_ms": 1000, "max_queue": 1}),
    )));
    let results = futures_util::future::join_all((0..3).map(|i| {
        let server = &server;
        async move {
            // Arrive in order: the first takes the slot, the second waits, the third is refused.
            tokio::time::sleep(Duration::from_millis(10 * i)).await;
            chat(server, &chat_body("hi", json!({})))
                .await
                .status()
                .as_u16()
        }
    }))
    .await;
    assert_eq!(results, vec![200, 200, 429]);
}

#[tokio::test]
async fn answers_fill_max_tokens_and_the_model_is_set_over_http() {
    let server = start("busy").await;
    let url = format!("http://{}/_mock/capacity", server.addr());
    let set = client()
        .post(&url)
        .json(&json!({"max_concurrency": 4, "fill_max_tokens": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    let body: Value = chat(&server, &chat_body("hi", json!({"max_tokens": 40})))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["usage"]["completion_tokens"], 40);
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    let stream = chat(
        &server,
        &chat_body("hi", json!({"max_tokens": 25, "stream": true})),
    )
    .await
    .text()
    .await
    .unwrap();
    // role + 25 words + finish + [DONE].
    assert_eq!(sse_data(&stream).len(), 28);

    let bad = client()
        .post(&url)
        .json(&json!({"max_concurrency": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let current: Value = client()
        .get(&url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        current["max_concurrency"], 4,
        "an invalid model leaves the old one"
    );
    assert_eq!(client().delete(&url).send().await.unwrap().status(), 204);
    assert_eq!(server.state().capacity(), None);
}
