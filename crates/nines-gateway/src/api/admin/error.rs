//! The admin API's errors: one enum, each with its status and metric label. Bodies are
//! OpenAI-shaped like every other error (`api::error`).

use crate::store::StoreError;
use http::StatusCode;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The admin API is off, or the caller did not show the admin key (401).
    #[error("{message}")]
    Unauthorized { message: String, code: &'static str },
    /// The input is invalid (400).
    #[error("{0}")]
    Invalid(String),
    /// No such organisation, user, key or model (404).
    #[error("{0}")]
    NotFound(String),
    /// The name is taken (409).
    #[error("{0}")]
    Conflict(String),
    /// There is no store, or it failed (503).
    #[error("{0}")]
    Unavailable(String),
}

impl AdminError {
    /// The HTTP status: decided here and nowhere else.
    pub fn status(&self) -> StatusCode {
        match self {
            AdminError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            AdminError::Invalid(_) => StatusCode::BAD_REQUEST,
            AdminError::NotFound(_) => StatusCode::NOT_FOUND,
            AdminError::Conflict(_) => StatusCode::CONFLICT,
            AdminError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Low-cardinality label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            AdminError::Unauthorized { .. } => "unauthorized",
            AdminError::Invalid(_) => "invalid",
            AdminError::NotFound(_) => "not_found",
            AdminError::Conflict(_) => "conflict",
            AdminError::Unavailable(_) => "unavailable",
        }
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => AdminError::NotFound(format!("{what} not found")),
            StoreError::Invalid(m) => AdminError::Invalid(m),
            StoreError::Conflict(m) => AdminError::Conflict(m),
            e => {
                tracing::warn!(error = %e, "admin store call failed");
                AdminError::Unavailable(format!("the store failed: {e}"))
            }
        }
    }
}
