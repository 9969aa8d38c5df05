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
use std::task::Waker;
use std::time::{Duration, Instant};

use std::sync::Arc;

use monoio::net::TcpStream;
use ringwall_runtime::rustls::{self, pki_types::ServerName};
use ringwall_runtime::{Deadlines, MaybeTls, Stream, TlsStream};

use ringwall_policies::balance::{Algorithm, Balancer, Load, PeakEwma, Rng};
use ringwall_policies::hash::Maglev;
use ringwall_policies::health::{self, Ejection, Outlier};
use ringwall_policies::retry::{worker_share, RetryBudget};

use super::error::ProxyError;
use super::transport::Conn;
use crate::config::{CircuitBreaker, Config, HashKey, LoadBalancing};

/// A worker's random seed: its index and the clock, so that workers and restarts differ.
fn seed(worker: usize) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (worker as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}
use crate::metrics::{GroupStats, ServerStats, WorkerMetrics};

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
    /// Counts it among its server's open connections while it lives.
    _open: OpenConn,
}

/// One open connection to a server, counted (for the circuit breaker) until dropped.
struct OpenConn(Rc<Cell<u32>>);

impl OpenConn {
    fn new(count: &Rc<Cell<u32>>) -> Self {
        count.set(count.get() + 1);
        Self(count.clone())
    }
}

impl Drop for OpenConn {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
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
    /// The server's open connections on this worker, idle or busy, of every generation.
    open: Rc<Cell<u32>>,
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
            // The connections still open to the server that had it count for that one.
            slots[i].open = Rc::default();
            return i;
        }
        slots.push(PoolSlot {
            key: Some(key.clone()),
            idle: Vec::new(),
            open: Rc::default(),
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

    /// The open-connection count of slot `slot`.
    fn open_count(&self, slot: usize) -> Rc<Cell<u32>> {
        self.slots.borrow()[slot].open.clone()
    }

    /// Whether slot `slot` has an idle connection.
    fn has_idle(&self, slot: usize) -> bool {
        !self.slots.borrow()[slot].idle.is_empty()
    }

    /// How often [`Pools::sweep`] should run.
    pub fn sweep_interval(&self) -> Duration {
        (self.idle_timeout.get() / 2).clamp(Duration::from_millis(100), Duration::from_secs(5))
    }
}

/// Whether a server may take requests, on this worker.
#[derive(Clone, Copy, Debug)]
struct ServerHealth {
    /// Up by the group's active checks (always, without them).
    up: bool,
    /// Passive checks: failures in a row, ejections.
    outlier: Outlier,
    /// Whether it took requests when the group's weights were last worked out.
    in_service: bool,
    /// Back in service since then (slow start); `None`: at its full share.
    back_since: Option<Instant>,
}

impl Default for ServerHealth {
    fn default() -> Self {
        Self {
            up: true,
            outlier: Outlier::default(),
            in_service: true,
            back_since: None,
        }
    }
}

/// A change of a server's health that the other workers must learn (the worker posts it on
/// the message path at its next tick).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HealthChange {
    /// Passive checks ejected it for `length`.
    Ejected { length: Duration },
    /// Active checks found it up, or down.
    Checked { up: bool },
}

/// A server's health change, naming the server as every generation of every worker knows
/// it: its group's name and its address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthEvent {
    pub group: Arc<str>,
    pub addr: SocketAddr,
    pub change: HealthChange,
}

/// What `/status` shows of a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerState {
    Up,
    /// Down by the active checks.
    Down,
    /// Ejected by the passive checks.
    Ejected,
    /// A backup, not in use while a primary is.
    Standby,
}

impl ServerState {
    pub fn as_str(self) -> &'static str {
        match self {
            ServerState::Up => "up",
            ServerState::Down => "down",
            ServerState::Ejected => "ejected",
            ServerState::Standby => "backup",
        }
    }
}

