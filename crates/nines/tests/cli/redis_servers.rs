//! Real Redis processes for the multi-replica tests, started with Debian's `redis-server` on
//! free ports of 127.0.0.1 in a temporary directory, and stopped (and the directory removed)
//! when dropped: a single server, a three-master Redis Cluster, a master behind a Sentinel (with
//! a replica it can promote), and TLS-only variants with a CA of their own (`make_pki`, by
//! `openssl`): one server (optionally demanding client certificates), a Sentinel and its master,
//! a cluster.

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

/// PEM files of a test PKI (`make_pki`).
pub struct TlsFiles {
    pub ca: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// Makes a CA (`ca.pem`), a server certificate for IP:127.0.0.1 (`server.pem`, `server.key`)
/// and a client certificate (`client.pem`, `client.key`), both signed by the CA, in `dir`, with
/// `openssl`; false when it is missing or fails.
pub fn make_pki(dir: &std::path::Path) -> bool {
    let openssl = |args: &[&str]| {
        Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    // P-256 keys: quick to make, and spoken by redis-server and rustls alike.
    let new_key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let ca = [
        &["req", "-x509", "-days", "1", "-subj", "/CN=nines test CA"][..],
        &new_key,
        &["-keyout", "ca.key", "-out", "ca.pem"],
        &["-addext", "basicConstraints=critical,CA:TRUE"],
        &["-addext", "keyUsage=critical,keyCertSign,cRLSign"],
    ]
    .concat();
    if !openssl(&ca) {
        return false;
    }
    let leaves = [
        (
            "server",
            "/CN=127.0.0.1",
            // clientAuth too: a Sentinel shows it to the master it watches.
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n",
            "1",
        ),
        (
            "client",
            "/CN=nines replica",
            "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n",
            "2",
        ),
    ];
    leaves.iter().all(|(name, subject, extensions, serial)| {
        let (key, csr, cert, ext) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        std::fs::write(dir.join(&ext), extensions).is_ok()
            && openssl(
                &[
                    &["req", "-new", "-subj", subject][..],
                    &new_key,
                    &["-keyout", &key, "-out", &csr],
                ]
                .concat(),
            )
            && openssl(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-set_serial",
                serial,
                "-days",
                "1",
                "-out",
                &cert,
                "-extfile",
                &ext,
            ])
    })
}

/// redis-server arguments for TLS only on `port`, with the certificates of `make_pki` in `dir`.
fn tls_args(dir: &std::path::Path, port: u16, client_certs: bool) -> Vec<String> {
    let file = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    [
        "--tls-port",
        &port.to_string(),
        "--tls-cert-file",
        &file("server.pem"),
        "--tls-key-file",
        &file("server.key"),
        "--tls-ca-cert-file",
        &file("ca.pem"),
        "--tls-auth-clients",
        if client_certs { "yes" } else { "no" },
    ]
    .map(String::from)
    .to_vec()
}

/// `redis-cli` over TLS (verified, with the client certificate) against `port`.
fn tls_cli(files: &TlsFiles, port: u16, args: &[&str]) -> Option<String> {
    let out = Command::new("redis-cli")
        .args(["--tls", "--cacert"])
        .arg(&files.ca)
        .arg("--cert")
        .arg(&files.client_cert)
        .arg("--key")
        .arg(&files.client_key)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
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
        Self::cluster_of(dir(), false)
    }

    /// [`RedisProcesses::cluster`] speaking only TLS, between the nodes too, demanding client
    /// certificates signed by its CA (`tls_files`); `None` when `openssl` is missing.
    pub fn tls_cluster() -> Option<RedisProcesses> {
        let dir = dir();
        if !make_pki(&dir) {
            let _ = std::fs::remove_dir_all(&dir);
            return None;
        }
        Some(Self::cluster_of(dir, true))
    }

    /// Three cluster nodes in `dir` (which holds `make_pki`'s files when `tls`).
    fn cluster_of(dir: PathBuf, tls: bool) -> RedisProcesses {
        let ports = free_ports(3);
        let children = ports
            .iter()
            .map(|&p| {
                let node_dir = dir.join(p.to_string());
                std::fs::create_dir_all(&node_dir).unwrap();
                let mut args: Vec<String> = [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                ]
                .map(String::from)
                .to_vec();
                if tls {
                    // The bus port is then the TLS port + 10000, as free_ports made sure.
                    args.extend(tls_args(&dir, p, true));
                    args.extend(
                        ["--tls-cluster", "yes", "--tls-replication", "yes"].map(String::from),
                    );
                }
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                spawn_server(&node_dir, if tls { 0 } else { p }, &args)
            })
            .collect();
        let cluster = RedisProcesses {
            ports,
            children,
            dir,
        };
        let files = cluster.tls_files();
        let cli = |port: u16, args: &[&str]| {
            if tls {
                tls_cli(&files, port, args)
            } else {
                cli(port, args)
            }
        };
        for &p in &cluster.ports {
            wait_until("cluster node answers", || {
                cli(p, &["PING"]).is_some_and(|o| o.contains("PONG"))
            });
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

    /// A master, its replica and one Sentinel (quorum 1) that fails over quickly: the master is
    /// called down after 1 s without an answer and the replica promoted. `ports` = [master,
    /// replica, sentinel].
    pub fn sentinel_with_replica() -> RedisProcesses {
        let dir = dir();
        let ports = free_ports(3);
        let (master_port, replica_port, sentinel_port) = (ports[0], ports[1], ports[2]);
        for node in ["master", "replica"] {
            std::fs::create_dir_all(dir.join(node)).unwrap();
        }
        let master = spawn_server(&dir.join("master"), master_port, &[]);
        let replica = spawn_server(
            &dir.join("replica"),
            replica_port,
            &["--replicaof", "127.0.0.1", &master_port.to_string()],
        );
        let mut processes = RedisProcesses {
            ports,
            children: vec![master, replica],
            dir,
        };
        // The Sentinel learns of replicas from the master's INFO, which it reads at once and
        // then every 10 s: the replica is in sync before it starts, so it is known at once.
        wait_until("the replica is in sync", || {
            cli(replica_port, &["INFO", "replication"])
                .is_some_and(|o| o.contains("master_link_status:up"))
        });
        let conf = processes.dir.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {sentinel_port}\nbind 127.0.0.1\ndir {}\n\
                 sentinel monitor mymaster 127.0.0.1 {master_port} 1\n\
                 sentinel down-after-milliseconds mymaster 1000\n\
                 sentinel failover-timeout mymaster 3000\n",
                processes.dir.display(),
            ),
        )
        .unwrap();
        processes.children.push(
            Command::new("redis-server")
                .arg(conf.to_str().unwrap())
                .arg("--sentinel")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start redis-server --sentinel"),
        );
        wait_until("the sentinel knows the master and its replica", || {
            cli(sentinel_port, &["SENTINEL", "replicas", "mymaster"])
                .is_some_and(|o| o.contains(&replica_port.to_string()))
        });
        processes
    }

