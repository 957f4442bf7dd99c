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
            // `0s` is a duration, but no timeout a request could keep: ignored like `0`.
            .filter(|d| !d.is_zero())
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
/// configured", not a panic; zero, negative, NaN and less than a nanosecond (`1e-120`, which
/// would round to a zero timeout) are ignored.
fn seconds(v: &str) -> Option<Duration> {
    let secs = v.parse::<f64>().ok().filter(|s| *s > 0.0)?;
    Some(crate::clock::seconds(secs).unwrap_or(Duration::MAX)).filter(|d| !d.is_zero())
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

    /// Found by the `headers` fuzz target: `x-nines-timeout: 0` (or `0s`, `0ms`) went through
    /// humantime as a zero timeout, and a positive number of seconds below a nanosecond
    /// (`1e-120`) rounded to one, in either header; a zero timeout ends the request at once.
    #[test]
    fn a_zero_client_timeout_is_ignored() {
        for zero in [
            "0",
            "0s",
            "0ms",
            "0ns",
            " 0 ",
            "0h 0m",
            "1e-120",
            "0.0000000001",
        ] {
            assert_eq!(timeout("x-nines-timeout", zero), None, "{zero:?}");
        }
        for zero in ["1e-120", "4.9e-324", "0.0000000001"] {
            assert_eq!(timeout("x-stainless-timeout", zero), None, "{zero:?}");
        }
        assert_eq!(
            timeout("x-stainless-timeout", "0.5"),
            Some(Duration::from_millis(500))
        );
        let mut headers = HeaderMap::new();
        headers.insert("x-nines-timeout", "0s".parse().unwrap());
        headers.insert("x-stainless-timeout", "30".parse().unwrap());
        assert_eq!(
            RequestMeta::read(&headers, "x-session-id").timeout,
            Some(Duration::from_secs(30)),
            "a zero x-nines-timeout leaves the SDK's timeout in force"
        );
    }
}
