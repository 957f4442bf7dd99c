//! The cloud dialects' checks, from the outside: Bedrock's SigV4 signatures and event-stream
//! frames, Vertex's token endpoint and bearer tokens. Requests are signed and framed here with
//! AWS's own crates and the test credentials, as any AWS client would.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] fns fail loudly"
)]

mod common;

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use aws_smithy_runtime_api::client::identity::Identity;
use aws_smithy_types::event_stream::HeaderValue;
use bytes::BytesMut;
use common::start;
use nines_mock::MockServer;
use nines_mock::clouds::{TEST_AWS_ACCESS_KEY_ID, TEST_AWS_SECRET_ACCESS_KEY};
use serde_json::{Value, json};

const CONVERSE: &str = "/model/anthropic.claude-v1%3A0/converse";

fn converse_body() -> Vec<u8> {
    json!({"messages": [{"role": "user", "content": [{"text": "Hi there"}]}]})
        .to_string()
        .into_bytes()
}

/// A request to `path` signed with `secret` at `time`.
async fn signed_post(
    server: &MockServer,
    path: &str,
    body: Vec<u8>,
    secret: &str,
    time: SystemTime,
) -> reqwest::Response {
    let url = format!("http://{}{path}", server.addr());
    let identity: Identity =
        Credentials::new(TEST_AWS_ACCESS_KEY_ID, secret, None, None, "test").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("bedrock")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let request = SignableRequest::new(
        "POST",
        url.as_str(),
        [("content-type", "application/json")].into_iter(),
        SignableBody::Bytes(&body),
    )
    .unwrap();
    let (instructions, _) = sign(request, &params).unwrap().into_parts();
    let mut builder = common::client()
        .post(&url)
        .header("content-type", "application/json")
        .body(body);
    for (name, value) in instructions.headers() {
        builder = builder.header(name, value);
    }
    builder.send().await.unwrap()
}

#[tokio::test]
async fn a_correct_signature_is_answered_and_any_other_refused_as_aws_does() {
    let server = start("bedrock-mock").await;
    let now = SystemTime::now();
    let ok = signed_post(
        &server,
        CONVERSE,
        converse_body(),
        TEST_AWS_SECRET_ACCESS_KEY,
        now,
    )
    .await;
    assert_eq!(ok.status(), 200);
    let body: Value = ok.json().await.unwrap();
    assert_eq!(
        body["output"]["message"]["content"][0]["text"],
        "Hello from bedrock-mock! You said: Hi there"
    );
    assert_eq!(body["stopReason"], "end_turn");
    assert!(body["usage"]["inputTokens"].as_u64().unwrap() > 0);

    let wrong = signed_post(&server, CONVERSE, converse_body(), "another-secret", now).await;
    assert_eq!(wrong.status(), 403);
    assert!(
        wrong.headers()["x-amzn-errortype"]
            .to_str()
            .unwrap()
            .starts_with("InvalidSignatureException")
    );
    let message: Value = wrong.json().await.unwrap();
    assert!(
        message["message"]
            .as_str()
            .unwrap()
            .contains("does not match")
    );

    let stale = now - Duration::from_secs(15 * 60);
    let old = signed_post(
        &server,
        CONVERSE,
        converse_body(),
        TEST_AWS_SECRET_ACCESS_KEY,
        stale,
    )
    .await;
    assert_eq!(old.status(), 403);

    let unsigned = common::client()
        .post(format!("http://{}{CONVERSE}", server.addr()))
        .body(converse_body())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 403);
    assert_eq!(server.hits("/model/{model}/converse"), 4);
}

