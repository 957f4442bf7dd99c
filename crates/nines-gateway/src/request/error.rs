//! The request edge's errors: one enum for everything a proxied request can end in besides an
//! answer. Each has one status ([`GatewayError::status`]), one metric label
//! ([`GatewayError::label`]) and its attempt count ([`GatewayError::attempts`]); the request's
//! end records exactly these, and `api::error` renders the body with the same status.

use crate::access::AccessError;
use crate::resilience::{AttemptRecord, FailureClass, Unavailable};
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
    /// The body did not arrive within `server.body_read_timeout`.
    #[error("the request body did not arrive within {} (server.body_read_timeout)", humantime::format_duration(*.0))]
    BodyTimeout(std::time::Duration),
    /// The body could not be read (client went away or sent a broken body).
    #[error("could not read the request body: {0}")]
    BodyRead(String),
    /// No route for this model name.
    #[error(
        "The model '{0}' does not exist or you do not have access to it. List available models with GET /v1/models."
    )]
    ModelNotFound(String),
    /// No handler for this path (the edge adds the list of endpoints served, `api::ENDPOINTS`).
    #[error("Unknown request URL: {method} {path}.")]
    RouteNotFound { method: String, path: String },
    /// The path exists but not for this method.
    #[error("Method {method} is not allowed for {path}.")]
    MethodNotAllowed { method: String, path: String },
    /// A non-retryable answer from the upstream, relayed with its status.
    #[error("upstream rejected the request with status {}", .0.status)]
    Upstream(Box<Rejected>),
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
        why: Unavailable,
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
    #[error("No deployment of model '{model}' supports this request: it needs {}. Nothing was dropped silently; choose a model whose deployments support it, or let a deployment drop what it cannot take (drop_unsupported_params).", missing.join(", "))]
    MissingCapability { model: String, missing: Vec<String> },
    /// The route has no candidate that could be tried.
    #[error("no deployment of model '{model}' can take this request")]
    NoCandidates { model: String },
    /// Auth or admission refused the request before any upstream call.
    #[error(transparent)]
    Access(#[from] AccessError),
    /// The gateway is shutting down: the request was still sending its body when the listener
    /// closed, or still waiting for an upstream when the shutdown grace ended (503, retryable
    /// elsewhere).
    #[error("The gateway is shutting down; send the request again (another replica will take it).")]
    ShuttingDown,
    /// A bug in nines; the message is safe to show.
    #[error("internal error: {0}")]
    Internal(String),
}

/// A non-retryable upstream answer (boxed in [`GatewayError::Upstream`]: its headers and body
/// would make every `Result` carrying the error large).
#[derive(Debug)]
pub struct Rejected {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub attempts: Vec<AttemptRecord>,
}

impl GatewayError {
    /// A non-retryable upstream answer, relayed as it is.
    pub fn upstream(
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
        attempts: Vec<AttemptRecord>,
    ) -> GatewayError {
        GatewayError::Upstream(Box::new(Rejected {
            status,
            headers,
            body,
            attempts,
        }))
    }

    /// The HTTP status of each error: decided here and nowhere else.
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::Upstream(rejected) => rejected.status,
            GatewayError::AllFailed {
                deadline_hit: true, ..
            } => StatusCode::GATEWAY_TIMEOUT,
            // Every deployment said the prompt does not fit: the client's request is too large,
            // so it gets the 400 `context_length_exceeded` SDKs know, not a gateway error.
            GatewayError::AllFailed { attempts, .. }
                if !attempts.is_empty()
                    && attempts
                        .iter()
                        .all(|a| a.class == FailureClass::ContextTooLong) =>
            {
                StatusCode::BAD_REQUEST
            }
            GatewayError::AllFailed { .. } => StatusCode::BAD_GATEWAY,
            GatewayError::BadRequest(_)
            | GatewayError::BodyRead(_)
            | GatewayError::MissingCapability { .. }
            | GatewayError::ContextTooLong { .. } => StatusCode::BAD_REQUEST,
            // Every deployment full: the client is asked to slow down, as a rate limit would.
            GatewayError::Unavailable {
                why: Unavailable::AtCapacity,
                ..
            } => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            GatewayError::ModelNotFound(_) | GatewayError::RouteNotFound { .. } => {
                StatusCode::NOT_FOUND
            }
            GatewayError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::NoCandidates { .. } | GatewayError::Unavailable { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            GatewayError::Access(e) => e.status(),
            GatewayError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The upstream attempts made before this error (all of them, whatever the error).
    pub fn attempt_records(&self) -> &[AttemptRecord] {
        match self {
            GatewayError::Upstream(rejected) => &rejected.attempts,
            GatewayError::AllFailed { attempts, .. }
            | GatewayError::Unavailable { attempts, .. } => attempts,
            _ => &[],
        }
    }

    /// How many upstream attempts the request made before this error.
    pub fn attempts(&self) -> usize {
        self.attempt_records().len()
    }

    /// Low-cardinality label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            GatewayError::BadRequest(_) => "bad_request",
            GatewayError::BodyTooLarge { .. } => "body_too_large",
            GatewayError::BodyTimeout(_) => "body_timeout",
            GatewayError::BodyRead(_) => "body_read",
            GatewayError::ModelNotFound(_) => "model_not_found",
            GatewayError::RouteNotFound { .. } => "route_not_found",
            GatewayError::MethodNotAllowed { .. } => "method_not_allowed",
            GatewayError::Upstream(_) => "upstream_rejected",
            GatewayError::AllFailed {
                deadline_hit: true, ..
            } => "deadline",
            GatewayError::AllFailed { .. } => "all_failed",
            GatewayError::NoCandidates { .. } => "no_candidates",
            GatewayError::MissingCapability { .. } => "missing_capability",
            GatewayError::ContextTooLong { .. } => "context_length_exceeded",
            GatewayError::Unavailable {
                why: Unavailable::AtCapacity,
                ..
            } => "at_capacity",
            GatewayError::Unavailable {
                why: Unavailable::AllOpen,
                ..
            } => "all_breakers_open",
            GatewayError::Unavailable { .. } => "retry_budget_spent",
            GatewayError::Access(e) => e.label(),
            GatewayError::ShuttingDown => "shutting_down",
            GatewayError::Internal(_) => "internal",
        }
    }
}
