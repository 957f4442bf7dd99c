//! The connection to the shared Redis, whatever its shape: one server (`redis://`, `rediss://`
//! with TLS), a master found through Sentinel (`redis+sentinel://`, `rediss+sentinel://` with
//! TLS to the sentinels and the master), or a Redis Cluster (`[redis] cluster = true`, any node
//! as the seed). Everything that talks to Redis — limits, breaker state, leases, key-change
//! announcements — takes a [`Conn`] or a pub/sub connection from here and gives every call a
//! deadline.
//!
//! TLS uses the redis crate's own certificate support (`TlsCertificates`) with the CAs and client
//! certificate of `[redis] tls_*`, for every shape. A server whose certificate does not verify is
//! a Redis that cannot be reached: calls fail, readiness says so, and the log says why once per
//! outage (see [`RedisLink::query`]).
//!
//! Connecting never blocks the start: a single server is connected lazily (the connection
//! manager reconnects by itself), a cluster or a Sentinel master is looked for in the background
//! every second until found. Sentinel's answer is asked again every [`SENTINEL_RECHECK`], so a
//! failover moves the connection to the new master.

use crate::config::redis::RedisConfig;
use crate::config::redis_tls::RedisTls;
use crate::config::redis_url::{Sentinel, is_sentinel, parse_sentinel};
use arc_swap::ArcSwapOption;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClientBuilder, SentinelServerType};
use redis::{
    Client, ClientTlsConfig, Cmd, IntoConnectionInfo, RedisFuture, TlsCertificates, Value,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// How often the Sentinel master is asked for again.
const SENTINEL_RECHECK: Duration = Duration::from_secs(2);
/// How soon a cluster or Sentinel that could not be reached is tried again.
const RETRY: Duration = Duration::from_secs(1);

/// One connection to the shared Redis; cheap to clone (multiplexed underneath).
#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// Where the shared Redis is, as the URL says.
#[derive(Debug, Clone, PartialEq)]
enum Shape {
    Single(String),
    Cluster(String),
    Sentinel(Sentinel),
}

fn shape_of(config: &RedisConfig) -> Result<Shape, String> {
    let url = config.url.expose();
    if is_sentinel(url) {
        return parse_sentinel(url).map(Shape::Sentinel);
    }
    // Checked here so a bad URL is a start-up error, not a background retry forever.
    client_for(url, &config.tls)?;
    Ok(if config.cluster {
        Shape::Cluster(url.to_owned())
    } else {
        Shape::Single(url.to_owned())
    })
}

/// The shared Redis connection and who this replica is to the others.
pub struct RedisLink {
    shape: Shape,
    pub config: RedisConfig,
    /// This process, as other replicas see it: the owner value of its leases, the origin of
    /// what it publishes.
    pub replica: String,
    conn: ArcSwapOption<Conn>,
    /// The client of the single server or Sentinel master (for pub/sub connections).
    client: ArcSwapOption<Client>,
    /// Woken when `conn` is first set or replaced (see [`RedisLink::connected`]).
    stored: Notify,
    /// Whether the last call found Redis unreachable (its reason is logged once per outage).
    down: AtomicBool,
}

impl std::fmt::Debug for RedisLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLink")
            .field("mode", &self.mode())
            .field("replica", &self.replica)
            .finish_non_exhaustive()
    }
}

impl RedisLink {
    /// Opens the link: a bad URL is an error now; an unreachable Redis is not (see the module
    /// header). Must run inside a Tokio runtime when Redis is a cluster or behind Sentinel.
    pub fn open(config: &RedisConfig) -> Result<Arc<RedisLink>, String> {
        crate::providers::install_crypto_provider();
        let shape = shape_of(config).map_err(|e| format!("redis.url: {e}"))?;
        let link = Arc::new(RedisLink {
            shape: shape.clone(),
            config: config.clone(),
            replica: uuid::Uuid::new_v4().simple().to_string(),
            conn: ArcSwapOption::empty(),
            client: ArcSwapOption::empty(),
            stored: Notify::new(),
            down: AtomicBool::new(false),
        });
        match &shape {
            Shape::Single(url) => {
                let client = client_for(url, &config.tls).map_err(|e| format!("redis.url: {e}"))?;
                let manager = ConnectionManager::new_lazy_with_config(
                    client.clone(),
                    manager_config(config.timeout),
                )
                .map_err(|e| format!("redis.url: {e}"))?;
                link.set(Conn::Single(manager), Some(client));
            }
            Shape::Cluster(_) | Shape::Sentinel(_) => {
                let handle = tokio::runtime::Handle::try_current()
                    .map_err(|_| "redis: a cluster or Sentinel needs the async runtime")?;
                handle.spawn(keep_connected(Arc::downgrade(&link)));
            }
        }
        Ok(link)
    }

