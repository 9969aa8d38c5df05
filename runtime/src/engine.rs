//! The workers: one thread per core, one runtime each, accept loops and the drain.
//!
//! [`Engine::run`] starts `workers` threads. Each pins itself to its core, builds its own
//! runtime ([`crate::driver`]), asks the caller's factory for a connection handler, and runs
//! one accept loop per listening socket it owns. Accepted connections become tasks on that
//! worker and never leave it. When [`Shutdown`] fires, each worker stops accepting (its
//! sockets close), waits for its connections to finish up to the drain deadline, and returns.

use std::cell::{Cell, OnceCell, RefCell};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use monoio::net::{TcpListener, TcpStream};

use crate::driver::{DriverChoice, DriverKind, WorkerRuntime};
use crate::shutdown::{Drain, Shutdown};

/// How often an idle worker looks at the process-wide shutdown flag.
const CONTROL_TICK: Duration = Duration::from_millis(50);
/// How long an accept loop backs off when the process is out of file descriptors or memory.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How often a worker at its connection limit looks whether it may accept again.
const ACCEPT_PAUSE: Duration = Duration::from_millis(5);

/// The engine's settings.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    pub workers: usize,
    pub pin: bool,
    pub driver: DriverChoice,
    pub ring_entries: u32,
    pub drain_timeout: Duration,
    /// Most open connections per worker; at the limit the worker stops accepting for a moment.
    pub max_connections: usize,
}

/// What a worker's handler factory learns about the worker it runs on.
pub struct WorkerContext {
    pub id: usize,
    pub driver: DriverKind,
    pub drain: Drain,
    /// This worker's listening sockets, to add and remove while it runs (a reload).
    pub listeners: Rc<dyn Listeners>,
}

/// A worker's accept loops, changed while it runs: a reload binds new addresses and closes
/// removed ones without stopping the worker.
pub trait Listeners {
    /// Starts accepting on `socket`; its connections reach the handler with `key`.
    fn add(&self, socket: std::net::TcpListener, key: usize) -> io::Result<()>;
    /// Stops accepting on the socket of `key` (the kernel refuses what was queued on it).
    fn remove(&self, key: usize);
    /// Begins this worker's drain now, without waiting for the control tick.
    fn stop(&self);
    /// Per socket key: connections accepted on this worker and open now.
    fn counts(&self) -> Vec<(usize, ConnectionCount)>;
}

/// Connections of one listening socket (or of a worker).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectionCount {
    pub accepted: u64,
    pub open: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("worker {worker}: cannot start an I/O driver: {source}")]
    Driver { worker: usize, source: io::Error },
    #[error("worker {worker}: cannot use its listening socket: {source}")]
    Listener { worker: usize, source: io::Error },
    #[error("cannot start worker thread: {0}")]
    Spawn(io::Error),
    #[error("worker {0} stopped unexpectedly")]
    WorkerDied(usize),
}

/// What a worker reports once it is serving, or why it could not start.
enum WorkerStart {
    Ready {
        driver: DriverKind,
        refused: Vec<String>,
    },
    Failed(EngineError),
}

pub struct Engine;

