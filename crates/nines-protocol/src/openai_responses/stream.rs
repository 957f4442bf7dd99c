//! Unified stream events as the Responses API's typed SSE events.
//!
//! The Responses stream is a lifecycle, not a list of deltas: `response.created` and
//! `response.in_progress` open it; each output item is announced (`response.output_item.added`,
//! plus `response.content_part.added` for a message's text), filled (`response.output_text.delta`,
//! `response.function_call_arguments.delta`), closed with its whole content (`….done` events and
//! `response.output_item.done`); `response.completed` (or `response.incomplete`) ends it with the
//! whole response. Every event carries a `sequence_number` counting from 0. An error ends it with
//! an `error` event and `response.failed`.
//!
//! The encoder therefore keeps the output it has sent (the text and arguments so far), which the
//! `….done` events and the final response repeat in full.

use super::response::{OutputItem, OutputText, ResponseMeta, Status, WireError, WireResponse};
use crate::json;
use crate::unified::{FinishReason, StreamEvent, Usage};
use serde::Serialize;

/// Writes unified stream events as Responses events.
pub struct StreamEncoder {
    meta: ResponseMeta,
    model_override: Option<String>,
    id_override: Option<String>,
    started: bool,
    sequence: u64,
    /// Output items so far; the last one may still be open.
    output: Vec<OutputItem>,
    /// Whether the last item of `output` is still open.
    open: bool,
    /// Unified tool-call index → position in `output`.
    calls: Vec<(u32, usize)>,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
    ended: bool,
    /// Set when the stream ended in an error.
    failed: bool,
}

impl Default for StreamEncoder {
    fn default() -> Self {
        Self::new(0)
    }
}

impl StreamEncoder {
    /// `created_at` is the response's Unix time (the gateway's clock).
    pub fn new(created_at: u64) -> Self {
        StreamEncoder {
            meta: ResponseMeta {
                id: String::new(),
                created_at,
                model: String::new(),
            },
            model_override: None,
            id_override: None,
            started: false,
            sequence: 0,
            output: Vec::new(),
            open: false,
            calls: Vec::new(),
            finish: None,
            usage: None,
            ended: false,
            failed: false,
        }
    }

