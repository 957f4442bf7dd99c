//! Where a deployment's key may be sent: the scheme, host and port of its `base_url`, the hosts
//! its provider kind documents as its own, and its `credential_hosts` (both HTTPS only). A URL
//! an upstream hands back (a Replicate prediction's `urls.get` and `urls.cancel`) is checked
//! against this before the key goes with it: a spoofed or compromised upstream must not make
//! nines send the key, or authenticated requests, anywhere else. Redirects are never followed
//! (`http_client`), so a checked URL cannot lead elsewhere either.

use crate::config::{Deployment, ProviderKind};

/// The hosts a provider kind documents as serving its API, beyond the configured base URL.
fn documented(kind: ProviderKind) -> &'static [&'static str] {
    match kind {
        // Predictions are created at the base URL; their `urls` point at this host.
        ProviderKind::Replicate => &["api.replicate.com"],
        _ => &[],
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

impl Origin {
    fn of(url: &reqwest::Url) -> Origin {
        Origin {
            scheme: url.scheme().to_owned(),
            host: url.host_str().unwrap_or_default().to_owned(),
            port: url.port_or_known_default(),
        }
    }
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct CredentialScope {
    base: Option<Origin>,
    /// `host` or `host:port`, reached over HTTPS only.
    hosts: Vec<String>,
}

impl CredentialScope {
    pub fn of(deployment: &Deployment) -> CredentialScope {
        CredentialScope::new(
            &deployment.base_url,
            documented(deployment.provider),
            &deployment.credential_hosts,
        )
    }

    fn new(base_url: &str, documented: &[&str], extra: &[String]) -> CredentialScope {
        CredentialScope {
            base: reqwest::Url::parse(base_url).ok().map(|u| Origin::of(&u)),
            hosts: documented
                .iter()
                .map(|h| (*h).to_owned())
                .chain(extra.iter().cloned())
                .collect(),
        }
    }

    /// `url` when the key may go there; else why not (never the URL's query, which may carry a
    /// token).
    pub fn allow(&self, url: &str) -> Result<reqwest::Url, String> {
        let parsed = reqwest::Url::parse(url).map_err(|_| "not a URL".to_owned())?;
        let origin = Origin::of(&parsed);
        let with_port = origin.port.map(|p| format!("{}:{p}", origin.host));
        let listed = origin.scheme == "https"
            && self
                .hosts
                .iter()
                .any(|h| *h == origin.host || Some(h) == with_port.as_ref());
        if self.base.as_ref() == Some(&origin) || listed {
            Ok(parsed)
        } else {
            Err(format!(
                "the upstream pointed at {}://{}{}, which is not this deployment's host: not sent \
                 with its key",
                origin.scheme,
                origin.host,
                parsed.path()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CredentialScope;

    #[test]
    fn only_the_base_origin_and_listed_https_hosts_get_the_key() {
        let scope = CredentialScope::new(
            "http://10.0.0.5:8000/replicate",
            &["api.replicate.com"],
            &["files.example.com:8443".to_owned()],
        );
        let allowed = |url: &str| scope.allow(url).is_ok();
        assert!(allowed("http://10.0.0.5:8000/v1/predictions/p1"));
        assert!(allowed("https://api.replicate.com/v1/predictions/p1"));
        assert!(allowed("https://files.example.com:8443/x"));
        // Same host, another port or scheme; a listed host over plain HTTP; userinfo tricks.
        assert!(!allowed("http://10.0.0.5:8001/v1/predictions/p1"));
        assert!(!allowed("https://10.0.0.5:8000/v1/predictions/p1"));
        assert!(!allowed("http://api.replicate.com/v1/predictions/p1"));
        assert!(!allowed("https://files.example.com/x"));
        assert!(!allowed("http://10.0.0.5:8000@evil.example/v1"));
        assert!(!allowed("https://api.replicate.com.evil.example/v1"));
        assert!(!allowed("not a url"));
    }

    #[test]
    fn a_refusal_names_the_host_but_not_the_query() {
        let scope = CredentialScope::new("https://api.replicate.com", &[], &[]);
        let why = scope
            .allow("https://evil.example/steal?token=SECRET")
            .unwrap_err();
        assert!(why.contains("evil.example/steal"), "{why}");
        assert!(!why.contains("SECRET"), "{why}");
    }
}
