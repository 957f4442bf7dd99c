//! The video job pipeline: `POST /v1/videos` starts a job on a Runway deployment of the requested
//! model, `GET /v1/videos/{id}` reports it.
//!
//! | stage   | runs          | default                                                          |
//! |---------|---------------|------------------------------------------------------------------|
//! | parse   | create        | `runway::parse_job_request`: unknown fields, no prompt → 400     |
//! | resolve | create        | configured model names (404); only its Runway deployments count (none → 400) |
//! | create  | create        | key slots in the route's strategy order; breakers, retry budget and in-flight counts as for chat; a retryable failure moves to the next slot at once (one pass, no backoff round: a job is worth a client retry, not a long wait) |
//! | id      | create        | `vid_` + base64url of `[deployment, key slot, task id, model, created]`: stateless, so any replica answers a poll |
//! | poll    | status        | decode the id (garbled, unknown deployment → 404), `GET /v1/tasks/{id}` on that deployment with that key slot; upstream 404 → 404 |
//!
//! Job ids are opaque but not signed: they hold nothing secret, and a task id is a random UUID.
//! A poll feeds its key slot's breaker when the breaker admits it, and is made anyway when it
//! does not (the task exists only there; there is nowhere else to ask).

use crate::config::ProviderKind;
use crate::error::GatewayError;
use crate::providers::{Outcome, ReplyBody, Transport, is_runway_task_id};
use crate::resilience::attempt::{breaker_signal, summarize};
use crate::resilience::breaker::Signal;
use crate::resilience::class::{FailureClass, classify};
use crate::resilience::retry::retry_after;
use crate::resilience::{AttemptRecord, Unavailable};
use crate::state::{AppState, Runtime};
use crate::telemetry::RequestLog;
use bytes::Bytes;
use nines_protocol::openai::RequestError;
use nines_protocol::runway::{self, VideoJob};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::time::Instant;

/// What a video request ended in, with what the response headers report.
pub struct Handled {
    pub result: Result<VideoJob, VideoError>,
    /// The deployment that served (or, for a poll, that holds the job).
    pub deployment: Option<String>,
    /// Upstream calls made.
    pub attempts: usize,
}

#[derive(Debug)]
pub enum VideoError {
    Gateway(GatewayError),
    /// The id is not one nines issued, names a deployment that no longer exists, or the
    /// provider no longer knows the task.
    JobNotFound(String),
}

impl From<GatewayError> for VideoError {
    fn from(e: GatewayError) -> Self {
        VideoError::Gateway(e)
    }
}

/// Where a job lives; the job id is this, encoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct JobRef {
    deployment: String,
    key: usize,
    task: String,
    model: String,
    created: u64,
}

const ID_PREFIX: &str = "vid_";

impl JobRef {
    fn encode(&self) -> String {
        let fields = (
            &self.deployment,
            self.key,
            &self.task,
            &self.model,
            self.created,
        );
        let json = serde_json::to_vec(&fields).unwrap_or_default();
        format!("{ID_PREFIX}{}", base64url::encode(&json))
    }

    fn decode(id: &str) -> Option<JobRef> {
        let bytes = base64url::decode(id.strip_prefix(ID_PREFIX)?)?;
        let (deployment, key, task, model, created) =
            serde_json::from_slice::<(String, usize, String, String, u64)>(&bytes).ok()?;
        Some(JobRef {
            deployment,
            key,
            task,
            model,
            created,
        })
    }
}

