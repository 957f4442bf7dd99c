//! The connection to the shared Redis, whatever its shape: one server (`redis://`, `rediss://`
//! with TLS), a master found through Sentinel (`redis+sentinel://`), or a Redis Cluster
//! (`[redis] cluster = true`, any node as the seed). Everything that talks to Redis — limits,
//! breaker state, leases — takes a [`Conn`] from here and gives every call a deadline.
//!
//! Connecting never blocks the start: a single server is connected lazily (the connection
//! manager reconnects by itself), a cluster or a Sentinel master is looked for in the background
//! every second until found. Sentinel's answer is asked again every [`SENTINEL_RECHECK`], so a
//! failover moves the connection to the new master.

use crate::config::redis::RedisConfig;
use arc_swap::ArcSwapOption;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{Client, Cmd, RedisFuture, Value};
use std::sync::Arc;
use std::time::Duration;

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

/// `redis+sentinel://[[user]:password@]host:port[,host:port…]/service[/db]`: the password and
/// database are the master's; the sentinels are asked without credentials.
#[derive(Debug, Clone, PartialEq)]
struct Sentinel {
    sentinels: Vec<String>,
    service: String,
    username: Option<String>,
    password: Option<String>,
    db: i64,
}

fn parse_sentinel(url: &str) -> Result<Sentinel, String> {
    let rest = url
        .strip_prefix("redis+sentinel://")
        .ok_or("not a redis+sentinel:// URL")?;
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
        .map(|h| format!("redis://{h}"))
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
        service,
        username,
        password,
        db,
    })
}

fn shape_of(config: &RedisConfig) -> Result<Shape, String> {
    let url = config.url.expose();
    if url.starts_with("redis+sentinel://") {
        return parse_sentinel(url).map(Shape::Sentinel);
    }
    // Checked here so a bad URL is a start-up error, not a background retry forever.
    redis::Client::open(url).map_err(|e| e.to_string())?;
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
        });
        match &shape {
            Shape::Single(url) => {
                let client = Client::open(url.as_str()).map_err(|e| format!("redis.url: {e}"))?;
                let manager = ConnectionManager::new_lazy_with_config(
                    client.clone(),
                    manager_config(config.timeout),
                )
                .map_err(|e| format!("redis.url: {e}"))?;
                link.conn.store(Some(Arc::new(Conn::Single(manager))));
                link.client.store(Some(Arc::new(client)));
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

    /// The key prefix's hash tag, `{prefix}`: every key of this link's users starts with it, so
    /// a cluster keeps them in one slot and a script may touch several.
    pub fn tag(&self) -> String {
        format!("{{{}}}", self.config.prefix)
    }

    /// Runs `cmd` within the link's timeout.
    pub async fn query<T: redis::FromRedisValue>(&self, cmd: &Cmd) -> Result<T, String> {
        let mut conn = self.conn()?;
        match tokio::time::timeout(self.config.timeout, cmd.query_async::<T>(&mut conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".into()),
        }
    }

    /// `PING` within the timeout (at least 500 ms: a readiness check may wait a little).
    pub async fn ping(&self) -> Result<(), String> {
        let mut conn = self.conn()?;
        let within = self.config.timeout.max(Duration::from_millis(500));
        match tokio::time::timeout(within, redis::cmd("PING").query_async::<String>(&mut conn))
            .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".into()),
        }
    }

    /// A new pub/sub connection. In a cluster `PUBLISH` reaches every node, so one
    /// subscription on the seed node hears every replica.
    pub async fn pubsub(&self) -> Result<redis::aio::PubSub, String> {
        let client = match &self.shape {
            Shape::Cluster(url) => Client::open(url.as_str()).map_err(|e| e.to_string())?,
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
            let client = redis::cluster::ClusterClientBuilder::new(vec![url.as_str()])
                .connection_timeout(timeout)
                .response_timeout(link.config.timeout)
                .retries(1)
                .build()
                .map_err(|e| e.to_string())?;
            let conn = tokio::time::timeout(timeout * 4, client.get_async_connection())
                .await
                .map_err(|_| "timed out".to_owned())?
                .map_err(|e| e.to_string())?;
            link.conn.store(Some(Arc::new(Conn::Cluster(conn))));
            Ok(None)
        }
        Shape::Sentinel(s) => {
            let mut info = redis::RedisConnectionInfo::default().set_db(s.db);
            if let Some(user) = &s.username {
                info = info.set_username(user);
            }
            if let Some(password) = &s.password {
                info = info.set_password(password);
            }
            let node = SentinelNodeConnectionInfo::default().set_redis_connection_info(info);
            let mut sentinel = SentinelClient::build(
                s.sentinels.clone(),
                s.service.clone(),
                Some(node),
                SentinelServerType::Master,
            )
            .map_err(|e| e.to_string())?;
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
                link.conn.store(Some(Arc::new(Conn::Single(manager))));
                link.client.store(Some(Arc::new(client)));
            }
            Ok(Some(addr))
        }
    }
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
        assert_eq!((plain.password, plain.db), (None, 0));
        for bad in [
            "redis+sentinel://h:26379",
            "redis+sentinel://h:26379/",
            "redis+sentinel:///m",
            "redis+sentinel://h:1/m/x",
        ] {
            assert!(parse_sentinel(bad).is_err(), "{bad}");
        }
    }

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
