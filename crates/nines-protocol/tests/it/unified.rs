//! The unified model: capability requirements, capability sets, error kinds.

use crate::{json_schema_request, rich_request};
use nines_protocol::unified::{
    Capabilities, ChatRequest, EmbeddingsRequest, EncodingFormat, ErrorKind, Message, Role,
};
use nines_protocol::{anthropic, gemini, openai, replicate};
use serde_json::Map;

#[test]
fn a_plain_request_needs_nothing() {
    let request = ChatRequest::new("m", vec![Message::text(Role::User, "hi")]);
    assert_eq!(request.required_capabilities(), Capabilities::NONE);
    assert!(
        replicate::CAPABILITIES
            .missing(request.required_capabilities())
            .is_empty()
    );
}

#[test]
fn each_feature_requires_its_capability() {
    let required = rich_request().required_capabilities();
    assert_eq!(
        required,
        Capabilities::STREAMING
            | Capabilities::TOOLS
            | Capabilities::VISION
            | Capabilities::IMAGE_URLS,
        "its image is given by URL"
    );
    let required = json_schema_request().required_capabilities();
    assert_eq!(
        required,
        Capabilities::JSON_SCHEMA | Capabilities::MULTIPLE_CHOICES | Capabilities::SEED
    );

    let mut request = ChatRequest::new(
        "m",
        vec![
            Message::text(Role::User, "hi"),
            Message::text(Role::Assistant, "{"),
        ],
    );
    request.logprobs = true;
    assert_eq!(
        request.required_capabilities(),
        Capabilities::ASSISTANT_PREFILL | Capabilities::LOGPROBS
    );
    request.logprobs = false;
    request.top_logprobs = Some(3);
    assert!(
        request
            .required_capabilities()
            .contains(Capabilities::LOGPROBS)
    );
    request.response_format = Some(nines_protocol::unified::ResponseFormat::Text);
    assert!(
        !request
            .required_capabilities()
            .contains(Capabilities::JSON_SCHEMA)
    );

    let embeddings = EmbeddingsRequest {
        model: "e".into(),
        inputs: vec!["x".into()],
        dimensions: None,
        encoding_format: EncodingFormat::Float,
        extra: Map::new(),
    };
    assert_eq!(embeddings.required_capabilities(), Capabilities::EMBEDDINGS);
}

#[test]
fn missing_names_the_gap_per_dialect() {
    let required = json_schema_request().required_capabilities() | Capabilities::STREAMING;
    // Anthropic answers JSON through a forced tool, but has no `n` and no `seed`.
    assert_eq!(
        anthropic::CAPABILITIES.missing(required),
        ["multiple_choices", "seed"]
    );
    assert!(gemini::CAPABILITIES.missing(required).is_empty());
    assert!(openai::CAPABILITIES.missing(required).is_empty());
    assert_eq!(
        replicate::CAPABILITIES.missing(rich_request().required_capabilities()),
        ["tools", "vision", "image_urls"]
    );
    let prefill = Capabilities::ASSISTANT_PREFILL;
    assert_eq!(openai::CAPABILITIES.missing(prefill), ["assistant_prefill"]);
    assert!(anthropic::CAPABILITIES.missing(prefill).is_empty());
    assert_eq!(
        anthropic::CAPABILITIES.missing(Capabilities::EMBEDDINGS),
        ["embeddings"]
    );
}

#[test]
fn capability_names_round_trip() {
    let names: Vec<&str> = Capabilities::ALL.names().collect();
    assert_eq!(names.len(), 19);
    let mut rebuilt = Capabilities::NONE;
    for name in &names {
        rebuilt = rebuilt.with(Capabilities::from_name(name).unwrap());
    }
    assert_eq!(rebuilt, Capabilities::ALL);
    assert_eq!(Capabilities::from_name("telepathy"), None);
    assert_eq!(
        format!("{:?}", Capabilities::TOOLS | Capabilities::VISION),
        "{\"tools\", \"vision\"}"
    );
    assert!(
        Capabilities::ALL
            .without(Capabilities::TOOLS)
            .missing(Capabilities::TOOLS)
            == ["tools"]
    );
    assert!(Capabilities::NONE.is_empty());
}

#[test]
fn error_kinds_round_trip_their_names() {
    let all = [
        ErrorKind::RateLimited,
        ErrorKind::QuotaExhausted,
        ErrorKind::Overloaded,
        ErrorKind::Server,
        ErrorKind::Timeout,
        ErrorKind::ContextTooLong,
        ErrorKind::InvalidRequest,
        ErrorKind::Authentication,
        ErrorKind::Permission,
        ErrorKind::NotFound,
        ErrorKind::ContentFilter,
        ErrorKind::Unknown,
    ];
    for kind in all {
        assert_eq!(ErrorKind::from_name(kind.as_str()), kind);
        assert_eq!(kind.to_string(), kind.as_str());
    }
    assert!(!ErrorKind::InvalidRequest.is_retryable());
    assert!(!ErrorKind::ContentFilter.is_retryable());
    assert!(ErrorKind::ContextTooLong.is_retryable());
    assert_eq!(ErrorKind::from_status(529), ErrorKind::Overloaded);
    assert_eq!(ErrorKind::from_status(502), ErrorKind::Server);
    assert_eq!(ErrorKind::from_status(429), ErrorKind::RateLimited);
}
