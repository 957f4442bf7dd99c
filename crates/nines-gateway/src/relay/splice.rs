//! A continuation made ready to splice into a broken stream: whatever its deployment's dialect,
//! its events become OpenAI chat chunks (what both relays take a continuation as), and the text
//! the client already has is taken off its start.
//!
//! Two ways to continue (`resume.rs` picks one per deployment):
//! - **Prefill**: the deployment continues the partial answer (Anthropic natively, vLLM-style
//!   servers with `assistant_prefill`), so its text is only the rest. Anthropic refuses a prefill
//!   that ends with whitespace, so that whitespace is sent back to the model to write and taken
//!   off the continuation's start when it does ([`Join::Continues`]).
//! - **Replay**: the deployment is asked the original request afresh. Its answer is spliced in
//!   only if its text begins with exactly what the client received ([`Join::Replays`]); the rest
//!   then goes to the client. Deterministic requests (temperature 0, a seed, a cached answer)
//!   recover completely; any other difference ends the continuation with the reason, and the
//!   relay tries the next deployment or ends the stream with the honest error event.

use super::codec::Decoder;
use super::segment::Segment;
use crate::providers::BodyError;
use bytes::Bytes;
use futures_util::StreamExt;
use nines_protocol::openai::ChunkEncoder;
use nines_protocol::sse::{SseDecoder, SseEvent};
use nines_protocol::unified::StreamEvent;

/// How a continuation's text joins what the client has.
#[derive(Debug, Clone, PartialEq)]
pub enum Join {
    /// It continues the answer: at most this leading whitespace (trimmed off the prefill) is
    /// the model's to repeat, and is taken off.
    Continues { skip: String },
    /// It answers afresh: its text must begin with exactly `sent`, which is taken off.
    Replays { sent: String },
}

impl Join {
    /// One text delta of the continuation: what of it goes to the client, or why the
    /// continuation cannot be spliced.
    fn text(&mut self, text: &str) -> Result<String, String> {
        match self {
            Join::Continues { skip } => {
                let mut rest = text;
                while !skip.is_empty() {
                    match (skip.chars().next(), rest.chars().next()) {
                        (Some(a), Some(b)) if a == b => {
                            skip.drain(..a.len_utf8());
                            rest = &rest[b.len_utf8()..];
                        }
                        // The model wrote no whitespace first, or the delta ran out.
                        (_, Some(_)) => skip.clear(),
                        (_, None) => break,
                    }
                }
                Ok(rest.to_owned())
            }
            Join::Replays { sent } => {
                if sent.is_empty() {
                    Ok(text.to_owned())
                } else if let Some(rest) = text.strip_prefix(sent.as_str()) {
                    sent.clear();
                    Ok(rest.to_owned())
                } else if let Some(left) = sent.strip_prefix(text) {
                    *sent = left.to_owned();
                    Ok(String::new())
                } else {
                    Err("the replayed answer differs from what the client received".into())
                }
            }
        }
    }

    /// Whether the continuation has caught up with the client (a replay that finished before it
    /// reached the client's text cannot be spliced).
    fn caught_up(&self) -> bool {
        match self {
            Join::Continues { .. } => true,
            Join::Replays { sent } => sent.is_empty(),
        }
    }
}

/// Decodes a continuation in its dialect and encodes what the client lacks as OpenAI chunks.
struct Converter {
    sse: SseDecoder,
    events: Vec<SseEvent>,
    unified: Vec<StreamEvent>,
    decoder: Decoder,
    encoder: ChunkEncoder,
    join: Join,
}

impl Converter {
    fn convert(&mut self, bytes: &[u8]) -> Result<Bytes, String> {
        let mut out = Vec::with_capacity(bytes.len() + 64);
        // An event past the decoder's limit breaks the continuation like any other bad event;
        // what it completed before is lost with the rest of this chunk (the relay only counts
        // what reached the client).
        self.sse
            .feed(bytes, &mut self.events)
            .map_err(|e| e.to_string())?;
        for event in std::mem::take(&mut self.events) {
            self.decoder
                .feed(&event, &mut self.unified)
                .map_err(|e| format!("the continuation sent an undecodable event: {e}"))?;
            for unified in std::mem::take(&mut self.unified) {
                let unified = match unified {
                    StreamEvent::TextDelta { choice: 0, text } => {
                        let text = self.join.text(&text)?;
                        if text.is_empty() {
                            continue;
                        }
                        StreamEvent::TextDelta { choice: 0, text }
                    }
                    StreamEvent::TextDelta { .. }
                    | StreamEvent::ToolCallStart { .. }
                    | StreamEvent::ToolCallDelta { .. } => {
                        return Err("the continuation is not a text answer of one choice".into());
                    }
                    StreamEvent::Finish { .. } | StreamEvent::Done if !self.join.caught_up() => {
                        return Err("the replayed answer is shorter than what the client \
                                    received"
                            .into());
                    }
                    other => other,
                };
                self.encoder.encode(&unified, &mut out);
            }
        }
        Ok(Bytes::from(out))
    }
}

/// `segment` (a continuation from a deployment speaking `decoder`'s dialect) as OpenAI chunks
/// without what the client already has. `Err`: its first events already show it cannot be
/// spliced. A later mismatch ends its byte stream with an error, which the relay treats as a
/// break like any other.
pub fn prepare(
    segment: Segment,
    decoder: Decoder,
    model: &str,
    include_usage: bool,
    join: Join,
) -> Result<Segment, String> {
    let mut converter = Converter {
        sse: SseDecoder::new(),
        events: Vec::new(),
        unified: Vec::new(),
        decoder,
        encoder: ChunkEncoder::new(crate::clock::unix_secs(), include_usage).with_model(model),
        join,
    };
    let head = converter.convert(&segment.head)?;
    let mut failed = false;
    let rest = segment
        .rest
        .map(move |chunk| {
            if failed {
                return Err(BodyError::from("the continuation was refused"));
            }
            let converted =
                chunk.and_then(|bytes| converter.convert(&bytes).map_err(BodyError::from));
            failed = converted.is_err();
            converted
        })
        .boxed();
    Ok(Segment {
        head,
        rest,
        idle: segment.idle,
        slot: segment.slot,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_is_spliced_only_when_it_begins_with_what_the_client_has() {
        let mut join = Join::Replays {
            sent: "Hello from".into(),
        };
        assert_eq!(join.text("Hel").unwrap(), "");
        assert_eq!(join.text("lo fr").unwrap(), "");
        assert_eq!(join.text("om mock").unwrap(), " mock");
        assert!(join.caught_up());
        assert_eq!(join.text("!").unwrap(), "!");

        let mut differs = Join::Replays {
            sent: "Hello from".into(),
        };
        assert_eq!(differs.text("Hello").unwrap(), "");
        assert!(differs.text(" there").is_err());
        assert!(!differs.caught_up());
    }

    #[test]
    fn a_prefill_continuation_loses_only_the_whitespace_it_repeats() {
        let mut join = Join::Continues { skip: " ".into() };
        assert_eq!(join.text(" You").unwrap(), "You");
        assert_eq!(join.text(" said").unwrap(), " said", "only once");
        let mut none = Join::Continues { skip: "\n".into() };
        assert_eq!(none.text("You").unwrap(), "You", "the model wrote none");
        assert_eq!(none.text("\nsaid").unwrap(), "\nsaid");
    }
}
