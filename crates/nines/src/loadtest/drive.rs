//! The load's shape over time: a closed loop (N clients, each sending its next request when its
//! last one ended) or an open loop (requests sent on a schedule at a rate, whether or not earlier
//! ones ended, as independent users do), each with a linear ramp from nothing to full load.
//!
//! Every run is bounded: no request starts after `duration` (or after `max_requests`), and the
//! ones in flight then are waited for (their own timeout bounds them).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::exchange::{self, ErrorClass, Sample};
use super::mix::Mix;
use super::progress::Live;

/// Where requests go.
pub struct Target {
    pub client: reqwest::Client,
    pub url: String,
    pub key: Option<String>,
}

/// How load is offered.
#[derive(Clone, Copy, Debug)]
pub enum Shape {
    /// This many clients, each with one request at a time.
    Closed { concurrency: u32 },
    /// This many requests a second, with at most `max_in_flight` open at once (a request due
    /// when that many are open is not sent, and counts as an error of the client's).
    Open { rate: f64, max_in_flight: u32 },
}

/// A bounded run.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    pub shape: Shape,
    pub duration: Duration,
    /// From no load to full load over this long (within `duration`).
    pub ramp: Duration,
    pub max_requests: Option<u64>,
}

/// Runs `load` against `target`; returns every sample and the wall time until the last ended.
pub async fn run(
    target: Arc<Target>,
    mix: Arc<Mix>,
    load: Load,
    live: Arc<Live>,
) -> (Vec<Sample>, Duration) {
    let started = Instant::now();
    let samples = Arc::new(Mutex::new(Vec::new()));
    let seq = Arc::new(AtomicU64::new(0));
    let take_seq = {
        let seq = Arc::clone(&seq);
        move || {
            let n = seq.fetch_add(1, Relaxed);
            load.max_requests.is_none_or(|max| n < max).then_some(n)
        }
    };
    let deadline = started + load.duration;
    let record = {
        let samples = Arc::clone(&samples);
        let live = Arc::clone(&live);
        move |sample: Sample| {
            live.done.fetch_add(1, Relaxed);
            if !sample.ok() {
                live.failed.fetch_add(1, Relaxed);
            }
            samples
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(sample);
        }
    };

    let mut tasks = tokio::task::JoinSet::new();
    match load.shape {
        Shape::Closed { concurrency } => {
            let concurrency = concurrency.max(1);
            for worker in 0..concurrency {
                let (target, mix, live) =
                    (Arc::clone(&target), Arc::clone(&mix), Arc::clone(&live));
                let (take_seq, record) = (take_seq.clone(), record.clone());
                let delay = load
                    .ramp
                    .checked_mul(worker)
                    .map_or(load.ramp, |d| d / concurrency);
                tasks.spawn(async move {
                    tokio::time::sleep_until(started + delay).await;
                    while Instant::now() < deadline {
                        let Some(n) = take_seq() else { break };
                        live.in_flight.fetch_add(1, Relaxed);
                        let sample = exchange::send(
                            &target.client,
                            &target.url,
                            target.key.as_deref(),
                            mix.request(n),
                        )
                        .await;
                        live.in_flight.fetch_sub(1, Relaxed);
                        // A refused connection answers at once: do not spin on it.
                        if sample.error == Some(ErrorClass::Connect) {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        record(sample);
                    }
                });
            }
        }
        Shape::Open {
            rate,
            max_in_flight,
        } => {
            let slots = Arc::new(Semaphore::new(max_in_flight.max(1) as usize));
            let mut k: u64 = 0;
            while let Some(due) = open_schedule(k, rate, load.ramp) {
                if due >= load.duration {
                    break;
                }
                k += 1;
                let Some(n) = take_seq() else { break };
                tokio::time::sleep_until(started + due).await;
                let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                    record(not_sent());
                    continue;
                };
                let (target, mix, live, record) = (
                    Arc::clone(&target),
                    Arc::clone(&mix),
                    Arc::clone(&live),
                    record.clone(),
                );
                tasks.spawn(async move {
                    live.in_flight.fetch_add(1, Relaxed);
                    let sample = exchange::send(
                        &target.client,
                        &target.url,
                        target.key.as_deref(),
                        mix.request(n),
                    )
                    .await;
                    live.in_flight.fetch_sub(1, Relaxed);
                    drop(permit);
                    record(sample);
                });
                // Reap finished tasks as we go, so a long run does not keep them all.
                while tasks.try_join_next().is_some() {}
            }
        }
    }
    while tasks.join_next().await.is_some() {}
    let wall = started.elapsed();
    let samples = std::mem::take(
        &mut *samples
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()),
    );
    (samples, wall)
}

/// A request the open loop could not send: the client already had `max_in_flight` open.
fn not_sent() -> Sample {
    Sample {
        stream: false,
        latency: Duration::ZERO,
        ttfb: None,
        ttft: None,
        output_tokens: 0,
        attempts: None,
        deployment: None,
        error: Some(ErrorClass::NotSent),
    }
}

/// When request `k` of an open loop is due: at `rate` a second, the rate growing linearly from 0
/// over `ramp` (so the first `rate · ramp / 2` requests are spread over the ramp).
pub fn open_schedule(k: u64, rate: f64, ramp: Duration) -> Option<Duration> {
    if !(rate.is_finite() && rate > 0.0) {
        return None;
    }
    let k = k as f64;
    let ramp_s = ramp.as_secs_f64();
    let in_ramp = rate * ramp_s / 2.0;
    let secs = if k < in_ramp {
        (2.0 * k * ramp_s / rate).sqrt()
    } else {
        ramp_s + (k - in_ramp) / rate
    };
    nines_gateway::clock::seconds(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_schedule_ramps_then_holds_the_rate() {
        let at = |k| {
            open_schedule(k, 10.0, Duration::ZERO)
                .unwrap()
                .as_secs_f64()
        };
        assert!((at(0) - 0.0).abs() < 1e-9);
        assert!((at(10) - 1.0).abs() < 1e-9);
        // A 2 s ramp to 10/s: 10 requests in the ramp, then one every 100 ms.
        let ramped = |k| {
            open_schedule(k, 10.0, Duration::from_secs(2))
                .unwrap()
                .as_secs_f64()
        };
        assert!((ramped(10) - 2.0).abs() < 1e-9);
        assert!((ramped(20) - 3.0).abs() < 1e-9);
        assert!(
            ramped(1) > 0.5,
            "the first requests are spread out: {}",
            ramped(1)
        );
        assert_eq!(open_schedule(0, 0.0, Duration::ZERO), None);
        assert_eq!(open_schedule(0, f64::NAN, Duration::ZERO), None);
    }
}
