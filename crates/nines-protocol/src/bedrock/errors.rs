//! Bedrock errors: an HTTP error body is `{"message": "..."}` with the exception's name in the
//! `x-amzn-ErrorType` header (the body may also say `__type`); a ConverseStream exception is an
//! event-stream message whose `:exception-type` names it.

use crate::unified::{ErrorKind, ProviderError};
use serde_json::{Value, json};

/// Parses a Bedrock error body; `error_type` is the `x-amzn-ErrorType` header when there is one
/// (`ThrottlingException:http://...`: the part before `:` is the name). `None` when the body is
/// not an error object.
pub fn parse_error(body: &[u8], error_type: Option<&str>) -> Option<ProviderError> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let object = value.as_object()?;
    let message = object
        .get("message")
        .or_else(|| object.get("Message"))
        .and_then(Value::as_str)?
        .to_owned();
    let name = error_type
        .or_else(|| object.get("__type").and_then(Value::as_str))
        .map(|t| t.split(':').next().unwrap_or(t))
        .map(|t| t.rsplit('#').next().unwrap_or(t).to_owned());
    Some(ProviderError {
        kind: error_kind(name.as_deref().unwrap_or(""), &message),
        message,
        provider_type: name,
        code: None,
    })
}

/// The unified kind of a Bedrock exception name (either case of its first letter: HTTP errors
/// say `ThrottlingException`, stream exceptions `throttlingException`).
pub fn error_kind(name: &str, message: &str) -> ErrorKind {
    let lower = message.to_ascii_lowercase();
    match name.to_ascii_lowercase().as_str() {
        "throttlingexception" | "toomanyrequestsexception" => ErrorKind::RateLimited,
        "servicequotaexceededexception" => ErrorKind::QuotaExhausted,
        "serviceunavailableexception" | "modelnotreadyexception" => ErrorKind::Overloaded,
        "internalserverexception" | "modelstreamerrorexception" | "modelerrorexception" => {
            ErrorKind::Server
        }
        "modeltimeoutexception" => ErrorKind::Timeout,
        "accessdeniedexception" => ErrorKind::Permission,
        "unrecognizedclientexception"
        | "invalidsignatureexception"
        | "expiredtokenexception"
        | "incompletesignatureexception" => ErrorKind::Authentication,
        "resourcenotfoundexception" => ErrorKind::NotFound,
        "validationexception" => {
            if lower.contains("too long") || lower.contains("too many tokens") {
                ErrorKind::ContextTooLong
            } else {
                ErrorKind::InvalidRequest
            }
        }
        _ => ErrorKind::Unknown,
    }
}

/// The SSE data of a ConverseStream exception message, as the Bedrock provider relays it (with
/// `event: error`): `{"error":{"type": exception name, "message"}}`.
pub fn exception_event(exception_type: &str, payload: &[u8]) -> String {
    let message = serde_json::from_slice::<Value>(payload)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(payload).into_owned());
    json!({"error": {"type": exception_type, "message": message}}).to_string()
}
