//! The parameter mappings of `docs/translation.md`, by value: reasoning ↔ thinking budgets,
//! `top_k`, JSON through a forced tool and back, what `required_capabilities` asks for, and
//! `ChatRequest::without` (what a lenient deployment drops and how it is named).

use super::value;
use nines_protocol::unified::json_tool::{JSON_TOOL, JsonToolStream, unwrap_response};
use nines_protocol::unified::{
    Capabilities, ChatRequest, ChatResponse, Choice, ContentPart, Effort, FinishReason,
    ImageSource, Message, Reasoning, ResponseFormat, Role, StreamEvent, Tool, ToolCall, ToolChoice,
};
use nines_protocol::{anthropic, bedrock, gemini, openai};
use serde_json::json;

fn hello() -> ChatRequest {
    ChatRequest::new("m", vec![Message::text(Role::User, "hi")])
}

#[test]
fn efforts_and_budgets_convert_by_one_table() {
    for (effort, budget) in [
        (Effort::Minimal, 1_024),
        (Effort::Low, 2_048),
        (Effort::Medium, 8_192),
        (Effort::High, 16_384),
    ] {
        assert_eq!(effort.budget_tokens(), budget);
        assert_eq!(Effort::from_name(effort.as_str()), Some(effort));
    }
    assert_eq!(Effort::of_budget(1_024), Effort::Low);
    assert_eq!(Effort::of_budget(2_049), Effort::Medium);
    assert_eq!(Effort::of_budget(8_192), Effort::Medium);
    assert_eq!(Effort::of_budget(50_000), Effort::High);
    assert_eq!(Reasoning::Off.budget_tokens(), None);
    assert_eq!(Reasoning::Budget(5_000).effort(), Some(Effort::Medium));
}

#[test]
fn openai_reasoning_effort_and_top_k_parse_and_encode() {
    let body = br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"reasoning_effort":"high","top_k":7}"#;
    let chat = openai::parse_chat_request(body).unwrap();
    assert_eq!(chat.reasoning, Some(Reasoning::Effort(Effort::High)));
    assert_eq!(chat.top_k, Some(7));
    assert!(chat.extra.is_empty());
    let out = value(&openai::encode_chat_request(&chat, "up"));
    assert_eq!(out["reasoning_effort"], "high");
    assert_eq!(out["top_k"], 7);
    let none =
        br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"reasoning_effort":"none"}"#;
    assert_eq!(
        openai::parse_chat_request(none).unwrap().reasoning,
        Some(Reasoning::Off)
    );
    let bad =
        br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"reasoning_effort":"max"}"#;
    let error = openai::parse_chat_request(bad).unwrap_err();
    assert_eq!(error.param(), Some("reasoning_effort"));
}

#[test]
fn reasoning_becomes_a_budget_above_which_max_tokens_is_raised() {
    let mut chat = hello();
    chat.reasoning = Some(Reasoning::Effort(Effort::Medium));
    chat.max_tokens = Some(1_000);
    chat.top_k = Some(3);
    let out = value(&anthropic::encode_request(&chat, "claude", 4096));
    assert_eq!(
        out["thinking"],
        json!({"type": "enabled", "budget_tokens": 8192})
    );
    assert_eq!(out["max_tokens"], 9_192);
    assert_eq!(out["top_k"], 3);
    // A limit already above the budget is kept.
    chat.max_tokens = Some(20_000);
    assert_eq!(
        value(&anthropic::encode_request(&chat, "c", 4096))["max_tokens"],
        20_000
    );
    // Gemini: thinkingConfig and topK.
    let out = value(&gemini::encode_request(&chat));
    assert_eq!(
        out["generationConfig"]["thinkingConfig"],
        json!({"thinkingBudget": 8192})
    );
    assert_eq!(out["generationConfig"]["topK"], 3);
    // Off is the default and is sent nowhere.
    chat.reasoning = Some(Reasoning::Off);
    assert!(
        value(&anthropic::encode_request(&chat, "c", 4096))
            .get("thinking")
            .is_none()
    );
    assert!(
        value(&openai::encode_chat_request(&chat, "c"))
            .get("reasoning_effort")
            .is_none()
    );
}

