//! The in-process limiter: every bucket and spend counter behind one mutex, held for the few
//! hundred nanoseconds a check-and-reserve takes (never across an `.await`), so admission is
//! atomic across all levels at once. Time is `tokio::time`, so tests can pause it. Buckets that
//! have refilled to full and spend of past periods are swept once a minute (a full bucket is the
//! same as no bucket).

use super::window::{refill, time_to};
use super::{
    Admitted, BucketKey, Denied, Dim, Limiter, Plan, RateHeaders, Refusal, Reservation, Tripped,
    Window,
};
use crate::config::access::Level;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    level: f64,
    at: Instant,
    capacity: u64,
}

type SpendKey = (Level, Arc<str>, super::Period);

/// A multiply-rotate hash (FxHash's): several times cheaper than SipHash for these short keys.
/// Flooding is not a concern: keys are ids nines generated and model names from limits.
#[derive(Default, Clone, Copy)]
struct Fx(u64);

impl Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_u8(&mut self, n: u8) {
        self.write_u64(u64::from(n));
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<Fx>>;

struct State {
    buckets: FxMap<BucketKey, Bucket>,
    spend: FxMap<SpendKey, f64>,
    swept: Instant,
}

pub struct MemoryLimiter {
    state: Mutex<State>,
}

const SWEEP_EVERY: Duration = Duration::from_secs(60);

impl Default for MemoryLimiter {
    fn default() -> Self {
        MemoryLimiter::new()
    }
}

impl MemoryLimiter {
    pub fn new() -> MemoryLimiter {
        MemoryLimiter {
            state: Mutex::new(State {
                buckets: FxMap::default(),
                spend: FxMap::default(),
                swept: Instant::now(),
            }),
        }
    }

    /// Adds spend recorded before this process started (from the store), so a restart does not
    /// reset budgets.
    pub fn seed_spend(&self, level: Level, id: &str, period: super::Period, usd: f64) {
        if let Ok(mut s) = self.state.lock() {
            *s.spend.entry((level, Arc::from(id), period)).or_default() += usd;
        }
    }

    /// The synchronous check-and-reserve.
    pub fn try_admit(&self, plan: &Plan) -> Result<Admitted, Box<Denied>> {
        let now = Instant::now();
        let wall = SystemTime::now();
        let Ok(mut state) = self.state.lock() else {
            // A panic while holding the lock: admit rather than refuse everything forever.
            return Ok(Admitted {
                reservation: Reservation::default(),
                headers: RateHeaders::default(),
            });
        };
        if now.duration_since(state.swept) >= SWEEP_EVERY {
            sweep(&mut state, now, wall);
        }
        let mut headers = RateHeaders::default();
        let mut reservation = Reservation::default();
        // Budgets first: they only read.
        for s in &plan.spends {
            let spent = state
                .spend
                .get(&(s.level, Arc::clone(&s.id), s.period))
                .copied()
                .unwrap_or(0.0);
            if spent >= s.budget {
                return Err(Box::new(Denied {
                    level: s.level,
                    name: Arc::clone(&s.name),
                    model: None,
                    tripped: Tripped::Budget(s.period),
                    limit: s.budget,
                    requested: 0,
                    retry_after: s.period.remaining(wall),
                    retryable: false,
                    headers,
                }));
            }
        }
        // Refill, check and draw each bucket in turn; a bucket without room undoes the draws
        // made before it, all under the same lock, so nothing is drawn unless everything is.
        for (i, draw) in plan.draws.iter().enumerate() {
            let bucket = state.buckets.entry(draw.key.clone()).or_insert(Bucket {
                level: draw.capacity as f64,
                at: now,
                capacity: draw.capacity,
            });
            bucket.capacity = draw.capacity;
            bucket.level = refill(bucket.level, now.duration_since(bucket.at), draw.capacity);
            bucket.at = now;
            let cost = draw.cost as f64;
            if bucket.level < cost {
                let retryable = draw.cost <= draw.capacity;
                let retry_after = if retryable {
                    time_to(bucket.level, cost, draw.capacity)
                } else {
                    Duration::ZERO
                };
                let window = Window {
                    limit: draw.capacity,
                    remaining: bucket.level.max(0.0).floor() as u64,
                    reset: time_to(bucket.level, draw.capacity as f64, draw.capacity),
                };
                for earlier in &plan.draws[..i] {
                    if let Some(b) = state.buckets.get_mut(&earlier.key) {
                        b.level += earlier.cost as f64;
                    }
                }
                let mut headers = RateHeaders::default();
                headers.note(draw.key.dim, window);
                return Err(Box::new(Denied {
                    level: draw.key.level,
                    name: Arc::clone(&draw.name),
                    model: draw.key.model.clone(),
                    tripped: Tripped::Window(draw.key.dim),
                    limit: draw.capacity as f64,
                    requested: draw.cost,
                    retry_after,
                    retryable,
                    headers,
                }));
            }
            bucket.level -= cost;
            headers.note(
                draw.key.dim,
                Window {
                    limit: draw.capacity,
                    remaining: bucket.level.max(0.0).floor() as u64,
                    reset: time_to(bucket.level, draw.capacity as f64, draw.capacity),
                },
            );
            if draw.key.dim == Dim::Tokens {
                reservation.tokens.push((draw.key.clone(), draw.capacity));
                reservation.reserved = draw.cost;
            }
        }
        reservation.spends = plan
            .spends
            .iter()
            .map(|s| (s.level, Arc::clone(&s.id), s.period))
            .collect();
        if plan.spend_reserve > 0.0 {
            for key in &reservation.spends {
                *state.spend.entry(key.clone()).or_default() += plan.spend_reserve;
            }
            reservation.spend_reserved = plan.spend_reserve;
        }
        Ok(Admitted {
            reservation,
            headers,
        })
    }

    /// The synchronous settlement.
    pub fn settle_now(&self, r: &Reservation, actual: Option<u64>, cost: f64) {
        if r.is_empty() {
            return;
        }
        let now = Instant::now();
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if let Some(actual) = actual {
            let delta = r.reserved as f64 - actual as f64;
            for (key, capacity) in &r.tokens {
                if let Some(b) = state.buckets.get_mut(key) {
                    b.level = refill(b.level, now.duration_since(b.at), *capacity);
                    b.at = now;
                    b.level = (b.level + delta).min(*capacity as f64);
                }
            }
        }
        // The reservation made at admission is replaced by the real cost.
        let delta = cost - r.spend_reserved;
        if delta != 0.0 {
            for (level, id, period) in &r.spends {
                *state
                    .spend
                    .entry((*level, Arc::clone(id), *period))
                    .or_default() += delta;
            }
        }
    }
}

fn sweep(state: &mut State, now: Instant, wall: SystemTime) {
    state.swept = now;
    // A bucket that has refilled completely is the same as a new one.
    state
        .buckets
        .retain(|_, b| refill(b.level, now.duration_since(b.at), b.capacity) < b.capacity as f64);
    state
        .spend
        .retain(|(_, _, p), _| p.end_ms() > crate::clock::unix_ms(wall));
}

impl Limiter for MemoryLimiter {
    async fn admit(&self, plan: &Plan) -> Result<Admitted, Refusal> {
        self.try_admit(plan).map_err(Refusal::Limited)
    }

    async fn settle(&self, reservation: &Reservation, actual: Option<u64>, cost: f64) {
        self.settle_now(reservation, actual, cost);
    }
}