    /// Gives the response this id (`resp_…`) instead of one made from the upstream's.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id_override = Some(id.into());
        self
    }

    /// Reports `model` as the response's model whatever the upstream's events say.
    pub fn with_model(mut self, model: impl Into<String>) -> Self {
        self.model_override = Some(model.into());
        self
    }

    /// Appends the events for one unified event to `out`.
    pub fn encode(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        match event {
            StreamEvent::Start { id, model } => self.start(id, model, out),
            StreamEvent::TextDelta { choice: 0, text } => {
                self.ensure_started(out);
                let index = self.text_item(out);
                let item_id = self.output[index].id().to_owned();
                if let OutputItem::Message { content, .. } = &mut self.output[index]
                    && let Some(part) = content.first_mut()
                {
                    part.text.push_str(text);
                }
                emit(
                    &mut self.sequence,
                    out,
                    "response.output_text.delta",
                    &TextDelta {
                        item_id: &item_id,
                        output_index: index,
                        content_index: 0,
                        delta: text,
                        logprobs: [],
                    },
                );
            }
            // The Responses API has one output per response (`n` is always 1).
            StreamEvent::TextDelta { .. }
            | StreamEvent::ToolCallStart { choice: 1.., .. }
            | StreamEvent::ToolCallDelta { choice: 1.., .. }
            | StreamEvent::Finish { choice: 1.., .. } => {}
            StreamEvent::ToolCallStart {
                index, id, name, ..
            } => {
                self.ensure_started(out);
                self.close_open(out);
                let item = OutputItem::function_call(id, name, String::new(), Status::InProgress);
                self.output.push(item);
                self.open = true;
                let at = self.output.len() - 1;
                self.calls.push((*index, at));
                self.emit_item(out, "response.output_item.added", at);
            }
            StreamEvent::ToolCallDelta {
                index, arguments, ..
            } => {
                self.ensure_started(out);
                let Some(&(_, at)) = self.calls.iter().find(|(i, _)| i == index) else {
                    return;
                };
                if let OutputItem::FunctionCall { arguments: all, .. } = &mut self.output[at] {
                    all.push_str(arguments);
                }
                let item_id = self.output[at].id().to_owned();
                emit(
                    &mut self.sequence,
                    out,
                    "response.function_call_arguments.delta",
                    &ArgumentsDelta {
                        item_id: &item_id,
                        output_index: at,
                        delta: arguments,
                    },
                );
            }
            StreamEvent::Finish { reason, .. } => {
                self.ensure_started(out);
                self.finish = Some(*reason);
                self.close_open(out);
            }
            StreamEvent::Usage(usage) => self.usage = Some(*usage),
            StreamEvent::Error { message, kind } => {
                self.ensure_started(out);
                emit(
                    &mut self.sequence,
                    out,
                    "error",
                    &ErrorEvent {
                        code: kind,
                        message,
                        param: None,
                    },
                );
                let response = WireResponse::failed(
                    &self.meta,
                    &self.output,
                    WireError {
                        code: kind,
                        message,
                    },
                );
                emit(
                    &mut self.sequence,
                    out,
                    "response.failed",
                    &Wrapped { response },
                );
                self.ended = true;
                self.failed = true;
            }
            StreamEvent::Done => {
                self.ensure_started(out);
                self.close_open(out);
                let response =
                    WireResponse::new(&self.meta, self.finish, &self.output, self.usage.as_ref());
                let name = match response.status() {
                    Status::Incomplete => "response.incomplete",
                    _ => "response.completed",
                };
                emit(&mut self.sequence, out, name, &Wrapped { response });
                self.ended = true;
            }
        }
    }

    /// The whole `response` object once the stream completed (`response.completed` or
    /// `response.incomplete` was written), for whoever keeps responses.
    pub fn completed_response(&self) -> Option<Vec<u8>> {
        (self.ended && !self.failed).then(|| {
            json::to_vec(&WireResponse::new(
                &self.meta,
                self.finish,
                &self.output,
                self.usage.as_ref(),
            ))
        })
    }

    /// The frames for one event as a new buffer.
    pub fn encode_to_vec(&mut self, event: &StreamEvent) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.encode(event, &mut out);
        out
    }

    fn start(&mut self, id: &str, model: &str, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.meta.id = match &self.id_override {
            Some(id) => id.clone(),
            None => super::response_id(id),
        };
        self.meta.model = self
            .model_override
            .clone()
            .unwrap_or_else(|| model.to_owned());
        self.started = true;
        let response = WireResponse::in_progress(&self.meta);
        emit(
            &mut self.sequence,
            out,
            "response.created",
            &Wrapped { response },
        );
        let response = WireResponse::in_progress(&self.meta);
        emit(
            &mut self.sequence,
            out,
            "response.in_progress",
            &Wrapped { response },
        );
    }

    /// Streams whose first event is not a start (they still get the response's opening).
    fn ensure_started(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            self.start("", "", out);
        }
    }

    /// The open message item's position, opening one (and its text part) if needed.
    fn text_item(&mut self, out: &mut Vec<u8>) -> usize {
        if self.open
            && let Some(OutputItem::Message { .. }) = self.output.last()
        {
            return self.output.len() - 1;
        }
        self.close_open(out);
        let index = self.output.len();
        let mut item = OutputItem::message(&self.meta.id, index, String::new(), Status::InProgress);
        self.output.push(item.clone());
        self.open = true;
        self.emit_item(out, "response.output_item.added", index);
        let item_id = item.id().to_owned();
        emit(
            &mut self.sequence,
            out,
            "response.content_part.added",
            &PartEvent {
                item_id: &item_id,
                output_index: index,
                content_index: 0,
                part: &OutputText::new(String::new()),
            },
        );
        if let OutputItem::Message { content, .. } = &mut item {
            content.push(OutputText::new(String::new()));
        }
        self.output[index] = item;
        index
    }

    /// Closes the open item with its `….done` events.
    fn close_open(&mut self, out: &mut Vec<u8>) {
        if !self.open {
            return;
        }
        self.open = false;
        let index = self.output.len() - 1;
        let item_id = self.output[index].id().to_owned();
        match &mut self.output[index] {
            OutputItem::Message {
                status, content, ..
            } => {
                *status = Status::Completed;
                if content.is_empty() {
                    content.push(OutputText::new(String::new()));
                }
            }
            OutputItem::FunctionCall { status, .. } => *status = Status::Completed,
        }
        match self.output[index].clone() {
            OutputItem::Message { content, .. } => {
                let part = &content[0];
                emit(
                    &mut self.sequence,
                    out,
                    "response.output_text.done",
                    &TextDone {
                        item_id: &item_id,
                        output_index: index,
                        content_index: 0,
                        text: &part.text,
                        logprobs: [],
                    },
                );
                emit(
                    &mut self.sequence,
                    out,
                    "response.content_part.done",
                    &PartEvent {
                        item_id: &item_id,
                        output_index: index,
                        content_index: 0,
                        part,
                    },
                );
            }
            OutputItem::FunctionCall {
                name, arguments, ..
            } => {
                emit(
                    &mut self.sequence,
                    out,
                    "response.function_call_arguments.done",
                    &ArgumentsDone {
                        item_id: &item_id,
                        output_index: index,
                        name: &name,
                        arguments: &arguments,
                    },
                );
            }
        }
        self.emit_item(out, "response.output_item.done", index);
    }

    fn emit_item(&mut self, out: &mut Vec<u8>, name: &'static str, index: usize) {
        let item = self.output[index].clone();
        emit(
            &mut self.sequence,
            out,
            name,
            &ItemEvent {
                output_index: index,
                item: &item,
            },
        );
    }
}

