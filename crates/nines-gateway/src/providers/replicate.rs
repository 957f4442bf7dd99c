//! Replicate predictions for language models: bearer auth, `POST {base}/v1/models/{owner}/{name}/
//! predictions` (the deployment's `model` is `owner/name`; the base URL is the API host,
//! `https://api.replicate.com`). The body is the create-prediction body (the pipeline builds it
//! with `nines_protocol::replicate::encode_create_request`).
//!
//! A prediction is asynchronous, so one call may be several HTTP requests:
//! - not streaming: the create asks `Prefer: wait=N` (N below the first-byte timeout, at most
//!   60 s) and normally answers the finished prediction; one that is still running is polled at
//!   `urls.get` until it ends or the deadline comes (then it is cancelled, best effort). The reply
//!   body is the finished prediction JSON.
//! - streaming: the create (with `"stream": true`, added when the body lacks it) answers at once;
//!   then `GET urls.stream` (no credentials: the URL is the secret, and it lives on another host)
//!   is read up to its first complete SSE event like any stream. The prediction's `id` and `model`,
//!   which the stream never repeats, travel in the reply headers [`PREDICTION_ID`] and
//!   [`PREDICTION_MODEL`].
//!
//! A prediction that ends `failed` or `canceled` becomes an [`Outcome::Status`] that
//! `resilience::class` reads correctly: 502 (a server failure: another deployment may succeed),
//! or 400 with code `content_filter` / `context_length_exceeded` when the error says the input
//! was flagged or did not fit. A stream whose first events already say it failed (`event: error`,
//! or `event: done` with a `reason`) is an [`Outcome::StreamError`], except that an error saying
//! the input was flagged or did not fit is the same 400 as without streaming.

use super::transport;
use super::{Call, CredentialScope, Outcome, Reply, ReplyBody, Transport};
use crate::config::{KeySlotConfig, Timeouts};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use nines_protocol::ErrorBody;
use nines_protocol::replicate::{self, Prediction, PredictionStatus};
use nines_protocol::sse::{Overflow, SseDecoder};
use std::time::Duration;
use tokio::time::Instant;

/// Reply header carrying a streamed reply's id when its events carry none: the Replicate
/// prediction's, Bedrock's request id.
pub const PREDICTION_ID: &str = "x-nines-prediction-id";
/// Reply header carrying the prediction's model (`owner/name`) on streamed replies.
pub const PREDICTION_MODEL: &str = "x-nines-prediction-model";

/// First and longest pause between polls of a prediction still running after `Prefer: wait`.
const POLL_FIRST: Duration = Duration::from_millis(250);
const POLL_MAX: Duration = Duration::from_secs(2);

/// The endpoints of one deployment, parsed once.
pub(super) struct Urls {
    predictions: reqwest::Url,
    /// `GET /v1/models/{owner}/{name}`: the probe.
    model: reqwest::Url,
    /// Where the key may go when a prediction hands back a URL (`urls.get`, `urls.cancel`).
    scope: CredentialScope,
}

impl Urls {
    pub(super) fn new(base: &str, model: &str, scope: CredentialScope) -> Result<Urls, String> {
        Ok(Urls {
            predictions: super::join(base, &replicate::predictions_path(model))?,
            model: super::join(base, &format!("/v1/models/{model}"))?,
            scope,
        })
    }
}

fn authed(request: reqwest::RequestBuilder, key: &KeySlotConfig) -> reqwest::RequestBuilder {
    match &key.secret {
        Some(secret) => request.bearer_auth(secret.expose()),
        None => request,
    }
}

/// `GET {base}/v1/models/{owner}/{name}`: free; proves the key, the path and that the model exists.
pub(super) fn probe(
    client: &super::HttpClient,
    urls: &Urls,
    key: &KeySlotConfig,
) -> reqwest::RequestBuilder {
    authed(client.get(urls.model.clone()), key)
}

