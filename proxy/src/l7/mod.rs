//! The L7 request path: the phases, the per-request context, the body pump, the router, the
//! upstream pools and the tunnel of upgraded connections.
//!
//! Each worker builds one [`Worker`] from the configuration: its listeners, its route table
//! (each route with its compiled filter chain), its upstream pools and its limits. Every
//! connection the engine accepts on that worker is served by [`serve`] (the phases are in
//! `phases.rs`), which only ever touches that worker's state. The path is generic over the
//! client's stream and over the [`Dialer`] that makes upstream connections, so TLS streams and
//! the in-memory streams of the unit tests run the same code as TCP.

mod client_limit;
mod context;
mod error;
mod health;
mod phases;
mod pump;
mod router;
mod splice;
mod transport;
mod tunnel;
mod upstream;

#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use ringwall_runtime::{Deadlines, Drain};

pub use client_limit::{ClientLimit, ClientSlot};
pub use context::{PolicyNotes, RequestContext};
pub use error::{ProxyError, Side};
pub use health::start_checks;
pub use phases::{accept_tls, ip_bytes, serve, serve_proxied, serve_tls};
pub use router::{RouteEntry, RouteQuery, RouteTable};
pub use splice::splice_both;
pub use transport::{read_some, Conn, IoFailure, ReadSize};
pub use tunnel::relay_streams;
pub use upstream::{Dialer, HealthChange, HealthEvent, ServerState, TcpDialer, Upstreams};

use crate::access_log::AccessLog;
use crate::config::{Cidr, Config, Http, Limits, ListenerProtocol, TcpForward, Timeouts};
use crate::filters::Gateway;
use crate::http1::{HeadLimits, HeadOverlay};
use crate::metrics::{ListenerStats, WorkerMetrics};

/// Overlays kept for reuse per worker: enough for every request in flight on a busy worker,
/// few enough to cost nothing when idle.
const OVERLAY_POOL: usize = 256;

/// What the request path knows of a listener.
#[derive(Clone, Debug)]
pub struct ListenerInfo {
    pub name: String,
    /// `http`, `https`, `tcp` or `tls`.
    pub scheme: &'static str,
    pub protocol: ListenerProtocol,
    /// Where a `tcp` or `tls` listener forwards.
    pub forward: Option<TcpForward>,
    /// Peers whose connections start with a PROXY protocol header.
    pub proxy_protocol_from: Vec<Cidr>,
    /// This listener's counters on this worker.
    pub stats: Rc<ListenerStats>,
    /// The key of the socket it accepts on (the same in every generation that keeps it).
    pub key: usize,
}

impl ListenerInfo {
    /// Whether a connection from `peer` starts with a PROXY protocol header.
    pub fn expects_proxy_header(&self, peer: SocketAddr) -> bool {
        self.proxy_protocol_from
            .iter()
            .any(|cidr| cidr.contains(peer.ip()))
    }
}

/// One worker's view of the proxy: everything the request path reads, owned by that worker.
pub struct Worker<D: Dialer = TcpDialer> {
    pub timeouts: Timeouts,
    pub limits: Limits,
    pub request_limits: HeadLimits,
    pub response_limits: HeadLimits,
    pub http: Http,
    /// In the order of the configuration's listeners (the engine's listener index).
    pub listeners: Vec<ListenerInfo>,
    pub routes: RouteTable,
    pub upstreams: Upstreams<D>,
    /// The `[[rate_limit]]`s' state on this worker (kept across generations that keep a
    /// limit's settings) and its credentials.
    pub gateway: Gateway,
    pub drain: Drain,
    /// The timers of this worker's connections, client and upstream
    /// ([`Worker::run_deadlines`] runs them).
    pub deadlines: Rc<Deadlines>,
    /// Open connections per client address, shared by all workers; `None` when unlimited.
    pub client_limit: Option<Arc<ClientLimit>>,
    /// Pipes for bodies spliced from socket to socket.
    pub pipes: Rc<splice::Pipes>,
    /// This worker's access log; `None` when logging is off.
    pub access_log: Option<Rc<AccessLog>>,
    /// This worker's counters (all its generations count into them).
    pub metrics: Rc<WorkerMetrics>,
    /// Which configuration this is: 1 at start, one more per reload.
    pub generation: u64,
    /// The newest generation of this worker, shared by all of them (weakly: an old
    /// generation keeps no other alive); connections move to it between requests.
    newest: Rc<RefCell<std::rc::Weak<Worker<D>>>>,
    /// Overlays of finished requests, cleared, with their allocations: a request in flight
    /// borrows two and gives them back, so filters' head edits allocate nothing once warm.
    overlays: Rc<RefCell<Vec<HeadOverlay>>>,
    /// This worker's response cache (`None` without `[cache]`), kept across generations.
    pub cache: Rc<RefCell<Option<crate::cache::Store>>>,
    /// The URLs this worker is fetching that other requests wait for.
    pub pending: crate::cache::Pending,
}

