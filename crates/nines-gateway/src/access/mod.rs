//! The access stages of the request path: who is calling (`auth/`), whether they may (the model
//! allow-list, `limits/`), and, when the request ends, what it cost them.
//!
//! | stage  | runs                               | default (no `[auth]`, no limits, no `[store]`) |
//! |--------|------------------------------------|-----------------------------------------------|
//! | auth   | before anything is planned         | anonymous                                     |
//! | admit  | after auth, before any upstream    | nothing to check                              |
//! | settle | when the request ends (streams: when the stream ends or the client leaves) | — |
//!
//! [`Access::admit`] returns an [`Admission`]: the identity, what the limiter reserved and the
//! `x-ratelimit-*` headers. The request carries it to its one end (`request::end`), which calls
//! [`Admission::settle`] once: the unused token reservation is returned and the cost charged to
//! the budgets. Refusals are [`AccessError`]s.

mod error;
mod reconcile;

pub use error::AccessError;

use crate::auth::signing::{Signer, random_secret};
use crate::auth::{Authenticator, Identity, StaticKeys};
use crate::config::access::{Access as AccessConfig, LimitsConfig, RequestRecords};
use crate::config::{Price, Secret};
use crate::limits::{
    self, Admitted, Limiter, Limiters, Plan, RateHeaders, Refusal, Reservation,
    memory::MemoryLimiter, redis::RedisLimiter,
};
use crate::store::usage::WriterSettings;
use crate::store::{Accounting, Store, UsageWriter};
use serde::Deserialize;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Identity, limiter, store, usage accounting and writer: shared by every request, kept across
/// reloads.
pub struct Access {
    pub auth: Authenticator,
    pub limiter: Arc<Limiters>,
    pub store: Option<Store>,
    /// Per-minute usage rollups (every request, when there is a store).
    pub accounting: Option<Arc<Accounting>>,
    /// Per-request detail records (`store.request_records`; `None` when `off`).
    pub usage: Option<UsageWriter>,
    /// Signs video job ids and status page sessions (`auth::signing`).
    pub signer: Signer,
}

/// What admission needs to know of a request.
#[derive(Clone, Copy)]
pub struct Ask<'a> {
    pub credential: Option<&'a Secret>,
    pub model: &'a str,
    /// Bytes of the prompt (`messages` JSON; embeddings: the body).
    pub prompt_bytes: usize,
    /// The client's `max_tokens`, if any (embeddings: `Some(0)`).
    pub max_output: Option<u64>,
    /// The highest price a deployment that may serve the request charges; asked only when a
    /// budget applies (the reservation's price).
    pub price_ceiling: &'a (dyn Fn() -> Price + Sync),
}

/// An admitted request's access state, until it ends.
pub struct Admission {
    pub identity: Arc<Identity>,
    /// `x-ratelimit-*` for the response.
    pub headers: RateHeaders,
    reservation: Reservation,
    /// Prompt and output tokens assumed at admission.
    estimate: (u64, u64),
    limiter: Arc<Limiters>,
}

/// Tokens an answer reported.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
}

/// What settling a request found: its usage (reported, or the admission estimate) and cost.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Settled {
    pub usage: Usage,
    /// The usage is the admission estimate: the answer reported none.
    pub estimated: bool,
    /// USD.
    pub cost: f64,
}

impl Access {
    /// No store, limits in memory: what a config without `[store]` and `redis_url` gets.
    pub fn in_memory() -> Access {
        Access::with_parts(None, Limiters::Memory(MemoryLimiter::new()), None)
    }

    pub fn with_parts(
        store: Option<Store>,
        limiter: Limiters,
        usage: Option<UsageWriter>,
    ) -> Access {
        Access {
            auth: Authenticator::new(store.clone()),
            limiter: Arc::new(limiter),
            store,
            accounting: None,
            usage,
            signer: Signer::random(),
        }
    }