/// Weights are kept in thousandths, so that slow start can give a tenth of a weight of 1.
const WEIGHT_SCALE: u32 = 1000;
/// How often a slow start's weights step up.
const SLOW_START_STEPS: u32 = 20;

struct Server {
    target: UpstreamTarget,
    /// Its group's index.
    group: usize,
    health: Cell<ServerHealth>,
    /// Requests this worker has in flight on it.
    outstanding: Cell<u32>,
    latency: Cell<PeakEwma>,
    /// Whether its group balances by peak-EWMA among more than one server (and so keeps
    /// `latency`).
    ewma: bool,
    max_idle: usize,
    /// Its slot in the pools.
    slot: usize,
    /// Its open connections on this worker (shared with its slot).
    open: Rc<Cell<u32>>,
    key: PoolKey,
    /// Its name in metrics and `/status`: the address, or `https://name@address`.
    label: String,
    stats: Rc<ServerStats>,
}

/// A `hash:` group's Maglev table over its servers in service, with their positions in the
/// group; `None` when none is in service.
type HashTable = RefCell<Option<(Maglev, Vec<usize>)>>;

/// Every group's name, and each of its servers' label and state.
pub type GroupStates = Vec<(Arc<str>, Vec<(String, ServerState)>)>;

struct Group {
    name: Arc<str>,
    servers: Vec<usize>,
    /// How many of `servers` are primaries (the rest are backups).
    primaries: usize,
    /// Configured weights, by position in `servers`.
    weights: Vec<u32>,
    balancer: RefCell<Balancer>,
    /// `hash:` balancing: what is hashed, and the table over the servers in service with
    /// their positions (the same on every worker that knows the same health).
    hash: Option<(HashKey, HashTable)>,
    ejection: Ejection,
    slow_start: Duration,
    /// When the weights must be worked out again: an ejection ends, a slow start steps.
    review_at: Cell<Option<Instant>>,
    /// This worker's share of the circuit breaker's limits; `None` when the group has none.
    limits: Option<Limits>,
    /// Requests this worker has outstanding on the group.
    outstanding: Cell<u32>,
    /// Requests waiting for room, and their wakers.
    pending: Cell<u32>,
    waiters: RefCell<Vec<Waker>>,
    budget: RefCell<RetryBudget>,
    stats: Rc<GroupStats>,
}

impl Group {
    /// Worker `worker`'s view of `group` (of `config`), whose servers are `servers`.
    fn new(
        config: &Config,
        group: &crate::config::UpstreamGroup,
        worker: usize,
        servers: Vec<usize>,
        metrics: &WorkerMetrics,
    ) -> Self {
        let hash = match &group.lb {
            LoadBalancing::Hash(key) => Some((key.clone(), RefCell::new(None))),
            LoadBalancing::Balance(_) => None,
        };
        Group {
            name: Arc::from(group.name.as_str()),
            balancer: RefCell::new(
                Balancer::new(algorithm(&group.lb), &group.weights).starting_at(worker),
            ),
            hash,
            primaries: group.primaries,
            weights: group.weights.clone(),
            servers,
            ejection: group.ejection,
            slow_start: group.slow_start,
            review_at: Cell::new(None),
            limits: Limits::share(
                &group.circuit_breaker,
                config.engine.workers,
                worker,
                config.timeouts.upstream_connect,
            ),
            outstanding: Cell::new(0),
            pending: Cell::new(0),
            waiters: RefCell::new(Vec::new()),
            budget: RefCell::new(RetryBudget::new(
                group.retry_budget.percent,
                group.retry_budget.min_per_second,
                BUDGET_WINDOW,
            )),
            stats: metrics.group(&group.name),
        }
    }
}

/// A worker's share of a group's circuit-breaker limits.
#[derive(Clone, Copy, Debug)]
struct Limits {
    max_connections: Option<u32>,
    max_requests: Option<u32>,
    max_pending: u32,
    pending_timeout: Duration,
    max_connections_per_server: Option<u32>,
    max_requests_per_server: Option<u32>,
}

