//! One worker's running state: its current configuration generation, its inbox, its part of
//! a metrics scrape.
//!
//! The engine hands every accepted connection to [`WorkerState::accept`], which serves it on the
//! current generation (by the key of the socket it came from: the listener of that socket in
//! this generation). [`WorkerState::handle`] takes the worker's messages: a new generation
//! (built here from the process's one, its new sockets added and removed ones closed; the
//! previous generation's connections move over between requests), a scrape request from
//! another worker, counters for a scrape this worker runs, a shutdown.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

use ringwall_runtime::{rustls, Drain, Either, Listeners, Postbox, WorkerContext};

use crate::access_log::{AccessLog, LogWriter};
use crate::admin::{serve_admin, AdminInfo};
use crate::config::ListenerProtocol;
use crate::control::{Generation, Message, Process, SocketUse, WorkerGeneration};
use crate::l4::{serve_tcp, serve_udp};
use crate::l7::{serve, serve_proxied, serve_tls, start_checks, ClientLimit, TcpDialer, Worker};
use crate::metrics::Snapshot;
use crate::tls::ListenerTls;

/// How long a scrape waits for the other workers' counters.
const SCRAPE_WAIT: Duration = Duration::from_secs(2);

/// One generation as this worker serves it.
pub struct Current {
    pub worker: Rc<Worker>,
    pub generation: Arc<Generation>,
    /// Per listener: this worker's TLS configuration (`None`: plain).
    tls: Vec<Option<Arc<rustls::ServerConfig>>>,
    pub admin: Rc<AdminInfo>,
}

impl Current {
    fn new(worker: Rc<Worker>, generation: Arc<Generation>) -> Self {
        let tls = generation
            .tls
            .iter()
            .map(|t| t.as_ref().map(ListenerTls::for_worker))
            .collect();
        let admin = Rc::new(AdminInfo::new(&generation));
        Self {
            worker,
            generation,
            tls,
            admin,
        }
    }
}

/// A scrape this worker runs: the counters so far, and how many workers are still to answer.
struct Scrape {
    id: u64,
    sum: Snapshot,
    waiting: usize,
    waker: Option<Waker>,
}

pub struct WorkerState {
    pub id: usize,
    pub current: RefCell<Rc<Current>>,
    pub postbox: Rc<Postbox<Message>>,
    pub process: Arc<Process>,
    /// The engine's accept loops of this worker. Weak: they hold the connection handler,
    /// which holds this state.
    listeners: Weak<dyn Listeners>,
    udp_stops: RefCell<Vec<(usize, Drain)>>,
    scrapes: RefCell<Vec<Scrape>>,
    next_scrape: Cell<u64>,
    log: Option<Rc<AccessLog>>,
    /// When worker 0 may write the quota file again.
    next_quota_save: Cell<std::time::Instant>,
}

/// A worker's own copy of an upstream group's client configuration: its own session store,
/// so resuming sessions with an origin touches no other core's memory.
fn for_worker(config: &rustls::ClientConfig) -> rustls::ClientConfig {
    let mut config = config.clone();
    config.resumption = rustls::client::Resumption::in_memory_sessions(256);
    config
}

/// This worker's dialer for `generation`'s upstream groups.
pub fn dialer(generation: &Generation) -> TcpDialer {
    TcpDialer::new(
        generation
            .upstream_tls
            .iter()
            .map(|c| c.as_ref().map(|c| Arc::new(for_worker(c))))
            .collect(),
    )
}

/// What a worker starts from.
pub struct Start<'a> {
    pub postbox: Postbox<Message>,
    /// This worker's sockets of the first generation's UDP listeners.
    pub udp: Vec<(std::net::UdpSocket, usize)>,
    pub first: Arc<Generation>,
    pub client_limit: Option<Arc<ClientLimit>>,
    pub log: Option<&'a LogWriter>,
    pub process: Arc<Process>,
    /// The message path's tick.
    pub tick: Duration,
}

