//! Property tests: what one side encodes, the other side decodes to the same unified value.
//!
//! Requests and responses go encode → parse; streams go encode → SSE bytes cut at random points →
//! `SseDecoder` → dialect decoder. Anthropic generators produce its normal form (one leading system
//! message, merged turns, `include_usage == stream`), which is what any request looks like after
//! one trip through Anthropic.

use nines_protocol::sse::SseDecoder;
use nines_protocol::unified::{
    ChatRequest, ChatResponse, Choice, ContentPart, Effort, FinishReason, ImageSource, Message,
    Reasoning, ResponseFormat, Role, StreamEvent, Tool, ToolCall, ToolChoice, Usage,
};
use nines_protocol::{anthropic, openai};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Value, json};

const CHARS: &[char] = &[
    'a',
    'b',
    'Z',
    '0',
    ' ',
    '"',
    '\\',
    '\n',
    '\t',
    '{',
    '}',
    ',',
    ':',
    '\u{e9}',
    '\u{6f22}',
    '\u{1F324}',
    '\u{0}',
    '\u{2028}',
];

/// Non-empty text that does not end in whitespace (Anthropic trims a prefill's trailing space).
fn text() -> impl Strategy<Value = String> {
    vec(select(CHARS), 0..12).prop_map(|chars| {
        let mut s: String = chars.into_iter().collect();
        s.push('x');
        s
    })
}

fn ident() -> impl Strategy<Value = String> {
    vec(select(&['a', 'b', 'c', '_', '1'][..]), 1..6).prop_map(|c| c.into_iter().collect())
}

fn image() -> impl Strategy<Value = ContentPart> {
    prop_oneof![
        ident().prop_map(|p| ContentPart::Image {
            source: ImageSource::Url(format!("https://img.test/{p}.png"))
        }),
        (
            select(&["image/png", "image/jpeg", "image/webp"][..]),
            ident()
        )
            .prop_map(|(media_type, data)| {
                ContentPart::Image {
                    source: ImageSource::Base64 {
                        media_type: media_type.into(),
                        data,
                    },
                }
            }),
    ]
}

fn text_part() -> impl Strategy<Value = ContentPart> {
    text().prop_map(ContentPart::Text)
}

fn user_part() -> impl Strategy<Value = ContentPart> {
    prop_oneof![3 => text_part(), 1 => image()]
}

/// Arguments as canonical JSON object text (what decoding an object gives back).
fn arguments() -> impl Strategy<Value = String> {
    vec(
        (
            ident(),
            prop_oneof![
                text().prop_map(Value::from),
                any::<i32>().prop_map(Value::from),
                any::<bool>().prop_map(Value::from)
            ],
        ),
        0..3,
    )
    .prop_map(|fields| Value::Object(fields.into_iter().collect::<Map<_, _>>()).to_string())
}

fn tool_call() -> impl Strategy<Value = ToolCall> {
    (ident(), ident(), arguments()).prop_map(|(id, name, arguments)| ToolCall {
        id: format!("call_{id}"),
        name,
        arguments,
    })
}

fn schema() -> impl Strategy<Value = Value> {
    vec(ident(), 0..3).prop_map(|names| {
        let properties: Map<String, Value> = names
            .into_iter()
            .map(|n| (n, json!({"type": "string"})))
            .collect();
        json!({"type": "object", "properties": properties})
    })
}

fn tool(nullable: bool) -> impl Strategy<Value = Tool> {
    let parameters = if nullable {
        prop_oneof![Just(Value::Null), schema()].boxed()
    } else {
        schema().boxed()
    };
    (
        ident(),
        option::of(text()),
        parameters,
        option::of(any::<bool>()),
    )
        .prop_map(move |(name, description, parameters, strict)| Tool {
            name,
            description,
            parameters,
            strict: if nullable { strict } else { None },
        })
}

fn tool_choice() -> impl Strategy<Value = ToolChoice> {
    prop_oneof![
        Just(ToolChoice::Auto),
        Just(ToolChoice::None),
        Just(ToolChoice::Required),
        ident().prop_map(ToolChoice::Function),
    ]
}

fn float() -> impl Strategy<Value = f64> {
    (0u32..200).prop_map(|k| f64::from(k) / 100.0)
}

