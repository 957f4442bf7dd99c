//! OpenAI-family upstreams (`openai`, `openai-compatible`, `nvidia`): bearer auth, and the
//! `/chat/completions`, `/completions`, `/embeddings` and `/models` endpoints below the base URL.

use super::{Call, Endpoint};
use crate::config::KeySlotConfig;

/// The endpoints of one deployment, parsed once when its client is built.
pub(super) struct Urls {
    chat: reqwest::Url,
    completions: reqwest::Url,
    embeddings: reqwest::Url,
    models: reqwest::Url,
}

impl Urls {
    pub(super) fn new(base: &str) -> Result<Urls, String> {
        Ok(Urls {
            chat: super::join(base, Endpoint::ChatCompletions.path())?,
            completions: super::join(base, Endpoint::Completions.path())?,
            embeddings: super::join(base, Endpoint::Embeddings.path())?,
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
        Endpoint::Completions => urls.completions.clone(),
        // Never asked of this dialect (`Endpoint::served_in`): the chat URL keeps the match whole.
        Endpoint::CountTokens => urls.chat.clone(),
    };
    let mut request = client
        .post(url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header("x-request-id", call.request_id)
        .body(call.body.clone());
    if let Some(secret) = &call.key.secret {
        request = request.bearer_auth(secret.expose());
    }
    if call.stream {
        request = request.header(http::header::ACCEPT, "text/event-stream");
    }
    call.traced(request)
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