/// What a worker's generations share.
struct Shared<D: Dialer> {
    drain: Drain,
    deadlines: Rc<Deadlines>,
    client_limit: Option<Arc<ClientLimit>>,
    pipes: Rc<splice::Pipes>,
    access_log: Option<Rc<AccessLog>>,
    metrics: Rc<WorkerMetrics>,
    overlays: Rc<RefCell<Vec<HeadOverlay>>>,
    newest: Rc<RefCell<std::rc::Weak<Worker<D>>>>,
    cache: Rc<RefCell<Option<crate::cache::Store>>>,
}

/// A [`HeadOverlay`] borrowed from the worker's pool; goes back when dropped.
pub struct PooledOverlay<'w> {
    overlay: HeadOverlay,
    pool: &'w RefCell<Vec<HeadOverlay>>,
}

impl Deref for PooledOverlay<'_> {
    type Target = HeadOverlay;

    fn deref(&self) -> &HeadOverlay {
        &self.overlay
    }
}

impl DerefMut for PooledOverlay<'_> {
    fn deref_mut(&mut self) -> &mut HeadOverlay {
        &mut self.overlay
    }
}

impl Drop for PooledOverlay<'_> {
    fn drop(&mut self) {
        let mut pool = self.pool.borrow_mut();
        if pool.len() < OVERLAY_POOL {
            let mut overlay = std::mem::take(&mut self.overlay);
            overlay.clear();
            pool.push(overlay);
        }
    }
}

impl<D: Dialer> Worker<D> {
    pub fn new(
        config: &Config,
        worker_id: usize,
        drain: Drain,
        client_limit: Option<Arc<ClientLimit>>,
        dialer: D,
    ) -> Self {
        let deadlines = Rc::new(Deadlines::default());
        let metrics = Rc::new(WorkerMetrics::default());
        let upstreams = Upstreams::new(config, worker_id, dialer, deadlines.clone(), &metrics);
        Self::build(
            config,
            Shared {
                drain,
                deadlines,
                client_limit,
                pipes: Rc::default(),
                access_log: None,
                metrics,
                overlays: Rc::default(),
                newest: Rc::default(),
                cache: Rc::default(),
            },
            upstreams,
            None,
            1,
        )
    }

    /// The worker's next configuration generation, from a new `config`: it shares this one's
    /// timers, drain, pipes, access log, counters and the idle connections to the servers
    /// that stay. Connections move to it between requests ([`Worker::latest`]).
    #[must_use]
    pub fn next(&self, config: &Config, worker_id: usize, dialer: D) -> Self {
        let upstreams = self
            .upstreams
            .next(config, worker_id, dialer, &self.metrics);
        let next = Self::build(
            config,
            Shared {
                drain: self.drain.clone(),
                deadlines: self.deadlines.clone(),
                client_limit: self.client_limit.clone(),
                pipes: self.pipes.clone(),
                access_log: self.access_log.clone(),
                metrics: self.metrics.clone(),
                overlays: self.overlays.clone(),
                newest: self.newest.clone(),
                cache: self.cache.clone(),
            },
            upstreams,
            Some(&self.gateway),
            self.generation + 1,
        );
        self.metrics.forget_unused();
        next
    }

    /// Makes `next` the generation that the connections of every older one move to.
    pub fn replace_with(&self, next: &Rc<Worker<D>>) {
        *self.newest.borrow_mut() = Rc::downgrade(next);
    }

    /// The worker's newest generation (for work that outlives a request, like a cache
    /// refresh in the background).
    pub fn newest(&self) -> Option<Rc<Worker<D>>> {
        self.newest.borrow().upgrade()
    }

    /// Whether this is the worker's newest generation.
    pub fn is_newest(&self) -> bool {
        std::ptr::eq(self.newest.borrow().as_ptr(), self)
    }

    /// Gives the listeners the keys of their sockets, in listener order.
    pub fn set_keys(&mut self, keys: &[usize]) {
        for (listener, &key) in self.listeners.iter_mut().zip(keys) {
            listener.key = key;
        }
    }

