//! Runway video generation: bearer auth plus `X-Runway-Version`, `POST {base}/v1/text_to_video`
//! or `/v1/image_to_video` to start a task, `GET {base}/v1/tasks/{id}` to poll it. The base URL
//! is the API host (`https://api.dev.runwayml.com`): the paths carry the version. Runway serves no
//! chat: its deployments take part only in the video job API (`crate::videos`).

use super::{Outcome, Transport, Upstream, Urls as AnyUrls, transport};
use crate::config::KeySlotConfig;
use bytes::Bytes;
use nines_protocol::runway::{API_VERSION, Endpoint};
use tokio::time::Instant;

pub(super) struct Urls {
    text_to_video: reqwest::Url,
    image_to_video: reqwest::Url,
    /// `{base}/v1/tasks`; a task id is pushed as one more (escaped) path segment.
    tasks: reqwest::Url,
    /// `GET /v1/organization`: the probe.
    organization: reqwest::Url,
}

impl Urls {
    pub(super) fn new(base: &str) -> Result<Urls, String> {
        let tasks = super::join(base, "/v1/tasks")?;
        if tasks.cannot_be_a_base() {
            return Err(format!("base_url '{base}' cannot take a path"));
        }
        Ok(Urls {
            text_to_video: super::join(base, Endpoint::TextToVideo.path())?,
            image_to_video: super::join(base, Endpoint::ImageToVideo.path())?,
            tasks,
            organization: super::join(base, "/v1/organization")?,
        })
    }

    /// `{base}/v1/tasks/{id}`, escaped so it stays one path segment whatever it holds; `None`
    /// for an id that is not one ([`is_task_id`]).
    fn task(&self, id: &str) -> Option<reqwest::Url> {
        if !is_task_id(id) {
            return None;
        }
        let mut url = self.tasks.clone();
        url.path_segments_mut().ok()?.push(id);
        Some(url)
    }
}

/// Whether `id` can be a Runway task id (a UUID, or any short token of letters, digits, `-`
/// and `_`): what a poll's path may carry.
pub fn is_task_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn authed(request: reqwest::RequestBuilder, key: &KeySlotConfig) -> reqwest::RequestBuilder {
    let request = request.header("x-runway-version", API_VERSION);
    match &key.secret {
        Some(secret) => request.bearer_auth(secret.expose()),
        None => request,
    }
}

/// Starts a task: `body` is the Runway create body for `endpoint`.
fn create(
    client: &super::HttpClient,
    urls: &Urls,
    key: &KeySlotConfig,
    endpoint: Endpoint,
    body: Bytes,
    request_id: &str,
) -> reqwest::RequestBuilder {
    let url = match endpoint {
        Endpoint::TextToVideo => urls.text_to_video.clone(),
        Endpoint::ImageToVideo => urls.image_to_video.clone(),
    };
    authed(client.post(url), key)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header("x-request-id", request_id)
        .body(body)
}

/// Polls a task; `None` when `id` cannot be one.
fn task(
    client: &super::HttpClient,
    urls: &Urls,
    key: &KeySlotConfig,
    id: &str,
    request_id: &str,
) -> Option<reqwest::RequestBuilder> {
    Some(authed(client.get(urls.task(id)?), key).header("x-request-id", request_id))
}

/// `GET {base}/v1/organization`: the account's credits; free, and it proves the key.
pub(super) fn probe(
    client: &super::HttpClient,
    urls: &Urls,
    key: &KeySlotConfig,
) -> reqwest::RequestBuilder {
    authed(client.get(urls.organization.clone()), key)
}

impl Upstream {
    /// Starts a Runway task with key slot `key`; `body` is the create body for `endpoint`
    /// (`nines_protocol::runway::encode_create_request`). A 2xx answer is a JSON `{id}`.
    pub async fn create_video_task(
        &self,
        key: usize,
        endpoint: Endpoint,
        body: Bytes,
        request_id: &str,
        deadline: Instant,
    ) -> Outcome {
        let (urls, key) = match self.runway(key) {
            Ok(found) => found,
            Err(outcome) => return *outcome,
        };
        let request = create(&self.client, urls, key, endpoint, body, request_id);
        self.exchange(request, deadline).await
    }

    /// Polls the Runway task `id` with key slot `key`. A 2xx answer is the task JSON.
    pub async fn video_task(
        &self,
        key: usize,
        id: &str,
        request_id: &str,
        deadline: Instant,
    ) -> Outcome {
        let (urls, key) = match self.runway(key) {
            Ok(found) => found,
            Err(outcome) => return *outcome,
        };
        let Some(request) = task(&self.client, urls, key, id, request_id) else {
            return super::refused(format!("'{id}' is not a Runway task id"), None);
        };
        self.exchange(request, deadline).await
    }

    async fn exchange(&self, request: reqwest::RequestBuilder, deadline: Instant) -> Outcome {
        transport::exchange(
            &self.client,
            request,
            &self.deployment.timeouts,
            false,
            deadline,
        )
        .await
    }

    fn runway(&self, key: usize) -> Result<(&Urls, &KeySlotConfig), Box<Outcome>> {
        let AnyUrls::Runway(urls) = &self.urls else {
            return Err(Box::new(super::refused(
                format!(
                    "deployment '{}' is not a runway deployment",
                    self.deployment.name
                ),
                None,
            )));
        };
        match self.deployment.keys.get(key) {
            Some(key) => Ok((urls, key)),
            None => Err(Box::new(Outcome::Transport(Transport::Connect(
                "no such key slot".into(),
            )))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_id_stays_one_path_segment() {
        let urls = Urls::new("http://127.0.0.1:9/api").unwrap();
        assert_eq!(
            urls.task("6d6f636b-0000-4000-8000-000000000001")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:9/api/v1/tasks/6d6f636b-0000-4000-8000-000000000001"
        );
        for bad in [
            "",
            "..",
            ".",
            "../organization",
            "a/b",
            "a?b",
            "a b",
            &"x".repeat(129),
        ] {
            assert!(urls.task(bad).is_none(), "{bad:?}");
        }
    }
}
