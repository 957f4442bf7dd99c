//! The shapes of `[redis] url`, read when the configuration loads (so `nines check` and a
//! reload reject a URL the link could not use) and again by `replicas::link` when it opens:
//! one server (`redis://`, `rediss://`), a cluster (the same, with `cluster = true`) or a
//! master found through Sentinel (`redis+sentinel://`, `rediss+sentinel://`).
//!
//! Errors never repeat the URL: it may hold a password.

use redis::IntoConnectionInfo;

pub fn is_sentinel(url: &str) -> bool {
    url.starts_with("redis+sentinel://") || url.starts_with("rediss+sentinel://")
}

/// Whether `url` speaks TLS (to the server, or to the sentinels and the master).
pub fn is_tls(url: &str) -> bool {
    url.starts_with("rediss://") || url.starts_with("rediss+sentinel://")
}

/// Whether the link can use `url`: a Sentinel URL by [`parse_sentinel`], a `redis://` or
/// `rediss://` one by the redis crate's own parser, any other scheme not at all.
pub fn check(url: &str) -> Result<(), String> {
    if is_sentinel(url) {
        return parse_sentinel(url).map(drop);
    }
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        return Err(
            "must start with redis://, rediss://, redis+sentinel:// or rediss+sentinel://".into(),
        );
    }
    url.into_connection_info()
        .map(drop)
        .map_err(|_| "is not a Redis URL the client can use (redis://host:port[/db])".into())
}

/// `redis+sentinel://[[user]:password@]host:port[,host:port…]/service[/db]`: the password and
/// database are the master's; the sentinels are asked without credentials. `rediss+sentinel://`
/// speaks TLS to the sentinels and to the master.
#[derive(Debug, Clone, PartialEq)]
pub struct Sentinel {
    /// `redis://host:port` (`rediss://` with TLS).
    pub sentinels: Vec<String>,
    pub tls: bool,
    pub service: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: i64,
}

pub fn parse_sentinel(url: &str) -> Result<Sentinel, String> {
    let (tls, rest) = match url.strip_prefix("rediss+sentinel://") {
        Some(rest) => (true, rest),
        None => (
            false,
            url.strip_prefix("redis+sentinel://")
                .ok_or("not a redis+sentinel:// URL")?,
        ),
    };
    if rest.contains('#') {
        // `#insecure` would check the sentinels' certificates but not the master's.
        return Err("a Sentinel URL takes no #fragment (#insecure is for rediss:// only); give [redis] tls_ca_file".into());
    }
    let scheme = if tls { "rediss" } else { "redis" };
    let (userinfo, rest) = match rest.rsplit_once('@') {
        Some((user, rest)) => (Some(user), rest),
        None => (None, rest),
    };
    let (hosts, path) = rest
        .split_once('/')
        .ok_or("a Sentinel URL names its master: redis+sentinel://host:port/service")?;
    let sentinels: Vec<String> = hosts
        .split(',')
        .filter(|h| !h.is_empty())
        .map(|h| format!("{scheme}://{h}"))
        .collect();
    if sentinels.is_empty() {
        return Err("a Sentinel URL needs at least one host:port".into());
    }
    let mut parts = path.split('/');
    let service = parts.next().unwrap_or_default().to_owned();
    if service.is_empty() {
        return Err("a Sentinel URL names its master: redis+sentinel://host:port/service".into());
    }
    let db = match parts.next() {
        Some(db) if !db.is_empty() => db
            .parse()
            .map_err(|_| "the database after the service name must be a number")?,
        _ => 0,
    };
    let (username, password) = match userinfo {
        Some(info) => match info.split_once(':') {
            Some((user, password)) => (
                (!user.is_empty()).then(|| user.to_owned()),
                Some(password.to_owned()),
            ),
            None => (None, Some(info.to_owned())),
        },
        None => (None, None),
    };
    Ok(Sentinel {
        sentinels,
        tls,
        service,
        username,
        password,
        db,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls_name_sentinels_service_credentials_and_database() {
        let s = parse_sentinel("redis+sentinel://:pw@10.0.0.1:26379,10.0.0.2:26380/mymaster/2")
            .unwrap();
        assert_eq!(
            s.sentinels,
            ["redis://10.0.0.1:26379", "redis://10.0.0.2:26380"]
        );
        assert_eq!(s.service, "mymaster");
        assert_eq!(s.password.as_deref(), Some("pw"));
        assert_eq!(s.username, None);
        assert_eq!(s.db, 2);
        let plain = parse_sentinel("redis+sentinel://h:26379/m").unwrap();
        assert_eq!((plain.password, plain.db, plain.tls), (None, 0, false));
        let tls = parse_sentinel("rediss+sentinel://h:26379,i:26379/m").unwrap();
        assert!(tls.tls);
        assert_eq!(tls.sentinels, ["rediss://h:26379", "rediss://i:26379"]);
        for bad in [
            "redis+sentinel://h:26379",
            "redis+sentinel://h:26379/",
            "redis+sentinel:///m",
            "redis+sentinel://h:1/m/x",
            "rediss+sentinel://h:1/m#insecure",
        ] {
            assert!(parse_sentinel(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn plain_urls_are_checked_by_the_clients_parser_without_repeating_them() {
        for good in [
            "redis://h:6379",
            "rediss://h:6380/2",
            "redis://:secret@h:6379",
        ] {
            assert_eq!(check(good), Ok(()), "{good}");
        }
        for bad in [
            "redis://:secret@h:notaport",
            "redis+sentinel://:secret@h:26379",
        ] {
            let e = check(bad).unwrap_err();
            assert!(!e.contains("secret"), "{e}");
        }
    }
}
