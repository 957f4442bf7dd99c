//! Video generation: nines' own job API (`POST /v1/videos`, `GET /v1/videos/{id}`) and Runway's
//! task API (`POST /v1/text_to_video` or `/v1/image_to_video`, then `GET /v1/tasks/{id}`), with
//! the conversions between them.
//!
//! Video generation takes minutes, so both sides are asynchronous: a create call answers with an
//! id at once and the client polls. nines exposes one small, provider-neutral job shape so clients
//! need not learn each provider's task vocabulary, and maps Runway's six task states onto its
//! four (`queued`, `running`, `succeeded`, `failed`).

use crate::json;
use crate::openai::RequestError;
use crate::unified::{DecodeError, ErrorKind};
use serde::{Deserialize, Serialize};

/// The `X-Runway-Version` header value these shapes follow.
pub const API_VERSION: &str = "2024-11-06";

/// The aspect ratio sent when the client gave none (Runway requires one).
pub const DEFAULT_RATIO: &str = "1280:720";

/// The clip length in seconds sent when the client gave none.
pub const DEFAULT_DURATION: u32 = 5;

/// What a client sends to `POST /v1/videos`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VideoJobRequest {
    pub model: String,
    pub prompt: String,
    /// A first frame: an `https` URL or a `data:` URL. Its presence makes it image-to-video.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    /// Seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<u32>,
    /// `width:height` in pixels, as Runway spells it (`1280:720`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio: Option<String>,
}

/// Parses a `POST /v1/videos` body. Unknown fields are refused so a typo is not silently ignored.
pub fn parse_job_request(body: &[u8]) -> Result<VideoJobRequest, RequestError> {
    let job: VideoJobRequest = serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => RequestError::Invalid {
            param: None,
            message: e.to_string(),
        },
        _ => RequestError::Malformed(e.to_string()),
    })?;
    if job.model.is_empty() {
        return Err(RequestError::MissingModel);
    }
    if job.prompt.trim().is_empty() {
        return Err(RequestError::Missing("prompt"));
    }
    Ok(job)
}

/// The state of a nines video job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VideoJobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
}

/// Why a job failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VideoJobError {
    pub message: String,
    /// The provider's failure code, when it gave one (Runway: `SAFETY.INPUT.TEXT`, ...).
    #[serde(default)]
    pub code: Option<String>,
}

/// What `GET /v1/videos/{id}` (and the create call) returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoJob {
    pub id: String,
    /// Always `video.job`.
    pub object: String,
    pub status: VideoJobStatus,
    /// 0.0 to 1.0.
    pub progress: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<VideoJobError>,
    pub model: String,
    /// Unix seconds.
    pub created: u64,
}

impl VideoJob {
    /// A job just accepted.
    pub fn queued(id: impl Into<String>, model: impl Into<String>, created: u64) -> Self {
        VideoJob {
            id: id.into(),
            object: String::from("video.job"),
            status: VideoJobStatus::Queued,
            progress: 0.0,
            output_url: None,
            error: None,
            model: model.into(),
            created,
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        json::to_vec(self)
    }
}

/// Runway's two generation endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    TextToVideo,
    ImageToVideo,
}

impl Endpoint {
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::TextToVideo => "/v1/text_to_video",
            Endpoint::ImageToVideo => "/v1/image_to_video",
        }
    }
}

/// The body of a Runway create call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateRequest {
    pub model: String,
    pub prompt_text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_image: Option<String>,
    pub ratio: String,
    pub duration: u32,
}

/// Runway's answer to a create call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateResponse {
    pub id: String,
}

/// A Runway task's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskStatus {
    Pending,
    Throttled,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

/// `GET /v1/tasks/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    pub id: String,
    pub status: TaskStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_code: Option<String>,
}

/// The Runway create call for a nines job, for the deployment's `upstream_model`: image-to-video
/// when the job has an image, text-to-video otherwise; ratio and duration defaulted.
pub fn create_request(job: &VideoJobRequest, upstream_model: &str) -> (Endpoint, CreateRequest) {
    let endpoint = match job.image_url {
        Some(_) => Endpoint::ImageToVideo,
        None => Endpoint::TextToVideo,
    };
    let request = CreateRequest {
        model: upstream_model.to_owned(),
        prompt_text: job.prompt.clone(),
        prompt_image: job.image_url.clone(),
        ratio: job
            .ratio
            .clone()
            .unwrap_or_else(|| DEFAULT_RATIO.to_owned()),
        duration: job.duration.unwrap_or(DEFAULT_DURATION),
    };
    (endpoint, request)
}

/// [`create_request`] as the endpoint and body bytes.
pub fn encode_create_request(job: &VideoJobRequest, upstream_model: &str) -> (Endpoint, Vec<u8>) {
    let (endpoint, request) = create_request(job, upstream_model);
    (endpoint, json::to_vec(&request))
}

pub fn decode_create_response(body: &[u8]) -> Result<CreateResponse, DecodeError> {
    serde_json::from_slice(body)
        .map_err(|e| DecodeError::new("runway", "create response", e.to_string()))
}

pub fn decode_task(body: &[u8]) -> Result<Task, DecodeError> {
    serde_json::from_slice(body).map_err(|e| DecodeError::new("runway", "task", e.to_string()))
}

/// A Runway task state as a nines job state.
pub fn job_status(status: TaskStatus) -> VideoJobStatus {
    match status {
        TaskStatus::Pending | TaskStatus::Throttled => VideoJobStatus::Queued,
        TaskStatus::Running => VideoJobStatus::Running,
        TaskStatus::Succeeded => VideoJobStatus::Succeeded,
        TaskStatus::Failed | TaskStatus::Cancelled => VideoJobStatus::Failed,
    }
}

/// The nines job for a Runway task. `id`, `model` and `created` are nines' own (the job id the
/// client knows, the model name it asked for, when nines accepted the job).
pub fn job_from_task(task: &Task, id: &str, model: &str, created: u64) -> VideoJob {
    let status = job_status(task.status);
    let progress = match status {
        VideoJobStatus::Succeeded => 1.0,
        _ => task.progress.unwrap_or(0.0).clamp(0.0, 1.0),
    };
    let error = match task.status {
        TaskStatus::Failed => Some(VideoJobError {
            message: task
                .failure
                .clone()
                .unwrap_or_else(|| String::from("the video generation failed")),
            code: task.failure_code.clone(),
        }),
        TaskStatus::Cancelled => Some(VideoJobError {
            message: String::from("the video generation was cancelled"),
            code: Some(String::from("cancelled")),
        }),
        _ => None,
    };
    VideoJob {
        id: id.to_owned(),
        object: String::from("video.job"),
        status,
        progress,
        output_url: task.output.first().cloned(),
        error,
        model: model.to_owned(),
        created,
    }
}

/// The unified kind of a Runway `failureCode`: safety refusals will fail anywhere, internal
/// failures may succeed on a retry.
pub fn failure_kind(failure_code: &str) -> ErrorKind {
    if failure_code.contains("SAFETY") {
        ErrorKind::ContentFilter
    } else if failure_code.starts_with("INTERNAL") {
        ErrorKind::Server
    } else if failure_code.starts_with("ASSET") || failure_code.starts_with("INPUT_PREPROCESSING") {
        ErrorKind::InvalidRequest
    } else {
        ErrorKind::Unknown
    }
}
