//! Anthropic Messages API: `x-api-key` + `anthropic-version`, `POST {base}/messages` and
//! `POST {base}/messages/count_tokens`.

use super::{Call, Endpoint};
use crate::config::KeySlotConfig;
use nines_protocol::anthropic::API_VERSION;

pub(super) struct Urls {
    messages: reqwest::Url,
    count_tokens: reqwest::Url,
    models: reqwest::Url,
}

impl Urls {
    pub(super) fn new(base: &str) -> Result<Urls, String> {
        Ok(Urls {
            messages: super::join(base, "/messages")?,
            count_tokens: super::join(base, Endpoint::CountTokens.path())?,
            models: super::join(base, "/models")?,
        })
    }
}

fn authed(request: reqwest::RequestBuilder, key: &KeySlotConfig) -> reqwest::RequestBuilder {
    let request = request.header("anthropic-version", API_VERSION);
    match &key.secret {
        Some(secret) => request.header("x-api-key", secret.expose()),
        None => request,
    }
}

pub(super) fn request(
    client: &super::HttpClient,
    urls: &Urls,
    call: &Call<'_>,
) -> reqwest::RequestBuilder {
    let url = match call.endpoint {
        Endpoint::CountTokens => urls.count_tokens.clone(),
        // Chat; the others are never asked of this dialect (`Endpoint::served_in`).
        Endpoint::ChatCompletions | Endpoint::Completions | Endpoint::Embeddings => {
            urls.messages.clone()
        }
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

/// `GET {base}/models`: lists models, costs nothing.
pub(super) fn probe(
    client: &super::HttpClient,
    urls: &Urls,
    key: &KeySlotConfig,
) -> reqwest::RequestBuilder {
    authed(client.get(urls.models.clone()), key)
}
