//! Relaying an OpenAI-family stream to an OpenAI client after the commit point, event by event.
//!
//! Events are forwarded as soon as they are complete (never held back waiting for more; events
//! that arrived together go out in one write, see `bursts.rs`), re-framed one by one so that a
//! single malformed chunk in an otherwise sound stream is dropped instead of breaking the
//! client's parser.
//!
//! Policy: once the first byte went to the client, failover is no longer free, so the relay's job
//! is to never present a broken stream as a complete answer. Chunks are forwarded as they arrive,
//! without buffering. A stream that ends with `[DONE]` ends cleanly. One that ends after a finish
//! reason but without `[DONE]` did finish: it is closed promptly with a `[DONE]` of our own. One that
//! is cut, stalls past the idle timeout, runs past the deadline, carries an in-band error, or sends
//! an event over the SSE decoder's limit (`nines_protocol::sse::DEFAULT_EVENT_LIMIT`, 8 MiB) ends
//! with an OpenAI-shaped error event and no `[DONE]`, so SDKs raise instead of returning a
//! truncated answer as if it were whole.
//!
//! With `resume_streams` on for the model, a break is not the end: the relay asks
//! [`Resume`](super::resume::Resume) for a continuation and splices it into the same client
//! stream (see `resume.rs` for that policy). Only then does it parse each chunk (the text so far,
//! the stream's identity); without it, the relay does no more work than honest endings need.

use super::bursts::{Bursts, Read};
use super::ending::{Ends, Resumed, SHUTDOWN, StreamEnd, StreamReport, openai_break};
use super::resume::{Continuations, Observed, Resume, Transcript};
use super::segment::Segment;
use crate::resilience::attempt::summarize;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use nines_protocol::sse::{DONE_FRAME, SseDecoder, SseEvent, data_frame, push_data_frame};
use std::convert::Infallible;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The resume state of a relay whose model has `resume_streams`.
struct Resuming {
    /// Continuations' chunks take on the first stream's identity (`transcript`).
    continuations: Continuations,
    transcript: Transcript,
}

/// How reading from upstream went, when it ended the segment.
enum Step {
    End(StreamEnd),
    /// The gateway is shutting down and its grace is over.
    Cut,
    /// Broken: `frame` is what the client gets when the stream is not resumed (the upstream's
    /// own error event, or an error event of ours).
    Break {
        why: String,
        frame: Bytes,
    },
}

struct Relay<F: FnOnce(StreamReport) + Send + 'static> {
    head: Option<Bytes>,
    rest: Bursts,
    idle: Duration,

    deadline: Instant,
    /// Cancelled when the gateway's shutdown grace is over.
    cut: CancellationToken,
    decoder: SseDecoder,
    events: Vec<SseEvent>,
    finished: bool,
    skipped: u32,
    resume: Option<Resuming>,
    /// A break waiting for a continuation (only with resume).
    broken: Option<String>,
    ends: Ends<F>,
}

/// What one OpenAI stream event is, from a single JSON parse: an in-band error, garbage, or
/// content (with or without a finish reason).
enum EventKind {
    Error,
    Malformed,
    Content {
        finish: bool,
        /// The `usage` object's (prompt, completion) tokens, on the usage chunk.
        usage: Option<(u64, u64)>,
    },
}

fn inspect(data: &str, event: Option<&str>) -> EventKind {
    #[derive(serde::Deserialize)]
    struct Probe<'a> {
        #[serde(borrow, default)]
        error: Option<&'a serde_json::value::RawValue>,
        #[serde(default)]
        choices: Vec<ChoiceProbe<'a>>,
        // Raw, so that an odd `usage` value never makes a sound event look malformed.
        #[serde(borrow, default)]
        usage: Option<&'a serde_json::value::RawValue>,
    }
    #[derive(serde::Deserialize)]
    struct ChoiceProbe<'a> {
        #[serde(borrow, default)]
        finish_reason: Option<&'a serde_json::value::RawValue>,
    }
    #[derive(serde::Deserialize)]
    struct UsageProbe {
        #[serde(default)]
        prompt_tokens: u64,
        #[serde(default)]
        completion_tokens: u64,
    }
    if event == Some("error") {
        return EventKind::Error;
    }
    match serde_json::from_str::<Probe<'_>>(data) {
        Err(_) => EventKind::Malformed,
        Ok(p) if p.error.is_some_and(|e| e.get() != "null") => EventKind::Error,
        Ok(p) => EventKind::Content {
            finish: p
                .choices
                .iter()
                .any(|c| c.finish_reason.is_some_and(|f| f.get() != "null")),
            usage: p
                .usage
                .and_then(|raw| serde_json::from_str::<Option<UsageProbe>>(raw.get()).ok())
                .flatten()
                .map(|u| (u.prompt_tokens, u.completion_tokens)),
        },
    }
}

