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

use ringwall_policies::balance::{Algorithm, Balancer, Load, PeakEwma, Rng};
use ringwall_policies::hash::Maglev;

use super::error::ProxyError;
use super::transport::Conn;
use crate::config::{Config, HashKey, LoadBalancing};

/// A worker's random seed: its index and the clock, so that workers and restarts differ.
fn seed(worker: usize) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (worker as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}
use crate::metrics::{ServerStats, WorkerMetrics};

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

/// What makes two servers the same for pooling: one address, and TLS with the same name and
/// the same settings. A reload keeps the idle connections of the servers that stay.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PoolKey {
    addr: SocketAddr,
    tls: Option<TlsKey>,
}

/// TLS toward a server, for pooling: its name, CA file, client certificate and key files.
type TlsKey = (
    String,
    Option<std::path::PathBuf>,
    Option<(std::path::PathBuf, std::path::PathBuf)>,
);

/// One server's idle connections; `key: None` marks a free slot.
struct PoolSlot<S> {
    key: Option<PoolKey>,
    idle: Vec<IdleConn<S>>,
}

/// A worker's idle upstream connections, shared by its configuration generations.
pub struct Pools<S> {
    slots: RefCell<Vec<PoolSlot<S>>>,
    idle_timeout: Cell<Duration>,
}

impl<S> Pools<S> {
    /// The slot for `key`: the one it had, else a free one, else a new one.
    fn slot_for(&self, key: &PoolKey) -> usize {
        let mut slots = self.slots.borrow_mut();
        if let Some(i) = slots.iter().position(|s| s.key.as_ref() == Some(key)) {
            return i;
        }
        if let Some(i) = slots.iter().position(|s| s.key.is_none()) {
            slots[i].key = Some(key.clone());
            return i;
        }
        slots.push(PoolSlot {
            key: Some(key.clone()),
            idle: Vec::new(),
        });
        slots.len() - 1
    }

    /// Closes the idle connections of every slot not in `used` and frees the slot.
    fn keep_only(&self, used: &[usize]) {
        for (i, slot) in self.slots.borrow_mut().iter_mut().enumerate() {
            if !used.contains(&i) {
                slot.key = None;
                slot.idle.clear();
            }
        }
    }

    /// Closes idle connections older than the idle timeout.
    pub fn sweep(&self, now: Instant) {
        let timeout = self.idle_timeout.get();
        for slot in self.slots.borrow_mut().iter_mut() {
            slot.idle
                .retain(|entry| now.duration_since(entry.since) < timeout);
        }
    }

    /// Closes every idle connection (used when the worker drains).
    pub fn close_idle(&self) {
        for slot in self.slots.borrow_mut().iter_mut() {
            slot.idle.clear();
        }
    }

    /// How often [`Pools::sweep`] should run.
    pub fn sweep_interval(&self) -> Duration {
        (self.idle_timeout.get() / 2).clamp(Duration::from_millis(100), Duration::from_secs(5))
    }
}

struct Server {
    target: UpstreamTarget,
    /// Requests this worker has in flight on it.
    outstanding: Cell<u32>,
    latency: Cell<PeakEwma>,
    /// Whether its group balances by peak-EWMA (and so keeps `latency`).
    ewma: bool,
    max_idle: usize,
    /// Its slot in the pools.
    slot: usize,
    key: PoolKey,
    stats: Rc<ServerStats>,
}

struct Group {
    servers: Vec<usize>,
    balancer: RefCell<Balancer>,
    /// `hash:` balancing: what is hashed, and the table (the same on every worker).
    hash: Option<(HashKey, Maglev)>,
}

/// A server's request counted as outstanding on it (on this worker) while this lives.
pub struct InFlight<'a>(&'a Cell<u32>);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

/// How long ago a peak-EWMA latency estimate mostly forgets (Finagle's default).
const EWMA_DECAY: Duration = Duration::from_secs(10);

/// The algorithm a group balances by (a `hash:` group's requests without a key: power of two
/// choices).
fn algorithm(lb: &LoadBalancing) -> Algorithm {
    match lb {
        LoadBalancing::Balance(algorithm) => *algorithm,
        LoadBalancing::Hash(_) => Algorithm::PowerOfTwo,
    }
}