    /// Opens what the configuration asks for: the store (migrations applied), the usage
    /// writer, the Redis limiter. Spend so far this day and month is loaded into a memory
    /// limiter so a restart keeps budgets.
    pub async fn open(config: &AccessConfig) -> Result<Access, String> {
        let store = match &config.store {
            Some(s) => Some(
                Store::open(s)
                    .await
                    .map_err(|e| format!("cannot open the store: {e}"))?,
            ),
            None => None,
        };
        let limiter = limiter_for(&config.limits)?;
        if let (Limiters::Memory(memory), Some(store)) = (&limiter, &store) {
            seed_spend(memory, store).await?;
        }
        let usage = match (&store, &config.store) {
            (Some(_), Some(c)) if c.request_records == RequestRecords::Off => None,
            (Some(store), Some(c)) => {
                let (writer, _task) = UsageWriter::spawn(
                    Arc::new(store.clone()) as Arc<dyn crate::store::UsageSink>,
                    WriterSettings::from(c),
                );
                Some(writer)
            }
            _ => None,
        };
        let signer = match (&config.auth.signing_secret, &store) {
            (Some(secret), _) => Signer::new(secret.expose().as_bytes()),
            (None, Some(store)) => {
                let shared = store
                    .setting_or("signing_secret", &random_secret())
                    .await
                    .map_err(|e| format!("cannot read the signing secret from the store: {e}"))?;
                Signer::new(shared.as_bytes())
            }
            (None, None) => Signer::random(),
        };
        let accounting = match (&store, &config.store) {
            (Some(store), Some(c)) => Some(Accounting::spawn(
                Arc::new(store.clone()) as Arc<dyn crate::store::accounting::RollupSink>,
                c.flush_interval,
            )),
            _ => None,
        };
        let mut access = Access::with_parts(store, limiter, usage);
        access.accounting = accounting;
        access.signer = signer;
        if let (Limiters::Redis(redis), Some(store)) = (&*access.limiter, &access.store) {
            // Before the first request, so a Redis that lost its counters cannot admit spend
            // the store already knows of; then in the background.
            reconcile::once_at_start(redis, store).await;
            tokio::spawn(reconcile::run(
                Arc::downgrade(&access.limiter),
                store.clone(),
            ));
        }
        Ok(access)
    }

    /// Waits (at most `within`) for the usage rollups and queued usage records to reach the
    /// store: call after the server stopped.
    pub async fn drain(&self, within: Duration) {
        if let Some(accounting) = &self.accounting {
            match tokio::time::timeout(within, accounting.flush()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "usage rollups could not be written at shutdown")
                }
                Err(_) => tracing::warn!("writing the usage rollups at shutdown timed out"),
            }
        }
        if let Some(usage) = &self.usage {
            usage.drain(within).await;
        }
    }

    /// Auth alone, for routes without admission (model lists, video jobs).
    pub async fn authorize(
        &self,
        config: &AccessConfig,
        statics: &StaticKeys,
        credential: Option<&Secret>,
    ) -> Result<Arc<Identity>, AccessError> {
        Ok(self
            .auth
            .authenticate(&config.auth, statics, credential)
            .await?)
    }

    /// Auth, the model allow-list, then admission by the limits. A refusal by the allow-list or
    /// the limits still yields the identity (the caller records the refusal under the key that
    /// asked).
    pub async fn admit(
        &self,
        config: &AccessConfig,
        statics: &StaticKeys,
        ask: Ask<'_>,
    ) -> Result<Admission, (AccessError, Option<Arc<Identity>>)> {
        let identity = self
            .authorize(config, statics, ask.credential)
            .await
            .map_err(|e| (e, None))?;
        if !identity.allows(ask.model) {
            let refused = AccessError::ModelNotAllowed {
                model: ask.model.to_owned(),
            };
            return Err((refused, Some(identity)));
        }
        let output = ask
            .max_output
            .unwrap_or(config.limits.default_max_output_tokens);
        let prompt = limits::estimate_tokens(ask.prompt_bytes, Some(0), 0);
        let mut plan = Plan::new(
            &identity,
            ask.model,
            prompt.saturating_add(output),
            SystemTime::now(),
        );
        if !plan.spends.is_empty() {
            plan.spend_reserve = cost_of(
                Usage {
                    input: prompt,
                    output,
                },
                (ask.price_ceiling)(),
            );
        }
        let admitted = if plan.is_empty() {
            Admitted {
                reservation: Reservation::default(),
                headers: RateHeaders::default(),
            }
        } else {
            match self.limiter.admit(&plan).await {
                Ok(a) => a,
                Err(refusal) => {
                    let error = match refusal {
                        Refusal::Limited(denied) => AccessError::Limited(denied),
                        Refusal::Unavailable(why) => AccessError::Unavailable(why),
                    };
                    return Err((error, Some(identity)));
                }
            }
        };
        Ok(Admission {
            identity,
            headers: admitted.headers,
            reservation: admitted.reservation,
            estimate: (prompt, output),
            limiter: Arc::clone(&self.limiter),
        })
    }
}

impl Admission {
    /// Settles the request, once, at its end: `served` at `price` with the `reported` usage (or,
    /// served without a report, the admission estimate), or not served (nothing charged). The
    /// unused token reservation goes back; the cost goes to the budgets.
    pub fn settle(self, served: Option<Price>, reported: Option<Usage>) -> Settled {
        let (usage, estimated) = match (reported, served) {
            (Some(u), _) => (u, false),
            // Served but no usage reported: the estimate is the best there is.
            (None, Some(_)) => (
                Usage {
                    input: self.estimate.0,
                    output: self.estimate.1,
                },
                true,
            ),
            (None, None) => (Usage::default(), false),
        };
        let cost = served.map_or(0.0, |p| cost_of(usage, p));
        let actual = (!estimated).then_some(usage.input.saturating_add(usage.output));
        if !self.reservation.is_empty() {
            match &*self.limiter {
                Limiters::Memory(m) => m.settle_now(&self.reservation, actual, cost),
                Limiters::Redis(_) => {
                    let limiter = Arc::clone(&self.limiter);
                    let reservation = self.reservation;
                    if let Ok(handle) = tokio::runtime::Handle::try_current() {
                        handle.spawn(async move {
                            limiter.settle(&reservation, actual, cost).await;
                        });
                    }
                }
            }
        }
        Settled {
            usage,
            estimated,
            cost,
        }
    }
}

