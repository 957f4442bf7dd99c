//! Who is calling. A request's key (`Authorization: Bearer …` or `x-api-key: …`) becomes an
//! [`Identity`]: the key, its user and its organisation, each with its limits.
//!
//! | auth config                    | a request without a valid key          |
//! |--------------------------------|----------------------------------------|
//! | no `[auth]` (or `enabled = false`) | anonymous: no key needed, no limits  |
//! | `[auth]`                       | 401 in OpenAI's shape, no upstream call |
//!
//! Keys are found first among the static keys of the config file, then in the store (virtual
//! keys). A virtual key found in the store is cached for `auth.cache_ttl` (and kept usable up to
//! `auth.stale_ttl` longer while the store is down, [`cache`]); unknown keys are remembered for
//! `auth.negative_ttl`; a credential that cannot be a virtual key (`keys::check_shape`) never
//! reaches the store; after a failed lookup no request waits on the store until a background ping
//! finds it back ([`gate`]). Revocation and expiry are checked on every request against the
//! cached row. A change made through this replica's admin API applies here at once and, with
//! the shared Redis (`[redis]`, any shape), on every replica within about a second ([`broadcast`]); without
//! Redis, within `cache_ttl`. Organisations and users declared in the file take the place of
//! store tenants of the same name ([`StaticKeys`]).

pub mod broadcast;
mod cache;
mod gate;
pub mod keys;
pub mod signing;

use crate::config::access::{Auth, Limits};
use crate::config::{
    Secret,
    access::{StaticKey, Tenant},
};
use crate::store::{KeyGrant, Store};
use cache::{Grant, GrantCache, Known, Ttls};
use gate::StoreGate;
use http::HeaderMap;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

pub use keys::hash as hash_key;

pub use crate::config::access::Level;

/// One org, user or key with its limits.
#[derive(Debug, Clone)]
pub struct Subject {
    pub level: Level,
    pub id: Arc<str>,
    pub name: Arc<str>,
    pub limits: Arc<Limits>,
}

/// The caller of one request.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// None when auth is off.
    pub key: Option<Subject>,
    pub user: Option<Subject>,
    pub org: Option<Subject>,
    /// Model names the key may use; None means all.
    pub models: Option<Arc<[String]>>,
}

impl Identity {
    /// Org, user, key: the order limits are checked and locked in.
    pub fn subjects(&self) -> impl Iterator<Item = &Subject> {
        [self.org.as_ref(), self.user.as_ref(), self.key.as_ref()]
            .into_iter()
            .flatten()
    }

    pub fn allows(&self, model: &str) -> bool {
        self.models
            .as_ref()
            .is_none_or(|m| m.iter().any(|allowed| allowed == model))
    }

    fn of_static(key: &StaticKey) -> Identity {
        // A user or org declared in `[[auth.users]]`/`[[auth.orgs]]` brings its limits (shared by
        // every key of it, as the limiter keys on the id); one only named is a label: no limits.
        let label =
            |level: Level, id: &Option<Arc<str>>, name: &Option<String>, limits: &Arc<Limits>| {
                id.as_ref().zip(name.as_ref()).map(|(id, n)| Subject {
                    level,
                    id: Arc::clone(id),
                    name: Arc::from(n.as_str()),
                    limits: Arc::clone(limits),
                })
            };
        Identity {
            key: Some(Subject {
                level: Level::Key,
                id: Arc::clone(&key.id),
                name: Arc::clone(&key.name),
                limits: Arc::clone(&key.limits),
            }),
            user: label(Level::User, &key.user_id, &key.user, &key.user_limits),
            org: label(Level::Org, &key.org_id, &key.org, &key.org_limits),
            models: key.models.clone(),
        }
    }

