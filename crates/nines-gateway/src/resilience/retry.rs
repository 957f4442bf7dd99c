//! When to try a key slot again: exponential backoff with full jitter, and the provider's own
//! `Retry-After` / `retry-after-ms` when it sent one.
//!
//! Policy: the same key slot is retried only when every other candidate was tried; the wait before
//! retry n is uniform in [0, min(cap, base·factorⁿ)] ("full jitter", which spreads synchronized
//! clients best), but never shorter than the provider's Retry-After, and a retry whose wait does
//! not fit in the request's remaining deadline is not made at all.

use crate::config::resilience::Backoff;
use http::HeaderMap;
use rand::Rng;
use std::time::{Duration, SystemTime};

/// The wait a provider's hint is honoured for: the hint, but at most `max`, so one
/// `Retry-After: 86400` cannot take a key slot out for a day. A clamp is logged; the attempt
/// trail keeps the hint's own value.
pub fn honoured(hint: Duration, max: Duration, key_slot: &str) -> Duration {
    if hint <= max {
        return hint;
    }
    tracing::warn!(
        key_slot,
        retry_after_s = hint.as_secs_f64(),
        honoured_s = max.as_secs_f64(),
        "Retry-After longer than resilience.max_retry_after: clamped"
    );
    max
}

/// The jittered wait before the `retry`-th retry (0-based).
pub fn backoff(policy: &Backoff, retry: u32, rng: &mut impl Rng) -> Duration {
    let ceiling = policy.base.as_secs_f64() * policy.factor.powi(retry.min(30) as i32);
    let ceiling = ceiling.min(policy.cap.as_secs_f64());
    crate::clock::seconds(rng.random_range(0.0..=ceiling)).unwrap_or(policy.cap)
}

/// The wait a provider asked for: `retry-after-ms` (milliseconds, may be fractional) first, then
/// `retry-after` as seconds or as an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(wait) = text("retry-after-ms")
        .and_then(|v| v.parse::<f64>().ok())
        .and_then(|ms| crate::clock::seconds(ms / 1000.0))
    {
        return Some(wait);
    }
    let value = text("retry-after")?;
    if let Ok(secs) = value.parse::<f64>() {
        return crate::clock::seconds(secs);
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(
        date.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn backoff_is_bounded_by_the_exponential_ceiling_and_cap() {
        let policy = Backoff::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for retry in 0..8 {
            let ceiling = (0.5 * 2f64.powi(retry as i32)).min(5.0);
            let mut max_seen: f64 = 0.0;
            for _ in 0..2000 {
                let d = backoff(&policy, retry, &mut rng).as_secs_f64();
                assert!(d <= ceiling + 1e-9, "retry {retry}: {d} > {ceiling}");
                max_seen = max_seen.max(d);
            }
            assert!(
                max_seen > ceiling * 0.9,
                "full jitter reaches near the ceiling"
            );
        }
    }

    #[test]
    fn parses_retry_after_forms() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", "1500".parse().unwrap());
        assert_eq!(
            retry_after(&h),
            Some(Duration::from_millis(1500)),
            "ms wins"
        );
        let mut h = HeaderMap::new();
        h.insert("retry-after", "0.25".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(250)));
        let future = SystemTime::now() + Duration::from_secs(120);
        h.insert(
            "retry-after",
            httpdate::fmt_http_date(future).parse().unwrap(),
        );
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(115) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        h.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }
}
