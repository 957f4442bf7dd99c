//! The HTTP mechanics every provider shares: send with a first-byte deadline, keep a bounded
//! error body, read a streamed response up to its first complete SSE event (the stream has proven
//! itself; what is read before it is bounded by the SSE decoder's event limit, 8 MiB, past which
//! the answer is malformed), read and check a full JSON body. Dialect modules only build the
//! request.

use super::http_client::{self, HttpClient, SendError};
use super::{Outcome, Reply, ReplyBody, Transport};
use crate::config::Timeouts;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use nines_protocol::sse::{self, SseDecoder};
use tokio::time::{Instant, timeout_at};

/// Largest error body kept from an upstream (it is relayed to the client or summarised).
pub(super) const MAX_ERROR_BODY: usize = 64 * 1024;
/// The most of a whole (not streamed) answer read into memory. The largest legitimate ones known
/// are embeddings of a full batch (2,048 inputs × 3,072 dimensions as JSON floats, about 90 MB);
/// past this the answer is malformed and the attempt fails over, instead of the gateway holding
/// whatever an upstream sends (streams have their own bound per event, `sse::DEFAULT_EVENT_LIMIT`).
pub const MAX_REPLY_BODY: usize = 128 << 20;

/// How a streamed answer is framed on the wire.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// `text/event-stream`: read as it comes.
    Sse,
    /// AWS event-stream (`application/vnd.amazon.eventstream`, Bedrock's ConverseStream): each
    /// message is checked and handed on as one SSE event (`event_stream::as_sse`), so everything
    /// after this point reads SSE whatever the upstream.
    AwsEventStream,
}

/// Sends `request` and reports the outcome: for `stream`, after the first complete SSE event;
/// otherwise after the whole body, which must be JSON.
pub(super) async fn exchange(
    client: &HttpClient,
    request: reqwest::RequestBuilder,
    timeouts: &Timeouts,
    stream: bool,
    deadline: Instant,
) -> Outcome {
    exchange_framed(client, request, timeouts, stream, deadline, Framing::Sse).await
}

/// [`exchange`] for a stream framed as `framing`.
pub(super) async fn exchange_framed(
    client: &HttpClient,
    request: reqwest::RequestBuilder,
    timeouts: &Timeouts,
    stream: bool,
    deadline: Instant,
    framing: Framing,
) -> Outcome {
    let started = Instant::now();
    let first_byte_deadline = (started + timeouts.first_byte).min(deadline);
    let mut response = match timeout_at(first_byte_deadline, client.send(request)).await {
        Err(_) => {
            return Outcome::Transport(deadline_or(
                first_byte_deadline,
                deadline,
                Transport::FirstByteTimeout,
            ));
        }
        Ok(Err(e)) => return Outcome::Transport(send_error(&e)),
        Ok(Ok(r)) => r,
    };
    let status = response.status();
    let headers = std::mem::take(response.headers_mut());

    if !status.is_success() {
        let body = read_bounded(
            response,
            first_byte_deadline.max(Instant::now()),
            MAX_ERROR_BODY,
        )
        .await;
        return Outcome::Status {
            status,
            headers,
            body,
        };
    }
    if stream && framing == Framing::AwsEventStream && is_aws_event_stream(&headers) {
        let mut headers = headers;
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/event-stream"),
        );
        let events = super::event_stream::as_sse(http_client::chunks(response));
        return first_event_in(events, started, status, headers, timeouts, deadline).await;
    }
    if stream && is_event_stream(&headers) {
        return first_event(response, started, status, headers, timeouts, deadline).await;
    }
    match timeout_at(deadline, http_client::bytes(response, MAX_REPLY_BODY)).await {
        Err(_) => Outcome::Transport(Transport::Deadline),
        Ok(Err(e)) => Outcome::Transport(reply_error(&*e, MAX_REPLY_BODY)),
        Ok(Ok(body)) => {
            if serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_err() {
                return Outcome::Transport(Transport::Malformed(format!(
                    "response body is not JSON ({} bytes)",
                    body.len()
                )));
            }
            Outcome::Reply(Reply {
                status,
                headers,
                body: ReplyBody::Full(body),
                ttfb: started.elapsed(),
            })
        }
    }
}

