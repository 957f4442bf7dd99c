//! Who is calling. A request's key (`Authorization: Bearer …` or `x-api-key: …`) becomes an
//! [`Identity`]: the key, its user and its organisation, each with its limits.
//!
//! | auth config                    | a request without a valid key          |
//! |--------------------------------|----------------------------------------|
//! | no `[auth]` (or `enabled = false`) | anonymous: no key needed, no limits  |
//! | `[auth]`                       | 401 in OpenAI's shape, no upstream call |
//!
//! Keys are found first among the static keys of the config file, then in the store (virtual
//! keys). A virtual key found in the store is cached for `auth.cache_ttl`; revocation and
//! expiry are checked on every request against the cached row, a revocation made elsewhere
//! (another replica, the CLI) reaches this replica within the TTL, and one made through this
//! replica's admin API at once.

pub mod keys;
pub mod signing;

use crate::config::access::{Auth, Limits};
use crate::config::{Secret, access::StaticKey};
use crate::store::{KeyGrant, Store};
use http::HeaderMap;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

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
        // Static users and orgs are labels for records: their limits are empty.
        let label = |level: Level, id: &Option<Arc<str>>, name: &Option<String>| {
            id.as_ref().zip(name.as_ref()).map(|(id, n)| Subject {
                level,
                id: Arc::clone(id),
                name: Arc::from(n.as_str()),
                limits: Arc::new(Limits::default()),
            })
        };
        Identity {
            key: Some(Subject {
                level: Level::Key,
                id: Arc::clone(&key.id),
                name: Arc::clone(&key.name),
                limits: Arc::clone(&key.limits),
            }),
            user: label(Level::User, &key.user_id, &key.user),
            org: label(Level::Org, &key.org_id, &key.org),
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

struct Cached {
    grant: Arc<KeyGrant>,
    identity: Arc<Identity>,
    fetched: Instant,
}

/// Why a credential gives no identity.
#[derive(Debug, Clone)]
pub enum AuthError {
    /// Missing, unknown, revoked or expired: the message says which (never the key itself).
    Unauthorized { message: String, code: &'static str },
    /// The key store cannot answer now.
    Unavailable(String),
}

/// A configuration's static keys by the hash of each: built once per configuration, so a request
/// hashes its credential once and finds a static key with one lookup.
#[derive(Debug, Default)]
pub struct StaticKeys(HashMap<String, Arc<StaticKey>>);

impl StaticKeys {
    pub fn index(auth: &Auth) -> StaticKeys {
        StaticKeys(
            auth.static_keys
                .iter()
                .map(|k| (hash_key(k.key.expose()), Arc::clone(k)))
                .collect(),
        )
    }
}

/// Resolves credentials to identities.
pub struct Authenticator {
    store: Option<Store>,
    cache: RwLock<HashMap<String, Cached>>,
    anonymous: Arc<Identity>,
}

/// A store lookup on a cache miss gives up after this long (the store is down: 503, not 401).
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

impl Authenticator {
    pub fn new(store: Option<Store>) -> Authenticator {
        Authenticator {
            store,
            cache: RwLock::new(HashMap::new()),
            anonymous: Arc::new(Identity::default()),
        }
    }

    /// The identity behind a credential, or the 401 (503 when the store cannot answer).
    /// `statics` is `auth`'s static keys, indexed.
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
        if let Some(key) = statics.0.get(&hash) {
            return Ok(Arc::new(Identity::of_static(key)));
        }
        let now_ms = crate::clock::unix_ms(SystemTime::now());
        let cached = self.cache.read().ok().and_then(|c| {
            c.get(&hash)
                .filter(|e| e.fetched.elapsed() < auth.cache_ttl)
                .map(|e| (Arc::clone(&e.grant), Arc::clone(&e.identity)))
        });
        let (grant, identity) = match cached {
            Some(hit) => hit,
            None => {
                let Some(store) = &self.store else {
                    return Err(incorrect(credential.expose()));
                };
                let found = tokio::time::timeout(LOOKUP_TIMEOUT, store.find_key(&hash))
                    .await
                    .map_err(|_| {
                        AuthError::Unavailable("the key store did not answer in time".into())
                    })?
                    .map_err(|e| {
                        tracing::warn!(error = %e, "key lookup failed");
                        AuthError::Unavailable("the key store is unavailable".into())
                    })?;
                let Some(grant) = found else {
                    return Err(incorrect(credential.expose()));
                };
                let grant = Arc::new(grant);
                let identity = Arc::new(Identity::of_grant(&grant));
                if let Ok(mut cache) = self.cache.write() {
                    if cache.len() > 100_000 {
                        cache.clear();
                    }
                    cache.insert(
                        hash,
                        Cached {
                            grant: Arc::clone(&grant),
                            identity: Arc::clone(&identity),
                            fetched: Instant::now(),
                        },
                    );
                }
                (grant, identity)
            }
        };
        if grant.key.revoked_at.is_some() {
            return Err(unauthorized(
                &format!("The API key {} has been revoked.", grant.key.display),
                "key_revoked",
            ));
        }
        if grant.key.expires_at.is_some_and(|t| t <= now_ms) {
            return Err(unauthorized(
                &format!("The API key {} has expired.", grant.key.display),
                "key_expired",
            ));
        }
        Ok(identity)
    }

    /// Forgets every cached key (after an admin change on this replica).
    pub fn invalidate(&self) {
        if let Ok(mut cache) = self.cache.write() {
            cache.clear();
        }
    }
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
