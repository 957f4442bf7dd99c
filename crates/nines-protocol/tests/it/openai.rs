//! OpenAI codec: typed request parse, response decode, chunk decode, embeddings, errors.

use crate::{rich_request, value};
use nines_protocol::openai::{
    self, ChunkDecoder, RequestError, decode_chat_response, decode_embeddings_response,
    encode_chat_request, encode_embeddings_response, parse_chat_request, parse_embeddings_request,
};
use nines_protocol::unified::{
    ContentPart, EmbeddingsResponse, EncodingFormat, ErrorKind, FinishReason, ImageSource,
    ResponseFormat, Role, StreamEvent, ToolChoice, Usage,
};
use serde_json::json;

#[test]
fn parses_string_and_part_content_and_every_role() {
    let body = json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "developer", "content": "be brief"},
            {"role": "system", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            {"role": "user", "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "https://x.test/a.png", "detail": "low"}},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
            ]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"x\":1}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "42"},
            {"role": "function", "name": "legacy", "content": "old"},
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]}
        ]
    });
    let request = parse_chat_request(body.to_string().as_bytes()).unwrap();
    let roles: Vec<Role> = request.messages.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [
            Role::System,
            Role::System,
            Role::User,
            Role::Assistant,
            Role::Tool,
            Role::Tool,
            Role::Assistant
        ]
    );
    assert_eq!(request.messages[1].content.len(), 2);
    assert_eq!(
        request.messages[2].content[1],
        ContentPart::Image {
            source: ImageSource::Url("https://x.test/a.png".into())
        }
    );
    assert_eq!(
        request.messages[2].content[2],
        ContentPart::Image {
            source: ImageSource::Base64 {
                media_type: "image/png".into(),
                data: "iVBORw0KGgo=".into()
            }
        }
    );
    assert!(request.messages[3].content.is_empty());
    assert_eq!(request.messages[3].tool_calls[0].arguments, "{\"x\":1}");
    assert_eq!(request.messages[4].tool_call_id.as_deref(), Some("call_1"));
    assert_eq!(request.messages[5].name.as_deref(), Some("legacy"));
    assert_eq!(request.messages[5].tool_call_id, None);
    assert_eq!(request.messages[6].joined_text(), "no");
}

#[test]
fn parses_every_option() {
    let body = json!({
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}, "strict": true}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "parallel_tool_calls": false,
        "max_tokens": 10,
        "max_completion_tokens": 20,
        "temperature": 0.5,
        "top_p": 0.25,
        "stop": "X",
        "stream": true,
        "stream_options": {"include_usage": true},
        "n": 3,
        "response_format": {"type": "json_object"},
        "logprobs": true,
        "top_logprobs": 2,
        "user": "u",
        "metadata": {"k": "v"},
        "seed": -5,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
        "service_tier": "flex",
        "functions": [{"name": "legacy"}]
    });
    let r = parse_chat_request(body.to_string().as_bytes()).unwrap();
    assert_eq!(r.tool_choice, Some(ToolChoice::Function("f".into())));
    assert_eq!(r.parallel_tool_calls, Some(false));
    assert_eq!(r.max_tokens, Some(20), "max_completion_tokens wins");
    assert_eq!((r.temperature, r.top_p), (Some(0.5), Some(0.25)));
    assert_eq!(r.stop, ["X"]);
    assert!(r.stream && r.include_usage && r.logprobs);
    assert_eq!((r.n, r.top_logprobs, r.seed), (3, Some(2), Some(-5)));
    assert_eq!(r.response_format, Some(ResponseFormat::JsonObject));
    assert_eq!(r.user.as_deref(), Some("u"));
    assert_eq!(r.metadata, Some(json!({"k": "v"})));
    assert_eq!(
        (r.presence_penalty, r.frequency_penalty),
        (Some(0.5), Some(-0.5))
    );
    assert_eq!(r.tools[0].strict, Some(true));
    let mut extra: Vec<&str> = r.extra.keys().map(String::as_str).collect();
    extra.sort_unstable();
    assert_eq!(extra, ["functions", "service_tier"]);
}