impl WorkerState {
    /// Builds the worker's state on its thread, and starts its tasks: the timers, the pool
    /// sweeper, the access log's flush, the UDP listeners and the inbox.
    pub fn start(ctx: &WorkerContext, start: Start<'_>) -> Rc<Self> {
        let first = &start.first;
        let mut worker = Worker::new(
            &first.config,
            ctx.id,
            ctx.drain.clone(),
            start.client_limit,
            dialer(first),
        );
        if let Some(writer) = start.log {
            let log = Rc::new(writer.for_worker(&first.config.access_log));
            monoio::spawn(log.clone().run(ctx.drain.clone()));
            worker.access_log = Some(log);
        }
        worker.set_keys(&first.keys);
        let worker = Rc::new(worker);
        worker.replace_with(&worker);
        monoio::spawn(worker.clone().sweep_idle_upstreams());
        monoio::spawn(worker.run_deadlines());
        let postbox = Rc::new(start.postbox);
        let state = Rc::new(WorkerState::new(
            worker,
            first.clone(),
            postbox.clone(),
            start.process,
            Rc::downgrade(&ctx.listeners),
        ));
        state.start_udp(start.udp);
        state.start_checks();
        let handler = state.clone();
        let ticker = state.clone();
        let last = state.clone();
        let inbox = postbox.run(
            start.tick,
            ctx.drain.clone(),
            move |message| handler.handle(message),
            move |postbox| ticker.tick(postbox),
        );
        monoio::spawn(async move {
            inbox.await;
            // The drain began: the quota counts as they are now.
            last.save_quotas();
        });
        state
    }

    /// Starts the active health checks this worker runs for the current generation.
    fn start_checks(&self) {
        let current = self.current();
        start_checks(
            &current.worker,
            &current.generation.config,
            self.id,
            self.postbox.workers(),
        );
    }

    /// The message path's tick: posts the health changes decided here since the last one,
    /// and what the rate limits admitted, to every other worker.
    fn tick(&self, postbox: &Postbox<Message>) {
        let current = self.current();
        let events = current.worker.upstreams.take_events();
        for event in events {
            postbox.broadcast_with(|| Message::Health(event.clone()));
        }
        let share = current
            .worker
            .cache
            .borrow_mut()
            .as_mut()
            .and_then(crate::cache::Store::take_share);
        if let Some(share) = share {
            let share = std::sync::Arc::new(share);
            postbox.broadcast_with(|| Message::CacheShare(share.clone()));
        }
        let usage = current.worker.gateway.limits.report();
        if !usage.is_empty() {
            postbox.broadcast_with(|| Message::RateUsage(usage.clone()));
        }
        if let Some(quotas) = &current.worker.gateway.quotas {
            let usage = quotas.report();
            if !usage.is_empty() {
                postbox.broadcast_with(|| Message::QuotaUsage(usage.clone()));
            }
            // Worker 0 keeps the file, at most once a second.
            let now = std::time::Instant::now();
            if now >= self.next_quota_save.get() {
                self.next_quota_save.set(now + Duration::from_secs(1));
                self.save_quotas();
            }
        }
    }

    /// Worker 0 writes the quota counts to their file (when they changed).
    fn save_quotas(&self) {
        if self.id != 0 {
            return;
        }
        if let Some(quotas) = &self.current().worker.gateway.quotas {
            if let Err(e) = quotas.save() {
                tracing::warn!("cannot write the quota file: {e}");
            }
        }
    }

    fn new(
        worker: Rc<Worker>,
        generation: Arc<Generation>,
        postbox: Rc<Postbox<Message>>,
        process: Arc<Process>,
        listeners: Weak<dyn Listeners>,
    ) -> Self {
        let log = worker.access_log.clone();
        Self {
            id: postbox.id(),
            current: RefCell::new(Rc::new(Current::new(worker, generation))),
            postbox,
            process,
            listeners,
            udp_stops: RefCell::new(Vec::new()),
            scrapes: RefCell::new(Vec::new()),
            next_scrape: Cell::new(0),
            log,
            next_quota_save: Cell::new(std::time::Instant::now()),
        }
    }

    pub fn current(&self) -> Rc<Current> {
        self.current.borrow().clone()
    }