    /// The port of the master the Sentinel (`ports[2]` of
    /// [`RedisProcesses::sentinel_with_replica`]) names now.
    pub fn sentinel_master_port(&self) -> Option<u16> {
        let out = cli(
            self.ports[2],
            &["SENTINEL", "get-master-addr-by-name", "mymaster"],
        )?;
        out.lines().nth(1)?.trim().parse().ok()
    }

    /// One Redis that speaks only TLS, on 127.0.0.1 and 127.0.0.2, with a certificate for
    /// IP:127.0.0.1 signed by a CA of its own (`tls_files`); `None` when `openssl` is missing.
    pub fn tls() -> Option<RedisProcesses> {
        Self::tls_server(false)
    }

    /// [`RedisProcesses::tls`] that also demands a client certificate signed by its CA
    /// (`--tls-auth-clients yes`).
    pub fn mutual_tls() -> Option<RedisProcesses> {
        Self::tls_server(true)
    }

    fn tls_server(client_certs: bool) -> Option<RedisProcesses> {
        let dir = dir();
        if !make_pki(&dir) {
            let _ = std::fs::remove_dir_all(&dir);
            return None;
        }
        let ports = free_ports(1);
        // Port 0 (spawn_server's): TLS only.
        let mut args = tls_args(&dir, ports[0], client_certs);
        args.extend(["--bind", "127.0.0.1", "127.0.0.2"].map(String::from));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let child = spawn_server(&dir, 0, &args);
        let processes = RedisProcesses {
            ports,
            children: vec![child],
            dir,
        };
        let port = processes.ports[0];
        let files = processes.tls_files();
        wait_until("TLS redis-server answers", || {
            tls_cli(&files, port, &["PING"]).is_some_and(|o| o.contains("PONG"))
        });
        Some(processes)
    }

    /// A master and one Sentinel watching it as `mymaster`, both speaking only TLS and both
    /// demanding client certificates signed by their CA (`tls_files`); `ports` = [master,
    /// sentinel]. `None` when `openssl` is missing.
    pub fn tls_sentinel() -> Option<RedisProcesses> {
        let dir = dir();
        if !make_pki(&dir) {
            let _ = std::fs::remove_dir_all(&dir);
            return None;
        }
        let ports = free_ports(2);
        let (master_port, sentinel_port) = (ports[0], ports[1]);
        let args = tls_args(&dir, master_port, true);
        let master_args: Vec<&str> = args.iter().map(String::as_str).collect();
        let master = spawn_server(&dir, 0, &master_args);
        let mut processes = RedisProcesses {
            ports,
            children: vec![master],
            dir,
        };
        let files = processes.tls_files();
        wait_until("TLS master answers", || {
            tls_cli(&files, master_port, &["PING"]).is_some_and(|o| o.contains("PONG"))
        });
        let conf = processes.dir.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port 0\nbind 127.0.0.1\ndir {}\nsentinel monitor mymaster 127.0.0.1 {master_port} 1\n",
                processes.dir.display(),
            ),
        )
        .unwrap();
        // `tls-replication yes`: the Sentinel speaks TLS to the master too, with the server's
        // certificate as its client certificate.
        processes.children.push(
            Command::new("redis-server")
                .arg(conf.to_str().unwrap())
                .arg("--sentinel")
                .args(tls_args(&processes.dir, sentinel_port, true))
                .args(["--tls-replication", "yes"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start redis-server --sentinel"),
        );
        wait_until("the TLS sentinel knows the master", || {
            tls_cli(
                &files,
                sentinel_port,
                &["SENTINEL", "get-master-addr-by-name", "mymaster"],
            )
            .is_some_and(|o| o.contains("127.0.0.1"))
        });
        Some(processes)
    }

    /// The CA, and a client certificate it signed, of a [`RedisProcesses::tls`] server.
    pub fn tls_files(&self) -> TlsFiles {
        TlsFiles {
            ca: self.dir.join("ca.pem"),
            client_cert: self.dir.join("client.pem"),
            client_key: self.dir.join("client.key"),
        }
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
