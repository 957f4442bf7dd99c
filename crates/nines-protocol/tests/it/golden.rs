//! Golden wire shapes: every body and stream nines writes to an upstream or a client, as
//! committed insta snapshots (`snapshots/`). A change to any shape shows up as a reviewed diff;
//! with `CI` set insta never writes, so a mismatch fails the run.
//!
//! Maps are sorted in snapshots, so they do not depend on serde_json's `preserve_order` feature.

use crate::anthropic::TOOL_STREAM;
use crate::{json_schema_request, rich_request, sse_events, value};
use nines_protocol::unified::{
    ChatResponse, Choice, ContentPart, EmbeddingsRequest, EmbeddingsResponse, EncodingFormat,
    ErrorKind, FinishReason, Message, Role, StreamEvent, ToolCall, Usage,
};
use nines_protocol::{anthropic, gemini, openai, replicate, runway};
use serde_json::{Map, Value, json};

fn snapshot(name: &str, value: &Value) {
    insta::with_settings!({ sort_maps => true, prepend_module_to_snapshot => false }, {
        insta::assert_json_snapshot!(name, value);
    });
}

/// SSE bytes as a list of `{event, data}` with JSON data parsed.
fn frames(bytes: &[u8]) -> Value {
    Value::Array(
        sse_events(bytes)
            .into_iter()
            .map(|e| {
                let data = serde_json::from_str(&e.data).unwrap_or(Value::String(e.data));
                json!({"event": e.event, "data": data})
            })
            .collect(),
    )
}

fn response() -> ChatResponse {
    ChatResponse {
        id: "resp_1".into(),
        model: "upstream-model".into(),
        created: 1_700_000_000,
        choices: vec![Choice {
            index: 0,
            message: Message {
                content: vec![ContentPart::Text("Paris is warmer.".into())],
                tool_calls: vec![ToolCall {
                    id: "call_x".into(),
                    name: "get_weather".into(),
                    arguments: r#"{"city":"Lyon"}"#.into(),
                }],
                ..Message::text(Role::Assistant, "")
            },
            finish_reason: Some(FinishReason::ToolCalls),
        }],
        usage: Some(Usage {
            input_tokens: 1200,
            output_tokens: 40,
            cache_read_tokens: 1000,
            cache_write_tokens: 100,
        }),
    }
}

#[test]
fn request_bodies() {
    let rich = rich_request();
    let schema = json_schema_request();
    snapshot(
        "openai_request_rich",
        &value(&openai::encode_chat_request(&rich, "gpt-4o-mini")),
    );
    snapshot(
        "openai_request_json_schema",
        &value(&openai::encode_chat_request(&schema, "gpt-4o-mini")),
    );
    snapshot(
        "anthropic_request_rich",
        &value(&anthropic::encode_request(
            &rich,
            "claude-haiku-4-5",
            anthropic::DEFAULT_MAX_TOKENS,
        )),
    );
    snapshot(
        "gemini_request_rich",
        &value(&gemini::encode_request(&rich)),
    );
    snapshot(
        "gemini_request_json_schema",
        &value(&gemini::encode_request(&schema)),
    );
    snapshot(
        "replicate_create_rich",
        &value(&replicate::encode_create_request(&rich)),
    );
    let job = runway::parse_job_request(
        br#"{"model":"video-default","prompt":"a lighthouse in a storm","image_url":"https://img.test/l.jpg","duration":10}"#,
    )
    .unwrap();
    snapshot(
        "runway_create_image",
        &value(&runway::encode_create_request(&job, "gen4_turbo").1),
    );
}

#[test]
fn response_bodies() {
    let response = response();
    snapshot(
        "openai_response",
        &value(&openai::encode_chat_response(&response)),
    );
    snapshot(
        "anthropic_response",
        &value(&anthropic::encode_response(&response)),
    );
    let task = runway::decode_task(
        br#"{"id":"t1","status":"SUCCEEDED","createdAt":"2025-01-01T00:00:00Z","output":["https://cdn.test/v.mp4"]}"#,
    )
    .unwrap();
    snapshot(
        "video_job_succeeded",
        &value(&runway::job_from_task(&task, "vid_1", "video-default", 1_700_000_000).to_json()),
    );
}

#[test]
fn streams() {
    // Anthropic upstream → OpenAI client.
    let mut decoder = anthropic::StreamDecoder::new();
    let mut events = Vec::new();
    for frame in sse_events(TOOL_STREAM.as_bytes()) {
        decoder.feed_sse(&frame, &mut events).unwrap();
    }
    let mut encoder = openai::ChunkEncoder::new(1_700_000_000, true).with_model("chat-default");
    let mut bytes = Vec::new();
    for event in &events {
        encoder.encode(event, &mut bytes);
    }
    snapshot("openai_stream_from_anthropic", &frames(&bytes));

    // OpenAI upstream → Anthropic client.
    let openai_chunks = [
        r#"{"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
        r#"{"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"Sure."},"finish_reason":null}]}"#,
        r#"{"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}]},"finish_reason":null}]}"#,
        r#"{"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":\"Rome\"}"}}]},"finish_reason":null}]}"#,
        r#"{"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
        r#"{"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":50,"completion_tokens":12,"total_tokens":62}}"#,
        "[DONE]",
    ];
    let mut decoder = openai::ChunkDecoder::new();
    let mut events = Vec::new();
    for chunk in openai_chunks {
        decoder.feed(chunk, &mut events).unwrap();
    }
    let mut encoder = anthropic::StreamEncoder::new();
    let mut bytes = Vec::new();
    for event in &events {
        encoder.encode(event, &mut bytes);
    }
    snapshot("anthropic_stream_from_openai", &frames(&bytes));

    // A failure after the commit point, in each client dialect.
    let error = StreamEvent::Error {
        message: "Overloaded".into(),
        kind: ErrorKind::Overloaded.as_str().into(),
    };
    let mut both = openai::ChunkEncoder::new(0, false).encode_to_vec(&error);
    both.extend(anthropic::StreamEncoder::new().encode_to_vec(&error));
    snapshot("stream_errors", &frames(&both));
}

#[test]
fn embeddings_and_errors() {
    let request = EmbeddingsRequest {
        model: "embed-default".into(),
        inputs: vec!["first".into(), "second".into()],
        dimensions: Some(8),
        encoding_format: EncodingFormat::Base64,
        extra: Map::new(),
    };
    snapshot(
        "openai_embeddings_request",
        &value(&openai::encode_embeddings_request(
            &request,
            "text-embedding-3-small",
        )),
    );
    snapshot(
        "gemini_batch_embed_request",
        &value(&gemini::batch_embed_contents_request(
            &request,
            "gemini-embedding-001",
        )),
    );
    let response = EmbeddingsResponse {
        model: "text-embedding-3-small".into(),
        vectors: vec![vec![0.25, -0.5], vec![1.0, 0.0]],
        usage: Some(Usage {
            input_tokens: 2,
            ..Usage::default()
        }),
    };
    snapshot(
        "openai_embeddings_response_base64",
        &value(&openai::encode_embeddings_response(
            &response,
            EncodingFormat::Base64,
        )),
    );
    snapshot(
        "openai_embeddings_response_float",
        &value(&openai::encode_embeddings_response(
            &response,
            EncodingFormat::Float,
        )),
    );
    snapshot(
        "anthropic_error_529",
        &value(&anthropic::error_body(529, "Overloaded")),
    );
    snapshot(
        "openai_error_context",
        &value(&openai::error_body(ErrorKind::ContextTooLong, "too long").to_json()),
    );
}
