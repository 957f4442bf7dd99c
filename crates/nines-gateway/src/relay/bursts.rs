//! Reading an upstream stream in bursts, so that the client gets one write per burst of events
//! instead of one per event.
//!
//! Why: hyper's client hands a response body over one HTTP chunk at a time. Its connection task
//! decodes the next chunk only after the previous one was taken, so even when a whole stream
//! arrived in a single read, every poll of the body finds at most one chunk ready. Relaying each
//! one as it comes makes the server write (and the client read) once per SSE event: on a fast
//! upstream that was 15 `writev` calls per streamed answer and most of the relay's CPU.
//!
//! After a chunk arrives, [`Bursts::gather`] takes whatever else is ready, gives the connection
//! task turns (`yield_now`) to decode what it has already read, and stops after [`QUIET_TURNS`]
//! turns in a row that bring nothing new, or at [`BURST_LIMIT`]. It never waits on the network:
//! with a real provider, whose events are milliseconds apart, a burst is one event and the cost
//! is two scheduler turns.

use crate::providers::ByteStream;
use bytes::{Bytes, BytesMut};
use futures_util::{FutureExt, StreamExt};
use std::time::Duration;
use tokio::time::{Instant, timeout_at};

/// A burst stops growing past this many bytes.
pub const BURST_LIMIT: usize = 64 * 1024;

/// Turns in a row that bring nothing new before a burst is sent: hyper's client needs two to
/// hand over a chunk it already read (measured: with one, no burst ever grew).
const QUIET_TURNS: u32 = 2;

/// What the upstream body yields: a chunk, a transport error, or its end (`None`).
pub type Item = Option<Result<Bytes, crate::providers::BodyError>>;

/// An upstream body read chunk by chunk ([`Bursts::next`]) or burst by burst ([`Bursts::gather`]).
pub struct Bursts {
    rest: ByteStream,
    /// The end or error found while gathering, returned by the next call to `next`.
    stashed: Option<Item>,
}

impl Bursts {
    pub fn new(rest: ByteStream) -> Bursts {
        Bursts {
            rest,
            stashed: None,
        }
    }

    /// Waits for the next chunk (or the end, or an error). Cancel-safe: dropping the future
    /// loses nothing, so callers may put a timeout on it.
    pub async fn next(&mut self) -> Item {
        match self.stashed.take() {
            Some(item) => item,
            None => self.rest.next().await,
        }
    }

    /// `first` plus every chunk that is already on its way behind it. Never waits for the
    /// network; an end or error met on the way is kept for the next call to [`Bursts::next`].
    pub async fn gather(&mut self, first: Bytes) -> Bytes {
        // Copied into a buffer of its own only when a second chunk joins it.
        let mut burst: Option<BytesMut> = None;
        let mut quiet_turns = 0;
        let mut open = self.take_ready(&mut burst, &first);
        while open && burst_len(&burst, &first) < BURST_LIMIT && quiet_turns < QUIET_TURNS {
            let before = burst_len(&burst, &first);
            // One turn for the connection task to hand over a chunk it already holds.
            tokio::task::yield_now().await;
            open = self.take_ready(&mut burst, &first);
            quiet_turns = if burst_len(&burst, &first) == before {
                quiet_turns + 1
            } else {
                0
            };
        }
        burst.map_or(first, BytesMut::freeze)
    }

    /// Appends the chunks that are ready now behind `first`, up to [`BURST_LIMIT`]; false when
    /// the body ended or failed (kept for [`Bursts::next`]).
    fn take_ready(&mut self, burst: &mut Option<BytesMut>, first: &Bytes) -> bool {
        while burst_len(burst, first) < BURST_LIMIT {
            match self.rest.next().now_or_never() {
                Some(Some(Ok(more))) => burst
                    .get_or_insert_with(|| BytesMut::from(&first[..]))
                    .extend_from_slice(&more),
                Some(item) => {
                    self.stashed = Some(item);
                    return false;
                }
                None => break,
            }
        }
        true
    }
}

/// How waiting for the next piece of an upstream stream went ([`Bursts::read`]).
pub enum Read {
    /// A burst of one or more chunks.
    Burst(Bytes),
    /// The upstream closed the body.
    End,
    /// The stream broke, stalled past the idle timeout or ran into the deadline: why, in the
    /// words every relay reports.
    Broken(String),
}