/// One chat (or completion) call: create the prediction, then wait for it or open its stream.
pub(super) async fn call(
    client: &super::HttpClient,
    urls: &Urls,
    timeouts: &Timeouts,
    call: &Call<'_>,
) -> Outcome {
    let started = Instant::now();
    let body = if call.stream {
        with_stream_flag(&call.body)
    } else {
        call.body.clone()
    };
    let mut create = authed(client.post(urls.predictions.clone()), call.key)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header("x-request-id", call.request_id)
        .body(body);
    if !call.stream {
        create = create.header("prefer", format!("wait={}", wait_seconds(timeouts)));
    }
    let create = call.traced(create);
    let (reply, prediction) =
        match created(transport::exchange(client, create, timeouts, false, call.deadline).await) {
            Ok(created) => created,
            Err(outcome) => return *outcome,
        };
    match prediction.status {
        PredictionStatus::Failed | PredictionStatus::Canceled => return ended_badly(&prediction),
        PredictionStatus::Succeeded if !call.stream => return finish(reply, started),
        _ => {}
    }
    if call.stream {
        return open_stream(client, timeouts, call.deadline, started, &prediction).await;
    }
    poll(client, urls, timeouts, call, started, prediction).await
}

/// The create (or poll) answer as a prediction; anything else is the outcome to report.
fn created(outcome: Outcome) -> Result<(Reply, Prediction), Box<Outcome>> {
    let Outcome::Reply(reply) = outcome else {
        return Err(Box::new(outcome));
    };
    let ReplyBody::Full(body) = &reply.body else {
        return Err(Box::new(malformed("the prediction answer is not JSON")));
    };
    match replicate::decode_prediction(body) {
        Ok(prediction) => Ok((reply, prediction)),
        Err(e) => Err(Box::new(malformed(&e.to_string()))),
    }
}

/// Polls a prediction that is still running until it ends or the deadline comes.
async fn poll(
    client: &super::HttpClient,
    urls: &Urls,
    timeouts: &Timeouts,
    call: &Call<'_>,
    started: Instant,
    mut prediction: Prediction,
) -> Outcome {
    let mut pause = POLL_FIRST;
    loop {
        let Some(get_url) = prediction.get_url.as_deref() else {
            return malformed("a running prediction has no urls.get to poll");
        };
        // The key goes only where this deployment lives: a spoofed or compromised upstream must
        // not make nines send it elsewhere.
        let get_url = match urls.scope.allow(get_url) {
            Ok(url) => url,
            Err(why) => {
                tracing::warn!(why = %why, "replicate: urls.get refused");
                return malformed(&why);
            }
        };
        if Instant::now() + pause >= call.deadline {
            cancel(client, urls, call.key, prediction.cancel_url.as_deref());
            return Outcome::Transport(Transport::Deadline);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(POLL_MAX);
        let get = call
            .traced(authed(client.get(get_url), call.key).header("x-request-id", call.request_id));
        let (reply, polled) =
            match created(transport::exchange(client, get, timeouts, false, call.deadline).await) {
                Ok(polled) => polled,
                Err(outcome) => return *outcome,
            };
        match polled.status {
            PredictionStatus::Succeeded => return finish(reply, started),
            PredictionStatus::Failed | PredictionStatus::Canceled => return ended_badly(&polled),
            _ => prediction = polled,
        }
    }
}

/// Gives up on a prediction nobody will read (fire and forget: its cost is the only concern).
fn cancel(client: &super::HttpClient, urls: &Urls, key: &KeySlotConfig, cancel_url: Option<&str>) {
    let Some(url) = cancel_url else { return };
    let url = match urls.scope.allow(url) {
        Ok(url) => url,
        Err(why) => {
            tracing::warn!(why = %why, "replicate: urls.cancel refused");
            return;
        }
    };
    let request = authed(client.post(url), key);
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        handle.spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(10), request.send()).await;
        });
    }
}

/// The finished prediction as the reply: status 200 (the create's `201 Created` is about the
/// prediction, not the answer), and a time to first byte that is the whole wait.
fn finish(mut reply: Reply, started: Instant) -> Outcome {
    reply.status = StatusCode::OK;
    reply.ttfb = started.elapsed();
    Outcome::Reply(reply)
}

/// `GET urls.stream` up to the first complete event.
async fn open_stream(
    client: &super::HttpClient,
    timeouts: &Timeouts,
    deadline: Instant,
    started: Instant,
    prediction: &Prediction,
) -> Outcome {
    let Some(url) = prediction.stream_url.as_deref() else {
        return malformed(
            "the prediction has no urls.stream (was it created with \"stream\": true?)",
        );
    };
    let get = client
        .get(url)
        .header(http::header::ACCEPT, "text/event-stream")
        .header(http::header::CACHE_CONTROL, "no-store");
    let mut reply = match transport::exchange(client, get, timeouts, true, deadline).await {
        Outcome::Reply(reply) => reply,
        Outcome::StreamError { data } => return failed_in_stream(prediction, data),
        other => return other,
    };
    let ReplyBody::Stream { head, .. } = &reply.body else {
        return malformed("the prediction stream is not text/event-stream");
    };
    match failed_before_commit(head) {
        Ok(None) => {}
        Ok(Some(data)) => return Outcome::StreamError { data },
        Err(overflow) => return malformed(&overflow.to_string()),
    }
    for (name, value) in [
        (PREDICTION_ID, prediction.id.as_str()),
        (PREDICTION_MODEL, prediction.model.as_str()),
    ] {
        if let Ok(value) = HeaderValue::from_str(value) {
            reply.headers.insert(name, value);
        }
    }
    reply.ttfb = started.elapsed();
    Outcome::Reply(reply)
}

