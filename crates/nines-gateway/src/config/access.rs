//! `[auth]`, `[limits]` and `[store]`: who may call, how much, and where keys and usage live.
//!
//! | section    | absent                                   | present                                       |
//! |------------|------------------------------------------|-----------------------------------------------|
//! | `[auth]`   | auth off: every request is anonymous     | a key is required (`enabled = false` to turn off) |
//! | `[limits]` | in-memory limiter, 50 ms Redis timeout   | `redis_url` shares limits between replicas     |
//! | `[store]`  | nothing persisted, no virtual keys       | SQLite in `data_dir`, or Postgres at `database_url` |
//!
//! [`Limits`] is also the JSON shape of limits in the admin API and in the store.

use super::Secret;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use toml::Spanned;

/// Limits of one organisation, user or key. Every field is optional; absent means unlimited.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Requests per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u64>,
    /// Tokens (prompt + output) per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
    /// Limits for one model name (as clients send it), on top of the ones above.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub models: BTreeMap<String, ModelLimits>,
    /// USD per UTC day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_budget: Option<f64>,
    /// USD per UTC calendar month.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_budget: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
}

impl Limits {
    /// True when nothing is limited (admission can skip this subject).
    pub fn is_empty(&self) -> bool {
        self.rpm.is_none()
            && self.tpm.is_none()
            && self.models.is_empty()
            && self.daily_budget.is_none()
            && self.monthly_budget.is_none()
    }

    /// Checks values; the error names the field.
    pub fn check(&self) -> Result<(), String> {
        let positive = |name: &str, v: Option<u64>| match v {
            Some(0) => Err(format!(
                "{name} must be at least 1 (revoke the key to stop it)"
            )),
            _ => Ok(()),
        };
        positive("rpm", self.rpm)?;
        positive("tpm", self.tpm)?;
        for (model, m) in &self.models {
            positive(&format!("models.{model}.rpm"), m.rpm)?;
            positive(&format!("models.{model}.tpm"), m.tpm)?;
        }
        for (name, v) in [
            ("daily_budget", self.daily_budget),
            ("monthly_budget", self.monthly_budget),
        ] {
            if let Some(v) = v
                && !(v.is_finite() && v >= 0.0)
            {
                return Err(format!("{name} must be a finite number ≥ 0 (USD)"));
            }
        }
        Ok(())
    }
}

/// `[auth]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// Present and true (the default): every API request needs a key.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Protects `/admin/...`; `env:NAME` reads the environment. Without it the admin API is off.
    #[serde(default)]
    pub admin_key: Option<Spanned<String>>,
    /// How long a virtual key looked up in the store is trusted before it is read again; a
    /// revocation made on another replica (or with the CLI) takes effect within this time.
    #[serde(default = "default_cache_ttl", with = "humantime_serde")]
    pub cache_ttl: Duration,
    /// How long a cached virtual key keeps working past `cache_ttl` while the store cannot be
    /// asked again (it is down): a store outage must not lock out callers it already knew.
    #[serde(default = "default_stale_ttl", with = "humantime_serde")]
    pub stale_ttl: Duration,
    /// How long a key the store does not know is answered 401 without asking it again.
    #[serde(default = "default_negative_ttl", with = "humantime_serde")]
    pub negative_ttl: Duration,
    /// Unknown keys remembered at most (the oldest are forgotten first).
    #[serde(default = "default_negative_entries")]
    pub negative_entries: usize,
    /// Keys declared in the file, for setups without a store.
    #[serde(default)]
    pub keys: Vec<RawStaticKey>,
    /// Organisations declared in the file, with their limits: keys declared here belong to them
    /// by `org`, and so do virtual keys of a store organisation of the same name (the file wins).
    #[serde(default)]
    pub orgs: Vec<RawTenant>,
    /// Users declared in the file (each in an organisation declared here), likewise.
    #[serde(default)]
    pub users: Vec<RawTenant>,
    /// Signs what nines hands out and must recognise later (video job ids, status page
    /// sessions); `env:NAME` reads the environment. Without it, a secret is generated once and
    /// kept in the store (replicas sharing the store agree), or per process without a store.
    #[serde(default)]
    pub signing_secret: Option<Spanned<String>>,
}