    fn of_grant(grant: &KeyGrant) -> Identity {
        Identity {
            key: Some(Subject {
                level: Level::Key,
                id: Arc::from(grant.key.id.as_str()),
                name: Arc::from(grant.key.name.as_str()),
                limits: Arc::new(grant.key.limits.clone()),
            }),
            user: Some(Subject {
                level: Level::User,
                id: Arc::from(grant.user.id.as_str()),
                name: Arc::from(grant.user.name.as_str()),
                limits: Arc::new(grant.user.limits.clone()),
            }),
            org: Some(Subject {
                level: Level::Org,
                id: Arc::from(grant.org.id.as_str()),
                name: Arc::from(grant.org.name.as_str()),
                limits: Arc::new(grant.org.limits.clone()),
            }),
            models: grant.key.models.clone().map(Arc::from),
        }
    }
}

/// The key a request carries: `Authorization: Bearer …`, else `x-api-key` (Anthropic SDK).
pub fn credential(headers: &HeaderMap) -> Option<Secret> {
    let bearer = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        });
    bearer
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(|k| Secret::new(k.to_owned()))
}

/// Why a credential gives no identity.
#[derive(Debug, Clone)]
pub enum AuthError {
    /// Missing, unknown, revoked or expired: the message says which (never the key itself).
    Unauthorized { message: String, code: &'static str },
    /// The key store cannot answer now.
    Unavailable(String),
}

/// A configuration's static keys by the hash of each, and its declared tenants by name: built
/// once per configuration, so a request hashes its credential once and finds a static key with
/// one lookup.
#[derive(Debug, Default)]
pub struct StaticKeys {
    keys: HashMap<String, Arc<StaticKey>>,
    /// `[[auth.orgs]]` by name.
    orgs: HashMap<Arc<str>, Subject>,
    /// `[[auth.users]]` by (org name, user name).
    users: HashMap<(Arc<str>, Arc<str>), Subject>,
}

impl StaticKeys {
    pub fn index(auth: &Auth) -> StaticKeys {
        let subject = |t: &Tenant| Subject {
            level: t.level,
            id: Arc::clone(&t.id),
            name: Arc::clone(&t.name),
            limits: Arc::clone(&t.limits),
        };
        StaticKeys {
            keys: auth
                .static_keys
                .iter()
                .map(|k| (hash_key(k.key.expose()), Arc::clone(k)))
                .collect(),
            orgs: auth
                .tenants
                .iter()
                .filter(|t| t.level == Level::Org)
                .map(|t| (Arc::clone(&t.name), subject(t)))
                .collect(),
            users: auth
                .tenants
                .iter()
                .filter_map(|t| {
                    Some((
                        (Arc::clone(t.org.as_ref()?), Arc::clone(&t.name)),
                        subject(t),
                    ))
                })
                .collect(),
        }
    }

    /// A virtual key's identity with the organisation and user the file declares under the same
    /// names in their place: the file wins over the store for the tenants it declares, and keys
    /// of both kinds then share one set of limits (and spend) per tenant.
    fn overlay(&self, identity: Arc<Identity>) -> Arc<Identity> {
        if self.orgs.is_empty() && self.users.is_empty() {
            return identity;
        }
        let org_name = identity.org.as_ref().map(|o| Arc::clone(&o.name));
        let org = org_name.as_ref().and_then(|n| self.orgs.get(n));
        let user = org_name
            .zip(identity.user.as_ref())
            .and_then(|(o, u)| self.users.get(&(o, Arc::clone(&u.name))));
        if org.is_none() && user.is_none() {
            return identity;
        }
        let mut merged = (*identity).clone();
        if let Some(org) = org {
            merged.org = Some(org.clone());
        }
        if let Some(user) = user {
            merged.user = Some(user.clone());
        }
        Arc::new(merged)
    }
}

/// Counters of authentication against the store, for `/metrics` and `/health/ready`.
#[derive(Debug, Default)]
pub struct AuthStats {
    /// Lookups sent to the store.
    pub store_lookups: AtomicU64,
    /// Lookups that failed or timed out.
    pub store_failures: AtomicU64,
    /// Requests let through on a grant past `cache_ttl` because the store could not answer.
    pub stale_grants: AtomicU64,
    /// Requests answered 401 from the negative cache.
    pub known_unknown: AtomicU64,
    /// Credentials refused for their shape, without asking the store.
    pub malformed: AtomicU64,
    /// Requests answered 503 at once: a key not in the cache while the store is down.
    pub unavailable: AtomicU64,
}

/// Resolves credentials to identities.
pub struct Authenticator {
    store: Option<Store>,
    cache: GrantCache,
    gate: Arc<StoreGate>,
    anonymous: Arc<Identity>,
    pub stats: AuthStats,
    /// Tells other replicas about key changes (Redis pub/sub), when configured.
    announcer: std::sync::OnceLock<broadcast::Announcer>,
}

/// A store lookup on a cache miss gives up after this long (the store is down or late).
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

impl Authenticator {
    pub fn new(store: Option<Store>) -> Authenticator {
        Authenticator {
            store,
            cache: GrantCache::default(),
            gate: Arc::new(StoreGate::default()),
            anonymous: Arc::new(Identity::default()),
            stats: AuthStats::default(),
            announcer: std::sync::OnceLock::new(),
        }
    }