impl Limits {
    /// Worker `worker`'s share of `breaker` (`None`: no limit at all).
    fn share(
        breaker: &CircuitBreaker,
        workers: usize,
        worker: usize,
        connect_timeout: Duration,
    ) -> Option<Self> {
        let share = |limit: Option<u32>| limit.map(|l| worker_share(l, workers, worker));
        let limited = breaker.max_connections.is_some()
            || breaker.max_requests.is_some()
            || breaker.max_connections_per_server.is_some()
            || breaker.max_requests_per_server.is_some();
        limited.then(|| Limits {
            max_connections: share(breaker.max_connections),
            max_requests: share(breaker.max_requests),
            max_pending: if breaker.max_pending == 0 {
                0
            } else {
                worker_share(breaker.max_pending, workers, worker)
            },
            pending_timeout: breaker.pending_timeout.unwrap_or(connect_timeout),
            max_connections_per_server: share(breaker.max_connections_per_server),
            max_requests_per_server: share(breaker.max_requests_per_server),
        })
    }
}

/// How long a retry budget looks back.
const BUDGET_WINDOW: Duration = Duration::from_secs(10);

/// A server's request counted as outstanding on it and its group (on this worker) while this
/// lives; when it ends, the requests waiting for room in the group look again.
pub struct InFlight<'a> {
    server: &'a Cell<u32>,
    group: &'a Group,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.server.set(self.server.get().saturating_sub(1));
        let group = self.group;
        group
            .outstanding
            .set(group.outstanding.get().saturating_sub(1));
        if group.pending.get() > 0 {
            for waker in group.waiters.borrow_mut().drain(..) {
                waker.wake();
            }
        }
    }
}

/// How long ago a peak-EWMA latency estimate mostly forgets (Finagle's default).
const EWMA_DECAY: Duration = Duration::from_secs(10);

