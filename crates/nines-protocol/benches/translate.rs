//! The cost of cross-dialect translation on the request path.
//!
//! - a ~4 KiB OpenAI chat request (system prompt, six turns, two tools, a tool call and its
//!   result) parsed and re-encoded for Anthropic and for Gemini (target: ≤ 20 µs each);
//! - one Anthropic stream event (`content_block_delta` with a token) decoded and re-encoded as an
//!   OpenAI `chat.completion.chunk` SSE frame (target: ≤ 2 µs per chunk), and the reverse.
//!
//! - the same conversation as a Responses API request (`instructions`, input items, function
//!   tools, a function call and its output) parsed and encoded for Anthropic and for Gemini, and
//!   one Anthropic stream event re-encoded as a Responses `response.output_text.delta` event;
//!   the chat benches above are the same run's baseline.
//!
//! Run with `cargo bench -p nines-protocol`.

#![expect(clippy::unwrap_used, reason = "a benchmark's fixtures are known good")]

use divan::{Bencher, black_box};
use nines_protocol::unified::StreamEvent;
use nines_protocol::{anthropic, gemini, openai, openai_responses};
use serde_json::json;

fn main() {
    let body = request_body();
    eprintln!("request body: {} bytes", body.len());
    let body = responses_body();
    eprintln!("responses request body: {} bytes", body.len());
    divan::main();
}

