//! What the edge learns of a request besides its body: its id, the caller's key, a timeout the
//! client asked for, its session and trace headers. Read once, when the request starts.

use crate::config::Secret;
use http::HeaderMap;
use std::time::Duration;

/// What the edge learned of a request besides its body.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    pub id: String,
    /// A client-requested total timeout (`x-nines-timeout`, or the SDK's `x-stainless-timeout`);
    /// it can only shorten the configured one.
    pub timeout: Option<Duration>,
    /// The caller's key (`Authorization: Bearer` or `x-api-key`); `Debug` never prints it.
    pub credential: Option<Secret>,
    /// The session header's value (`[telemetry.sessions] header`).
    pub session: Option<String>,
    /// The client's W3C `traceparent`.
    pub traceparent: Option<String>,
}

impl RequestMeta {
    /// The request id set by the request-id layer (the client's own when it sent one); the
    /// caller's key; a client-requested timeout: `x-nines-timeout` (`"10s"`, `"1500ms"` or plain
    /// seconds) or else the OpenAI/Anthropic SDKs' `x-stainless-timeout` (seconds), since the
    /// client gives up then; the session from `session_header`; the client's `traceparent`.
    pub fn read(headers: &HeaderMap, session_header: &str) -> RequestMeta {
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        };
        let timeout = text("x-nines-timeout")
            .and_then(|v| seconds(v).or_else(|| humantime::parse_duration(v).ok()))
            .or_else(|| text("x-stainless-timeout").and_then(seconds));
        RequestMeta {
            id: text("x-request-id").unwrap_or_default().to_owned(),
            timeout,
            credential: crate::auth::credential(headers),
            session: text(session_header)
                .filter(|s| !s.is_empty())
                // Bounded: the value becomes a map key.
                .map(|s| s.chars().take(128).collect()),
            traceparent: text("traceparent").map(str::to_owned),
        }
    }
}

/// A positive number of seconds. Too large for a `Duration` (`1e308`) means "no shorter than
/// configured", not a panic; zero, negative and NaN are ignored.
fn seconds(v: &str) -> Option<Duration> {
    let secs = v.parse::<f64>().ok().filter(|s| *s > 0.0)?;
    Some(crate::clock::seconds(secs).unwrap_or(Duration::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeout(name: &str, value: &str) -> Option<Duration> {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
        RequestMeta::read(&headers, "x-session-id").timeout
    }

    #[test]
    fn client_timeouts_never_panic() {
        assert_eq!(
            timeout("x-nines-timeout", "1.5"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            timeout("x-nines-timeout", "250ms"),
            Some(Duration::from_millis(250))
        );
        assert_eq!(timeout("x-nines-timeout", "1e308"), Some(Duration::MAX));
        assert_eq!(timeout("x-stainless-timeout", "1e300"), Some(Duration::MAX));
        assert_eq!(timeout("x-stainless-timeout", "inf"), Some(Duration::MAX));
        for ignored in ["-3", "0", "NaN", "soon"] {
            assert_eq!(timeout("x-stainless-timeout", ignored), None, "{ignored}");
        }
    }
}