/// The algorithm a group balances by (a `hash:` group's requests without a key: the default,
/// peak-EWMA power of two choices).
fn algorithm(lb: &LoadBalancing) -> Algorithm {
    match lb {
        LoadBalancing::Balance(algorithm) => *algorithm,
        LoadBalancing::Hash(_) => Algorithm::PeakEwma,
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
    /// Health changes decided here, for the other workers.
    events: RefCell<Vec<HealthEvent>>,
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
        // Servers that stay keep their health (found by group name and address).
        for group in &next.groups {
            let Some(old) = self.groups.iter().find(|g| g.name == group.name) else {
                continue;
            };
            for &id in &group.servers {
                let addr = next.servers[id].target.addr;
                if let Some(&was) = old
                    .servers
                    .iter()
                    .find(|&&o| self.servers[o].target.addr == addr)
                {
                    next.servers[id].health.set(self.servers[was].health.get());
                }
            }
        }
        let now = Instant::now();
        for g in 0..next.groups.len() {
            next.review(g, now);
        }
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
                        let slot = pools.slot_for(&key);
                        let label = match &group.tls {
                            Some(t) => format!("https://{}@{addr}", t.server_names[i]),
                            None => addr.to_string(),
                        };
                        servers.push(Server {
                            target: UpstreamTarget { addr, tls },
                            group: g,
                            health: Cell::new(ServerHealth::default()),
                            outstanding: Cell::new(0),
                            latency: Cell::new(PeakEwma::new(EWMA_DECAY)),
                            // A group of one server has nothing to choose between.
                            ewma: algorithm(&group.lb) == Algorithm::PeakEwma
                                && group.servers.len() > 1,
                            max_idle: group.max_idle_per_server,
                            slot,
                            open: pools.open_count(slot),
                            key,
                            stats: metrics.server(&group.name, &label),
                            label,
                        });
                        servers.len() - 1
                    })
                    .collect::<Vec<_>>();
                Group::new(config, group, worker, ids, metrics)
            })
            .collect();
        let upstreams = Self {
            dialer,
            deadlines,
            servers,
            groups,
            pools,
            rng: RefCell::new(Rng::new(seed(worker))),
            events: RefCell::new(Vec::new()),
        };
        let now = Instant::now();
        for g in 0..upstreams.groups.len() {
            upstreams.review(g, now);
        }
        upstreams
    }

    /// Works out which servers of `group` take requests at `now`, and their weights: the
    /// primaries that are up and not ejected, else the backups that are; a server back in
    /// service ramps up over the group's slow start. Runs at every health change, and when an
    /// ejection ends or a slow start steps.
    fn review(&self, group: usize, now: Instant) {
        let g = &self.groups[group];
        let available: Vec<bool> = g
            .servers
            .iter()
            .map(|&id| {
                let health = self.servers[id].health.get();
                health.up && !health.outlier.is_ejected(now)
            })
            .collect();
        let primaries_left = available[..g.primaries].iter().any(|&a| a);
        let mut weights = Vec::with_capacity(g.servers.len());
        let mut review_at: Option<Instant> = None;
        let mut sooner = |at: Instant| {
            review_at = Some(review_at.map_or(at, |r| r.min(at)));
        };
        let step = (g.slow_start / SLOW_START_STEPS).max(Duration::from_millis(10));
        for (position, &id) in g.servers.iter().enumerate() {
            let server = &self.servers[id];
            let mut health = server.health.get();
            let in_service = available[position] && (position < g.primaries || !primaries_left);
            if in_service && !health.in_service && !g.slow_start.is_zero() {
                health.back_since = Some(now);
            }
            if !in_service {
                health.back_since = None;
            }
            health.in_service = in_service;
            let share = health::slow_start(health.back_since, now, g.slow_start);
            if share >= WEIGHT_SCALE {
                health.back_since = None;
            } else {
                sooner(now + step);
            }
            if let Some(until) = health.outlier.until().filter(|&u| u > now) {
                sooner(until);
            }
            server.health.set(health);
            weights.push(if in_service {
                g.weights[position].saturating_mul(share)
            } else {
                0
            });
        }
        if let Some((_, table)) = &g.hash {
            let live: Vec<usize> = (0..weights.len()).filter(|&i| weights[i] > 0).collect();
            let unchanged = table
                .borrow()
                .as_ref()
                .is_some_and(|(_, positions)| *positions == live);
            if !unchanged {
                let names: Vec<String> = live
                    .iter()
                    .map(|&i| self.servers[g.servers[i]].target.addr.to_string())
                    .collect();
                let weighted: Vec<(&[u8], u32)> = names
                    .iter()
                    .zip(&live)
                    .map(|(name, &i)| (name.as_bytes(), g.weights[i]))
                    .collect();
                *table.borrow_mut() = Maglev::new(&weighted).map(|t| (t, live));
            }
        }
        g.balancer.borrow_mut().set_weights(&weights);
        g.review_at.set(review_at);
    }

    /// Reviews `group` when its review time has come.
    fn review_due(&self, group: usize, now: Instant) {
        if self.groups[group]
            .review_at
            .get()
            .is_some_and(|at| at <= now)
        {
            self.review(group, now);
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

    /// Where a request starts in `group` (a position in it), at `now`; `None` when no server
    /// of the group takes requests. Retries walk on from there with [`Self::server_at`].
    ///
    /// `key`: the request's hash key, for a group that balances by `hash:` (see
    /// [`Self::hash_key`]); without one such a group balances by power of two choices.
    pub fn pick(&self, group: usize, key: Option<&[u8]>, now: Instant) -> Option<usize> {
        self.review_due(group, now);
        let g = &self.groups[group];
        if let (Some((_, table)), Some(key)) = (&g.hash, key) {
            let table = table.borrow();
            let (table, positions) = table.as_ref()?;
            return positions.get(table.lookup(key)).copied();
        }
        let load = |i: usize| {
            let server = &self.servers[g.servers[i]];
            Load {
                outstanding: server.outstanding.get(),
                latency: server.latency.get().estimate(),
            }
        };
        g.balancer
            .borrow_mut()
            .pick(load, &mut self.rng.borrow_mut())
    }

    /// The next server in service of `group`, with room under the circuit breaker's limits,
    /// after the one `after` places past the start position `start` (`None`: the start
    /// itself), as its offset from the start and its index; `None` once the walk would come
    /// round to the start again. A request's tries walk the group from its start this way,
    /// each server at most once.
    pub fn next_server(
        &self,
        group: usize,
        start: usize,
        after: Option<usize>,
    ) -> Option<(usize, usize)> {
        let g = &self.groups[group];
        let balancer = g.balancer.borrow();
        let weights = balancer.weights();
        let n = g.servers.len();
        let from = after.map_or(0, |k| k + 1);
        (from..n)
            .find(|&k| {
                let position = (start + k) % n;
                weights[position] > 0
                    && g.limits.as_ref().is_none_or(|limits| {
                        self.server_has_room(g, limits, &self.servers[g.servers[position]])
                    })
            })
            .map(|k| (k, g.servers[(start + k) % n]))
    }

    /// The name of `group`.
    pub fn group_name(&self, group: usize) -> &Arc<str> {
        &self.groups[group].name
    }

    /// Takes in the outcome of a request on `server` (`failed`: no connection, a timeout, a
    /// broken or 5xx response) for the passive checks; a failure that ejects the server takes
    /// it out of its group here at once, and on the other workers at the next tick.
    pub fn record(&self, server: usize, failed: bool, now: Instant) {
        let group = self.group_of(server);
        let g = &self.groups[group];
        let cell = &self.servers[server].health;
        let mut health = cell.get();
        if !failed {
            if health.outlier.is_failing() {
                health.outlier.record(false, now, &g.ejection, false);
                cell.set(health);
            }
            return;
        }
        let ejected = g
            .servers
            .iter()
            .filter(|&&id| self.servers[id].health.get().outlier.is_ejected(now))
            .count();
        let may_eject = ejected < g.ejection.max_ejected(g.servers.len());
        let length = health.outlier.record(failed, now, &g.ejection, may_eject);
        cell.set(health);
        if let Some(length) = length {
            let addr = self.servers[server].target.addr;
            tracing::warn!(
                upstream = %g.name,
                server = %addr,
                seconds = length.as_secs_f64(),
                "upstream server ejected after {} failures in a row",
                g.ejection.consecutive
            );
            ServerStats::count(&self.servers[server].stats.ejections);
            self.events.borrow_mut().push(HealthEvent {
                group: g.name.clone(),
                addr,
                change: HealthChange::Ejected { length },
            });
            self.review(group, now);
        }
    }

    /// Takes in an active check's verdict on `server`, decided on this worker: applied here,
    /// and posted to the others at the next tick.
    pub fn set_up(&self, server: usize, up: bool, now: Instant) {
        let group = self.group_of(server);
        let event = HealthEvent {
            group: self.groups[group].name.clone(),
            addr: self.servers[server].target.addr,
            change: HealthChange::Checked { up },
        };
        self.apply(&event, now);
        self.events.borrow_mut().push(event);
    }

    /// Takes in a health change from another worker (or this one's checks).
    pub fn apply(&self, event: &HealthEvent, now: Instant) {
        for (group, g) in self.groups.iter().enumerate() {
            if g.name != event.group {
                continue;
            }
            for &id in &g.servers {
                let server = &self.servers[id];
                if server.target.addr != event.addr {
                    continue;
                }
                let mut health = server.health.get();
                match event.change {
                    HealthChange::Ejected { length } => health.outlier.eject(now, length),
                    HealthChange::Checked { up } => {
                        health.up = up;
                        if up {
                            health.outlier.readmit();
                        }
                    }
                }
                server.health.set(health);
            }
            self.review(group, now);
        }
    }

    /// The health changes decided here since the last call, for the other workers.
    pub fn take_events(&self) -> Vec<HealthEvent> {
        std::mem::take(&mut *self.events.borrow_mut())
    }

    /// Every group: its name, and each server's label, address and state.
    pub fn states(&self, now: Instant) -> GroupStates {
        self.groups
            .iter()
            .enumerate()
            .map(|(group, g)| {
                self.review_due(group, now);
                let weights = g.balancer.borrow().weights().to_vec();
                let servers = g
                    .servers
                    .iter()
                    .enumerate()
                    .map(|(position, &id)| {
                        let server = &self.servers[id];
                        let health = server.health.get();
                        let state = if !health.up {
                            ServerState::Down
                        } else if health.outlier.is_ejected(now) {
                            ServerState::Ejected
                        } else if weights[position] == 0 {
                            ServerState::Standby
                        } else {
                            ServerState::Up
                        };
                        (server.label.clone(), state)
                    })
                    .collect();
                (g.name.clone(), servers)
            })
            .collect()
    }

    /// What `group` hashes its requests on, when it balances by `hash:`.
    pub fn hash_key(&self, group: usize) -> Option<&HashKey> {
        self.groups[group].hash.as_ref().map(|(key, _)| key)
    }

    /// Counts a request outstanding on `server` (and its group) until the guard is dropped.
    pub fn begin(&self, server: usize) -> InFlight<'_> {
        let outstanding = &self.servers[server].outstanding;
        outstanding.set(outstanding.get() + 1);
        let group = &self.groups[self.servers[server].group];
        group.outstanding.set(group.outstanding.get() + 1);
        InFlight {
            server: outstanding,
            group,
        }
    }

    /// Whether `group` has room for one more request under its limits (the group's own; a
    /// server's are looked at by [`Self::next_server`]).
    pub fn group_has_room(&self, group: usize) -> bool {
        let g = &self.groups[group];
        let Some(limits) = &g.limits else {
            return true;
        };
        limits
            .max_requests
            .is_none_or(|max| g.outstanding.get() < max)
    }

    /// Whether `server` has room for one more request: under its outstanding limit, and with
    /// an idle connection or room for a new one (its own limit and its group's).
    fn server_has_room(&self, g: &Group, limits: &Limits, server: &Server) -> bool {
        if limits
            .max_requests_per_server
            .is_some_and(|max| server.outstanding.get() >= max)
        {
            return false;
        }
        let per_server = limits.max_connections_per_server;
        if per_server.is_none() && limits.max_connections.is_none() {
            return true;
        }
        if self.pools.has_idle(server.slot) {
            return true;
        }
        if per_server.is_some_and(|max| server.open.get() >= max) {
            return false;
        }
        limits.max_connections.is_none_or(|max| {
            let open: u32 = g
                .servers
                .iter()
                .map(|&id| self.servers[id].open.get())
                .sum();
            open < max
        })
    }

    /// Waits, as one of the group's pending requests, until `group` has room and a server in
    /// service after `start` has too; the circuit breaker's overflow (`Err`) when no more
    /// requests may wait or the wait runs out.
    pub async fn wait_for_room(
        &self,
        group: usize,
        start: usize,
    ) -> Result<(usize, usize), ProxyError> {
        let g = &self.groups[group];
        let overflow = || {
            self.count_overflow(group);
            ProxyError::Overflow(g.name.clone())
        };
        let Some(limits) = g.limits else {
            return Err(ProxyError::NoHealthyServer(g.name.clone()));
        };
        if g.pending.get() >= limits.max_pending {
            return Err(overflow());
        }
        ServerStats::count(&g.stats.pending);
        g.pending.set(g.pending.get() + 1);
        let deadline = Instant::now() + limits.pending_timeout;
        let found = loop {
            if self.group_has_room(group) {
                if let Some(found) = self.next_server(group, start, None) {
                    break Some(found);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break None;
            }
            let mut registered = false;
            let woken = std::future::poll_fn(|cx| {
                if registered {
                    return std::task::Poll::Ready(());
                }
                registered = true;
                g.waiters.borrow_mut().push(cx.waker().clone());
                std::task::Poll::Pending
            });
            let _ = monoio::time::timeout(left, woken).await;
        };
        g.pending.set(g.pending.get().saturating_sub(1));
        found.ok_or_else(overflow)
    }

    /// Counts a request's first try in `group`'s retry budget.
    pub fn budget_request(&self, group: usize, now: Instant) {
        self.groups[group].budget.borrow_mut().request(now);
    }

    /// Whether `group`'s retry budget allows one more retry now (counted when it does).
    pub fn budget_retry(&self, group: usize, now: Instant) -> bool {
        let g = &self.groups[group];
        let allowed = g.budget.borrow_mut().try_retry(now);
        ServerStats::count(if allowed {
            &g.stats.retries
        } else {
            &g.stats.retries_refused
        });
        allowed
    }

    /// The server a retry of a request that began at `start` goes to after the one at
    /// `offset`, when there is one and `group`'s retry budget allows it.
    pub fn retry_server(
        &self,
        group: usize,
        start: usize,
        offset: usize,
    ) -> Option<(usize, usize)> {
        self.next_server(group, start, Some(offset))
            .filter(|_| self.budget_retry(group, Instant::now()))
    }

    /// The server a hedged request's second try goes to: the next one in service with room
    /// after the first (at `offset` from `start`), within the retry budget; counted.
    pub fn hedge_server(&self, group: usize, start: usize, offset: usize) -> Option<usize> {
        let (_, server) = self.retry_server(group, start, offset)?;
        ServerStats::count(&self.groups[group].stats.hedges);
        Some(server)
    }

    /// Counts a connection or request refused by `group`'s circuit breaker.
    pub fn count_overflow(&self, group: usize) {
        ServerStats::count(&self.groups[group].stats.overflows);
    }

    /// Counts a retry that the budget does not govern (after a refused connection).
    pub fn count_retry(&self, group: usize) {
        ServerStats::count(&self.groups[group].stats.retries);
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
                _open: OpenConn::new(&self.servers[server].open),
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

    /// A connection for an active check of `server` (TLS for `https://` servers unless
    /// `tls` is false: a TCP check), within `timeout`; not pooled, not counted as a connect.
    pub async fn dial_check(
        &self,
        server: usize,
        tls: bool,
        timeout: Duration,
    ) -> Result<Conn<D::Stream>, ProxyError> {
        let target = &self.servers[server].target;
        let stream = if tls || target.tls.is_none() {
            self.dialer.dial(target, timeout).await?
        } else {
            let plain = UpstreamTarget {
                addr: target.addr,
                tls: None,
            };
            self.dialer.dial(&plain, timeout).await?
        };
        Ok(Conn::new(stream, 4096, self.deadlines.timer()))
    }

    /// Whether active checks have `server` up (on this worker).
    pub fn is_up(&self, server: usize) -> bool {
        self.servers[server].health.get().up
    }

    /// The index of the server at `position` in `group`.
    pub fn server_of(&self, group: usize, position: usize) -> usize {
        self.groups[group].servers[position]
    }

    /// The group `server` belongs to.
    pub fn group_of(&self, server: usize) -> usize {
        self.servers[server].group
    }

    /// The name `server` goes by in a `Host` field: its TLS name, else its address.
    pub fn host_name(&self, server: usize) -> String {
        let Server { target, key, .. } = &self.servers[server];
        match &key.tls {
            Some((name, _, _)) if target.addr.port() == 443 => name.clone(),
            Some((name, _, _)) => format!("{name}:{}", target.addr.port()),
            None => target.addr.to_string(),
        }
    }

    /// The server's name in metrics, logs and `/status`.
    pub fn label(&self, server: usize) -> &str {
        &self.servers[server].label
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
