//! The answer to a connection over the cap: a 503 as soon as the request head has arrived (an
//! HTTP client treats an answer before its request as a broken connection), without parsing it,
//! and closed. A client gets a fast, retryable answer (its SDK retries after `Retry-After`)
//! instead of waiting unanswered in the kernel's queue. Logged at most every [`LOG_EVERY`], with
//! how many were refused in between.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

const RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
retry-after: 1\r\n\
x-should-retry: true\r\n\
connection: close\r\n\
content-length: 146\r\n\
\r\n\
{\"error\":{\"message\":\"The gateway has too many open connections; retry shortly.\",\"type\":\"server_error\",\"param\":null,\"code\":\"too_many_connections\"}}";

/// How long a refused connection's request head is waited for; the 503 goes out then anyway.
const HEAD_WAIT: Duration = Duration::from_millis(500);

/// How long a refused connection is kept, after its 503, for the client to read it.
const LINGER: Duration = Duration::from_millis(500);

/// The most of a request head read before answering (the rest is not needed).
const HEAD_MAX: usize = 16 * 1024;

/// Refusals being written at once, beyond which a connection is simply closed (each holds a
/// descriptor while it lingers).
const MAX_LINGERING: usize = 256;

/// Least time between two log lines about the same condition.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

static LINGERING: AtomicUsize = AtomicUsize::new(0);

/// Answers `tcp` with the 503 (on a task of its own) and closes it.
pub(super) fn refuse(mut tcp: TcpStream) {
    if LINGERING.fetch_add(1, Ordering::AcqRel) >= MAX_LINGERING {
        LINGERING.fetch_sub(1, Ordering::AcqRel);
        return;
    }
    tokio::spawn(async move {
        let mut head = Vec::with_capacity(1024);
        let _ = tokio::time::timeout(HEAD_WAIT, async {
            let mut buf = [0u8; 4096];
            while head.len() < HEAD_MAX && !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match tcp.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        let _ = tokio::time::timeout(LINGER, async {
            tcp.write_all(RESPONSE).await?;
            tcp.shutdown().await?;
            // Read what the client sends until it closes: closing with unread data would reset
            // the connection, and the client could lose the 503 before reading it.
            let mut discard = [0u8; 4096];
            while tcp.read(&mut discard).await? > 0 {}
            Ok::<_, std::io::Error>(())
        })
        .await;
        LINGERING.fetch_sub(1, Ordering::AcqRel);
    });
}

/// A warning logged at most every [`LOG_EVERY`], saying how many times it happened since.
#[derive(Default)]
pub(super) struct Throttled {
    last: Mutex<Option<(Instant, u64)>>,
}

impl Throttled {
    /// Counts one occurrence; `Some(n)` (occurrences since the last line) when a line is due.
    pub(super) fn due(&self) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match &mut *last {
            Some((at, count)) if now.duration_since(*at) < LOG_EVERY => {
                *count += 1;
                None
            }
            Some((at, count)) => {
                let n = *count + 1;
                *at = now;
                *count = 0;
                Some(n)
            }
            None => {
                *last = Some((now, 0));
                Some(1)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{LOG_EVERY, RESPONSE, Throttled};

    #[test]
    fn the_canned_response_has_the_right_length() {
        let text = std::str::from_utf8(RESPONSE).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{}",
            body.len()
        );
        serde_json::from_str::<serde_json::Value>(body).unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttled_warning_counts_what_it_did_not_say() {
        let t = Throttled::default();
        assert_eq!(t.due(), Some(1));
        assert_eq!(t.due(), None);
        assert_eq!(t.due(), None);
        tokio::time::advance(LOG_EVERY).await;
        assert_eq!(t.due(), Some(3));
        assert_eq!(t.due(), None);
    }
}
