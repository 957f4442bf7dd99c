//! OpenAI embeddings: request parse/encode and response decode/encode, including the base64
//! vector encoding the OpenAI Python SDK asks for by default.

use super::RequestError;
use crate::json;
use crate::unified::{DecodeError, EmbeddingsRequest, EmbeddingsResponse, EncodingFormat, Usage};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Parses an OpenAI embeddings body. `input` may be a string or an array of strings; token-id
/// arrays are valid OpenAI but cannot be translated ([`RequestError::Unsupported`]).
pub fn parse_embeddings_request(body: &[u8]) -> Result<EmbeddingsRequest, RequestError> {
    let mut map: Map<String, Value> =
        serde_json::from_slice(body).map_err(|e| RequestError::Malformed(e.to_string()))?;
    let model = match map.remove("model") {
        None | Some(Value::Null) => return Err(RequestError::MissingModel),
        Some(Value::String(m)) if m.is_empty() => return Err(RequestError::MissingModel),
        Some(Value::String(m)) => m,
        Some(_) => return Err(RequestError::ModelNotString),
    };
    let inputs = match map.remove("input") {
        None | Some(Value::Null) => return Err(RequestError::Missing("input")),
        Some(Value::String(s)) => vec![s],
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                Value::String(s) => Ok(s),
                Value::Number(_) | Value::Array(_) => Err(RequestError::Unsupported(
                    "token-id embeddings input cannot be translated to another dialect".into(),
                )),
                _ => Err(invalid(
                    "input",
                    "'input' must be a string or an array of strings",
                )),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => {
            return Err(invalid(
                "input",
                "'input' must be a string or an array of strings",
            ));
        }
    };
    if inputs.is_empty() {
        return Err(invalid("input", "[] is too short - 'input'"));
    }
    let dimensions = match map.remove("dimensions") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(
            n.as_u64()
                .and_then(|d| u32::try_from(d).ok())
                .ok_or_else(|| invalid("dimensions", "'dimensions' must be a positive integer"))?,
        ),
        Some(_) => return Err(invalid("dimensions", "'dimensions' must be an integer")),
    };
    let encoding_format = match map.remove("encoding_format") {
        None | Some(Value::Null) => EncodingFormat::Float,
        Some(Value::String(f)) if f == "float" => EncodingFormat::Float,
        Some(Value::String(f)) if f == "base64" => EncodingFormat::Base64,
        Some(_) => {
            return Err(invalid(
                "encoding_format",
                "'encoding_format' must be 'float' or 'base64'",
            ));
        }
    };
    Ok(EmbeddingsRequest {
        model,
        inputs,
        dimensions,
        encoding_format,
        extra: map,
    })
}

fn invalid(param: &'static str, message: &str) -> RequestError {
    RequestError::Invalid {
        param: Some(param),
        message: message.to_owned(),
    }
}

/// Encodes an embeddings request for an OpenAI-family upstream serving `model`. Vectors are asked
/// for as floats whatever the client wanted; [`encode_embeddings_response`] re-encodes them.
pub fn encode_embeddings_request(request: &EmbeddingsRequest, model: &str) -> Vec<u8> {
    json::to_vec(&OutRequest { request, model })
}

struct OutRequest<'a> {
    request: &'a EmbeddingsRequest,
    model: &'a str,
}

impl Serialize for OutRequest<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("model", self.model)?;
        map.serialize_entry("input", &self.request.inputs)?;
        if let Some(d) = self.request.dimensions {
            map.serialize_entry("dimensions", &d)?;
        }
        map.serialize_entry("encoding_format", "float")?;
        for (key, value) in &self.request.extra {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// Decodes an OpenAI embeddings response (float or base64 vectors), ordering vectors by `index`.
pub fn decode_embeddings_response(body: &[u8]) -> Result<EmbeddingsResponse, DecodeError> {
    let err = |m: String| DecodeError::new("openai", "embeddings response", m);
    let wire: WireResponse = serde_json::from_slice(body).map_err(|e| err(e.to_string()))?;
    let mut data = wire.data;
    data.sort_by_key(|d| d.index);
    let vectors = data
        .into_iter()
        .map(|d| match d.embedding {
            WireVector::Floats(v) => Ok(v),
            WireVector::Base64(text) => decode_base64_vector(&text)
                .ok_or_else(|| err("an embedding is not valid base64 f32 data".into())),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let response = EmbeddingsResponse {
        model: wire.model,
        vectors,
        usage: wire.usage.map(|u| Usage {
            input_tokens: u.prompt_tokens,
            ..Usage::default()
        }),
    };
    if !response.is_finite() {
        return Err(err(crate::unified::NOT_FINITE.into()));
    }
    Ok(response)
}

/// Encodes vectors as an OpenAI embeddings response, as floats or base64 per `format`.
pub fn encode_embeddings_response(
    response: &EmbeddingsResponse,
    format: EncodingFormat,
) -> Vec<u8> {
    let data: Vec<OutDatum<'_>> = response
        .vectors
        .iter()
        .enumerate()
        .map(|(index, v)| OutDatum {
            object: "embedding",
            index,
            embedding: match format {
                EncodingFormat::Float => OutVector::Floats(v),
                EncodingFormat::Base64 => OutVector::Base64(encode_base64_vector(v)),
            },
        })
        .collect();
    let tokens = response.usage.map_or(0, |u| u.input_tokens);
    json::to_vec(&OutResponse {
        object: "list",
        data,
        model: &response.model,
        usage: OutUsage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    })
}

fn encode_base64_vector(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
    json::base64_encode(&bytes)
}

fn decode_base64_vector(text: &str) -> Option<Vec<f32>> {
    let bytes = json::base64_decode(text)?;
    if bytes.len() % 4 != 0 {
        return None;
    }
    Some(
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

#[derive(Deserialize)]
struct WireResponse {
    data: Vec<WireDatum>,
    #[serde(default)]
    model: String,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireDatum {
    #[serde(default)]
    index: usize,
    embedding: WireVector,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum WireVector {
    Floats(Vec<f32>),
    Base64(String),
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
}

#[derive(Serialize)]
struct OutResponse<'a> {
    object: &'static str,
    data: Vec<OutDatum<'a>>,
    model: &'a str,
    usage: OutUsage,
}

#[derive(Serialize)]
struct OutDatum<'a> {
    object: &'static str,
    index: usize,
    embedding: OutVector<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum OutVector<'a> {
    Floats(&'a [f32]),
    Base64(String),
}

#[derive(Serialize)]
struct OutUsage {
    prompt_tokens: u64,
    total_tokens: u64,
}
