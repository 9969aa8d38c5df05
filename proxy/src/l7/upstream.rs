//! Upstream groups and the per-worker connection pools.
//!
//! Each worker owns one [`Upstreams`]: the servers of every group, a round-robin cursor per
//! group, and a pool of idle keep-alive connections per server. Connections are made by a
//! [`Dialer`]: [`TcpDialer`] in the proxy, an in-memory one in the request path's unit tests. Nothing here is shared with
//! another worker, so the pool needs no lock: a `RefCell` borrowed only between awaits.
//! A request checks a connection out ([`Upstreams::checkout`]: the most recently used idle
//! one, else a new connection), and checks it back in ([`Upstreams::checkin`]) when the
//! exchange ended cleanly with the origin keeping the connection open.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use std::sync::Arc;

use monoio::net::TcpStream;
use ringwall_runtime::rustls::{self, pki_types::ServerName};
use ringwall_runtime::{Deadlines, MaybeTls, Stream, TlsStream};

use super::error::ProxyError;
use super::transport::Conn;
use crate::config::Config;

/// The read buffer an upstream connection starts with.
const UPSTREAM_BUF: usize = 16 * 1024;
/// A pooled connection idle for less than this is reused without looking whether the origin
/// sent something or closed it meanwhile (see `take_idle`).
const PROBE_AFTER: Duration = Duration::from_millis(1);

/// Where a connection to one upstream server goes, and whether it speaks TLS.
pub struct UpstreamTarget {
    pub addr: SocketAddr,
    pub tls: Option<TlsTarget>,
}

/// TLS toward one server: the worker's client configuration for its group, and the name sent
/// as SNI and checked against its certificate.
pub struct TlsTarget {
    pub config: Arc<rustls::ClientConfig>,
    pub name: ServerName<'static>,
}

/// Makes connections to origin servers.
pub trait Dialer: 'static {
    type Stream: Stream;

    /// The TLS client configuration for upstream group `group` (index into
    /// `Config::upstreams`) when its servers are `https://`.
    fn tls_config(&self, _group: usize) -> Option<Arc<rustls::ClientConfig>> {
        None
    }

    /// A new connection to `target`, within `timeout` (the TLS handshake included).
    fn dial(
        &self,
        target: &UpstreamTarget,
        timeout: Duration,
    ) -> impl Future<Output = Result<Self::Stream, ProxyError>>;
}

/// TCP to the origins, with TLS for the groups of `https://` servers.
#[derive(Clone, Debug, Default)]
pub struct TcpDialer {
    /// By upstream group: this worker's own client configuration (its own session cache).
    tls: Vec<Option<Arc<rustls::ClientConfig>>>,
}

impl TcpDialer {
    pub fn new(tls: Vec<Option<Arc<rustls::ClientConfig>>>) -> Self {
        Self { tls }
    }
}

impl Dialer for TcpDialer {
    type Stream = MaybeTls<TcpStream>;

    fn tls_config(&self, group: usize) -> Option<Arc<rustls::ClientConfig>> {
        self.tls.get(group).cloned().flatten()
    }

    async fn dial(
        &self,
        target: &UpstreamTarget,
        timeout: Duration,
    ) -> Result<MaybeTls<TcpStream>, ProxyError> {
        let addr = target.addr;
        let deadline = Instant::now() + timeout;
        let tcp = match monoio::time::timeout(timeout, TcpStream::connect_addr(addr)).await {
            Err(_) => return Err(ProxyError::UpstreamConnectTimeout(addr)),
            Ok(Err(source)) => return Err(ProxyError::UpstreamConnect { addr, source }),
            Ok(Ok(stream)) => stream,
        };
        let Some(tls) = &target.tls else {
            return Ok(MaybeTls::Plain(tcp));
        };
        let _ = tcp.set_nodelay(true);
        let conn =
            rustls::ClientConnection::new(tls.config.clone(), tls.name.clone()).map_err(|e| {
                ProxyError::UpstreamTls {
                    addr,
                    reason: e.to_string(),
                }
            })?;
        let mut stream = TlsStream::new(tcp, conn);
        let left = deadline.saturating_duration_since(Instant::now());
        match monoio::time::timeout(left, stream.handshake()).await {
            Err(_) => Err(ProxyError::UpstreamConnectTimeout(addr)),
            Ok(Err(e)) => Err(ProxyError::UpstreamTls {
                addr,
                reason: e.to_string(),
            }),
            Ok(Ok(())) => Ok(MaybeTls::Tls(Box::new(stream))),
        }
    }
}

/// One connection to an origin server, with its read buffer and write queue.
pub struct UpstreamConn<S> {
    pub conn: Conn<S>,
    pub server: usize,
    /// Whether this connection already served an exchange (a stale keep-alive connection may
    /// fail on first use; a retry on a new connection is then safe).
    pub reused: bool,
}

struct IdleConn<S> {
    conn: UpstreamConn<S>,
    since: Instant,
}

struct Server {
    target: UpstreamTarget,
    max_idle: usize,
}

