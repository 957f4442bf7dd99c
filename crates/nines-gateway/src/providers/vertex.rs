//! Gemini on Google Vertex AI: the Gemini wire format at
//! `{base}/v1/projects/{project}/locations/{region}/publishers/google/models/{model}:generateContent`
//! (and `:streamGenerateContent?alt=sse`), where the base URL is the regional endpoint
//! (`https://{region}-aiplatform.googleapis.com`, derived from the region unless given). Auth is
//! a service account's OAuth access token (`vertex_token`) as `Authorization: Bearer`.

use super::vertex_token::TokenSource;
use super::{Call, Endpoint, Outcome, Transport};
use crate::config::Timeouts;
use crate::config::clouds::Vertex;
use nines_protocol::url::segment;

/// The probe: `countTokens` is free and proves the token, the path and the model.
const PROBE_BODY: &str = r#"{"contents":[{"role":"user","parts":[{"text":"ping"}]}]}"#;

pub(super) struct Urls {
    generate: reqwest::Url,
    stream: reqwest::Url,
    count_tokens: reqwest::Url,
    tokens: TokenSource,
}

impl Urls {
    pub(super) fn new(
        base: &str,
        model: &str,
        vertex: &Vertex,
        timeouts: &Timeouts,
    ) -> Result<Urls, String> {
        let model = model
            .strip_prefix("publishers/google/models/")
            .or_else(|| model.strip_prefix("models/"))
            .unwrap_or(model);
        let prefix = format!(
            "/v1/projects/{}/locations/{}/publishers/google/models/{}",
            segment(&vertex.project),
            segment(&vertex.region),
            segment(model)
        );
        Ok(Urls {
            generate: super::join(base, &format!("{prefix}:generateContent"))?,
            stream: super::join(base, &format!("{prefix}:streamGenerateContent?alt=sse"))?,
            count_tokens: super::join(base, &format!("{prefix}:countTokens"))?,
            tokens: TokenSource::new(&vertex.service_account, timeouts.connect)?,
        })
    }
}

pub(super) async fn call(
    client: &super::HttpClient,
    urls: &Urls,
    timeouts: &Timeouts,
    call: &Call<'_>,
) -> Outcome {
    if call.endpoint == Endpoint::Embeddings {
        return Outcome::Transport(Transport::Broken(
            "vertex deployments serve chat only through nines".into(),
        ));
    }
    let token = match urls.tokens.token(call.deadline).await {
        Ok(token) => token,
        Err(outcome) => return outcome,
    };
    let url = if call.stream {
        urls.stream.clone()
    } else {
        urls.generate.clone()
    };
    let request = call.json_post(client.post(url).bearer_auth(token.expose()));
    super::transport::exchange(client, request, timeouts, call.stream, call.deadline).await
}

/// `countTokens` with a fresh-enough token.
pub(super) async fn probe(
    client: &super::HttpClient,
    urls: &Urls,
    deadline: tokio::time::Instant,
) -> Result<reqwest::RequestBuilder, Outcome> {
    let token = urls.tokens.token(deadline).await?;
    Ok(client
        .post(urls.count_tokens.clone())
        .bearer_auth(token.expose())
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(PROBE_BODY))
}
