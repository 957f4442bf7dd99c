//! Replicate codec: prediction input, prediction objects, stream events.

use crate::{sse_events, value};
use nines_protocol::replicate::{
    self, PredictionOutcome, PredictionStatus, StreamDecoder, decode_prediction,
    encode_create_request, render_prompt,
};
use nines_protocol::unified::{
    ChatRequest, ErrorKind, FinishReason, Message, Role, StreamEvent, Usage,
};
use serde_json::json;

#[test]
fn single_turn_prompt_is_the_bare_text() {
    let mut request = ChatRequest::new(
        "m",
        vec![
            Message::text(Role::System, "Be brief."),
            Message::text(Role::User, "Why is the sky blue?"),
        ],
    );
    request.max_tokens = Some(128);
    request.temperature = Some(0.7);
    request.top_p = Some(0.95);
    request.stop = vec!["\n\n".into(), "END".into()];
    request.stream = true;
    assert_eq!(
        value(&encode_create_request(&request)),
        json!({
            "input": {
                "prompt": "Why is the sky blue?",
                "system_prompt": "Be brief.",
                "max_tokens": 128,
                "max_new_tokens": 128,
                "temperature": 0.7,
                "top_p": 0.95,
                "stop_sequences": "\n\n,END"
            },
            "stream": true
        })
    );
}

#[test]
fn multi_turn_prompt_ends_with_an_open_assistant_line() {
    let request = crate::rich_request();
    let prompt = render_prompt(&request);
    assert!(
        prompt.starts_with("User: What is in these pictures"),
        "{prompt}"
    );
    assert!(
        prompt.contains("Assistant: Checking both.\n[call get_weather({\"city\":\"Paris\"})]"),
        "{prompt}"
    );
    assert!(prompt.contains("Tool result: -3 and snowing"), "{prompt}");
    assert!(
        prompt.ends_with("User: Which is warmer?\n\nAssistant:"),
        "{prompt}"
    );
    assert_eq!(
        replicate::predictions_path("meta/meta-llama-3-8b-instruct"),
        "/v1/models/meta/meta-llama-3-8b-instruct/predictions"
    );
}

#[test]
fn predictions_decode_into_outcomes() {
    let running = json!({"id": "p1", "model": "meta/llama", "status": "starting", "output": null, "error": null,
        "urls": {"get": "https://api.replicate.com/v1/predictions/p1", "cancel": "https://api.replicate.com/v1/predictions/p1/cancel", "stream": "https://stream.replicate.com/v1/files/abc"}});
    let p = decode_prediction(running.to_string().as_bytes()).unwrap();
    assert_eq!(p.status, PredictionStatus::Starting);
    assert_eq!(
        p.stream_url.as_deref(),
        Some("https://stream.replicate.com/v1/files/abc")
    );
    assert_eq!(p.outcome(), PredictionOutcome::Pending);

    let done = json!({"id": "p1", "model": "meta/llama", "status": "succeeded", "output": ["The", " sky", " is blue."],
        "metrics": {"input_token_count": 9, "output_token_count": 4, "predict_time": 0.5}});
    let p = decode_prediction(done.to_string().as_bytes()).unwrap();
    let PredictionOutcome::Succeeded(response) = p.outcome() else {
        panic!("{p:?}")
    };
    assert_eq!(
        response.choices[0].message.joined_text(),
        "The sky is blue."
    );
    assert_eq!(response.choices[0].finish_reason, Some(FinishReason::Stop));
    assert_eq!(
        response.usage,
        Some(Usage {
            input_tokens: 9,
            output_tokens: 4,
            ..Usage::default()
        })
    );

    let text = json!({"id": "p2", "status": "processing", "output": "partial"});
    assert_eq!(
        decode_prediction(text.to_string().as_bytes())
            .unwrap()
            .output
            .as_deref(),
        Some("partial")
    );

    let failed = json!({"id": "p3", "status": "failed", "error": "CUDA out of memory"});
    assert_eq!(
        decode_prediction(failed.to_string().as_bytes())
            .unwrap()
            .outcome(),
        PredictionOutcome::Failed {
            message: "CUDA out of memory".into()
        }
    );
    let canceled = json!({"id": "p4", "status": "canceled"});
    assert_eq!(
        decode_prediction(canceled.to_string().as_bytes())
            .unwrap()
            .outcome(),
        PredictionOutcome::Canceled
    );
    let future = json!({"id": "p5", "status": "paused"});
    assert_eq!(
        decode_prediction(future.to_string().as_bytes())
            .unwrap()
            .status,
        PredictionStatus::Unknown
    );
    assert!(decode_prediction(b"{}").is_err());
}

#[test]
fn stream_events_become_text_and_finish() {
    let stream = "event: output\nid: 1\ndata: Hello\n\nevent: output\ndata:  wor\ndata: ld\n\nevent: done\ndata: {}\n\n";
    let mut decoder = StreamDecoder::new("p1", "meta/llama");
    let mut events = Vec::new();
    for event in sse_events(stream.as_bytes()) {
        decoder.feed_sse(&event, &mut events);
    }
    assert!(decoder.is_done());
    assert_eq!(
        events,
        vec![
            StreamEvent::Start {
                id: "p1".into(),
                model: "meta/llama".into()
            },
            StreamEvent::TextDelta {
                choice: 0,
                text: "Hello".into()
            },
            StreamEvent::TextDelta {
                choice: 0,
                text: " wor\nld".into()
            },
            StreamEvent::Finish {
                choice: 0,
                reason: FinishReason::Stop
            },
            StreamEvent::Done,
        ]
    );
}

#[test]
fn stream_cancel_and_error() {
    for (event, data, message) in [
        (
            "done",
            r#"{"reason":"canceled"}"#,
            "the prediction was canceled",
        ),
        ("done", r#"{"reason":"error"}"#, "the prediction failed"),
        ("error", r#"{"detail":"model crashed"}"#, "model crashed"),
        ("error", "plain failure", "plain failure"),
    ] {
        let mut decoder = StreamDecoder::new("p", "m");
        let mut events = Vec::new();
        decoder.feed(event, data, &mut events);
        assert!(!decoder.is_done());
        assert_eq!(
            events.last(),
            Some(&StreamEvent::Error {
                message: message.into(),
                kind: ErrorKind::Server.as_str().into()
            })
        );
    }
}

#[test]
fn problem_json_errors() {
    let e = replicate::parse_error(
        br#"{"detail":"Request was throttled.","status":429,"title":"Too Many Requests"}"#,
    )
    .unwrap();
    assert_eq!(e.kind, ErrorKind::RateLimited);
    assert_eq!(e.message, "Request was throttled.");
    let e = replicate::parse_error(br#"{"detail":"Invalid token.","status":401}"#).unwrap();
    assert_eq!(e.kind, ErrorKind::Authentication);
    assert_eq!(replicate::parse_error(b"oops"), None);
}
