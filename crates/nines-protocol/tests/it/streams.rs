//! Streams across dialects: the OpenAI chunk encoder's exact frames, Anthropic and Gemini streams
//! re-encoded for OpenAI clients (and back), and byte splits anywhere, including inside UTF-8.

use crate::anthropic::{TOOL_STREAM, tool_stream_events};
use crate::{sse_events, value};
use nines_protocol::anthropic;
use nines_protocol::gemini;
use nines_protocol::openai::{ChunkDecoder, ChunkEncoder};
use nines_protocol::sse::SseDecoder;
use nines_protocol::unified::{FinishReason, StreamEvent, Usage};

fn encode_openai(events: &[StreamEvent], include_usage: bool) -> Vec<u8> {
    let mut encoder = ChunkEncoder::new(1_700_000_000, include_usage);
    let mut out = Vec::new();
    for event in events {
        encoder.encode(event, &mut out);
    }
    out
}

/// Decodes an OpenAI SSE byte stream fed in the given pieces.
fn decode_openai(pieces: &[&[u8]]) -> Vec<StreamEvent> {
    let mut sse = SseDecoder::new();
    let mut frames = Vec::new();
    for piece in pieces {
        sse.feed(piece, &mut frames).unwrap();
    }
    sse.finish(&mut frames);
    let mut decoder = ChunkDecoder::new();
    let mut events = Vec::new();
    for frame in frames {
        decoder.feed(&frame.data, &mut events).unwrap();
    }
    events
}

#[test]
fn chunk_encoder_writes_openai_frames() {
    let events = [
        StreamEvent::Start {
            id: "msg_1".into(),
            model: "claude".into(),
        },
        StreamEvent::TextDelta {
            choice: 0,
            text: "Hi \"there\"".into(),
        },
        StreamEvent::ToolCallStart {
            choice: 0,
            index: 0,
            id: "toolu_1".into(),
            name: "f".into(),
        },
        StreamEvent::ToolCallDelta {
            choice: 0,
            index: 0,
            arguments: "{\"a\":1}".into(),
        },
        StreamEvent::Finish {
            choice: 0,
            reason: FinishReason::ToolCalls,
        },
        StreamEvent::Usage(Usage {
            input_tokens: 3,
            output_tokens: 4,
            cache_read_tokens: 1,
            cache_write_tokens: 0,
        }),
        StreamEvent::Done,
    ];
    let text = String::from_utf8(encode_openai(&events, true)).unwrap();
    let head = r#"data: {"id":"msg_1","object":"chat.completion.chunk","created":1700000000,"model":"claude","#;
    let expected = [
        format!(
            r#"{head}"choices":[{{"index":0,"delta":{{"role":"assistant","content":""}},"logprobs":null,"finish_reason":null}}]}}"#
        ),
        format!(
            r#"{head}"choices":[{{"index":0,"delta":{{"content":"Hi \"there\""}},"logprobs":null,"finish_reason":null}}]}}"#
        ),
        format!(
            r#"{head}"choices":[{{"index":0,"delta":{{"tool_calls":[{{"index":0,"id":"toolu_1","type":"function","function":{{"name":"f","arguments":""}}}}]}},"logprobs":null,"finish_reason":null}}]}}"#
        ),
        format!(
            r#"{head}"choices":[{{"index":0,"delta":{{"tool_calls":[{{"index":0,"function":{{"arguments":"{{\"a\":1}}"}}}}]}},"logprobs":null,"finish_reason":null}}]}}"#
        ),
        format!(
            r#"{head}"choices":[{{"index":0,"delta":{{}},"logprobs":null,"finish_reason":"tool_calls"}}]}}"#
        ),
        format!(
            r#"{head}"choices":[],"usage":{{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7,"prompt_tokens_details":{{"cached_tokens":1}}}}}}"#
        ),
        "data: [DONE]".to_owned(),
    ];
    let frames: Vec<&str> = text.split("\n\n").filter(|f| !f.is_empty()).collect();
    assert_eq!(frames, expected);
}

#[test]
fn chunk_encoder_overrides_and_roles_per_choice() {
    let mut encoder = ChunkEncoder::new(5, false)
        .with_id("chatcmpl-nines")
        .with_model("chat-default");
    let mut out = Vec::new();
    for event in [
        StreamEvent::TextDelta {
            choice: 1,
            text: "b".into(),
        },
        StreamEvent::Start {
            id: "ignored".into(),
            model: "ignored".into(),
        },
        StreamEvent::TextDelta {
            choice: 1,
            text: "c".into(),
        },
        StreamEvent::Usage(Usage::default()),
        StreamEvent::Done,
    ] {
        encoder.encode(&event, &mut out);
    }
    let frames = sse_events(&out);
    assert_eq!(frames.len(), 4, "no usage chunk without include_usage");
    let first = value(frames[0].data.as_bytes());
    assert_eq!(
        first["choices"][0]["delta"]["role"], "assistant",
        "choice 1's first delta has the role"
    );
    let second = value(frames[1].data.as_bytes());
    assert_eq!(
        (second["id"].as_str(), second["model"].as_str()),
        (Some("chatcmpl-nines"), Some("chat-default"))
    );
    let third = value(frames[2].data.as_bytes());
    assert!(third["choices"][0]["delta"].get("role").is_none());
    assert!(frames[3].is_done());
}