impl Engine {
    /// Runs the workers until `shutdown` fires and every worker has drained.
    ///
    /// `listeners[i]` are worker `i`'s sockets (see [`crate::bind_listeners`]), each with the
    /// key its connections are handed over with; `payloads[i]` is what worker `i`'s factory
    /// gets besides its context (its postbox, say). `make_handler` runs once on each worker,
    /// inside its runtime, and returns the function that serves one accepted connection; its
    /// third argument is the key of the socket that accepted it. `on_ready` is called once
    /// every worker is serving, with the driver worker 0 runs on.
    pub fn run<X, M, H, Fut>(
        options: &EngineOptions,
        listeners: Vec<Vec<(std::net::TcpListener, usize)>>,
        payloads: Vec<X>,
        shutdown: &Shutdown,
        on_ready: impl FnOnce(DriverKind),
        make_handler: M,
    ) -> Result<(), EngineError>
    where
        X: Send + 'static,
        M: Fn(&WorkerContext, X) -> H + Send + Sync + 'static,
        H: Fn(TcpStream, SocketAddr, usize) -> Fut + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let make_handler = Arc::new(make_handler);
        let cores = if options.pin {
            core_affinity::get_core_ids().unwrap_or_default()
        } else {
            Vec::new()
        };
        let (started_tx, started_rx) = mpsc::channel();
        let mut threads = Vec::with_capacity(listeners.len());
        assert_eq!(listeners.len(), payloads.len(), "one payload per worker");
        for (id, (sockets, payload)) in listeners.into_iter().zip(payloads).enumerate() {
            let worker = Worker {
                id,
                core: (!cores.is_empty()).then(|| cores[id % cores.len()]),
                options: options.clone(),
                shutdown: shutdown.clone(),
            };
            let make_handler = make_handler.clone();
            let started = started_tx.clone();
            let thread = std::thread::Builder::new()
                .name(format!("ringwall-w{id}"))
                .spawn(move || worker.run(sockets, payload, &*make_handler, &started))
                .map_err(EngineError::Spawn);
            match thread {
                Ok(thread) => threads.push(thread),
                Err(e) => {
                    shutdown.trigger();
                    join_all(threads);
                    return Err(e);
                }
            }
        }
        drop(started_tx);