fn yes() -> bool {
    true
}

fn default_cache_ttl() -> Duration {
    Duration::from_secs(10)
}

fn default_stale_ttl() -> Duration {
    Duration::from_secs(3600)
}

fn default_negative_ttl() -> Duration {
    Duration::from_secs(10)
}

fn default_negative_entries() -> usize {
    10_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStaticKey {
    /// The key clients send; `env:NAME` reads the environment.
    pub key: Spanned<String>,
    pub name: Spanned<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub org: Option<String>,
    /// Model names this key may use; absent means all.
    #[serde(default)]
    pub models: Option<Vec<String>>,
    #[serde(default)]
    pub limits: Limits,
}

/// An organisation or user declared in `[auth]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTenant {
    pub name: Spanned<String>,
    /// A user's organisation (required for users, refused for organisations).
    #[serde(default)]
    pub org: Option<String>,
    #[serde(default)]
    pub limits: Limits,
}

/// What a limiter does when Redis does not answer within `redis_timeout`.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum FailMode {
    /// Admit the request unlimited (counted, logged once per interval).
    #[default]
    Open,
    /// Refuse the request with 503.
    Closed,
}

/// `[limits]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLimits {
    /// Shared limits across replicas; `env:NAME` reads the environment.
    pub redis_url: Option<Spanned<String>>,
    /// Every Redis call's deadline.
    #[serde(with = "humantime_serde")]
    pub redis_timeout: Duration,
    pub on_redis_error: FailMode,
    /// Prefix of every Redis key (one hash tag, so a cluster keeps them in one slot).
    pub redis_prefix: String,
    /// Output tokens reserved for a request that sets no `max_tokens`.
    pub default_max_output_tokens: u64,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            redis_url: None,
            redis_timeout: Duration::from_millis(50),
            on_redis_error: FailMode::Open,
            redis_prefix: "nines".into(),
            default_max_output_tokens: 256,
        }
    }
}

/// `[store]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawStore {
    pub enabled: bool,
    /// SQLite lives here (`nines.db`); relative to the config file's directory.
    pub data_dir: PathBuf,
    /// `postgres://…` (or `sqlite://…`) instead of the data directory; `env:NAME` allowed.
    pub database_url: Option<Spanned<String>>,
    /// Usage records waiting for the writer; beyond this a record is dropped (counted).
    pub usage_queue: usize,
    /// Records the writer holds while the store is down; beyond this the oldest are dropped.
    pub usage_buffer: usize,
    /// Rows per insert.
    pub batch_size: usize,
    /// Longest wait before a partial batch is written; also how often usage rollups are added
    /// to the store.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Which requests also get a per-request detail row: `all`, `errors`, `sample:0.01`, `off`.
    pub request_records: Option<Spanned<String>>,
    /// Where usage records and ledger deltas wait on disk while the store cannot take them
    /// (`store::spool`); relative to the config file's directory. Default `{data_dir}/spool`.
    pub spool_dir: Option<PathBuf>,
    /// The spool's bound on disk; past it the newest records are dropped (counted).
    pub spool_max_bytes: u64,
    /// How long a Responses API conversation is kept for `previous_response_id`.
    #[serde(with = "humantime_serde")]
    pub keep_responses: Duration,
}

impl Default for RawStore {
    fn default() -> Self {
        RawStore {
            enabled: true,
            data_dir: PathBuf::from("data"),
            database_url: None,
            usage_queue: 10_000,
            usage_buffer: 100_000,
            batch_size: 500,
            flush_interval: Duration::from_secs(1),
            request_records: None,
            spool_dir: None,
            spool_max_bytes: 1 << 30,
            keep_responses: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// The three levels identities and limits have: an organisation, its users, their keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    Org,
    User,
    Key,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Org => "org",
            Level::User => "user",
            Level::Key => "key",
        }
    }
}