impl Bursts {
    /// The next burst, waiting at most `idle` and never past `deadline`. Cancel-safe, like
    /// [`Bursts::next`], so callers may race it against their shutdown.
    pub async fn read(&mut self, idle: Duration, deadline: Instant) -> Read {
        let wait_until = (Instant::now() + idle).min(deadline);
        match timeout_at(wait_until, self.next()).await {
            Ok(Some(Ok(chunk))) => Read::Burst(self.gather(chunk).await),
            Ok(Some(Err(e))) => Read::Broken(format!(
                "upstream stream broke: {}",
                crate::providers::describe(&*e)
            )),
            Ok(None) => Read::End,
            Err(_) if wait_until >= deadline => {
                Read::Broken("request deadline reached while streaming".to_owned())
            }
            Err(_) => Read::Broken(format!(
                "upstream stream stalled for more than {}",
                humantime::format_duration(idle)
            )),
        }
    }
}

/// The burst so far: `first` alone until a second chunk made a buffer of it.
fn burst_len(burst: &Option<BytesMut>, first: &Bytes) -> usize {
    burst.as_ref().map_or(first.len(), BytesMut::len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;

    fn chunks(parts: &[&'static str]) -> ByteStream {
        stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p.as_bytes())))
                .collect::<Vec<_>>(),
        )
        .boxed()
    }

    #[tokio::test]
    async fn gathers_every_ready_chunk_and_keeps_the_end_for_next() {
        let mut b = Bursts::new(chunks(&["a", "b", "c"]));
        let first = b.next().await.expect("a chunk").expect("ok");
        assert_eq!(b.gather(first).await, Bytes::from_static(b"abc"));
        assert!(b.next().await.is_none(), "the end was stashed, not lost");
    }

    /// A producer task that sends one chunk at a time into a channel of capacity one, like
    /// hyper's connection task: gathering must give it turns and collect the whole burst.
    #[tokio::test(flavor = "current_thread")]
    async fn gives_a_one_chunk_producer_turns() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, crate::providers::BodyError>>(1);
        tokio::spawn(async move {
            for part in ["1", "2", "3", "4", "5"] {
                if tx
                    .send(Ok(Bytes::from_static(part.as_bytes())))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        let mut b = Bursts::new(tokio_stream_from(rx));
        let first = b.next().await.expect("a chunk").expect("ok");
        assert_eq!(b.gather(first).await, Bytes::from_static(b"12345"));
        assert!(b.next().await.is_none());
    }

    /// A chunk that is not there yet is not waited for.
    #[tokio::test(start_paused = true)]
    async fn does_not_wait_for_chunks_still_on_the_network() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, crate::providers::BodyError>>(1);
        tokio::spawn(async move {
            let _ = tx.send(Ok(Bytes::from_static(b"now"))).await;
            tokio::time::sleep(Duration::from_secs(5)).await;
            let _ = tx.send(Ok(Bytes::from_static(b"later"))).await;
        });
        let mut b = Bursts::new(tokio_stream_from(rx));
        let first = b.next().await.expect("a chunk").expect("ok");
        let started = tokio::time::Instant::now();
        assert_eq!(b.gather(first).await, Bytes::from_static(b"now"));
        assert_eq!(started.elapsed(), Duration::ZERO);
        let later = b.next().await.expect("a chunk").expect("ok");
        assert_eq!(later, Bytes::from_static(b"later"));
    }

    #[tokio::test]
    async fn stops_growing_at_the_limit() {
        let big: &'static str = Box::leak("x".repeat(BURST_LIMIT / 2 + 1).into_boxed_str());
        let mut b = Bursts::new(chunks(&[big, big, big, "tail"]));
        let first = b.next().await.expect("a chunk").expect("ok");
        assert_eq!(b.gather(first).await.len(), 2 * big.len());
        let next = b.next().await.expect("a chunk").expect("ok");
        assert_eq!(b.gather(next).await.len(), big.len() + 4);
    }

    fn tokio_stream_from(
        mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, crate::providers::BodyError>>,
    ) -> ByteStream {
        stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
    }
}
