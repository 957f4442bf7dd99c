//! OpenAI-family upstreams (`openai`, `openai-compatible`, `nvidia`): bearer auth, and the
//! `/chat/completions`, `/embeddings` and `/models` endpoints below the base URL.

use super::{Call, Endpoint};
use crate::config::KeySlotConfig;

/// The endpoints of one deployment, parsed once when its client is built.
pub(super) struct Urls {
    chat: reqwest::Url,
    embeddings: reqwest::Url,
    models: reqwest::Url,
}

impl Urls {
    pub(super) fn new(base: &str) -> Result<Urls, String> {
        Ok(Urls {
            chat: super::join(base, "/chat/completions")?,
            embeddings: super::join(base, "/embeddings")?,
            models: super::join(base, "/models")?,
        })
    }
}

pub(super) fn request(
    client: &super::HttpClient,
    urls: &Urls,
    call: &Call<'_>,
) -> reqwest::RequestBuilder {
    let url = match call.endpoint {
        Endpoint::ChatCompletions => urls.chat.clone(),
        Endpoint::Embeddings => urls.embeddings.clone(),
    };
    let request = client.post(url);
    call.json_post(match &call.key.secret {
        Some(secret) => request.bearer_auth(secret.expose()),
        None => request,
    })
}

/// `GET {base}/models`: free, and it exercises the key, the network path and the server.
pub(super) fn probe(
    client: &super::HttpClient,
    urls: &Urls,
    key: &KeySlotConfig,
) -> reqwest::RequestBuilder {
    let request = client.get(urls.models.clone());
    match &key.secret {
        Some(secret) => request.bearer_auth(secret.expose()),
        None => request,
    }
}