    /// `single`, `cluster` or `sentinel` (for `/health/ready` and `/admin/status`).
    pub fn mode(&self) -> &'static str {
        match self.shape {
            Shape::Single(_) => "single",
            Shape::Cluster(_) => "cluster",
            Shape::Sentinel(_) => "sentinel",
        }
    }

    /// A connection, or why there is none yet.
    pub fn conn(&self) -> Result<Conn, String> {
        self.conn
            .load_full()
            .map(|c| (*c).clone())
            .ok_or_else(|| format!("not connected to the {} Redis yet", self.mode()))
    }

    /// A connection as soon as there is one, waiting at most `within` (a cluster or Sentinel
    /// master is found in the background after [`RedisLink::open`]): for a process that opens
    /// the link to make one call, such as the CLI.
    pub async fn connected(&self, within: Duration) -> Result<Conn, String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let stored = self.stored.notified();
            tokio::pin!(stored);
            // Registered before the check, so a connection stored in between still wakes us.
            stored.as_mut().enable();
            if let Ok(conn) = self.conn() {
                return Ok(conn);
            }
            if tokio::time::timeout_at(deadline, stored).await.is_err() {
                return self.conn();
            }
        }
    }

    fn set(&self, conn: Conn, client: Option<Client>) {
        self.conn.store(Some(Arc::new(conn)));
        if let Some(client) = client {
            self.client.store(Some(Arc::new(client)));
        }
        self.stored.notify_waiters();
    }

    /// Notes the outcome of a call that reached for Redis: the first failure of an outage is
    /// logged with its reason (a refused certificate, a refused connection), the first success
    /// after it too, and nothing in between. No secret is in a redis error's text.
    fn observe<T>(&self, outcome: Result<T, String>) -> Result<T, String> {
        match &outcome {
            Ok(_) if self.down.swap(false, Ordering::AcqRel) => {
                tracing::info!(mode = self.mode(), "redis answers again");
            }
            Err(e) if !self.down.swap(true, Ordering::AcqRel) => {
                tracing::warn!(mode = self.mode(), error = %e, "redis unreachable");
            }
            _ => {}
        }
        outcome
    }

    /// The key prefix's hash tag, `{prefix}`: every key of this link's users starts with it, so
    /// a cluster keeps them in one slot and a script may touch several.
    pub fn tag(&self) -> String {
        format!("{{{}}}", self.config.prefix)
    }

    /// Runs `cmd` within the link's timeout.
    pub async fn query<T: redis::FromRedisValue>(&self, cmd: &Cmd) -> Result<T, String> {
        self.query_within(cmd, self.config.timeout).await
    }

    /// Runs `cmd` within `within`.
    pub async fn query_within<T: redis::FromRedisValue>(
        &self,
        cmd: &Cmd,
        within: Duration,
    ) -> Result<T, String> {
        let mut conn = self.conn()?;
        let outcome = match tokio::time::timeout(within, cmd.query_async::<T>(&mut conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".into()),
        };
        self.observe(outcome)
    }

    /// `PING` within the timeout (at least 500 ms: a readiness check may wait a little).
    pub async fn ping(&self) -> Result<(), String> {
        let within = self.config.timeout.max(Duration::from_millis(500));
        self.query_within::<String>(&redis::cmd("PING"), within)
            .await
            .map(drop)
    }

    /// A new pub/sub connection. In a cluster `PUBLISH` reaches every node, so one
    /// subscription on the seed node hears every replica.
    pub async fn pubsub(&self) -> Result<redis::aio::PubSub, String> {
        let client = match &self.shape {
            Shape::Cluster(url) => client_for(url, &self.config.tls)?,
            _ => self
                .client
                .load_full()
                .map(|c| (*c).clone())
                .ok_or_else(|| format!("not connected to the {} Redis yet", self.mode()))?,
        };
        let within = self.config.timeout.max(Duration::from_secs(1));
        match tokio::time::timeout(within, client.get_async_pubsub()).await {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".into()),
        }
    }
}

/// The redis crate's form of the `[redis] tls_*` material.
fn certificates(tls: &RedisTls) -> TlsCertificates {
    TlsCertificates {
        client_tls: tls.client.as_ref().map(|c| ClientTlsConfig {
            client_cert: c.cert.clone(),
            client_key: c.key.clone(),
        }),
        root_cert: tls.ca.clone(),
    }
}

/// Whether `url` is `rediss://…#insecure` (certificate checks off: tests only).
fn insecure(url: &str) -> bool {
    url.into_connection_info().is_ok_and(|info| {
        matches!(
            info.addr(),
            redis::ConnectionAddr::TcpTls { insecure: true, .. }
        )
    })
}

/// A client of the one server at `url`, with the `[redis] tls_*` material when there is some
/// (validation allows it only with a TLS URL).
fn client_for(url: &str, tls: &RedisTls) -> Result<Client, String> {
    let client = if tls.is_empty() {
        Client::open(url)
    } else {
        Client::build_with_tls(url, certificates(tls))
    };
    client.map_err(|e| e.to_string())
}

