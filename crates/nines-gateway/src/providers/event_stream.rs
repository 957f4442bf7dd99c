//! AWS event-stream framing (Bedrock's ConverseStream) read as SSE.
//!
//! Each binary message (prelude with its CRC, headers, payload, message CRC) is decoded and
//! checked by `aws-smithy-eventstream`, then written out as one SSE event: an `event` message as
//! `event: {:event-type}` with its JSON payload as data; an `exception` or `error` message as
//! `event: error` with `{"error":{"type","message"}}` (`nines_protocol::bedrock::exception_event`).
//! A frame that fails its checks ends the stream with [`MalformedFrame`], which the transport
//! reports as a malformed answer (another deployment may answer properly).

use super::{BodyError, ByteStream};
use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use aws_smithy_types::event_stream::{HeaderValue, Message};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

/// The body broke the event-stream framing (a bad CRC, an impossible length, a cut frame).
#[derive(Debug, thiserror::Error)]
#[error("malformed AWS event-stream frame: {0}")]
pub struct MalformedFrame(String);

struct Reader {
    body: ByteStream,
    buffer: BytesMut,
    decoder: MessageFrameDecoder,
    ended: bool,
}

/// `body` (event-stream bytes) as SSE bytes, one event per message.
pub(super) fn as_sse(body: ByteStream) -> ByteStream {
    let reader = Reader {
        body,
        buffer: BytesMut::new(),
        decoder: MessageFrameDecoder::new(),
        ended: false,
    };
    futures_util::stream::unfold(reader, |mut reader| async move {
        let next = reader.next_event().await?;
        if next.is_err() {
            reader.ended = true;
        }
        Some((next, reader))
    })
    .boxed()
}

impl Reader {
    async fn next_event(&mut self) -> Option<Result<Bytes, BodyError>> {
        if self.ended {
            return None;
        }
        loop {
            match self.decoder.decode_frame(&mut self.buffer) {
                Ok(DecodedFrame::Complete(message)) => return Some(Ok(sse_event(&message))),
                Ok(DecodedFrame::Incomplete) => {}
                Err(e) => return Some(Err(Box::new(MalformedFrame(e.to_string())))),
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.buffer.extend_from_slice(&chunk),
                Some(Err(e)) => return Some(Err(e)),
                None if self.buffer.is_empty() => return None,
                None => {
                    return Some(Err(Box::new(MalformedFrame(
                        "the body ended inside a frame".into(),
                    ))));
                }
            }
        }
    }
}

fn header<'a>(message: &'a Message, name: &str) -> Option<&'a str> {
    message
        .headers()
        .iter()
        .find(|h| h.name().as_str() == name)
        .and_then(|h| match h.value() {
            HeaderValue::String(s) => Some(s.as_str()),
            _ => None,
        })
}

/// One message as an SSE event.
fn sse_event(message: &Message) -> Bytes {
    let payload = message.payload();
    let (name, data) = match header(message, ":message-type") {
        Some("exception") => (
            "error",
            nines_protocol::bedrock::exception_event(
                header(message, ":exception-type").unwrap_or("exception"),
                payload,
            ),
        ),
        Some("error") => (
            "error",
            nines_protocol::bedrock::exception_event(
                header(message, ":error-code").unwrap_or("error"),
                header(message, ":error-message")
                    .map(|m| serde_json::json!({ "message": m }).to_string())
                    .as_deref()
                    .unwrap_or("{}")
                    .as_bytes(),
            ),
        ),
        _ => (
            header(message, ":event-type").unwrap_or("unknown"),
            String::from_utf8_lossy(payload).into_owned(),
        ),
    };
    let mut out = String::with_capacity(data.len() + name.len() + 16);
    out.push_str("event: ");
    out.push_str(name);
    out.push('\n');
    // A payload is one JSON document; should it hold line breaks, each line is its own `data:`
    // line, which SSE joins back with `\n`.
    for line in data.split('\n') {
        out.push_str("data: ");
        out.push_str(line.strip_suffix('\r').unwrap_or(line));
        out.push('\n');
    }
    out.push('\n');
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_eventstream::frame::write_message_to;
    use aws_smithy_types::event_stream::Header;

    fn frame(headers: &[(&str, &str)], payload: &str) -> Vec<u8> {
        let message = Message::new_from_parts(
            headers
                .iter()
                .map(|(n, v)| Header::new(n.to_string(), HeaderValue::String(v.to_string().into())))
                .collect(),
            payload.as_bytes().to_vec(),
        );
        let mut out = Vec::new();
        write_message_to(&message, &mut out).unwrap();
        out
    }

    async fn read(chunks: Vec<Vec<u8>>) -> Vec<Result<String, String>> {
        let body: ByteStream = futures_util::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, BodyError>(Bytes::from(c))),
        )
        .boxed();
        as_sse(body)
            .map(|r| {
                r.map(|b| String::from_utf8(b.to_vec()).unwrap())
                    .map_err(|e| e.to_string())
            })
            .collect()
            .await
    }

    #[tokio::test]
    async fn messages_become_named_sse_events_across_any_split() {
        let mut bytes = frame(
            &[(":message-type", "event"), (":event-type", "messageStart")],
            r#"{"role":"assistant"}"#,
        );
        bytes.extend(frame(
            &[
                (":message-type", "exception"),
                (":exception-type", "throttlingException"),
            ],
            r#"{"message":"slow down"}"#,
        ));
        let expected = vec![
            Ok("event: messageStart\ndata: {\"role\":\"assistant\"}\n\n".to_owned()),
            Ok("event: error\ndata: {\"error\":{\"message\":\"slow down\",\"type\":\"throttlingException\"}}\n\n".to_owned()),
        ];
        for size in [1, 3, 7, bytes.len()] {
            let chunks = bytes.chunks(size).map(<[u8]>::to_vec).collect();
            assert_eq!(read(chunks).await, expected, "pieces of {size}");
        }
    }

    #[tokio::test]
    async fn a_bad_crc_or_a_cut_frame_is_malformed() {
        let mut bytes = frame(&[(":event-type", "metadata")], "{}");
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        let out = read(vec![bytes.clone()]).await;
        assert_eq!(out.len(), 1);
        assert!(
            out[0]
                .as_ref()
                .unwrap_err()
                .contains("malformed AWS event-stream frame"),
            "{out:?}"
        );

        let whole = frame(&[(":event-type", "metadata")], "{}");
        let out = read(vec![whole[..whole.len() - 2].to_vec()]).await;
        assert!(
            out[0]
                .as_ref()
                .unwrap_err()
                .contains("ended inside a frame"),
            "{out:?}"
        );
    }
}