fn openai_message() -> impl Strategy<Value = Message> {
    let name = || option::of(ident());
    prop_oneof![
        (vec(text_part(), 1..3), name()).prop_map(|(content, name)| Message {
            content,
            name,
            ..Message::text(Role::System, "")
        }),
        (vec(user_part(), 1..4), name()).prop_map(|(content, name)| Message {
            content,
            name,
            ..Message::text(Role::User, "")
        }),
        (vec(text_part(), 0..2), vec(tool_call(), 0..3), name()).prop_map(
            |(content, tool_calls, name)| Message {
                content,
                tool_calls,
                name,
                ..Message::text(Role::Assistant, "")
            }
        ),
        (
            vec(text_part(), 1..3),
            option::of(ident()),
            option::of(ident())
        )
            .prop_map(|(content, call, name)| Message {
                content,
                tool_call_id: call.map(|c| format!("call_{c}")),
                name,
                ..Message::text(Role::Tool, "")
            }),
    ]
}

fn response_format() -> impl Strategy<Value = ResponseFormat> {
    prop_oneof![
        Just(ResponseFormat::Text),
        Just(ResponseFormat::JsonObject),
        (ident(), schema(), option::of(any::<bool>())).prop_map(|(name, schema, strict)| {
            ResponseFormat::JsonSchema {
                name,
                schema,
                strict,
            }
        }),
    ]
}

fn extra() -> impl Strategy<Value = Map<String, Value>> {
    vec(
        (
            ident(),
            prop_oneof![
                text().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                Just(json!([1, {"k": null}]))
            ],
        ),
        0..3,
    )
    .prop_map(|fields| {
        fields
            .into_iter()
            .map(|(k, v)| (format!("x_{k}"), v))
            .collect()
    })
}

prop_compose! {
    fn openai_request()(
        model in ident(),
        messages in vec(openai_message(), 1..6),
        tools in vec(tool(true), 0..3),
        tool_choice in option::of(tool_choice()),
        parallel_tool_calls in option::of(any::<bool>()),
        max_tokens in option::of(any::<u32>()),
        temperature in option::of(float()),
        top_p in option::of(float()),
        stop in vec(text(), 0..3),
        (stream, include_usage) in (any::<bool>(), any::<bool>()),
        n in 1u32..4,
        response_format in option::of(response_format()),
        (logprobs, top_logprobs) in (any::<bool>(), option::of(0u32..20)),
        user in option::of(ident()),
        metadata in option::of(ident().prop_map(|v| json!({"tag": v}))),
        seed in option::of(any::<i64>()),
        (presence_penalty, frequency_penalty) in (option::of(float()), option::of(float())),
        top_k in option::of(1u32..500),
        reasoning in option::of(select(&[Effort::Minimal, Effort::Low, Effort::Medium, Effort::High][..])
            .prop_map(Reasoning::Effort)),
        extra in extra(),
    ) -> ChatRequest {
        ChatRequest {
            model, messages, tools, tool_choice, parallel_tool_calls, max_tokens, temperature, top_p,
            stop, stream, include_usage, n, response_format, logprobs, top_logprobs, user, metadata,
            seed, presence_penalty, frequency_penalty, top_k, reasoning, extra,
        }
    }
}

fn anthropic_user_group() -> impl Strategy<Value = Vec<Message>> {
    let result = (
        ident(),
        prop_oneof![Just(vec![]), vec(text_part(), 1..2), vec(user_part(), 2..3)],
    )
        .prop_map(|(id, content)| Message {
            content,
            tool_call_id: Some(format!("toolu_{id}")),
            ..Message::text(Role::Tool, "")
        });
    let user = vec(user_part(), 1..3).prop_map(|content| Message {
        content,
        ..Message::text(Role::User, "")
    });
    (vec(result, 0..3), option::of(user)).prop_filter_map(
        "a turn has a message",
        |(mut group, user)| {
            group.extend(user);
            (!group.is_empty()).then_some(group)
        },
    )
}

fn anthropic_assistant() -> impl Strategy<Value = Message> {
    (vec(text_part(), 0..3), vec(tool_call(), 0..3)).prop_filter_map(
        "a turn has content",
        |(content, tool_calls)| {
            (!content.is_empty() || !tool_calls.is_empty()).then(|| Message {
                content,
                tool_calls,
                ..Message::text(Role::Assistant, "")
            })
        },
    )
}