fn manager_config(timeout: Duration) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout.max(Duration::from_millis(200))))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500))
}

/// Finds the cluster or the Sentinel master, and for Sentinel keeps following its answer, until
/// the link is dropped.
async fn keep_connected(link: std::sync::Weak<RedisLink>) {
    let mut logged_down = false;
    let mut master: Option<String> = None;
    loop {
        let Some(live) = link.upgrade() else { return };
        let found = connect_once(&live, master.as_deref()).await;
        let wait = match found {
            Ok(Some(addr)) => {
                if master.as_deref() != Some(addr.as_str()) {
                    tracing::info!(mode = live.mode(), master = %addr, "redis connected");
                }
                master = Some(addr);
                logged_down = false;
                SENTINEL_RECHECK
            }
            // A cluster connection follows the topology itself: nothing more to do.
            Ok(None) => {
                tracing::info!(mode = live.mode(), "redis connected");
                return;
            }
            Err(e) => {
                if !logged_down {
                    tracing::warn!(mode = live.mode(), error = %e, "redis unreachable; retrying every second");
                    logged_down = true;
                }
                RETRY
            }
        };
        drop(live);
        tokio::time::sleep(wait).await;
    }
}

/// One connection attempt: `Ok(Some(master address))` for Sentinel, `Ok(None)` for a cluster.
async fn connect_once(link: &RedisLink, known: Option<&str>) -> Result<Option<String>, String> {
    let timeout = link.config.timeout.max(Duration::from_millis(500));
    match &link.shape {
        Shape::Single(_) => Ok(None),
        Shape::Cluster(url) => {
            let mut builder = redis::cluster::ClusterClientBuilder::new(vec![url.as_str()])
                .connection_timeout(timeout)
                .response_timeout(link.config.timeout)
                .retries(1);
            if !link.config.tls.is_empty() {
                // `certs` would otherwise switch the mode to verified.
                if insecure(url) {
                    builder = builder.tls(redis::TlsMode::Insecure);
                }
                builder = builder.certs(certificates(&link.config.tls));
            }
            let client = builder.build().map_err(|e| e.to_string())?;
            let conn = tokio::time::timeout(timeout * 4, client.get_async_connection())
                .await
                .map_err(|_| "timed out".to_owned())?
                .map_err(|e| e.to_string())?;
            link.set(Conn::Cluster(conn), None);
            Ok(None)
        }
        Shape::Sentinel(s) => {
            let mut sentinel = sentinel_client(s, &link.config.tls).map_err(|e| e.to_string())?;
            let client = tokio::time::timeout(timeout * 4, sentinel.async_get_client())
                .await
                .map_err(|_| "timed out".to_owned())?
                .map_err(|e| e.to_string())?;
            let addr = client.get_connection_info().addr().to_string();
            if known != Some(addr.as_str()) || link.conn.load().is_none() {
                let manager = ConnectionManager::new_lazy_with_config(
                    client.clone(),
                    manager_config(link.config.timeout),
                )
                .map_err(|e| e.to_string())?;
                link.set(Conn::Single(manager), Some(client));
            }
            Ok(Some(addr))
        }
    }
}

/// Asks the sentinels for the master of `s`, with its credentials and database; with TLS, the
/// sentinels and the master are verified against the `[redis] tls_*` CAs (or the system's) and
/// are shown the client certificate.
fn sentinel_client(
    s: &Sentinel,
    tls: &RedisTls,
) -> redis::RedisResult<redis::sentinel::SentinelClient> {
    let sentinels = s
        .sentinels
        .iter()
        .map(|url| {
            url.as_str()
                .into_connection_info()
                .map(|i| i.addr().clone())
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut builder =
        SentinelClientBuilder::new(sentinels, &s.service, SentinelServerType::Master)?
            .set_client_to_redis_db(s.db);
    if let Some(user) = &s.username {
        builder = builder.set_client_to_redis_username(user);
    }
    if let Some(password) = &s.password {
        builder = builder.set_client_to_redis_password(password);
    }
    if s.tls {
        builder = builder
            .set_client_to_sentinel_tls_mode(redis::TlsMode::Secure)
            .set_client_to_redis_tls_mode(redis::TlsMode::Secure);
        if !tls.is_empty() {
            builder = builder
                .set_client_to_sentinel_certificates(certificates(tls))
                .set_client_to_redis_certificates(certificates(tls));
        }
    }
    builder.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_follow_the_url_and_the_cluster_flag() {
        let mut config = RedisConfig::at("rediss://h:6380");
        assert_eq!(
            shape_of(&config).unwrap(),
            Shape::Single("rediss://h:6380".into())
        );
        config.cluster = true;
        assert!(matches!(shape_of(&config).unwrap(), Shape::Cluster(_)));
        assert!(shape_of(&RedisConfig::at("redis://h:notaport")).is_err());
    }
}
