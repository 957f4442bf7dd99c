//! Azure OpenAI: OpenAI's wire format at deployment URLs,
//! `{base}/openai/deployments/{deployment}/chat/completions?api-version=...` (and `/completions`,
//! `/embeddings`; the Responses API at `{base}/openai/v1/responses?api-version=preview`),
//! where the base URL is the resource's endpoint (`https://{resource}.openai.azure.com`) and the
//! deployment's `model` is the Azure deployment name. Auth is an `api-key` header, or a Microsoft
//! Entra ID token as `Authorization: Bearer` (`azure_ad_token`).

use super::{Call, Endpoint};
use crate::config::KeySlotConfig;
use crate::config::clouds::Azure;
use nines_protocol::url::segment as encoded;

pub(super) struct Urls {
    chat: reqwest::Url,
    completions: reqwest::Url,
    embeddings: reqwest::Url,
    /// Azure's v1 Responses API, below the resource rather than a deployment (the body's
    /// `model` names the deployment).
    responses: reqwest::Url,
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
            completions: at(&format!("/deployments/{deployment}/completions"))?,
            embeddings: at(&format!("/deployments/{deployment}/embeddings"))?,
            responses: super::join(base, "/openai/v1/responses?api-version=preview")?,
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
        Endpoint::Completions => urls.completions.clone(),
        Endpoint::Embeddings => urls.embeddings.clone(),
        Endpoint::Responses => urls.responses.clone(),
        // Never asked of this dialect (`Endpoint::served_in`): the chat URL keeps the match whole.
        Endpoint::CountTokens => urls.chat.clone(),
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
