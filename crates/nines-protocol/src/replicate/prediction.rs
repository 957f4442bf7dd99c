//! The Replicate prediction object and what it means for a chat request.

use crate::unified::{
    ChatResponse, Choice, DecodeError, ErrorKind, FinishReason, Message, ProviderError, Role, Usage,
};
use serde::Deserialize;
use serde_json::Value;

/// A prediction's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PredictionStatus {
    Starting,
    Processing,
    Succeeded,
    Failed,
    Canceled,
    /// A state added after this code was written; treated as still running.
    #[serde(other)]
    Unknown,
}

/// A decoded prediction.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub id: String,
    pub model: String,
    pub status: PredictionStatus,
    /// The output so far: a string, or an array of string tokens joined.
    pub output: Option<String>,
    /// The failure message, when `status` is `failed`.
    pub error: Option<String>,
    /// `urls.stream`: the SSE stream of a prediction created with `"stream": true`.
    pub stream_url: Option<String>,
    /// `urls.get`: where to poll.
    pub get_url: Option<String>,
    /// `urls.cancel`.
    pub cancel_url: Option<String>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
}

/// What a prediction means for the request that created it.
#[derive(Debug, Clone, PartialEq)]
pub enum PredictionOutcome {
    /// `starting` / `processing`: poll `get_url` or read `stream_url`.
    Pending,
    Succeeded(ChatResponse),
    /// The model failed (the gateway treats it as a server failure: another deployment may work).
    Failed {
        message: String,
    },
    /// Canceled by its owner (or by nines, for a hedge loser).
    Canceled,
}

/// Decodes a prediction object (the answer to create, get or cancel).
pub fn decode_prediction(body: &[u8]) -> Result<Prediction, DecodeError> {
    let wire: InPrediction = serde_json::from_slice(body)
        .map_err(|e| DecodeError::new("replicate", "prediction", e.to_string()))?;
    let urls = wire.urls.unwrap_or_default();
    let metrics = wire.metrics.unwrap_or_default();
    Ok(Prediction {
        id: wire.id,
        model: wire.model,
        status: wire.status,
        output: output_text(wire.output),
        error: match wire.error {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(other) => Some(other.to_string()),
        },
        stream_url: urls.stream,
        get_url: urls.get,
        cancel_url: urls.cancel,
        input_tokens: metrics.input_token_count,
        output_tokens: metrics.output_token_count,
    })
}

fn output_text(output: Option<Value>) -> Option<String> {
    match output? {
        Value::Null => None,
        Value::String(s) => Some(s),
        Value::Array(items) => Some(
            items
                .iter()
                .map(|item| match item {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect(),
        ),
        other => Some(other.to_string()),
    }
}

impl Prediction {
    /// The prediction as the answer to a chat request. `created` is 0 (the gateway fills it in).
    pub fn outcome(&self) -> PredictionOutcome {
        match self.status {
            PredictionStatus::Starting
            | PredictionStatus::Processing
            | PredictionStatus::Unknown => PredictionOutcome::Pending,
            PredictionStatus::Failed => PredictionOutcome::Failed {
                message: self
                    .error
                    .clone()
                    .unwrap_or_else(|| String::from("prediction failed")),
            },
            PredictionStatus::Canceled => PredictionOutcome::Canceled,
            PredictionStatus::Succeeded => {
                let usage = match (self.input_tokens, self.output_tokens) {
                    (None, None) => None,
                    (input, output) => Some(Usage {
                        input_tokens: input.unwrap_or(0),
                        output_tokens: output.unwrap_or(0),
                        ..Usage::default()
                    }),
                };
                PredictionOutcome::Succeeded(ChatResponse {
                    id: self.id.clone(),
                    model: self.model.clone(),
                    created: 0,
                    choices: vec![Choice {
                        index: 0,
                        message: Message::text(
                            Role::Assistant,
                            self.output.clone().unwrap_or_default(),
                        ),
                        finish_reason: Some(FinishReason::Stop),
                    }],
                    usage,
                })
            }
        }
    }
}

/// Parses a Replicate API error (`application/problem+json`: `{"detail","status","title"}`).
pub fn parse_error(body: &[u8]) -> Option<ProviderError> {
    let wire: InProblem = serde_json::from_slice(body).ok()?;
    let message = wire.detail.or_else(|| wire.title.clone())?;
    let kind = wire
        .status
        .map_or(ErrorKind::Unknown, ErrorKind::from_status);
    Some(ProviderError {
        kind,
        message,
        provider_type: wire.title,
        code: wire.status.map(|s| s.to_string()),
    })
}

#[derive(Deserialize)]
struct InPrediction {
    id: String,
    #[serde(default)]
    model: String,
    status: PredictionStatus,
    #[serde(default)]
    output: Option<Value>,
    #[serde(default)]
    error: Option<Value>,
    #[serde(default)]
    urls: Option<InUrls>,
    #[serde(default)]
    metrics: Option<InMetrics>,
}

#[derive(Deserialize, Default)]
struct InUrls {
    #[serde(default)]
    get: Option<String>,
    #[serde(default)]
    cancel: Option<String>,
    #[serde(default)]
    stream: Option<String>,
}

#[derive(Deserialize, Default)]
struct InMetrics {
    #[serde(default)]
    input_token_count: Option<u64>,
    #[serde(default)]
    output_token_count: Option<u64>,
}

#[derive(Deserialize)]
struct InProblem {
    #[serde(default)]
    detail: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    status: Option<u16>,
}
