//! The reads' bounds. The first-event read: what an upstream sends before its first complete
//! event is held (the decoder's event, the head kept for the client), so past the SSE event limit
//! the answer is malformed and the attempt fails over. A whole answer: past its limit, malformed.

use super::*;
use crate::providers::Transport;
use crate::resilience::class::{FailureClass, classify};
use nines_protocol::sse::DEFAULT_EVENT_LIMIT;
use std::time::Duration;

/// `total` bytes of `unit` repeated, cut into 64 KiB chunks, then `tail`.
fn chunks(prefix: &[u8], unit: &[u8], total: usize, tail: &[u8]) -> Vec<Vec<u8>> {
    let mut body = prefix.to_vec();
    while body.len() < total {
        body.extend_from_slice(unit);
    }
    body.extend_from_slice(tail);
    body.chunks(64 * 1024).map(<[u8]>::to_vec).collect()
}

async fn first(chunks: Vec<Vec<u8>>) -> Outcome {
    let stream = futures_util::stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from(c))));
    let started = Instant::now();
    first_event_in(
        stream.boxed(),
        started,
        http::StatusCode::OK,
        http::HeaderMap::new(),
        &Timeouts::default(),
        started + Duration::from_secs(60),
    )
    .await
}

/// The reason of a malformed outcome, checked to class as one.
fn malformed(outcome: &Outcome) -> String {
    assert_eq!(classify(outcome), FailureClass::Malformed);
    match outcome {
        Outcome::Transport(Transport::Malformed(why)) => why.clone(),
        Outcome::Transport(other) => panic!("{other:?}"),
        _ => panic!("not a transport failure"),
    }
}

#[tokio::test]
async fn a_first_event_over_the_limit_is_malformed() {
    let body = chunks(b"data: ", b"x", DEFAULT_EVENT_LIMIT + 1, b"\n\n");
    let outcome = first(body).await;
    assert_eq!(malformed(&outcome), "upstream event over 8 MiB");
}

#[tokio::test]
async fn comments_past_the_limit_before_any_event_are_malformed() {
    // Nothing for the decoder to hold, but all of it would be kept as the head.
    let body = chunks(
        b"",
        b": keep-alive\n",
        DEFAULT_EVENT_LIMIT + 256 * 1024,
        b"data: {}\n\n",
    );
    let why = malformed(&first(body).await);
    assert!(why.ends_with("bytes without an event"), "{why}");
}

#[tokio::test]
async fn a_big_first_event_under_the_limit_is_the_reply() {
    let body = chunks(b": hi\n\ndata: ", b"x", DEFAULT_EVENT_LIMIT - 64, b"\n\n");
    let Outcome::Reply(reply) = first(body).await else {
        panic!("not a reply");
    };
    let ReplyBody::Stream { head, .. } = reply.body else {
        panic!("not a stream");
    };
    assert!(head.len() > DEFAULT_EVENT_LIMIT - 64);
}

/// A whole (not streamed) answer of `len` bytes of JSON, as the upstream client hands it over.
fn whole(len: usize) -> http_client::Response {
    let body = chunks(b"{\"a\":\"", b"x", len, b"\"}");
    let frames = futures_util::stream::iter(
        body.into_iter()
            .map(|c| Ok::<_, http_client::BodyError>(hyper::body::Frame::data(Bytes::from(c)))),
    );
    http::Response::new(http_body_util::BodyExt::boxed(
        http_body_util::StreamBody::new(frames),
    ))
}

#[tokio::test]
async fn a_whole_answer_past_its_limit_is_malformed_and_one_within_is_read() {
    let limit = 1 << 20;
    let e = http_client::bytes(whole(limit + 1), limit)
        .await
        .expect_err("over the limit");
    let outcome = Outcome::Transport(reply_error(&*e, limit));
    assert_eq!(malformed(&outcome), "upstream answer over 1 MiB");
    let body = http_client::bytes(whole(limit - 8), limit).await.unwrap();
    assert_eq!(body.len(), limit - 8 + 2);
}
