//! Anthropic codec: request reshaping, ingress parse, responses, stream decode/encode, errors.

use crate::{rich_request, sse_events, value};
use nines_protocol::anthropic::{
    self, DEFAULT_MAX_TOKENS, StreamDecoder, StreamEncoder, decode_response, encode_request,
    encode_response, parse_request,
};
use nines_protocol::openai::RequestError;
use nines_protocol::unified::{
    ChatRequest, ChatResponse, Choice, ContentPart, ErrorKind, FinishReason, Message, Role,
    StreamEvent, ToolCall, ToolChoice, Usage,
};
use serde_json::json;

#[test]
fn hoists_system_merges_turns_and_groups_tool_results() {
    let body = value(&encode_request(
        &rich_request(),
        "claude-haiku-4-5",
        DEFAULT_MAX_TOKENS,
    ));
    assert_eq!(body["system"], "You are terse.");
    let roles: Vec<&str> = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "user"]);
    let last = &body["messages"][2]["content"];
    assert_eq!(last[0]["type"], "tool_result");
    assert_eq!(last[0]["tool_use_id"], "call_a");
    assert_eq!(last[1]["tool_use_id"], "call_b");
    assert_eq!(last[1]["content"], "-3 and snowing");
    assert_eq!(last[2], json!({"type": "text", "text": "Which is warmer?"}));
    assert_eq!(
        body["messages"][1]["content"][1]["input"],
        json!({"city": "Paris"})
    );
    assert_eq!(body["max_tokens"], 300);
    assert_eq!(body["metadata"], json!({"user_id": "user-42"}));
    assert_eq!(body["temperature"], 0.2);
    assert!(
        body.get("top_p").is_none(),
        "Claude takes temperature or top_p, not both"
    );
    let mut only_top_p = rich_request();
    only_top_p.temperature = None;
    assert_eq!(value(&encode_request(&only_top_p, "c", 1))["top_p"], 0.9);
}

#[test]
fn max_tokens_defaults_and_tool_choice_maps() {
    let mut request = ChatRequest::new("m", vec![Message::text(Role::User, "hi")]);
    assert_eq!(
        value(&encode_request(&request, "c", 1234))["max_tokens"],
        1234
    );
    request.tools = vec![crate::weather_tool()];
    for (choice, parallel, expected) in [
        (Some(ToolChoice::Auto), None, Some(json!({"type": "auto"}))),
        (
            Some(ToolChoice::Required),
            None,
            Some(json!({"type": "any"})),
        ),
        (Some(ToolChoice::None), None, Some(json!({"type": "none"}))),
        (
            Some(ToolChoice::Function("get_weather".into())),
            Some(false),
            Some(json!({"type": "tool", "name": "get_weather", "disable_parallel_tool_use": true})),
        ),
        (
            None,
            Some(false),
            Some(json!({"type": "auto", "disable_parallel_tool_use": true})),
        ),
        (None, None, None),
    ] {
        request.tool_choice = choice;
        request.parallel_tool_calls = parallel;
        let body = value(&encode_request(&request, "c", 1));
        assert_eq!(body.get("tool_choice").cloned(), expected);
        assert_eq!(
            body["tools"][0]["input_schema"]["required"],
            json!(["city"])
        );
    }
    request.tools.clear();
    request.tool_choice = Some(ToolChoice::Required);
    assert!(
        value(&encode_request(&request, "c", 1))
            .get("tool_choice")
            .is_none(),
        "no tools, no choice"
    );
}

#[test]
fn prefill_is_trimmed_and_empty_text_dropped() {
    let request = ChatRequest::new(
        "m",
        vec![
            Message::text(Role::System, "one"),
            Message::text(Role::User, "Say hi as JSON"),
            Message::text(Role::System, "two"),
            Message::text(Role::User, ""),
            Message::text(Role::Assistant, "{\"greeting\": \n"),
        ],
    );
    let body = value(&encode_request(&request, "c", 1));
    assert_eq!(
        body["system"],
        json!([{"type": "text", "text": "one"}, {"type": "text", "text": "two"}])
    );
    assert_eq!(body["messages"].as_array().unwrap().len(), 2);
    assert_eq!(body["messages"][1]["content"][0]["text"], "{\"greeting\":");
    let tools_without_schema = ChatRequest {
        tools: vec![nines_protocol::unified::Tool {
            name: "t".into(),
            description: None,
            parameters: serde_json::Value::Null,
            strict: None,
        }],
        ..request
    };
    let body = value(&encode_request(&tools_without_schema, "c", 1));
    assert_eq!(
        body["tools"][0],
        json!({"name": "t", "input_schema": {"type": "object", "properties": {}}})
    );
}

