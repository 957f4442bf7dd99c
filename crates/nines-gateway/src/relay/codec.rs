//! Stream codecs shared by the relays and continuations: a [`Decoder`] turns one upstream
//! dialect's SSE events into unified stream events, an [`Encoder`] writes unified events in the
//! client's dialect.

use nines_protocol::sse::SseEvent;
use nines_protocol::unified::{Dialect, StreamEvent};
use nines_protocol::{anthropic, bedrock, gemini, openai, replicate};

/// Decodes one upstream dialect's events.
pub enum Decoder {
    OpenAi(openai::ChunkDecoder),
    Anthropic(anthropic::StreamDecoder),
    Gemini(gemini::StreamDecoder),
    Replicate(replicate::StreamDecoder),
    Bedrock(bedrock::StreamDecoder),
}

impl Decoder {
    /// `id` names the stream for the dialects whose events carry none (Replicate, Bedrock).
    pub fn for_dialect(dialect: Dialect, id: &str, model: &str) -> Option<Decoder> {
        Some(match dialect {
            Dialect::OpenAi => Decoder::OpenAi(openai::ChunkDecoder::new()),
            Dialect::Anthropic => Decoder::Anthropic(anthropic::StreamDecoder::new()),
            Dialect::Gemini => Decoder::Gemini(gemini::StreamDecoder::new()),
            Dialect::Replicate => Decoder::Replicate(replicate::StreamDecoder::new(id, model)),
            Dialect::Bedrock => Decoder::Bedrock(bedrock::StreamDecoder::new(id)),
            Dialect::Runway => return None,
        })
    }

    pub fn feed(&mut self, event: &SseEvent, out: &mut Vec<StreamEvent>) -> Result<(), String> {
        match self {
            Decoder::OpenAi(d) => d.feed(&event.data, out).map_err(|e| e.to_string()),
            Decoder::Anthropic(d) => d.feed_sse(event, out).map_err(|e| e.to_string()),
            Decoder::Gemini(d) => d.feed_sse(event, out).map_err(|e| e.to_string()),
            Decoder::Bedrock(d) => d.feed_sse(event, out).map_err(|e| e.to_string()),
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

    pub fn encode(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
        match self {
            Encoder::OpenAi(e) => e.encode(event, out),
            Encoder::Anthropic(e) => e.encode(event, out),
        }
    }
}
