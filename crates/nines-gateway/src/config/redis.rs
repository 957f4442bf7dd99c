//! `[redis]`: the one Redis that replicas share, for limits (`[limits]`), breaker state, half-open
//! probe leases and prober leases (`crate::replicas`).
//!
//! | key | default | meaning |
//! |-----|---------|---------|
//! | `url` | — | `redis://`, `rediss://` (TLS), `redis+sentinel://host:port[,host:port…]/service[/db]` or `rediss+sentinel://…` (TLS to the sentinels and the master); `env:NAME` reads the environment |
//! | `cluster` | `false` | `url` is one node of a Redis Cluster; the others are discovered |
//! | `tls_ca_file` | system roots | PEM bundle of the CAs that sign the servers' certificates; trusted instead of the system's roots |
//! | `tls_cert_file`, `tls_key_file` | — | PEM client certificate and its key, for a Redis with `tls-auth-clients yes`; both or neither |
//! | `timeout` | `100ms` | every breaker and lease call's deadline |
//! | `prefix` | `"nines"` | the hash tag of every breaker and lease key |
//! | `probe_lease` | `10s` | how long one replica owns a half-open probe or a deployment's prober |
//!
//! The `tls_*` files apply to every shape (one server, every cluster node, the sentinels and the
//! master they name) and need a TLS URL; they are read and checked at load (`redis_tls.rs`). A
//! TLS URL verifies the server's certificate and host name; `rediss://host/#insecure` skips that
//! check and is for tests only (a Sentinel URL does not take it).
//!
//! `[limits] redis_url` is still accepted as an alias of `url` (a plain Redis); setting both is
//! an error, because two URLs cannot both be the shared one.

use super::Secret;
use super::access::RawLimits;
use super::redis_tls::{Files, RedisTls};
use super::redis_url::{is_sentinel, is_tls};
use serde::Deserialize;
use std::path::Path;
use std::time::Duration;
use toml::Spanned;

/// `[redis]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRedis {
    pub url: Option<Spanned<String>>,
    pub cluster: bool,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub prefix: String,
    #[serde(with = "humantime_serde")]
    pub probe_lease: Duration,
    pub tls_ca_file: Option<Spanned<String>>,
    pub tls_cert_file: Option<Spanned<String>>,
    pub tls_key_file: Option<Spanned<String>>,
}

