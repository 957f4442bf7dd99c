//! Every dialect's response decoder (answers, embeddings, predictions, video tasks and error
//! bodies), and the translation of an upstream's answer into the client's dialect through the
//! gateway's own glue (`RequestView::translate_full`).
//!
//! Properties: no panic; whatever nines hands a client decodes with the client dialect's own
//! decoder (an OpenAI client gets an OpenAI answer, an Anthropic client an Anthropic one); the
//! OpenAI and Anthropic answer codecs are stable after one trip; a video job is valid JSON.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use nines_gateway::providers::Endpoint;
use nines_gateway::translate::RequestView;
use nines_protocol::unified::{Dialect, EncodingFormat};
use nines_protocol::{anthropic, gemini, openai, replicate, runway};

const CHAT: &[u8] = br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
const EMBED: &[u8] = br#"{"model":"m","input":["a","b"]}"#;
const EMBED_BASE64: &[u8] = br#"{"model":"m","input":"a","encoding_format":"base64"}"#;
const UPSTREAMS: [Dialect; 5] = [
    Dialect::OpenAi,
    Dialect::Anthropic,
    Dialect::Gemini,
    Dialect::Replicate,
    Dialect::Runway,
];

fuzz_target!(|body: &[u8]| {
    for (ingress, endpoint, client) in [
        (Dialect::OpenAi, Endpoint::ChatCompletions, CHAT),
        (Dialect::Anthropic, Endpoint::ChatCompletions, CHAT),
        (Dialect::OpenAi, Endpoint::Embeddings, EMBED),
        (Dialect::OpenAi, Endpoint::Embeddings, EMBED_BASE64),
    ] {
        let view = RequestView::new(ingress, endpoint, Bytes::from_static(client), 9..12);
        for upstream in UPSTREAMS {
            let Ok(out) = view.translate_full(upstream, body, "served", false) else {
                continue;
            };
            if upstream == ingress {
                assert_eq!(&out[..], body);
                continue;
            }
            match (endpoint, ingress) {
                (Endpoint::Embeddings, _) => {
                    let decoded = openai::decode_embeddings_response(&out).unwrap_or_else(|e| {
                        panic!("nines' embeddings answer does not decode: {e}")
                    });
                    assert!(!decoded.model.is_empty());
                }
                (_, Dialect::Anthropic) => {
                    anthropic::decode_response(&out).unwrap_or_else(|e| {
                        panic!("nines' Anthropic answer (from {upstream:?}) does not decode: {e}")
                    });
                }
                _ => {
                    openai::decode_chat_response(&out).unwrap_or_else(|e| {
                        panic!("nines' OpenAI answer (from {upstream:?}) does not decode: {e}")
                    });
                }
            }
        }
    }

    if let Ok(response) = openai::decode_chat_response(body) {
        let once = openai::decode_chat_response(&openai::encode_chat_response(&response))
            .unwrap_or_else(|e| panic!("nines' own OpenAI answer does not decode: {e}"));
        let twice = openai::decode_chat_response(&openai::encode_chat_response(&once))
            .unwrap_or_else(|e| panic!("second trip: {e}"));
        assert_eq!(once, twice, "an OpenAI answer's round trip is not stable");
    }
    if let Ok(response) = anthropic::decode_response(body) {
        let once = anthropic::decode_response(&anthropic::encode_response(&response))
            .unwrap_or_else(|e| panic!("nines' own Anthropic answer does not decode: {e}"));
        let twice = anthropic::decode_response(&anthropic::encode_response(&once))
            .unwrap_or_else(|e| panic!("second trip: {e}"));
        assert_eq!(
            once, twice,
            "an Anthropic answer's round trip is not stable"
        );
    }
    let _ = gemini::decode_response(body);
    if let Ok(response) = openai::decode_embeddings_response(body) {
        for format in [EncodingFormat::Float, EncodingFormat::Base64] {
            let encoded = openai::encode_embeddings_response(&response, format);
            openai::decode_embeddings_response(&encoded)
                .unwrap_or_else(|e| panic!("nines' own embeddings answer does not decode: {e}"));
        }
    }
    let _ = gemini::decode_embeddings_response(body);
    if let Ok(prediction) = replicate::decode_prediction(body) {
        let _ = prediction.outcome();
    }
    let _ = runway::decode_create_response(body);
    if let Ok(task) = runway::decode_task(body) {
        let job = runway::job_from_task(&task, "job", "video", 0);
        let json = job.to_json();
        if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&json) {
            panic!("a video job is not JSON: {e}");
        }
        let _ = runway::job_status(task.status);
    }
    for error in [
        openai::parse_error(body),
        anthropic::parse_error(body),
        gemini::parse_error(body),
        replicate::parse_error(body),
    ]
    .into_iter()
    .flatten()
    {
        let _ = error.kind.is_retryable();
    }
});
