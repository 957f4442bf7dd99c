//! One request and what it measured: its latency to the last byte, its time to first byte and to
//! first token, its output tokens, the attempts and deployment the gateway reported, and, when it
//! failed, the class of its failure.

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::mix::Planned;

/// Why a request did not succeed, as a client sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorClass {
    /// No connection could be made.
    Connect,
    /// The client's timeout ran out.
    Timeout,
    /// 429: a limit (the gateway's, or the upstream's relayed).
    RateLimited,
    /// Another 4xx: the request itself.
    Client(u16),
    /// A 5xx: the gateway (or the server) could not answer.
    Server(u16),
    /// The connection broke after the answer began.
    Broken,
    /// A stream that ended with an error event, or without its end.
    StreamError,
    /// A 2xx whose body was not what an OpenAI-compatible server sends.
    Malformed,
    /// Not sent: the open loop's client already had `--max-in-flight` requests open.
    NotSent,
}

impl ErrorClass {
    /// A short label for tables and JSON.
    pub fn label(self) -> String {
        match self {
            ErrorClass::Connect => "connect".into(),
            ErrorClass::Timeout => "timeout".into(),
            ErrorClass::RateLimited => "429 rate limited".into(),
            ErrorClass::Client(status) => format!("{status} client error"),
            ErrorClass::Server(status) => format!("{status} server error"),
            ErrorClass::Broken => "broken connection".into(),
            ErrorClass::StreamError => "stream error".into(),
            ErrorClass::Malformed => "malformed answer".into(),
            ErrorClass::NotSent => "not sent (client at --max-in-flight)".into(),
        }
    }
}

/// What one request measured.
#[derive(Clone, Debug)]
pub struct Sample {
    pub stream: bool,
    /// To the last byte of the answer (or to the failure).
    pub latency: Duration,
    /// To the response head and first body bytes.
    pub ttfb: Option<Duration>,
    /// To the first generated token: a stream's first content, a whole answer's arrival.
    pub ttft: Option<Duration>,
    pub output_tokens: u64,
    /// `x-nines-attempts`, when the server is nines.
    pub attempts: Option<u32>,
    /// `x-nines-deployment`, when the server is nines.
    pub deployment: Option<String>,
    pub error: Option<ErrorClass>,
}

impl Sample {
    pub fn ok(&self) -> bool {
        self.error.is_none()
    }
}

/// Sends `planned` and reads the whole answer.
pub async fn send(
    client: &reqwest::Client,
    url: &str,
    key: Option<&str>,
    planned: Planned,
) -> Sample {
    let started = Instant::now();
    let mut sample = Sample {
        stream: planned.stream,
        latency: Duration::ZERO,
        ttfb: None,
        ttft: None,
        output_tokens: 0,
        attempts: None,
        deployment: None,
        error: None,
    };
    let mut request = client
        .post(url)
        .header("content-type", "application/json")
        .body(planned.body);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let mut response = match request.send().await {
        Ok(response) => response,
        Err(e) => {
            sample.error = Some(transport_class(&e));
            sample.latency = started.elapsed();
            return sample;
        }
    };
    let headers = response.headers();
    sample.attempts = header(headers, "x-nines-attempts").and_then(|v| v.parse().ok());
    sample.deployment = header(headers, "x-nines-deployment").map(str::to_owned);
    let status = response.status().as_u16();
    let is_stream =
        header(headers, "content-type").is_some_and(|v| v.starts_with("text/event-stream"));

    let mut reader = if is_stream {
        Some(SseTally::default())
    } else {
        None
    };
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let now = started.elapsed();
                sample.ttfb.get_or_insert(now);
                if let Some(tally) = &mut reader {
                    if tally.feed(&chunk) && sample.ttft.is_none() {
                        sample.ttft = Some(now);
                    }
                } else {
                    body.extend_from_slice(&chunk);
                }
            }
            Ok(None) => break,
            Err(e) => {
                sample.error = Some(if e.is_timeout() {
                    ErrorClass::Timeout
                } else {
                    ErrorClass::Broken
                });
                break;
            }
        }
    }
    sample.latency = started.elapsed();
    if sample.error.is_some() {
        return sample;
    }
    sample.error = match status {
        200..=299 => None,
        429 => Some(ErrorClass::RateLimited),
        400..=499 => Some(ErrorClass::Client(status)),
        _ => Some(ErrorClass::Server(status)),
    };
    if sample.error.is_some() {
        return sample;
    }
    match reader {
        Some(tally) => {
            sample.output_tokens = tally.tokens();
            if tally.error || !tally.done {
                sample.error = Some(ErrorClass::StreamError);
            }
        }
        None => match serde_json::from_slice::<Value>(&body) {
            Ok(answer) => {
                sample.ttft = Some(sample.latency);
                sample.output_tokens = answer
                    .pointer("/usage/completion_tokens")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
            }
            Err(_) => sample.error = Some(ErrorClass::Malformed),
        },
    }
    sample
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn transport_class(e: &reqwest::Error) -> ErrorClass {
    if e.is_timeout() {
        ErrorClass::Timeout
    } else if e.is_connect() {
        ErrorClass::Connect
    } else {
        ErrorClass::Broken
    }
}