    /// Serves a connection accepted on socket `key`, on the current generation.
    pub fn accept(
        self: &Rc<Self>,
        stream: monoio::net::TcpStream,
        peer: SocketAddr,
        key: usize,
    ) -> Either<impl Future<Output = ()>, Pin<Box<dyn Future<Output = ()>>>> {
        let current = self.current();
        match current.generation.listener_of(key) {
            // A socket a reload just removed: what it still accepted is closed.
            None => Either::right(Box::pin(async {})),
            Some(SocketUse::Admin) => {
                let admin = serve_admin(self.clone(), stream, peer);
                Either::right(Box::pin(admin))
            }
            Some(SocketUse::Listener(listener)) => {
                let tls = current.tls.get(listener).cloned().flatten();
                Either::left(serve_accepted(
                    current.worker.clone(),
                    stream,
                    peer,
                    listener,
                    tls,
                ))
            }
        }
    }

    /// Starts serving this worker's UDP sockets of `generation` (new ones: `sockets`).
    pub fn start_udp(&self, sockets: Vec<(std::net::UdpSocket, usize)>) {
        let current = self.current();
        for (socket, key) in sockets {
            let Some(SocketUse::Listener(listener)) = current.generation.listener_of(key) else {
                continue;
            };
            let stop = Drain::default();
            self.udp_stops.borrow_mut().push((key, stop.clone()));
            monoio::spawn(serve_udp(current.worker.clone(), socket, listener, stop));
        }
    }

    /// Handles one message from the inbox.
    pub fn handle(&self, message: Message) {
        match message {
            Message::Generation(next) => self.install(*next),
            Message::Scrape { from, id } => {
                let snapshot = Box::new(self.snapshot());
                self.postbox.send(from, Message::Counters { id, snapshot });
            }
            Message::Counters { id, snapshot } => {
                let mut scrapes = self.scrapes.borrow_mut();
                if let Some(scrape) = scrapes.iter_mut().find(|s| s.id == id) {
                    scrape.sum.merge(*snapshot);
                    scrape.waiting = scrape.waiting.saturating_sub(1);
                    if scrape.waiting == 0 {
                        if let Some(waker) = scrape.waker.take() {
                            waker.wake();
                        }
                    }
                }
            }
            Message::Health(event) => {
                self.current()
                    .worker
                    .upstreams
                    .apply(&event, std::time::Instant::now());
            }
            Message::RateUsage(usage) => {
                self.current()
                    .worker
                    .gateway
                    .limits
                    .absorb(&usage, std::time::Instant::now());
            }
            Message::JwtKeys(verifier) => {
                if let Some((_, auth)) = &self.current().worker.gateway.auth {
                    auth.set_jwt(verifier);
                }
            }
            Message::Credentials(credentials) => {
                if let Some((_, auth)) = &self.current().worker.gateway.auth {
                    auth.replace(credentials);
                }
            }
            Message::CacheShare(share) => {
                if let Some(store) = self.current().worker.cache.borrow_mut().as_mut() {
                    store.absorb(&share);
                }
            }
            Message::CachePurge { key, prefix } => {
                if let Some(store) = self.current().worker.cache.borrow_mut().as_mut() {
                    store.purge(&key, prefix);
                }
            }
            Message::QuotaUsage(usage) => {
                if let Some(quotas) = &self.current().worker.gateway.quotas {
                    quotas.absorb(&usage);
                }
            }
            Message::Shutdown => {
                self.save_quotas();
                if let Some(listeners) = self.listeners.upgrade() {
                    listeners.stop();
                }
            }
        }
    }

    /// Makes `next` this worker's current generation.
    fn install(&self, next: WorkerGeneration) {
        let WorkerGeneration {
            generation,
            tcp,
            udp,
            removed,
        } = next;
        let Some(listeners) = self.listeners.upgrade() else {
            return;
        };
        let old = self.current();
        let mut next = old
            .worker
            .next(&generation.config, self.id, dialer(&generation));
        next.set_keys(&generation.keys);
        let worker = Rc::new(next);
        if let Some(log) = &worker.access_log {
            log.set_format(&generation.config.access_log.format);
        }
        worker.replace_with(&worker);
        *self.current.borrow_mut() = Rc::new(Current::new(worker, generation.clone()));
        drop(old);
        for key in removed {
            listeners.remove(key);
            self.udp_stops.borrow_mut().retain(|(k, stop)| {
                if *k == key {
                    stop.begin();
                }
                *k != key
            });
        }
        for (socket, key) in tcp {
            if let Err(e) = listeners.add(socket, key) {
                tracing::error!(worker = self.id, "cannot accept on a new listener: {e}");
            }
        }
        self.start_udp(udp);
        self.start_checks();
        tracing::debug!(
            worker = self.id,
            generation = generation.number,
            "configuration generation installed"
        );
    }