#[test]
fn invalid_tool_arguments_become_an_empty_object() {
    let mut request = ChatRequest::new("m", vec![Message::text(Role::User, "x")]);
    request.messages.push(Message {
        content: vec![],
        tool_calls: vec![ToolCall {
            id: "t1".into(),
            name: "f".into(),
            arguments: "{\"unterminated".into(),
        }],
        ..Message::text(Role::Assistant, "")
    });
    request.messages.push(Message::tool_result("t1", "ok"));
    let body = value(&encode_request(&request, "c", 1));
    assert_eq!(body["messages"][1]["content"][0]["input"], json!({}));
}

#[test]
fn parses_ingress_requests() {
    let body = json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "system": [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "s"},
                {"type": "text", "text": "calling"},
                {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "r"}]},
                {"type": "text", "text": "and?"},
                {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}
            ]}
        ],
        "tools": [{"name": "f", "description": "d", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
        "stop_sequences": ["\n\nHuman:"],
        "temperature": 1.0,
        "top_k": 5,
        "stream": true,
        "metadata": {"user_id": "u1"}
    });
    let r = parse_request(body.to_string().as_bytes()).unwrap();
    let roles: Vec<Role> = r.messages.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [
            Role::System,
            Role::User,
            Role::Assistant,
            Role::Tool,
            Role::User
        ]
    );
    assert_eq!(r.messages[2].joined_text(), "calling");
    assert_eq!(r.messages[2].tool_calls[0].arguments, "{\"a\":1}");
    assert_eq!(r.messages[3].tool_call_id.as_deref(), Some("toolu_1"));
    assert_eq!(r.messages[4].content.len(), 2);
    assert_eq!(r.tool_choice, Some(ToolChoice::Required));
    assert_eq!(r.parallel_tool_calls, Some(false));
    assert_eq!(r.max_tokens, Some(1024));
    assert!(r.stream && r.include_usage);
    assert_eq!(r.user.as_deref(), Some("u1"));
    assert!(
        r.extra.is_empty(),
        "Anthropic-only fields are not OpenAI extras"
    );

    assert_eq!(
        parse_request(br#"{"messages":[]}"#),
        Err(RequestError::MissingModel)
    );
    assert_eq!(
        parse_request(br#"{"model":"m"}"#),
        Err(RequestError::Missing("messages"))
    );
    assert!(matches!(
        parse_request(b"{"),
        Err(RequestError::Malformed(_))
    ));
    let server_tool = json!({"model": "m", "max_tokens": 1, "messages": [], "tools": [{"type": "web_search_20250305", "name": "web_search"}]});
    assert!(matches!(
        parse_request(server_tool.to_string().as_bytes()),
        Err(RequestError::Unsupported(_))
    ));
}

#[test]
fn decodes_every_stop_reason() {
    for (wire, expected) in [
        ("end_turn", Some(FinishReason::Stop)),
        ("stop_sequence", Some(FinishReason::Stop)),
        ("max_tokens", Some(FinishReason::Length)),
        ("tool_use", Some(FinishReason::ToolCalls)),
        ("refusal", Some(FinishReason::ContentFilter)),
        ("pause_turn", Some(FinishReason::Stop)),
        ("model_context_window_exceeded", Some(FinishReason::Length)),
    ] {
        let body = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "c", "content": [], "stop_reason": wire, "usage": {"input_tokens": 1, "output_tokens": 1}});
        assert_eq!(
            decode_response(body.to_string().as_bytes())
                .unwrap()
                .choices[0]
                .finish_reason,
            expected,
            "{wire}"
        );
        assert_eq!(anthropic::finish_reason(wire), expected);
    }
    for reason in [
        FinishReason::Stop,
        FinishReason::Length,
        FinishReason::ToolCalls,
        FinishReason::ContentFilter,
    ] {
        assert_eq!(
            anthropic::finish_reason(anthropic::stop_reason(reason)),
            Some(reason)
        );
    }
}

