use super::*;
use bytes::Bytes;
use http::HeaderMap;

fn status(code: u16, body: &str) -> FailureClass {
    classify(&Outcome::Status {
        status: StatusCode::from_u16(code).unwrap(),
        headers: HeaderMap::new(),
        body: Bytes::from(body.to_owned()),
    })
}

#[test]
fn statuses() {
    assert_eq!(status(429, "{}"), FailureClass::RateLimited);
    assert_eq!(
        status(429, r#"{"error":{"code":"insufficient_quota"}}"#),
        FailureClass::QuotaExhausted
    );
    assert_eq!(status(529, ""), FailureClass::Overloaded);
    assert_eq!(
        status(503, r#"{"error":{"type":"overloaded_error"}}"#),
        FailureClass::Overloaded
    );
    assert_eq!(status(503, "down"), FailureClass::Server);
    assert_eq!(status(500, ""), FailureClass::Server);
    assert_eq!(status(504, ""), FailureClass::Server);
    assert_eq!(status(401, ""), FailureClass::UpstreamAuth);
    assert_eq!(status(403, ""), FailureClass::UpstreamAuth);
    assert_eq!(
        status(400, r#"{"error":{"code":"context_length_exceeded"}}"#),
        FailureClass::ContextTooLong
    );
    assert_eq!(
        status(400, r#"{"error":{"code":"content_filter"}}"#),
        FailureClass::ContentFiltered
    );
    assert_eq!(status(400, "{}"), FailureClass::Client);
    assert_eq!(status(404, "{}"), FailureClass::Client);
    let gemini_key = r#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT"}}"#;
    assert_eq!(status(400, gemini_key), FailureClass::UpstreamAuth);
    let gemini_long = r#"{"error":{"code":400,"message":"The input token count (9000) exceeds the maximum number of tokens allowed (8192).","status":"INVALID_ARGUMENT"}}"#;
    assert_eq!(status(400, gemini_long), FailureClass::ContextTooLong);
    let bedrock_long = r#"{"message":"Input is too long for requested model."}"#;
    assert_eq!(status(400, bedrock_long), FailureClass::ContextTooLong);
}

#[test]
fn bedrock_stream_exceptions_keep_their_class() {
    let stream = |data: &str| classify(&Outcome::StreamError { data: data.into() });
    let throttled = r#"{"error":{"message":"Too many requests","type":"throttlingException"}}"#;
    assert_eq!(stream(throttled), FailureClass::RateLimited);
    let unavailable = r#"{"error":{"message":"down","type":"serviceUnavailableException"}}"#;
    assert_eq!(stream(unavailable), FailureClass::Overloaded);
    let other = r#"{"error":{"message":"boom","type":"internalServerException"}}"#;
    assert_eq!(stream(other), FailureClass::Server);
}

#[test]
fn transports_and_retryability() {
    let t = |t| classify(&Outcome::Transport(t));
    assert_eq!(
        t(Transport::Connect("refused".into())),
        FailureClass::Connect
    );
    assert_eq!(t(Transport::FirstByteTimeout), FailureClass::Timeout);
    assert_eq!(t(Transport::Malformed("x".into())), FailureClass::Malformed);
    assert!(FailureClass::Server.is_retryable());
    assert!(FailureClass::UpstreamAuth.is_retryable());
    assert!(!FailureClass::Client.is_retryable());
    assert!(!FailureClass::ContentFiltered.is_retryable());
    assert_eq!(
        classify(&Outcome::StreamError {
            data: "{\"error\":{}}".into()
        }),
        FailureClass::Server
    );
}
