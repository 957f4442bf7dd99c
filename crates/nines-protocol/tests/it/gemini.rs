//! Gemini codec: request shape, response decode, stream decode, embeddings, errors.

use crate::{json_schema_request, rich_request, sse_events, value};
use nines_protocol::gemini::{
    self, StreamDecoder, batch_embed_contents_request, decode_embeddings_response, decode_response,
    embed_content_request, encode_request,
};
use nines_protocol::unified::{
    ChatRequest, EmbeddingsRequest, EncodingFormat, ErrorKind, FinishReason, Message, Role,
    StreamEvent, ToolChoice, Usage,
};
use serde_json::{Map, json};

#[test]
fn request_uses_user_and_model_turns_with_function_parts() {
    let body = value(&encode_request(&rich_request()));
    assert_eq!(
        body["systemInstruction"],
        json!({"parts": [{"text": "You are terse."}]})
    );
    let contents = body["contents"].as_array().unwrap();
    let roles: Vec<&str> = contents
        .iter()
        .map(|c| c["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "model", "user"]);
    assert_eq!(
        contents[0]["parts"][1],
        json!({"fileData": {"mimeType": "image/png", "fileUri": "https://example.com/cat.png"}})
    );
    assert_eq!(
        contents[0]["parts"][2],
        json!({"inlineData": {"mimeType": "image/jpeg", "data": "/9j/4AAQSkZJRg=="}})
    );
    assert_eq!(
        contents[1]["parts"][1],
        json!({"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}})
    );
    assert_eq!(
        contents[2]["parts"][0],
        json!({"functionResponse": {"name": "get_weather", "response": {"temp": 21, "sky": "clear"}}})
    );
    assert_eq!(
        contents[2]["parts"][1],
        json!({"functionResponse": {"name": "get_weather", "response": {"result": "-3 and snowing"}}})
    );
    assert_eq!(contents[2]["parts"][2], json!({"text": "Which is warmer?"}));
    assert_eq!(
        body["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"]["required"],
        json!(["city"])
    );
    assert_eq!(
        body["toolConfig"],
        json!({"functionCallingConfig": {"mode": "AUTO"}})
    );
    assert_eq!(
        body["generationConfig"],
        json!({"maxOutputTokens": 300, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"]})
    );
}

#[test]
fn tool_choice_modes_and_json_schema() {
    let mut request = ChatRequest::new("m", vec![Message::text(Role::User, "x")]);
    request.tools = vec![crate::weather_tool()];
    for (choice, expected) in [
        (ToolChoice::Auto, json!({"mode": "AUTO"})),
        (ToolChoice::None, json!({"mode": "NONE"})),
        (ToolChoice::Required, json!({"mode": "ANY"})),
        (
            ToolChoice::Function("get_weather".into()),
            json!({"mode": "ANY", "allowedFunctionNames": ["get_weather"]}),
        ),
    ] {
        request.tool_choice = Some(choice);
        assert_eq!(
            value(&encode_request(&request))["toolConfig"]["functionCallingConfig"],
            expected
        );
    }
    let body = value(&encode_request(&json_schema_request()));
    assert_eq!(
        body["generationConfig"]["responseMimeType"],
        "application/json"
    );
    assert_eq!(
        body["generationConfig"]["responseJsonSchema"]["required"],
        json!(["name", "population"])
    );
    assert_eq!(body["generationConfig"]["candidateCount"], 2);
    assert_eq!(body["generationConfig"]["seed"], 7);
    let plain = ChatRequest::new("m", vec![Message::text(Role::User, "x")]);
    assert!(
        value(&encode_request(&plain))
            .get("generationConfig")
            .is_none()
    );
}

#[test]
fn tool_result_name_falls_back_to_the_message_name() {
    let request = ChatRequest::new(
        "m",
        vec![Message {
            name: Some("lookup".into()),
            tool_call_id: Some("unknown".into()),
            ..Message::text(Role::Tool, "[1,2]")
        }],
    );
    let body = value(&encode_request(&request));
    assert_eq!(
        body["contents"][0]["parts"][0],
        json!({"functionResponse": {"name": "lookup", "response": {"result": "[1,2]"}}})
    );
}

fn response_with(finish: &str, parts: serde_json::Value) -> serde_json::Value {
    json!({
        "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": finish, "index": 0}],
        "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 5, "totalTokenCount": 17},
        "modelVersion": "gemini-2.5-flash",
        "responseId": "resp-1"
    })
}

#[test]
fn decodes_every_finish_reason() {
    for (wire, expected) in [
        ("STOP", Some(FinishReason::Stop)),
        ("MAX_TOKENS", Some(FinishReason::Length)),
        ("SAFETY", Some(FinishReason::ContentFilter)),
        ("RECITATION", Some(FinishReason::ContentFilter)),
        ("BLOCKLIST", Some(FinishReason::ContentFilter)),
        ("PROHIBITED_CONTENT", Some(FinishReason::ContentFilter)),
        ("SPII", Some(FinishReason::ContentFilter)),
        ("OTHER", Some(FinishReason::Stop)),
        ("FINISH_REASON_UNSPECIFIED", None),
    ] {
        let body = response_with(wire, json!([{"text": "hi"}]));
        let r = decode_response(body.to_string().as_bytes()).unwrap();
        assert_eq!(r.choices[0].finish_reason, expected, "{wire}");
    }
}

#[test]
fn decodes_function_calls_with_synthetic_ids() {
    let body = response_with(
        "STOP",
        json!([
            {"text": "thinking...", "thought": true},
            {"text": "Checking "},
            {"text": "both."},
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
            {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}}
        ]),
    );
    let r = decode_response(body.to_string().as_bytes()).unwrap();
    let message = &r.choices[0].message;
    assert_eq!(message.joined_text(), "Checking both.");
    assert_eq!(message.content.len(), 1, "adjacent text parts are joined");
    let ids: Vec<&str> = message.tool_calls.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["call_0", "call_1"]);
    assert_eq!(message.tool_calls[1].arguments, "{\"city\":\"Oslo\"}");
    assert_eq!(r.choices[0].finish_reason, Some(FinishReason::ToolCalls));
    assert_eq!(
        (r.id.as_str(), r.model.as_str()),
        ("resp-1", "gemini-2.5-flash")
    );
    assert_eq!(
        r.usage,
        Some(Usage {
            input_tokens: 12,
            output_tokens: 5,
            ..Usage::default()
        })
    );
}

#[test]
fn blocked_prompts_and_cached_usage() {
    let body = json!({
        "promptFeedback": {"blockReason": "SAFETY"},
        "usageMetadata": {"promptTokenCount": 2000, "cachedContentTokenCount": 1500, "thoughtsTokenCount": 40, "candidatesTokenCount": 0}
    });
    let r = decode_response(body.to_string().as_bytes()).unwrap();
    assert_eq!(r.choices.len(), 1);
    assert_eq!(
        r.choices[0].finish_reason,
        Some(FinishReason::ContentFilter)
    );
    assert_eq!(
        r.usage,
        Some(Usage {
            input_tokens: 2000,
            output_tokens: 40,
            cache_read_tokens: 1500,
            cache_write_tokens: 0
        })
    );
    assert!(
        decode_response(br#"{"error":{"code":500,"message":"x","status":"INTERNAL"}}"#).is_err()
    );
}

const STREAM: &str = concat!(
    "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hel\"}],\"role\":\"model\"},\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":8},\"modelVersion\":\"gemini-2.5-flash\",\"responseId\":\"r1\"}\r\n\r\n",
    "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"lo \u{00e9}\u{6f22}\"}],\"role\":\"model\"},\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":8,\"candidatesTokenCount\":2}}\r\n\r\n",
    "data: {\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"name\":\"f\",\"args\":{\"a\":[1]}}}],\"role\":\"model\"},\"finishReason\":\"STOP\",\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":8,\"candidatesTokenCount\":9,\"totalTokenCount\":17}}\r\n\r\n",
);

#[test]
fn stream_decoder_emits_start_once_and_usage_at_the_end() {
    let mut decoder = StreamDecoder::new();
    let mut events = Vec::new();
    for event in sse_events(STREAM.as_bytes()) {
        decoder.feed_sse(&event, &mut events).unwrap();
    }
    assert!(decoder.is_done());
    assert_eq!(
        events,
        vec![
            StreamEvent::Start {
                id: "r1".into(),
                model: "gemini-2.5-flash".into()
            },
            StreamEvent::TextDelta {
                choice: 0,
                text: "Hel".into()
            },
            StreamEvent::TextDelta {
                choice: 0,
                text: "lo \u{e9}\u{6f22}".into()
            },
            StreamEvent::ToolCallStart {
                choice: 0,
                index: 0,
                id: "call_0".into(),
                name: "f".into()
            },
            StreamEvent::ToolCallDelta {
                choice: 0,
                index: 0,
                arguments: "{\"a\":[1]}".into()
            },
            StreamEvent::Finish {
                choice: 0,
                reason: FinishReason::ToolCalls
            },
            StreamEvent::Usage(Usage {
                input_tokens: 8,
                output_tokens: 9,
                ..Usage::default()
            }),
            StreamEvent::Done,
        ]
    );
}

#[test]
fn stream_decoder_waits_for_every_candidate() {
    let mut decoder = StreamDecoder::new();
    let mut events = Vec::new();
    decoder
        .feed(r#"{"candidates":[{"content":{"parts":[{"text":"a"}]},"index":0,"finishReason":"STOP"},{"content":{"parts":[{"text":"b"}]},"index":1}]}"#, &mut events)
        .unwrap();
    assert!(!decoder.is_done());
    decoder
        .feed(r#"{"candidates":[{"content":{"parts":[{"text":"c"}]},"index":1,"finishReason":"MAX_TOKENS"}]}"#, &mut events)
        .unwrap();
    assert!(decoder.is_done());
    assert_eq!(events.last(), Some(&StreamEvent::Done));
    assert!(events.contains(&StreamEvent::Finish {
        choice: 1,
        reason: FinishReason::Length
    }));

    let mut blocked = StreamDecoder::new();
    let events = {
        let mut out = Vec::new();
        blocked
            .feed(
                r#"{"promptFeedback":{"blockReason":"PROHIBITED_CONTENT"}}"#,
                &mut out,
            )
            .unwrap();
        out
    };
    assert_eq!(
        events[1],
        StreamEvent::Finish {
            choice: 0,
            reason: FinishReason::ContentFilter
        }
    );
    assert_eq!(events.last(), Some(&StreamEvent::Done));

    let mut failing = StreamDecoder::new();
    let mut out = Vec::new();
    failing
        .feed(
            r#"{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}"#,
            &mut out,
        )
        .unwrap();
    assert_eq!(
        out,
        [StreamEvent::Error {
            message: "The model is overloaded.".into(),
            kind: "overloaded".into()
        }]
    );
    assert!(failing.feed("not json", &mut out).is_err());
}

#[test]
fn embeddings_requests_and_responses() {
    let request = EmbeddingsRequest {
        model: "embed".into(),
        inputs: vec!["a".into(), "b".into()],
        dimensions: Some(256),
        encoding_format: EncodingFormat::Float,
        extra: Map::new(),
    };
    assert_eq!(
        value(&embed_content_request(&request, "gemini-embedding-001")),
        json!({"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "a"}]}, "outputDimensionality": 256})
    );
    let batch = value(&batch_embed_contents_request(
        &request,
        "models/gemini-embedding-001",
    ));
    assert_eq!(batch["requests"].as_array().unwrap().len(), 2);
    assert_eq!(batch["requests"][1]["model"], "models/gemini-embedding-001");
    assert_eq!(batch["requests"][1]["content"]["parts"][0]["text"], "b");
    let one = decode_embeddings_response(br#"{"embedding":{"values":[0.5,1]}}"#).unwrap();
    assert_eq!(one.vectors, [vec![0.5, 1.0]]);
    let many =
        decode_embeddings_response(br#"{"embeddings":[{"values":[1]},{"values":[2]}]}"#).unwrap();
    assert_eq!(many.vectors, [vec![1.0], vec![2.0]]);
    assert!(decode_embeddings_response(b"{}").is_err());
    assert_eq!(
        gemini::embed_path("models/x"),
        "/v1beta/models/x:batchEmbedContents"
    );
    assert_eq!(
        gemini::generate_path("gemini-2.5-flash", true),
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    );
    assert_eq!(
        gemini::generate_path("gemini-2.5-flash", false),
        "/v1beta/models/gemini-2.5-flash:generateContent"
    );
}

#[test]
fn error_statuses_map_to_kinds() {
    for (status, message, kind) in [
        (
            "RESOURCE_EXHAUSTED",
            "Quota exceeded",
            ErrorKind::RateLimited,
        ),
        (
            "UNAVAILABLE",
            "The model is overloaded.",
            ErrorKind::Overloaded,
        ),
        (
            "INTERNAL",
            "An internal error has occurred.",
            ErrorKind::Server,
        ),
        ("DEADLINE_EXCEEDED", "late", ErrorKind::Timeout),
        (
            "INVALID_ARGUMENT",
            "API key not valid. Please pass a valid API key.",
            ErrorKind::Authentication,
        ),
        (
            "INVALID_ARGUMENT",
            "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
            ErrorKind::ContextTooLong,
        ),
        (
            "INVALID_ARGUMENT",
            "Invalid JSON payload received.",
            ErrorKind::InvalidRequest,
        ),
        (
            "FAILED_PRECONDITION",
            "User location is not supported for the API use.",
            ErrorKind::Permission,
        ),
        ("PERMISSION_DENIED", "denied", ErrorKind::Permission),
        ("UNAUTHENTICATED", "who", ErrorKind::Authentication),
        ("NOT_FOUND", "models/x is not found", ErrorKind::NotFound),
    ] {
        let body = json!({"error": {"code": 400, "message": message, "status": status}});
        let parsed = gemini::parse_error(body.to_string().as_bytes()).unwrap();
        assert_eq!(parsed.kind, kind, "{status}: {message}");
        assert_eq!(parsed.code.as_deref(), Some("400"));
    }
    let wrapped = json!([{"error": {"code": 429, "message": "m", "status": "RESOURCE_EXHAUSTED"}}]);
    assert_eq!(
        gemini::parse_error(wrapped.to_string().as_bytes())
            .unwrap()
            .kind,
        ErrorKind::RateLimited
    );
    assert_eq!(gemini::parse_error(b"{}"), None);
}

#[test]
fn thought_signatures_ride_in_the_call_id() {
    let body = response_with(
        "STOP",
        json!([{"functionCall": {"name": "f", "args": {"q": 1}}, "thoughtSignature": "CiQB+/sig=="}]),
    );
    let response = decode_response(body.to_string().as_bytes()).unwrap();
    let call = response.choices[0].message.tool_calls[0].clone();
    assert_eq!(call.id, "call_0__thought__CiQB+/sig==");
    assert_eq!(gemini::signature_of(&call.id), Some("CiQB+/sig=="));
    assert_eq!(gemini::signature_of("call_0"), None);

    // The client echoes the id; the next request gives Gemini its signature back.
    let request = ChatRequest::new(
        "m",
        vec![
            Message::text(Role::User, "go"),
            Message {
                content: vec![],
                tool_calls: vec![call.clone()],
                ..Message::text(Role::Assistant, "")
            },
            Message::tool_result(call.id.clone(), "{\"ok\":true}"),
        ],
    );
    let body = value(&encode_request(&request));
    assert_eq!(
        body["contents"][1]["parts"][0],
        json!({"functionCall": {"name": "f", "args": {"q": 1}}, "thoughtSignature": "CiQB+/sig=="})
    );
    assert_eq!(
        body["contents"][2]["parts"][0]["functionResponse"]["name"],
        "f"
    );

    // The same history sent to Anthropic gets ids it accepts, still paired.
    let body = value(&nines_protocol::anthropic::encode_request(&request, "c", 1));
    let use_id = body["messages"][1]["content"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(use_id, "call_0__thought__CiQB__sig__");
    assert_eq!(
        body["messages"][2]["content"][0]["tool_use_id"],
        use_id.as_str()
    );

    // Streaming carries it the same way.
    let mut decoder = StreamDecoder::new();
    let mut events = Vec::new();
    let chunk = json!({"candidates": [{"content": {"parts": [{"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "s1"}]}, "finishReason": "STOP"}]});
    decoder.feed(&chunk.to_string(), &mut events).unwrap();
    assert!(events.contains(&StreamEvent::ToolCallStart {
        choice: 0,
        index: 0,
        id: "call_0__thought__s1".into(),
        name: "f".into()
    }));
}

#[test]
fn stream_split_anywhere_decodes_the_same() {
    let whole = {
        let mut decoder = StreamDecoder::new();
        let mut out = Vec::new();
        for event in sse_events(STREAM.as_bytes()) {
            decoder.feed_sse(&event, &mut out).unwrap();
        }
        out
    };
    let bytes = STREAM.as_bytes();
    for i in 0..=bytes.len() {
        let mut sse = nines_protocol::sse::SseDecoder::new();
        let mut frames = Vec::new();
        sse.feed(&bytes[..i], &mut frames).unwrap();
        sse.feed(&bytes[i..], &mut frames).unwrap();
        sse.finish(&mut frames);
        let mut decoder = StreamDecoder::new();
        let mut out = Vec::new();
        for frame in frames {
            decoder.feed_sse(&frame, &mut out).unwrap();
        }
        assert_eq!(out, whole, "split at {i}");
    }
}

/// The Gemini side of `embeddings_with_values_that_are_not_finite_are_malformed` (openai.rs): a
/// value beyond f32's range becomes infinity, which no JSON answer can carry.
#[test]
fn gemini_embeddings_with_values_that_are_not_finite_are_malformed() {
    let huge = br#"{"embeddings":[{"values":[1]},{"values":[2e39]}]}"#;
    let e = decode_embeddings_response(huge).unwrap_err();
    assert!(e.to_string().contains("not a finite f32"), "{e}");
    assert!(decode_embeddings_response(br#"{"embedding":{"values":[0.5,-1]}}"#).is_ok());
}