/// A cheap health call: any 2xx within `timeout` proves the key slot works.
pub(super) async fn probe(
    client: &HttpClient,
    request: reqwest::RequestBuilder,
    timeout: std::time::Duration,
) -> Outcome {
    let started = Instant::now();
    let deadline = started + timeout;
    let mut response = match timeout_at(deadline, client.send(request)).await {
        Err(_) => return Outcome::Transport(Transport::FirstByteTimeout),
        Ok(Err(e)) => return Outcome::Transport(send_error(&e)),
        Ok(Ok(r)) => r,
    };
    let status = response.status();
    let headers = std::mem::take(response.headers_mut());
    let body = read_bounded(response, deadline, MAX_ERROR_BODY).await;
    if !status.is_success() {
        return Outcome::Status {
            status,
            headers,
            body,
        };
    }
    Outcome::Reply(Reply {
        status,
        headers,
        body: ReplyBody::Full(body),
        ttfb: started.elapsed(),
    })
}

fn is_event_stream(headers: &http::HeaderMap) -> bool {
    content_type_is(headers, "text/event-stream")
}

fn is_aws_event_stream(headers: &http::HeaderMap) -> bool {
    content_type_is(headers, "application/vnd.amazon.eventstream")
}

fn content_type_is(headers: &http::HeaderMap, media_type: &str) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(media_type))
}

pub(super) async fn first_event(
    response: http_client::Response,
    started: Instant,
    status: http::StatusCode,
    headers: http::HeaderMap,
    timeouts: &Timeouts,
    deadline: Instant,
) -> Outcome {
    first_event_in(
        http_client::chunks(response),
        started,
        status,
        headers,
        timeouts,
        deadline,
    )
    .await
}

/// [`first_event`] over a body already turned into SSE bytes.
async fn first_event_in(
    mut stream: super::ByteStream,
    started: Instant,
    status: http::StatusCode,
    headers: http::HeaderMap,
    timeouts: &Timeouts,
    deadline: Instant,
) -> Outcome {
    let mut head = BytesMut::new();
    let mut decoder = SseDecoder::new();
    let mut events = Vec::new();
    let mut ttfb = None;
    let first_byte_deadline = (started + timeouts.first_byte).min(deadline);
    loop {
        let wait_until = if ttfb.is_none() {
            first_byte_deadline
        } else {
            (Instant::now() + timeouts.idle).min(deadline)
        };
        let chunk = match timeout_at(wait_until, stream.next()).await {
            Err(_) if ttfb.is_none() => {
                return Outcome::Transport(deadline_or(
                    first_byte_deadline,
                    deadline,
                    Transport::FirstByteTimeout,
                ));
            }
            Err(_) => {
                return Outcome::Transport(deadline_or(
                    wait_until,
                    deadline,
                    Transport::IdleTimeout,
                ));
            }
            Ok(None) => {
                decoder.finish(&mut events);
                if events.is_empty() {
                    return Outcome::Transport(Transport::Broken(
                        "stream ended before any event".into(),
                    ));
                }
                break;
            }
            Ok(Some(Err(e))) => return Outcome::Transport(body_error(&*e)),
            Ok(Some(Ok(chunk))) => chunk,
        };
        ttfb.get_or_insert_with(|| started.elapsed());
        // Before the commit point an event past the decoder's limit (or as many bytes of
        // comments and blank events before the first one) is a malformed answer: the attempt
        // fails and another deployment is tried, with nothing held.
        if let Err(overflow) = decoder.feed(&chunk, &mut events) {
            return Outcome::Transport(Transport::Malformed(overflow.to_string()));
        }
        head.extend_from_slice(&chunk);
        if head.len() > decoder.limit() && events.is_empty() {
            return Outcome::Transport(Transport::Malformed(format!(
                "upstream sent {} bytes without an event",
                head.len()
            )));
        }
        if !events.is_empty() {
            break;
        }
    }
    if let Some(error) = events
        .iter()
        .find(|e| is_error_event(&e.data, e.event.as_deref()))
    {
        return Outcome::StreamError {
            data: error.data.clone(),
        };
    }
    Outcome::Reply(Reply {
        status,
        headers,
        body: ReplyBody::Stream {
            head: head.freeze(),
            rest: stream,
        },
        ttfb: ttfb.unwrap_or_else(|| started.elapsed()),
    })
}

