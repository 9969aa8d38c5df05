//! Starting ringwall from a validated [`Config`]: listeners, workers, per-worker proxy state.
//!
//! [`run`] binds every listening address once per worker (so a bad address fails before any
//! worker starts), starts the engine, builds each worker's [`Worker`] on that worker, and
//! returns when the shutdown has been triggered and every worker has drained.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use ringwall_runtime::{
    bind_listeners, bind_udp, DriverChoice, DriverKind, Either, Engine, EngineError, EngineOptions,
    Shutdown,
};

use crate::access_log::LogWriter;
use crate::admin::{serve_admin, AdminInfo};
use crate::config::{Config, IoDriver, ListenerProtocol};
use crate::l4::{serve_tcp, serve_udp};
use crate::l7::{serve, serve_proxied, serve_tls, ClientLimit, TcpDialer, Worker};
use crate::tls::{upstream_client_config, ListenerTls, TlsFileError};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    Bind(std::io::Error),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{0}")]
    Tls(TlsFileError),
    #[error("cannot open the access log {0}")]
    AccessLog(String),
}

/// Runs the proxy until `shutdown` fires and the workers have drained. `on_ready` is called
/// once every worker serves, with the bound addresses and the I/O driver in use.
pub fn run(
    config: Arc<Config>,
    shutdown: &Shutdown,
    on_ready: impl FnOnce(&[SocketAddr], DriverKind),
) -> Result<(), ServerError> {
    let workers = config.engine.workers;
    let max_connections = fit_connections_to_open_files(
        workers,
        config.limits.max_connections_per_worker,
        ringwall_runtime::raise_open_files_limit(),
    );
    let client_limit = ClientLimit::new(config.limits.max_connections_per_ip);
    let (tls, upstream_tls) = load_tls(&config)?;
    let tls = Arc::new(tls);
    let Bound {
        tcp,
        tcp_index,
        udp,
        udp_index,
        addrs: bound,
        admin,
    } = bind(&config, workers)?;
    let started = std::time::Instant::now();
    let status_addrs = bound.clone();
    if let Some(admin) = admin {
        tracing::info!("admin listener on http://{admin}");
    }
    let udp_sockets = Arc::new(udp);
    let log_writer =
        LogWriter::start(&config.access_log).map_err(|e| ServerError::AccessLog(e.to_string()))?;
    let log_writer = Arc::new(log_writer);
    let workers_log = log_writer.clone();
    let options = EngineOptions {
        workers,
        pin: config.engine.pin,
        driver: driver_choice(config.engine.io_driver),
        ring_entries: config.engine.ring_entries,
        drain_timeout: config.timeouts.drain,
        max_connections,
    };
    let result = Engine::run(
        &options,
        tcp,
        shutdown,
        |driver| on_ready(&bound, driver),
        move |ctx| {
            let mut worker = Worker::new(
                &config,
                ctx.id,
                ctx.drain.clone(),
                client_limit.clone(),
                TcpDialer::new(
                    upstream_tls
                        .iter()
                        .map(|c| c.as_ref().map(|c| Arc::new(for_worker(c))))
                        .collect(),
                ),
            );
            if let Some(writer) = workers_log.as_ref() {
                let log = Rc::new(writer.for_worker(&config.access_log));
                monoio::spawn(log.clone().run());
                worker.access_log = Some(log);
            }
            let worker = Rc::new(worker);
            monoio::spawn(worker.clone().sweep_idle_upstreams());
            monoio::spawn(worker.run_deadlines());
            for (socket, &listener) in udp_sockets[ctx.id].iter().zip(&udp_index) {
                // A second descriptor of this worker's socket (the first stays with the
                // main thread until the end of the run).
                match socket.try_clone() {
                    Ok(socket) => {
                        monoio::spawn(serve_udp(worker.clone(), socket, listener));
                    }
                    Err(e) => tracing::error!("worker {}: cannot use its UDP socket: {e}", ctx.id),
                }
            }
            // This worker's own TLS configuration per listener (`None`: plain).
            let tls: Vec<_> = tls
                .iter()
                .map(|t| t.as_ref().map(ListenerTls::for_worker))
                .collect();
            let tcp_index = tcp_index.clone();
            let info = Rc::new(AdminInfo::new(
                &config,
                started,
                ctx.driver.to_string(),
                status_addrs.clone(),
            ));
            move |stream, peer, engine_index: usize| {
                let listener = tcp_index[engine_index];
                if listener == ADMIN {
                    let admin = serve_admin(worker.clone(), info.clone(), stream, peer);
                    return Either::right(Box::pin(admin) as Pin<Box<dyn Future<Output = ()>>>);
                }
                let config = tls.get(listener).cloned().flatten();
                serve_accepted(worker.clone(), stream, peer, listener, config)
            }
        },
    );
    // The workers are gone, and their logs with them: let the writer write what they left.
    if let Some(writer) = Arc::into_inner(log_writer).flatten() {
        writer.finish();
    }
    result?;
    Ok(())
}

/// Every TLS configuration the listeners and upstream groups need, read from their files.
type LoadedTls = (
    Vec<Option<ListenerTls>>,
    Vec<Option<ringwall_runtime::rustls::ClientConfig>>,
);

fn load_tls(config: &Config) -> Result<LoadedTls, ServerError> {
    let listeners = config
        .listeners
        .iter()
        .map(|l| l.tls.as_ref().map(ListenerTls::load).transpose())
        .collect::<Result<Vec<_>, _>>()
        .map_err(ServerError::Tls)?;
    let upstreams = config
        .upstreams
        .iter()
        .map(|g| g.tls.as_ref().map(upstream_client_config).transpose())
        .collect::<Result<Vec<_>, _>>()
        .map_err(ServerError::Tls)?;
    Ok((listeners, upstreams))
}

