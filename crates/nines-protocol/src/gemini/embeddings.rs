//! Gemini embeddings: `embedContent` (one input) and `batchEmbedContents` (many) request bodies,
//! and both responses. Gemini reports no token usage for embeddings.

use crate::json;
use crate::unified::{DecodeError, EmbeddingsRequest, EmbeddingsResponse};
use serde::{Deserialize, Serialize};

/// An `embedContent` body for the first input of `request` (use
/// [`batch_embed_contents_request`] for more than one).
pub fn embed_content_request(request: &EmbeddingsRequest, model: &str) -> Vec<u8> {
    let model = model_name(model);
    let text = request.inputs.first().map_or("", String::as_str);
    json::to_vec(&one(&model, text, request.dimensions))
}

/// A `batchEmbedContents` body: one request per input, in order.
pub fn batch_embed_contents_request(request: &EmbeddingsRequest, model: &str) -> Vec<u8> {
    let model = model_name(model);
    let requests = request
        .inputs
        .iter()
        .map(|text| one(&model, text, request.dimensions))
        .collect();
    json::to_vec(&OutBatch { requests })
}

/// Decodes an `embedContent` (`{"embedding":…}`) or `batchEmbedContents` (`{"embeddings":[…]}`)
/// response. `model` is left empty for the caller to fill in; `usage` is `None`.
pub fn decode_embeddings_response(body: &[u8]) -> Result<EmbeddingsResponse, DecodeError> {
    let wire: InResponse = serde_json::from_slice(body)
        .map_err(|e| DecodeError::new("gemini", "embeddings response", e.to_string()))?;
    let vectors = match (wire.embedding, wire.embeddings) {
        (Some(one), _) => vec![one.values],
        (None, Some(many)) => many.into_iter().map(|e| e.values).collect(),
        (None, None) => {
            return Err(DecodeError::new(
                "gemini",
                "embeddings response",
                "neither 'embedding' nor 'embeddings'",
            ));
        }
    };
    let response = EmbeddingsResponse {
        model: String::new(),
        vectors,
        usage: None,
    };
    if !response.is_finite() {
        return Err(DecodeError::new(
            "gemini",
            "embeddings response",
            crate::unified::NOT_FINITE,
        ));
    }
    Ok(response)
}

fn model_name(model: &str) -> String {
    if model.starts_with("models/") {
        model.to_owned()
    } else {
        format!("models/{model}")
    }
}

fn one<'a>(model: &'a str, text: &'a str, dimensions: Option<u32>) -> OutEmbed<'a> {
    OutEmbed {
        model,
        content: OutContent {
            parts: [OutText { text }],
        },
        output_dimensionality: dimensions,
    }
}

#[derive(Serialize)]
struct OutBatch<'a> {
    requests: Vec<OutEmbed<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutEmbed<'a> {
    model: &'a str,
    content: OutContent<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_dimensionality: Option<u32>,
}

#[derive(Serialize)]
struct OutContent<'a> {
    parts: [OutText<'a>; 1],
}

#[derive(Serialize)]
struct OutText<'a> {
    text: &'a str,
}

#[derive(Deserialize)]
struct InResponse {
    #[serde(default)]
    embedding: Option<InEmbedding>,
    #[serde(default)]
    embeddings: Option<Vec<InEmbedding>>,
}

#[derive(Deserialize)]
struct InEmbedding {
    #[serde(default)]
    values: Vec<f32>,
}