/// `POST /v1/videos`.
pub async fn create(state: &AppState, request_id: &str, body: &[u8]) -> Handled {
    let mut log = RequestLog::start(&state.telemetry, &meta_of(request_id), "videos");
    let job = match runway::parse_job_request(body) {
        Ok(job) => job,
        Err(e) => return rejected(log, GatewayError::BadRequest(e)),
    };
    log.summary.model = job.model.clone();
    let runtime = state.runtime();
    let Some(route) = runtime.table.resolve(&job.model) else {
        return rejected(log, GatewayError::ModelNotFound(job.model));
    };
    log.summary.routed = true;
    let inputs = crate::router::Inputs {
        deployments: &runtime.config.deployments,
        health: Some(&runtime.health),
        estimate: None,
    };
    let plan = runtime.table.plan(route, &inputs);
    let slots: Vec<_> = plan
        .slots
        .iter()
        .filter(|s| is_runway(&runtime, s.deployment))
        .collect();
    if slots.is_empty() {
        let message = format!(
            "model '{}' has no runway deployment: video jobs need a deployment with \
             provider = \"runway\"",
            job.model
        );
        return rejected(
            log,
            GatewayError::BadRequest(RequestError::Invalid {
                param: Some("model"),
                message,
            }),
        );
    }
    let total = slots
        .iter()
        .map(|s| runtime.upstreams[s.deployment].deployment.timeouts.total)
        .max()
        .unwrap_or(Duration::from_secs(120));
    let deadline = Instant::now() + total;
    let health = &runtime.health;
    health.budget.deposit();

    let mut attempts: Vec<AttemptRecord> = Vec::new();
    let mut earliest_reopen: Option<Instant> = None;
    for slot in slots {
        let (d, k) = (slot.deployment, slot.key);
        let Some(breaker) = health.breaker(d, k) else {
            continue;
        };
        let permit = match breaker.admit() {
            Ok(permit) => permit,
            Err(rejected) => {
                if let Some(until) = rejected.until {
                    earliest_reopen = Some(earliest_reopen.map_or(until, |e| e.min(until)));
                }
                continue;
            }
        };
        if Instant::now() >= deadline {
            break;
        }
        if !attempts.is_empty() && !health.budget.try_withdraw() {
            let error = GatewayError::Unavailable {
                model: job.model,
                why: Unavailable::BudgetSpent,
                retry_after: health.budget.retry_after(),
                attempts,
            };
            return failed(log, error);
        }
        let upstream = &runtime.upstreams[d];
        let deployment = &upstream.deployment;
        let (endpoint, create_body) =
            runway::encode_create_request(&job, &deployment.upstream_model);
        let in_flight = health.deployments[d].enter();
        let started = Instant::now();
        let outcome = upstream
            .create_video_task(k, endpoint, Bytes::from(create_body), request_id, deadline)
            .await;
        drop(in_flight);
        let (outcome, task) = match outcome {
            Outcome::Reply(reply) => match &reply.body {
                ReplyBody::Full(body) => match runway::decode_create_response(body) {
                    Ok(created) if is_runway_task_id(&created.id) => {
                        (Outcome::Reply(reply), Some(created.id))
                    }
                    Ok(created) => (
                        Outcome::Transport(Transport::Malformed(format!(
                            "'{}' is not a task id",
                            created.id
                        ))),
                        None,
                    ),
                    Err(e) => (
                        Outcome::Transport(Transport::Malformed(e.to_string())),
                        None,
                    ),
                },
                ReplyBody::Stream { .. } => (
                    Outcome::Transport(Transport::Malformed("a stream, not a task".into())),
                    None,
                ),
            },
            other => (other, None),
        };
        let (record, retry_wait) = record_of(
            &outcome,
            deployment.name.clone(),
            &deployment.keys[k].alias,
            started,
        );
        permit.record(breaker_signal(record.class, retry_wait));
        attempts.push(record);
        if let Some(task) = task {
            let job_ref = JobRef {
                deployment: deployment.name.clone(),
                key: k,
                task,
                model: job.model.clone(),
                created: crate::translate::unix_now(),
            };
            log.summary.deployment = Some(deployment.name.clone());
            log.summary.attempts = attempts.clone();
            log.summary.served = true;
            log.finish(200, "ok");
            return Handled {
                result: Ok(VideoJob::queued(
                    job_ref.encode(),
                    job_ref.model.clone(),
                    job_ref.created,
                )),
                deployment: Some(job_ref.deployment),
                attempts: attempts.len(),
            };
        }
        let class = attempts.last().map_or(FailureClass::Malformed, |a| a.class);
        if let Outcome::Status {
            status,
            headers,
            body,
        } = outcome
            && !class.is_retryable()
        {
            let error = GatewayError::Upstream {
                status,
                headers,
                body,
                attempts,
            };
            return failed(log, error);
        }
    }
    if attempts.is_empty()
        && let Some(reopen) = earliest_reopen
    {
        let error = GatewayError::Unavailable {
            model: job.model,
            why: Unavailable::AllOpen,
            retry_after: reopen.saturating_duration_since(Instant::now()),
            attempts,
        };
        return failed(log, error);
    }
    let error = GatewayError::AllFailed {
        model: job.model,
        deadline_hit: Instant::now() >= deadline,
        attempts,
    };
    failed(log, error)
}

