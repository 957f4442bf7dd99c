//! Limits shared by every replica: the same token buckets and spend counters as the memory
//! limiter, kept in Redis and checked-and-reserved by one Lua script in one round trip, so the
//! limit holds globally however many replicas admit at once. The script reads the clock with
//! Redis `TIME`, so replicas' clocks need not agree.
//!
//! Every key carries the hash tag `{prefix}`, so in a Redis Cluster all of them live in one slot
//! (a script may only touch keys of one slot); limits are then served by one shard. The
//! connection is the shared one (`crate::replicas::link`): one server, a Sentinel master or a
//! cluster.
//!
//! Every call has a deadline of `limits.redis_timeout` (default 50 ms). When Redis fails or is
//! late the configured answer applies — `open` (default): admit without limits; `closed`: refuse
//! with 503 — the failure is counted and logged at most once per 30 s, and for the next 250 ms
//! requests take that answer without trying Redis, so an outage costs no request more than one
//! timeout. Settlements are sent in the background and are lost (counted) when Redis is down.

use super::{
    Admitted, Denied, Dim, Limiter, Plan, RateHeaders, Refusal, Reservation, Tripped, Window,
};
use crate::config::access::{FailMode, LimitsConfig};
use crate::replicas::RedisLink;
use redis::Script;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

const ADMIT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = tonumber(ARGV[1])
local levels = {}
for i = 1, n do
  local cap = tonumber(ARGV[2 * i])
  local cost = tonumber(ARGV[2 * i + 1])
  local rate = cap / 60000
  local v = redis.call('HMGET', KEYS[i], 'l', 't')
  local level = cap
  if v[1] then
    level = tonumber(v[1]) + (now - tonumber(v[2])) * rate
    if level > cap then level = cap end
  end
  if level < cost then
    local wait = -1
    if cost <= cap then wait = math.ceil((cost - level) / rate) end
    local rem = math.floor(level)
    if rem < 0 then rem = 0 end
    return {0, i, wait, rem}
  end
  levels[i] = level
end
for j = n + 1, #KEYS do
  local budget = tonumber(ARGV[n + 1 + j])
  local spent = tonumber(redis.call('GET', KEYS[j]) or '0')
  if spent >= budget then return {0, j, 0, 0} end
end
local r = #KEYS + n + 2
if #KEYS > n and tonumber(ARGV[r]) > 0 then
  for j = n + 1, #KEYS do
    redis.call('INCRBYFLOAT', KEYS[j], ARGV[r])
    redis.call('PEXPIRE', KEYS[j], tonumber(ARGV[r + j - n]))
  end