    /// This worker's counters: its own, and the engine's count of connections per socket
    /// (named by the current generation's listeners; the admin listener's are left out).
    pub fn snapshot(&self) -> Snapshot {
        let dropped = self.log.as_ref().map_or(0, |log| log.dropped());
        let current = self.current();
        let mut snapshot = current.worker.metrics.snapshot(self.id, dropped);
        snapshot.cache = current.worker.cache.borrow().as_ref().map(|store| {
            let (bytes, entries) = store.usage();
            crate::metrics::CacheCounts {
                stats: store.stats,
                bytes,
                entries,
            }
        });
        let counts = self
            .listeners
            .upgrade()
            .map(|l| l.counts())
            .unwrap_or_default();
        for (key, count) in counts {
            let Some(SocketUse::Listener(listener)) = current.generation.listener_of(key) else {
                continue;
            };
            let name = current.worker.listeners[listener].name.clone();
            let counts = snapshot.listeners.entry((self.id, name)).or_default();
            counts.accepted += count.accepted;
            counts.open += count.open;
        }
        snapshot
    }

    /// Every worker's counters added up, and how many workers did not answer in time.
    pub async fn scrape(&self) -> (Snapshot, usize) {
        let others = self.postbox.workers() - 1;
        let id = self.next_scrape.get();
        self.next_scrape.set(id + 1);
        self.scrapes.borrow_mut().push(Scrape {
            id,
            sum: self.snapshot(),
            waiting: others,
            waker: None,
        });
        self.postbox
            .broadcast_with(|| Message::Scrape { from: self.id, id });
        let answered = std::future::poll_fn(|cx| {
            let mut scrapes = self.scrapes.borrow_mut();
            let Some(scrape) = scrapes.iter_mut().find(|s| s.id == id) else {
                return Poll::Ready(());
            };
            if scrape.waiting == 0 {
                return Poll::Ready(());
            }
            scrape.waker = Some(cx.waker().clone());
            Poll::Pending
        });
        let _ = monoio::time::timeout(SCRAPE_WAIT, answered).await;
        let mut scrapes = self.scrapes.borrow_mut();
        let at = scrapes
            .iter()
            .position(|s| s.id == id)
            .expect("this scrape's entry");
        let scrape = scrapes.swap_remove(at);
        (scrape.sum, scrape.waiting)
    }
}

/// The task of one accepted TCP connection, by its listener's kind. Every path but plain HTTP
/// is boxed: a plain connection's task keeps its small size.
fn serve_accepted(
    worker: Rc<Worker>,
    stream: monoio::net::TcpStream,
    peer: SocketAddr,
    listener: usize,
    config: Option<Arc<rustls::ServerConfig>>,
) -> Either<impl Future<Output = ()>, Pin<Box<dyn Future<Output = ()>>>> {
    let info = &worker.listeners[listener];
    let (protocol, proxied) = (info.protocol, info.expects_proxy_header(peer));
    if protocol == ListenerProtocol::Http && !proxied {
        return Either::left(serve(worker, stream, peer, listener));
    }
    let other: Pin<Box<dyn Future<Output = ()>>> = match protocol {
        ListenerProtocol::Tcp | ListenerProtocol::Tls => {
            Box::pin(serve_tcp(worker, stream, peer, listener, config))
        }
        _ if proxied => Box::pin(serve_proxied(worker, stream, peer, listener, config)),
        _ => match config {
            Some(config) => Box::pin(serve_tls(worker, stream, peer, listener, config)),
            None => Box::pin(async {}),
        },
    };
    Either::right(other)
}