#[test]
fn anthropic_thinking_and_top_k_parse_and_anthropic_only_fields_refuse_translation() {
    let body = br#"{"model":"m","max_tokens":9000,"thinking":{"type":"enabled","budget_tokens":3000},"top_k":4,"messages":[{"role":"user","content":"hi"}]}"#;
    let chat = anthropic::parse_request(body).unwrap();
    assert_eq!(chat.reasoning, Some(Reasoning::Budget(3_000)));
    assert_eq!(chat.top_k, Some(4));
    assert_eq!(
        value(&openai::encode_chat_request(&chat, "gpt"))["reasoning_effort"],
        "medium"
    );
    let disabled = br#"{"model":"m","max_tokens":9,"thinking":{"type":"disabled"},"messages":[{"role":"user","content":"hi"}]}"#;
    assert_eq!(
        anthropic::parse_request(disabled).unwrap().reasoning,
        Some(Reasoning::Off)
    );
    for field in [
        r#""service_tier":"auto""#,
        r#""mcp_servers":[]"#,
        r#""thinking":{"type":"adaptive"}"#,
    ] {
        let body = format!(
            r#"{{"model":"m","max_tokens":9,{field},"messages":[{{"role":"user","content":"hi"}}]}}"#
        );
        let error = anthropic::parse_request(body.as_bytes()).unwrap_err();
        assert!(
            matches!(error, nines_protocol::openai::RequestError::Unsupported(_)),
            "{field}: {error:?}"
        );
    }
}

#[test]
fn a_json_answer_is_a_forced_tool_for_anthropic() {
    let mut chat = hello();
    chat.response_format = Some(ResponseFormat::JsonObject);
    let out = value(&anthropic::encode_request(&chat, "c", 4096));
    assert_eq!(
        out["tool_choice"],
        json!({"type": "tool", "name": JSON_TOOL})
    );
    assert_eq!(out["tools"][0]["name"], JSON_TOOL);
    assert_eq!(
        out["tools"][0]["input_schema"],
        json!({"type": "object", "properties": {}})
    );
    let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
    chat.response_format = Some(ResponseFormat::JsonSchema {
        name: "s".into(),
        schema: schema.clone(),
        strict: Some(true),
    });
    let out = value(&anthropic::encode_request(&chat, "c", 4096));
    assert_eq!(out["tools"][0]["input_schema"], schema);
    // With the client's own tools: one of them, or the answer.
    chat.tools = vec![nines_protocol::unified::Tool {
        name: "f".into(),
        description: None,
        parameters: json!({"type": "object"}),
        strict: None,
    }];
    let out = value(&anthropic::encode_request(&chat, "c", 4096));
    assert_eq!(out["tool_choice"], json!({"type": "any"}));
    assert_eq!(out["tools"].as_array().unwrap().len(), 2);
    chat.tool_choice = Some(ToolChoice::Function("f".into()));
    let out = value(&anthropic::encode_request(&chat, "c", 4096));
    assert_eq!(out["tool_choice"], json!({"type": "tool", "name": "f"}));
}