impl<F: FnOnce(StreamReport) + Send + 'static> Relay<F> {
    /// The upstream side ended: its key slot is settled now; the report waits for the client.
    fn end(&mut self, how: StreamEnd) {
        if self.skipped > 0 {
            tracing::warn!(skipped = self.skipped, "skipped malformed stream chunks");
        }
        self.ends.upstream_ended(how);
    }

    /// The client's stream ended (`client_left`: by the client going away): reports it, once.
    fn report(&mut self, client_left: bool) {
        let resume = &mut self.resume;
        self.ends.report(client_left, || match resume.as_mut() {
            Some(r) => r.continuations.take(),
            None => Resumed::default(),
        });
    }

    /// Decodes `chunk` and returns the frames to forward, plus how the stream ended if it did.
    /// Events are re-framed one by one, so a malformed event can be dropped while the sound
    /// ones around it go through.
    fn forward(&mut self, chunk: &[u8]) -> (Bytes, Option<Step>) {
        let mut events = std::mem::take(&mut self.events);
        // An event past the decoder's limit breaks the stream, after the events completed before
        // it went out.
        let overflow = self.decoder.feed(chunk, &mut events).err();
        let mut out = BytesMut::with_capacity(chunk.len() + 16);
        let mut step = None;
        for event in events.drain(..) {
            if event.is_done() {
                out.extend_from_slice(DONE_FRAME);
                step = Some(Step::End(StreamEnd::Done));
                break;
            }
            let kind = inspect(&event.data, event.event.as_deref());
            if let EventKind::Content {
                usage: Some((input, output)),
                ..
            } = kind
            {
                self.ends.note_usage(input, output);
            }
            if matches!(kind, EventKind::Error) {
                let why = match self.resume {
                    None => "upstream sent an error event".to_owned(),
                    Some(_) => format!(
                        "upstream sent an error event: {}",
                        summarize(event.data.as_bytes())
                    ),
                };
                let frame = data_frame(event.data.as_bytes());
                step = Some(Step::Break { why, frame });
                break;
            }
            let Some(resume) = self.resume.as_mut() else {
                match kind {
                    // One garbled chunk in an otherwise sound stream: drop it rather than break
                    // the client's parser; if the stream is really broken, its ending will say so.
                    EventKind::Malformed => self.skipped += 1,
                    EventKind::Content { finish, .. } => {
                        self.finished |= finish;
                        push_data_frame(&mut out, event.data.as_bytes());
                    }
                    EventKind::Error => {}
                }
                continue;
            };
            match resume
                .transcript
                .observe(&event.data, resume.continuations.continuing)
            {
                Observed::Malformed => self.skipped += 1,
                Observed::Drop => {}
                Observed::Forward { rewritten, finish } => {
                    self.finished |= finish;
                    let data = rewritten.as_deref().unwrap_or(&event.data);
                    push_data_frame(&mut out, data.as_bytes());
                }
            }
        }
        self.events = events;
        if let (None, Some(overflow)) = (&step, overflow) {
            let why = overflow.to_string();
            let frame = openai_break(&why);
            step = Some(Step::Break { why, frame });
        }
        (out.freeze(), step)
    }

    /// Waits for the next piece of the upstream stream, at most the idle timeout.
    async fn read(&mut self) -> (Bytes, Option<Step>) {
        let next = tokio::select! {
            biased;
            () = self.cut.cancelled() => return (Bytes::new(), Some(Step::Cut)),
            next = self.rest.read(self.idle, self.deadline) => next,
        };
        let why = match next {
            // Events already received go out together: one write for a burst.
            Read::Burst(burst) => return self.forward(&burst),
            Read::End if self.finished && !self.decoder.is_mid_event() => {
                return (
                    Bytes::from_static(DONE_FRAME),
                    Some(Step::End(StreamEnd::FinishedWithoutDone)),
                );
            }
            Read::End => "upstream stream ended before the response was complete".to_owned(),
            Read::Broken(why) => why,
        };
        let frame = openai_break(&why);
        (Bytes::new(), Some(Step::Break { why, frame }))
    }

    /// The gateway's shutdown grace is over: the stream ends with the error event, never a
    /// continuation. Returns the frame to send.
    fn interrupt(&mut self) -> Bytes {
        self.end(StreamEnd::Interrupted(SHUTDOWN.to_owned()));
        openai_break(SHUTDOWN)
    }

    /// A segment broke: settle it, then either leave the break for a continuation (`None`) or
    /// end the stream, returning the error frame to send.
    fn broke(&mut self, why: String, upstream_frame: Bytes) -> Option<Bytes> {
        self.ends.segment_broke();
        let (why, frame) = match &self.resume {
            // A stream that already finished has nothing left to continue.
            None => (why, upstream_frame),
            Some(_) if self.finished => (why, upstream_frame),
            Some(r) => match r.transcript.unresumable {
                None => {
                    self.broken = Some(why);
                    return None;
                }
                Some(reason) => {
                    let why = format!("{why}; not resumed: {reason}");
                    let frame = openai_break(&why);
                    (why, frame)
                }
            },
        };
        self.end(StreamEnd::Broken(why));
        Some(frame)
    }

    /// Continues a broken stream elsewhere; `Err` ends it with the returned error frame.
    async fn resume_after(&mut self, why: String) -> Result<(), Bytes> {
        let next = match self.resume.as_mut() {
            Some(r) => r.continuations.after(why, &r.transcript.text).await,
            None => Err(format!("{why}; not resumed: resume is off")),
        };
        match next {
            Ok(segment) => {
                self.head = Some(segment.head);
                self.rest = Bursts::new(segment.rest);
                self.idle = segment.idle;
                self.ends.continue_on(segment.slot);
                self.decoder = SseDecoder::new();
                self.events.clear();
                Ok(())
            }
            Err(why) => {
                let frame = openai_break(&why);
                self.end(StreamEnd::Broken(why));
                Err(frame)
            }
        }
    }
}