    /// The newest generation, and the index there of this generation's listener `listener`
    /// (the one on the same socket, of the same protocol); `None` when this is the newest or
    /// when the listener is not in the newest one (its connections then finish here).
    pub fn latest(&self, listener: usize) -> Option<(Rc<Worker<D>>, usize)> {
        let newest = self.newest.borrow().upgrade()?;
        if std::ptr::eq(Rc::as_ptr(&newest), self) {
            return None;
        }
        let here = self.listeners.get(listener)?;
        let there = newest
            .listeners
            .iter()
            .position(|l| l.key == here.key && l.protocol == here.protocol)?;
        Some((newest, there))
    }

    fn build(
        config: &Config,
        shared: Shared<D>,
        upstreams: Upstreams<D>,
        previous: Option<&Gateway>,
        generation: u64,
    ) -> Self {
        let limits = config.limits.clone();
        {
            let mut cache = shared.cache.borrow_mut();
            match (&config.cache, cache.as_mut()) {
                (None, _) => *cache = None,
                (Some(settings), Some(store)) => store.resize(settings.memory, settings.max_entry),
                (Some(settings), None) => {
                    let mut store = crate::cache::Store::new(settings.memory, settings.max_entry);
                    store.disk = settings
                        .disk
                        .as_ref()
                        .and_then(|(dir, size)| crate::cache_disk::Disk::shared(dir, *size));
                    *cache = Some(store);
                }
            }
        }
        let gateway = Gateway::new(config, previous, |name| shared.metrics.limit(name));
        let mut routes = RouteTable::new(config, &gateway);
        routes.count_into(&shared.metrics);
        Self {
            timeouts: config.timeouts.clone(),
            request_limits: HeadLimits {
                max_head: limits.max_request_head,
                max_headers: limits.max_headers,
                max_uri: limits.max_uri,
            },
            response_limits: HeadLimits {
                max_head: limits.max_response_head,
                max_headers: limits.max_headers,
                max_uri: limits.max_uri,
            },
            limits,
            http: config.http.clone(),
            listeners: config
                .listeners
                .iter()
                .enumerate()
                .map(|(key, l)| ListenerInfo {
                    key,
                    name: l.name.clone(),
                    scheme: l.protocol.scheme(),
                    protocol: l.protocol,
                    forward: l.forward.clone(),
                    proxy_protocol_from: l.proxy_protocol_from.clone(),
                    stats: shared.metrics.listener(&l.name),
                })
                .collect(),
            routes,
            upstreams,
            gateway,
            drain: shared.drain,
            deadlines: shared.deadlines,
            client_limit: shared.client_limit,
            pipes: shared.pipes,
            access_log: shared.access_log,
            metrics: shared.metrics,
            generation,
            newest: shared.newest,
            overlays: shared.overlays,
            cache: shared.cache,
            pending: crate::cache::Pending::default(),
        }
    }

    /// The per-address connection limit for a client at `ip`: its slot (held for the
    /// connection's life; `None` when there is no limit), or `Err` when the address is at
    /// the limit.
    pub fn admit(&self, ip: std::net::IpAddr) -> Result<Option<ClientSlot>, ProxyError> {
        match self.client_limit.as_ref() {
            None => Ok(None),
            Some(table) => table
                .try_acquire(ip)
                .map(Some)
                .ok_or(ProxyError::TooManyConnections),
        }
    }

    /// An empty overlay for one request's head edits, from the pool when it has one.
    pub fn overlay(&self) -> PooledOverlay<'_> {
        let overlay = self.overlays.borrow_mut().pop().unwrap_or_default();
        PooledOverlay {
            overlay,
            pool: &self.overlays,
        }
    }

    /// Runs on the worker for as long as it does: ends the timed waits of its connections
    /// whose deadline passed, and the idle ones when the worker drains.
    pub fn run_deadlines(&self) -> impl std::future::Future<Output = ()> {
        self.deadlines.clone().run(self.drain.clone())
    }

    /// Runs on the worker until it drains: closes idle upstream connections past their idle
    /// timeout, and all of them when the worker drains.
    pub async fn sweep_idle_upstreams(self: Rc<Self>) {
        // The pools outlive this generation: hold them, not the generation.
        let (pools, drain) = (self.upstreams.pools().clone(), self.drain.clone());
        drop(self);
        loop {
            monoio::select! {
                () = monoio::time::sleep(pools.sweep_interval()) => pools.sweep(Instant::now()),
                () = drain.wait() => break,
            }
        }
        pools.close_idle();
    }
}
