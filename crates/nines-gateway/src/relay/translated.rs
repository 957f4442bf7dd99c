//! Relaying a stream across dialects after the commit point (e.g. an Anthropic upstream serving
//! an OpenAI client).
//!
//! Same policy as the byte relay in `passthrough.rs`: events go out as soon as they are complete (those
//! that arrived together in one write, see `bursts.rs`), and a
//! stream is never presented as complete unless it was. Upstream events are decoded into unified
//! stream events and re-encoded in the client's dialect; the unified `Done` ends the stream cleanly,
//! a finish reason followed by the upstream closing gets a `Done` of our own, and a cut, a stall,
//! an in-band error, an undecodable event or one over the SSE decoder's limit (8 MiB) ends it
//! with an error in the client's dialect (an
//! `error` event for Anthropic clients, an OpenAI error chunk and no `[DONE]` for OpenAI clients).
//!
//! Unless the model turned `resume_streams` off, a break is not the end: the relay asks
//! [`Resume`] for a continuation (OpenAI chunks, whatever its deployment's dialect: `splice.rs`),
//! decodes it from then on, drops its opening event (the client has had its message start) and
//! encodes the rest in the client's dialect as before.

use super::bursts::{Bursts, Read};
use super::codec::{Decoder, Encoder};
use super::ending::{Ends, Resumed, SHUTDOWN, StreamEnd, StreamReport, unified_break};
use super::resume::{Continuations, Resume};
use super::segment::Segment;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use nines_protocol::sse::{SseDecoder, SseEvent};
use nines_protocol::unified::StreamEvent;
use std::convert::Infallible;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

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
    resume: Option<Resuming>,
}

/// The resume state of a relay whose model resumes streams.
struct Resuming {
    /// A continuation's opening event is dropped.
    continuations: Continuations,
    /// The text the client has received.
    text: String,
    /// Why the answer cannot be continued, once something says so.
    unresumable: Option<&'static str>,
    /// A break waiting for a continuation.
    broken: Option<String>,
}