#[test]
fn tool_choice_strings_and_nulls() {
    for (choice, expected) in [
        (json!("auto"), Some(ToolChoice::Auto)),
        (json!("none"), Some(ToolChoice::None)),
        (json!("required"), Some(ToolChoice::Required)),
        (json!(null), None),
    ] {
        let body = json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": choice});
        assert_eq!(
            parse_chat_request(body.to_string().as_bytes())
                .unwrap()
                .tool_choice,
            expected
        );
    }
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": null, "n": null, "tools": null});
    let r = parse_chat_request(body.to_string().as_bytes()).unwrap();
    assert!(r.stop.is_empty() && r.tools.is_empty());
    assert_eq!(r.n, 1);
}

#[test]
fn errors_name_the_field() {
    let parse = |body: serde_json::Value| parse_chat_request(body.to_string().as_bytes());
    assert!(matches!(
        parse_chat_request(b"{"),
        Err(RequestError::Malformed(_))
    ));
    assert!(matches!(
        parse_chat_request(b"[]"),
        Err(RequestError::Malformed(_))
    ));
    assert_eq!(
        parse(json!({"messages": []})),
        Err(RequestError::MissingModel)
    );
    assert_eq!(
        parse(json!({"model": 1, "messages": []})),
        Err(RequestError::ModelNotString)
    );
    assert_eq!(
        parse(json!({"model": "m"})),
        Err(RequestError::Missing("messages"))
    );
    let e = parse(json!({"model": "m", "messages": []})).unwrap_err();
    assert_eq!(e.param(), Some("messages"));
    let e =
        parse(json!({"model": "m", "messages": [{"role": "robot", "content": "x"}]})).unwrap_err();
    assert_eq!(e.param(), Some("messages"), "{e}");
    let e = parse(
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}),
    )
    .unwrap_err();
    assert_eq!(e.param(), Some("temperature"));
    assert!(e.to_string().contains("temperature"), "{e}");
    let e = parse(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": "sometimes"})).unwrap_err();
    assert_eq!(e.param(), Some("tool_choice"));
    let e = parse(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "response_format": {"type": "yaml"}})).unwrap_err();
    assert_eq!(e.param(), Some("response_format"));
}

#[test]
fn untranslatable_features_are_unsupported_not_invalid() {
    let audio = json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]}]});
    let e = parse_chat_request(audio.to_string().as_bytes()).unwrap_err();
    assert!(
        matches!(e, RequestError::Unsupported(ref m) if m.contains("input_audio")),
        "{e}"
    );
    let custom = json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "custom", "custom": {"name": "c"}}]});
    assert!(matches!(
        parse_chat_request(custom.to_string().as_bytes()),
        Err(RequestError::Unsupported(_))
    ));
}

#[test]
fn head_and_full_parse_agree() {
    let body = crate::rich_request();
    let bytes = encode_chat_request(&body, "gpt-4o");
    let head = openai::parse_chat_head(&bytes).unwrap();
    let full = parse_chat_request(&bytes).unwrap();
    assert_eq!(head.model, full.model);
    assert_eq!(head.stream, full.stream);
    assert_eq!(head.include_usage, full.include_usage);
    assert_eq!(head.max_output_tokens, full.max_tokens.map(u64::from));
    assert_eq!(head.n, full.n);
    assert_eq!(head.has_tools, !full.tools.is_empty());
}

#[test]
fn encode_keeps_extra_fields_and_sets_model() {
    let mut request = rich_request();
    request.extra.insert("service_tier".into(), json!("flex"));
    let body = value(&encode_chat_request(&request, "gpt-4o-mini"));
    assert_eq!(body["model"], "gpt-4o-mini");
    assert_eq!(body["service_tier"], "flex");
    assert_eq!(body["stream_options"], json!({"include_usage": true}));
    assert_eq!(body["messages"][2]["content"], "Checking both.");
    assert_eq!(
        body["messages"][1]["content"][2]["image_url"]["url"],
        "data:image/jpeg;base64,/9j/4AAQSkZJRg=="
    );
}