/// USD for `usage` at `price` (per million tokens).
fn cost_of(usage: Usage, price: Price) -> f64 {
    (usage.input as f64 * price.input + usage.output as f64 * price.output) / 1_000_000.0
}

fn limiter_for(config: &LimitsConfig) -> Result<Limiters, String> {
    Ok(match &config.redis_url {
        Some(url) => Limiters::Redis(RedisLimiter::new(url.expose(), config)?),
        None => Limiters::Memory(MemoryLimiter::new()),
    })
}

async fn seed_spend(memory: &MemoryLimiter, store: &Store) -> Result<(), String> {
    use crate::auth::Level;
    let now = SystemTime::now();
    for period in [limits::Period::day_of(now), limits::Period::month_of(now)] {
        for level in [Level::Org, Level::User, Level::Key] {
            let spent = store
                .spend_by(level, period.start_ms())
                .await
                .map_err(|e| format!("cannot read spend from the store: {e}"))?;
            for (id, usd) in spent {
                memory.seed_spend(level, &id, period, usd);
            }
        }
    }
    Ok(())
}

/// The `usage` object of an OpenAI- or Anthropic-shaped body.
#[derive(Deserialize)]
struct Peek {
    #[serde(default)]
    usage: Option<Counts>,
}

#[derive(Deserialize, Default)]
struct Counts {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
}

impl Counts {
    fn usage(&self) -> Option<Usage> {
        let input = self.prompt_tokens.or(self.input_tokens);
        let output = self.completion_tokens.or(self.output_tokens);
        (input.is_some() || output.is_some()).then(|| Usage {
            input: input.unwrap_or(0),
            output: output.unwrap_or(0),
        })
    }
}

/// The usage a non-streamed answer reports. Only the `usage` object is parsed: the bytes
/// `"usage":` cannot occur inside a JSON string (its quotes would be escaped), OpenAI and
/// Anthropic put the top-level `usage` last, so the last occurrence is it; a body where that
/// does not parse falls back to a full parse.
pub fn usage_of(body: &[u8]) -> Option<Usage> {
    const KEY: &[u8] = b"\"usage\"";
    let key_at = body.windows(KEY.len()).rposition(|w| w == KEY)?;
    let rest = &body[key_at + KEY.len()..];
    let value_at = rest
        .iter()
        .position(|b| !b.is_ascii_whitespace() && *b != b':')?;
    let mut values = serde_json::Deserializer::from_slice(&rest[value_at..]).into_iter::<Counts>();
    match values.next() {
        Some(Ok(counts)) => counts.usage(),
        _ => serde_json::from_slice::<Peek>(body).ok()?.usage?.usage(),
    }
}

/// Whether a credential is the configured admin key (compared by hash, in constant time).
pub fn is_admin(config: &AccessConfig, credential: Option<&Secret>) -> bool {
    let (Some(admin), Some(given)) = (&config.auth.admin_key, credential) else {
        return false;
    };
    let a = crate::auth::hash_key(admin.expose());
    let b = crate::auth::hash_key(given.expose());
    a.bytes()
        .zip(b.bytes())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
        && a.len() == b.len()
}

#[cfg(test)]
mod usage_tests {
    use super::{Usage, usage_of};

    #[test]
    fn usage_is_read_from_openai_and_anthropic_bodies() {
        let openai = br#"{"id":"x","choices":[{"message":{"content":"the \"usage\": {\"prompt_tokens\": 99}"}}],"usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17}}"#;
        assert_eq!(
            usage_of(openai),
            Some(Usage {
                input: 12,
                output: 5
            })
        );
        let anthropic = br#"{"type":"message","content":[{"type":"text","text":"hi"}],"usage" : {"input_tokens":3,"output_tokens":4}}"#;
        assert_eq!(
            usage_of(anthropic),
            Some(Usage {
                input: 3,
                output: 4
            })
        );
        // `usage` first, then a later value that says "usage": the fallback full parse finds it.
        let odd = br#"{"usage":{"prompt_tokens":1,"completion_tokens":2},"kind":"usage"}"#;
        assert_eq!(
            usage_of(odd),
            Some(Usage {
                input: 1,
                output: 2
            })
        );
        assert_eq!(usage_of(br#"{"usage":null}"#), None);
        assert_eq!(usage_of(br#"{"id":"no usage here"}"#), None);
        assert_eq!(usage_of(b"not json"), None);
    }
}
