use super::*;
use crate::sse::SseEvent;
use crate::unified::{
    ChatRequest, ErrorKind, FinishReason, Message, Role, StreamEvent, Tool, ToolCall, ToolChoice,
    Usage,
};
use serde_json::{Value, json};

fn event(name: &str, data: Value) -> SseEvent {
    SseEvent {
        event: Some(name.to_owned()),
        data: data.to_string(),
    }
}

#[test]
fn the_path_encodes_the_model_id_as_one_segment() {
    assert_eq!(
        converse_path("anthropic.claude-3-haiku-20240307-v1:0", false),
        "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
    );
    assert_eq!(
        converse_path("arn:aws:bedrock:us-east-1:1:inference-profile/x", true),
        "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Ainference-profile%2Fx/converse-stream"
    );
}

#[test]
fn a_request_becomes_converse_blocks() {
    let mut assistant = Message::text(Role::Assistant, "Let me look.");
    assistant.tool_calls.push(ToolCall {
        id: "t1".into(),
        name: "get_weather".into(),
        arguments: r#"{"city":"Paris"}"#.into(),
    });
    let mut request = ChatRequest::new(
        "m",
        vec![
            Message::text(Role::System, "Be brief."),
            Message::text(Role::User, "Weather?"),
            assistant,
            Message::tool_result("t1", "sunny"),
            Message::text(Role::User, "Thanks"),
        ],
    );
    request.max_tokens = Some(100);
    request.temperature = Some(0.5);
    request.stop = vec!["END".into()];
    request.tools = vec![Tool {
        name: "get_weather".into(),
        description: Some("The weather".into()),
        parameters: json!({"type": "object"}),
        strict: None,
    }];
    request.tool_choice = Some(ToolChoice::Function("get_weather".into()));
    let body: Value = serde_json::from_slice(&encode_request(&request)).unwrap();
    assert_eq!(
        body,
        json!({
            "system": [{"text": "Be brief."}],
            "messages": [
                {"role": "user", "content": [{"text": "Weather?"}]},
                {"role": "assistant", "content": [
                    {"text": "Let me look."},
                    {"toolUse": {"toolUseId": "t1", "name": "get_weather", "input": {"city": "Paris"}}}
                ]},
                {"role": "user", "content": [
                    {"toolResult": {"toolUseId": "t1", "content": [{"text": "sunny"}]}},
                    {"text": "Thanks"}
                ]}
            ],
            "inferenceConfig": {"maxTokens": 100, "temperature": 0.5, "stopSequences": ["END"]},
            "toolConfig": {
                "tools": [{"toolSpec": {"name": "get_weather", "description": "The weather",
                    "inputSchema": {"json": {"type": "object"}}}}],
                "toolChoice": {"tool": {"name": "get_weather"}}
            }
        })
    );
}

#[test]
fn a_response_decodes_text_tools_and_usage() {
    let body = json!({
        "output": {"message": {"role": "assistant", "content": [
            {"text": "Hi"},
            {"toolUse": {"toolUseId": "tooluse_1", "name": "f", "input": {"a": 1}}}
        ]}},
        "stopReason": "tool_use",
        "usage": {"inputTokens": 10, "outputTokens": 5, "totalTokens": 15, "cacheReadInputTokens": 2}
    });
    let response = decode_response(body.to_string().as_bytes()).unwrap();
    assert_eq!(response.id, "");
    let choice = &response.choices[0];
    assert_eq!(choice.finish_reason, Some(FinishReason::ToolCalls));
    assert_eq!(choice.message.joined_text(), "Hi");
    assert_eq!(choice.message.tool_calls[0].id, "tooluse_1");
    assert_eq!(choice.message.tool_calls[0].arguments, r#"{"a":1}"#);
    assert_eq!(
        response.usage,
        Some(Usage {
            input_tokens: 12,
            output_tokens: 5,
            cache_read_tokens: 2,
            cache_write_tokens: 0
        })
    );
    assert!(decode_response(b"{\"message\":\"no\"}").is_err());
}

#[test]
fn a_stream_decodes_in_unified_order() {
    let mut decoder = StreamDecoder::new("req-2");
    let mut out = Vec::new();
    for e in [
        event("messageStart", json!({"role": "assistant"})),
        event(
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"text": "Hi"}}),
        ),
        event("contentBlockStop", json!({"contentBlockIndex": 0})),
        event(
            "contentBlockStart",
            json!({"contentBlockIndex": 1,
            "start": {"toolUse": {"toolUseId": "tu1", "name": "f"}}}),
        ),
        event(
            "contentBlockDelta",
            json!({"contentBlockIndex": 1,
            "delta": {"toolUse": {"input": "{\"a\":"}}}),
        ),
        event(
            "contentBlockDelta",
            json!({"contentBlockIndex": 1,
            "delta": {"toolUse": {"input": "1}"}}}),
        ),
        event("messageStop", json!({"stopReason": "tool_use"})),
        event(
            "metadata",
            json!({"usage": {"inputTokens": 3, "outputTokens": 4}, "metrics": {"latencyMs": 1}}),
        ),
    ] {
        decoder.feed_sse(&e, &mut out).unwrap();
    }
    assert!(decoder.is_done());
    assert_eq!(
        out,
        vec![
            StreamEvent::Start {
                id: "req-2".into(),
                model: String::new()
            },
            StreamEvent::TextDelta {
                choice: 0,
                text: "Hi".into()
            },
            StreamEvent::ToolCallStart {
                choice: 0,
                index: 0,
                id: "tu1".into(),
                name: "f".into()
            },
            StreamEvent::ToolCallDelta {
                choice: 0,
                index: 0,
                arguments: "{\"a\":".into()
            },
            StreamEvent::ToolCallDelta {
                choice: 0,
                index: 0,
                arguments: "1}".into()
            },
            StreamEvent::Finish {
                choice: 0,
                reason: FinishReason::ToolCalls
            },
            StreamEvent::Usage(Usage {
                input_tokens: 3,
                output_tokens: 4,
                ..Usage::default()
            }),
            StreamEvent::Done,
        ]
    );
}

#[test]
fn exceptions_and_errors_map_to_kinds() {
    let data = exception_event("throttlingException", br#"{"message":"Too many requests"}"#);
    let mut out = Vec::new();
    StreamDecoder::new("r")
        .feed_sse(
            &event("error", serde_json::from_str(&data).unwrap()),
            &mut out,
        )
        .unwrap();
    assert_eq!(
        out,
        vec![StreamEvent::Error {
            message: "Too many requests".into(),
            kind: "rate_limited".into()
        }]
    );
    let parsed = parse_error(
        br#"{"message":"Input is too long for requested model."}"#,
        Some("ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/"),
    )
    .unwrap();
    assert_eq!(parsed.kind, ErrorKind::ContextTooLong);
    assert_eq!(parsed.provider_type.as_deref(), Some("ValidationException"));
    let parsed = parse_error(
        br#"{"__type":"com.amazon#ServiceUnavailableException","message":"x"}"#,
        None,
    )
    .unwrap();
    assert_eq!(parsed.kind, ErrorKind::Overloaded);
    assert_eq!(
        error_kind("InvalidSignatureException", ""),
        ErrorKind::Authentication
    );
}