#[test]
fn decodes_content_and_cache_usage() {
    let body = json!({
        "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
        "content": [
            {"type": "thinking", "thinking": "...", "signature": "x"},
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}}
        ],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 10, "output_tokens": 30, "cache_creation_input_tokens": 200, "cache_read_input_tokens": 1000}
    });
    let r = decode_response(body.to_string().as_bytes()).unwrap();
    assert_eq!(
        r.choices[0].message.content,
        [ContentPart::Text("Let me check.".into())]
    );
    assert_eq!(
        r.choices[0].message.tool_calls[0].arguments,
        "{\"city\":\"Paris\"}"
    );
    assert_eq!(
        r.usage,
        Some(Usage {
            input_tokens: 1210,
            output_tokens: 30,
            cache_read_tokens: 1000,
            cache_write_tokens: 200
        })
    );
    let encoded = value(&encode_response(&r));
    assert_eq!(
        encoded["usage"],
        json!({"input_tokens": 10, "output_tokens": 30, "cache_creation_input_tokens": 200, "cache_read_input_tokens": 1000})
    );
    assert_eq!(encoded["stop_reason"], "tool_use");
    assert!(decode_response(b"{\"type\":\"error\"}").is_err());
}

#[test]
fn encodes_an_empty_response() {
    let response = ChatResponse {
        id: "x".into(),
        model: "m".into(),
        created: 0,
        choices: vec![],
        usage: None,
    };
    let body = value(&encode_response(&response));
    assert_eq!(body["content"], json!([]));
    assert_eq!(body["stop_reason"], json!(null));
    let response = ChatResponse {
        choices: vec![Choice {
            index: 0,
            message: Message::text(Role::Assistant, "hi"),
            finish_reason: Some(FinishReason::Length),
        }],
        ..response
    };
    assert_eq!(
        value(&encode_response(&response))["stop_reason"],
        "max_tokens"
    );
}

/// A stream as Anthropic sends it: text, then a tool call whose JSON arrives in pieces.
pub const TOOL_STREAM: &str = concat!(
    "event: message_start\n",
    "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-haiku-4-5\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":472,\"cache_read_input_tokens\":100,\"output_tokens\":2}}}\n\n",
    "event: content_block_start\n",
    "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    "event: ping\n",
    "data: {\"type\": \"ping\"}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Okay, checking \u{1F324}\"}}\n\n",
    "event: content_block_stop\n",
    "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    "event: content_block_start\n",
    "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_01\",\"name\":\"get_weather\",\"input\":{}}}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\": \\\"Par\"}}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"is\\\"}\"}}\n\n",
    "event: content_block_stop\n",
    "data: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
    "event: message_delta\n",
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":89}}\n\n",
    "event: message_stop\n",
    "data: {\"type\":\"message_stop\"}\n\n",
);

pub fn tool_stream_events() -> Vec<StreamEvent> {
    vec![
        StreamEvent::Start {
            id: "msg_1".into(),
            model: "claude-haiku-4-5".into(),
        },
        StreamEvent::TextDelta {
            choice: 0,
            text: "Okay, checking \u{1F324}".into(),
        },
        StreamEvent::ToolCallStart {
            choice: 0,
            index: 0,
            id: "toolu_01".into(),
            name: "get_weather".into(),
        },
        StreamEvent::ToolCallDelta {
            choice: 0,
            index: 0,
            arguments: "{\"city\": \"Par".into(),
        },
        StreamEvent::ToolCallDelta {
            choice: 0,
            index: 0,
            arguments: "is\"}".into(),
        },
        StreamEvent::Finish {
            choice: 0,
            reason: FinishReason::ToolCalls,
        },
        StreamEvent::Usage(Usage {
            input_tokens: 572,
            output_tokens: 89,
            cache_read_tokens: 100,
            cache_write_tokens: 0,
        }),
        StreamEvent::Done,
    ]
}

#[test]
fn stream_decoder_maps_blocks_to_tool_indexes_and_merges_usage() {
    let mut decoder = StreamDecoder::new();
    let mut events = Vec::new();
    for event in sse_events(TOOL_STREAM.as_bytes()) {
        decoder.feed_sse(&event, &mut events).unwrap();
    }
    assert!(decoder.is_done());
    assert_eq!(events, tool_stream_events());
}