/// A worker's upstream servers, in one configuration generation, and their idle connections.
pub struct Upstreams<D: Dialer> {
    dialer: D,
    /// The worker's deadlines: every upstream connection's timer is a slot in them.
    deadlines: Rc<Deadlines>,
    servers: Vec<Server>,
    groups: Vec<Group>,
    pools: Rc<Pools<D::Stream>>,
    rng: RefCell<Rng>,
}

impl<D: Dialer> Upstreams<D> {
    /// Builds worker `worker`'s view; each worker starts its round robin at a different server
    /// so that the workers do not all hit the first server together.
    pub fn new(
        config: &Config,
        worker: usize,
        dialer: D,
        deadlines: Rc<Deadlines>,
        metrics: &WorkerMetrics,
    ) -> Self {
        let pools = Rc::new(Pools {
            slots: RefCell::new(Vec::new()),
            idle_timeout: Cell::new(config.timeouts.upstream_idle),
        });
        Self::with_pools(config, worker, dialer, deadlines, metrics, pools)
    }

    /// The view of a new configuration generation: the idle connections to the servers that
    /// stay are kept, those to removed servers closed.
    #[must_use]
    pub fn next(&self, config: &Config, worker: usize, dialer: D, metrics: &WorkerMetrics) -> Self {
        let next = Self::with_pools(
            config,
            worker,
            dialer,
            self.deadlines.clone(),
            metrics,
            self.pools.clone(),
        );
        let used: Vec<usize> = next.servers.iter().map(|s| s.slot).collect();
        next.pools.keep_only(&used);
        next
    }