prop_compose! {
    fn anthropic_request()(
        model in ident(),
        system in option::of(vec(text_part(), 1..3)),
        turns in vec((anthropic_user_group(), anthropic_assistant()), 1..4),
        end_with_user in any::<bool>(),
        tools in vec(tool(false), 0..3),
        choice in option::of((tool_choice(), any::<bool>())),
        max_tokens in 1u32..100_000,
        temperature in option::of(float()),
        top_p in option::of(float()),
        stop in vec(text(), 0..3),
        stream in any::<bool>(),
        user in option::of(ident()),
    ) -> ChatRequest {
        let mut messages = Vec::new();
        if let Some(content) = system {
            messages.push(Message { content, ..Message::text(Role::System, "") });
        }
        for (group, assistant) in turns {
            messages.extend(group);
            messages.push(assistant);
        }
        if end_with_user && messages.last().is_some_and(|m| m.role == Role::Assistant) {
            messages.pop();
        }
        let (tool_choice, parallel_tool_calls) = match (tools.is_empty(), choice) {
            (false, Some((choice, serial))) => {
                let parallel = (serial && choice != ToolChoice::None).then_some(false);
                (Some(choice), parallel)
            }
            _ => (None, None),
        };
        // Anthropic takes one of temperature and top_p.
        let top_p = top_p.filter(|_| temperature.is_none());
        ChatRequest {
            tools, tool_choice, parallel_tool_calls, max_tokens: Some(max_tokens), temperature, top_p,
            stop, stream, include_usage: stream, user,
            ..ChatRequest::new(model, messages)
        }
    }
}

fn finish_reason() -> impl Strategy<Value = FinishReason> {
    select(
        &[
            FinishReason::Stop,
            FinishReason::Length,
            FinishReason::ToolCalls,
            FinishReason::ContentFilter,
        ][..],
    )
}

/// Usage whose cached counts fit inside the prompt count, as every dialect's do.
fn usage(cache_writes: bool) -> impl Strategy<Value = Usage> {
    (0u64..1_000_000, 0u64..1_000_000, 0u64..1000, 0u64..1000).prop_map(
        move |(input, output, read, write)| {
            let write = if cache_writes { write } else { 0 };
            Usage {
                input_tokens: input + read + write,
                output_tokens: output,
                cache_read_tokens: read,
                cache_write_tokens: write,
            }
        },
    )
}

fn assistant_answer() -> impl Strategy<Value = Message> {
    (option::of(text()), vec(tool_call(), 0..3)).prop_map(|(text, tool_calls)| Message {
        content: text.map(ContentPart::Text).into_iter().collect(),
        tool_calls,
        ..Message::text(Role::Assistant, "")
    })
}

prop_compose! {
    fn openai_response()(
        id in ident(), model in ident(), created in any::<u32>(),
        choices in vec((assistant_answer(), option::of(finish_reason())), 1..4),
        usage in option::of(usage(false)),
    ) -> ChatResponse {
        ChatResponse {
            id, model, created: u64::from(created),
            choices: choices.into_iter().enumerate().map(|(i, (message, finish_reason))| Choice { index: i as u32, message, finish_reason }).collect(),
            usage,
        }
    }
}

prop_compose! {
    fn anthropic_response()(
        // Anthropic's clients get `msg_` ids (others' are prefixed on the way out).
        id in ident().prop_map(|id| format!("msg_{id}")), model in ident(),
        content in vec(text_part(), 0..3), tool_calls in vec(tool_call(), 0..3),
        finish_reason in option::of(finish_reason()),
        usage in usage(true),
    ) -> ChatResponse {
        let message = Message { content, tool_calls, ..Message::text(Role::Assistant, "") };
        ChatResponse { id, model, created: 0, choices: vec![Choice { index: 0, message, finish_reason }], usage: Some(usage) }
    }
}

/// The body of a stream: text and tool-call deltas for choices `0..choices`, tool calls numbered
/// in order of their start per choice, each delta after its call's start.
fn stream_body(choices: u32) -> impl Strategy<Value = Vec<StreamEvent>> {
    vec((0..choices, 0u8..3, text(), ident()), 0..12).prop_map(|steps| {
        let mut tools = [0u32; 8];
        let mut out = Vec::new();
        for (choice, kind, text, name) in steps {
            let started = tools[choice as usize];
            match kind {
                0 => out.push(StreamEvent::TextDelta { choice, text }),
                1 => {
                    out.push(StreamEvent::ToolCallStart {
                        choice,
                        index: started,
                        id: format!("call_{name}"),
                        name,
                    });
                    tools[choice as usize] += 1;
                }
                _ if started > 0 => out.push(StreamEvent::ToolCallDelta {
                    choice,
                    index: started - 1,
                    arguments: text,
                }),
                _ => out.push(StreamEvent::TextDelta { choice, text }),
            }
        }
        out
    })
}

