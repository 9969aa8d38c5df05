//! The workers: one thread per core, one runtime each, accept loops and the drain.
//!
//! [`Engine::run`] starts `workers` threads. Each pins itself to its core, builds its own
//! runtime ([`crate::driver`]), asks the caller's factory for a connection handler, and runs
//! one accept loop per listening socket it owns. Accepted connections become tasks on that
//! worker and never leave it. When [`Shutdown`] fires, each worker stops accepting (its
//! sockets close), waits for its connections to finish up to the drain deadline, and returns.

use std::cell::Cell;
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
    /// `listeners[i]` are worker `i`'s sockets (see [`crate::bind_listeners`]). `make_handler`
    /// runs once on each worker, inside its runtime, and returns the function that serves one
    /// accepted connection; its third argument is the index of the listening address (in the
    /// order given to `bind_listeners`) that accepted it. `on_ready` is called once every worker is serving, with the driver
    /// worker 0 runs on.
    pub fn run<M, H, Fut>(
        options: &EngineOptions,
        listeners: Vec<Vec<std::net::TcpListener>>,
        shutdown: &Shutdown,
        on_ready: impl FnOnce(DriverKind),
        make_handler: M,
    ) -> Result<(), EngineError>
    where
        M: Fn(&WorkerContext) -> H + Send + Sync + 'static,
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
        for (id, sockets) in listeners.into_iter().enumerate() {
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
                .spawn(move || worker.run(sockets, &*make_handler, &started))
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
    fn run<M, H, Fut>(
        self,
        sockets: Vec<std::net::TcpListener>,
        make_handler: &M,
        started: &mpsc::Sender<WorkerStart>,
    ) where
        M: Fn(&WorkerContext) -> H,
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
            let mut listeners = Vec::with_capacity(sockets.len());
            // A second handle on each listening socket, to stop it synchronously on drain
            // (closing monoio's handle is an io_uring operation that completes later).
            let mut stoppers = Vec::with_capacity(sockets.len());
            for socket in sockets {
                let converted = socket
                    .try_clone()
                    .and_then(|stopper| Ok((stopper, TcpListener::from_std(socket)?)));
                match converted {
                    Ok((stopper, listener)) => {
                        stoppers.push(stopper);
                        listeners.push(listener);
                    }
                    Err(source) => {
                        let _ = started.send(WorkerStart::Failed(EngineError::Listener {
                            worker: self.id,
                            source,
                        }));
                        return;
                    }
                }
            }
            let context = WorkerContext {
                id: self.id,
                driver,
                drain: drain.clone(),
            };
            let handler = Rc::new(make_handler(&context));
            let counts = Rc::new(ConnectionCounts::default());
            let mut accept_loops = Vec::with_capacity(listeners.len());
            for (index, listener) in listeners.into_iter().enumerate() {
                accept_loops.push(monoio::spawn(accept_loop(
                    listener,
                    index,
                    handler.clone(),
                    counts.clone(),
                    drain.clone(),
                    self.options.max_connections,
                )));
            }
            let _ = started.send(WorkerStart::Ready { driver, refused });

            while !self.shutdown.is_triggered() {
                monoio::time::sleep(CONTROL_TICK).await;
            }
            drain.begin();
            // Stop listening now: the kernel takes the socket out of the SO_REUSEPORT group and
            // refuses what was queued on it, so no client waits on a worker that will not
            // accept again. Then the accept loops end and drop their handles.
            for stopper in stoppers {
                let _ = socket2::SockRef::from(&stopper).shutdown(std::net::Shutdown::Both);
            }
            for accept_loop in accept_loops {
                accept_loop.await;
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

/// Accepts connections on one socket until the worker drains, serving each on its own task.
async fn accept_loop<H, Fut>(
    listener: TcpListener,
    index: usize,
    handler: Rc<H>,
    counts: Rc<ConnectionCounts>,
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
        if counts.active.get() >= max_connections {
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
                counts.accepted.set(counts.accepted.get() + 1);
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

/// Counts a live connection on its worker for as long as it exists.
struct ActiveGuard(Rc<ConnectionCounts>);

impl ActiveGuard {
    fn new(counts: Rc<ConnectionCounts>) -> Self {
        counts.active.set(counts.active.get() + 1);
        Self(counts)
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.set(self.0.active.get() - 1);
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
