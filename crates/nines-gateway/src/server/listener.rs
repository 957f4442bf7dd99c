//! The listening socket: inherited, or bound here.
//!
//! - **Inherited** (systemd socket activation, `LISTEN_FDS`/`LISTEN_PID`): the socket outlives
//!   any one process, so a restart or an upgrade (`systemctl restart`) never refuses a
//!   connection: connections wait in the socket's backlog while the next process starts.
//! - **Bound with `SO_REUSEPORT`** (`[server] reuse_port = true`): a new process binds the same
//!   address while the old one drains; the kernel spreads new connections over both until the old
//!   one closes its listener. Off by default, because two unrelated processes silently sharing a
//!   port is an outage of its own. Lossless only with `net.ipv4.tcp_migrate_req = 1`
//!   ([`queue_migrates`]): otherwise connections caught in the old listener's queue as it closes
//!   are reset.
//! - Otherwise bound plainly (`SO_REUSEADDR` only, so a restart can bind while old connections
//!   are in `TIME_WAIT`).

use socket2::{Domain, Protocol, Socket, Type};
use std::net::SocketAddr;
use tokio::net::TcpListener;

/// Pending connections the kernel keeps while nines is busy (or restarting on an inherited socket).
const BACKLOG: i32 = 1024;

/// Where the listener came from, for the startup line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Handed over by the service manager (`LISTEN_FDS`).
    Inherited,
    /// Bound here with `SO_REUSEPORT`.
    SharedPort,
    /// Bound here.
    Bound,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Inherited => "inherited (socket activation)",
            Origin::SharedPort => "bound with SO_REUSEPORT",
            Origin::Bound => "bound",
        }
    }
}

/// The listener: the first socket the service manager passed, if any, else `addr` bound here.
pub fn listen(addr: &str, reuse_port: bool) -> Result<(TcpListener, Origin), String> {
    if let Some(inherited) = inherited()? {
        return Ok((inherited, Origin::Inherited));
    }
    let addr: SocketAddr = addr
        .parse()
        .map_err(|e| format!("'{addr}' is not an address: {e}"))?;
    let bound = bind(addr, reuse_port).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let origin = if reuse_port {
        Origin::SharedPort
    } else {
        Origin::Bound
    };
    Ok((bound, origin))
}

/// The first TCP socket of systemd socket activation, when this process was given one.
fn inherited() -> Result<Option<TcpListener>, String> {
    let mut fds = listenfd::ListenFd::from_env();
    if fds.len() == 0 {
        return Ok(None);
    }
    let Some(std_listener) = fds
        .take_tcp_listener(0)
        .map_err(|e| format!("the inherited socket (LISTEN_FDS) is not a TCP listener: {e}"))?
    else {
        return Ok(None);
    };
    std_listener
        .set_nonblocking(true)
        .map_err(|e| format!("the inherited socket: {e}"))?;
    TcpListener::from_std(std_listener)
        .map(Some)
        .map_err(|e| format!("the inherited socket: {e}"))
}

/// Whether the kernel hands the connections waiting in a closing `SO_REUSEPORT` listener's queue
/// to another listener of the group (`net.ipv4.tcp_migrate_req = 1`, Linux 5.14 and later).
/// Without it, the few connections that arrive in the old process's queue in the instant it
/// closes its listener are reset: a takeover with `reuse_port` is then not quite lossless.
/// `None` when the kernel does not say.
pub fn queue_migrates() -> Option<bool> {
    let value = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_migrate_req").ok()?;
    Some(value.trim() == "1")
}

fn bind(addr: SocketAddr, reuse_port: bool) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    TcpListener::from_std(socket.into())
}
