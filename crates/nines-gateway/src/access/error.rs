//! Why access was refused: one enum for the access stages, each with its status, metric label
//! and attempt count (always 0: a refusal comes before any upstream call). The body each is
//! rendered with is `api::error`'s.

use crate::limits::{Denied, Tripped};
use http::StatusCode;

#[derive(Debug, Clone, thiserror::Error)]
pub enum AccessError {
    /// No valid API key: missing, unknown, revoked or expired (401, no upstream call).
    #[error("{message}")]
    Unauthorized { message: String, code: &'static str },
    /// The key may not use this model (403).
    #[error("This API key is not allowed to use model '{model}'.")]
    ModelNotAllowed { model: String },
    /// A rate limit or budget at some level refused the request before any upstream call (429).
    #[error("{}", .0.message())]
    Limited(Box<Denied>),
    /// The key store or the shared limiter could not answer, and nines will not guess (503).
    #[error("{0}")]
    Unavailable(String),
}

impl AccessError {
    /// The HTTP status: decided here and nowhere else.
    pub fn status(&self) -> StatusCode {
        match self {
            AccessError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            AccessError::ModelNotAllowed { .. } => StatusCode::FORBIDDEN,
            // Budgets too: 429 with `insufficient_quota`, as OpenAI answers an exhausted quota,
            // and `x-should-retry: false` so SDKs do not retry it.
            AccessError::Limited(_) => StatusCode::TOO_MANY_REQUESTS,
            AccessError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Low-cardinality label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            AccessError::Unauthorized { .. } => "unauthorized",
            AccessError::ModelNotAllowed { .. } => "model_not_allowed",
            AccessError::Limited(d) => match d.tripped {
                Tripped::Window(_) => "rate_limited",
                Tripped::Budget(_) => "budget_exhausted",
            },
            AccessError::Unavailable(_) => "access_unavailable",
        }
    }

    /// The limit level that refused the request, when a limit did.
    pub fn limited_at(&self) -> Option<&'static str> {
        match self {
            AccessError::Limited(denied) => Some(denied.level.as_str()),
            _ => None,
        }
    }
}

impl From<crate::auth::AuthError> for AccessError {
    fn from(e: crate::auth::AuthError) -> Self {
        match e {
            crate::auth::AuthError::Unauthorized { message, code } => {
                AccessError::Unauthorized { message, code }
            }
            crate::auth::AuthError::Unavailable(why) => AccessError::Unavailable(why),
        }
    }
}
