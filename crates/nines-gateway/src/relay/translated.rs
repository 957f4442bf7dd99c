//! Relaying a stream across dialects after the commit point (e.g. an Anthropic upstream serving
//! an OpenAI client).
//!
//! Same policy as the byte relay in `passthrough.rs`: events go out as soon as they are complete (those
//! that arrived together in one write, see `bursts.rs`), and a
//! stream is never presented as complete unless it was. Upstream events are decoded into unified
//! stream events and re-encoded in the client's dialect; the unified `Done` ends the stream cleanly,
//! a finish reason followed by the upstream closing gets a `Done` of our own, and a cut, a stall,
//! an in-band error or an undecodable event ends it with an error in the client's dialect (an
//! `error` event for Anthropic clients, an OpenAI error chunk and no `[DONE]` for OpenAI clients).

use super::bursts::Bursts;
use super::ending::{Ends, SHUTDOWN, StreamEnd, StreamReport, unified_break};
use super::segment::Segment;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use nines_protocol::sse::{SseDecoder, SseEvent};
use nines_protocol::unified::{Dialect, StreamEvent};
use nines_protocol::{anthropic, gemini, openai, replicate};
use std::convert::Infallible;
use std::time::Duration;
use tokio::time::{Instant, timeout_at};
use tokio_util::sync::CancellationToken;

/// Decodes one upstream dialect's events.
pub enum Decoder {
    OpenAi(openai::ChunkDecoder),
    Anthropic(anthropic::StreamDecoder),
    Gemini(gemini::StreamDecoder),
    Replicate(replicate::StreamDecoder),
}

impl Decoder {
    /// `id` is only used by Replicate, whose stream events carry no id of their own.
    pub fn for_dialect(dialect: Dialect, id: &str, model: &str) -> Option<Decoder> {
        Some(match dialect {
            Dialect::OpenAi => Decoder::OpenAi(openai::ChunkDecoder::new()),
            Dialect::Anthropic => Decoder::Anthropic(anthropic::StreamDecoder::new()),
            Dialect::Gemini => Decoder::Gemini(gemini::StreamDecoder::new()),
            Dialect::Replicate => Decoder::Replicate(replicate::StreamDecoder::new(id, model)),
            Dialect::Runway => return None,
        })
    }

    fn feed(&mut self, event: &SseEvent, out: &mut Vec<StreamEvent>) -> Result<(), String> {
        match self {
            Decoder::OpenAi(d) => d.feed(&event.data, out).map_err(|e| e.to_string()),
            Decoder::Anthropic(d) => d.feed_sse(event, out).map_err(|e| e.to_string()),
            Decoder::Gemini(d) => d.feed_sse(event, out).map_err(|e| e.to_string()),
            Decoder::Replicate(d) => {
                d.feed_sse(event, out);
                Ok(())
            }
        }
    }
}

/// Encodes unified events in the client's dialect.
pub enum Encoder {
    OpenAi(openai::ChunkEncoder),
    Anthropic(anthropic::StreamEncoder),
}

impl Encoder {
    pub fn for_client(ingress: Dialect, model: &str, include_usage: bool) -> Encoder {
        match ingress {
            Dialect::Anthropic => {
                Encoder::Anthropic(anthropic::StreamEncoder::new().with_model(model))
            }
            _ => Encoder::OpenAi(
                openai::ChunkEncoder::new(crate::clock::unix_secs(), include_usage)
                    .with_model(model),
            ),
        }
    }

    fn encode(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
        match self {
            Encoder::OpenAi(e) => e.encode(event, out),
            Encoder::Anthropic(e) => e.encode(event, out),
        }
    }
}

struct Relay<F: FnOnce(StreamReport) + Send + 'static> {
    head: Option<Bytes>,
    rest: Bursts,
    idle: Duration,

    deadline: Instant,
    /// Cancelled when the gateway's shutdown grace is over.
    cut: CancellationToken,
    sse: SseDecoder,
    sse_events: Vec<SseEvent>,
    decoder: Decoder,
    encoder: Encoder,
    unified: Vec<StreamEvent>,
    finished: bool,
    ends: Ends<F>,
}