/// An in-band error: an `error` event or a data payload whose top-level object has `error`.
fn is_error_event(data: &str, event: Option<&str>) -> bool {
    if event == Some("error") {
        return true;
    }
    #[derive(serde::Deserialize)]
    struct Probe<'a> {
        #[serde(borrow, default)]
        error: Option<&'a serde_json::value::RawValue>,
    }
    data.starts_with('{')
        && serde_json::from_str::<Probe<'_>>(data).is_ok_and(|p| p.error.is_some())
}

/// When a timeout fired at the request's overall deadline, report the deadline instead.
fn deadline_or(fired_at: Instant, deadline: Instant, otherwise: Transport) -> Transport {
    if fired_at >= deadline {
        Transport::Deadline
    } else {
        otherwise
    }
}

async fn read_bounded(response: http_client::Response, deadline: Instant, limit: usize) -> Bytes {
    let mut out = BytesMut::new();
    let mut stream = http_client::chunks(response);
    while let Ok(Some(Ok(chunk))) = timeout_at(deadline, stream.next()).await {
        let room = limit.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= limit {
            break;
        }
    }
    out.freeze()
}

/// Maps a failed send to a transport failure. The message never contains credentials: the
/// errors carry the cause, and no key lives in a URL.
pub(super) fn send_error(e: &SendError) -> Transport {
    match e {
        // The request never left (a header value it cannot carry, say).
        SendError::Build(e) => Transport::Broken(describe(e)),
        SendError::Http(e) if e.is_connect() => {
            if timed_out(e) {
                Transport::ConnectTimeout
            } else {
                Transport::Connect(describe(e))
            }
        }
        SendError::Http(e) => Transport::Broken(describe(e)),
        SendError::Proxied(e) if e.is_connect() && e.is_timeout() => Transport::ConnectTimeout,
        SendError::Proxied(e) if e.is_connect() => Transport::Connect(describe(e)),
        SendError::Proxied(e) if e.is_timeout() => Transport::FirstByteTimeout,
        SendError::Proxied(e) => Transport::Broken(describe(e)),
    }
}

/// What reading a whole answer of at most `limit` bytes failed with.
fn reply_error(e: &(dyn std::error::Error + 'static), limit: usize) -> Transport {
    if sources(e).any(|s| s.is::<http_client::TooLong>()) {
        Transport::Malformed(format!(
            "upstream answer over {}",
            sse::readable_size(limit)
        ))
    } else {
        body_error(e)
    }
}

/// A body that failed while it was being read: the connection broke, or what came was not
/// HTTP.
fn body_error(e: &(dyn std::error::Error + 'static)) -> Transport {
    let parse = sources(e).any(|s| {
        s.downcast_ref::<hyper::Error>()
            .is_some_and(|h| h.is_parse())
            || s.is::<super::event_stream::MalformedFrame>()
    });
    if parse {
        Transport::Malformed(describe(e))
    } else {
        Transport::Broken(describe(e))
    }
}

fn sources<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e), |e| e.source())
}

fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    sources(e).any(|s| {
        s.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
    })
}

/// A secret-free description of an HTTP error for logs and client-facing messages: its root
/// cause.
pub(crate) fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    sources(e)
        .last()
        .map(ToString::to_string)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