#[test]
fn the_json_tool_call_comes_back_as_text() {
    let call = |name: &str| ToolCall {
        id: "toolu_1".into(),
        name: name.into(),
        arguments: r#"{"a":1}"#.into(),
    };
    let mut response = ChatResponse {
        id: "msg_1".into(),
        model: "c".into(),
        created: 1,
        choices: vec![Choice {
            index: 0,
            message: Message {
                content: Vec::new(),
                tool_calls: vec![call(JSON_TOOL)],
                ..Message::text(Role::Assistant, "")
            },
            finish_reason: Some(FinishReason::ToolCalls),
        }],
        usage: None,
    };
    unwrap_response(&mut response);
    let choice = &response.choices[0];
    assert_eq!(
        choice.message.content,
        vec![ContentPart::Text(r#"{"a":1}"#.into())]
    );
    assert!(choice.message.tool_calls.is_empty());
    assert_eq!(choice.finish_reason, Some(FinishReason::Stop));

    // Streamed: the call's start is swallowed, its deltas are text, a later call is renumbered.
    let mut events = vec![
        StreamEvent::ToolCallStart {
            choice: 0,
            index: 0,
            id: "t".into(),
            name: JSON_TOOL.into(),
        },
        StreamEvent::ToolCallDelta {
            choice: 0,
            index: 0,
            arguments: "{\"a\"".into(),
        },
        StreamEvent::ToolCallDelta {
            choice: 0,
            index: 0,
            arguments: ":1}".into(),
        },
        StreamEvent::Finish {
            choice: 0,
            reason: FinishReason::ToolCalls,
        },
    ];
    JsonToolStream::new().map(&mut events, 0);
    assert_eq!(
        events,
        vec![
            StreamEvent::TextDelta {
                choice: 0,
                text: "{\"a\"".into()
            },
            StreamEvent::TextDelta {
                choice: 0,
                text: ":1}".into()
            },
            StreamEvent::Finish {
                choice: 0,
                reason: FinishReason::Stop
            },
        ]
    );
    let mut stream = JsonToolStream::new();
    let mut events = vec![
        StreamEvent::ToolCallStart {
            choice: 0,
            index: 0,
            id: "j".into(),
            name: JSON_TOOL.into(),
        },
        StreamEvent::ToolCallStart {
            choice: 0,
            index: 1,
            id: "f".into(),
            name: "f".into(),
        },
    ];
    stream.map(&mut events, 0);
    let mut finish = vec![StreamEvent::Finish {
        choice: 0,
        reason: FinishReason::ToolCalls,
    }];
    stream.map(&mut finish, 0);
    assert_eq!(
        events,
        vec![StreamEvent::ToolCallStart {
            choice: 0,
            index: 0,
            id: "f".into(),
            name: "f".into()
        }]
    );
    assert_eq!(
        finish[0],
        StreamEvent::Finish {
            choice: 0,
            reason: FinishReason::ToolCalls
        }
    );
}

#[test]
fn required_capabilities_name_each_parameter_and_its_conflicts() {
    let mut chat = hello();
    assert_eq!(chat.required_capabilities(), Capabilities::NONE);
    chat.presence_penalty = Some(0.0);
    chat.frequency_penalty = Some(0.0);
    assert_eq!(
        chat.required_capabilities(),
        Capabilities::NONE,
        "a 0 penalty is the default"
    );
    chat.seed = Some(1);
    chat.presence_penalty = Some(0.5);
    chat.top_k = Some(3);
    chat.reasoning = Some(Reasoning::Effort(Effort::Low));
    chat.temperature = Some(0.2);
    chat.response_format = Some(ResponseFormat::JsonObject);
    chat.extra.insert("logit_bias".into(), json!({}));
    chat.extra.insert("store".into(), json!(true));
    let names: Vec<&str> = chat.required_capabilities().names().collect();
    assert_eq!(
        names,
        [
            "json_schema",
            "seed",
            "penalties",
            "top_k",
            "reasoning",
            "reasoning_with_forced_tool",
            "reasoning_with_sampling",
            "openai_only_params"
        ]
    );
    let anthropic_gap = anthropic::CAPABILITIES.missing(chat.required_capabilities());
    assert_eq!(
        anthropic_gap,
        [
            "seed",
            "penalties",
            "reasoning_with_forced_tool",
            "reasoning_with_sampling",
            "openai_only_params"
        ]
    );
}

/// What Converse and Gemini cannot be told is required, so routing skips them instead of an
/// encoder leaving it out: an image by URL, "none" beside earlier tool calls, one call a turn.
#[test]
fn image_urls_tool_choice_none_and_serial_calls_are_required_where_they_matter() {
    let tool = Tool {
        name: "lookup".into(),
        description: None,
        parameters: json!({"type": "object"}),
        strict: None,
    };
    let mut chat = hello();
    chat.messages[0].content.push(ContentPart::Image {
        source: ImageSource::Base64 {
            media_type: "image/png".into(),
            data: "iVBORw0KGgo=".into(),
        },
    });
    chat.tools = vec![tool];
    chat.tool_choice = Some(ToolChoice::None);
    chat.parallel_tool_calls = Some(true);
    let names: Vec<&str> = chat.required_capabilities().names().collect();
    assert_eq!(
        names,
        ["tools", "vision"],
        "inline images, none without calls in the history, parallel calls allowed"
    );
    assert!(
        bedrock::CAPABILITIES
            .missing(chat.required_capabilities())
            .is_empty()
    );

    chat.messages[0].content.push(ContentPart::Image {
        source: ImageSource::Url("https://img.test/cat.png".into()),
    });
    let mut call = Message::text(Role::Assistant, "");
    call.tool_calls.push(ToolCall {
        id: "call_1".into(),
        name: "lookup".into(),
        arguments: "{}".into(),
    });
    chat.messages.push(call);
    let mut result = Message::text(Role::Tool, "42");
    result.tool_call_id = Some("call_1".into());
    chat.messages.push(result);
    chat.parallel_tool_calls = Some(false);
    let needed = chat.required_capabilities();
    assert_eq!(
        needed.names().collect::<Vec<_>>(),
        [
            "tools",
            "vision",
            "image_urls",
            "tool_choice_none",
            "parallel_tool_calls"
        ]
    );
    assert_eq!(
        bedrock::CAPABILITIES.missing(needed),
        ["image_urls", "tool_choice_none", "parallel_tool_calls"]
    );
    assert_eq!(
        gemini::CAPABILITIES.missing(needed),
        ["parallel_tool_calls"]
    );
    assert!(anthropic::CAPABILITIES.missing(needed).is_empty());
    assert!(openai::CAPABILITIES.missing(needed).is_empty());

    // `parallel_tool_calls` is a parameter a lenient deployment may drop; the rest is content.
    let (out, dropped) = chat.without(Capabilities::DROPPABLE);
    assert_eq!(dropped, ["parallel_tool_calls"]);
    assert_eq!(out.parallel_tool_calls, None);
    assert_eq!(
        gemini::CAPABILITIES.missing(out.required_capabilities()),
        Vec::<&str>::new()
    );
}

#[test]
fn without_removes_exactly_what_is_dropped_and_names_it() {
    let mut chat = hello();
    chat.seed = Some(1);
    chat.presence_penalty = Some(0.5);
    chat.frequency_penalty = Some(0.0);
    chat.temperature = Some(0.2);
    chat.extra.insert("logit_bias".into(), json!({}));
    chat.extra.insert("store".into(), json!(true));
    let dropped = Capabilities::SEED
        .with(Capabilities::PENALTIES)
        .with(Capabilities::OPENAI_PARAMS);
    let (out, names) = chat.without(dropped);
    assert_eq!(names, ["logit_bias", "seed", "presence_penalty"]);
    assert_eq!(out.seed, None);
    assert_eq!(out.presence_penalty, None);
    assert_eq!(out.temperature, Some(0.2), "what can be taken stays");
    assert!(out.extra.contains_key("store"), "hints stay");
    assert_eq!(out.required_capabilities(), Capabilities::NONE);
}

#[test]
fn anthropic_answers_carry_msg_ids() {
    let response = ChatResponse {
        id: "chatcmpl-abc.1".into(),
        model: "m".into(),
        created: 1,
        choices: Vec::new(),
        usage: None,
    };
    assert_eq!(
        value(&anthropic::encode_response(&response))["id"],
        "msg_chatcmpl-abc_1"
    );
    let mut encoder = anthropic::StreamEncoder::new();
    let mut out = Vec::new();
    encoder.encode(
        &StreamEvent::Start {
            id: "gen-9".into(),
            model: "m".into(),
        },
        &mut out,
    );
    assert!(
        String::from_utf8(out)
            .unwrap()
            .contains(r#""id":"msg_gen-9""#)
    );
}
