//! The SSE body of a streamed completion, with the stream faults applied event by event.
//!
//! Event indices count every `data:` event, `[DONE]` included, so "stall after K" and "reset
//! after K" mean "the client received exactly K events".

use std::io;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use crate::FaultScript;
use crate::state::MockState;

const MALFORMED: &str = "data: {not json\n\n";
const ERROR_EVENT: &str = "data: {\"error\":{\"message\":\"mock in-stream error\",\"type\":\"server_error\",\"code\":null}}\n\n";
const DONE: &str = "[DONE]";

/// Stream `payloads` (JSON texts, without `data: `) as SSE, breaking it as `fault` says.
pub(crate) fn response(
    state: MockState,
    payloads: Vec<String>,
    fault: Option<FaultScript>,
) -> Response {
    let fault = fault.unwrap_or_default();
    let mut events = payloads;
    if !fault.no_done {
        events.push(DONE.to_owned());
    }
    let cursor = Cursor {
        state,
        events,
        next: 0,
        finished: false,
        fault,
    };
    let stream = futures_util::stream::unfold(cursor, |mut cursor| async move {
        let frame = cursor.next_frame().await?;
        Some((frame, cursor))
    });
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

struct Cursor {
    state: MockState,
    events: Vec<String>,
    next: usize,
    finished: bool,
    fault: FaultScript,
}

impl Cursor {
    /// The next piece of body, an error that makes hyper abort the connection, or the end.
    async fn next_frame(&mut self) -> Option<Result<Bytes, io::Error>> {
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
        let event = self.events.get(i)?;

        if i > 0
            && let Some(ms) = self.fault.chunk_delay_ms.filter(|ms| *ms > 0)
            && !self.state.sleep(Duration::from_millis(ms)).await
        {
            self.finished = true;
            return Some(Err(aborted("server shutting down")));
        }
        self.next += 1;
        if at(self.fault.error_event_at) {
            self.finished = true;
            return Some(Ok(Bytes::from_static(ERROR_EVENT.as_bytes())));
        }
        if at(self.fault.malformed_chunk_at) {
            return Some(Ok(Bytes::from_static(MALFORMED.as_bytes())));
        }
        Some(Ok(Bytes::from(format!("data: {event}\n\n"))))
    }
}

fn aborted(why: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, why)
}
