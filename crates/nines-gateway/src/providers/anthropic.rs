//! Anthropic Messages API: `x-api-key` + `anthropic-version`, `POST {base}/messages`.

use super::Call;
use crate::config::KeySlotConfig;
use nines_protocol::anthropic::API_VERSION;

pub(super) struct Urls {
    messages: reqwest::Url,
    models: reqwest::Url,
}

impl Urls {
    pub(super) fn new(base: &str) -> Result<Urls, String> {
        Ok(Urls {
            messages: super::join(base, "/messages")?,
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
    call.json_post(authed(client.post(urls.messages.clone()), call.key))
}

/// `GET {base}/models`: lists models, costs nothing.
pub(super) fn probe(
    client: &super::HttpClient,
    urls: &Urls,
    key: &KeySlotConfig,
) -> reqwest::RequestBuilder {
    authed(client.get(urls.models.clone()), key)
}
