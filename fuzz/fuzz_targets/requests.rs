//! Every dialect's request decoder, and the translation of what it decoded into every upstream's
//! dialect, through the gateway's own glue (`translate::RequestView`), as a live request goes.
//!
//! One body is tried as an OpenAI chat request, an Anthropic Messages request, an OpenAI
//! embeddings request and a video job. Properties: no panic; the `model` span the routing head
//! reports holds the model, and splicing another model there keeps the body a valid request;
//! what nines encodes for an upstream is JSON, and what it encodes in OpenAI or Anthropic form
//! decodes again, stably (a second trip changes nothing); the prompt-size estimate's hand-written
//! pre-tokeniser covers its input and counts exactly what the library counts.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use nines_fuzz::deployments;
use nines_gateway::providers::Endpoint;
use nines_gateway::translate::continuation_body;
use nines_gateway::router::tokens::count_o200k;
use nines_gateway::translate::RequestView;
use nines_protocol::unified::Dialect;
use nines_protocol::{anthropic, openai, runway};

fuzz_target!(|body: &[u8]| {
    chat(body);
    embeddings(body);
    if let Ok(job) = runway::parse_job_request(body) {
        let (_, encoded) = runway::encode_create_request(&job, "gen4_turbo");
        assert_json(&encoded, "runway create request");
    }
    tokens(body);
});

fn chat(body: &[u8]) {
    let Ok(head) = openai::parse_chat_head(body) else {
        // Anthropic and OpenAI bodies both go through the head first (pipeline.rs).
        let _ = openai::parse_chat_request(body);
        let _ = anthropic::parse_request(body);
        return;
    };
    let model: String = serde_json::from_slice(&body[head.model_span.clone()])
        .unwrap_or_else(|e| panic!("the model span does not hold a string: {e}"));
    assert_eq!(model, head.model);
    let spliced = openai::splice_model(body, head.model_span.clone(), "other-\"model\"");
    let again = openai::parse_chat_head(&spliced)
        .unwrap_or_else(|e| panic!("a spliced body no longer parses: {e}"));
    assert_eq!(again.model, "other-\"model\"");
    assert_eq!(again.stream, head.stream);
    if let Ok(continued) = continuation_body(body, head.model_span.clone(), "up", "partial") {
        let again = openai::parse_chat_head(&continued)
            .unwrap_or_else(|e| panic!("a continuation body does not parse: {e}"));
        assert!(again.stream && again.model == "up");
    }

    for ingress in [Dialect::OpenAi, Dialect::Anthropic] {
        let view = RequestView::new(
            ingress,
            Endpoint::ChatCompletions,
            Bytes::copy_from_slice(body),
            head.model_span.clone(),
        );
        let parsed = view.chat().map(|r| r.is_ok());
        if ingress == Dialect::OpenAi {
            if let Some(Ok(request)) = view.chat() {
                let encoded = openai::encode_chat_request(request, &request.model);
                let once = openai::parse_chat_request(&encoded)
                    .unwrap_or_else(|e| panic!("nines' own OpenAI request does not parse: {e}"));
                let twice =
                    openai::parse_chat_request(&openai::encode_chat_request(&once, &once.model))
                        .unwrap_or_else(|e| panic!("second trip: {e}"));
                assert_eq!(once, twice, "an OpenAI round trip is not stable");
            }
        } else if let Some(Ok(request)) = view.chat() {
            let encoded = anthropic::encode_request(request, &request.model, 1024);
            let once = anthropic::parse_request(&encoded)
                .unwrap_or_else(|e| panic!("nines' own Anthropic request does not parse: {e}"));
            let twice =
                anthropic::parse_request(&anthropic::encode_request(&once, &once.model, 1024))
                    .unwrap_or_else(|e| panic!("second trip: {e}"));
            assert_eq!(once, twice, "an Anthropic round trip is not stable");
        }
        for deployment in deployments() {
            let translatable = view.translatable_for(deployment).is_ok();
            let out = view.body_for(deployment);
            if !translatable || !view.needs_translation(deployment) {
                continue;
            }
            assert_eq!(parsed, Some(true));
            let upstream = deployment.provider.dialect();
            if upstream == Dialect::Runway {
                continue;
            }
            assert_json(&out, upstream.as_str());
            match upstream {
                Dialect::OpenAi => {
                    openai::parse_chat_request(&out).unwrap_or_else(|e| {
                        panic!("a request translated to OpenAI does not parse: {e}")
                    });
                }
                Dialect::Anthropic => {
                    anthropic::parse_request(&out).unwrap_or_else(|e| {
                        panic!("a request translated to Anthropic does not parse: {e}")
                    });
                }
                _ => {}
            }
        }
    }
}

fn embeddings(body: &[u8]) {
    let Ok(head) = openai::parse_embeddings_head(body) else {
        let _ = openai::parse_embeddings_request(body);
        return;
    };
    let view = RequestView::new(
        Dialect::OpenAi,
        Endpoint::Embeddings,
        Bytes::copy_from_slice(body),
        head.model_span.clone(),
    );
    if let Ok(request) = openai::parse_embeddings_request(body) {
        let encoded = openai::encode_embeddings_request(&request, &request.model);
        let again = openai::parse_embeddings_request(&encoded)
            .unwrap_or_else(|e| panic!("nines' own embeddings request does not parse: {e}"));
        assert_eq!(again.inputs, request.inputs);
    }
    for deployment in deployments() {
        if view.translatable_for(deployment).is_ok() {
            let out = view.body_for(deployment);
            assert_json(&out, deployment.provider.dialect().as_str());
        }
    }
}

/// The pre-tokeniser's pieces cover the text, and the count is the library's own.
fn tokens(body: &[u8]) {
    if !body.is_ascii() {
        return;
    }
    let mut covered = Vec::with_capacity(body.len());
    nines_gateway::router::pretokenize::split_ascii(body, |piece| {
        assert!(!piece.is_empty());
        covered.extend_from_slice(piece);
    });
    assert_eq!(covered, body);
    let text = std::str::from_utf8(body).unwrap_or_default();
    assert_eq!(
        count_o200k(body),
        bpe_openai::o200k_base().count(text),
        "the ASCII pre-tokeniser disagrees with the library"
    );
}

fn assert_json(bytes: &[u8], what: &str) {
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
        panic!("nines encoded invalid JSON for {what}: {e}");
    }
}
