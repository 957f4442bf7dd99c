//! Relaying a Responses stream from a deployment that serves the Responses API natively to a
//! Responses client, event by event, as bytes.
//!
//! The Responses grammar is not chat's: events are named (`event: response.output_text.delta`),
//! there is no `[DONE]`, and the stream is complete only once a terminal event arrived. So the
//! byte relay's rules apply with this grammar: every event goes out as
//! it arrived (re-framed one by one, so one garbled event is dropped instead of breaking the
//! client's parser); `response.completed` or `response.incomplete` ends the stream cleanly; an
//! `error` event or `response.failed` (the upstream's own honest ending, forwarded) ends it as
//! broken;
//! a cut, a stall past the idle timeout, the deadline, an event over the SSE decoder's limit
//! (8 MiB) or the gateway's shutdown end it with an `error` event of ours (`code: stream_interrupted`, numbered after the last event forwarded),
//! so SDKs never take a truncated response for a whole one. Usage comes from the terminal
//! event's `response.usage`.
//!
//! Such a stream is not resumed elsewhere: its events carry OpenAI's item ids and any built-in
//! tool calls, which no other deployment's continuation could honour.

use super::bursts::{Bursts, Read};
use super::ending::{Ends, Resumed, SHUTDOWN, StreamEnd, StreamReport};
use super::segment::Segment;
use crate::conversations::Keep;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use nines_protocol::sse::{SseDecoder, SseEvent};
use serde::Deserialize;
use std::convert::Infallible;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

struct Relay<F: FnOnce(StreamReport) + Send + 'static> {
    head: Option<Bytes>,
    rest: Bursts,
    idle: Duration,
    deadline: Instant,
    cut: CancellationToken,
    decoder: SseDecoder,
    events: Vec<SseEvent>,
    /// The `sequence_number` the next event of ours takes.
    next_sequence: u64,
    skipped: u32,
    /// Keeps the completed response for the next turn (`previous_response_id`).
    keep: Option<Keep>,
    ends: Ends<F>,
}

/// What one event is, from one parse of its payload.
#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<&'a str>,
    #[serde(default)]
    sequence_number: Option<u64>,
    #[serde(default)]
    response: Option<ResponseProbe>,
}

#[derive(Deserialize)]
struct ResponseProbe {
    #[serde(default)]
    usage: Option<UsageProbe>,
}

#[derive(Deserialize)]
struct UsageProbe {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
}

impl<F: FnOnce(StreamReport) + Send + 'static> Relay<F> {
    /// Forwards the complete events in `chunk`; `Some` when one of them ended the stream.
    fn forward(&mut self, chunk: &[u8]) -> (Bytes, Option<StreamEnd>) {
        let mut events = std::mem::take(&mut self.events);
        // An event past the decoder's limit breaks the stream, after the events completed before
        // it went out.
        let overflow = self.decoder.feed(chunk, &mut events).err();
        let mut out = BytesMut::with_capacity(chunk.len() + 16);
        let mut end = None;
        for event in events.drain(..) {
            let Ok(probe) = serde_json::from_str::<Probe<'_>>(&event.data) else {
                self.skipped += 1;
                continue;
            };
            if let Some(n) = probe.sequence_number {
                self.next_sequence = self.next_sequence.max(n.saturating_add(1));
            }
            if let Some(event_name) = &event.event {
                out.extend_from_slice(b"event: ");
                out.extend_from_slice(event_name.as_bytes());
                out.extend_from_slice(b"\n");
            }
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(event.data.as_bytes());
            out.extend_from_slice(b"\n\n");
            let kind = probe.kind.or(event.event.as_deref());
            match kind {
                Some("response.completed" | "response.incomplete") => {
                    if let Some(keep) = self.keep.take() {
                        keep.response(event.data.as_bytes());
                    }
                    if let Some(u) = probe.response.and_then(|r| r.usage) {
                        self.ends.note_usage(u.input_tokens, u.output_tokens);
                    }
                    end = Some(StreamEnd::Done);
                    break;
                }
                Some("error" | "response.failed") => {
                    let why = format!("upstream sent {}", kind.unwrap_or("error"));
                    end = Some(StreamEnd::Broken(why));
                    break;
                }
                _ => {}
            }
        }
        self.events = events;
        if let (None, Some(overflow)) = (&end, overflow) {
            let why = overflow.to_string();
            out.extend_from_slice(&self.error_event(&why));
            end = Some(StreamEnd::Broken(why));
        }
        (out.freeze(), end)
    }

    /// An `error` event of ours, numbered after the last one forwarded.
    fn error_event(&mut self, why: &str) -> Bytes {
        let payload = serde_json::json!({
            "type": "error",
            "code": "stream_interrupted",
            "message": why,
            "param": null,
            "sequence_number": self.next_sequence,
        });
        self.next_sequence += 1;
        Bytes::from(format!("event: error\ndata: {payload}\n\n"))
    }

    /// Waits for the next piece of the stream, at most the idle timeout.
    async fn read(&mut self) -> (Bytes, Option<StreamEnd>) {
        let next = tokio::select! {
            biased;
            () = self.cut.cancelled() => {
                let frame = self.error_event(SHUTDOWN);
                return (frame, Some(StreamEnd::Interrupted(SHUTDOWN.to_owned())));
            }
            next = self.rest.read(self.idle, self.deadline) => next,
        };
        let why = match next {
            Read::Burst(burst) => return self.forward(&burst),
            Read::End => "upstream stream ended before the response was complete".to_owned(),
            Read::Broken(why) => why,
        };
        (self.error_event(&why), Some(StreamEnd::Broken(why)))
    }

    fn end(&mut self, how: StreamEnd) {
        if self.skipped > 0 {
            tracing::warn!(skipped = self.skipped, "skipped malformed stream events");
        }
        self.ends.upstream_ended(how);
    }
}

impl<F: FnOnce(StreamReport) + Send + 'static> Drop for Relay<F> {
    /// Dropped before the client read past the end: the client went away.
    fn drop(&mut self) {
        self.ends.report(true, Resumed::default);
    }
}

/// Forwards `segment`, a native Responses stream; its key slot is settled when the upstream side
/// ends, and `on_end` is called exactly once, when the client's stream ends.
pub fn relay<F>(
    segment: Segment,
    deadline: Instant,
    cut: CancellationToken,
    keep: Option<Keep>,
    on_end: F,
) -> BoxStream<'static, Result<Bytes, Infallible>>
where
    F: FnOnce(StreamReport) + Send + 'static,
{
    let relay = Relay {
        head: Some(segment.head),
        rest: Bursts::new(segment.rest),
        idle: segment.idle,
        deadline,
        cut,
        decoder: SseDecoder::new(),
        events: Vec::new(),
        next_sequence: 0,
        skipped: 0,
        keep,
        ends: Ends::new(segment.slot, on_end),
    };
    futures_util::stream::unfold(relay, |mut r| async move {
        loop {
            if r.ends.upstream_has_ended() {
                r.ends.report(false, Resumed::default);
                return None;
            }
            let (frame, end) = match r.head.take() {
                Some(head) => r.forward(&head),
                None => r.read().await,
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