/// Reads an OpenAI-style SSE stream as it arrives: content chunks, the usage chunk, an error
/// event, the `[DONE]` terminator.
#[derive(Default)]
struct SseTally {
    pending: Vec<u8>,
    content_chunks: u64,
    usage_tokens: Option<u64>,
    error: bool,
    done: bool,
}

impl SseTally {
    /// Takes the next bytes; `true` when they completed an event that carried the first content.
    fn feed(&mut self, bytes: &[u8]) -> bool {
        let before = self.content_chunks;
        self.pending.extend_from_slice(bytes);
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let Some(data) = line.trim_end().strip_prefix("data:") else {
                continue;
            };
            self.event(data.trim());
        }
        before == 0 && self.content_chunks > 0
    }

    fn event(&mut self, data: &str) {
        if data == "[DONE]" {
            self.done = true;
            return;
        }
        let Ok(event) = serde_json::from_str::<Value>(data) else {
            self.error = true;
            return;
        };
        if event.get("error").is_some() {
            self.error = true;
        }
        if let Some(tokens) = event
            .pointer("/usage/completion_tokens")
            .and_then(Value::as_u64)
        {
            self.usage_tokens = Some(tokens);
        }
        let has_content = event
            .get("choices")
            .and_then(Value::as_array)
            .is_some_and(|choices| {
                choices.iter().any(|c| {
                    c.pointer("/delta/content")
                        .and_then(Value::as_str)
                        .is_some_and(|t| !t.is_empty())
                        || c.pointer("/delta/tool_calls").is_some()
                })
            });
        if has_content {
            self.content_chunks += 1;
        }
    }

    /// The usage chunk's count, else one token per content chunk.
    fn tokens(&self) -> u64 {
        self.usage_tokens.unwrap_or(self.content_chunks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tally_reads_split_events() {
        let mut tally = SseTally::default();
        assert!(!tally.feed(
            b"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n"
        ));
        assert!(!tally.feed(b"data: {\"choices\":[{\"delta\":{\"cont"));
        assert!(tally.feed(
            b"ent\":\"Hi\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\" there\"}}]}\n\n"
        ));
        tally.feed(
            b"data: {\"choices\":[],\"usage\":{\"completion_tokens\":2}}\n\ndata: [DONE]\n\n",
        );
        assert_eq!(tally.tokens(), 2);
        assert!(tally.done && !tally.error);

        let mut broken = SseTally::default();
        broken.feed(b"data: {\"error\":{\"message\":\"x\"}}\n\n");
        assert!(broken.error && !broken.done);
    }
}