impl<F: FnOnce(StreamReport) + Send + 'static> Relay<F> {
    /// The upstream side ended: its key slot is settled now; the report waits for the client.
    fn end(&mut self, how: StreamEnd) {
        self.ends.upstream_ended(how);
    }

    /// Ends with an error in the client's dialect.
    fn fail(&mut self, why: String, out: &mut Vec<u8>) -> StreamEnd {
        self.encoder.encode(&unified_break(&why), out);
        StreamEnd::Broken(why)
    }

    fn translate(&mut self, chunk: &[u8]) -> (Bytes, Option<StreamEnd>) {
        let mut out = Vec::with_capacity(chunk.len() + 64);
        self.sse.feed(chunk, &mut self.sse_events);
        let events = std::mem::take(&mut self.sse_events);
        for event in &events {
            if let Err(why) = self.decoder.feed(event, &mut self.unified) {
                let end = self.fail(
                    format!("upstream sent an undecodable event: {why}"),
                    &mut out,
                );
                return (out.into(), Some(end));
            }
            for unified in std::mem::take(&mut self.unified) {
                match &unified {
                    StreamEvent::Finish { .. } => self.finished = true,
                    StreamEvent::Usage(u) => self.ends.note_usage(u.input_tokens, u.output_tokens),
                    StreamEvent::Error { message, .. } => {
                        let why = format!("upstream error in stream: {message}");
                        self.encoder.encode(&unified, &mut out);
                        return (out.into(), Some(StreamEnd::Broken(why)));
                    }
                    StreamEvent::Done => {
                        self.encoder.encode(&unified, &mut out);
                        return (out.into(), Some(StreamEnd::Done));
                    }
                    _ => {}
                }
                self.encoder.encode(&unified, &mut out);
            }
        }
        self.sse_events = events;
        self.sse_events.clear();
        (out.into(), None)
    }
}

impl<F: FnOnce(StreamReport) + Send + 'static> Drop for Relay<F> {
    /// Dropped before the client read past the end: the client went away.
    fn drop(&mut self) {
        self.ends.report(true, Default::default);
    }
}

/// Translates `segment` from the upstream's dialect to the client's; its key slot is settled
/// when the upstream side ends, and `on_end` is called exactly once, when the client's stream
/// ends.
pub fn relay<F>(
    segment: Segment,
    (decoder, encoder): (Decoder, Encoder),
    deadline: Instant,
    cut: CancellationToken,
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
        sse: SseDecoder::new(),
        sse_events: Vec::new(),
        decoder,
        encoder,
        unified: Vec::new(),
        finished: false,
        ends: Ends::new(segment.slot, on_end),
    };
    futures_util::stream::unfold(relay, |mut r| async move {
        loop {
            if r.ends.upstream_has_ended() {
                r.ends.report(false, Default::default);
                return None;
            }
            let (frame, end) = if let Some(head) = r.head.take() {
                r.translate(&head)
            } else {
                let wait_until = (Instant::now() + r.idle).min(r.deadline);
                let next = tokio::select! {
                    biased;
                    () = r.cut.cancelled() => None,
                    next = timeout_at(wait_until, r.rest.next()) => Some(next),
                };
                let Some(next) = next else {
                    // The gateway's shutdown grace is over: the stream ends here.
                    let mut out = Vec::new();
                    r.encoder.encode(&unified_break(SHUTDOWN), &mut out);
                    r.end(StreamEnd::Interrupted(SHUTDOWN.to_owned()));
                    return Some((Ok(out.into()), r));
                };
                match next {
                    Ok(Some(Ok(chunk))) => {
                        let burst = r.rest.gather(chunk).await;
                        r.translate(&burst)
                    }
                    Ok(Some(Err(e))) => {
                        let mut out = Vec::new();
                        let why =
                            format!("upstream stream broke: {}", crate::providers::describe(&*e));
                        let end = r.fail(why, &mut out);
                        (out.into(), Some(end))
                    }
                    Ok(None) => {
                        // Flush an event the upstream ended without a blank line.
                        let mut tail = Vec::new();
                        r.sse.finish(&mut tail);
                        let (mut out, mut end) = (Vec::new(), None);
                        if !tail.is_empty() {
                            r.sse_events = tail;
                            let (bytes, e) = r.translate(b"");
                            out.extend_from_slice(&bytes);
                            end = e;
                        }
                        if end.is_none() {
                            end = Some(if r.finished {
                                r.encoder.encode(&StreamEvent::Done, &mut out);
                                StreamEnd::FinishedWithoutDone
                            } else {
                                r.fail(
                                    "upstream stream ended before the response was complete".into(),
                                    &mut out,
                                )
                            });
                        }
                        (out.into(), end)
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
                        let mut out = Vec::new();
                        let end = r.fail(why, &mut out);
                        (out.into(), Some(end))
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