#[test]
fn stream_decoder_errors() {
    let mut decoder = StreamDecoder::new();
    let mut events = Vec::new();
    decoder
        .feed(
            "error",
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            &mut events,
        )
        .unwrap();
    assert_eq!(
        events,
        [StreamEvent::Error {
            message: "Overloaded".into(),
            kind: "overloaded".into()
        }]
    );
    assert!(
        decoder
            .feed("content_block_delta", "{oops", &mut events)
            .is_err()
    );
    assert!(decoder.feed("content_block_start", r#"{"type":"content_block_start","index":99999999,"content_block":{"type":"text"}}"#, &mut events).is_err());
    decoder
        .feed("future_event", r#"{"type":"future_event"}"#, &mut events)
        .unwrap();
    assert_eq!(events.len(), 1, "unknown events are ignored");
}

#[test]
fn stream_encoder_writes_blocks_in_order() {
    let mut encoder = StreamEncoder::new().with_model("claude-via-nines");
    let mut out = Vec::new();
    // OpenAI order: finish, then usage, then done.
    for event in [
        StreamEvent::Start {
            id: "chatcmpl-1".into(),
            model: "gpt-4o".into(),
        },
        StreamEvent::TextDelta {
            choice: 0,
            text: "a".into(),
        },
        StreamEvent::TextDelta {
            choice: 1,
            text: "ignored".into(),
        },
        StreamEvent::TextDelta {
            choice: 0,
            text: "b".into(),
        },
        StreamEvent::ToolCallStart {
            choice: 0,
            index: 0,
            id: "call_1".into(),
            name: "f".into(),
        },
        StreamEvent::ToolCallDelta {
            choice: 0,
            index: 0,
            arguments: "{}".into(),
        },
        StreamEvent::ToolCallStart {
            choice: 0,
            index: 1,
            id: "call_2".into(),
            name: "g".into(),
        },
        StreamEvent::Finish {
            choice: 0,
            reason: FinishReason::ToolCalls,
        },
        StreamEvent::Usage(Usage {
            input_tokens: 9,
            output_tokens: 3,
            cache_read_tokens: 4,
            cache_write_tokens: 0,
        }),
        StreamEvent::Done,
    ] {
        encoder.encode(&event, &mut out);
    }
    let events = sse_events(&out);
    let names: Vec<&str> = events.iter().map(|e| e.event.as_deref().unwrap()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    for event in &events {
        assert_eq!(
            value(event.data.as_bytes())["type"],
            event.event.as_deref().unwrap()
        );
    }
    let start = value(events[0].data.as_bytes());
    assert_eq!(start["message"]["model"], "claude-via-nines");
    let delta = value(events[10].data.as_bytes());
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    assert_eq!(delta["usage"]["input_tokens"], 5);
    assert_eq!(delta["usage"]["cache_read_input_tokens"], 4);
    assert_eq!(value(events[8].data.as_bytes())["index"], 2);
}

#[test]
fn stream_encoder_error_frame() {
    let mut encoder = StreamEncoder::new();
    let out = encoder.encode_to_vec(&StreamEvent::Error {
        message: "busy".into(),
        kind: ErrorKind::Overloaded.as_str().into(),
    });
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"busy\"}}\n\n"
    );
}

#[test]
fn error_types_map_to_kinds_and_back() {
    for (wire, message, kind) in [
        ("overloaded_error", "Overloaded", ErrorKind::Overloaded),
        ("rate_limit_error", "slow", ErrorKind::RateLimited),
        ("api_error", "boom", ErrorKind::Server),
        (
            "invalid_request_error",
            "prompt is too long: 210000 tokens > 200000 maximum",
            ErrorKind::ContextTooLong,
        ),
        (
            "invalid_request_error",
            "Your credit balance is too low to access the Anthropic API.",
            ErrorKind::QuotaExhausted,
        ),
        (
            "invalid_request_error",
            "messages: field required",
            ErrorKind::InvalidRequest,
        ),
        (
            "authentication_error",
            "invalid x-api-key",
            ErrorKind::Authentication,
        ),
        ("permission_error", "no", ErrorKind::Permission),
        ("not_found_error", "model: x", ErrorKind::NotFound),
        ("timeout_error", "late", ErrorKind::Timeout),
        ("something_new", "?", ErrorKind::Unknown),
    ] {
        let body = json!({"type": "error", "error": {"type": wire, "message": message}});
        let parsed = anthropic::parse_error(body.to_string().as_bytes()).unwrap();
        assert_eq!(parsed.kind, kind, "{wire}: {message}");
        assert_eq!(parsed.provider_type.as_deref(), Some(wire));
    }
    assert_eq!(anthropic::parse_error(b"<html>"), None);
    for (status, wire) in [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (529, "overloaded_error"),
    ] {
        let body = value(&anthropic::error_body(status, "m"));
        assert_eq!(
            body,
            json!({"type": "error", "error": {"type": wire, "message": "m"}})
        );
    }
}
