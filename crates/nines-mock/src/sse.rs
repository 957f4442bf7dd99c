//! The SSE body of a streamed answer, with the stream faults applied event by event.
//!
//! Every dialect renders its answer as a list of [`Event`]s and hands it here with its
//! [`Style`] (what an in-band error and a malformed event look like). Event indices count every
//! event, the terminator included (OpenAI's `[DONE]`, Anthropic's `message_stop`, Replicate's
//! `done`), so "stall after K" and "reset after K" mean "the client received exactly K events".
//! `split_writes` cuts every event into pieces the client reads one at a time, whatever the
//! dialect.

use std::io;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use crate::FaultScript;
use crate::state::{MockState, OpenStream};

const DONE: &str = "[DONE]";

/// One SSE event: optional `event:` and `id:` lines, then one `data:` line.
pub(crate) struct Event {
    name: Option<&'static str>,
    id: Option<String>,
    data: String,
}

impl Event {
    /// A `data:`-only event (OpenAI, Gemini).
    pub(crate) fn data(data: impl Into<String>) -> Self {
        Self {
            name: None,
            id: None,
            data: data.into(),
        }
    }

    /// A named event (Anthropic, Replicate).
    pub(crate) fn named(name: &'static str, data: impl Into<String>) -> Self {
        Self {
            name: Some(name),
            id: None,
            data: data.into(),
        }
    }

    pub(crate) fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    fn render(&self, data: &[u8]) -> Bytes {
        let mut out = Vec::with_capacity(data.len() + 32);
        if let Some(name) = self.name {
            out.extend_from_slice(format!("event: {name}\n").as_bytes());
        }
        if let Some(id) = &self.id {
            out.extend_from_slice(format!("id: {id}\n").as_bytes());
        }
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(data);
        out.extend_from_slice(b"\n\n");
        Bytes::from(out)
    }
}