/// `GET /v1/videos/{id}`.
pub async fn status(state: &AppState, request_id: &str, id: &str) -> Handled {
    let mut log = RequestLog::start(&state.telemetry, &meta_of(request_id), "video_status");
    let runtime = state.runtime();
    let found = JobRef::decode(id).and_then(|job_ref| {
        let d = runtime
            .config
            .deployments
            .iter()
            .position(|d| d.name == job_ref.deployment)?;
        (is_runway(&runtime, d) && is_runway_task_id(&job_ref.task)).then_some((d, job_ref))
    });
    let Some((d, job_ref)) = found else {
        log.finish(404, "job_not_found");
        return Handled {
            result: Err(VideoError::JobNotFound(id.to_owned())),
            deployment: None,
            attempts: 0,
        };
    };
    log.summary.model = job_ref.model.clone();
    log.summary.deployment = Some(job_ref.deployment.clone());
    let upstream = &runtime.upstreams[d];
    let deployment = &upstream.deployment;
    let k = if job_ref.key < deployment.keys.len() {
        job_ref.key
    } else {
        0
    };
    let deadline = Instant::now() + deployment.timeouts.total;
    let permit = runtime.health.breaker(d, k).and_then(|b| b.admit().ok());
    let in_flight = runtime.health.deployments[d].enter();
    let started = Instant::now();
    let outcome = upstream
        .video_task(k, &job_ref.task, request_id, deadline)
        .await;
    drop(in_flight);
    let outcome = match outcome {
        Outcome::Reply(reply) => match &reply.body {
            ReplyBody::Full(body) => match runway::decode_task(body) {
                Ok(task) => {
                    if let Some(permit) = permit {
                        permit.record(Signal::Success);
                    }
                    let job = runway::job_from_task(&task, id, &job_ref.model, job_ref.created);
                    log.summary.served = true;
                    log.finish(200, "ok");
                    return Handled {
                        result: Ok(job),
                        deployment: Some(job_ref.deployment),
                        attempts: 1,
                    };
                }
                Err(e) => Outcome::Transport(Transport::Malformed(e.to_string())),
            },
            ReplyBody::Stream { .. } => {
                Outcome::Transport(Transport::Malformed("a stream, not a task".into()))
            }
        },
        other => other,
    };
    let (record, retry_wait) = record_of(
        &outcome,
        deployment.name.clone(),
        &deployment.keys[k].alias,
        started,
    );
    let class = record.class;
    if let Some(permit) = permit {
        permit.record(breaker_signal(class, retry_wait));
    }
    let error = match outcome {
        Outcome::Status { status, .. } if status == http::StatusCode::NOT_FOUND => {
            log.finish(404, "job_not_found");
            return Handled {
                result: Err(VideoError::JobNotFound(id.to_owned())),
                deployment: Some(job_ref.deployment),
                attempts: 1,
            };
        }
        Outcome::Status {
            status,
            headers,
            body,
        } if !class.is_retryable() => GatewayError::Upstream {
            status,
            headers,
            body,
            attempts: vec![record],
        },
        _ => GatewayError::AllFailed {
            model: job_ref.model.clone(),
            deadline_hit: Instant::now() >= deadline,
            attempts: vec![record],
        },
    };
    let mut handled = failed(log, error);
    handled.deployment = Some(job_ref.deployment);
    handled
}

fn is_runway(runtime: &Runtime, deployment: usize) -> bool {
    runtime
        .config
        .deployments
        .get(deployment)
        .is_some_and(|d| d.provider == ProviderKind::Runway)
}

/// An error before any upstream call.
fn rejected(log: RequestLog, error: GatewayError) -> Handled {
    Handled {
        result: Err(VideoError::Gateway(log.reject(error))),
        deployment: None,
        attempts: 0,
    }
}

