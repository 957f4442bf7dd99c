//! Real Redis processes for the multi-replica tests, started with Debian's `redis-server` on
//! free ports of 127.0.0.1 in a temporary directory, and stopped (and the directory removed)
//! when dropped: a single server, a three-master Redis Cluster, and a master behind a Sentinel.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Redis processes and their directory; all killed and removed on drop.
pub struct RedisProcesses {
    pub ports: Vec<u16>,
    children: Vec<Child>,
    dir: PathBuf,
}

impl Drop for RedisProcesses {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Why these tests cannot run here, when they cannot.
pub fn missing_tools() -> Option<String> {
    for tool in ["redis-server", "redis-cli"] {
        let found = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Some(format!(
                "{tool} is not installed (apt-get install redis-server)"
            ));
        }
    }
    None
}

/// `n` ports whose cluster bus ports (+10000) are free too. Tests run in parallel: each call
/// starts past the ports the previous calls of this process handed out, so two tests never
/// pick the same free port.
fn free_ports(n: usize) -> Vec<u16> {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let free = |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok();
    let _ = NEXT.compare_exchange(
        0,
        7100 + (std::process::id() % 200) as u16 * 10,
        Ordering::AcqRel,
        Ordering::Acquire,
    );
    let mut ports = Vec::new();
    while ports.len() < n {
        let p = NEXT.fetch_add(1, Ordering::AcqRel);
        let p = 7100 + (p - 7100) % 2800;
        if free(p) && free(p + 10_000) {
            ports.push(p);
        }
    }
    ports
}

fn dir() -> PathBuf {
    let dir = crate::serve::tempdir().join("redis");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn spawn_server(dir: &std::path::Path, port: u16, extra: &[&str]) -> Child {
    let mut cmd = Command::new("redis-server");
    cmd.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        dir.to_str().unwrap(),
    ])
    .args(extra)
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    cmd.spawn().expect("start redis-server")
}

fn cli(port: u16, args: &[&str]) -> Option<String> {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Waits (at most 20 s, in 50 ms steps) until `ready`.
#[expect(
    clippy::disallowed_methods,
    reason = "Redis starts before any gateway of the test runs: nothing else on this runtime \
              waits for the thread, and redis-cli is a blocking process call anyway"
)]
fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    for _ in 0..400 {
        if ready() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} within 20 s");
}

fn answers(port: u16) -> bool {
    cli(port, &["PING"]).is_some_and(|o| o.contains("PONG"))
}

impl RedisProcesses {
    /// One plain Redis.
    pub fn single() -> RedisProcesses {
        let dir = dir();
        let ports = free_ports(1);
        let children = vec![spawn_server(&dir, ports[0], &[])];
        wait_until("redis-server answers", || answers(ports[0]));
        RedisProcesses {
            ports,
            children,
            dir,
        }
    }

    /// A Redis Cluster of three masters and no replicas.
    pub fn cluster() -> RedisProcesses {
        let dir = dir();
        let ports = free_ports(3);
        let children = ports
            .iter()
            .map(|&p| {
                let node_dir = dir.join(p.to_string());
                std::fs::create_dir_all(&node_dir).unwrap();
                spawn_server(
                    &node_dir,
                    p,
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                    ],
                )
            })
            .collect();
        let cluster = RedisProcesses {
            ports,
            children,
            dir,
        };
        for &p in &cluster.ports {
            wait_until("cluster node answers", || answers(p));
        }
        let nodes: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let mut args = vec!["--cluster", "create"];
        args.extend(nodes.iter().map(String::as_str));
        args.extend(["--cluster-replicas", "0", "--cluster-yes"]);
        let created = cli(cluster.ports[0], &args);
        assert!(created.is_some(), "redis-cli --cluster create");
        for &p in &cluster.ports {
            wait_until("cluster_state:ok", || {
                cli(p, &["CLUSTER", "INFO"]).is_some_and(|o| o.contains("cluster_state:ok"))
            });
        }
        cluster
    }

    /// A master and one Sentinel watching it as `mymaster`; `ports` = [master, sentinel].
    pub fn sentinel() -> RedisProcesses {
        let dir = dir();
        let ports = free_ports(2);
        let master = spawn_server(&dir, ports[0], &[]);
        wait_until("master answers", || answers(ports[0]));
        let conf = dir.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {}\nbind 127.0.0.1\ndir {}\nsentinel monitor mymaster 127.0.0.1 {} 1\n",
                ports[1],
                dir.display(),
                ports[0]
            ),
        )
        .unwrap();
        let sentinel = Command::new("redis-server")
            .arg(conf.to_str().unwrap())
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server --sentinel");
        let processes = RedisProcesses {
            ports,
            children: vec![master, sentinel],
            dir,
        };
        let sentinel_port = processes.ports[1];
        wait_until("sentinel knows the master", || {
            cli(
                sentinel_port,
                &["SENTINEL", "get-master-addr-by-name", "mymaster"],
            )
            .is_some_and(|o| o.contains("127.0.0.1"))
        });
        processes
    }

    /// One Redis that speaks only TLS, with a self-signed certificate made by `openssl`;
    /// `None` when `openssl` is missing.
    pub fn tls() -> Option<RedisProcesses> {
        let dir = dir();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let made = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=127.0.0.1", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !made {
            let _ = std::fs::remove_dir_all(&dir);
            return None;
        }
        let ports = free_ports(1);
        let port = ports[0].to_string();
        let child = spawn_server(
            &dir,
            0,
            &[
                "--tls-port",
                &port,
                "--tls-cert-file",
                cert.to_str().unwrap(),
                "--tls-key-file",
                key.to_str().unwrap(),
                "--tls-ca-cert-file",
                cert.to_str().unwrap(),
                "--tls-auth-clients",
                "no",
            ],
        );
        let ready = || {
            Command::new("redis-cli")
                .args([
                    "--tls",
                    "--insecure",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port,
                    "PING",
                ])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("PONG"))
        };
        let processes = RedisProcesses {
            ports,
            children: vec![child],
            dir,
        };
        wait_until("TLS redis-server answers", ready);
        Some(processes)
    }

    /// `redis://127.0.0.1:<first port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.ports[0])
    }

    /// Stops the `i`-th process (Redis goes away under the gateways).
    pub fn kill(&mut self, i: usize) {
        let _ = self.children[i].kill();
        let _ = self.children[i].wait();
    }

    /// Starts the single server again on its port.
    pub fn restart_single(&mut self) {
        self.children[0] = spawn_server(&self.dir, self.ports[0], &[]);
        let port = self.ports[0];
        wait_until("redis-server answers again", || answers(port));
    }

    /// `redis://` of a cluster node that does not hold `key`'s slot (it answers MOVED).
    pub fn node_not_owning(&self, key: &str) -> String {
        let port = self
            .ports
            .iter()
            .copied()
            .find(|&p| cli(p, &["GET", key]).is_some_and(|o| o.contains("MOVED")))
            .expect("a node that does not own the slot");
        format!("redis://127.0.0.1:{port}")
    }

    /// Every key on every node (`redis-cli --scan`).
    pub fn keys(&self) -> Vec<String> {
        self.ports
            .iter()
            .filter_map(|&p| cli(p, &["--scan"]))
            .flat_map(|o| o.lines().map(str::to_owned).collect::<Vec<_>>())
            .collect()
    }
}