/// Validated `[auth]`, `[limits]`, `[store]`.
#[derive(Debug, Clone, Default)]
pub struct Access {
    pub auth: Auth,
    pub limits: LimitsConfig,
    pub store: Option<StoreConfig>,
}

#[derive(Debug, Clone, Default)]
pub struct Auth {
    pub enabled: bool,
    pub admin_key: Option<Secret>,
    /// `auth.signing_secret`, when set.
    pub signing_secret: Option<Secret>,
    pub cache_ttl: Duration,
    pub stale_ttl: Duration,
    pub negative_ttl: Duration,
    pub negative_entries: usize,
    /// In file order; `auth::StaticKeys` indexes them by hash.
    pub static_keys: Vec<Arc<StaticKey>>,
    /// `[[auth.orgs]]` and `[[auth.users]]`, in file order.
    pub tenants: Vec<Arc<Tenant>>,
}

/// An organisation or user declared in the file.
#[derive(Debug)]
pub struct Tenant {
    pub level: Level,
    /// `static:{name}` (what usage records and limits key on, as for a key's labels).
    pub id: Arc<str>,
    pub name: Arc<str>,
    /// A user's organisation's name.
    pub org: Option<Arc<str>>,
    pub limits: Arc<Limits>,
}

#[derive(Debug)]
pub struct StaticKey {
    /// The key itself (auth compares only its hash).
    pub key: Secret,
    /// `static:{name}`, and the same for user and org: what usage records and limits key on.
    pub id: Arc<str>,
    pub user_id: Option<Arc<str>>,
    pub org_id: Option<Arc<str>>,
    pub name: Arc<str>,
    pub user: Option<String>,
    pub org: Option<String>,
    pub models: Option<Arc<[String]>>,
    pub limits: Arc<Limits>,
    /// The limits of the user and org when they are declared in the file (`[[auth.users]]`,
    /// `[[auth.orgs]]`); empty for a label only.
    pub user_limits: Arc<Limits>,
    pub org_limits: Arc<Limits>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LimitsConfig {
    pub redis_timeout: Duration,
    pub on_redis_error: FailMode,
    pub redis_prefix: String,
    pub default_max_output_tokens: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let raw = RawLimits::default();
        LimitsConfig {
            redis_timeout: raw.redis_timeout,
            on_redis_error: raw.on_redis_error,
            redis_prefix: raw.redis_prefix,
            default_max_output_tokens: raw.default_max_output_tokens,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    /// `sqlite://…` or `postgres://…`.
    pub url: Secret,
    pub usage_queue: usize,
    pub usage_buffer: usize,
    pub batch_size: usize,
    pub flush_interval: Duration,
    pub request_records: RequestRecords,
    pub spool_dir: PathBuf,
    pub spool_max_bytes: u64,
    pub keep_responses: Duration,
}

/// Which requests get a per-request detail row in `usage_records` (`store.request_records`).
/// Spend, budgets and reports read the per-minute rollups, which count every request whatever
/// this says; the JSON request log is the full per-request stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RequestRecords {
    All,
    /// Requests that ended with a status of 400 or more (the default).
    Errors,
    /// Each request with this probability (0 < p ≤ 1).
    Sample(f64),
    Off,
}

impl RequestRecords {
    pub fn parse(text: &str) -> Result<RequestRecords, String> {
        let wrong = || {
            format!(
                "must be \"all\", \"errors\", \"off\" or \"sample:<fraction>\" with a \
                 fraction above 0 and at most 1 (e.g. \"sample:0.01\"), not \"{text}\""
            )
        };
        match text {
            "all" => Ok(RequestRecords::All),
            "errors" => Ok(RequestRecords::Errors),
            "off" => Ok(RequestRecords::Off),
            _ => {
                let fraction: f64 = text
                    .strip_prefix("sample:")
                    .and_then(|f| f.trim().parse().ok())
                    .ok_or_else(wrong)?;
                if fraction > 0.0 && fraction <= 1.0 {
                    Ok(RequestRecords::Sample(fraction))
                } else {
                    Err(wrong())
                }
            }
        }
    }

