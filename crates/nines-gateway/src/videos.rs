//! The video job pipeline: `POST /v1/videos` starts a job on a Runway deployment of the requested
//! model, `GET /v1/videos/{id}` reports it.
//!
//! | stage   | runs          | default                                                          |
//! |---------|---------------|------------------------------------------------------------------|
//! | auth    | both          | as for chat: 401 without a valid key, before any body is read     |
//! | parse   | create        | `runway::parse_job_request`: unknown fields, no prompt → 400     |
//! | admit   | create        | as for chat: the key's model allow-list (403), its limits and budgets (429); a usage record |
//! | resolve | create        | configured model names (404); only its Runway deployments count (none → 400) |
//! | create  | create        | key slots in the route's strategy order; breakers, retry budget and in-flight counts as for chat; a retryable failure moves to the next slot at once (one pass, no backoff round: a job is worth a client retry, not a long wait) |
//! | id      | create        | `vid_` + `[deployment, key slot, task id, model, created, owner]` signed (`auth::signing`): stateless, so any replica sharing the secret answers a poll |
//! | poll    | status        | the id checked (not nines', forged, another key's, a model the key may no longer use, unknown deployment → 404), `GET /v1/tasks/{id}` on that deployment with that key slot; upstream 404 → 404. Polls are not counted against limits: they cost the provider nothing |
//!
//! Job ids are signed and bound to the key that created them (its id; "anonymous" with auth
//! off): a forged id cannot choose an upstream key slot, and another key's id is a 404, the same
//! answer as for an id that never existed.
//! A poll feeds its key slot's breaker when the breaker admits it, and is made anyway when it
//! does not (the task exists only there; there is nowhere else to ask).

use crate::auth::Identity;
use crate::auth::signing::Signer;
use crate::config::ProviderKind;
use crate::providers::{Outcome, ReplyBody, Transport, is_runway_task_id};
use crate::request::{GatewayError, Request};
use crate::resilience::attempt::{Target, attempt};
use crate::resilience::{AttemptRecord, Unavailable};
use crate::state::Runtime;
use bytes::Bytes;
use nines_protocol::openai::RequestError;
use nines_protocol::runway::{self, VideoJob};
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use std::sync::Arc;
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

/// Where a job lives; the job id is this, encoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct JobRef {
    deployment: String,
    key: usize,
    task: String,
    model: String,
    created: u64,
    /// The key that created it.
    owner: String,
}

const ID_PREFIX: &str = "vid_";

impl JobRef {
    fn encode(&self, signer: &Signer) -> String {
        let fields = (
            &self.deployment,
            self.key,
            &self.task,
            &self.model,
            self.created,
            &self.owner,
        );
        let json = serde_json::to_vec(&fields).unwrap_or_default();
        format!("{ID_PREFIX}{}", signer.sign(&json))
    }

    /// The job an id names, when nines signed it.
    fn decode(signer: &Signer, id: &str) -> Option<JobRef> {
        let bytes = signer.verify(id.strip_prefix(ID_PREFIX)?)?;
        let (deployment, key, task, model, created, owner) =
            serde_json::from_slice::<(String, usize, String, String, u64, String)>(&bytes).ok()?;
        Some(JobRef {
            deployment,
            key,
            task,
            model,
            created,
            owner,
        })
    }
}

/// Whose a job is: the key's id, or `anonymous` with auth off.
fn owner_of(identity: &Identity) -> String {
    identity
        .key
        .as_ref()
        .map_or_else(|| "anonymous".to_owned(), |k| k.id.to_string())
}