impl<F: FnOnce(StreamReport) + Send + 'static> Drop for Relay<F> {
    /// Dropped before the client read past the end: the client went away.
    fn drop(&mut self) {
        self.report(true);
    }
}

/// Forwards `first` (and, when it breaks and `resume` is given, its continuations), watching
/// event boundaries. Each segment's key slot is settled when that segment ends; `on_end` is
/// called exactly once, when the client's stream ends. Without `resume` nothing is parsed
/// beyond what honest endings need.
pub fn relay<F>(
    first: Segment,
    deadline: Instant,
    cut: CancellationToken,
    resume: Option<Box<dyn Resume>>,
    on_end: F,
) -> BoxStream<'static, Result<Bytes, Infallible>>
where
    F: FnOnce(StreamReport) + Send + 'static,
{
    let relay = Relay {
        head: Some(first.head),
        rest: Bursts::new(first.rest),
        idle: first.idle,
        deadline,
        cut,
        decoder: SseDecoder::new(),
        events: Vec::new(),
        finished: false,
        skipped: 0,
        resume: resume.map(|source| Resuming {
            continuations: Continuations::new(source),
            transcript: Transcript::default(),
        }),
        broken: None,
        ends: Ends::new(first.slot, on_end),
    };
    futures_util::stream::unfold(relay, |mut r| async move {
        loop {
            if r.ends.upstream_has_ended() {
                r.report(false);
                return None;
            }
            if let Some(why) = r.broken.take() {
                let cut = r.cut.clone();
                let resumed = tokio::select! {
                    biased;
                    () = cut.cancelled() => Err(r.interrupt()),
                    resumed = r.resume_after(why) => resumed,
                };
                match resumed {
                    Ok(()) => continue,
                    Err(frame) => return Some((Ok(frame), r)),
                }
            }
            let (mut frame, step) = match r.head.take() {
                Some(head) => r.forward(&head),
                None => r.read().await,
            };
            match step {
                None => {}
                Some(Step::End(end)) => r.end(end),
                Some(Step::Cut) => frame = r.interrupt(),
                Some(Step::Break { why, frame: error }) => {
                    if let Some(error) = r.broke(why, error) {
                        let mut out = BytesMut::from(frame);
                        out.extend_from_slice(&error);
                        frame = out.freeze();
                    }
                }
            }
            if !frame.is_empty() {
                return Some((Ok(frame), r));
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resilience::breaker::{Breaker, Signal};
    use crate::resilience::events::{BreakerEvent, EventSink, Transition};
    use crate::resilience::{AttemptRecord, FailureClass, OpenSlot};
    use futures_util::future::BoxFuture;
    use std::sync::{Arc, Mutex};

    type Log = Arc<Mutex<Vec<String>>>;

    fn chunk(id: &str, content: &str) -> String {
        format!(
            "data: {{\"id\":\"{id}\",\"model\":\"m-{id}\",\"created\":1,\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{content}\"}},\"finish_reason\":null}}]}}\n\n"
        )
    }

    fn opener(id: &str) -> String {
        format!(
            "data: {{\"id\":\"{id}\",\"model\":\"m-{id}\",\"created\":1,\"choices\":[{{\"index\":0,\"delta\":{{\"role\":\"assistant\",\"content\":\"\"}},\"finish_reason\":null}}]}}\n\n"
        )
    }

    fn finish(id: &str) -> String {
        format!(
            "data: {{\"id\":\"{id}\",\"model\":\"m-{id}\",\"created\":2,\"choices\":[{{\"index\":0,\"delta\":{{}},\"finish_reason\":\"stop\"}}]}}\n\ndata: [DONE]\n\n"
        )
    }

    /// Where the segments' key slots report: each slot's breaker is half-open, so how it was
    /// settled shows as its transition (closed: success; opened: failure; none: neutral).
    struct Slots {
        sink: EventSink,
        events: tokio::sync::broadcast::Receiver<BreakerEvent>,
    }

    impl Slots {
        fn new() -> Slots {
            let sink = EventSink::new(crate::clock::Clock::system());
            let events = sink.subscribe();
            Slots { sink, events }
        }

        /// A key slot named `name` whose settlement is watched.
        fn slot(&mut self, name: &str) -> OpenSlot {
            // One failure trips it, and its cooldown is already over: the next admit is a probe.
            let policy = crate::config::resilience::Breaker {
                consecutive_failures: 1,
                cooldown: std::time::Duration::ZERO,
                ..Default::default()
            };
            let breaker = Breaker::new(format!("{name}#0"), policy);
            breaker.attach(&self.sink);
            let permit = breaker.admit().unwrap();
            permit.record(Signal::Failure);
            let probe = breaker.admit().unwrap();
            // The trip and the half-open transition are set-up, not settlements.
            while self.events.try_recv().is_ok() {}
            OpenSlot::new(Some(probe), None)
        }

        /// `name: Success` / `name: Failure` for each slot settled so far, in order.
        fn settled(&mut self) -> Vec<String> {
            let mut out = Vec::new();
            while let Ok(e) = self.events.try_recv() {
                match e.transition {
                    Transition::Closed => out.push(format!("{}: Success", e.deployment)),
                    Transition::Opened { .. } => out.push(format!("{}: Failure", e.deployment)),
                    Transition::HalfOpen => {}
                }
            }
            out
        }
    }

    /// A segment of `events` (the first is the head) that then ends; its key slot reports to
    /// `slots`.
    fn segment(name: &'static str, events: Vec<String>, slots: &mut Slots) -> Segment {
        let head = Bytes::from(events[0].clone());
        let rest: Vec<Result<Bytes, crate::providers::BodyError>> = events[1..]
            .iter()
            .map(|e| Ok(Bytes::from(e.clone())))
            .collect();
        Segment {
            head,
            rest: futures_util::stream::iter(rest).boxed(),
            idle: Duration::from_secs(5),
            slot: slots.slot(name),
        }
    }

    /// Hands out scripted continuations and records the partial text each was asked for.
    struct Scripted {
        next: Vec<Segment>,
        asked: Log,
    }

    impl Resume for Scripted {
        fn next<'a>(&'a mut self, partial: &'a str) -> BoxFuture<'a, Result<Segment, String>> {
            self.asked.lock().unwrap().push(partial.to_owned());
            let next = if self.next.is_empty() {
                Err("nothing left".to_owned())
            } else {
                Ok(self.next.remove(0))
            };
            Box::pin(async move { next })
        }

        fn take_attempts(&mut self) -> Vec<AttemptRecord> {
            vec![AttemptRecord {
                deployment: "b".into(),
                key_alias: "b#0".into(),
                class: FailureClass::Ok,
                status: Some(200),
                elapsed: Duration::ZERO,
                detail: String::new(),
                retry_after: None,
                span: None,
            }]
        }
    }

    async fn run(
        first: Segment,
        resume: Option<Box<dyn Resume>>,
    ) -> (Vec<String>, StreamEnd, Resumed) {
        let ended = Arc::new(Mutex::new(None));
        let sink = Arc::clone(&ended);
        let deadline = Instant::now() + Duration::from_secs(10);
        let frames: Vec<Bytes> = relay(
            first,
            deadline,
            CancellationToken::new(),
            resume,
            move |report| {
                *sink.lock().unwrap() = Some((report.end, report.resumed));
            },
        )
        .map(|f| f.unwrap_or_default())
        .collect()
        .await;
        let mut decoder = SseDecoder::new();
        let mut events = Vec::new();
        for frame in frames {
            decoder.feed(&frame, &mut events).unwrap();
        }
        let (end, resumed) = ended.lock().unwrap().take().unwrap();
        (events.into_iter().map(|e| e.data).collect(), end, resumed)
    }

    #[tokio::test]
    async fn a_break_is_continued_under_the_first_streams_identity() {
        let mut slots = Slots::new();
        let first = segment(
            "a",
            vec![opener("a"), chunk("a", "Hel"), chunk("a", "lo ")],
            &mut slots,
        );
        let second = segment(
            "b",
            vec![
                opener("b"),
                chunk("b", "wor"),
                chunk("b", "ld"),
                finish("b"),
            ],
            &mut slots,
        );
        let asked = Log::default();
        let resume = Scripted {
            next: vec![second],
            asked: Arc::clone(&asked),
        };
        let (data, end, resumed) = run(first, Some(Box::new(resume))).await;
        assert_eq!(end, StreamEnd::Done);
        assert_eq!(data.last().unwrap(), "[DONE]");
        let chunks: Vec<serde_json::Value> = data[..data.len() - 1]
            .iter()
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        assert_eq!(chunks.len(), 6, "one opener: the continuation's is dropped");
        assert!(chunks.iter().all(|c| c["id"] == "a" && c["model"] == "m-a"));
        assert_eq!(chunks[5]["created"], 1, "created is the first stream's too");
        let text: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, "Hello world");
        assert_eq!(*asked.lock().unwrap(), ["Hello "]);
        assert_eq!(slots.settled(), ["a: Failure", "b: Success"]);
        assert_eq!(
            resumed.breaks,
            ["upstream stream ended before the response was complete"]
        );
        assert_eq!(resumed.attempts.len(), 1);
    }

    #[tokio::test]
    async fn with_no_continuation_left_the_stream_ends_with_an_error_event() {
        let mut slots = Slots::new();
        let first = segment("a", vec![opener("a"), chunk("a", "Hel")], &mut slots);
        let resume = Scripted {
            next: Vec::new(),
            asked: Log::default(),
        };
        let (data, end, _) = run(first, Some(Box::new(resume))).await;
        let StreamEnd::Broken(why) = end else {
            panic!("{end:?}")
        };
        assert!(why.ends_with("; not resumed: nothing left"), "{why}");
        let last: serde_json::Value = serde_json::from_str(data.last().unwrap()).unwrap();
        assert_eq!(last["error"]["code"], "stream_interrupted");
        assert_eq!(last["error"]["message"], why.as_str());
        assert!(!data.iter().any(|d| d == "[DONE]"));
        assert_eq!(slots.settled(), ["a: Failure"]);
    }

    #[tokio::test]
    async fn without_resume_nothing_changes() {
        let mut slots = Slots::new();
        let first = segment("a", vec![opener("a"), chunk("a", "Hel")], &mut slots);
        let (data, end, resumed) = run(first, None).await;
        assert_eq!(
            end,
            StreamEnd::Broken("upstream stream ended before the response was complete".into())
        );
        assert_eq!(data.len(), 3);
        assert!(data[2].contains("stream_interrupted"));
        assert!(resumed.breaks.is_empty() && resumed.attempts.is_empty());
        assert_eq!(slots.settled(), ["a: Failure"]);

        let first = segment(
            "a",
            vec![opener("a"), chunk("a", "Hi"), finish("a")],
            &mut slots,
        );
        let (data, end, _) = run(first, None).await;
        assert_eq!((end, data.len()), (StreamEnd::Done, 4));
        assert_eq!(slots.settled().last().unwrap(), "a: Success");
    }
}