/// A `done` event with a `reason` (`error`, `canceled`) among the events read before the commit
/// point: the prediction failed, and nothing has reached the client yet. `Err`: the head holds an
/// event over the SSE decoder's limit (the first-event read stops such a stream first, so this
/// is only a guard).
fn failed_before_commit(head: &[u8]) -> Result<Option<String>, Overflow> {
    #[derive(serde::Deserialize)]
    struct Done {
        #[serde(default)]
        reason: Option<String>,
    }
    let mut decoder = SseDecoder::new();
    let mut events = Vec::new();
    decoder.feed(head, &mut events)?;
    Ok(events
        .into_iter()
        .filter(|e| e.event.as_deref() == Some("done"))
        .find(|e| {
            serde_json::from_str::<Done>(&e.data)
                .ok()
                .and_then(|d| d.reason)
                .is_some_and(|r| !r.is_empty())
        })
        .map(|e| e.data))
}

/// An `event: error` before the first token: a flagged or too-long input is refused as it is
/// without streaming (a 400 that is not retried elsewhere, or only on a larger window); any other
/// failure stays an in-band error, which another deployment may not repeat.
fn failed_in_stream(prediction: &Prediction, data: String) -> Outcome {
    #[derive(serde::Deserialize)]
    struct Detail {
        #[serde(default)]
        detail: Option<String>,
        #[serde(default)]
        error: Option<String>,
    }
    let error = serde_json::from_str::<Detail>(&data)
        .ok()
        .and_then(|d| d.detail.or(d.error))
        .unwrap_or_else(|| data.clone());
    if refused_input(&error).is_some() {
        return failure_status(prediction, false, error);
    }
    Outcome::StreamError { data }
}

/// The 400 code of an error that says the input was flagged or did not fit.
fn refused_input(error: &str) -> Option<&'static str> {
    let lower = error.to_ascii_lowercase();
    if lower.contains("flagged as sensitive") || error.contains("E005") {
        Some("content_filter")
    } else if lower.contains("context window")
        || lower.contains("context length")
        || lower.contains("too many tokens")
    {
        Some("context_length_exceeded")
    } else {
        None
    }
}

/// A failed or canceled prediction as an upstream status the classifier understands.
fn ended_badly(prediction: &Prediction) -> Outcome {
    let canceled = prediction.status == PredictionStatus::Canceled;
    let error = prediction.error.clone().unwrap_or_else(|| {
        String::from(if canceled {
            "the prediction was canceled"
        } else {
            "the prediction failed"
        })
    });
    failure_status(prediction, canceled, error)
}

/// The OpenAI-shaped error status for a prediction that ended with `error`.
fn failure_status(prediction: &Prediction, canceled: bool, error: String) -> Outcome {
    let (status, kind, code) = if let Some(code) = refused_input(&error) {
        (StatusCode::BAD_REQUEST, "invalid_request_error", code)
    } else if canceled {
        (
            StatusCode::BAD_GATEWAY,
            "server_error",
            "prediction_canceled",
        )
    } else {
        (StatusCode::BAD_GATEWAY, "server_error", "prediction_failed")
    };
    let message = format!("Replicate prediction {}: {error}", prediction.id);
    Outcome::Status {
        status,
        headers: HeaderMap::new(),
        body: Bytes::from(ErrorBody::new(message, kind, None, Some(code)).to_json()),
    }
}

/// `Prefer: wait=N`: Replicate holds the create up to N seconds (at most 60) for the answer; N
/// stays below the first-byte timeout so a slow prediction is polled rather than timed out.
fn wait_seconds(timeouts: &Timeouts) -> u64 {
    timeouts.first_byte.as_secs().saturating_sub(1).clamp(1, 60)
}

