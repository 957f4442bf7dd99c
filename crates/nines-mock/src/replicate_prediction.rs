//! One Replicate prediction as the mock remembers it, and the prediction object every read
//! answers.
//!
//! It lives apart from the handlers in `replicate.rs` because `state.rs` stores it: the
//! handlers depend on the state, so the state cannot depend on them. Its SSE form stays with
//! the handlers, since the SSE body depends on the state too.

use serde_json::{Value, json};

use crate::FaultScript;

/// Fixed timestamps: content must not depend on the wall clock.
const CREATED_AT: &str = "2023-11-14T22:13:20.000000Z";
const STARTED_AT: &str = "2023-11-14T22:13:20.100000Z";
const COMPLETED_AT: &str = "2023-11-14T22:13:21.000000Z";
const PREDICT_TIME: f64 = 0.9;

/// How a prediction ends.
#[derive(Clone, Debug)]
pub(crate) enum Outcome {
    /// With these output tokens (words with their trailing spaces, so they concatenate).
    Succeeded(Vec<String>),
    Failed(String),
    Canceled,
}

/// One remembered prediction.
#[derive(Clone, Debug)]
pub(crate) struct Prediction {
    pub(crate) id: String,
    pub(crate) model: String,
    pub(crate) version: String,
    pub(crate) input: Value,
    pub(crate) outcome: Outcome,
    pub(crate) input_tokens: u64,
    pub(crate) output_tokens: u64,
    /// `http://{host}`, for the absolute `urls`.
    pub(crate) origin: String,
    /// The fault drawn at creation; its stream effects break `GET /v1/stream/{id}`.
    pub(crate) fault: FaultScript,
}

impl Prediction {
    /// The prediction object: just created (`starting`), or in its final state.
    pub(crate) fn json(&self, finished: bool) -> Value {
        let url = |path: &str| format!("{}/v1/{path}/{}", self.origin, self.id);
        let mut v = json!({
            "id": self.id,
            "model": self.model,
            "version": self.version,
            "input": self.input,
            "logs": "",
            "output": null,
            "data_removed": false,
            "error": null,
            "status": "starting",
            "created_at": CREATED_AT,
            "urls": {
                "get": url("predictions"),
                "cancel": format!("{}/cancel", url("predictions")),
                "stream": url("stream"),
            },
        });
        if !finished {
            return v;
        }
        match &self.outcome {
            Outcome::Succeeded(tokens) => {
                v["status"] = "succeeded".into();
                v["output"] = json!(tokens);
            }
            Outcome::Failed(error) => {
                v["status"] = "failed".into();
                v["error"] = error.as_str().into();
            }
            Outcome::Canceled => v["status"] = "canceled".into(),
        }
        v["started_at"] = STARTED_AT.into();
        v["completed_at"] = COMPLETED_AT.into();
        v["metrics"] = json!({
            "input_token_count": self.input_tokens,
            "output_token_count": self.output_tokens,
            "predict_time": PREDICT_TIME,
        });
        v
    }
}