    /// Whether a request that ended with `status` gets a detail row.
    pub fn wants(self, status: u16) -> bool {
        match self {
            RequestRecords::All => true,
            RequestRecords::Errors => status >= 400,
            RequestRecords::Sample(p) => rand::random::<f64>() < p,
            RequestRecords::Off => false,
        }
    }
}

impl StoreConfig {
    /// A SQLite store in `dir` with default settings (tests, the CLI).
    pub fn sqlite_in(dir: &Path) -> StoreConfig {
        let raw = RawStore::default();
        StoreConfig {
            url: Secret::new(sqlite_url(dir)),
            usage_queue: raw.usage_queue,
            usage_buffer: raw.usage_buffer,
            batch_size: raw.batch_size,
            flush_interval: raw.flush_interval,
            request_records: RequestRecords::Errors,
            spool_dir: dir.join("spool"),
            spool_max_bytes: raw.spool_max_bytes,
            keep_responses: raw.keep_responses,
        }
    }
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("nines.db").display())
}

type ErrAt<'a> = dyn Fn(Option<std::ops::Range<usize>>, String, String) -> super::ConfigError + 'a;

/// Raw sections → [`Access`]. `config_path` anchors a relative `data_dir`.
pub(super) fn validate(
    auth: Option<&RawAuth>,
    limits: &RawLimits,
    store: Option<&RawStore>,
    config_path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    err: &ErrAt<'_>,
) -> Result<Access, super::ConfigError> {
    let store = match store {
        Some(s) if s.enabled => {
            for (name, v) in [
                ("usage_queue", s.usage_queue),
                ("usage_buffer", s.usage_buffer),
                ("batch_size", s.batch_size),
            ] {
                if v == 0 {
                    return Err(err(
                        None,
                        format!("store.{name}"),
                        "must be at least 1".into(),
                    ));
                }
            }
            let anchored = |p: &Path| {
                if p.is_absolute() {
                    p.to_owned()
                } else {
                    config_path.parent().unwrap_or(Path::new("")).join(p)
                }
            };
            let data_dir = anchored(&s.data_dir);
            let url = match &s.database_url {
                Some(u) => {
                    let url = resolve_env(u.get_ref(), env)
                        .map_err(|m| err(Some(u.span()), "store.database_url".into(), m))?;
                    if !(url.starts_with("postgres://")
                        || url.starts_with("postgresql://")
                        || url.starts_with("sqlite:"))
                    {
                        return Err(err(
                            Some(u.span()),
                            "store.database_url".into(),
                            "must start with postgres://, postgresql:// or sqlite:".into(),
                        ));
                    }
                    url
                }
                None => sqlite_url(&data_dir),
            };
            let request_records = match &s.request_records {
                Some(r) => RequestRecords::parse(r.get_ref())
                    .map_err(|m| err(Some(r.span()), "store.request_records".into(), m))?,
                None => RequestRecords::Errors,
            };
            if s.spool_max_bytes < 1 << 20 {
                return Err(err(
                    None,
                    "store.spool_max_bytes".into(),
                    "must be at least 1048576 (1 MiB)".into(),
                ));
            }
            Some(StoreConfig {
                url: Secret::new(url),
                usage_queue: s.usage_queue,
                usage_buffer: s.usage_buffer,
                batch_size: s.batch_size,
                flush_interval: s.flush_interval,
                request_records,
                spool_dir: s
                    .spool_dir
                    .as_deref()
                    .map_or_else(|| data_dir.join("spool"), anchored),
                spool_max_bytes: s.spool_max_bytes,
                keep_responses: s.keep_responses,
            })
        }
        _ => None,
    };

    if limits.redis_timeout.is_zero() {
        return Err(err(
            None,
            "limits.redis_timeout".into(),
            "must be greater than 0".into(),
        ));
    }

    let mut out = Auth {
        cache_ttl: default_cache_ttl(),
        stale_ttl: default_stale_ttl(),
        negative_ttl: default_negative_ttl(),
        negative_entries: default_negative_entries(),
        ..Auth::default()
    };
    if let Some(a) = auth {
        out.enabled = a.enabled;
        out.cache_ttl = a.cache_ttl;
        out.stale_ttl = a.stale_ttl;
        out.negative_ttl = a.negative_ttl;
        out.negative_entries = a.negative_entries;
        if let Some(k) = &a.admin_key {
            let key = resolve_env(k.get_ref(), env)
                .map_err(|m| err(Some(k.span()), "auth.admin_key".into(), m))?;
            if store.is_none() {
                return Err(err(
                    Some(k.span()),
                    "auth.admin_key".into(),
                    "the admin API manages keys in the store: add a [store] section".into(),
                ));
            }
            out.admin_key = Some(Secret::new(key));
        }
        if let Some(s) = &a.signing_secret {
            let secret = resolve_env(s.get_ref(), env)
                .map_err(|m| err(Some(s.span()), "auth.signing_secret".into(), m))?;
            if secret.len() < 16 {
                return Err(err(
                    Some(s.span()),
                    "auth.signing_secret".into(),
                    "must be at least 16 characters".into(),
                ));
            }
            out.signing_secret = Some(Secret::new(secret));
        }
        tenants(a, &mut out, err)?;
        let mut names = HashMap::new();
        for (i, k) in a.keys.iter().enumerate() {
            let at = format!("auth.keys[{i}]");
            let name = k.name.get_ref();
            if name.is_empty() || names.insert(name.clone(), ()).is_some() {
                return Err(err(
                    Some(k.name.span()),
                    format!("{at}.name"),
                    format!("'{name}' must be non-empty and unique"),
                ));
            }
            let secret = resolve_env(k.key.get_ref(), env)
                .map_err(|m| err(Some(k.key.span()), format!("{at}.key"), m))?;
            k.limits
                .check()
                .map_err(|m| err(Some(k.name.span()), format!("{at}.limits"), m))?;
            let label = |n: &Option<String>| n.as_ref().map(|n| Arc::from(format!("static:{n}")));
            let declared = |level: Level, name: &Option<String>| {
                out.tenants
                    .iter()
                    .find(|t| t.level == level && Some(&*t.name) == name.as_deref())
                    .cloned()
            };
            let user = declared(Level::User, &k.user);
            // A declared user brings its organisation; a key that names another is a mistake.
            let org_name = match (&user, &k.org) {
                (Some(u), Some(o)) if u.org.as_deref() != Some(o.as_str()) => {
                    return Err(err(
                        Some(k.name.span()),
                        format!("{at}.org"),
                        format!(
                            "'{o}' is not the organisation of user '{}' ('{}')",
                            u.name,
                            u.org.as_deref().unwrap_or("")
                        ),
                    ));
                }
                (Some(u), _) => u.org.as_deref().map(str::to_owned),
                (None, o) => o.clone(),
            };
            let org = declared(Level::Org, &org_name);
            let limits_of = |t: &Option<Arc<Tenant>>| {
                t.as_ref()
                    .map_or_else(|| Arc::new(Limits::default()), |t| Arc::clone(&t.limits))
            };
            if out.static_keys.iter().any(|k| k.key.expose() == secret) {
                return Err(err(
                    Some(k.key.span()),
                    format!("{at}.key"),
                    "the same key is declared twice".into(),
                ));
            }
            out.static_keys.push(Arc::new(StaticKey {
                key: Secret::new(secret),
                id: Arc::from(format!("static:{name}")),
                user_id: label(&k.user),
                name: Arc::from(name.as_str()),
                user: k.user.clone(),
                org_id: label(&org_name),
                org: org_name.clone(),
                models: k.models.clone().map(Arc::from),
                limits: Arc::new(k.limits.clone()),
                user_limits: limits_of(&user),
                org_limits: limits_of(&org),
            }));
        }
    }

    Ok(Access {
        auth: out,
        limits: LimitsConfig {
            redis_timeout: limits.redis_timeout,
            on_redis_error: limits.on_redis_error,
            redis_prefix: limits.redis_prefix.clone(),
            default_max_output_tokens: limits.default_max_output_tokens,
        },
        store,
    })
}