impl<F: FnOnce(StreamReport) + Send + 'static> Relay<F> {
    /// The upstream side ended: its key slot is settled now; the report waits for the client.
    fn end(&mut self, how: StreamEnd) {
        self.ends.upstream_ended(how);
    }

    /// The segment broke: leaves the break for a continuation (`None`) when the stream can be
    /// resumed, else ends with an error in the client's dialect.
    fn fail(&mut self, why: String, out: &mut Vec<u8>) -> Option<StreamEnd> {
        let why = match self.resume.as_mut() {
            Some(r) if !self.finished => match r.unresumable {
                None => {
                    self.ends.segment_broke();
                    r.broken = Some(why);
                    return None;
                }
                Some(reason) => format!("{why}; not resumed: {reason}"),
            },
            _ => why,
        };
        self.encoder.encode(&unified_break(&why), out);
        Some(StreamEnd::Broken(why))
    }

    /// Notes what the client receives of `event`, for a continuation; `false`: drop it (a
    /// continuation's opening event).
    fn observe(&mut self, event: &StreamEvent) -> bool {
        let Some(r) = self.resume.as_mut() else {
            return true;
        };
        match event {
            StreamEvent::Start { .. } => return !r.continuations.continuing,
            StreamEvent::TextDelta { choice: 0, text } => r.text.push_str(text),
            StreamEvent::TextDelta { .. } => {
                r.unresumable
                    .get_or_insert("the answer has several choices");
            }
            StreamEvent::ToolCallStart { .. } | StreamEvent::ToolCallDelta { .. } => {
                r.unresumable.get_or_insert("the answer has tool calls");
            }
            _ => {}
        }
        true
    }

    /// Continues a broken stream elsewhere; `Err` ends it with the returned error frame.
    async fn resume_after(&mut self, why: String) -> Result<(), Bytes> {
        let next = match self.resume.as_mut() {
            Some(r) => r.continuations.after(why, &r.text).await,
            None => Err(format!("{why}; not resumed: resume is off")),
        };
        match next {
            Ok(segment) => {
                self.head = Some(segment.head);
                self.rest = Bursts::new(segment.rest);
                self.idle = segment.idle;
                self.ends.continue_on(segment.slot);
                // Continuations arrive as OpenAI chunks (`splice.rs`).
                self.decoder = Decoder::openai();
                self.sse = SseDecoder::new();
                self.sse_events.clear();
                Ok(())
            }
            Err(why) => {
                let mut out = Vec::new();
                self.encoder.encode(&unified_break(&why), &mut out);
                self.end(StreamEnd::Broken(why));
                Err(out.into())
            }
        }
    }

    /// The client's stream ended (`client_left`: by the client going away): reports it, once.
    fn report(&mut self, client_left: bool) {
        let resume = &mut self.resume;
        self.ends.report(client_left, || match resume.as_mut() {
            Some(r) => r.continuations.take(),
            None => Resumed::default(),
        });
    }

    fn translate(&mut self, chunk: &[u8]) -> (Bytes, Option<StreamEnd>) {
        let mut out = Vec::with_capacity(chunk.len() + 64);
        // An event past the decoder's limit breaks the stream, after the events completed before
        // it are translated.
        let overflow = self.sse.feed(chunk, &mut self.sse_events).err();
        let events = std::mem::take(&mut self.sse_events);
        for event in &events {
            if let Err(why) = self.decoder.feed(event, &mut self.unified) {
                let end = self.fail(
                    format!("upstream sent an undecodable event: {why}"),
                    &mut out,
                );
                return (out.into(), end);
            }
            for unified in std::mem::take(&mut self.unified) {
                if !self.observe(&unified) {
                    continue;
                }
                match &unified {
                    StreamEvent::Finish { .. } => self.finished = true,
                    StreamEvent::Usage(u) => self.ends.note_usage(u.input_tokens, u.output_tokens),
                    StreamEvent::Error { message, .. } => {
                        let why = format!("upstream error in stream: {message}");
                        if self.resume.is_some() {
                            let end = self.fail(why, &mut out);
                            return (out.into(), end);
                        }
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
        if let Some(overflow) = overflow {
            let end = self.fail(overflow.to_string(), &mut out);
            return (out.into(), end);
        }
        (out.into(), None)
    }
}

impl<F: FnOnce(StreamReport) + Send + 'static> Drop for Relay<F> {
    /// Dropped before the client read past the end: the client went away.
    fn drop(&mut self) {
        self.report(true);
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
    resume: Option<Box<dyn Resume>>,
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
        resume: resume.map(|source| Resuming {
            continuations: Continuations::new(source),
            text: String::new(),
            unresumable: None,
            broken: None,
        }),
    };
    futures_util::stream::unfold(relay, |mut r| async move {
        loop {
            if r.ends.upstream_has_ended() {
                r.report(false);
                return None;
            }
            if let Some(why) = r.resume.as_mut().and_then(|res| res.broken.take()) {
                let cut = r.cut.clone();
                let resumed = tokio::select! {
                    biased;
                    () = cut.cancelled() => {
                        let mut out = Vec::new();
                        r.encoder.encode(&unified_break(SHUTDOWN), &mut out);
                        r.end(StreamEnd::Interrupted(SHUTDOWN.to_owned()));
                        Err(Bytes::from(out))
                    }
                    resumed = r.resume_after(why) => resumed,
                };
                match resumed {
                    Ok(()) => continue,
                    Err(frame) => return Some((Ok(frame), r)),
                }
            }
            let (frame, end) = if let Some(head) = r.head.take() {
                r.translate(&head)
            } else {
                let next = tokio::select! {
                    biased;
                    () = r.cut.cancelled() => None,
                    next = r.rest.read(r.idle, r.deadline) => Some(next),
                };
                let Some(next) = next else {
                    // The gateway's shutdown grace is over: the stream ends here.
                    let mut out = Vec::new();
                    r.encoder.encode(&unified_break(SHUTDOWN), &mut out);
                    r.end(StreamEnd::Interrupted(SHUTDOWN.to_owned()));
                    return Some((Ok(out.into()), r));
                };
                match next {
                    Read::Burst(burst) => r.translate(&burst),
                    Read::Broken(why) => {
                        let mut out = Vec::new();
                        let end = r.fail(why, &mut out);
                        (out.into(), end)
                    }
                    Read::End => {
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
                        let broke = r.resume.as_ref().is_some_and(|res| res.broken.is_some());
                        if end.is_none() && !broke {
                            end = if r.finished {
                                r.encoder.encode(&StreamEvent::Done, &mut out);
                                Some(StreamEnd::FinishedWithoutDone)
                            } else {
                                r.fail(
                                    "upstream stream ended before the response was complete".into(),
                                    &mut out,
                                )
                            };
                        }
                        (out.into(), end)
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
