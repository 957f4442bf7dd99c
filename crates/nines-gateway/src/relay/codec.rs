//! Stream codecs shared by the relays and continuations: a [`Decoder`] turns one upstream
//! dialect's SSE events into unified stream events, an [`Encoder`] writes unified events in the
//! client's dialect.

use crate::conversations::Keep;
use crate::providers::Endpoint;
use nines_protocol::sse::SseEvent;
use nines_protocol::unified::{Dialect, StreamEvent};
use nines_protocol::{anthropic, gemini, openai, openai_responses, replicate};

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

    pub fn feed(&mut self, event: &SseEvent, out: &mut Vec<StreamEvent>) -> Result<(), String> {
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
    // Boxed: it keeps the output so far, which its `….done` events repeat.
    Responses(Box<openai_responses::StreamEncoder>, Option<Keep>),
}

impl Encoder {
    /// The encoder for a client of `ingress` on `endpoint` (a Responses client speaks OpenAI's
    /// other API).
    pub fn for_client(
        ingress: Dialect,
        endpoint: Endpoint,
        model: &str,
        include_usage: bool,
    ) -> Encoder {
        if endpoint == Endpoint::Responses {
            return Encoder::Responses(
                Box::new(
                    openai_responses::StreamEncoder::new(crate::clock::unix_secs())
                        .with_model(model)
                        .with_id(crate::translate::new_response_id()),
                ),
                None,
            );
        }
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

    /// A Responses encoder that keeps its completed response for the next turn
    /// (`previous_response_id`); other encoders ignore `keep`.
    pub fn keeping(mut self, keep: Option<Keep>) -> Encoder {
        if let Encoder::Responses(_, slot) = &mut self {
            *slot = keep;
        }
        self
    }

    pub fn encode(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
        match self {
            Encoder::OpenAi(e) => e.encode(event, out),
            Encoder::Anthropic(e) => e.encode(event, out),
            Encoder::Responses(e, keep) => {
                e.encode(event, out);
                if let (StreamEvent::Done, Some(keep)) = (event, keep.take())
                    && let Some(response) = e.completed_response()
                {
                    keep.response(&response);
                }
            }
        }
    }
}
