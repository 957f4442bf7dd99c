//! AWS event-stream framing, as Bedrock's ConverseStream writes it: each message is a prelude
//! (total and header lengths, CRC32), typed headers, the payload and a CRC32 of the whole,
//! written by AWS's own codec (`aws-smithy-eventstream`).

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use bytes::Bytes;

/// The content type of an event-stream body.
pub(crate) const CONTENT_TYPE: &str = "application/vnd.amazon.eventstream";

fn frame(headers: &[(&'static str, &str)], payload: &[u8]) -> Bytes {
    let message = Message::new_from_parts(
        headers
            .iter()
            .map(|(name, value)| Header::new(*name, HeaderValue::String(value.to_string().into())))
            .collect(),
        payload.to_vec(),
    );
    let mut out = Vec::with_capacity(payload.len() + 96);
    // Writing to a Vec fails only for a message too large for the format (16 MiB), which
    // the mock's answers never are.
    if write_message_to(&message, &mut out).is_err() {
        out.clear();
    }
    Bytes::from(out)
}

/// An `event` message of type `name`.
pub(crate) fn event(name: &str, payload: &[u8]) -> Bytes {
    frame(
        &[
            (":event-type", name),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        payload,
    )
}

/// An `exception` message (`throttlingException`, `modelStreamErrorException`, ...).
pub(crate) fn exception(kind: &str, payload: &[u8]) -> Bytes {
    frame(
        &[
            (":exception-type", kind),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        payload,
    )
}