#[test]
fn decodes_responses_with_every_finish_reason() {
    for (wire, expected) in [
        ("stop", Some(FinishReason::Stop)),
        ("length", Some(FinishReason::Length)),
        ("tool_calls", Some(FinishReason::ToolCalls)),
        ("function_call", Some(FinishReason::ToolCalls)),
        ("content_filter", Some(FinishReason::ContentFilter)),
        ("eos", Some(FinishReason::Stop)),
    ] {
        let body = json!({"id": "c", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": wire}]});
        let response = decode_chat_response(body.to_string().as_bytes()).unwrap();
        assert_eq!(response.choices[0].finish_reason, expected, "{wire}");
    }
    let body =
        json!({"id": "c", "choices": [{"message": {"content": "x"}, "finish_reason": null}]});
    assert_eq!(
        decode_chat_response(body.to_string().as_bytes())
            .unwrap()
            .choices[0]
            .finish_reason,
        None
    );
}

#[test]
fn decodes_tool_calls_usage_and_refusals() {
    let body = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": "gpt-4o-2024",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_9", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
            ]}, "finish_reason": "tool_calls"},
            {"index": 1, "message": {"role": "assistant", "content": null, "refusal": "I can't"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120,
                  "prompt_tokens_details": {"cached_tokens": 64}}
    });
    let r = decode_chat_response(body.to_string().as_bytes()).unwrap();
    assert_eq!(
        (r.id.as_str(), r.model.as_str(), r.created),
        ("chatcmpl-1", "gpt-4o-2024", 1_700_000_000)
    );
    assert_eq!(r.choices[0].message.tool_calls[0].id, "call_9");
    assert_eq!(r.choices[1].message.joined_text(), "I can't");
    assert_eq!(
        r.usage,
        Some(Usage {
            input_tokens: 100,
            output_tokens: 20,
            cache_read_tokens: 64,
            cache_write_tokens: 0
        })
    );
    assert!(decode_chat_response(b"{\"object\":\"list\"}").is_err());
    assert!(decode_chat_response(b"<html>").is_err());
}

#[test]
fn chunk_decoder_reassembles_streamed_tool_calls() {
    let chunks = [
        r#"{"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt","choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"get_weather","arguments":""}}]},"finish_reason":null}]}"#,
        r#"{"id":"c1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]},"finish_reason":null}]}"#,
        r#"{"id":"c1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]},"finish_reason":null}]}"#,
        r#"{"id":"c1","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","function":{"name":"get_time","arguments":"{}"}}]},"finish_reason":null}]}"#,
        r#"{"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
        r#"{"id":"c1","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}"#,
        "[DONE]",
    ];
    let mut decoder = ChunkDecoder::new();
    let mut events = Vec::new();
    for chunk in chunks {
        decoder.feed(chunk, &mut events).unwrap();
    }
    assert!(decoder.is_done());
    assert_eq!(
        events,
        vec![
            StreamEvent::Start {
                id: "c1".into(),
                model: "gpt".into()
            },
            StreamEvent::ToolCallStart {
                choice: 0,
                index: 0,
                id: "call_a".into(),
                name: "get_weather".into()
            },
            StreamEvent::ToolCallDelta {
                choice: 0,
                index: 0,
                arguments: "{\"city\":".into()
            },
            StreamEvent::ToolCallDelta {
                choice: 0,
                index: 0,
                arguments: "\"Paris\"}".into()
            },
            StreamEvent::ToolCallStart {
                choice: 0,
                index: 1,
                id: "call_b".into(),
                name: "get_time".into()
            },
            StreamEvent::ToolCallDelta {
                choice: 0,
                index: 1,
                arguments: "{}".into()
            },
            StreamEvent::Finish {
                choice: 0,
                reason: FinishReason::ToolCalls
            },
            StreamEvent::Usage(Usage {
                input_tokens: 5,
                output_tokens: 7,
                ..Usage::default()
            }),
            StreamEvent::Done,
        ]
    );
}