/// One SSE frame: `event: <name>` and the payload with its `type` and `sequence_number`.
fn emit<T: Serialize>(sequence: &mut u64, out: &mut Vec<u8>, name: &'static str, payload: &T) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    json::write_to(
        out,
        &Typed {
            kind: name,
            sequence_number: *sequence,
            payload,
        },
    );
    out.extend_from_slice(b"\n\n");
    *sequence += 1;
}

#[derive(Serialize)]
struct Typed<'a, T> {
    #[serde(rename = "type")]
    kind: &'static str,
    sequence_number: u64,
    #[serde(flatten)]
    payload: &'a T,
}

#[derive(Serialize)]
struct Wrapped<'a> {
    response: WireResponse<'a>,
}

#[derive(Serialize)]
struct ItemEvent<'a> {
    output_index: usize,
    item: &'a OutputItem,
}

#[derive(Serialize)]
struct PartEvent<'a> {
    item_id: &'a str,
    output_index: usize,
    content_index: usize,
    part: &'a OutputText,
}

#[derive(Serialize)]
struct TextDelta<'a> {
    item_id: &'a str,
    output_index: usize,
    content_index: usize,
    delta: &'a str,
    logprobs: [(); 0],
}

#[derive(Serialize)]
struct TextDone<'a> {
    item_id: &'a str,
    output_index: usize,
    content_index: usize,
    text: &'a str,
    logprobs: [(); 0],
}

#[derive(Serialize)]
struct ArgumentsDelta<'a> {
    item_id: &'a str,
    output_index: usize,
    delta: &'a str,
}

#[derive(Serialize)]
struct ArgumentsDone<'a> {
    item_id: &'a str,
    output_index: usize,
    name: &'a str,
    arguments: &'a str,
}

#[derive(Serialize)]
struct ErrorEvent<'a> {
    code: &'a str,
    message: &'a str,
    param: Option<&'a str>,
}