/// `[[auth.orgs]]` then `[[auth.users]]` into `out.tenants`: names unique per level, limits
/// valid, every user in a declared organisation.
fn tenants(a: &RawAuth, out: &mut Auth, err: &ErrAt<'_>) -> Result<(), super::ConfigError> {
    for (level, list, section) in [
        (Level::Org, &a.orgs, "auth.orgs"),
        (Level::User, &a.users, "auth.users"),
    ] {
        for (i, t) in list.iter().enumerate() {
            let at = format!("{section}[{i}]");
            let name = t.name.get_ref();
            let span = Some(t.name.span());
            if name.is_empty()
                || out
                    .tenants
                    .iter()
                    .any(|d| d.level == level && *d.name == **name)
            {
                return Err(err(
                    span,
                    format!("{at}.name"),
                    format!("'{name}' must be non-empty and unique"),
                ));
            }
            t.limits
                .check()
                .map_err(|m| err(span.clone(), format!("{at}.limits"), m))?;
            let org = match (level, &t.org) {
                (Level::Org, Some(_)) => {
                    return Err(err(
                        span,
                        format!("{at}.org"),
                        "an organisation has no org".into(),
                    ));
                }
                (Level::User, None) => {
                    return Err(err(
                        span,
                        format!("{at}.org"),
                        "a user needs its organisation (declared in [[auth.orgs]])".into(),
                    ));
                }
                (_, Some(o))
                    if !out
                        .tenants
                        .iter()
                        .any(|d| d.level == Level::Org && *d.name == **o) =>
                {
                    return Err(err(
                        span,
                        format!("{at}.org"),
                        format!("'{o}' is not declared in [[auth.orgs]]"),
                    ));
                }
                (_, o) => o.as_deref().map(Arc::from),
            };
            out.tenants.push(Arc::new(Tenant {
                level,
                id: Arc::from(format!("static:{name}")),
                name: Arc::from(name.as_str()),
                org,
                limits: Arc::new(t.limits.clone()),
            }));
        }
    }
    Ok(())
}

