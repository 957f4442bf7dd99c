//! Video job handlers: `POST /v1/videos`, `GET /v1/videos/{id}`. Read the body, call
//! `crate::videos`, render the job (200) or the error, with `x-nines-deployment` and
//! `x-nines-attempts` as on chat responses.

use super::openai::read_body;
use crate::request::Request;
use crate::state::AppState;
use crate::videos::{self, Handled, VideoError};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use nines_protocol::ErrorBody;
use std::sync::Arc;

pub(super) async fn create(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let cx = Request::start(&state, &headers, "videos");
    render(videos::create(cx, async move |cx: &Request| read_body(cx, body).await).await)
}

pub(super) async fn status(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let cx = Request::start(&state, &headers, "video_status");
    render(videos::status(cx, &id).await)
}

fn render(handled: Handled) -> Response {
    let mut response = match handled.result {
        Ok(job) => {
            let mut response = (StatusCode::OK, job.to_json()).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(VideoError::Gateway(e)) => e.into_response(),
        Err(VideoError::JobNotFound(id)) => {
            let body = ErrorBody::new(
                format!("No video job found with id '{id}'."),
                "invalid_request_error",
                Some("id"),
                Some("video_job_not_found"),
            );
            let mut response = (StatusCode::NOT_FOUND, body.to_json()).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
    };
    let headers = response.headers_mut();
    if let Some(v) = handled
        .deployment
        .and_then(|d| HeaderValue::from_str(&d).ok())
    {
        headers.insert("x-nines-deployment", v);
    }
    headers.insert("x-nines-attempts", HeaderValue::from(handled.attempts));
    response
}