/// The create body with `"stream": true` (a streamed prediction must be created as one).
fn with_stream_flag(body: &Bytes) -> Bytes {
    let Ok(mut object) = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(body)
    else {
        return body.clone(); // not an object: the upstream will say what is wrong with it
    };
    if object.get("stream") == Some(&serde_json::Value::Bool(true)) {
        return body.clone();
    }
    object.insert("stream".into(), serde_json::Value::Bool(true));
    serde_json::to_vec(&object).map_or_else(|_| body.clone(), Bytes::from)
}

fn malformed(why: &str) -> Outcome {
    Outcome::Transport(Transport::Malformed(why.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_flag_is_added_only_when_missing() {
        let with = with_stream_flag(&Bytes::from_static(br#"{"input":{"prompt":"hi"}}"#));
        let v: serde_json::Value = serde_json::from_slice(&with).unwrap();
        assert_eq!(v["stream"], true);
        assert_eq!(v["input"]["prompt"], "hi");
        let already = Bytes::from_static(br#"{"input":{},"stream":true}"#);
        assert_eq!(with_stream_flag(&already), already);
        let off = with_stream_flag(&Bytes::from_static(br#"{"input":{},"stream":false}"#));
        assert!(off.windows(13).any(|w| w == b"\"stream\":true"));
    }

    #[test]
    fn a_done_event_with_a_reason_is_a_failure_before_commit() {
        assert!(
            failed_before_commit(b"event: output\ndata: Hi\n\n")
                .unwrap()
                .is_none()
        );
        assert!(
            failed_before_commit(b"event: done\ndata: {}\n\n")
                .unwrap()
                .is_none()
        );
        assert_eq!(
            failed_before_commit(b"event: done\ndata: {\"reason\":\"canceled\"}\n\n")
                .unwrap()
                .as_deref(),
            Some("{\"reason\":\"canceled\"}")
        );
        let endless = vec![b'x'; nines_protocol::sse::DEFAULT_EVENT_LIMIT + 1];
        assert_eq!(
            failed_before_commit(&endless).unwrap_err().to_string(),
            "upstream event over 8 MiB"
        );
    }

    #[test]
    fn failed_predictions_classify_by_their_error() {
        use crate::resilience::class::{FailureClass, classify};
        let prediction = |status: &str, error: Option<&str>| {
            let body =
                serde_json::json!({"id": "p1", "model": "o/n", "status": status, "error": error});
            replicate::decode_prediction(body.to_string().as_bytes()).unwrap()
        };
        let class = |p: &Prediction| classify(&ended_badly(p));
        assert_eq!(
            class(&prediction("failed", Some("CUDA out of memory"))),
            FailureClass::Server
        );
        assert_eq!(class(&prediction("canceled", None)), FailureClass::Server);
        assert_eq!(
            class(&prediction(
                "failed",
                Some("The input or output was flagged as sensitive. (E005)")
            )),
            FailureClass::ContentFiltered
        );
        assert_eq!(
            class(&prediction(
                "failed",
                Some(
                    "prompt length (9000 tokens) exceeds the model's context window (8192 tokens)"
                )
            )),
            FailureClass::ContextTooLong
        );
    }

    #[test]
    fn a_flagged_or_too_long_input_in_a_stream_is_refused_as_without_one() {
        use crate::resilience::class::{FailureClass, classify};
        let created = br#"{"id":"p1","model":"o/n","status":"starting"}"#;
        let prediction = replicate::decode_prediction(created).unwrap();
        let outcome = |data: &str| failed_in_stream(&prediction, data.to_owned());
        assert_eq!(
            classify(&outcome(
                r#"{"detail":"The input or output was flagged as sensitive. (E005)"}"#
            )),
            FailureClass::ContentFiltered
        );
        assert_eq!(
            classify(&outcome(
                r#"{"detail":"prompt length (9000 tokens) exceeds the model's context window (8192 tokens)"}"#
            )),
            FailureClass::ContextTooLong
        );
        let other = outcome(r#"{"detail":"CUDA out of memory"}"#);
        assert!(matches!(other, Outcome::StreamError { .. }));
        assert_eq!(classify(&other), FailureClass::Server);
    }

    #[test]
    fn the_wait_stays_below_the_first_byte_timeout() {
        let mut timeouts = Timeouts::default();
        assert_eq!(wait_seconds(&timeouts), 29);
        timeouts.first_byte = Duration::from_secs(300);
        assert_eq!(wait_seconds(&timeouts), 60);
        timeouts.first_byte = Duration::from_millis(500);
        assert_eq!(wait_seconds(&timeouts), 1);
    }
}
