//! Starting ringwall from a validated [`Config`]: listeners, workers, per-worker proxy state.
//!
//! [`run`] binds every listening address once per worker (so a bad address fails before any
//! worker starts), starts the engine, builds each worker's [`Worker`] on that worker, and
//! returns when the shutdown has been triggered and every worker has drained.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use ringwall_runtime::{
    bind_listeners, DriverChoice, DriverKind, Engine, EngineError, EngineOptions, Shutdown,
};

use crate::config::{Config, IoDriver};
use crate::l7::{serve, ClientLimit, Worker};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    Bind(std::io::Error),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Runs the proxy until `shutdown` fires and the workers have drained. `on_ready` is called
/// once every worker serves, with the bound addresses and the I/O driver in use.
pub fn run(
    config: Arc<Config>,
    shutdown: &Shutdown,
    on_ready: impl FnOnce(&[SocketAddr], DriverKind),
) -> Result<(), ServerError> {
    let workers = config.engine.workers;
    match ringwall_runtime::raise_open_files_limit() {
        Ok(open_files) => {
            // Each client connection may hold an upstream connection too.
            let wanted = (workers * config.limits.max_connections_per_worker * 2) as u64;
            if open_files < wanted {
                tracing::warn!(
                    open_files,
                    wanted,
                    "the open files limit is below 2 × workers × max_connections_per_worker: \
                     raise `ulimit -n` (hard) or lower the limit"
                );
            }
        }
        Err(e) => tracing::warn!("cannot raise the open files limit: {e}"),
    }
    let client_limit = ClientLimit::new(config.limits.max_connections_per_ip);
    let (listeners, bound) = bind_listeners(&config.listen, workers).map_err(ServerError::Bind)?;
    let options = EngineOptions {
        workers,
        pin: config.engine.pin,
        driver: driver_choice(config.engine.io_driver),
        ring_entries: config.engine.ring_entries,
        drain_timeout: config.timeouts.drain,
        max_connections: config.limits.max_connections_per_worker,
    };
    Engine::run(
        &options,
        listeners,
        shutdown,
        |driver| on_ready(&bound, driver),
        move |ctx| {
            let worker = Rc::new(Worker::new(
                &config,
                ctx.id,
                ctx.drain.clone(),
                client_limit.clone(),
            ));
            monoio::spawn(worker.clone().sweep_idle_upstreams());
            move |stream, peer| serve(worker.clone(), stream, peer)
        },
    )?;
    Ok(())
}

fn driver_choice(driver: IoDriver) -> DriverChoice {
    match driver {
        IoDriver::Auto => DriverChoice::Auto,
        IoDriver::UringDefer => DriverChoice::UringDefer,
        IoDriver::UringCoop => DriverChoice::UringCoop,
        IoDriver::UringPlain => DriverChoice::UringPlain,
        IoDriver::Epoll => DriverChoice::Epoll,
    }
}
