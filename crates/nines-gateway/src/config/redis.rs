//! `[redis]`: the one Redis that replicas share, for limits (`[limits]`), breaker state, half-open
//! probe leases and prober leases (`crate::replicas`).
//!
//! | key | default | meaning |
//! |-----|---------|---------|
//! | `url` | — | `redis://`, `rediss://` (TLS), or `redis+sentinel://host:port[,host:port…]/service[/db]`; `env:NAME` reads the environment |
//! | `cluster` | `false` | `url` is one node of a Redis Cluster; the others are discovered |
//! | `timeout` | `100ms` | every breaker and lease call's deadline |
//! | `prefix` | `"nines"` | the hash tag of every breaker and lease key |
//! | `probe_lease` | `10s` | how long one replica owns a half-open probe or a deployment's prober |
//!
//! `[limits] redis_url` is still accepted as an alias of `url` (a plain Redis); setting both is
//! an error, because two URLs cannot both be the shared one.

use super::Secret;
use super::access::RawLimits;
use serde::Deserialize;
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
}

impl Default for RawRedis {
    fn default() -> Self {
        RawRedis {
            url: None,
            cluster: false,
            timeout: Duration::from_millis(100),
            prefix: "nines".into(),
            probe_lease: Duration::from_secs(10),
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
        }
    }
}

type ErrAt<'a> = dyn Fn(Option<std::ops::Range<usize>>, String, String) -> super::ConfigError + 'a;

/// `[redis]` (or the `[limits] redis_url` alias) → the shared Redis, if any.
pub(super) fn validate(
    raw: Option<&RawRedis>,
    limits: &RawLimits,
    env: &dyn Fn(&str) -> Option<String>,
    err: &ErrAt<'_>,
) -> Result<Option<RedisConfig>, super::ConfigError> {
    let url = |u: &Spanned<String>, key: &str| {
        let url = super::access::resolve_env(u.get_ref(), env)
            .map_err(|m| err(Some(u.span()), key.into(), m))?;
        check_scheme(&url).map_err(|m| err(Some(u.span()), key.into(), m))?;
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
            Ok(Some(RedisConfig {
                url: Secret::new(url),
                cluster: r.cluster,
                timeout: r.timeout,
                prefix: r.prefix.clone(),
                probe_lease: r.probe_lease,
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

fn is_sentinel(url: &str) -> bool {
    url.starts_with("redis+sentinel://")
}

fn check_scheme(url: &str) -> Result<(), String> {
    if url.starts_with("redis://") || url.starts_with("rediss://") || is_sentinel(url) {
        Ok(())
    } else {
        Err("must start with redis://, rediss:// or redis+sentinel://".into())
    }
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
            (
                "[redis]\nurl = \"redis://a\"\ntimeout = \"0s\"\n",
                "redis.timeout: must be greater than 0",
            ),
            (
                "[redis]\nurl = \"redis://a\"\nprefix = \"{x}\"\n",
                "redis.prefix",
            ),
            ("[redis]\nurl = \"redis://a\"\nport = 1\n", "port"),
        ] {
            let e = parse(extra).unwrap_err();
            assert!(e.contains(wanted), "{extra}: {e}");
        }
    }
}
