//! Decoding a prediction's SSE stream (`urls.stream`).
//!
//! `event: output` carries raw text (not JSON): one token, whose newlines arrive as several
//! `data:` lines that the SSE decoder joins with `\n`. `event: done` ends the stream; its data is
//! `{}` on success or `{"reason":"canceled"|"error"}`. `event: error` carries the failure.
//! Replicate's stream says nothing of the prediction's id or model, so the decoder is told them.

use crate::sse::SseEvent;
use crate::unified::{ErrorKind, FinishReason, StreamEvent};
use serde::Deserialize;

/// Stateful decoder of one prediction stream.
#[derive(Debug)]
pub struct StreamDecoder {
    id: String,
    model: String,
    started: bool,
    done: bool,
}

impl StreamDecoder {
    /// `id` and `model` are the prediction's (from the create answer), reported in `Start`.
    pub fn new(id: impl Into<String>, model: impl Into<String>) -> Self {
        StreamDecoder {
            id: id.into(),
            model: model.into(),
            started: false,
            done: false,
        }
    }

    /// Decodes one SSE event. Unknown event names are ignored. Never fails: every payload is
    /// either text or an optional JSON detail.
    pub fn feed(&mut self, event: &str, data: &str, out: &mut Vec<StreamEvent>) {
        match event {
            "output" | "" => {
                self.start(out);
                if !data.is_empty() {
                    out.push(StreamEvent::TextDelta {
                        choice: 0,
                        text: data.to_owned(),
                    });
                }
            }
            "done" => {
                let reason = serde_json::from_str::<Done>(data)
                    .ok()
                    .and_then(|d| d.reason)
                    .unwrap_or_default();
                self.start(out);
                match reason.as_str() {
                    "canceled" => out.push(StreamEvent::Error {
                        message: "the prediction was canceled".into(),
                        kind: ErrorKind::Server.as_str().into(),
                    }),
                    "error" => out.push(StreamEvent::Error {
                        message: "the prediction failed".into(),
                        kind: ErrorKind::Server.as_str().into(),
                    }),
                    _ => {
                        self.done = true;
                        out.push(StreamEvent::Finish {
                            choice: 0,
                            reason: FinishReason::Stop,
                        });
                        out.push(StreamEvent::Done);
                    }
                }
            }
            "error" => {
                let message = match serde_json::from_str::<Detail>(data) {
                    Ok(Detail {
                        detail: Some(detail),
                        ..
                    })
                    | Ok(Detail {
                        error: Some(detail),
                        ..
                    }) => detail,
                    _ => data.to_owned(),
                };
                out.push(StreamEvent::Error {
                    message,
                    kind: ErrorKind::Server.as_str().into(),
                });
            }
            _ => {}
        }
    }

    /// [`StreamDecoder::feed`] with an event from [`crate::sse::SseDecoder`].
    pub fn feed_sse(&mut self, event: &SseEvent, out: &mut Vec<StreamEvent>) {
        self.feed(event.event.as_deref().unwrap_or(""), &event.data, out);
    }

    /// Whether a successful `done` was seen.
    pub fn is_done(&self) -> bool {
        self.done
    }

    fn start(&mut self, out: &mut Vec<StreamEvent>) {
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Start {
                id: self.id.clone(),
                model: self.model.clone(),
            });
        }
    }
}

#[derive(Deserialize)]
struct Done {
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize)]
struct Detail {
    #[serde(default)]
    detail: Option<String>,
    #[serde(default)]
    error: Option<String>,
}