/// A key string given to the CLI: `env:NAME` reads the environment, anything else is the key.
pub fn resolve_key_string(
    value: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    resolve_env(value, env).map_err(|m| format!("--key-string: {m}"))
}

/// `env:NAME` reads the environment; anything else is the value itself.
pub(super) fn resolve_env(
    value: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    match value.strip_prefix("env:") {
        Some("") => Err("'env:' needs a variable name".into()),
        Some(var) => match env(var) {
            Some(v) if !v.is_empty() => Ok(v),
            Some(_) => Err(format!("environment variable {var} is empty")),
            None => Err(format!("environment variable {var} is not set")),
        },
        None if value.is_empty() => Err("must not be empty".into()),
        None => Ok(value.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::Path;

    const BASE: &str = "[[deployments]]\nname = \"d\"\nprovider = \"openai-compatible\"\nmodel = \"m\"\nbase_url = \"http://127.0.0.1:1\"\n";

    fn parse(extra: &str) -> Result<Config, String> {
        let text = format!("{BASE}{extra}");
        Config::parse(Path::new("/etc/nines/nines.toml"), &text, &|name| {
            (name == "ADMIN").then(|| "admin-key".to_owned())
        })
        .map_err(|e| e.to_string())
    }

    #[test]
    fn auth_is_off_without_a_section_and_on_with_one() {
        let c = parse("").unwrap();
        assert!(!c.access.auth.enabled);
        assert!(c.access.store.is_none());
        assert!(c.redis.is_none());
        let c = parse("[auth]\n").unwrap();
        assert!(c.access.auth.enabled);
        let c = parse("[auth]\nenabled = false\n").unwrap();
        assert!(!c.access.auth.enabled);
    }

    #[test]
    fn store_defaults_to_sqlite_next_to_the_config() {
        let c = parse("[store]\n").unwrap();
        let store = c.access.store.unwrap();
        assert_eq!(store.url.expose(), "sqlite:///etc/nines/data/nines.db");
        let c = parse("[store]\ndatabase_url = \"postgres://u@h/db\"\n").unwrap();
        assert_eq!(c.access.store.unwrap().url.expose(), "postgres://u@h/db");
    }

    #[test]
    fn declared_tenants_give_static_keys_their_limits() {
        let c = parse(
            "[auth]\nstale_ttl = \"2h\"\n[[auth.orgs]]\nname = \"acme\"\nlimits = { rpm = 9 }\n[[auth.users]]\nname = \"al\"\norg = \"acme\"\nlimits = { tpm = 7 }\n[[auth.keys]]\nkey = \"k-1\"\nname = \"a\"\nuser = \"al\"\n[[auth.keys]]\nkey = \"k-2\"\nname = \"b\"\norg = \"other\"\n",
        )
        .unwrap();
        let auth = &c.access.auth;
        assert_eq!(auth.stale_ttl, std::time::Duration::from_secs(7200));
        let a = &auth.static_keys[0];
        // The user's organisation follows from the declared user.
        assert_eq!(a.org.as_deref(), Some("acme"));
        assert_eq!(a.org_id.as_deref(), Some("static:acme"));
        assert_eq!(a.org_limits.rpm, Some(9));
        assert_eq!(a.user_limits.tpm, Some(7));
        // An undeclared org stays a label without limits.
        let b = &auth.static_keys[1];
        assert_eq!(b.org.as_deref(), Some("other"));
        assert!(b.org_limits.is_empty() && b.user.is_none());
    }

    #[test]
    fn static_keys_are_hashed_and_checked() {
        let c = parse(
            "[auth]\nadmin_key = \"env:ADMIN\"\n[[auth.keys]]\nkey = \"k-1\"\nname = \"a\"\nlimits = { rpm = 5 }\n[store]\n",
        )
        .unwrap();
        let key = &c.access.auth.static_keys[0];
        assert_eq!(key.key.expose(), "k-1");
        assert_eq!(key.limits.rpm, Some(5));
        assert_eq!(c.access.auth.admin_key.unwrap().expose(), "admin-key");
        for (extra, wanted) in [
            (
                "[auth]\nadmin_key = \"x\"\n",
                "auth.admin_key: the admin API manages keys in the store",
            ),
            (
                "[auth]\n[[auth.keys]]\nkey = \"k\"\nname = \"a\"\nlimits = { rpm = 0 }\n",
                "auth.keys[0].limits: rpm must be at least 1",
            ),
            (
                "[auth]\n[[auth.keys]]\nkey = \"k\"\nname = \"a\"\n[[auth.keys]]\nkey = \"k\"\nname = \"b\"\n",
                "auth.keys[1].key: the same key is declared twice",
            ),
            (
                "[limits]\nredis_url = \"http://x\"\n",
                "limits.redis_url: must start with redis://",
            ),
            ("[limits]\non_redis_error = \"maybe\"\n", "on_redis_error"),
            (
                "[store]\nbatch_size = 0\n",
                "store.batch_size: must be at least 1",
            ),
            (
                "[auth]\n[[auth.users]]\nname = \"al\"\n",
                "auth.users[0].org: a user needs its organisation",
            ),
            (
                "[auth]\n[[auth.users]]\nname = \"al\"\norg = \"nope\"\n",
                "auth.users[0].org: 'nope' is not declared in [[auth.orgs]]",
            ),
            (
                "[auth]\n[[auth.orgs]]\nname = \"a\"\n[[auth.orgs]]\nname = \"a\"\n",
                "auth.orgs[1].name: 'a' must be non-empty and unique",
            ),
            (
                "[auth]\n[[auth.orgs]]\nname = \"a\"\n[[auth.orgs]]\nname = \"b\"\n[[auth.users]]\nname = \"u\"\norg = \"a\"\n[[auth.keys]]\nkey = \"k\"\nname = \"k\"\nuser = \"u\"\norg = \"b\"\n",
                "auth.keys[0].org: 'b' is not the organisation of user 'u' ('a')",
            ),
            (
                "[store]\nspool_max_bytes = 10\n",
                "store.spool_max_bytes: must be at least 1048576",
            ),
        ] {
            let e = parse(extra).unwrap_err();
            assert!(e.contains(wanted), "{extra}: {e}");
        }
    }
}
