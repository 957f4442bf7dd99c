//! Google Gemini (Generative Language API, `v1beta`): `x-goog-api-key` auth, and per model
//! `POST {base}/v1beta/models/{model}:generateContent`, `:streamGenerateContent?alt=sse` and
//! `:batchEmbedContents`. The base URL is the API host (`https://generativelanguage.googleapis.com`):
//! the paths carry the version. The body is already in Gemini's dialect (the pipeline translates).

use super::{Call, Endpoint};
use crate::config::KeySlotConfig;
use nines_protocol::gemini;

/// The endpoints of one deployment (they name its upstream model), parsed once.
pub(super) struct Urls {
    generate: reqwest::Url,
    stream: reqwest::Url,
    embed: reqwest::Url,
    /// `GET /v1beta/models/{model}`: the probe.
    model: reqwest::Url,
}

impl Urls {
    pub(super) fn new(base: &str, model: &str) -> Result<Urls, String> {
        let bare = model.strip_prefix("models/").unwrap_or(model);
        Ok(Urls {
            generate: super::join(base, &gemini::generate_path(model, false))?,
            stream: super::join(base, &gemini::generate_path(model, true))?,
            embed: super::join(base, &gemini::embed_path(model))?,
            model: super::join(base, &format!("/v1beta/models/{bare}"))?,
        })
    }
}

fn authed(request: reqwest::RequestBuilder, key: &KeySlotConfig) -> reqwest::RequestBuilder {
    match &key.secret {
        Some(secret) => request.header("x-goog-api-key", secret.expose()),
        None => request,
    }
}

pub(super) fn request(
    client: &super::HttpClient,
    urls: &Urls,
    call: &Call<'_>,
) -> reqwest::RequestBuilder {
    let url = match (call.endpoint, call.stream) {
        (Endpoint::Embeddings, _) => urls.embed.clone(),
        // Chat; no other endpoint is asked of this dialect (`Endpoint::served_in`).
        (_, true) => urls.stream.clone(),
        (_, false) => urls.generate.clone(),
    };
    let mut request = authed(client.post(url), call.key)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header("x-request-id", call.request_id)
        .body(call.body.clone());
    if call.stream {
        request = request.header(http::header::ACCEPT, "text/event-stream");
    }
    call.traced(request)
}

/// `GET {base}/v1beta/models/{model}`: free, and it proves the key, the network path and that the
/// model exists.
pub(super) fn probe(
    client: &super::HttpClient,
    urls: &Urls,
    key: &KeySlotConfig,
) -> reqwest::RequestBuilder {
    authed(client.get(urls.model.clone()), key)
}