/// Video handlers get only the request id; the log wants the request's meta.
fn meta_of(request_id: &str) -> crate::pipeline::RequestMeta {
    crate::pipeline::RequestMeta {
        id: request_id.to_owned(),
        ..Default::default()
    }
}

/// An error after upstream calls; the log names the last deployment tried.
fn failed(mut log: RequestLog, error: GatewayError) -> Handled {
    let attempts = match &error {
        GatewayError::Upstream { attempts, .. }
        | GatewayError::AllFailed { attempts, .. }
        | GatewayError::Unavailable { attempts, .. } => {
            log.note_failure(attempts);
            attempts.len()
        }
        _ => 0,
    };
    log.finish(error.status().as_u16(), error.label());
    Handled {
        result: Err(VideoError::Gateway(error)),
        deployment: None,
        attempts,
    }
}

/// The attempt record of one upstream call (never a secret), and the wait the provider asked
/// for.
fn record_of(
    outcome: &Outcome,
    deployment: String,
    key_alias: &str,
    started: Instant,
) -> (AttemptRecord, Option<Duration>) {
    let class = classify(outcome);
    let (status, detail, wait) = match outcome {
        Outcome::Reply(reply) => (Some(reply.status.as_u16()), String::new(), None),
        Outcome::Status {
            status,
            headers,
            body,
        } => (Some(status.as_u16()), summarize(body), retry_after(headers)),
        Outcome::StreamError { data } => (None, summarize(data.as_bytes()), None),
        Outcome::Transport(t) => (None, t.describe(), None),
    };
    let record = AttemptRecord {
        deployment,
        key_alias: key_alias.to_owned(),
        class,
        status,
        elapsed: started.elapsed(),
        detail,
        retry_after: wait,
        span: None,
    };
    (record, wait)
}

/// URL-safe base64 without padding (RFC 4648 §5), for job ids.
mod base64url {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    pub(super) fn encode(bytes: &[u8]) -> String {
        let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..=chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            }
        }
        out
    }

    pub(super) fn decode(text: &str) -> Option<Vec<u8>> {
        if text.len() % 4 == 1 {
            return None;
        }
        let mut out = Vec::with_capacity(text.len() * 3 / 4);
        for chunk in text.as_bytes().chunks(4) {
            let mut n = 0u32;
            for (i, c) in chunk.iter().enumerate() {
                let v = ALPHABET.iter().position(|a| a == c)? as u32;
                n |= v << (18 - 6 * i);
            }
            let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            out.extend_from_slice(&bytes[..chunk.len() - 1]);
        }
        // Canonical form only: the bits below the last byte must be zero.
        (encode(&out) == text).then_some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_round_trips_every_length() {
        for len in 0..40 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let text = base64url::encode(&bytes);
            assert!(!text.contains(['+', '/', '=']));
            assert_eq!(base64url::decode(&text), Some(bytes));
        }
        assert_eq!(base64url::encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64url::encode(b"fo"), "Zm8");
        assert_eq!(base64url::encode(&[0xfb, 0xff]), "-_8");
        assert_eq!(base64url::decode("Zm9"), None, "non-canonical");
        assert_eq!(base64url::decode("Z"), None);
        assert_eq!(base64url::decode("Zm+v"), None);
    }

    #[test]
    fn a_job_id_round_trips_and_garbage_is_refused() {
        let job_ref = JobRef {
            deployment: "runway-a".into(),
            key: 1,
            task: "6d6f636b-0000-4000-8000-000000000001".into(),
            model: "video".into(),
            created: 1_700_000_000,
        };
        let id = job_ref.encode();
        assert!(id.starts_with("vid_"));
        assert_eq!(JobRef::decode(&id), Some(job_ref));
        for bad in ["", "vid_", "vid_!!!!", "abc", "vid_Zm9vYmFy", &id[4..]] {
            assert_eq!(JobRef::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn summaries_take_the_message_and_mask_keys() {
        assert_eq!(
            summarize(br#"{"error":"Task not found"}"#),
            "Task not found"
        );
        assert_eq!(
            summarize(br#"{"error":{"message":"bad key sk-abcdef123456"}}"#),
            "bad key sk-***"
        );
        assert_eq!(summarize(b"plain"), "plain");
    }
}
