//! Stream codecs shared by the relays and continuations: a [`Decoder`] turns one upstream
//! dialect's SSE events into unified stream events, an [`Encoder`] writes unified events in the
//! client's dialect.

use nines_protocol::sse::SseEvent;
use nines_protocol::unified::json_tool::JsonToolStream;
use nines_protocol::unified::{Dialect, StreamEvent};
use nines_protocol::{anthropic, gemini, openai, replicate};

/// Decodes one upstream dialect's events, with a JSON answer made through the forced tool
/// turned back into text when the request asked for one (`unified::json_tool`).
pub struct Decoder {
    dialect: DialectDecoder,
    json_tool: Option<JsonToolStream>,
}

enum DialectDecoder {
    OpenAi(openai::ChunkDecoder),
    Anthropic(anthropic::StreamDecoder),
    Gemini(gemini::StreamDecoder),
    Replicate(replicate::StreamDecoder),
}

impl Decoder {
    /// `id` is only used by Replicate, whose stream events carry no id of their own.
    pub fn for_dialect(dialect: Dialect, id: &str, model: &str) -> Option<Decoder> {
        let dialect = match dialect {
            Dialect::OpenAi => DialectDecoder::OpenAi(openai::ChunkDecoder::new()),
            Dialect::Anthropic => DialectDecoder::Anthropic(anthropic::StreamDecoder::new()),
            Dialect::Gemini => DialectDecoder::Gemini(gemini::StreamDecoder::new()),
            Dialect::Replicate => {
                DialectDecoder::Replicate(replicate::StreamDecoder::new(id, model))
            }
            Dialect::Runway => return None,
        };
        Some(Decoder {
            dialect,
            json_tool: None,
        })
    }

    /// An OpenAI chunk decoder (continuations are decoded as OpenAI chunks).
    pub fn openai() -> Decoder {
        Decoder {
            dialect: DialectDecoder::OpenAi(openai::ChunkDecoder::new()),
            json_tool: None,
        }
    }

    /// The same decoder, turning the forced JSON tool's call into text.
    #[must_use]
    pub fn with_json_tool(mut self, json_tool: bool) -> Decoder {
        self.json_tool = json_tool.then(JsonToolStream::new);
        self
    }

    pub fn feed(&mut self, event: &SseEvent, out: &mut Vec<StreamEvent>) -> Result<(), String> {
        let from = out.len();
        match &mut self.dialect {
            DialectDecoder::OpenAi(d) => d.feed(&event.data, out).map_err(|e| e.to_string())?,
            DialectDecoder::Anthropic(d) => d.feed_sse(event, out).map_err(|e| e.to_string())?,
            DialectDecoder::Gemini(d) => d.feed_sse(event, out).map_err(|e| e.to_string())?,
            DialectDecoder::Replicate(d) => d.feed_sse(event, out),
        }
        if let Some(json_tool) = &mut self.json_tool {
            json_tool.map(out, from);
        }
        Ok(())
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
