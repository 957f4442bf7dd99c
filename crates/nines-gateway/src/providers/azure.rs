//! Azure OpenAI: OpenAI's wire format at deployment URLs,
//! `{base}/openai/deployments/{deployment}/chat/completions?api-version=...` (and `/embeddings`),
//! where the base URL is the resource's endpoint (`https://{resource}.openai.azure.com`) and the
//! deployment's `model` is the Azure deployment name. Auth is an `api-key` header, or a Microsoft
//! Entra ID token as `Authorization: Bearer` (`azure_ad_token`).

use super::{Call, Endpoint};
use crate::config::KeySlotConfig;
use crate::config::clouds::Azure;
use nines_protocol::url::segment as encoded;

pub(super) struct Urls {
    chat: reqwest::Url,
    embeddings: reqwest::Url,
    /// `GET {base}/openai/models?api-version=`: lists the models the resource can deploy; free.
    models: reqwest::Url,
    entra_token: bool,
}

impl Urls {
    pub(super) fn new(base: &str, deployment: &str, azure: &Azure) -> Result<Urls, String> {
        // Both `https://x.openai.azure.com` and `.../openai` are what users paste.
        let base = base.strip_suffix("/openai").unwrap_or(base);
        let version = encoded(&azure.api_version);
        let at = |path: &str| super::join(base, &format!("/openai{path}?api-version={version}"));
        let deployment = encoded(deployment);
        Ok(Urls {
            chat: at(&format!("/deployments/{deployment}/chat/completions"))?,
            embeddings: at(&format!("/deployments/{deployment}/embeddings"))?,
            models: at("/models")?,
            entra_token: azure.entra_token,
        })
    }
}

fn authed(
    request: reqwest::RequestBuilder,
    urls: &Urls,
    key: &KeySlotConfig,
) -> reqwest::RequestBuilder {
    match &key.secret {
        Some(secret) if urls.entra_token => request.bearer_auth(secret.expose()),
        Some(secret) => request.header("api-key", secret.expose()),
        None => request,
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
    call.json_post(authed(client.post(url), urls, call.key))
}

pub(super) fn probe(
    client: &super::HttpClient,
    urls: &Urls,
    key: &KeySlotConfig,
) -> reqwest::RequestBuilder {
    authed(client.get(urls.models.clone()), urls, key)
}
