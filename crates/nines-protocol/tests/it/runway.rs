//! Runway task API and nines' video job shape.

use crate::value;
use nines_protocol::openai::RequestError;
use nines_protocol::runway::{
    self, Endpoint, Task, TaskStatus, VideoJob, VideoJobStatus, decode_create_response,
    decode_task, encode_create_request, job_from_task, parse_job_request,
};
use nines_protocol::unified::ErrorKind;
use serde_json::json;

#[test]
fn jobs_become_text_or_image_to_video() {
    let job = parse_job_request(br#"{"model":"video-default","prompt":"a cat surfing"}"#).unwrap();
    let (endpoint, body) = encode_create_request(&job, "gen4_turbo");
    assert_eq!(endpoint, Endpoint::TextToVideo);
    assert_eq!(endpoint.path(), "/v1/text_to_video");
    assert_eq!(
        value(&body),
        json!({"model": "gen4_turbo", "promptText": "a cat surfing", "ratio": "1280:720", "duration": 5})
    );

    let job = parse_job_request(
        br#"{"model":"v","prompt":"zoom in","image_url":"https://x/cat.jpg","duration":10,"ratio":"720:1280"}"#,
    )
    .unwrap();
    let (endpoint, body) = encode_create_request(&job, "gen4_turbo");
    assert_eq!(endpoint, Endpoint::ImageToVideo);
    assert_eq!(
        value(&body),
        json!({"model": "gen4_turbo", "promptText": "zoom in", "promptImage": "https://x/cat.jpg", "ratio": "720:1280", "duration": 10})
    );
}

#[test]
fn job_requests_are_validated() {
    assert!(matches!(
        parse_job_request(b"{"),
        Err(RequestError::Malformed(_))
    ));
    assert_eq!(
        parse_job_request(br#"{"model":"","prompt":"x"}"#),
        Err(RequestError::MissingModel)
    );
    assert_eq!(
        parse_job_request(br#"{"model":"m","prompt":"  "}"#),
        Err(RequestError::Missing("prompt"))
    );
    assert!(matches!(
        parse_job_request(br#"{"model":"m","prompt":"x","promt":"typo"}"#),
        Err(RequestError::Invalid { .. })
    ));
}

#[test]
fn task_states_map_to_job_states() {
    for (wire, status) in [
        ("PENDING", VideoJobStatus::Queued),
        ("THROTTLED", VideoJobStatus::Queued),
        ("RUNNING", VideoJobStatus::Running),
        ("SUCCEEDED", VideoJobStatus::Succeeded),
        ("FAILED", VideoJobStatus::Failed),
        ("CANCELLED", VideoJobStatus::Failed),
    ] {
        let body = json!({"id": "t1", "status": wire, "createdAt": "2024-06-27T19:49:32.334Z"});
        let task = decode_task(body.to_string().as_bytes()).unwrap();
        assert_eq!(
            job_from_task(&task, "vid_1", "video-default", 9).status,
            status,
            "{wire}"
        );
    }
    assert_eq!(
        decode_create_response(br#"{"id":"17f20503-6c24-4c16-946b-35dbbce2af2f"}"#)
            .unwrap()
            .id,
        "17f20503-6c24-4c16-946b-35dbbce2af2f"
    );
    assert!(decode_task(br#"{"id":"t","status":"EXPLODED"}"#).is_err());
}

#[test]
fn jobs_carry_progress_output_and_failure() {
    let running = Task {
        id: "t".into(),
        status: TaskStatus::Running,
        progress: Some(0.42),
        output: vec![],
        failure: None,
        failure_code: None,
    };
    let job = job_from_task(&running, "vid_1", "video-default", 1_700_000_000);
    assert_eq!(
        value(&job.to_json()),
        json!({"id": "vid_1", "object": "video.job", "status": "running", "progress": 0.42, "model": "video-default", "created": 1_700_000_000u64})
    );
    let done = Task {
        status: TaskStatus::Succeeded,
        progress: None,
        output: vec!["https://cdn/x.mp4".into()],
        ..running.clone()
    };
    let job = job_from_task(&done, "vid_1", "m", 0);
    assert_eq!(job.output_url.as_deref(), Some("https://cdn/x.mp4"));
    assert!((job.progress - 1.0).abs() < f64::EPSILON);
    let failed = Task {
        status: TaskStatus::Failed,
        failure: Some("Input text failed moderation".into()),
        failure_code: Some("SAFETY.INPUT.TEXT".into()),
        ..running
    };
    let job = job_from_task(&failed, "vid_1", "m", 0);
    assert_eq!(
        value(&job.to_json())["error"],
        json!({"message": "Input text failed moderation", "code": "SAFETY.INPUT.TEXT"})
    );
    assert_eq!(
        runway::failure_kind("SAFETY.INPUT.TEXT"),
        ErrorKind::ContentFilter
    );
    assert_eq!(
        runway::failure_kind("INPUT_PREPROCESSING.SAFETY.TEXT"),
        ErrorKind::ContentFilter
    );
    assert_eq!(
        runway::failure_kind("INTERNAL.BAD_OUTPUT.CODE01"),
        ErrorKind::Server
    );
    assert_eq!(
        runway::failure_kind("ASSET.INVALID"),
        ErrorKind::InvalidRequest
    );
    let queued = VideoJob::queued("vid_2", "m", 5);
    assert_eq!(queued.status, VideoJobStatus::Queued);
    let back: VideoJob = serde_json::from_slice(&queued.to_json()).unwrap();
    assert_eq!(back, queued);
}