/// How a dialect frames its stream events.
#[derive(Clone, Copy)]
pub(crate) enum Framing {
    /// `text/event-stream`.
    Sse,
    /// AWS event-stream (Bedrock's ConverseStream): binary messages with CRCs; an event's name is
    /// its `:event-type`, its data the payload. The in-band error is an `exception` message of
    /// this type, with [`Style::error`] as its payload.
    AwsEventStream { exception: &'static str },
}

/// How one dialect's stream breaks.
#[derive(Clone, Copy)]
pub(crate) struct Style {
    pub(crate) framing: Framing,
    /// The whole in-band error event (`error_event_at`), blank line included (AWS event-stream:
    /// the exception's payload).
    pub(crate) error: &'static str,
    /// What replaces the `data:` of a malformed event (`malformed_chunk_at`); the event keeps
    /// its name and id.
    pub(crate) malformed: &'static [u8],
}

/// The malformed payload of the JSON dialects.
pub(crate) const NOT_JSON: &[u8] = b"{not json";

const OPENAI: Style = Style {
    framing: Framing::Sse,
    error: "data: {\"error\":{\"message\":\"mock in-stream error\",\"type\":\"server_error\",\"code\":null}}\n\n",
    malformed: NOT_JSON,
};

/// Stream OpenAI `payloads` (JSON texts, without `data: `) and the `[DONE]` terminator (unless
/// the fault says `no_done`), breaking it as `fault` says.
pub(crate) fn response(
    state: MockState,
    payloads: Vec<String>,
    fault: Option<FaultScript>,
) -> Response {
    let no_done = fault.as_ref().is_some_and(|f| f.no_done);
    let mut events: Vec<Event> = payloads.into_iter().map(Event::data).collect();
    if !no_done {
        events.push(Event::data(DONE));
    }
    events_response(state, events, OPENAI, fault)
}

/// Stream `events` as SSE in `style`, breaking it as `fault` says. Leaving out the terminator
/// for `no_done` is the caller's business, since only it knows which event that is.
pub(crate) fn events_response(
    state: MockState,
    events: Vec<Event>,
    style: Style,
    fault: Option<FaultScript>,
) -> Response {
    let cursor = Cursor {
        _open: state.open_stream(),
        state,
        events,
        style,
        next: 0,
        finished: false,
        fault: fault.unwrap_or_default(),
        unsent: Bytes::new(),
        big: Big::Ahead,
    };
    let stream = futures_util::stream::unfold(cursor, |mut cursor| async move {
        let frame = cursor.next_frame().await?;
        if let Ok(bytes) = &frame {
            cursor.state.count_streamed(bytes.len());
        }
        Some((frame, cursor))
    });
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    let content_type = match style.framing {
        Framing::Sse => "text/event-stream",
        Framing::AwsEventStream { .. } => crate::bedrock_frames::CONTENT_TYPE,
    };
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

struct Cursor {
    /// Counts this body as open until it is dropped (ended, or its connection went away).
    _open: OpenStream,
    state: MockState,
    events: Vec<Event>,
    style: Style,
    next: usize,
    finished: bool,
    fault: FaultScript,
    /// The rest of an event cut by `split_writes`, sent before anything else.
    unsent: Bytes,
    /// Where the `big_event_at` event is.
    big: Big,
}

/// The `big_event_at` event's progress.
enum Big {
    Ahead,
    /// Being sent: this many padding bytes are left.
    Sending(u64),
    Sent,
}

/// Padding for `big_event_at`, handed out in slices without copying.
static PADDING: [u8; 64 * 1024] = [b'x'; 64 * 1024];

impl Cursor {
    /// The next piece of body, an error that makes hyper abort the connection, or the end.
    async fn next_frame(&mut self) -> Option<Result<Bytes, io::Error>> {
        if !self.unsent.is_empty() {
            // Pending once: hyper flushes what it holds only when the body is not ready, so
            // each piece leaves in a write of its own.
            tokio::task::yield_now().await;
            return Some(Ok(self.piece()));
        }
        if self.finished {
            return None;
        }
        let i = self.next;
        let at = |k: Option<u32>| k.is_some_and(|k| k as usize == i);

        // Breakages that happen *after* K events are checked before the end-of-events test, so
        // K equal to the event count still stalls or resets instead of ending cleanly.
        if at(self.fault.stall_after_chunks) {
            self.finished = true;
            self.state.shutting_down().await;
            return Some(Err(aborted("server shutting down")));
        }
        if at(self.fault.reset_after_chunks) {
            self.finished = true;
            // hyper flushes buffered output only when the body is pending; without this yield
            // the error would discard the head and the K events, and the client would see a
            // refused request instead of a broken stream.
            tokio::task::yield_now().await;
            return Some(Err(aborted("mock fault: reset")));
        }
        if let Some(piece) = self.big_event_piece(at(self.fault.big_event_at)) {
            return Some(Ok(piece));
        }
        let event = self.events.get(i)?;

        if i > 0
            && let Some(ms) = self.fault.chunk_delay_ms.filter(|ms| *ms > 0)
            && !self.state.sleep(Duration::from_millis(ms)).await
        {
            self.finished = true;
            return Some(Err(aborted("server shutting down")));
        }
        self.next += 1;
        let frame = match (self.style.framing, at(self.fault.error_event_at)) {
            (Framing::Sse, true) => {
                self.finished = true;
                Bytes::from_static(self.style.error.as_bytes())
            }
            (Framing::AwsEventStream { exception }, true) => {
                self.finished = true;
                crate::bedrock_frames::exception(exception, self.style.error.as_bytes())
            }
            (framing, false) => {
                let data = if at(self.fault.malformed_chunk_at) {
                    self.style.malformed
                } else {
                    event.data.as_bytes()
                };
                match framing {
                    Framing::Sse => event.render(data),
                    Framing::AwsEventStream { .. } => {
                        crate::bedrock_frames::event(event.name.unwrap_or("unknown"), data)
                    }
                }
            }
        };
        self.unsent = frame;
        Some(Ok(self.piece()))
    }

    /// The next piece of the `big_event_at` event, if it is due (`here`: the next event is the
    /// one it goes before) or being sent. SSE framing only: an AWS event-stream message carries
    /// its length up front, so it cannot be endless.
    fn big_event_piece(&mut self, here: bool) -> Option<Bytes> {
        if !matches!(self.style.framing, Framing::Sse) {
            return None;
        }
        match self.big {
            Big::Ahead if here => {
                self.big = Big::Sending(self.fault.big_event_bytes());
                Some(Bytes::from_static(b"data: {\"padding\":\""))
            }
            Big::Sending(0) => {
                self.big = Big::Sent;
                Some(Bytes::from_static(b"\"}\n\n"))
            }
            Big::Sending(left) => {
                let n = usize::try_from(left).map_or(PADDING.len(), |l| l.min(PADDING.len()));
                self.big = Big::Sending(left - n as u64);
                Some(Bytes::from_static(&PADDING[..n]))
            }
            Big::Ahead | Big::Sent => None,
        }
    }

    /// The next piece of the event being sent: all of it, or `split_writes` bytes.
    fn piece(&mut self) -> Bytes {
        let size = self
            .fault
            .split_writes
            .filter(|n| *n > 0)
            .map_or(usize::MAX, |n| n as usize);
        let size = size.min(self.unsent.len());
        self.unsent.split_to(size)
    }
}

fn aborted(why: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, why)
}
