//! The gateway's own errors: one enum for everything a request can end in besides success.
//! `api::error` decides the status code and body of each, in one place.

use crate::resilience::AttemptRecord;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use nines_protocol::openai::RequestError;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The request body is not a valid request.
    #[error("{0}")]
    BadRequest(#[from] RequestError),
    /// The body is larger than the configured limit.
    #[error("request body exceeds the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    /// The body could not be read (client went away or sent a broken body).
    #[error("could not read the request body: {0}")]
    BodyRead(String),
    /// No route for this model name.
    #[error(
        "The model '{0}' does not exist or you do not have access to it. List available models with GET /v1/models."
    )]
    ModelNotFound(String),
    /// No handler for this path.
    #[error(
        "Unknown request URL: {method} {path}. See the API reference: POST /v1/chat/completions, POST /v1/embeddings, GET /v1/models."
    )]
    RouteNotFound { method: String, path: String },
    /// The path exists but not for this method.
    #[error("Method {method} is not allowed for {path}.")]
    MethodNotAllowed { method: String, path: String },
    /// A non-retryable answer from the upstream, relayed with its status.
    #[error("upstream rejected the request with status {status}")]
    Upstream {
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
        attempts: Vec<AttemptRecord>,
    },
    /// Every candidate failed (or the deadline ran out).
    #[error("all upstream attempts failed")]
    AllFailed {
        model: String,
        attempts: Vec<AttemptRecord>,
        deadline_hit: bool,
    },
    /// Nothing could be tried now (every key slot's breaker open, or the retry budget spent).
    #[error("model '{model}' is temporarily unavailable")]
    Unavailable {
        model: String,
        why: crate::resilience::Unavailable,
        retry_after: std::time::Duration,
        attempts: Vec<AttemptRecord>,
    },
    /// The prompt plus requested output fits no deployment's context window.
    #[error("This request needs about {needed} tokens (prompt + max output), more than any deployment of model '{model}' accepts; the largest context window available is {}.", largest_window.map_or("unknown".to_owned(), |w| format!("{w} tokens")))]
    ContextTooLong {
        model: String,
        needed: u64,
        largest_window: Option<u64>,
    },
    /// No deployment of the model supports what the request needs.
    #[error("No deployment of model '{model}' supports this request: it needs {}. Nothing was dropped silently; choose a model whose deployments support it.", missing.join(", "))]
    MissingCapability {
        model: String,
        missing: Vec<&'static str>,
    },
    /// The route has no candidate that could be tried.
    #[error("no deployment of model '{model}' can take this request")]
    NoCandidates { model: String },
    /// No valid API key: missing, unknown, revoked or expired (401, no upstream call).
    #[error("{message}")]
    Unauthorized { message: String, code: &'static str },
    /// The key may not use this model (403).
    #[error("This API key is not allowed to use model '{model}'.")]
    ModelNotAllowed { model: String },
    /// A rate limit or budget at some level refused the request before any upstream call (429).
    #[error("{}", .0.message())]
    Limited(Box<crate::limits::Denied>),
    /// The key store or the shared limiter could not answer, and nines will not guess (503).
    #[error("{0}")]
    AccessUnavailable(String),
    /// Admin API: the input is invalid (400).
    #[error("{0}")]
    Invalid(String),
    /// Admin API: no such organisation, user or key (404).
    #[error("{0}")]
    NotFound(String),
    /// Admin API: the name is taken (409).
    #[error("{0}")]
    Conflict(String),
    /// A bug in nines; the message is safe to show.
    #[error("internal error: {0}")]
    Internal(String),
}

impl GatewayError {
    /// How many upstream attempts the request made before this error.
    pub fn attempts(&self) -> usize {
        match self {
            GatewayError::Upstream { attempts, .. } | GatewayError::AllFailed { attempts, .. } => {
                attempts.len()
            }
            _ => 0,
        }
    }

    /// Low-cardinality label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            GatewayError::BadRequest(_) => "bad_request",
            GatewayError::BodyTooLarge { .. } => "body_too_large",
            GatewayError::BodyRead(_) => "body_read",
            GatewayError::ModelNotFound(_) => "model_not_found",
            GatewayError::RouteNotFound { .. } => "route_not_found",
            GatewayError::MethodNotAllowed { .. } => "method_not_allowed",
            GatewayError::Upstream { .. } => "upstream_rejected",
            GatewayError::AllFailed {
                deadline_hit: true, ..
            } => "deadline",
            GatewayError::AllFailed { .. } => "all_failed",
            GatewayError::NoCandidates { .. } => "no_candidates",
            GatewayError::MissingCapability { .. } => "missing_capability",
            GatewayError::ContextTooLong { .. } => "context_length_exceeded",
            GatewayError::Unavailable {
                why: crate::resilience::Unavailable::AtCapacity,
                ..
            } => "at_capacity",
            GatewayError::Unavailable {
                why: crate::resilience::Unavailable::AllOpen,
                ..
            } => "all_breakers_open",
            GatewayError::Unavailable { .. } => "retry_budget_spent",
            GatewayError::Unauthorized { .. } => "unauthorized",
            GatewayError::ModelNotAllowed { .. } => "model_not_allowed",
            GatewayError::Limited(d) => match d.tripped {
                crate::limits::Tripped::Window(_) => "rate_limited",
                crate::limits::Tripped::Budget(_) => "budget_exhausted",
            },
            GatewayError::AccessUnavailable(_) => "access_unavailable",
            GatewayError::Invalid(_) => "invalid",
            GatewayError::NotFound(_) => "not_found",
            GatewayError::Conflict(_) => "conflict",
            GatewayError::Internal(_) => "internal",
        }
    }
}
