//! Relaying a stream after the commit point.
//!
//! Events are forwarded as soon as they are complete (never buffered beyond one event), re-framed
//! one by one so that a single malformed chunk in an otherwise sound stream is dropped instead of
//! breaking the client's parser.
//!
//! Policy: once the first byte went to the client, failover is no longer free, so the relay's job
//! is to never present a broken stream as a complete answer. Chunks are forwarded as they arrive,
//! without buffering. A stream that ends with `[DONE]` ends cleanly. One that ends after a finish
//! reason but without `[DONE]` did finish: it is closed promptly with a `[DONE]` of our own. One that
//! is cut, stalls past the idle timeout, runs past the deadline, or carries an in-band error ends
//! with an OpenAI-shaped error event and no `[DONE]`, so SDKs raise instead of returning a
//! truncated answer as if it were whole.

use crate::providers::ByteStream;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use nines_protocol::ErrorBody;
use nines_protocol::sse::{DONE_FRAME, SseDecoder, SseEvent, data_frame};
use std::convert::Infallible;
use std::time::Duration;
use tokio::time::{Instant, timeout_at};

/// How a relayed stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEnd {
    /// `[DONE]` arrived from upstream.
    Done,
    /// Upstream finished (a finish reason) but closed without `[DONE]`; nines added it.
    FinishedWithoutDone,
    /// Broken after the commit point; the client got an error event.
    Broken(String),
    /// The client went away first.
    ClientGone,
}

struct Relay<F: FnOnce(StreamEnd) + Send + 'static> {
    head: Option<Bytes>,
    rest: ByteStream,
    idle: Duration,
    deadline: Instant,
    decoder: SseDecoder,
    events: Vec<SseEvent>,
    finished: bool,
    ended: bool,
    skipped: u32,
    on_end: Option<F>,
}

impl<F: FnOnce(StreamEnd) + Send + 'static> Relay<F> {
    fn end(&mut self, how: StreamEnd) {
        self.ended = true;
        if self.skipped > 0 {
            tracing::warn!(skipped = self.skipped, "skipped malformed stream chunks");
        }
        if let Some(f) = self.on_end.take() {
            f(how);
        }
    }

    /// Decodes `chunk` and returns the frames to forward, plus how the stream ended if it did.
    /// Events are re-framed one by one, so a malformed event can be dropped while the sound
    /// ones around it go through.
    fn forward(&mut self, chunk: &[u8]) -> (Bytes, Option<StreamEnd>) {
        self.decoder.feed(chunk, &mut self.events);
        let mut out = BytesMut::with_capacity(chunk.len() + 16);
        let mut end = None;
        for event in self.events.drain(..) {
            if event.is_done() {
                out.extend_from_slice(DONE_FRAME);
                end = Some(StreamEnd::Done);
                break;
            }
            if crate::providers::is_error_event(&event.data, event.event.as_deref()) {
                out.extend_from_slice(&data_frame(event.data.as_bytes()));
                end = Some(StreamEnd::Broken("upstream sent an error event".into()));
                break;
            }
            if serde_json::from_str::<serde::de::IgnoredAny>(&event.data).is_err() {
                // One garbled chunk in an otherwise sound stream: drop it rather than break the
                // client's parser; if the stream is really broken, its ending will say so.
                self.skipped += 1;
                continue;
            }
            if has_finish_reason(&event.data) {
                self.finished = true;
            }
            out.extend_from_slice(&data_frame(event.data.as_bytes()));
        }
        (out.freeze(), end)
    }
}

impl<F: FnOnce(StreamEnd) + Send + 'static> Drop for Relay<F> {
    fn drop(&mut self) {
        if !self.ended {
            self.end(StreamEnd::ClientGone);
        }
    }
}

/// Forwards `head` then `rest`, watching event boundaries; `on_end` is called exactly once.
pub fn relay<F>(
    head: Bytes,
    rest: ByteStream,
    idle: Duration,
    deadline: Instant,
    on_end: F,
) -> BoxStream<'static, Result<Bytes, Infallible>>
where
    F: FnOnce(StreamEnd) + Send + 'static,
{
    let relay = Relay {
        head: Some(head),
        rest,
        idle,
        deadline,
        decoder: SseDecoder::new(),
        events: Vec::new(),
        finished: false,
        ended: false,
        skipped: 0,
        on_end: Some(on_end),
    };
    futures_util::stream::unfold(relay, |mut r| async move {
        loop {
            if r.ended {
                return None;
            }
            let (frame, end) = if let Some(head) = r.head.take() {
                r.forward(&head)
            } else {
                let wait_until = (Instant::now() + r.idle).min(r.deadline);
                match timeout_at(wait_until, r.rest.next()).await {
                    Ok(Some(Ok(chunk))) => r.forward(&chunk),
                    Ok(Some(Err(e))) => {
                        let why =
                            format!("upstream stream broke: {}", crate::providers::describe(&e));
                        (error_frame(&why), Some(StreamEnd::Broken(why)))
                    }
                    Ok(None) if r.finished && !r.decoder.is_mid_event() => (
                        Bytes::from_static(DONE_FRAME),
                        Some(StreamEnd::FinishedWithoutDone),
                    ),
                    Ok(None) => {
                        let why =
                            "upstream stream ended before the response was complete".to_owned();
                        (error_frame(&why), Some(StreamEnd::Broken(why)))
                    }
                    Err(_) => {
                        let why = if wait_until >= r.deadline {
                            "request deadline reached while streaming".to_owned()
                        } else {
                            format!(
                                "upstream stream stalled for more than {}",
                                humantime::format_duration(r.idle)
                            )
                        };
                        (error_frame(&why), Some(StreamEnd::Broken(why)))
                    }
                }
            };
            if let Some(end) = end {
                r.end(end);
            }
            if !frame.is_empty() {
                return Some((Ok(frame), r));
            }
        }
    })
    .boxed()
}

/// An OpenAI-shaped error as an SSE event: SDKs raise an APIError on it.
fn error_frame(message: &str) -> Bytes {
    // Frames are only ever forwarded whole, so this one starts on a clean event boundary.
    let body = ErrorBody::new(message, "server_error", None, Some("stream_interrupted")).to_json();
    data_frame(&body)
}

fn has_finish_reason(data: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Chunk {
        #[serde(default)]
        choices: Vec<Choice>,
    }
    #[derive(serde::Deserialize)]
    struct Choice {
        #[serde(default)]
        finish_reason: Option<String>,
    }
    data.contains("finish_reason")
        && serde_json::from_str::<Chunk>(data)
            .is_ok_and(|c| c.choices.iter().any(|ch| ch.finish_reason.is_some()))
}
