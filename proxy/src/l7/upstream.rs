//! Upstream groups and the per-worker connection pools.
//!
//! Each worker owns one [`Upstreams`]: the servers of every group, a round-robin cursor per
//! group, and a pool of idle keep-alive connections per server. Nothing here is shared with
//! another worker, so the pool needs no lock: a `RefCell` borrowed only between awaits.
//! A request checks a connection out ([`Upstreams::checkout`]: the most recently used idle
//! one, else a new connection), and checks it back in ([`Upstreams::checkin`]) when the
//! exchange ended cleanly with the origin keeping the connection open.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use monoio::net::TcpStream;
use ringwall_runtime::idle_connection_is_clean;

use super::error::ProxyError;
use super::transport::WriteQueue;
use crate::config::Config;

/// The read buffer an upstream connection starts with.
const UPSTREAM_BUF: usize = 16 * 1024;

/// One connection to an origin server, with its read buffer and write queue.
pub struct UpstreamConn {
    pub stream: TcpStream,
    pub buf: BytesMut,
    pub out: WriteQueue,
    pub server: usize,
    /// Whether this connection already served an exchange (a stale keep-alive connection may
    /// fail on first use; a retry on a new connection is then safe).
    pub reused: bool,
}

struct IdleConn {
    conn: UpstreamConn,
    since: Instant,
}

struct Server {
    addr: SocketAddr,
    max_idle: usize,
}

struct Group {
    servers: Vec<usize>,
    next: Cell<usize>,
}

/// A worker's upstream servers and their idle connections.
pub struct Upstreams {
    servers: Vec<Server>,
    groups: Vec<Group>,
    idle: RefCell<Vec<Vec<IdleConn>>>,
    idle_timeout: Duration,
    connect_timeout: Duration,
}

impl Upstreams {
    /// Builds worker `worker`'s view; each worker starts its round robin at a different server
    /// so that the workers do not all hit the first server together.
    pub fn new(config: &Config, worker: usize) -> Self {
        let mut servers = Vec::new();
        let groups = config
            .upstreams
            .iter()
            .map(|group| {
                let ids = group
                    .servers
                    .iter()
                    .map(|&addr| {
                        servers.push(Server {
                            addr,
                            max_idle: group.max_idle_per_server,
                        });
                        servers.len() - 1
                    })
                    .collect::<Vec<_>>();
                Group {
                    next: Cell::new(worker % ids.len().max(1)),
                    servers: ids,
                }
            })
            .collect();
        let idle = RefCell::new(servers.iter().map(|_| Vec::new()).collect());
        Self {
            servers,
            groups,
            idle,
            idle_timeout: config.timeouts.upstream_idle,
            connect_timeout: config.timeouts.upstream_connect,
        }
    }

    /// The next server of `group`, round robin.
    pub fn pick(&self, group: usize) -> usize {
        let group = &self.groups[group];
        let i = group.next.get();
        group.next.set((i + 1) % group.servers.len());
        group.servers[i]
    }

    /// How many servers `group` has.
    pub fn group_len(&self, group: usize) -> usize {
        self.groups[group].servers.len()
    }

    pub fn addr(&self, server: usize) -> SocketAddr {
        self.servers[server].addr
    }

    /// An idle pooled connection to `server`, or a new one.
    pub async fn checkout(&self, server: usize) -> Result<UpstreamConn, ProxyError> {
        if let Some(conn) = self.take_idle(server, Instant::now()) {
            return Ok(conn);
        }
        self.connect(server).await
    }

    fn take_idle(&self, server: usize, now: Instant) -> Option<UpstreamConn> {
        let mut idle = self.idle.borrow_mut();
        let list = &mut idle[server];
        while let Some(entry) = list.pop() {
            // An origin that closed the connection, or sent bytes while it sat idle, is out
            // of step with it: those bytes must never reach the next client.
            if now.duration_since(entry.since) < self.idle_timeout
                && idle_connection_is_clean(&entry.conn.stream)
            {
                return Some(entry.conn);
            }
        }
        None
    }

    /// A new connection to `server`.
    pub async fn connect(&self, server: usize) -> Result<UpstreamConn, ProxyError> {
        let addr = self.addr(server);
        let stream = match monoio::time::timeout(
            self.connect_timeout,
            TcpStream::connect_addr(addr),
        )
        .await
        {
            Err(_) => return Err(ProxyError::UpstreamConnectTimeout(addr)),
            Ok(Err(source)) => return Err(ProxyError::UpstreamConnect { addr, source }),
            Ok(Ok(stream)) => stream,
        };
        let _ = stream.set_nodelay(true);
        Ok(UpstreamConn {
            stream,
            buf: BytesMut::with_capacity(UPSTREAM_BUF),
            out: WriteQueue::default(),
            server,
            reused: false,
        })
    }

    /// Returns a connection that finished a clean exchange to its server's pool; closes it
    /// when the pool is full.
    pub fn checkin(&self, mut conn: UpstreamConn) {
        if !conn.buf.is_empty() {
            // The origin sent bytes after its response: the connection is out of step.
            return;
        }
        let mut idle = self.idle.borrow_mut();
        let list = &mut idle[conn.server];
        if list.len() < self.servers[conn.server].max_idle {
            conn.reused = true;
            list.push(IdleConn {
                conn,
                since: Instant::now(),
            });
        }
    }

    /// Closes idle connections older than the idle timeout.
    pub fn sweep(&self, now: Instant) {
        let mut idle = self.idle.borrow_mut();
        for list in idle.iter_mut() {
            list.retain(|entry| now.duration_since(entry.since) < self.idle_timeout);
        }
    }

    /// Closes every idle connection (used when the worker drains).
    pub fn close_idle(&self) {
        for list in self.idle.borrow_mut().iter_mut() {
            list.clear();
        }
    }

    /// How often [`Upstreams::sweep`] should run.
    pub fn sweep_interval(&self) -> Duration {
        (self.idle_timeout / 2).clamp(Duration::from_millis(100), Duration::from_secs(5))
    }
}
