//! Decoding `streamGenerateContent?alt=sse`: every `data:` payload is a whole
//! `GenerateContentResponse` holding the next slice of each candidate.
//!
//! Gemini sends no end marker: the stream is over when every candidate has a `finishReason`
//! (the same chunk carries the final `usageMetadata`, which Gemini repeats, growing, on every
//! chunk). The decoder therefore emits `Finish` per candidate as it comes, and `Usage` and `Done`
//! once all candidates seen have finished. Function calls arrive whole, so each becomes a
//! `ToolCallStart` plus one `ToolCallDelta` carrying all its arguments.

use super::response::{InResponse, InUsage, finish_reason};
use crate::json::Str;
use crate::sse::SseEvent;
use crate::unified::{DecodeError, ErrorKind, FinishReason, StreamEvent, Usage};

#[derive(Debug, Default, Clone, Copy)]
struct Candidate {
    tools: u32,
    finished: bool,
}

/// Stateful decoder of one Gemini stream.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    started: bool,
    done: bool,
    candidates: Vec<Candidate>,
    /// The latest usage seen; Gemini repeats it, growing, on every chunk.
    usage: Option<Usage>,
}

/// More candidates than `candidateCount` allows; bounds state against a bad upstream.
const MAX_CANDIDATES: usize = 64;

impl StreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes one `data:` payload, appending its events to `out`.
    pub fn feed(&mut self, data: &str, out: &mut Vec<StreamEvent>) -> Result<(), DecodeError> {
        let chunk: InResponse<'_> = serde_json::from_str(data)
            .map_err(|e| DecodeError::new("gemini", "stream chunk", e.to_string()))?;
        if let Some(error) = chunk.error {
            let parsed = super::errors::parse_error_value(&error);
            out.push(StreamEvent::Error {
                message: parsed
                    .as_ref()
                    .map(|p| p.message.clone())
                    .unwrap_or_default(),
                kind: parsed
                    .map_or(ErrorKind::Unknown, |p| p.kind)
                    .as_str()
                    .to_owned(),
            });
            return Ok(());
        }
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Start {
                id: chunk.response_id.map(Str::into_owned).unwrap_or_default(),
                model: chunk.model_version.map(Str::into_owned).unwrap_or_default(),
            });
        }
        if let Some(usage) = chunk.usage_metadata {
            self.usage = Some(InUsage::into_unified(usage));
        }
        let blocked = chunk.prompt_feedback.and_then(|f| f.block_reason).is_some();
        if blocked && chunk.candidates.is_empty() {
            out.push(StreamEvent::Finish {
                choice: 0,
                reason: FinishReason::ContentFilter,
            });
            self.end(out);
            return Ok(());
        }
        for (position, candidate) in chunk.candidates.into_iter().enumerate() {
            let choice = candidate.index.unwrap_or(position as u32);
            let slot = choice as usize;
            if slot >= MAX_CANDIDATES {
                return Err(DecodeError::new(
                    "gemini",
                    "stream chunk",
                    format!("candidate index {choice} is out of range"),
                ));
            }
            if self.candidates.len() <= slot {
                self.candidates.resize(slot + 1, Candidate::default());
            }
            for part in candidate.content.map(|c| c.parts).unwrap_or_default() {
                if part.thought == Some(true) {
                    continue;
                }
                if let Some(text) = part.text.filter(|t| !t.is_empty()) {
                    out.push(StreamEvent::TextDelta {
                        choice,
                        text: text.into_owned(),
                    });
                }
                if let Some(call) = part.function_call {
                    let index = self.candidates[slot].tools;
                    self.candidates[slot].tools += 1;
                    let signature = part.thought_signature.as_deref();
                    let call = call.into_unified(index as usize, signature);
                    out.push(StreamEvent::ToolCallStart {
                        choice,
                        index,
                        id: call.id,
                        name: call.name,
                    });
                    out.push(StreamEvent::ToolCallDelta {
                        choice,
                        index,
                        arguments: call.arguments,
                    });
                }
            }
            let has_calls = self.candidates[slot].tools > 0;
            let reason = candidate
                .finish_reason
                .as_deref()
                .and_then(|r| finish_reason(r, has_calls));
            if let Some(reason) = reason {
                self.candidates[slot].finished = true;
                out.push(StreamEvent::Finish { choice, reason });
            }
        }
        if !self.candidates.is_empty() && self.candidates.iter().all(|c| c.finished) {
            self.end(out);
        }
        Ok(())
    }

    /// [`StreamDecoder::feed`] with an event from [`crate::sse::SseDecoder`].
    pub fn feed_sse(
        &mut self,
        event: &SseEvent,
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), DecodeError> {
        self.feed(&event.data, out)
    }

    /// Whether every candidate has finished (the stream is complete).
    pub fn is_done(&self) -> bool {
        self.done
    }

    fn end(&mut self, out: &mut Vec<StreamEvent>) {
        if self.done {
            return;
        }
        self.done = true;
        if let Some(usage) = self.usage {
            out.push(StreamEvent::Usage(usage));
        }
        out.push(StreamEvent::Done);
    }
}