/// An OpenAI request of about 4 KiB, shaped like real agent traffic.
fn request_body() -> Vec<u8> {
    let paragraph = "The gateway routes each request to one of many upstream deployments and hides \
                     provider incidents from the application; ";
    let body = json!({
        "model": "chat-default",
        "messages": [
            {"role": "system", "content": format!("You are a careful assistant. {}", paragraph.repeat(3))},
            {"role": "user", "content": format!("Summarise this: {}", paragraph.repeat(9))},
            {"role": "assistant", "content": format!("Summary: {}", paragraph.repeat(4))},
            {"role": "user", "content": [
                {"type": "text", "text": "And what is the weather in Paris? Answer in \u{e9}l\u{e9}gant French."},
                {"type": "image_url", "image_url": {"url": "https://example.com/paris.jpg"}}
            ]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\",\"unit\":\"c\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\":21,\"sky\":\"clear\",\"wind\":\"12 km/h NW\"}"},
            {"role": "assistant", "content": format!("Il fait beau. {}", paragraph.repeat(2))},
            {"role": "user", "content": format!("Now compare with Oslo. {}", paragraph.repeat(4))}
        ],
        "tools": [
            {"type": "function", "function": {"name": "get_weather", "description": "Current weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}}, "required": ["city"], "additionalProperties": false}}},
            {"type": "function", "function": {"name": "get_forecast", "description": "Five-day forecast for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1, "maximum": 5}}, "required": ["city"]}}}
        ],
        "tool_choice": "auto",
        "temperature": 0.3,
        "max_tokens": 800,
        "stream": true,
        "stream_options": {"include_usage": true},
        "user": "user-1234"
    });
    serde_json::to_vec(&body).unwrap()
}

#[divan::bench]
fn openai_request_to_anthropic(bencher: Bencher) {
    let body = request_body();
    bencher.bench(|| {
        let request = openai::parse_chat_request(black_box(&body)).unwrap();
        anthropic::encode_request(&request, "claude-haiku-4-5", anthropic::DEFAULT_MAX_TOKENS)
    });
}

#[divan::bench]
fn openai_request_to_gemini(bencher: Bencher) {
    let body = request_body();
    bencher.bench(|| {
        let request = openai::parse_chat_request(black_box(&body)).unwrap();
        gemini::encode_request(&request)
    });
}

#[divan::bench]
fn openai_request_parse_only(bencher: Bencher) {
    let body = request_body();
    bencher.bench(|| openai::parse_chat_request(black_box(&body)).unwrap());
}

const ANTHROPIC_DELTA: &str =
    r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" elegant"}}"#;

/// Per chunk: Anthropic `content_block_delta` → unified event → OpenAI chunk frame bytes.
#[divan::bench]
fn anthropic_event_to_openai_chunk(bencher: Bencher) {
    let mut decoder = anthropic::StreamDecoder::new();
    let mut encoder = openai::ChunkEncoder::new(1_700_000_000, true).with_model("chat-default");
    let mut events = Vec::new();
    let start = r#"{"type":"message_start","message":{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","model":"claude-haiku-4-5","usage":{"input_tokens":25,"output_tokens":1}}}"#;
    decoder.feed("message_start", start, &mut events).unwrap();
    let mut out = Vec::with_capacity(512);
    for event in &events {
        encoder.encode(event, &mut out);
    }
    bencher.bench_local(|| {
        events.clear();
        out.clear();
        decoder
            .feed(
                "content_block_delta",
                black_box(ANTHROPIC_DELTA),
                &mut events,
            )
            .unwrap();
        for event in &events {
            encoder.encode(event, &mut out);
        }
        black_box(out.len())
    });
}

const OPENAI_CHUNK: &str = r#"{"id":"chatcmpl-AbC123","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"content":" elegant"},"logprobs":null,"finish_reason":null}]}"#;

/// Per chunk, the other way: OpenAI chunk → unified event → Anthropic SSE frame bytes.
#[divan::bench]
fn openai_chunk_to_anthropic_event(bencher: Bencher) {
    let mut decoder = openai::ChunkDecoder::new();
    let mut encoder = anthropic::StreamEncoder::new();
    let mut events = Vec::new();
    decoder.feed(OPENAI_CHUNK, &mut events).unwrap();
    let mut out = Vec::with_capacity(512);
    for event in &events {
        encoder.encode(event, &mut out);
    }
    bencher.bench_local(|| {
        events.clear();
        out.clear();
        decoder.feed(black_box(OPENAI_CHUNK), &mut events).unwrap();
        for event in &events {
            encoder.encode(event, &mut out);
        }
        black_box(out.len())
    });
}

/// The encoder alone, for one text delta.
#[divan::bench]
fn openai_chunk_encode_only(bencher: Bencher) {
    let mut encoder = openai::ChunkEncoder::new(1_700_000_000, true);
    let mut out = Vec::with_capacity(512);
    encoder.encode(
        &StreamEvent::Start {
            id: "msg_1".into(),
            model: "m".into(),
        },
        &mut out,
    );
    let event = StreamEvent::TextDelta {
        choice: 0,
        text: " elegant".into(),
    };
    bencher.bench_local(|| {
        out.clear();
        encoder.encode(black_box(&event), &mut out);
        black_box(out.len())
    });
}

/// The conversation of [`request_body`] as a Responses API request.
fn responses_body() -> Vec<u8> {
    let paragraph = "The gateway routes each request to one of many upstream deployments and hides \
                     provider incidents from the application; ";
    let body = json!({
        "model": "chat-default",
        "instructions": format!("You are a careful assistant. {}", paragraph.repeat(3)),
        "input": [
            {"role": "user", "content": format!("Summarise this: {}", paragraph.repeat(9))},
            {"type": "message", "role": "assistant", "content": [
                {"type": "output_text", "text": format!("Summary: {}", paragraph.repeat(4)), "annotations": []}
            ]},
            {"role": "user", "content": [
                {"type": "input_text", "text": "And what is the weather in Paris? Answer in \u{e9}l\u{e9}gant French."},
                {"type": "input_image", "image_url": "https://example.com/paris.jpg", "detail": "auto"}
            ]},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\",\"unit\":\"c\"}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "{\"temp\":21,\"sky\":\"clear\",\"wind\":\"12 km/h NW\"}"},
            {"type": "message", "role": "assistant", "content": [
                {"type": "output_text", "text": format!("Il fait beau. {}", paragraph.repeat(2)), "annotations": []}
            ]},
            {"role": "user", "content": format!("Now compare with Oslo. {}", paragraph.repeat(4))}
        ],
        "tools": [
            {"type": "function", "name": "get_weather", "description": "Current weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}}, "required": ["city"], "additionalProperties": false}},
            {"type": "function", "name": "get_forecast", "description": "Five-day forecast for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1, "maximum": 5}}, "required": ["city"]}}
        ],
        "tool_choice": "auto",
        "temperature": 0.3,
        "max_output_tokens": 800,
        "stream": true,
        "store": false,
        "user": "user-1234"
    });
    serde_json::to_vec(&body).unwrap()
}

#[divan::bench]
fn responses_request_to_anthropic(bencher: Bencher) {
    let body = responses_body();
    bencher.bench(|| {
        let request = openai_responses::parse_request(black_box(&body)).unwrap();
        anthropic::encode_request(&request, "claude-haiku-4-5", anthropic::DEFAULT_MAX_TOKENS)
    });
}

#[divan::bench]
fn responses_request_to_gemini(bencher: Bencher) {
    let body = responses_body();
    bencher.bench(|| {
        let request = openai_responses::parse_request(black_box(&body)).unwrap();
        gemini::encode_request(&request)
    });
}

#[divan::bench]
fn responses_request_parse_only(bencher: Bencher) {
    let body = responses_body();
    bencher.bench(|| openai_responses::parse_request(black_box(&body)).unwrap());
}

/// Per event: Anthropic `content_block_delta` → unified event → Responses
/// `response.output_text.delta` frame bytes (the message item already open).
#[divan::bench]
fn anthropic_event_to_responses_event(bencher: Bencher) {
    let mut decoder = anthropic::StreamDecoder::new();
    let mut encoder =
        openai_responses::StreamEncoder::new(1_700_000_000).with_model("chat-default");
    let mut events = Vec::new();
    let start = r#"{"type":"message_start","message":{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","model":"claude-haiku-4-5","usage":{"input_tokens":25,"output_tokens":1}}}"#;
    decoder.feed("message_start", start, &mut events).unwrap();
    decoder
        .feed("content_block_delta", ANTHROPIC_DELTA, &mut events)
        .unwrap();
    let mut out = Vec::with_capacity(512);
    for event in &events {
        encoder.encode(event, &mut out);
    }
    bencher.bench_local(|| {
        events.clear();
        out.clear();
        decoder
            .feed(
                "content_block_delta",
                black_box(ANTHROPIC_DELTA),
                &mut events,
            )
            .unwrap();
        for event in &events {
            encoder.encode(event, &mut out);
        }
        black_box(out.len())
    });
}

/// The Responses encoder alone, for one text delta (compare `openai_chunk_encode_only`).
#[divan::bench]
fn responses_event_encode_only(bencher: Bencher) {
    let mut encoder = openai_responses::StreamEncoder::new(1_700_000_000);
    let mut out = Vec::with_capacity(512);
    let event = StreamEvent::TextDelta {
        choice: 0,
        text: " elegant".into(),
    };
    encoder.encode(
        &StreamEvent::Start {
            id: "msg_1".into(),
            model: "m".into(),
        },
        &mut out,
    );
    encoder.encode(&event, &mut out);
    bencher.bench_local(|| {
        out.clear();
        encoder.encode(black_box(&event), &mut out);
        black_box(out.len())
    });
}

/// A whole Anthropic answer (text and a tool call) as a Responses `response` object, and as an
/// OpenAI `chat.completion` (the baseline).
const ANTHROPIC_ANSWER: &str = r#"{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","model":"claude-haiku-4-5","content":[{"type":"text","text":"Il fait beau a Paris, 21 degres, ciel clair; a Oslo il fait plus frais."},{"type":"tool_use","id":"toolu_01","name":"get_forecast","input":{"city":"Oslo","days":3}}],"stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":1025,"output_tokens":61}}"#;

#[divan::bench]
fn anthropic_answer_to_responses_object(bencher: Bencher) {
    bencher.bench(|| {
        let response = anthropic::decode_response(black_box(ANTHROPIC_ANSWER.as_bytes())).unwrap();
        openai_responses::encode_response(&response)
    });
}

#[divan::bench]
fn anthropic_answer_to_chat_completion(bencher: Bencher) {
    bencher.bench(|| {
        let response = anthropic::decode_response(black_box(ANTHROPIC_ANSWER.as_bytes())).unwrap();
        openai::encode_chat_response(&response)
    });
}