/// `POST /v1/videos`: auth, then the body (read only for a caller that may send one), then
/// admission as for chat.
pub async fn create(
    mut cx: Request,
    read_body: impl AsyncFnOnce(&Request) -> Result<Bytes, GatewayError>,
) -> Handled {
    let identity = match cx.authorize().await {
        Ok(identity) => identity,
        Err(e) => return failed(cx, e),
    };
    let body = read_body(&cx).await;
    let (job, size) = match body.and_then(|b| Ok((runway::parse_job_request(&b)?, b.len()))) {
        Ok(parsed) => parsed,
        Err(e) => return failed(cx, e),
    };
    cx.model.clone_from(&job.model);
    if let Err(e) = cx.admit(&job.model, size, Some(0)).await {
        return failed(cx, e);
    }
    let owner = owner_of(&identity);
    let runtime = Arc::clone(&cx.runtime);
    let Some(route) = runtime.table.resolve(&job.model) else {
        return failed(cx, GatewayError::ModelNotFound(job.model));
    };
    cx.summary.model.clone_from(&job.model);
    cx.summary.routed = true;
    let inputs = crate::router::Inputs {
        deployments: &runtime.config.deployments,
        health: Some(&runtime.health),
        estimate: None,
    };
    let plan = runtime.table.plan(route, &inputs);
    let slots: Vec<_> = plan
        .key_slots()
        .into_iter()
        .filter(|s| is_runway(&runtime, s.deployment))
        .collect();
    if slots.is_empty() {
        let message = format!(
            "model '{}' has no runway deployment: video jobs need a deployment with \
             provider = \"runway\"",
            job.model
        );
        let invalid = RequestError::Invalid {
            param: Some("model"),
            message,
        };
        return failed(cx, GatewayError::BadRequest(invalid));
    }
    let total = slots
        .iter()
        .map(|s| runtime.upstreams[s.deployment].deployment.timeouts.total)
        .max()
        .unwrap_or(Duration::from_secs(120));
    let deadline = Instant::now() + total;
    let health = &runtime.health;
    let max_retry_after = runtime.config.resilience.max_retry_after;
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
            return failed(cx, error);
        }
        let upstream = &runtime.upstreams[d];
        let deployment = &upstream.deployment;
        let (endpoint, create_body) =
            runway::encode_create_request(&job, &deployment.upstream_model);
        let target = Target {
            upstream,
            key: k,
            health: Some(&health.deployments[d]),
            permit: Some(permit),
            in_flight: Some(health.deployments[d].enter()),
            span: None,
            stream: false,
            max_retry_after,
            learned_deadline: None,
        };
        let call = async {
            let outcome = upstream
                .create_video_task(k, endpoint, Bytes::from(create_body), &cx.meta.id, deadline)
                .await;
            created_task(outcome)
        };
        let made = attempt(target, call).await;
        let class = made.record.class;
        attempts.push(made.record);
        match made.outcome {
            Outcome::Reply(reply) => {
                let task = match &reply.body {
                    ReplyBody::Full(body) => runway::decode_create_response(body)
                        .map(|c| c.id)
                        .unwrap_or_default(),
                    ReplyBody::Stream { .. } => String::new(),
                };
                let job_ref = JobRef {
                    deployment: deployment.name.clone(),
                    key: k,
                    task,
                    model: job.model.clone(),
                    created: crate::clock::unix_secs(),
                    owner: owner.clone(),
                };
                cx.summary.deployment = Some(deployment.name.clone());
                cx.summary.attempts = attempts;
                cx.summary.served = true;
                let n = cx.summary.attempts.len();
                let id = job_ref.encode(&cx.state.access.signer);
                cx.answered(reply.status, deployment.price, b"");
                return Handled {
                    result: Ok(VideoJob::queued(id, job_ref.model.clone(), job_ref.created)),
                    deployment: Some(job_ref.deployment),
                    attempts: n,
                };
            }
            Outcome::Status {
                status,
                headers,
                body,
            } if !class.is_retryable() => {
                let error = GatewayError::upstream(status, headers, body, attempts);
                return failed(cx, error);
            }
            _ => {}
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
        return failed(cx, error);
    }
    let error = GatewayError::AllFailed {
        model: job.model,
        deadline_hit: Instant::now() >= deadline,
        attempts,
    };
    failed(cx, error)
}

/// A create call's answer, checked before it counts as one: a 2xx must carry a task id.
fn created_task(outcome: Outcome) -> Outcome {
    let Outcome::Reply(reply) = outcome else {
        return outcome;
    };
    let malformed = |why: String| Outcome::Transport(Transport::Malformed(why));
    match &reply.body {
        ReplyBody::Full(body) => match runway::decode_create_response(body) {
            Ok(created) if is_runway_task_id(&created.id) => Outcome::Reply(reply),
            Ok(created) => malformed(format!("'{}' is not a task id", created.id)),
            Err(e) => malformed(e.to_string()),
        },
        ReplyBody::Stream { .. } => malformed("a stream, not a task".into()),
    }
}