#[test]
fn chunk_decoder_reports_in_band_errors_and_garbage() {
    let mut decoder = ChunkDecoder::new();
    let events = decoder
        .decode(r#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#)
        .unwrap();
    assert_eq!(
        events,
        vec![StreamEvent::Error {
            message: "Rate limit reached".into(),
            kind: "rate_limited".into()
        }]
    );
    let e = decoder.decode("{not json").unwrap_err();
    assert_eq!(e.dialect, "openai");
    assert!(!decoder.is_done());
}

#[test]
fn chunk_decoder_handles_escaped_text_and_multiple_choices() {
    let mut decoder = ChunkDecoder::new();
    let events = decoder
        .decode(r#"{"id":"x","model":"m","choices":[{"index":1,"delta":{"content":"a\"b\n\u00e9"}},{"index":0,"delta":{"content":"z"},"finish_reason":"length"}]}"#)
        .unwrap();
    assert_eq!(
        events[1..],
        [
            StreamEvent::TextDelta {
                choice: 1,
                text: "a\"b\n\u{e9}".into()
            },
            StreamEvent::TextDelta {
                choice: 0,
                text: "z".into()
            },
            StreamEvent::Finish {
                choice: 0,
                reason: FinishReason::Length
            },
        ]
    );
}

#[test]
fn embeddings_parse_and_base64_round_trip() {
    let body = json!({"model": "text-embedding-3-small", "input": ["a", "b"], "dimensions": 3,
                      "encoding_format": "base64", "user": "u"});
    let request = parse_embeddings_request(body.to_string().as_bytes()).unwrap();
    assert_eq!(request.inputs, ["a", "b"]);
    assert_eq!(request.dimensions, Some(3));
    assert_eq!(request.encoding_format, EncodingFormat::Base64);
    assert_eq!(request.extra.get("user"), Some(&json!("u")));
    let one = json!({"model": "e", "input": "solo"});
    assert_eq!(
        parse_embeddings_request(one.to_string().as_bytes())
            .unwrap()
            .inputs,
        ["solo"]
    );
    let tokens = json!({"model": "e", "input": [1, 2, 3]});
    assert!(matches!(
        parse_embeddings_request(tokens.to_string().as_bytes()),
        Err(RequestError::Unsupported(_))
    ));
    let none = json!({"model": "e"});
    assert_eq!(
        parse_embeddings_request(none.to_string().as_bytes()),
        Err(RequestError::Missing("input"))
    );

    let response = EmbeddingsResponse {
        model: "e".into(),
        vectors: vec![vec![0.5, -1.25, 3.0e-8], vec![f32::MAX, 0.0, 1.0]],
        usage: Some(Usage {
            input_tokens: 4,
            ..Usage::default()
        }),
    };
    for format in [EncodingFormat::Float, EncodingFormat::Base64] {
        let encoded = encode_embeddings_response(&response, format);
        let body = value(&encoded);
        assert_eq!(body["object"], "list");
        assert_eq!(body["usage"]["prompt_tokens"], 4);
        if format == EncodingFormat::Base64 {
            assert!(body["data"][0]["embedding"].is_string());
        }
        assert_eq!(decode_embeddings_response(&encoded).unwrap(), response);
    }
}

#[test]
fn error_bodies_map_to_kinds() {
    let kind = |body: serde_json::Value| {
        openai::parse_error(body.to_string().as_bytes())
            .unwrap()
            .kind
    };
    assert_eq!(
        kind(
            json!({"error": {"message": "This model's maximum context length is 128000 tokens", "type": "invalid_request_error", "code": "context_length_exceeded"}})
        ),
        ErrorKind::ContextTooLong
    );
    assert_eq!(
        kind(
            json!({"error": {"message": "quota", "type": "insufficient_quota", "code": "insufficient_quota"}})
        ),
        ErrorKind::QuotaExhausted
    );
    assert_eq!(
        kind(
            json!({"error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}})
        ),
        ErrorKind::RateLimited
    );
    assert_eq!(
        kind(
            json!({"error": {"message": "bad key", "type": "invalid_request_error", "code": "invalid_api_key"}})
        ),
        ErrorKind::Authentication
    );
    assert_eq!(
        kind(json!({"error": {"message": "oops", "type": "server_error"}})),
        ErrorKind::Server
    );
    assert_eq!(
        kind(json!({"error": {"message": "no", "type": "invalid_request_error", "param": "x"}})),
        ErrorKind::InvalidRequest
    );
    assert_eq!(kind(json!({"error": "plain text"})), ErrorKind::Unknown);
    assert_eq!(kind(json!({"detail": "Not Found"})), ErrorKind::Unknown);
    let parsed =
        openai::parse_error(br#"{"error":{"message":"m","type":"t","code":400}}"#).unwrap();
    assert_eq!(parsed.code.as_deref(), Some("400"));
    assert_eq!(openai::parse_error(b"upstream connect error"), None);
    let body = openai::error_body(ErrorKind::ContextTooLong, "too long");
    assert_eq!(body.error.code.as_deref(), Some("context_length_exceeded"));
}

#[test]
fn chunk_decoder_skips_azure_prompt_filter_chunk() {
    let mut decoder = ChunkDecoder::new();
    let first = r#"{"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{}}]}"#;
    assert!(decoder.decode(first).unwrap().is_empty());
    let second = r#"{"id":"chatcmpl-az","model":"gpt-4o","choices":[{"index":0,"delta":{"role":"assistant","content":"hi"}}]}"#;
    assert_eq!(
        decoder.decode(second).unwrap(),
        [
            StreamEvent::Start {
                id: "chatcmpl-az".into(),
                model: "gpt-4o".into()
            },
            StreamEvent::TextDelta {
                choice: 0,
                text: "hi".into()
            },
        ]
    );
}

/// Found by the `responses` fuzz target: base64 bytes that are no float (NaN) decoded into a
/// vector that nines then wrote for a float client as `null`, which no client parses. Such an
/// answer is malformed (the gateway fails over), and so is a float beyond f32's range.
#[test]
fn embeddings_with_values_that_are_not_finite_are_malformed() {
    let crash = br#"{"data":[{"embedding":"00006505139438828854384name8888888888888888888888888888888888888888888AACAPgAAAL8=","index":0,"object":"embedding"},{"embedding":"AACAPwAAAAA=","index":1,"object":"embedding"}],"model":"text-embedding-3-small","object":"list","usage":{"prompt_tokenz":2,"total_tokens":2}}"#;
    let e = nines_protocol::openai::decode_embeddings_response(crash).unwrap_err();
    assert!(e.to_string().contains("not a finite f32"), "{e}");
    // f32 NaN and infinity, little-endian, in base64.
    for bad in ["AADAfw==", "AACAfw=="] {
        let body = format!(r#"{{"data":[{{"embedding":"{bad}","index":0}}],"model":"m"}}"#);
        assert!(nines_protocol::openai::decode_embeddings_response(body.as_bytes()).is_err());
    }
    let huge = br#"{"data":[{"embedding":[0.5,1e39],"index":0}],"model":"m"}"#;
    assert!(nines_protocol::openai::decode_embeddings_response(huge).is_err());
    let fine = br#"{"data":[{"embedding":[0.5,-3.4e38],"index":0}],"model":"m"}"#;
    assert!(nines_protocol::openai::decode_embeddings_response(fine).is_ok());
}