    /// The identity behind a credential, or the 401 (503 when the store cannot answer for a key
    /// this replica does not know). `statics` is `auth`'s static keys, indexed.
    ///
    /// In order: a static key (no store); a grant cached within `cache_ttl`; a key remembered as
    /// unknown (401); a credential that cannot be a virtual key (401, never sent to the store);
    /// then the store. When the store fails or is known to be down ([`gate`]), a grant cached
    /// within `cache_ttl + stale_ttl` is used (counted), and any other key gets 503 at once:
    /// nines cannot tell a valid key it has not seen from an invalid one, and a 401 would tell
    /// a client with a valid key to give up on it (SDKs do not retry 401; they do retry 503).
    pub async fn authenticate(
        &self,
        auth: &Auth,
        statics: &StaticKeys,
        credential: Option<&Secret>,
    ) -> Result<Arc<Identity>, AuthError> {
        if !auth.enabled {
            return Ok(Arc::clone(&self.anonymous));
        }
        let Some(credential) = credential else {
            return Err(unauthorized(
                "You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY' \
                 (or 'x-api-key: YOUR_KEY').",
                "missing_api_key",
            ));
        };
        let hash = hash_key(credential.expose());
        if let Some(key) = statics.keys.get(&hash) {
            return Ok(Arc::new(Identity::of_static(key)));
        }
        let ttls = Ttls {
            fresh: auth.cache_ttl,
            stale: auth.stale_ttl,
            negative: auth.negative_ttl,
            negative_entries: auth.negative_entries,
        };
        let stale = match self.cache.get(&hash, ttls) {
            Known::Fresh(hit) => return checked(hit).map(|i| statics.overlay(i)),
            Known::Unknown => {
                self.stats.known_unknown.fetch_add(1, Ordering::Relaxed);
                return Err(incorrect(credential.expose()));
            }
            Known::Stale(hit) => Some(hit),
            Known::Nothing => None,
        };
        let Some(store) = &self.store else {
            return Err(incorrect(credential.expose()));
        };
        if keys::check_shape(credential.expose()).is_err() {
            self.stats.malformed.fetch_add(1, Ordering::Relaxed);
            return Err(incorrect(credential.expose()));
        }
        if !self.gate.open() {
            return self.store_down(stale).map(|i| statics.overlay(i));
        }
        self.stats.store_lookups.fetch_add(1, Ordering::Relaxed);
        let found = match tokio::time::timeout(LOOKUP_TIMEOUT, store.find_key(&hash)).await {
            Ok(Ok(found)) => found,
            failed => {
                if let Ok(Err(e)) = &failed {
                    tracing::warn!(error = %e, "key lookup failed");
                }
                self.stats.store_failures.fetch_add(1, Ordering::Relaxed);
                if self.gate.close() {
                    tokio::spawn(ping_until_up(store.clone(), Arc::clone(&self.gate)));
                }
                return self.store_down(stale).map(|i| statics.overlay(i));
            }
        };
        let Some(grant) = found else {
            self.cache.insert_unknown(hash, ttls);
            return Err(incorrect(credential.expose()));
        };
        let grant = Arc::new(grant);
        let hit = Grant {
            identity: Arc::new(Identity::of_grant(&grant)),
            grant,
        };
        self.cache.insert(hash, hit.clone());
        checked(hit).map(|i| statics.overlay(i))
    }

