//! Stream codecs shared by the relays and continuations: a [`Decoder`] turns one upstream
//! dialect's SSE events into unified stream events, an [`Encoder`] writes unified events in the
//! client's dialect.

use crate::conversations::Keep;
use crate::providers::Endpoint;
use nines_protocol::sse::SseEvent;
use nines_protocol::unified::json_tool::JsonToolStream;
use nines_protocol::unified::{Dialect, StreamEvent};
use nines_protocol::{anthropic, bedrock, gemini, openai, openai_responses, replicate};

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
    Bedrock(bedrock::StreamDecoder),
}

impl Decoder {
    /// `id` names the stream for the dialects whose events carry none (Replicate, Bedrock).
    pub fn for_dialect(dialect: Dialect, id: &str, model: &str) -> Option<Decoder> {
        let dialect = match dialect {
            Dialect::OpenAi => DialectDecoder::OpenAi(openai::ChunkDecoder::new()),
            Dialect::Anthropic => DialectDecoder::Anthropic(anthropic::StreamDecoder::new()),
            Dialect::Gemini => DialectDecoder::Gemini(gemini::StreamDecoder::new()),
            Dialect::Replicate => {
                DialectDecoder::Replicate(replicate::StreamDecoder::new(id, model))
            }
            Dialect::Bedrock => DialectDecoder::Bedrock(bedrock::StreamDecoder::new(id)),
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
            DialectDecoder::Bedrock(d) => d.feed_sse(event, out).map_err(|e| e.to_string())?,
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