/// `GET /v1/videos/{id}`.
pub async fn status(mut cx: Request, id: &str) -> Handled {
    let identity = match cx.authorize().await {
        Ok(identity) => identity,
        Err(e) => return failed(cx, e),
    };
    let runtime = Arc::clone(&cx.runtime);
    let owner = owner_of(&identity);
    let mine = JobRef::decode(&cx.state.access.signer, id)
        .filter(|j| j.owner == owner && identity.allows(&j.model));
    let found = mine.and_then(|job_ref| {
        let d = runtime
            .config
            .deployments
            .iter()
            .position(|d| d.name == job_ref.deployment)?;
        (is_runway(&runtime, d) && is_runway_task_id(&job_ref.task)).then_some((d, job_ref))
    });
    let Some((d, job_ref)) = found else {
        return job_not_found(cx, id, None);
    };
    cx.model.clone_from(&job_ref.model);
    cx.summary.model.clone_from(&job_ref.model);
    cx.summary.deployment = Some(job_ref.deployment.clone());
    let upstream = &runtime.upstreams[d];
    let deployment = &upstream.deployment;
    let k = if job_ref.key < deployment.keys.len() {
        job_ref.key
    } else {
        0
    };
    let deadline = Instant::now() + deployment.timeouts.total;
    let target = Target {
        upstream,
        key: k,
        health: Some(&runtime.health.deployments[d]),
        // Polled even when the breaker would not admit: the task exists only there.
        permit: runtime.health.breaker(d, k).and_then(|b| b.admit().ok()),
        in_flight: Some(runtime.health.deployments[d].enter()),
        span: None,
        stream: false,
        max_retry_after: runtime.config.resilience.max_retry_after,
        learned_deadline: None,
    };
    let call = async {
        let outcome = upstream
            .video_task(k, &job_ref.task, &cx.meta.id, deadline)
            .await;
        polled_task(outcome)
    };
    let made = attempt(target, call).await;
    let class = made.record.class;
    let error = match made.outcome {
        Outcome::Reply(reply) => {
            let job = match &reply.body {
                ReplyBody::Full(body) => runway::decode_task(body)
                    .ok()
                    .map(|task| runway::job_from_task(&task, id, &job_ref.model, job_ref.created)),
                ReplyBody::Stream { .. } => None,
            };
            match job {
                Some(job) => {
                    cx.summary.attempts = vec![made.record];
                    cx.summary.served = true;
                    cx.answered(reply.status, deployment.price, b"");
                    return Handled {
                        result: Ok(job),
                        deployment: Some(job_ref.deployment),
                        attempts: 1,
                    };
                }
                None => GatewayError::Internal("a checked task did not decode".into()),
            }
        }
        Outcome::Status { status, .. } if status == http::StatusCode::NOT_FOUND => {
            cx.summary.attempts = vec![made.record];
            return job_not_found(cx, id, Some(job_ref.deployment));
        }
        Outcome::Status {
            status,
            headers,
            body,
        } if !class.is_retryable() => {
            GatewayError::upstream(status, headers, body, vec![made.record])
        }
        _ => GatewayError::AllFailed {
            model: job_ref.model.clone(),
            deadline_hit: Instant::now() >= deadline,
            attempts: vec![made.record],
        },
    };
    let mut handled = failed(cx, error);
    handled.deployment = Some(job_ref.deployment);
    handled
}

/// A poll's answer, checked before it counts as one: a 2xx must be a task.
fn polled_task(outcome: Outcome) -> Outcome {
    let Outcome::Reply(reply) = outcome else {
        return outcome;
    };
    let malformed = |why: String| Outcome::Transport(Transport::Malformed(why));
    match &reply.body {
        ReplyBody::Full(body) => match runway::decode_task(body) {
            Ok(_) => Outcome::Reply(reply),
            Err(e) => malformed(e.to_string()),
        },
        ReplyBody::Stream { .. } => malformed("a stream, not a task".into()),
    }
}

fn is_runway(runtime: &Runtime, deployment: usize) -> bool {
    runtime
        .config
        .deployments
        .get(deployment)
        .is_some_and(|d| d.provider == ProviderKind::Runway)
}

/// Ends the request with `error`.
fn failed(cx: Request, error: GatewayError) -> Handled {
    let attempts = error.attempts();
    let Err(error) = cx.fail::<Infallible>(error);
    Handled {
        result: Err(VideoError::Gateway(error)),
        deployment: None,
        attempts,
    }
}

/// Ends a poll for a job nobody knows (404).
fn job_not_found(cx: Request, id: &str, deployment: Option<String>) -> Handled {
    let attempts = cx.summary.attempts.len();
    cx.fail_as(http::StatusCode::NOT_FOUND, "job_not_found");
    Handled {
        result: Err(VideoError::JobNotFound(id.to_owned())),
        deployment,
        attempts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_id_round_trips_and_garbage_is_refused() {
        let job_ref = JobRef {
            deployment: "runway-a".into(),
            key: 1,
            task: "6d6f636b-0000-4000-8000-000000000001".into(),
            model: "video".into(),
            created: 1_700_000_000,
            owner: "key_1".into(),
        };
        let signer = Signer::new(b"a-secret-of-sixteen");
        let id = job_ref.encode(&signer);
        assert!(id.starts_with("vid_"));
        assert_eq!(JobRef::decode(&signer, &id), Some(job_ref));
        assert_eq!(
            JobRef::decode(&Signer::new(b"another-secret-here"), &id),
            None
        );
        for bad in ["", "vid_", "vid_!!!!", "abc", "vid_Zm9vYmFy", &id[4..]] {
            assert_eq!(JobRef::decode(&signer, bad), None, "{bad:?}");
        }
    }
}