#[test]
fn chunk_encoder_error_frame_has_no_done() {
    let mut encoder = ChunkEncoder::new(0, true);
    let out = encoder.encode_to_vec(&StreamEvent::Error {
        message: "upstream overloaded".into(),
        kind: "overloaded".into(),
    });
    let frames = sse_events(&out);
    assert_eq!(frames.len(), 1);
    assert_eq!(
        value(frames[0].data.as_bytes()),
        serde_json::json!({"error": {"message": "upstream overloaded", "type": "server_error", "param": null, "code": "overloaded"}})
    );
}

/// Anthropic upstream, OpenAI client: decode, re-encode, and an OpenAI SDK sees the same events.
#[test]
fn anthropic_stream_served_to_an_openai_client() {
    let mut anthropic_decoder = anthropic::StreamDecoder::new();
    let mut events = Vec::new();
    for frame in sse_events(TOOL_STREAM.as_bytes()) {
        anthropic_decoder.feed_sse(&frame, &mut events).unwrap();
    }
    let bytes = encode_openai(&events, true);
    assert_eq!(decode_openai(&[&bytes]), tool_stream_events());
}

/// OpenAI upstream, Anthropic client: OpenAI's order (finish, usage, done) becomes Anthropic's.
#[test]
fn openai_stream_served_to_an_anthropic_client() {
    let mut encoder = anthropic::StreamEncoder::new();
    let mut bytes = Vec::new();
    for event in tool_stream_events() {
        encoder.encode(&event, &mut bytes);
    }
    let mut decoder = anthropic::StreamDecoder::new();
    let mut events = Vec::new();
    for frame in sse_events(&bytes) {
        decoder.feed_sse(&frame, &mut events).unwrap();
    }
    assert_eq!(events, tool_stream_events());
}

#[test]
fn gemini_stream_served_to_an_anthropic_client() {
    let chunks = [
        r#"{"candidates":[{"content":{"parts":[{"text":"Ol\u00e1 "}]},"index":0}],"responseId":"g1","modelVersion":"gemini-2.5-flash"}"#,
        r#"{"candidates":[{"content":{"parts":[{"text":"mundo"},{"functionCall":{"name":"f","args":{}}}]},"index":0,"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":2,"cachedContentTokenCount":2}}"#,
    ];
    let mut gemini_decoder = gemini::StreamDecoder::new();
    let mut events = Vec::new();
    for chunk in chunks {
        gemini_decoder.feed(chunk, &mut events).unwrap();
    }
    let mut encoder = anthropic::StreamEncoder::new();
    let mut bytes = Vec::new();
    for event in &events {
        encoder.encode(event, &mut bytes);
    }
    let mut decoder = anthropic::StreamDecoder::new();
    let mut round = Vec::new();
    for frame in sse_events(&bytes) {
        decoder.feed_sse(&frame, &mut round).unwrap();
    }
    // Everything survives; the id gains Anthropic's `msg_` prefix.
    let mut expected = events.clone();
    expected[0] = StreamEvent::Start {
        id: "msg_g1".into(),
        model: "gemini-2.5-flash".into(),
    };
    assert_eq!(round, expected);
}

/// Every byte split of a stream with 2-, 3- and 4-byte characters decodes to the same events.
#[test]
fn utf8_split_anywhere_decodes_the_same() {
    let events = [
        StreamEvent::Start {
            id: "c".into(),
            model: "m".into(),
        },
        StreamEvent::TextDelta {
            choice: 0,
            text: "h\u{e9}".into(),
        },
        StreamEvent::TextDelta {
            choice: 0,
            text: "\u{6f22}\u{5b57}".into(),
        },
        StreamEvent::TextDelta {
            choice: 0,
            text: "\u{1F324}\u{fe0f}!".into(),
        },
        StreamEvent::Finish {
            choice: 0,
            reason: FinishReason::Stop,
        },
        StreamEvent::Done,
    ];
    let bytes = encode_openai(&events, false);
    let whole = decode_openai(&[&bytes]);
    assert_eq!(whole, events);
    for i in 0..=bytes.len() {
        let (a, b) = bytes.split_at(i);
        assert_eq!(decode_openai(&[a, b]), events, "split at {i}");
    }
    // Byte by byte.
    let pieces: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(decode_openai(&pieces), events);

    let anthropic_bytes = TOOL_STREAM.as_bytes();
    for i in (0..=anthropic_bytes.len()).step_by(7) {
        let (a, b) = anthropic_bytes.split_at(i);
        let mut sse = SseDecoder::new();
        let mut frames = Vec::new();
        sse.feed(a, &mut frames).unwrap();
        sse.feed(b, &mut frames).unwrap();
        let mut decoder = anthropic::StreamDecoder::new();
        let mut out = Vec::new();
        for frame in frames {
            decoder.feed_sse(&frame, &mut out).unwrap();
        }
        assert_eq!(out, tool_stream_events(), "split at {i}");
    }
}