end
local out = {1}
for i = 1, n do
  local cap = tonumber(ARGV[2 * i])
  local rate = cap / 60000
  local level = levels[i] - tonumber(ARGV[2 * i + 1])
  redis.call('HSET', KEYS[i], 'l', tostring(level), 't', tostring(now))
  local reset = math.ceil((cap - level) / rate)
  redis.call('PEXPIRE', KEYS[i], reset + 1000)
  local rem = math.floor(level)
  if rem < 0 then rem = 0 end
  out[#out + 1] = rem
  out[#out + 1] = reset
end
return out
";

const SETTLE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local k = tonumber(ARGV[1])
local delta = tonumber(ARGV[2])
for i = 1, k do
  local cap = tonumber(ARGV[2 + i])
  local rate = cap / 60000
  local v = redis.call('HMGET', KEYS[i], 'l', 't')
  local level = cap
  if v[1] then
    level = tonumber(v[1]) + (now - tonumber(v[2])) * rate
    if level > cap then level = cap end
  end
  level = level + delta
  if level > cap then level = cap end
  redis.call('HSET', KEYS[i], 'l', tostring(level), 't', tostring(now))
  redis.call('PEXPIRE', KEYS[i], math.ceil((cap - level) / rate) + 1000)
end
local cost = ARGV[3 + k]
if tonumber(cost) ~= 0 then
  for j = k + 1, #KEYS do
    redis.call('INCRBYFLOAT', KEYS[j], cost)
    redis.call('PEXPIRE', KEYS[j], tonumber(ARGV[3 + j]))
  end
end
return 1
";

/// Raises spend counters to the store's sums (`access::reconcile`), never lowers them: KEYS are
/// the counters, then the marker; ARGV the floor and time to live (ms) of each counter. Returns
/// how many it raised.
const RAISE: &str = r"
local raised = 0
for i = 1, #KEYS - 1 do
  local floor = tonumber(ARGV[2 * i - 1])
  local spent = tonumber(redis.call('GET', KEYS[i]) or '0')
  if spent < floor then
    redis.call('SET', KEYS[i], ARGV[2 * i - 1], 'PX', ARGV[2 * i])
    raised = raised + 1
  end
end
redis.call('SET', KEYS[#KEYS], '1')
return raised
";

/// Counters per `RAISE` call.
const RAISE_CHUNK: usize = 500;

/// After a failure, requests take the fail answer without trying Redis for this long.
const BACKOFF: Duration = Duration::from_millis(250);
const LOG_EVERY: Duration = Duration::from_secs(30);

/// Counters for `/health/ready` and `/admin/status`.
#[derive(Debug, Default)]
pub struct RedisStats {
    /// Calls that failed or timed out.
    pub failures: AtomicU64,
    /// Requests admitted without limits because Redis failed (`on_redis_error = "open"`).
    pub failed_open: AtomicU64,
    /// Requests refused because Redis failed (`on_redis_error = "closed"`).
    pub failed_closed: AtomicU64,
}

pub struct RedisLimiter {
    link: Arc<RedisLink>,
    admit: Arc<Script>,
    settle: Arc<Script>,
    raise: Arc<Script>,
    prefix: String,
    timeout: Duration,
    fail: FailMode,
    pub stats: Arc<RedisStats>,
    /// When the last failure happened and when it was last logged.
    failed_at: Mutex<(Option<Instant>, Option<Instant>)>,
}

impl RedisLimiter {
    /// Limits on the shared Redis: a Redis that is down (or not found yet) makes requests take
    /// the fail answer until it comes up.
    pub fn new(link: Arc<RedisLink>, config: &LimitsConfig) -> RedisLimiter {
        RedisLimiter {
            link,
            admit: Arc::new(Script::new(ADMIT)),
            settle: Arc::new(Script::new(SETTLE)),
            raise: Arc::new(Script::new(RAISE)),
            prefix: config.redis_prefix.clone(),
            timeout: config.redis_timeout,
            fail: config.on_redis_error,
            stats: Arc::new(RedisStats::default()),
            failed_at: Mutex::new((None, None)),
        }
    }

    pub fn fail_mode(&self) -> FailMode {
        self.fail
    }

    fn bucket_key(&self, k: &super::BucketKey) -> String {
        let dim = match k.dim {
            Dim::Requests => "rpm",
            Dim::Tokens => "tpm",
        };
        match &k.model {
            Some(m) => format!(
                "{{{}}}:rl:{}:{}:{dim}:m:{m}",
                self.prefix,
                k.level.as_str(),
                k.id
            ),
            None => format!("{{{}}}:rl:{}:{}:{dim}", self.prefix, k.level.as_str(), k.id),
        }
    }

    fn spend_key(
        &self,
        level: crate::config::access::Level,
        id: &str,
        period: super::Period,
    ) -> String {
        format!(
            "{{{}}}:spend:{}:{id}:{}",
            self.prefix,
            level.as_str(),
            period.tag()
        )
    }

    /// Set by every reconciliation and never expiring: when it is missing, Redis lost its data.
    fn marker_key(&self) -> String {
        format!("{{{}}}:spend:reconciled", self.prefix)
    }

    /// A connection for reconciliation: the shared link's (`[redis]`), which reconnects on its
    /// own; every call below is bounded by the timeout.
    async fn reconcile_connection(&self) -> Result<crate::replicas::link::Conn, String> {
        self.link.conn()
    }

    /// Whether the marker of the last reconciliation is still there.
    pub async fn reconciled_marker(&self) -> Result<bool, String> {
        let mut conn = self.reconcile_connection().await?;
        let mut exists = redis::cmd("EXISTS");
        exists.arg(self.marker_key());
        match tokio::time::timeout(
            self.timeout.max(Duration::from_millis(500)),
            exists.query_async::<i64>(&mut conn),
        )
        .await
        {
            Ok(Ok(n)) => Ok(n > 0),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".into()),
        }
    }

    /// Raises each subject's spend counter of a period to at least the given USD (the store's
    /// sum), in one script call per `RAISE_CHUNK` counters; returns how many were raised.
    pub async fn raise_spend(
        &self,
        floors: &[(crate::config::access::Level, String, super::Period, f64)],
        now: SystemTime,
    ) -> Result<usize, String> {
        let mut raised = 0;
        let mut conn = self.reconcile_connection().await?;
        // At least one call, so the marker is set even when nothing was spent.
        for chunk in floors
            .chunks(RAISE_CHUNK)
            .chain(floors.is_empty().then_some(&[][..]))
        {
            let mut invocation = self.raise.prepare_invoke();
            for (level, id, period, usd) in chunk {
                invocation.key(self.spend_key(*level, id, *period));
                invocation
                    .arg(*usd)
                    .arg(period.remaining(now).as_millis() as u64 + 86_400_000);
            }
            invocation.key(self.marker_key());
            let n = tokio::time::timeout(
                self.timeout.max(Duration::from_millis(500)),
                invocation.invoke_async::<i64>(&mut conn),
            )
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| e.to_string())?;
            raised += usize::try_from(n).unwrap_or(0);
        }
        Ok(raised)
    }

    /// `PING` within the timeout.
    pub async fn ping(&self) -> Result<(), String> {
        self.link.ping().await
    }

    /// Within the backoff after a failure: skip Redis.
    fn backing_off(&self) -> bool {
        self.failed_at
            .lock()
            .ok()
            .and_then(|f| f.0)
            .is_some_and(|at| at.elapsed() < BACKOFF)
    }

    fn note_failure(&self, what: &str, error: &str) {
        self.stats.failures.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut f) = self.failed_at.lock() {
            f.0 = Some(Instant::now());
            if f.1.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
                f.1 = Some(Instant::now());
                tracing::warn!(
                    error,
                    call = what,
                    on_redis_error = match self.fail {
                        FailMode::Open => "open",
                        FailMode::Closed => "closed",
                    },
                    failures = self.stats.failures.load(Ordering::Relaxed),
                    "redis limiter unavailable"
                );
            }
        }
    }

    fn fail_answer(&self) -> Result<Admitted, Refusal> {
        match self.fail {
            FailMode::Open => {
                self.stats.failed_open.fetch_add(1, Ordering::Relaxed);
                Ok(Admitted {
                    reservation: Reservation::default(),
                    headers: RateHeaders::default(),
                })
            }
            FailMode::Closed => {
                self.stats.failed_closed.fetch_add(1, Ordering::Relaxed);
                Err(Refusal::Unavailable(
                    "The rate limiter is unavailable and this gateway is configured to refuse \
                     requests it cannot account for."
                        .into(),
                ))
            }
        }
    }
}

impl Limiter for RedisLimiter {
    async fn admit(&self, plan: &Plan) -> Result<Admitted, Refusal> {
        if plan.is_empty() {
            return Ok(Admitted {
                reservation: Reservation::default(),
                headers: RateHeaders::default(),
            });
        }
        if self.backing_off() {
            return self.fail_answer();
        }
        let wall = SystemTime::now();
        let mut invocation = self.admit.prepare_invoke();
        invocation.arg(plan.draws.len());
        for d in &plan.draws {
            invocation.key(self.bucket_key(&d.key));
            invocation.arg(d.capacity).arg(d.cost);
        }
        for s in &plan.spends {
            invocation.key(self.spend_key(s.level, &s.id, s.period));
            invocation.arg(s.budget);
        }
        if !plan.spends.is_empty() {
            // The reservation, then each counter's time to live (as `SETTLE` sets it).
            invocation.arg(plan.spend_reserve);
            for s in &plan.spends {
                invocation.arg(s.period.remaining(wall).as_millis() as u64 + 86_400_000);
            }
        }
        let mut conn = match self.link.conn() {
            Ok(conn) => conn,
            Err(e) => {
                self.note_failure("admit", &e);
                return self.fail_answer();
            }
        };
        let reply: Vec<i64> =
            match tokio::time::timeout(self.timeout, invocation.invoke_async(&mut conn)).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    self.note_failure("admit", &e.to_string());
                    return self.fail_answer();
                }
                Err(_) => {
                    self.note_failure("admit", "timed out");
                    return self.fail_answer();
                }
            };
        let n = plan.draws.len();
        let mut headers = RateHeaders::default();
        match reply.as_slice() {
            [1, rest @ ..] if rest.len() == 2 * n => {
                let mut reservation = Reservation::default();
                for (d, pair) in plan.draws.iter().zip(rest.chunks(2)) {
                    headers.note(
                        d.key.dim,
                        Window {
                            limit: d.capacity,
                            remaining: pair[0].max(0) as u64,
                            reset: Duration::from_millis(pair[1].max(0) as u64),
                        },
                    );
                    if d.key.dim == Dim::Tokens {
                        reservation.tokens.push((d.key.clone(), d.capacity));
                        reservation.reserved = d.cost;
                    }
                }
                reservation.spends = plan
                    .spends
                    .iter()
                    .map(|s| (s.level, Arc::clone(&s.id), s.period))
                    .collect();
                if !plan.spends.is_empty() {
                    reservation.spend_reserved = plan.spend_reserve.max(0.0);
                }
                Ok(Admitted {
                    reservation,
                    headers,
                })
            }
            [0, index, wait, remaining] => {
                let i = (*index as usize).saturating_sub(1);
                if let Some(d) = plan.draws.get(i) {
                    let retryable = *wait >= 0;
                    headers.note(
                        d.key.dim,
                        Window {
                            limit: d.capacity,
                            remaining: (*remaining).max(0) as u64,
                            reset: super::window::time_to(
                                *remaining as f64,
                                d.capacity as f64,
                                d.capacity,
                            ),
                        },
                    );
                    Err(Refusal::Limited(Box::new(Denied {
                        level: d.key.level,
                        name: Arc::clone(&d.name),
                        model: d.key.model.clone(),
                        tripped: Tripped::Window(d.key.dim),
                        limit: d.capacity as f64,
                        requested: d.cost,
                        retry_after: Duration::from_millis((*wait).max(0) as u64),
                        retryable,
                        headers,
                    })))
                } else if let Some(s) = plan.spends.get(i - n) {
                    Err(Refusal::Limited(Box::new(Denied {
                        level: s.level,
                        name: Arc::clone(&s.name),
                        model: None,
                        tripped: Tripped::Budget(s.period),
                        limit: s.budget,
                        requested: 0,
                        retry_after: s.period.remaining(wall),
                        retryable: false,
                        headers,
                    })))
                } else {
                    self.note_failure("admit", "unexpected script reply");
                    self.fail_answer()
                }
            }
            _ => {
                self.note_failure("admit", "unexpected script reply");
                self.fail_answer()
            }
        }
    }

    async fn settle(&self, reservation: &Reservation, actual: Option<u64>, cost: f64) {
        let tokens: &[(super::BucketKey, u64)] = if actual.is_some() {
            &reservation.tokens
        } else {
            &[]
        };
        // The reservation made at admission is replaced by the real cost.
        let spend_delta = cost - reservation.spend_reserved;
        if tokens.is_empty() && (spend_delta == 0.0 || reservation.spends.is_empty()) {
            return;
        }
        let wall = SystemTime::now();
        let mut invocation = self.settle.prepare_invoke();
        let delta = reservation.reserved as i64 - actual.unwrap_or(0) as i64;
        invocation.arg(tokens.len()).arg(delta);
        for (key, capacity) in tokens {
            invocation.key(self.bucket_key(key));
            invocation.arg(*capacity);
        }
        invocation.arg(spend_delta);
        for (level, id, period) in &reservation.spends {
            invocation.key(self.spend_key(*level, id, *period));
            // Kept a day past the period's end, then Redis forgets it (`RAISE` uses the same).
            invocation.arg(period.remaining(wall).as_millis() as u64 + 86_400_000);
        }
        let mut conn = match self.link.conn() {
            Ok(conn) => conn,
            Err(e) => return self.note_failure("settle", &e),
        };
        match tokio::time::timeout(self.timeout, invocation.invoke_async::<i64>(&mut conn)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => self.note_failure("settle", &e.to_string()),
            Err(_) => self.note_failure("settle", "timed out"),
        }
    }
}
