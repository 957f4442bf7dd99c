//! Amazon Bedrock's Converse API: `POST {base}/model/{modelId}/converse` and
//! `/converse-stream`, where the base URL is the regional runtime endpoint
//! (`https://bedrock-runtime.{region}.amazonaws.com`, derived from the region unless given).
//! Every request is signed with AWS Signature Version 4 (`aws-sigv4`) for service `bedrock`, over
//! the method, URL, `host`, `content-type`, the date and the body's SHA-256; a session token
//! travels as `x-amz-security-token`. A ConverseStream answer is AWS event-stream framed and read
//! as SSE from here on (`event_stream`).

use super::transport::{self, Framing};
use super::{Call, Outcome, Transport};
use crate::config::Timeouts;
use crate::config::clouds::Bedrock;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use nines_protocol::bedrock;
use std::time::SystemTime;

/// The probe: the smallest Converse call there is (Bedrock's runtime has no free read).
const PROBE_BODY: &[u8] =
    br#"{"messages":[{"role":"user","content":[{"text":"ping"}]}],"inferenceConfig":{"maxTokens":1}}"#;

pub(super) struct Urls {
    converse: reqwest::Url,
    stream: reqwest::Url,
    region: String,
    /// Built once: the credentials do not change while the configuration stands.
    identity: Identity,
}

impl Urls {
    pub(super) fn new(base: &str, model: &str, settings: &Bedrock) -> Result<Urls, String> {
        let credentials = Credentials::new(
            settings.access_key_id.expose(),
            settings.secret_access_key.expose(),
            settings
                .session_token
                .as_ref()
                .map(|t| t.expose().to_owned()),
            None,
            "nines-config",
        );
        Ok(Urls {
            converse: super::join(base, &bedrock::converse_path(model, false))?,
            stream: super::join(base, &bedrock::converse_path(model, true))?,
            region: settings.region.clone(),
            identity: credentials.into(),
        })
    }
}

/// A signed POST of `body` to `url`. `Err` only for what cannot be signed at all (a URL without
/// a host), which no retry mends.
fn signed(
    client: &super::HttpClient,
    urls: &Urls,
    url: &reqwest::Url,
    body: Bytes,
) -> Result<reqwest::RequestBuilder, String> {
    const CONTENT_TYPE: &str = "application/json";
    let params = v4::SigningParams::builder()
        .identity(&urls.identity)
        .region(&urls.region)
        .name(bedrock::SIGNING_SERVICE)
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| format!("cannot sign the request: {e}"))?
        .into();
    if url.host_str().is_none() {
        return Err("cannot sign a request to a URL without a host".into());
    }
    let signable = SignableRequest::new(
        "POST",
        url.as_str(),
        [("content-type", CONTENT_TYPE)].into_iter(),
        SignableBody::Bytes(&body),
    )
    .map_err(|e| format!("cannot sign the request: {e}"))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| format!("cannot sign the request: {e}"))?
        .into_parts();
    let mut request = client
        .post(url.clone())
        .header(http::header::CONTENT_TYPE, CONTENT_TYPE)
        .body(body);
    for (name, value) in instructions.headers() {
        let mut value = http::HeaderValue::from_str(value)
            .map_err(|_| "the signature is not a header value".to_owned())?;
        value.set_sensitive(true);
        request = request.header(name, value);
    }
    Ok(request)
}

pub(super) async fn call(
    client: &super::HttpClient,
    urls: &Urls,
    timeouts: &Timeouts,
    call: &Call<'_>,
) -> Outcome {
    let url = if call.stream {
        &urls.stream
    } else {
        &urls.converse
    };
    let request = match signed(client, urls, url, call.body.clone()) {
        Ok(request) => request.header("x-request-id", call.request_id),
        Err(why) => return Outcome::Transport(Transport::Broken(why)),
    };
    let request = if call.stream {
        request.header(http::header::ACCEPT, "application/vnd.amazon.eventstream")
    } else {
        request
    };
    let mut outcome = transport::exchange_framed(
        client,
        call.traced(request),
        timeouts,
        call.stream,
        call.deadline,
        Framing::AwsEventStream,
    )
    .await;
    // ConverseStream's events name no answer: Bedrock's request id does, when it is sent.
    if let Outcome::Reply(reply) = &mut outcome {
        let id = reply
            .headers
            .get("x-amzn-requestid")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map_or_else(
                || format!("chatcmpl-{}", uuid::Uuid::now_v7().simple()),
                |v| format!("chatcmpl-{v}"),
            );
        if let Ok(value) = http::HeaderValue::from_str(&id) {
            reply.headers.insert(super::PREDICTION_ID, value);
        }
    }
    outcome
}

/// A one-token Converse call, signed like any other.
pub(super) fn probe(
    client: &super::HttpClient,
    urls: &Urls,
) -> Result<reqwest::RequestBuilder, String> {
    signed(client, urls, &urls.converse, Bytes::from_static(PROBE_BODY))
}