/// The task of one accepted TCP connection, by its listener's kind. Every path but plain HTTP
/// is boxed: a plain connection's task keeps its small size.
fn serve_accepted(
    worker: Rc<Worker>,
    stream: monoio::net::TcpStream,
    peer: SocketAddr,
    listener: usize,
    config: Option<Arc<ringwall_runtime::rustls::ServerConfig>>,
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

/// Every listening socket, bound before any worker starts.
struct Bound {
    /// Per worker, the sockets of the TCP listeners (the engine's accept loops).
    tcp: Vec<Vec<std::net::TcpListener>>,
    /// The listener index of each engine socket index.
    tcp_index: Vec<usize>,
    /// Per worker, the sockets of the UDP listeners.
    udp: Vec<Vec<std::net::UdpSocket>>,
    udp_index: Vec<usize>,
    /// The bound addresses in listener order (port 0 resolved).
    addrs: Vec<SocketAddr>,
    /// The admin listener's bound address.
    admin: Option<SocketAddr>,
}

/// The listener index the admin socket maps to.
const ADMIN: usize = usize::MAX;

/// Binds every listener, TCP ones for the engine's accept loops and UDP ones a socket per
/// worker each.
fn bind(config: &Config, workers: usize) -> Result<Bound, ServerError> {
    let (udp_index, mut tcp_index): (Vec<usize>, Vec<usize>) = (0..config.listeners.len())
        .partition(|&i| config.listeners[i].protocol == ListenerProtocol::Udp);
    let addrs_of = |index: &[usize]| -> Vec<SocketAddr> {
        index.iter().map(|&i| config.listeners[i].addr).collect()
    };
    let share = config.engine.share_listen;
    let mut tcp_addrs = addrs_of(&tcp_index);
    if let Some(admin) = config.admin {
        // The admin listener is the engine's last socket.
        tcp_addrs.push(admin);
        tcp_index.push(ADMIN);
    }
    let (tcp, mut tcp_bound) =
        bind_listeners(&tcp_addrs, workers, share).map_err(ServerError::Bind)?;
    let admin = config.admin.is_some().then(|| tcp_bound.pop()).flatten();
    let (udp, udp_bound) =
        bind_udp(&addrs_of(&udp_index), workers, share).map_err(ServerError::Bind)?;
    let mut addrs = vec![SocketAddr::from(([0, 0, 0, 0], 0)); config.listeners.len()];
    for (&i, &addr) in tcp_index.iter().zip(&tcp_bound) {
        addrs[i] = addr;
    }
    for (&i, &addr) in udp_index.iter().zip(&udp_bound) {
        addrs[i] = addr;
    }
    Ok(Bound {
        tcp,
        tcp_index,
        udp,
        udp_index,
        addrs,
        admin,
    })
}

/// A worker's own copy of an upstream group's client configuration: its own session store,
/// so resuming sessions with an origin touches no other core's memory.
fn for_worker(
    config: &ringwall_runtime::rustls::ClientConfig,
) -> ringwall_runtime::rustls::ClientConfig {
    let mut config = config.clone();
    config.resumption = ringwall_runtime::rustls::client::Resumption::in_memory_sessions(256);
    config
}

/// Descriptors kept aside for listeners, the ring, logs and the like.
const RESERVED_FILES: u64 = 64;

/// The per-worker connection limit that the open files limit can hold: each client connection
/// may hold an upstream connection too. Like HAProxy's automatic maxconn, a configured limit
/// the process could not honour is lowered (and said so) rather than left to fail with EMFILE.
fn fit_connections_to_open_files(
    workers: usize,
    configured: usize,
    open_files: std::io::Result<u64>,
) -> usize {
    let open_files = match open_files {
        Ok(open_files) => open_files,
        Err(e) => {
            tracing::warn!("cannot raise the open files limit: {e}");
            return configured;
        }
    };
    let per_worker = open_files.saturating_sub(RESERVED_FILES) / (2 * workers as u64).max(1);
    let fitted = usize::try_from(per_worker)
        .unwrap_or(usize::MAX)
        .clamp(1, configured);
    if fitted < configured {
        tracing::info!(
            open_files,
            "max_connections_per_worker lowered from {configured} to {fitted} to fit the open \
             files limit (raise `ulimit -Hn` for more)"
        );
    }
    fitted
}

fn driver_choice(driver: IoDriver) -> DriverChoice {
    match driver {
        IoDriver::Auto => DriverChoice::Auto,
        IoDriver::UringDefer => DriverChoice::UringDefer,
        IoDriver::UringCoop => DriverChoice::UringCoop,
        IoDriver::UringPlain => DriverChoice::UringPlain,
        IoDriver::UringSqpoll => DriverChoice::UringSqpoll,
        IoDriver::Epoll => DriverChoice::Epoll,
    }
}

#[cfg(test)]
mod tests {
    use super::fit_connections_to_open_files;

    #[test]
    fn the_connection_limit_fits_the_open_files_limit() {
        assert_eq!(
            fit_connections_to_open_files(2, 16384, Ok(1_048_576)),
            16384
        );
        assert_eq!(fit_connections_to_open_files(2, 16384, Ok(20_000)), 4984);
        assert_eq!(fit_connections_to_open_files(1, 100, Ok(20_000)), 100);
        assert_eq!(fit_connections_to_open_files(4, 16384, Ok(10)), 1);
        let refused = Err(std::io::Error::other("no"));
        assert_eq!(fit_connections_to_open_files(2, 16384, refused), 16384);
    }
}