    fn with_pools(
        config: &Config,
        worker: usize,
        dialer: D,
        deadlines: Rc<Deadlines>,
        metrics: &WorkerMetrics,
        pools: Rc<Pools<D::Stream>>,
    ) -> Self {
        pools.idle_timeout.set(config.timeouts.upstream_idle);
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
                        let key = PoolKey {
                            addr,
                            tls: group.tls.as_ref().map(|t| {
                                (
                                    t.server_names[i].clone(),
                                    t.ca.clone(),
                                    t.client_cert.clone(),
                                )
                            }),
                        };
                        let label = match &group.tls {
                            Some(t) => format!("https://{}@{addr}", t.server_names[i]),
                            None => addr.to_string(),
                        };
                        servers.push(Server {
                            target: UpstreamTarget { addr, tls },
                            outstanding: Cell::new(0),
                            latency: Cell::new(PeakEwma::new(EWMA_DECAY)),
                            ewma: algorithm(&group.lb) == Algorithm::PeakEwma,
                            max_idle: group.max_idle_per_server,
                            slot: pools.slot_for(&key),
                            key,
                            stats: metrics.server(&group.name, &label),
                        });
                        servers.len() - 1
                    })
                    .collect::<Vec<_>>();
                let hash = match &group.lb {
                    LoadBalancing::Hash(key) => {
                        let names: Vec<String> =
                            group.servers.iter().map(ToString::to_string).collect();
                        let weighted: Vec<(&[u8], u32)> = names
                            .iter()
                            .zip(&group.weights)
                            .map(|(name, &w)| (name.as_bytes(), w))
                            .collect();
                        Maglev::new(&weighted).map(|table| (key.clone(), table))
                    }
                    LoadBalancing::Balance(_) => None,
                };
                Group {
                    balancer: RefCell::new(
                        Balancer::new(algorithm(&group.lb), &group.weights).starting_at(worker),
                    ),
                    hash,
                    servers: ids,
                }
            })
            .collect();
        Self {
            dialer,
            deadlines,
            servers,
            groups,
            pools,
            rng: RefCell::new(Rng::new(seed(worker))),
        }
    }

    /// The pools this view shares with the worker's other generations.
    pub fn pools(&self) -> &Rc<Pools<D::Stream>> {
        &self.pools
    }

    /// The counters of `server`.
    pub fn stats(&self, server: usize) -> &ServerStats {
        &self.servers[server].stats
    }

    /// Where a request starts in `group`: the next position of the round robin. The cursor
    /// moves once per request; retries walk on from here with [`Self::server_at`] without
    /// moving it again, so a dead server does not become every request's first choice.
    ///
    /// `key`: the request's hash key, for a group that balances by `hash:` (see
    /// [`Self::hash_key`]); without one such a group balances by power of two choices.
    pub fn pick(&self, group: usize, key: Option<&[u8]>) -> usize {
        let group = &self.groups[group];
        if let (Some((_, table)), Some(key)) = (&group.hash, key) {
            return table.lookup(key);
        }
        let load = |i: usize| {
            let server = &self.servers[group.servers[i]];
            Load {
                outstanding: server.outstanding.get(),
                latency: server.latency.get().estimate(),
            }
        };
        group
            .balancer
            .borrow_mut()
            .pick(load, &mut self.rng.borrow_mut())
            .unwrap_or(0)
    }

    /// What `group` hashes its requests on, when it balances by `hash:`.
    pub fn hash_key(&self, group: usize) -> Option<&HashKey> {
        self.groups[group].hash.as_ref().map(|(key, _)| key)
    }

    /// Counts a request outstanding on `server` until the guard is dropped.
    pub fn begin(&self, server: usize) -> InFlight<'_> {
        let outstanding = &self.servers[server].outstanding;
        outstanding.set(outstanding.get() + 1);
        InFlight(outstanding)
    }

    /// Takes in the time `server` took to its response head (peak-EWMA; only the groups that
    /// balance by it keep an estimate).
    pub fn observe(&self, server: usize, latency: Duration, now: Instant) {
        let server = &self.servers[server];
        if !server.ewma {
            return;
        }
        let cell = &server.latency;
        let mut estimate = cell.get();
        estimate.observe(latency, now);
        cell.set(estimate);
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
            ServerStats::count(&self.servers[server].stats.reused);
            return Ok(conn);
        }
        self.connect(server, connect_timeout).await
    }

    fn take_idle(&self, server: usize, now: Instant) -> Option<UpstreamConn<D::Stream>> {
        let Server { slot, key, .. } = &self.servers[server];
        let mut slots = self.pools.slots.borrow_mut();
        let slot = &mut slots[*slot];
        if slot.key.as_ref() != Some(key) {
            return None;
        }
        let idle_timeout = self.pools.idle_timeout.get();
        while let Some(entry) = slot.idle.pop() {
            // An origin that closed the connection, or sent bytes while it sat idle, is out
            // of step with it: those bytes must never reach the next client. The look costs a
            // system call; a connection back for less than PROBE_AFTER is taken without it, as
            // an event loop takes a connection whose readiness it has not seen yet.
            let idle_for = now.duration_since(entry.since);
            if idle_for < idle_timeout
                && (idle_for < PROBE_AFTER || entry.conn.conn.stream.is_idle_clean())
            {
                let mut conn = entry.conn;
                // The index of this generation's server (it may have come back from another).
                conn.server = server;
                return Some(conn);
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
        let Server { target, stats, .. } = &self.servers[server];
        ServerStats::count(&stats.connects);
        let stream = match self.dialer.dial(target, timeout).await {
            Ok(stream) => stream,
            Err(e) => {
                let failure = if matches!(e, ProxyError::UpstreamConnectTimeout(_)) {
                    &stats.connect_timeouts
                } else {
                    &stats.connect_failures
                };
                ServerStats::count(failure);
                return Err(e);
            }
        };
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
        let Server {
            slot,
            key,
            max_idle,
            ..
        } = &self.servers[conn.server];
        let mut slots = self.pools.slots.borrow_mut();
        let slot = &mut slots[*slot];
        // A server a reload removed: its slot may be another server's now.
        if slot.key.as_ref() == Some(key) && slot.idle.len() < *max_idle {
            conn.reused = true;
            slot.idle.push(IdleConn {
                conn,
                since: Instant::now(),
            });
        }
    }
}