impl Default for RawRedis {
    fn default() -> Self {
        RawRedis {
            url: None,
            cluster: false,
            timeout: Duration::from_millis(100),
            prefix: "nines".into(),
            probe_lease: Duration::from_secs(10),
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

/// Where the shared Redis is and how it is used.
#[derive(Debug, Clone, PartialEq)]
pub struct RedisConfig {
    pub url: Secret,
    pub cluster: bool,
    pub timeout: Duration,
    pub prefix: String,
    pub probe_lease: Duration,
    /// CAs and client certificate of a TLS URL (empty: the system's roots, no client cert).
    pub tls: RedisTls,
}

impl RedisConfig {
    /// A plain Redis at `url` with the defaults (tests, the `[limits] redis_url` alias).
    pub fn at(url: &str) -> RedisConfig {
        let raw = RawRedis::default();
        RedisConfig {
            url: Secret::new(url.to_owned()),
            cluster: raw.cluster,
            timeout: raw.timeout,
            prefix: raw.prefix,
            probe_lease: raw.probe_lease,
            tls: RedisTls::default(),
        }
    }
}

type ErrAt<'a> = dyn Fn(Option<std::ops::Range<usize>>, String, String) -> super::ConfigError + 'a;

/// `[redis]` (or the `[limits] redis_url` alias) → the shared Redis, if any.
pub(super) fn validate(
    raw: Option<&RawRedis>,
    limits: &RawLimits,
    config_path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    err: &ErrAt<'_>,
) -> Result<Option<RedisConfig>, super::ConfigError> {
    let url = |u: &Spanned<String>, key: &str| {
        let url = super::access::resolve_env(u.get_ref(), env)
            .map_err(|m| err(Some(u.span()), key.into(), m))?;
        super::redis_url::check(&url).map_err(|m| err(Some(u.span()), key.into(), m))?;
        Ok(url)
    };
    let section = raw.filter(|r| r.url.is_some());
    match (section, &limits.redis_url) {
        (Some(_), Some(alias)) => Err(err(
            Some(alias.span()),
            "limits.redis_url".into(),
            "[redis] url is set too: remove this alias (the shared Redis is [redis] url)".into(),
        )),
        (Some(r), None) => {
            let Some(u) = &r.url else { return Ok(None) };
            let url = url(u, "redis.url")?;
            if r.cluster && is_sentinel(&url) {
                return Err(err(
                    Some(u.span()),
                    "redis.cluster".into(),
                    "a Sentinel URL names one master, not a cluster".into(),
                ));
            }
            for (key, value) in [
                ("redis.timeout", r.timeout),
                ("redis.probe_lease", r.probe_lease),
            ] {
                if value.is_zero() {
                    return Err(err(None, key.into(), "must be greater than 0".into()));
                }
            }
            if r.prefix.is_empty() || r.prefix.contains(['{', '}']) {
                return Err(err(
                    None,
                    "redis.prefix".into(),
                    "must be non-empty, without braces (it becomes the keys' hash tag)".into(),
                ));
            }
            let tls = tls(r, &url, config_path).map_err(|(key, m)| err(None, key, m))?;
            Ok(Some(RedisConfig {
                url: Secret::new(url),
                cluster: r.cluster,
                timeout: r.timeout,
                prefix: r.prefix.clone(),
                probe_lease: r.probe_lease,
                tls,
            }))
        }
        (None, Some(alias)) => {
            let url = url(alias, "limits.redis_url")?;
            let mut config = RedisConfig::at(&url);
            config.prefix = limits.redis_prefix.clone();
            Ok(Some(config))
        }
        (None, None) => Ok(None),
    }
}

/// The `tls_*` files of `[redis]`, for a TLS `url` only.
fn tls(r: &RawRedis, url: &str, config_path: &Path) -> Result<RedisTls, (String, String)> {
    let set = [
        ("redis.tls_ca_file", &r.tls_ca_file),
        ("redis.tls_cert_file", &r.tls_cert_file),
        ("redis.tls_key_file", &r.tls_key_file),
    ];
    if let Some((key, _)) = set.iter().find(|(_, v)| v.is_some())
        && !is_tls(url)
    {
        return Err((
            (*key).into(),
            "applies to a TLS url only: use rediss:// or rediss+sentinel://".into(),
        ));
    }
    fn path(v: &Option<Spanned<String>>) -> Option<&str> {
        v.as_ref().map(|s| s.get_ref().as_str())
    }
    super::redis_tls::load(&Files {
        ca: path(&r.tls_ca_file),
        cert: path(&r.tls_cert_file),
        key: path(&r.tls_key_file),
        dir: config_path.parent().unwrap_or(Path::new(".")),
    })
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::Path;
    use std::time::Duration;

    const BASE: &str = "[[deployments]]\nname = \"d\"\nprovider = \"openai-compatible\"\nmodel = \"m\"\nbase_url = \"http://127.0.0.1:1\"\n";

    fn parse(extra: &str) -> Result<Config, String> {
        Config::parse(
            Path::new("/etc/nines/nines.toml"),
            &format!("{BASE}{extra}"),
            &|name| (name == "REDIS").then(|| "redis://r:6379".to_owned()),
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn the_redis_section_and_its_limits_alias() {
        let c = parse(
            "[redis]\nurl = \"env:REDIS\"\ncluster = true\ntimeout = \"20ms\"\nprefix = \"p\"\nprobe_lease = \"3s\"\n",
        )
        .unwrap();
        let r = c.redis.unwrap();
        assert_eq!(r.url.expose(), "redis://r:6379");
        assert!(r.cluster);
        assert_eq!(
            (r.timeout, r.probe_lease),
            (Duration::from_millis(20), Duration::from_secs(3))
        );
        assert_eq!(r.prefix, "p");
        // The alias: a plain Redis, with the limits' prefix.
        let c = parse("[limits]\nredis_url = \"rediss://h:6380\"\nredis_prefix = \"q\"\n").unwrap();
        let r = c.redis.unwrap();
        assert_eq!(
            (r.url.expose(), r.cluster, r.prefix.as_str()),
            ("rediss://h:6380", false, "q")
        );
        let c = parse("[redis]\nurl = \"redis+sentinel://s1:26379,s2:26379/mymaster\"\n").unwrap();
        assert!(c.redis.is_some());
        let c = parse("[redis]\nurl = \"rediss+sentinel://s1:26379/mymaster\"\n").unwrap();
        assert!(c.redis.unwrap().tls.is_empty());
        assert!(parse("[redis]\ncluster = true\n").unwrap().redis.is_none());
    }

    #[test]
    fn mistakes_name_their_key() {
        for (extra, wanted) in [
            (
                "[redis]\nurl = \"redis://a\"\n[limits]\nredis_url = \"redis://b\"\n",
                "limits.redis_url: [redis] url is set too",
            ),
            (
                "[redis]\nurl = \"http://x\"\n",
                "redis.url: must start with redis://",
            ),
            (
                "[redis]\nurl = \"redis+sentinel://s:1/m\"\ncluster = true\n",
                "redis.cluster: a Sentinel URL names one master",
            ),
            // Caught when the configuration loads (`nines check`, a reload), not at `serve`.
            (
                "[redis]\nurl = \"redis+sentinel://:pw@s:26379\"\n",
                "redis.url: a Sentinel URL names its master",
            ),
            (
                "[redis]\nurl = \"redis+sentinel://s:26379/m/x\"\n",
                "redis.url: the database after the service name must be a number",
            ),
            (
                "[redis]\nurl = \"redis://a:notaport\"\n",
                "redis.url: is not a Redis URL the client can use",
            ),
            (
                "[limits]\nredis_url = \"redis+sentinel://s:26379\"\n",
                "limits.redis_url: a Sentinel URL names its master",
            ),
            (
                "[redis]\nurl = \"redis://a\"\ntimeout = \"0s\"\n",
                "redis.timeout: must be greater than 0",
            ),
            (
                "[redis]\nurl = \"redis://a\"\nprefix = \"{x}\"\n",
                "redis.prefix",
            ),
            ("[redis]\nurl = \"redis://a\"\nport = 1\n", "port"),
            (
                "[redis]\nurl = \"redis://a\"\ntls_ca_file = \"ca.pem\"\n",
                "redis.tls_ca_file: applies to a TLS url only",
            ),
            (
                "[redis]\nurl = \"redis+sentinel://s:1/m\"\ntls_cert_file = \"c.pem\"\n",
                "redis.tls_cert_file: applies to a TLS url only",
            ),
            (
                "[redis]\nurl = \"rediss://a\"\ntls_cert_file = \"c.pem\"\n",
                "redis.tls_key_file: tls_cert_file is set: give its private key too",
            ),
            (
                "[redis]\nurl = \"rediss://a\"\ntls_key_file = \"k.pem\"\n",
                "redis.tls_cert_file: tls_key_file is set",
            ),
            (
                "[redis]\nurl = \"rediss://a\"\ntls_ca_file = \"/nonexistent/ca.pem\"\n",
                "redis.tls_ca_file: cannot read /nonexistent/ca.pem",
            ),
            (
                "[redis]\nurl = \"rediss://a\"\ntls_ca_file = \"/dev/null\"\n",
                "redis.tls_ca_file: /dev/null: no certificate in the file",
            ),
        ] {
            let e = parse(extra).unwrap_err();
            assert!(e.contains(wanted), "{extra}: {e}");
        }
    }
}