struct Group {
    servers: Vec<usize>,
    next: Cell<usize>,
}

/// A worker's upstream servers and their idle connections.
pub struct Upstreams<D: Dialer> {
    dialer: D,
    /// The worker's deadlines: every upstream connection's timer is a slot in them.
    deadlines: Rc<Deadlines>,
    servers: Vec<Server>,
    groups: Vec<Group>,
    idle: RefCell<Vec<Vec<IdleConn<D::Stream>>>>,
    idle_timeout: Duration,
}

impl<D: Dialer> Upstreams<D> {
    /// Builds worker `worker`'s view; each worker starts its round robin at a different server
    /// so that the workers do not all hit the first server together.
    pub fn new(config: &Config, worker: usize, dialer: D, deadlines: Rc<Deadlines>) -> Self {
        let mut servers = Vec::new();
        let groups = config
            .upstreams
            .iter()
            .enumerate()
            .map(|(g, group)| {
                let tls_config = dialer.tls_config(g);
                let ids = group
                    .servers
                    .iter()
                    .enumerate()
                    .map(|(i, &addr)| {
                        let tls = tls_config.as_ref().zip(group.tls.as_ref()).and_then(
                            |(config, tls)| {
                                // Checked by validation.
                                let name =
                                    ServerName::try_from(tls.server_names[i].clone()).ok()?;
                                Some(TlsTarget {
                                    config: config.clone(),
                                    name,
                                })
                            },
                        );
                        servers.push(Server {
                            target: UpstreamTarget { addr, tls },
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
            dialer,
            deadlines,
            servers,
            groups,
            idle,
            idle_timeout: config.timeouts.upstream_idle,
        }
    }

    /// Where a request starts in `group`: the next position of the round robin. The cursor
    /// moves once per request; retries walk on from here with [`Self::server_at`] without
    /// moving it again, so a dead server does not become every request's first choice.
    pub fn pick(&self, group: usize) -> usize {
        let group = &self.groups[group];
        let i = group.next.get();
        group.next.set((i + 1) % group.servers.len());
        i
    }

    /// The server `attempt` places after the start position `start` in `group`.
    pub fn server_at(&self, group: usize, start: usize, attempt: usize) -> usize {
        let servers = &self.groups[group].servers;
        servers[(start + attempt) % servers.len()]
    }

    /// How many servers `group` has.
    pub fn group_len(&self, group: usize) -> usize {
        self.groups[group].servers.len()
    }

    pub fn addr(&self, server: usize) -> SocketAddr {
        self.servers[server].target.addr
    }

    /// An idle pooled connection to `server`, or a new one.
    pub async fn checkout(
        &self,
        server: usize,
        connect_timeout: Duration,
    ) -> Result<UpstreamConn<D::Stream>, ProxyError> {
        if let Some(conn) = self.take_idle(server, Instant::now()) {
            return Ok(conn);
        }
        self.connect(server, connect_timeout).await
    }

    fn take_idle(&self, server: usize, now: Instant) -> Option<UpstreamConn<D::Stream>> {
        let mut idle = self.idle.borrow_mut();
        let list = &mut idle[server];
        while let Some(entry) = list.pop() {
            // An origin that closed the connection, or sent bytes while it sat idle, is out
            // of step with it: those bytes must never reach the next client. The look costs a
            // system call; a connection back for less than PROBE_AFTER is taken without it, as
            // an event loop takes a connection whose readiness it has not seen yet.
            let idle_for = now.duration_since(entry.since);
            if idle_for < self.idle_timeout
                && (idle_for < PROBE_AFTER || entry.conn.conn.stream.is_idle_clean())
            {
                return Some(entry.conn);
            }
        }
        None
    }

    /// A new connection to `server`. Boxed: dialing (its connect timer is a monoio `Sleep`,
    /// 640 bytes) would otherwise make every request's future larger, and a request on a
    /// pooled connection never dials.
    pub fn connect(
        &self,
        server: usize,
        timeout: Duration,
    ) -> Pin<Box<impl Future<Output = Result<UpstreamConn<D::Stream>, ProxyError>> + '_>> {
        Box::pin(async move {
            let stream = self.dial(server, timeout).await?;
            Ok(UpstreamConn {
                conn: Conn::new(stream, UPSTREAM_BUF, self.deadlines.timer()),
                server,
                reused: false,
            })
        })
    }

    /// A new connection to `server`, bare: no buffer, no timer, no pool (the L4 listeners
    /// relay it as it is).
    pub async fn dial(&self, server: usize, timeout: Duration) -> Result<D::Stream, ProxyError> {
        let stream = self
            .dialer
            .dial(&self.servers[server].target, timeout)
            .await?;
        stream.set_nodelay();
        Ok(stream)
    }

    /// Returns a connection that finished a clean exchange to its server's pool; closes it
    /// when the pool is full.
    pub fn checkin(&self, mut conn: UpstreamConn<D::Stream>) {
        if !conn.conn.buf.is_empty() {
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
