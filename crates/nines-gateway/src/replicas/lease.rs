//! Leases in Redis: one replica at a time owns a thing (a half-open probe, a deployment's
//! prober) for a short time, and must renew it to keep it. A replica that dies simply stops
//! renewing; its lease expires and another takes over.
//!
//! Taking and renewing are one script on one key, so the check and the write cannot interleave
//! with another replica's: free → taken (`SET … PX`, as `SET NX PX` would), ours → renewed,
//! another's → refused. Releasing deletes the key only if it is still ours.
//!
//! Some leases are a ration rather than an ownership (an early probe: one per slot per
//! interval, whoever sends it): [`take`] takes them only if free and never renews, not even its
//! own, and a refusal says how long the holder's lease still runs.

use super::link::RedisLink;
use redis::Script;
use std::sync::LazyLock;
use std::time::Duration;

static HOLD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if v then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
",
    )
});

/// Free → taken (`{1, 0}`); held by anyone, this replica included → `{0, ms it still runs}`.
static TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1, 0}
end
return {0, redis.call('PTTL', KEYS[1])}
",
    )
});

static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});

/// The key of the lease `what` (`probe:d#0`, `early:d#0`, `prober:d`), under the link's hash tag.
pub fn key(link: &RedisLink, what: &str) -> String {
    format!("{}:lease:{what}", link.tag())
}

/// Runs `script` on the lease `key` with this replica's id and `ttl` (when given) as arguments,
/// within the link's timeout.
async fn invoke<T: redis::FromRedisValue>(
    link: &RedisLink,
    script: &Script,
    key: &str,
    ttl: Option<Duration>,
) -> Result<T, String> {
    let mut conn = link.conn()?;
    let mut invocation = script.prepare_invoke();
    invocation.key(key).arg(&link.replica);
    if let Some(ttl) = ttl {
        invocation.arg(ttl.as_millis().max(1) as u64);
    }
    match tokio::time::timeout(link.config.timeout, invocation.invoke_async::<T>(&mut conn)).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

/// Takes or renews the lease for `ttl`: `Ok(true)` when this replica holds it now.
pub async fn hold(link: &RedisLink, key: &str, ttl: Duration) -> Result<bool, String> {
    let held: i64 = invoke(link, &HOLD, key, Some(ttl)).await?;
    Ok(held == 1)
}

/// What [`take`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// This replica holds the lease for the whole `ttl`.
    Yes,
    /// Someone (maybe this replica) holds it for this much longer.
    HeldFor(Duration),
}

/// Takes the lease for `ttl` if it is free; never renews one (see the module's doc).
pub async fn take(link: &RedisLink, key: &str, ttl: Duration) -> Result<Taken, String> {
    match invoke::<(i64, i64)>(link, &TAKE, key, Some(ttl)).await? {
        (1, _) => Ok(Taken::Yes),
        // PTTL is -1 for a key without expiry (never written so) and -2 for one that expired
        // within the script (impossible): treat both as held for a whole `ttl`.
        (_, ms) => Ok(Taken::HeldFor(
            u64::try_from(ms)
                .map_or(ttl, Duration::from_millis)
                .min(ttl),
        )),
    }
}

/// Gives the lease up if this replica still holds it.
pub async fn release(link: &RedisLink, key: &str) -> Result<(), String> {
    invoke::<i64>(link, &RELEASE, key, None).await.map(drop)
}