#[tokio::test]
async fn a_tampered_body_breaks_the_signature() {
    let server = start("bedrock-mock").await;
    // Sign one body, send another: the payload hash no longer matches.
    let url = format!("http://{}{CONVERSE}", server.addr());
    let identity: Identity = Credentials::new(
        TEST_AWS_ACCESS_KEY_ID,
        TEST_AWS_SECRET_ACCESS_KEY,
        None,
        None,
        "t",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("bedrock")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let signed_body = converse_body();
    let request = SignableRequest::new(
        "POST",
        url.as_str(),
        std::iter::empty(),
        SignableBody::Bytes(&signed_body),
    )
    .unwrap();
    let (instructions, _) = sign(request, &params).unwrap().into_parts();
    let mut builder = common::client()
        .post(&url)
        .body(b"{\"messages\":[]}".to_vec());
    for (name, value) in instructions.headers() {
        builder = builder.header(name, value);
    }
    assert_eq!(builder.send().await.unwrap().status(), 403);
}

#[tokio::test]
async fn converse_stream_is_framed_as_aws_event_stream_with_valid_crcs() {
    let server = start("bedrock-mock").await;
    let r = signed_post(
        &server,
        "/model/anthropic.claude-v1%3A0/converse-stream",
        converse_body(),
        TEST_AWS_SECRET_ACCESS_KEY,
        SystemTime::now(),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "application/vnd.amazon.eventstream"
    );
    let mut buffer = BytesMut::from(&r.bytes().await.unwrap()[..]);
    let mut decoder = MessageFrameDecoder::new();
    let mut names = Vec::new();
    let mut text = String::new();
    while let DecodedFrame::Complete(message) = decoder.decode_frame(&mut buffer).unwrap() {
        let name = message
            .headers()
            .iter()
            .find(|h| h.name().as_str() == ":event-type")
            .map(|h| match h.value() {
                HeaderValue::String(s) => s.as_str().to_owned(),
                _ => String::new(),
            })
            .unwrap();
        let payload: Value = serde_json::from_slice(message.payload()).unwrap();
        if let Some(piece) = payload["delta"]["text"].as_str() {
            text.push_str(piece);
        }
        names.push(name);
    }
    assert!(buffer.is_empty(), "every byte belongs to a frame");
    assert_eq!(names.first().map(String::as_str), Some("messageStart"));
    assert_eq!(names.last().map(String::as_str), Some("metadata"));
    assert!(names.contains(&"messageStop".to_owned()));
    assert_eq!(text, "Hello from bedrock-mock! You said: Hi there");
}

fn assertion(email: &str, audience: &str) -> String {
    let file: Value = serde_json::from_str(nines_mock::clouds::TEST_SERVICE_ACCOUNT_FILE).unwrap();
    let key =
        jsonwebtoken::EncodingKey::from_rsa_pem(file["private_key"].as_str().unwrap().as_bytes())
            .unwrap();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({
        "iss": email,
        "scope": "https://www.googleapis.com/auth/cloud-platform",
        "aud": audience,
        "iat": now,
        "exp": now + 3600,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &key,
    )
    .unwrap()
}

async fn exchange(server: &MockServer, assertion: &str) -> reqwest::Response {
    common::client()
        .post(format!("http://{}/token", server.addr()))
        .header("content-type", "application/x-www-form-urlencoded")
        // A JWT is base64url and dots: nothing in it needs escaping.
        .body(format!(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}"
        ))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_token_endpoint_checks_the_jwt_and_vertex_checks_the_token() {
    let server = start("vertex-mock").await;
    let audience = format!("http://{}/token", server.addr());
    let email = nines_mock::clouds::TEST_SERVICE_ACCOUNT_EMAIL;
    let granted = exchange(&server, &assertion(email, &audience)).await;
    assert_eq!(granted.status(), 200);
    let granted: Value = granted.json().await.unwrap();
    let token = granted["access_token"].as_str().unwrap().to_owned();
    assert_eq!(granted["expires_in"], 3599);
    assert_eq!(server.tokens_issued(), 1);

    for bad in [
        assertion("someone@else.iam.gserviceaccount.com", &audience),
        assertion(email, "https://oauth2.googleapis.com/token"),
        format!("{}x", assertion(email, &audience)),
    ] {
        let refused = exchange(&server, &bad).await;
        assert_eq!(refused.status(), 400);
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["error"], "invalid_grant", "{body}");
    }
    assert_eq!(server.tokens_issued(), 1);

    let generate = format!(
        "http://{}/v1/projects/p/locations/us-central1/publishers/google/models/gemini-x:generateContent",
        server.addr()
    );
    let body = json!({"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]});
    let client = common::client();
    let ok = client
        .post(&generate)
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let answer: Value = ok.json().await.unwrap();
    assert_eq!(
        answer["candidates"][0]["content"]["parts"][0]["text"],
        "Hello from vertex-mock! You said: Hi"
    );
    let forged = client
        .post(&generate)
        .bearer_auth("ya29.forged")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    let missing = client.post(&generate).json(&body).send().await.unwrap();
    assert_eq!(missing.status(), 401);
}