    /// The answer while the store cannot be asked: a stale grant if there is one, else 503.
    fn store_down(&self, stale: Option<Grant>) -> Result<Arc<Identity>, AuthError> {
        match stale {
            Some(hit) => {
                self.stats.stale_grants.fetch_add(1, Ordering::Relaxed);
                checked(hit)
            }
            None => {
                self.stats.unavailable.fetch_add(1, Ordering::Relaxed);
                Err(AuthError::Unavailable(
                    "The key store is unavailable and this API key is not cached on this \
                     replica; retry shortly."
                        .into(),
                ))
            }
        }
    }

    /// Keys remembered as unknown now (`/health/ready`).
    pub fn unknown_keys(&self) -> usize {
        self.cache.unknown_len()
    }

    /// Since when key lookups have found the store down, if they do (`/health/ready`).
    pub fn store_down_since(&self) -> Option<tokio::time::Instant> {
        self.gate.down_since()
    }

    /// Forgets every cached key here and tells the other replicas to do the same (after an
    /// admin change on this replica).
    pub fn invalidate(&self) {
        self.forget();
        if let Some(announcer) = self.announcer.get() {
            announcer.announce();
        }
    }

    /// Forgets every cached key here only (what an announcement from another replica does).
    pub fn forget(&self) {
        self.cache.clear();
    }

    /// Starts sharing key changes with other replicas through the shared Redis (once).
    pub fn share_changes(self: &Arc<Self>, link: Arc<crate::replicas::RedisLink>, channel: String) {
        let announcer = broadcast::start(link, channel, Arc::downgrade(self));
        let _ = self.announcer.set(announcer);
    }

    /// Whether changes are shared through Redis and the subscription is live.
    pub fn sharing(&self) -> Option<bool> {
        self.announcer.get().map(broadcast::Announcer::subscribed)
    }
}

/// Pings a store that failed a lookup until it answers, then lets lookups through again.
async fn ping_until_up(store: Store, gate: Arc<StoreGate>) {
    loop {
        tokio::time::sleep(gate::RETRY_EVERY).await;
        if let Ok(Ok(())) = tokio::time::timeout(LOOKUP_TIMEOUT, store.ping()).await {
            gate.reopen();
            tracing::info!("the key store answers again");
            return;
        }
    }
}

/// A cached grant's identity, unless the key was revoked or has expired.
fn checked(hit: Grant) -> Result<Arc<Identity>, AuthError> {
    let now_ms = crate::clock::unix_ms(SystemTime::now());
    let key = &hit.grant.key;
    if key.revoked_at.is_some() {
        return Err(unauthorized(
            &format!("The API key {} has been revoked.", key.display),
            "key_revoked",
        ));
    }
    if key.expires_at.is_some_and(|t| t <= now_ms) {
        return Err(unauthorized(
            &format!("The API key {} has expired.", key.display),
            "key_expired",
        ));
    }
    Ok(hit.identity)
}

fn unauthorized(message: &str, code: &'static str) -> AuthError {
    AuthError::Unauthorized {
        message: message.to_owned(),
        code,
    }
}

fn incorrect(key: &str) -> AuthError {
    let shown = if key.starts_with(keys::PREFIX) {
        keys::display(key)
    } else {
        "(not a nines key)".to_owned()
    };
    unauthorized(
        &format!("Incorrect API key provided: {shown}."),
        "invalid_api_key",
    )
}
