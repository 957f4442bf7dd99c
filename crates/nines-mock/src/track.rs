//! Per-route bookkeeping around the counted handlers: hits, in-flight, the request log.
//!
//! The in-flight mark lasts until the response body is finished, not just until the handler
//! returns, so a stream that is still sending counts as busy (what concurrency tests need).

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::Response;
use futures_util::StreamExt;

use crate::state::{MockState, RecordedRequest};
use crate::{error, slots};

/// Largest request body the mock reads; far above anything a test or benchmark sends.
pub(crate) const BODY_LIMIT: usize = 64 * 1024 * 1024;

/// Middleware for one counted route; `route` is the label its hits are counted under.
pub(crate) async fn track(
    State((state, route)): State<(MockState, &'static str)>,
    request: Request,
    next: Next,
) -> Response {
    counted(state, route, request, next).await
}

/// Names the counted route of a request from its method and path.
pub(crate) type RouteOf = fn(&Method, &str) -> Option<&'static str>;

/// Middleware for a path pattern that serves several counted routes (Gemini's
/// `models/{model}:{action}`, the shared `/v1/models/...` wildcard): `route_of` names the route;
/// requests it does not recognise are neither counted nor recorded.
pub(crate) async fn track_by(
    State((state, route_of)): State<(MockState, RouteOf)>,
    request: Request,
    next: Next,
) -> Response {
    match route_of(request.method(), request.uri().path()) {
        Some(route) => counted(state, route, request, next).await,
        None => next.run(request).await,
    }
}

async fn counted(state: MockState, route: &'static str, request: Request, next: Next) -> Response {
    let in_flight = state.enter(route);
    let (parts, body) = request.into_parts();
    // The capacity model: work (a POST) waits for a slot and its service time first.
    let slot = match state.active_capacity() {
        Some(active) if parts.method == Method::POST => match slots::take(&state, active).await {
            Ok(slot) => Some(slot),
            Err(refused) => return refused,
        },
        _ => None,
    };
    let bytes = match axum::body::to_bytes(body, BODY_LIMIT).await {
        Ok(bytes) => bytes,
        Err(e) => return error::invalid_request(format!("could not read request body: {e}")),
    };
    state.record(RecordedRequest {
        route: route.to_owned(),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_owned(), value)
            })
            .collect(),
        body: String::from_utf8_lossy(&bytes).into_owned(),
    });

    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let streaming = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| {
            v.as_bytes().starts_with(b"text/event-stream")
                || v.as_bytes()
                    .starts_with(b"application/vnd.amazon.eventstream")
        });
    let response = match slot {
        Some(slot) => slots::hold(&state, slot, response, streaming).await,
        None => response,
    };
    if !streaming {
        return response;
    }
    // Keep the in-flight mark alive inside the body; it drops when the body ends or the client
    // goes away. Only streams are wrapped, so other bodies keep their exact length.
    let (parts, body) = response.into_parts();
    let body = body.into_data_stream().map(move |frame| {
        let _still_in_flight = &in_flight;
        frame
    });
    Response::from_parts(parts, Body::from_stream(body))
}