fn stream(choices: u32, cache_writes: bool) -> impl Strategy<Value = Vec<StreamEvent>> {
    (
        ident(),
        ident(),
        stream_body(choices),
        option::of(finish_reason()),
        option::of(usage(cache_writes)),
    )
        .prop_map(|(id, model, body, finish, usage)| {
            let mut events = vec![StreamEvent::Start { id, model }];
            events.extend(body);
            events.extend(finish.map(|reason| StreamEvent::Finish { choice: 0, reason }));
            events.extend(usage.map(StreamEvent::Usage));
            events.push(StreamEvent::Done);
            events
        })
}

/// Cuts `bytes` at the given fractions and feeds the pieces to an SSE decoder.
fn frames(bytes: &[u8], cuts: &[f64]) -> Vec<nines_protocol::sse::SseEvent> {
    let mut points: Vec<usize> = cuts
        .iter()
        .map(|c| (c * bytes.len() as f64) as usize)
        .collect();
    points.sort_unstable();
    let mut decoder = SseDecoder::new();
    let mut out = Vec::new();
    let mut start = 0;
    for point in points.into_iter().chain([bytes.len()]) {
        decoder.feed(&bytes[start..point], &mut out).unwrap();
        start = point;
    }
    decoder.finish(&mut out);
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn openai_request_round_trips(request in openai_request()) {
        let body = openai::encode_chat_request(&request, &request.model);
        let parsed = openai::parse_chat_request(&body).map_err(|e| TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(&body))))?;
        prop_assert_eq!(parsed, request);
    }

    #[test]
    fn anthropic_request_round_trips(request in anthropic_request()) {
        let body = anthropic::encode_request(&request, &request.model, anthropic::DEFAULT_MAX_TOKENS);
        let parsed = anthropic::parse_request(&body).map_err(|e| TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(&body))))?;
        prop_assert_eq!(parsed, request);
    }

    /// Any OpenAI request reaches Anthropic's normal form in one trip and stays there.
    #[test]
    fn anthropic_encoding_is_idempotent(request in openai_request()) {
        let once = anthropic::parse_request(&anthropic::encode_request(&request, "c", 7));
        if let Ok(once) = once {
            let twice = anthropic::parse_request(&anthropic::encode_request(&once, "c", 7)).unwrap();
            prop_assert_eq!(twice, once);
        }
    }

    #[test]
    fn openai_response_round_trips(response in openai_response()) {
        let body = openai::encode_chat_response(&response);
        prop_assert_eq!(openai::decode_chat_response(&body).unwrap(), response);
    }

    #[test]
    fn anthropic_response_round_trips(response in anthropic_response()) {
        let body = anthropic::encode_response(&response);
        prop_assert_eq!(anthropic::decode_response(&body).unwrap(), response);
    }

    #[test]
    fn openai_stream_round_trips(events in stream(3, false), cuts in vec(0.0f64..1.0, 0..6)) {
        let mut encoder = openai::ChunkEncoder::new(1, true);
        let mut bytes = Vec::new();
        for event in &events {
            encoder.encode(event, &mut bytes);
        }
        let mut decoder = openai::ChunkDecoder::new();
        let mut decoded = Vec::new();
        for frame in frames(&bytes, &cuts) {
            decoder.feed(&frame.data, &mut decoded).unwrap();
        }
        prop_assert_eq!(decoded, events);
    }

    #[test]
    fn anthropic_stream_round_trips(events in stream(1, true), cuts in vec(0.0f64..1.0, 0..6)) {
        let mut encoder = anthropic::StreamEncoder::new();
        let mut bytes = Vec::new();
        for event in &events {
            encoder.encode(event, &mut bytes);
        }
        let mut decoder = anthropic::StreamDecoder::new();
        let mut decoded = Vec::new();
        for frame in frames(&bytes, &cuts) {
            decoder.feed_sse(&frame, &mut decoded).unwrap();
        }
        // An Anthropic stream always reports usage (zero when the source had none).
        let mut expected = events.clone();
        // The message id gains Anthropic's `msg_` prefix.
        if let Some(StreamEvent::Start { id, .. }) = expected.first_mut() {
            *id = format!("msg_{id}");
        }
        if !expected.iter().any(|e| matches!(e, StreamEvent::Usage(_))) {
            expected.insert(expected.len() - 1, StreamEvent::Usage(Usage::default()));
        }
        prop_assert_eq!(decoded, expected);
    }
}