        let mut first_error = None;
        let mut driver = None;
        for _ in 0..threads.len() {
            match started_rx.recv() {
                Ok(WorkerStart::Ready {
                    driver: kind,
                    refused,
                }) => {
                    if driver.is_none() {
                        for reason in refused {
                            tracing::info!("io driver not available: {reason}");
                        }
                    }
                    driver.get_or_insert(kind);
                }
                Ok(WorkerStart::Failed(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(_) => {
                    first_error.get_or_insert(EngineError::WorkerDied(0));
                }
            }
        }
        if let Some(e) = first_error {
            shutdown.trigger();
            join_all(threads);
            return Err(e);
        }
        if let Some(kind) = driver {
            on_ready(kind);
        }
        let mut died = None;
        for (id, thread) in threads.into_iter().enumerate() {
            if thread.join().is_err() {
                died.get_or_insert(EngineError::WorkerDied(id));
            }
        }
        died.map_or(Ok(()), Err)
    }
}

fn join_all(threads: Vec<std::thread::JoinHandle<()>>) {
    for thread in threads {
        let _ = thread.join();
    }
}

struct Worker {
    id: usize,
    core: Option<core_affinity::CoreId>,
    options: EngineOptions,
    shutdown: Shutdown,
}

impl Worker {
    fn run<X, M, H, Fut>(
        self,
        sockets: Vec<(std::net::TcpListener, usize)>,
        payload: X,
        make_handler: &M,
        started: &mpsc::Sender<WorkerStart>,
    ) where
        M: Fn(&WorkerContext, X) -> H,
        H: Fn(TcpStream, SocketAddr, usize) -> Fut + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        if let Some(core) = self.core {
            if !core_affinity::set_for_current(core) {
                tracing::warn!(
                    worker = self.id,
                    core = core.id,
                    "cannot pin worker to core"
                );
            }
        }
        let (mut runtime, driver, refused) =
            match WorkerRuntime::build(self.options.driver, self.options.ring_entries) {
                Ok(built) => built,
                Err(source) => {
                    let _ = started.send(WorkerStart::Failed(EngineError::Driver {
                        worker: self.id,
                        source,
                    }));
                    return;
                }
            };
        runtime.block_on(async move {
            let drain = Drain::default();
            let counts = Rc::new(ConnectionCounts::default());
            let acceptors = Rc::new(Acceptors::<H> {
                handler: OnceCell::new(),
                counts: counts.clone(),
                max_connections: self.options.max_connections,
                loops: RefCell::new(Vec::new()),
                stop: Drain::default(),
            });
            let context = WorkerContext {
                id: self.id,
                driver,
                drain: drain.clone(),
                listeners: acceptors.clone(),
            };
            let handler = Rc::new(make_handler(&context, payload));
            let _ = acceptors.handler.set(handler);
            for (socket, key) in sockets {
                if let Err(source) = acceptors.add(socket, key) {
                    let _ = started.send(WorkerStart::Failed(EngineError::Listener {
                        worker: self.id,
                        source,
                    }));
                    return;
                }
            }
            let _ = started.send(WorkerStart::Ready { driver, refused });

            while !self.shutdown.is_triggered() && !acceptors.stop.is_draining() {
                monoio::select! {
                    () = monoio::time::sleep(CONTROL_TICK) => {}
                    () = acceptors.stop.wait() => {}
                }
            }
            drain.begin();
            // Stop listening now: the kernel takes the socket out of the SO_REUSEPORT group and
            // refuses what was queued on it, so no client waits on a worker that will not
            // accept again. Then the accept loops end and drop their handles. Sockets handed
            // over to a new process (a binary upgrade) are only closed here: the new process
            // accepts what is queued on them.
            let handed_over = self.shutdown.sockets_shared();
            let loops = std::mem::take(&mut *acceptors.loops.borrow_mut());
            for accept_loop in &loops {
                accept_loop.stop(!handed_over);
            }
            for accept_loop in loops {
                accept_loop.task.await;
            }
            let deadline = Instant::now() + self.options.drain_timeout;
            while counts.active.get() > 0 && Instant::now() < deadline {
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
            if counts.active.get() > 0 {
                tracing::warn!(
                    worker = self.id,
                    connections = counts.active.get(),
                    "drain deadline passed: closing remaining connections"
                );
            }
            // The accepted count per worker shows whether SO_REUSEPORT kept the workers even.
            tracing::info!(
                worker = self.id,
                accepted = counts.accepted.get(),
                "worker stopped"
            );
        });
    }
}

/// A worker's accept loops and what they need to start more.
struct Acceptors<H> {
    handler: OnceCell<Rc<H>>,
    counts: Rc<ConnectionCounts>,
    max_connections: usize,
    loops: RefCell<Vec<AcceptLoop>>,
    /// Begun by [`Listeners::stop`].
    stop: Drain,
}

/// One running accept loop.
struct AcceptLoop {
    key: usize,
    /// A second handle on the listening socket, to stop it synchronously (closing monoio's
    /// handle is an io_uring operation that completes later).
    stopper: std::net::TcpListener,
    stop: Drain,
    task: monoio::task::JoinHandle<()>,
    /// This socket's connections.
    counts: Rc<ConnectionCounts>,
}

impl AcceptLoop {
    /// Ends the loop; `refuse`: take the socket out of the kernel's group first, refusing
    /// what was queued on it.
    fn stop(&self, refuse: bool) {
        if refuse {
            let _ = socket2::SockRef::from(&self.stopper).shutdown(std::net::Shutdown::Both);
        }
        self.stop.begin();
    }
}

impl<H, Fut> Listeners for Acceptors<H>
where
    H: Fn(TcpStream, SocketAddr, usize) -> Fut + 'static,
    Fut: Future<Output = ()> + 'static,
{
    fn add(&self, socket: std::net::TcpListener, key: usize) -> io::Result<()> {
        let Some(handler) = self.handler.get() else {
            return Err(io::Error::other("the worker has no connection handler yet"));
        };
        let stopper = socket.try_clone()?;
        let listener = TcpListener::from_std(socket)?;
        let stop = Drain::default();
        let counts = Rc::new(ConnectionCounts::default());
        let task = monoio::spawn(accept_loop(
            listener,
            key,
            handler.clone(),
            [self.counts.clone(), counts.clone()],
            stop.clone(),
            self.max_connections,
        ));
        self.loops.borrow_mut().push(AcceptLoop {
            key,
            stopper,
            stop,
            task,
            counts,
        });
        Ok(())
    }

    fn remove(&self, key: usize) {
        self.loops.borrow_mut().retain(|l| {
            if l.key == key {
                l.stop(true);
            }
            l.key != key
        });
    }

    fn stop(&self) {
        self.stop.begin();
    }

    fn counts(&self) -> Vec<(usize, ConnectionCount)> {
        self.loops
            .borrow()
            .iter()
            .map(|l| {
                let count = ConnectionCount {
                    accepted: l.counts.accepted.get(),
                    open: l.counts.active.get() as u64,
                };
                (l.key, count)
            })
            .collect()
    }
}

/// Accepts connections on one socket until `stop`, serving each on its own task.
async fn accept_loop<H, Fut>(
    listener: TcpListener,
    index: usize,
    handler: Rc<H>,
    // The worker's counts (its limit is on them) and this socket's.
    counts: [Rc<ConnectionCounts>; 2],
    drain: Drain,
    max_connections: usize,
) where
    H: Fn(TcpStream, SocketAddr, usize) -> Fut + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let mut paused = false;
    loop {
        // At the limit, leave new connections in the kernel's queue (or to other workers)
        // rather than accepting and failing them, and look again shortly.
        if counts[0].active.get() >= max_connections {
            if !paused {
                tracing::warn!(
                    max_connections,
                    "worker at its connection limit: pausing accepts"
                );
                paused = true;
            }
            monoio::select! {
                () = monoio::time::sleep(ACCEPT_PAUSE) => continue,
                () = drain.wait() => break,
            }
        }
        paused = false;
        let accepted = monoio::select! {
            accepted = listener.accept() => accepted,
            () = drain.wait() => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                let guard = ActiveGuard::new(counts.clone());
                let connection = CatchPanic(Box::pin(handler(stream, peer, index)));
                monoio::spawn(async move {
                    let _guard = guard;
                    if connection.await.is_err() {
                        tracing::error!(%peer, "connection task panicked; connection closed");
                    }
                });
            }
            Err(e) => {
                if is_resource_exhaustion(&e) {
                    tracing::warn!("accept: {e}; pausing accepts");
                    monoio::time::sleep(ACCEPT_BACKOFF).await;
                } else if e.raw_os_error() == Some(libc::EINVAL) {
                    // The socket no longer listens (shut down from elsewhere): nothing will
                    // come on it again.
                    tracing::error!("accept: {e}: the socket no longer listens; its loop ends");
                    break;
                } else {
                    tracing::debug!("accept: {e}");
                }
            }
        }
    }
}

fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// A worker's connections: open now, and accepted since it started.
#[derive(Default)]
struct ConnectionCounts {
    active: Cell<usize>,
    accepted: Cell<u64>,
}

/// Counts a connection, accepted and live, on its worker and its socket for as long as it
/// exists.
struct ActiveGuard([Rc<ConnectionCounts>; 2]);

impl ActiveGuard {
    fn new(counts: [Rc<ConnectionCounts>; 2]) -> Self {
        for c in &counts {
            c.accepted.set(c.accepted.get() + 1);
            c.active.set(c.active.get() + 1);
        }
        Self(counts)
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        for c in &self.0 {
            c.active.set(c.active.get() - 1);
        }
    }
}

/// Turns a panic inside one connection's future into an error, so that a bug hit by one
/// connection closes that connection instead of the worker and every connection on it.
struct CatchPanic<F>(Pin<Box<F>>);

impl<F: Future<Output = ()>> Future for CatchPanic<F> {
    type Output = Result<(), ()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Ready(())) => Poll::Ready(Ok(())),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(Err(())),
        }
    }
}
