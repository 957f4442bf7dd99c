//! OpenAI's legacy text completions: `POST /v1/completions`, plain and streamed.
//!
//! The reply is the chat reply to the prompt (`Hello from {name}! You said: {prompt}`), one
//! word per stream event, cut by `stop` and by `max_tokens` (16 when absent, the API's default).
//! Like the real endpoint it refuses what it does not know: a field outside the completions
//! API (a chat body's `messages`, say) is "Unrecognized request argument supplied", and
//! `prompt` must be a string or a list of strings.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::chat::CREATED;
use crate::effects;
use crate::openai::{ERROR_SHAPE, context_length_exceeded};
use crate::state::MockState;
use crate::text::{self, Ending};
use crate::{error, sse};

/// The completions API's parameters; anything else is refused.
const FIELDS: [&str; 18] = [
    "model",
    "prompt",
    "best_of",
    "echo",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "max_tokens",
    "n",
    "presence_penalty",
    "seed",
    "stop",
    "stream",
    "stream_options",
    "suffix",
    "temperature",
    "top_p",
    "user",
];

/// The API's default `max_tokens`.
const DEFAULT_MAX_TOKENS: u64 = 16;

pub(crate) async fn completions(
    State(state): State<MockState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed = serde_json::from_slice::<Map<String, Value>>(&body);
    let streaming = parsed
        .as_ref()
        .is_ok_and(|r| r.get("stream").and_then(Value::as_bool) == Some(true));
    let fault = match effects::gate(&state, &headers, ERROR_SHAPE, streaming).await {
        Ok(fault) => fault,
        Err(response) => return response,
    };
    let plan = match parsed
        .map_err(|e| format!("invalid completions request: {e}"))
        .and_then(|req| Planned::of(&state, &req))
    {
        Ok(plan) => plan,
        Err(message) => return error::invalid_request(message),
    };
    if fault.as_ref().is_some_and(|f| f.context_too_long) {
        return context_length_exceeded(plan.prompt_tokens, "prompt");
    }
    if streaming {
        sse::response(state, plan.chunks(), fault)
    } else {
        Json(plan.body()).into_response()
    }
}

struct Planned {
    id: String,
    model: String,
    words: Vec<String>,
    ending: Ending,
    prompt_tokens: u64,
    include_usage: bool,
}

impl Planned {
    fn of(state: &MockState, req: &Map<String, Value>) -> Result<Planned, String> {
        if let Some(unknown) = req.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(format!("Unrecognized request argument supplied: {unknown}"));
        }
        let model = match req.get("model") {
            Some(Value::String(m)) if !m.is_empty() => m.clone(),
            _ => return Err("you must provide a model parameter".into()),
        };
        let prompt = match req.get("prompt") {
            Some(Value::String(p)) => p.clone(),
            Some(Value::Array(items)) if items.iter().all(Value::is_string) => items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("\n"),
            _ => return Err("'prompt' must be a string or an array of strings".into()),
        };
        let max_tokens = match req.get("max_tokens") {
            None | Some(Value::Null) => DEFAULT_MAX_TOKENS,
            Some(v) => v
                .as_u64()
                .ok_or("'max_tokens' must be a non-negative integer")?,
        };
        let stops: Vec<String> = match req.get("stop") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .map(|s| s.as_str().map(str::to_owned))
                .collect::<Option<_>>()
                .ok_or("'stop' must be a string or an array of strings")?,
            Some(_) => return Err("'stop' must be a string or an array of strings".into()),
        };
        let words = text::reply_words(state.name(), &prompt);
        let (words, ending) = text::end_reply(words, &stops, Some(max_tokens));
        Ok(Planned {
            id: format!("cmpl-mock{}", state.next_completion_id()),
            model,
            words,
            ending,
            prompt_tokens: text::estimate_tokens(&prompt),
            include_usage: req
                .get("stream_options")
                .and_then(|o| o.get("include_usage"))
                .and_then(Value::as_bool)
                .unwrap_or(false),
        })
    }

    fn finish_reason(&self) -> &'static str {
        match self.ending {
            Ending::Length => "length",
            Ending::Complete | Ending::StopSequence(_) => "stop",
        }
    }

    fn usage(&self) -> Value {
        let completion = self.words.len() as u64;
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        })
    }

    fn envelope(&self, choices: Value) -> Value {
        json!({
            "id": self.id,
            "object": "text_completion",
            "created": CREATED,
            "model": self.model,
            "choices": choices,
        })
    }

    fn body(&self) -> Value {
        let mut body = self.envelope(json!([{
            "text": self.words.join(" "),
            "index": 0,
            "logprobs": null,
            "finish_reason": self.finish_reason(),
        }]));
        body["usage"] = self.usage();
        body
    }

    /// One chunk per word, the last carrying `finish_reason`; then the usage chunk (empty
    /// `choices`) when asked for.
    fn chunks(&self) -> Vec<String> {
        let pieces = text::pieces(&self.words);
        let last = pieces.len().saturating_sub(1);
        let mut chunks: Vec<String> = pieces
            .iter()
            .enumerate()
            .map(|(i, piece)| {
                let finish = (i == last).then(|| self.finish_reason());
                self.envelope(json!([{
                    "text": piece,
                    "index": 0,
                    "logprobs": null,
                    "finish_reason": finish,
                }]))
                .to_string()
            })
            .collect();
        if pieces.is_empty() {
            chunks.push(
                self.envelope(json!([{
                    "text": "",
                    "index": 0,
                    "logprobs": null,
                    "finish_reason": self.finish_reason(),
                }]))
                .to_string(),
            );
        }
        if self.include_usage {
            let mut usage = self.envelope(json!([]));
            usage["usage"] = self.usage();
            chunks.push(usage.to_string());
        }
        chunks
    }
}
