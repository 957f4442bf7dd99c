//! Translation tests, by value: golden wire shapes (insta snapshots under `snapshots/`), property
//! round trips, and every mapping table (finish reasons, usage, errors) of every dialect.

#![expect(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

mod anthropic;
mod gemini;
mod golden;
mod mappings;
mod openai;
mod replicate;
mod roundtrip;
mod runway;
mod streams;
mod unified;

use nines_protocol::sse::{SseDecoder, SseEvent};
use nines_protocol::unified::{
    ChatRequest, ContentPart, ImageSource, Message, ResponseFormat, Role, Tool, ToolCall,
    ToolChoice,
};
use serde_json::{Value, json};

/// Bytes → JSON value, for comparing and snapshotting wire shapes.
pub fn value(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| {
        panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes));
    })
}

/// Every SSE event in `bytes`.
pub fn sse_events(bytes: &[u8]) -> Vec<SseEvent> {
    let mut decoder = SseDecoder::new();
    let mut out = Vec::new();
    decoder.feed(bytes, &mut out).unwrap();
    decoder.finish(&mut out);
    out
}

pub fn weather_tool() -> Tool {
    Tool {
        name: "get_weather".into(),
        description: Some("Current weather for a city".into()),
        parameters: json!({
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
            "required": ["city"],
            "additionalProperties": false
        }),
        strict: Some(true),
    }
}

/// A conversation that exercises every message shape: system, text and images, an assistant
/// turn with two parallel tool calls, both results, and a follow-up question.
pub fn rich_request() -> ChatRequest {
    let mut request = ChatRequest::new(
        "chat-default",
        vec![
            Message::text(Role::System, "You are terse."),
            Message {
                content: vec![
                    ContentPart::Text(
                        "What is in these pictures, and the weather in Paris and Oslo?".into(),
                    ),
                    ContentPart::Image {
                        source: ImageSource::Url("https://example.com/cat.png".into()),
                    },
                    ContentPart::Image {
                        source: ImageSource::Base64 {
                            media_type: "image/jpeg".into(),
                            data: "/9j/4AAQSkZJRg==".into(),
                        },
                    },
                ],
                ..Message::text(Role::User, "")
            },
            Message {
                content: vec![ContentPart::Text("Checking both.".into())],
                tool_calls: vec![
                    ToolCall {
                        id: "call_a".into(),
                        name: "get_weather".into(),
                        arguments: r#"{"city":"Paris"}"#.into(),
                    },
                    ToolCall {
                        id: "call_b".into(),
                        name: "get_weather".into(),
                        arguments: r#"{"city":"Oslo","unit":"c"}"#.into(),
                    },
                ],
                ..Message::text(Role::Assistant, "")
            },
            Message::tool_result("call_a", r#"{"temp":21,"sky":"clear"}"#),
            Message::tool_result("call_b", "-3 and snowing"),
            Message::text(Role::User, "Which is warmer?"),
        ],
    );
    request.tools = vec![weather_tool()];
    request.tool_choice = Some(ToolChoice::Auto);
    request.max_tokens = Some(300);
    request.temperature = Some(0.2);
    request.top_p = Some(0.9);
    request.stop = vec!["END".into()];
    request.user = Some("user-42".into());
    request.stream = true;
    request.include_usage = true;
    request
}

/// [`rich_request`] asking for JSON output that follows a schema.
pub fn json_schema_request() -> ChatRequest {
    let mut request = ChatRequest::new(
        "chat-default",
        vec![Message::text(
            Role::User,
            "Give me a city and its population.",
        )],
    );
    request.response_format = Some(ResponseFormat::JsonSchema {
        name: "city".into(),
        schema: json!({
            "type": "object",
            "properties": {"name": {"type": "string"}, "population": {"type": "integer"}},
            "required": ["name", "population"],
            "additionalProperties": false
        }),
        strict: Some(true),
    });
    request.n = 2;
    request.seed = Some(7);
    request
}
