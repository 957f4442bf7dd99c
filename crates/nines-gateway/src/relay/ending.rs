//! How a relayed stream ends: the one report a relay makes when the client's stream ends
//! ([`StreamReport`], with its [`StreamEnd`]), and what a client gets when a stream breaks after
//! the commit point: an error event in its own dialect and never `[DONE]`, so SDKs raise instead
//! of returning a truncated answer as if it were whole. The relays detect breaks (a cut, a stall
//! past the idle timeout, the deadline, an in-band error, an undecodable event, an event over the
//! SSE decoder's limit); this is where what the client sees of one is made.

use crate::resilience::class::STREAM_BROKEN;
use crate::resilience::{AttemptRecord, FailureClass, OpenSlot};
use bytes::Bytes;
use nines_protocol::ErrorBody;
use nines_protocol::sse::data_frame;
use nines_protocol::unified::StreamEvent;

/// Why a stream the gateway itself ended (its shutdown grace ran out) broke off.
pub const SHUTDOWN: &str =
    "the gateway is shutting down and cut the stream before it finished; retry the request";

/// A break as an OpenAI-shaped error event (`code: stream_interrupted`): what an OpenAI client
/// of the byte relay gets. Frames are only ever forwarded whole, so this one starts on a clean
/// event boundary.
pub fn openai_break(why: &str) -> Bytes {
    let body = ErrorBody::new(why, "server_error", None, Some("stream_interrupted")).to_json();
    data_frame(&body)
}

/// A break as a unified error event, for the translating relay to encode in its client's
/// dialect (an `error` event for Anthropic clients, the same OpenAI error chunk otherwise).
pub fn unified_break(why: &str) -> StreamEvent {
    StreamEvent::Error {
        message: why.to_owned(),
        kind: "server".into(),
    }
}

/// How a relayed stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEnd {
    /// `[DONE]` arrived from upstream.
    Done,
    /// Upstream finished (a finish reason) but closed without `[DONE]`; nines added it.
    FinishedWithoutDone,
    /// Broken after the commit point; the client got an error event.
    Broken(String),
    /// The gateway ended it (shutting down, its grace over); the client got an error event.
    Interrupted(String),
    /// The client went away first.
    ClientGone,
}

impl StreamEnd {
    /// The serving key slot's outcome.
    pub fn class(&self) -> FailureClass {
        match self {
            StreamEnd::Done | StreamEnd::FinishedWithoutDone => FailureClass::Ok,
            StreamEnd::Broken(_) => STREAM_BROKEN,
            // Not the upstream's doing: says nothing about its key slot.
            StreamEnd::Interrupted(_) | StreamEnd::ClientGone => FailureClass::Cancelled,
        }
    }
}

/// What resuming did to a stream.
#[derive(Debug, Default)]
pub struct Resumed {
    /// Why each upstream stream broke before a continuation carried it on, in order.
    pub breaks: Vec<String>,
    /// Every continuation attempt, in order; those of class `ok` carried the stream on.
    pub attempts: Vec<AttemptRecord>,
}

/// What a relay reports, once, when the client's stream ends: when it has read past the last
/// frame, or when it is dropped (the client left first; then the end is `ClientGone` even if
/// the upstream had finished).
#[derive(Debug)]
pub struct StreamReport {
    pub end: StreamEnd,
    /// (input, output) tokens the upstreams reported, if any: per segment the largest of each
    /// seen (Anthropic's counts are cumulative and arrive in two events), summed over the
    /// segments of a resumed stream (each continuation is billed on its own).
    pub usage: Option<(u64, u64)>,
    pub resumed: Resumed,
}

/// A relay's two ends, kept apart: the upstream side's (its key slot is settled the moment the
/// upstream stream ends) and the client's (the one report, made when the client's stream ends).
/// Both relays keep one.
pub struct Ends<F: FnOnce(StreamReport)> {
    /// The key slot of the segment being relayed, until it ends.
    slot: Option<OpenSlot>,
    /// How the upstream side ended, once it has.
    upstream: Option<StreamEnd>,
    /// The segment being relayed's counts, and those of the segments before it.
    usage: Option<(u64, u64)>,
    banked: Option<(u64, u64)>,
    on_end: Option<F>,
}

impl<F: FnOnce(StreamReport)> Ends<F> {
    pub fn new(slot: OpenSlot, on_end: F) -> Self {
        Ends {
            slot: Some(slot),
            upstream: None,
            usage: None,
            banked: None,
            on_end: Some(on_end),
        }
    }

    /// Notes an upstream's token counts: the largest of each seen.
    pub fn note_usage(&mut self, input: u64, output: u64) {
        let (i, o) = self.usage.get_or_insert((0, 0));
        *i = (*i).max(input);
        *o = (*o).max(output);
    }

    /// The segment being relayed broke: its slot counts a failure (a continuation may follow).
    pub fn segment_broke(&mut self) {
        if let Some(slot) = self.slot.take() {
            slot.settle(STREAM_BROKEN);
        }
    }

    /// A continuation is relayed from now on, on its own key slot.
    pub fn continue_on(&mut self, slot: OpenSlot) {
        self.slot = Some(slot);
        if let Some((i, o)) = self.usage.take() {
            let (bi, bo) = self.banked.get_or_insert((0, 0));
            *bi += i;
            *bo += o;
        }
    }

    /// The upstream side ended: the slot being relayed is settled by how.
    pub fn upstream_ended(&mut self, how: StreamEnd) {
        if let Some(slot) = self.slot.take() {
            slot.settle(how.class());
        }
        self.upstream = Some(how);
    }

    pub fn upstream_has_ended(&self) -> bool {
        self.upstream.is_some()
    }

    /// The client's stream ended: reports how, once. `client_left`: it ended by the client going
    /// away (the stream was dropped before the client read past its end), whatever the upstream
    /// did; a slot still open is then settled as cancelled.
    pub fn report(&mut self, client_left: bool, resumed: impl FnOnce() -> Resumed) {
        if self.upstream.is_none() {
            self.upstream_ended(StreamEnd::ClientGone);
        }
        let Some(on_end) = self.on_end.take() else {
            return;
        };
        let end = match self.upstream.take() {
            Some(end) if !client_left => end,
            _ => StreamEnd::ClientGone,
        };
        let usage = match (self.banked, self.usage) {
            (Some((bi, bo)), Some((i, o))) => Some((bi + i, bo + o)),
            (banked, usage) => usage.or(banked),
        };
        on_end(StreamReport {
            end,
            usage,
            resumed: resumed(),
        });
    }
}
