use super::*;
use crate::openai::RequestError;
use crate::sse::{SseDecoder, SseEvent};
use crate::unified::{
    ChatResponse, Choice, ContentPart, FinishReason, ImageSource, Message, ResponseFormat, Role,
    StreamEvent, ToolCall, ToolChoice, Usage,
};
use serde_json::{Value, json};

fn parse(v: Value) -> Result<crate::unified::ChatRequest, RequestError> {
    parse_request(&serde_json::to_vec(&v).unwrap())
}

#[test]
fn the_head_names_model_stream_and_input() {
    let body = br#"{"model":"m","input":"hi","stream":true,"max_output_tokens":7,"previous_response_id":"resp_1"}"#;
    let head = parse_head(body).unwrap();
    assert_eq!(head.model, "m");
    assert_eq!(&body[head.model_span.clone()], br#""m""#);
    assert_eq!(&body[head.input_span.clone()], br#""hi""#);
    assert!(head.stream);
    assert_eq!(head.max_output_tokens, Some(7));
    assert_eq!(head.previous_response_id.as_deref(), Some("resp_1"));
    assert_eq!(
        parse_head(br#"{"model":"m"}"#),
        Err(RequestError::Missing("input"))
    );
    assert_eq!(
        parse_head(br#"{"input":"x"}"#),
        Err(RequestError::MissingModel)
    );
}

#[test]
fn input_items_become_chat_turns() {
    let chat = parse(json!({
        "model": "m",
        "instructions": "be brief",
        "input": [
            {"role": "user", "content": [
                {"type": "input_text", "text": "weather?"},
                {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}
            ]},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "function_call", "call_id": "call_1", "name": "get", "arguments": "{\"c\":\"Oslo\"}"},
            {"type": "function_call", "call_id": "call_2", "name": "get", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "12C"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "It is 12C"}]},
            {"role": "developer", "content": "again"}
        ],
        "tools": [{"type": "function", "name": "get", "description": "d", "parameters": {"type": "object"}, "strict": true}],
        "tool_choice": {"type": "function", "name": "get"},
        "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}, "strict": true}},
        "reasoning": {"effort": "low"},
        "max_output_tokens": 50,
        "temperature": 0.3,
        "store": true,
        "stream": true,
        "service_tier": "auto"
    }))
    .unwrap();
    assert_eq!(chat.messages[0], Message::text(Role::System, "be brief"));
    assert_eq!(
        chat.messages[1].content[1],
        ContentPart::Image {
            source: ImageSource::Base64 {
                media_type: "image/png".into(),
                data: "AAAA".into()
            }
        }
    );
    assert_eq!(chat.messages[2].role, Role::Assistant);
    assert_eq!(
        chat.messages[2].tool_calls,
        vec![
            ToolCall {
                id: "call_1".into(),
                name: "get".into(),
                arguments: "{\"c\":\"Oslo\"}".into()
            },
            ToolCall {
                id: "call_2".into(),
                name: "get".into(),
                arguments: "{}".into()
            }
        ],
        "consecutive calls are one assistant turn; the reasoning item is left out"
    );
    assert_eq!(chat.messages[3], Message::tool_result("call_1", "12C"));
    assert_eq!(
        chat.messages[4],
        Message::text(Role::Assistant, "It is 12C")
    );
    assert_eq!(chat.messages[5], Message::text(Role::System, "again"));
    assert_eq!(chat.tools[0].name, "get");
    assert_eq!(chat.tools[0].strict, Some(true));
    assert_eq!(chat.tool_choice, Some(ToolChoice::Function("get".into())));
    assert!(matches!(
        chat.response_format,
        Some(ResponseFormat::JsonSchema { ref name, .. }) if name == "w"
    ));
    assert_eq!(
        chat.reasoning,
        Some(crate::unified::Reasoning::Effort(
            crate::unified::Effort::Low
        ))
    );
    assert!(!chat.extra.contains_key("reasoning_effort"));
    assert_eq!(chat.extra.get("service_tier"), Some(&json!("auto")));
    assert!(!chat.extra.contains_key("store"));
    assert_eq!(chat.max_tokens, Some(50));
    assert_eq!(chat.temperature, Some(0.3));
    assert!(chat.stream && chat.include_usage);
}

#[test]
fn what_only_openai_serves_is_unsupported_and_bad_input_is_invalid() {
    for tool in [
        "web_search",
        "web_search_preview",
        "file_search",
        "code_interpreter",
    ] {
        let e = parse(json!({"model": "m", "input": "x", "tools": [{"type": tool}]})).unwrap_err();
        assert!(
            matches!(&e, RequestError::Unsupported(m) if m.contains(tool) && m.contains("responses_api")),
            "{e:?}"
        );
    }
    let e = parse(json!({"model": "m", "input": [{"type": "item_reference", "id": "x"}]}));
    assert!(matches!(e, Err(RequestError::Unsupported(_))));
    let e = parse(json!({"model": "m", "input": 5}));
    assert!(matches!(
        e,
        Err(RequestError::Invalid {
            param: Some("input"),
            ..
        })
    ));
    let e = parse(json!({"model": "m", "input": [{"type": "function_call", "name": "f"}]}));
    assert!(matches!(
        e,
        Err(RequestError::Invalid {
            param: Some("input"),
            ..
        })
    ));
    let e = parse(json!({"model": "m", "input": "x", "max_output_tokens": "many"}));
    assert!(matches!(
        e,
        Err(RequestError::Invalid {
            param: Some("max_output_tokens"),
            ..
        })
    ));
    let e = parse(json!({"model": "m", "input": "x", "text": {"format": {"type": "yaml"}}}));
    assert!(matches!(
        e,
        Err(RequestError::Invalid {
            param: Some("text"),
            ..
        })
    ));
    let e = parse(json!({"model": "m", "instructions": "only this", "input": []}));
    assert!(matches!(
        e,
        Err(RequestError::Invalid {
            param: Some("input"),
            ..
        })
    ));
    assert!(matches!(
        parse_request(b"{not json"),
        Err(RequestError::Malformed(_))
    ));
}

fn answer(finish: FinishReason) -> ChatResponse {
    ChatResponse {
        id: "chatcmpl-abc".into(),
        model: "up".into(),
        created: 9,
        choices: vec![Choice {
            index: 0,
            message: Message {
                tool_calls: vec![ToolCall {
                    id: "call_7".into(),
                    name: "get".into(),
                    arguments: "{}".into(),
                }],
                ..Message::text(Role::Assistant, "Hi")
            },
            finish_reason: Some(finish),
        }],
        usage: Some(Usage {
            input_tokens: 10,
            output_tokens: 3,
            cache_read_tokens: 4,
            cache_write_tokens: 0,
        }),
    }
}

#[test]
fn a_whole_answer_is_a_response_object() {
    let v: Value =
        serde_json::from_slice(&encode_response(&answer(FinishReason::ToolCalls))).unwrap();
    assert_eq!(v["id"], "resp_abc");
    assert_eq!(v["object"], "response");
    assert_eq!(v["status"], "completed");
    assert_eq!(v["created_at"], 9);
    assert_eq!(v["output"][0]["type"], "message");
    assert_eq!(v["output"][0]["content"][0]["type"], "output_text");
    assert_eq!(v["output"][0]["content"][0]["text"], "Hi");
    assert_eq!(v["output"][1]["type"], "function_call");
    assert_eq!(v["output"][1]["call_id"], "call_7");
    assert_eq!(v["output"][1]["id"], "fc_7");
    assert_eq!(v["usage"]["input_tokens"], 10);
    assert_eq!(v["usage"]["input_tokens_details"]["cached_tokens"], 4);
    assert_eq!(v["usage"]["total_tokens"], 13);

    let v: Value = serde_json::from_slice(&encode_response(&answer(FinishReason::Length))).unwrap();
    assert_eq!(v["status"], "incomplete");
    assert_eq!(v["incomplete_details"]["reason"], "max_output_tokens");
}

fn events(bytes: &[u8]) -> Vec<SseEvent> {
    let mut out = Vec::new();
    let mut d = SseDecoder::new();
    d.feed(bytes, &mut out).unwrap();
    out
}

#[test]
fn a_stream_is_the_responses_lifecycle_in_order() {
    let mut enc = StreamEncoder::new(5).with_model("client-model");
    let mut out = Vec::new();
    for e in [
        StreamEvent::Start {
            id: "chatcmpl-x".into(),
            model: "up".into(),
        },
        StreamEvent::TextDelta {
            choice: 0,
            text: "Hel".into(),
        },
        StreamEvent::TextDelta {
            choice: 0,
            text: "lo".into(),
        },
        StreamEvent::ToolCallStart {
            choice: 0,
            index: 0,
            id: "call_1".into(),
            name: "get".into(),
        },
        StreamEvent::ToolCallDelta {
            choice: 0,
            index: 0,
            arguments: "{\"a\":".into(),
        },
        StreamEvent::ToolCallDelta {
            choice: 0,
            index: 0,
            arguments: "1}".into(),
        },
        StreamEvent::Finish {
            choice: 0,
            reason: FinishReason::ToolCalls,
        },
        StreamEvent::Usage(Usage {
            input_tokens: 3,
            output_tokens: 2,
            ..Usage::default()
        }),
        StreamEvent::Done,
    ] {
        enc.encode(&e, &mut out);
    }
    let events = events(&out);
    let names: Vec<&str> = events.iter().filter_map(|e| e.event.as_deref()).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    for (n, e) in events.iter().enumerate() {
        let v: Value = serde_json::from_str(&e.data).unwrap();
        assert_eq!(v["type"], e.event.as_deref().unwrap());
        assert_eq!(v["sequence_number"], n);
    }
    let data = |i: usize| serde_json::from_str::<Value>(&events[i].data).unwrap();
    assert_eq!(data(0)["response"]["status"], "in_progress");
    assert_eq!(data(0)["response"]["model"], "client-model");
    assert_eq!(data(6)["text"], "Hello");
    assert_eq!(data(12)["arguments"], "{\"a\":1}");
    assert_eq!(data(13)["item"]["status"], "completed");
    let done = data(14);
    assert_eq!(done["response"]["id"], "resp_x");
    assert_eq!(done["response"]["status"], "completed");
    assert_eq!(done["response"]["output"][0]["content"][0]["text"], "Hello");
    assert_eq!(done["response"]["output"][1]["arguments"], "{\"a\":1}");
    assert_eq!(done["response"]["usage"]["output_tokens"], 2);
}

#[test]
fn a_broken_stream_ends_with_error_and_response_failed() {
    let mut enc = StreamEncoder::new(5);
    let mut out = enc.encode_to_vec(&StreamEvent::TextDelta {
        choice: 0,
        text: "par".into(),
    });
    enc.encode(
        &StreamEvent::Error {
            message: "upstream stream broke".into(),
            kind: "server_error".into(),
        },
        &mut out,
    );
    enc.encode(&StreamEvent::Done, &mut out);
    let events = events(&out);
    let names: Vec<&str> = events.iter().filter_map(|e| e.event.as_deref()).collect();
    assert_eq!(names[0], "response.created", "opened even without a start");
    assert_eq!(&names[names.len() - 2..], ["error", "response.failed"]);
    let failed: Value = serde_json::from_str(&events.last().unwrap().data).unwrap();
    assert_eq!(failed["response"]["status"], "failed");
    assert_eq!(
        failed["response"]["error"]["message"],
        "upstream stream broke"
    );
}

#[test]
fn reasoning_effort_reaches_anthropic_thinking_and_chat_reasoning_effort() {
    let chat =
        parse(json!({"model": "m", "input": "hi", "reasoning": {"effort": "medium"}})).unwrap();
    let anthropic: Value = serde_json::from_slice(&crate::anthropic::encode_request(
        &chat,
        "claude",
        crate::anthropic::DEFAULT_MAX_TOKENS,
    ))
    .unwrap();
    assert_eq!(
        anthropic["thinking"],
        json!({"type": "enabled", "budget_tokens": 8192}),
        "{anthropic}"
    );
    let openai: Value =
        serde_json::from_slice(&crate::openai::encode_chat_request(&chat, "gpt")).unwrap();
    assert_eq!(openai["reasoning_effort"], "medium", "{openai}");
    assert!(matches!(
        parse(json!({"model": "m", "input": "hi", "reasoning": {"effort": "loud"}})),
        Err(RequestError::Invalid { .. })
    ));
}
