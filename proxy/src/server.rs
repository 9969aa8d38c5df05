//! Starting ringwall from a validated [`Config`]: listeners, workers, per-worker proxy state,
//! and the control thread that reloads the configuration.
//!
//! [`run`] loads the first generation (certificates, sockets: a bad address fails before any
//! worker starts), starts the engine, builds each worker's [`WorkerState`] on that worker, and
//! returns when the shutdown has been triggered and every worker has drained. Meanwhile the
//! control thread turns SIGHUP into a reload ([`reload`]) and carries the shutdown to every
//! worker on the message path.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use ringwall_runtime::{
    DriverChoice, DriverKind, Engine, EngineError, EngineOptions, Mesh, Outside, Shutdown, Signal,
};

use crate::access_log::LogWriter;
use crate::config::{Config, ConfigError, IoDriver};
use crate::control::{
    fixed_setting_changed, new_tickets, prepare, Generation, LoadError, Message, Process, Sockets,
    Tickets, WorkerGeneration, WorkerSockets,
};
use crate::l7::ClientLimit;
use crate::upgrade;
use crate::worker::{Start, WorkerState};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Upgrade(#[from] crate::upgrade::UpgradeError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("cannot open the access log {0}")]
    AccessLog(String),
    #[error("cannot start the message path between workers: {0}")]
    Mesh(std::io::Error),
}

/// Reads the configuration again, as at start (the same file and flags).
pub type Loader = Box<dyn Fn() -> Result<Config, ConfigError> + Send>;

/// Sets the log level (`log_level`) of the running process.
pub type LogLevel = Box<dyn Fn(&str) + Send>;

/// How the running process is told to reload, how it reads its configuration again, and how
/// it applies what the workers do not (the log level).
pub struct Reloads {
    pub signals: Receiver<Signal>,
    pub load: Loader,
    pub log_level: LogLevel,
}

/// What `on_ready` learns once every worker serves.
#[derive(Debug)]
pub struct Ready<'a> {
    /// Every listener's bound address, in listener order.
    pub addrs: &'a [SocketAddr],
    pub admin: Option<SocketAddr>,
    pub driver: DriverKind,
}

/// Runs the proxy until `shutdown` fires and the workers have drained. `on_ready` is called
/// once every worker serves.
pub fn run(
    config: &Arc<Config>,
    shutdown: &Shutdown,
    reloads: Reloads,
    on_ready: impl FnOnce(&Ready<'_>),
) -> Result<(), ServerError> {
    let workers = config.engine.workers;
    let max_connections = fit_connections_to_open_files(
        workers,
        config.limits.max_connections_per_worker,
        ringwall_runtime::raise_open_files_limit(),
    );
    let client_limit = ClientLimit::new(config.limits.max_connections_per_ip);
    let share = config.engine.share_listen;
    // Started by a binary upgrade: the listening sockets are the old process's, shared with it
    // until this one serves.
    let mut inherited = upgrade::inherited()?;
    let mut sockets = match inherited.as_mut() {
        Some(inherited) => {
            shutdown.share_sockets(true);
            let handed = std::mem::take(&mut inherited.sockets);
            Sockets::inherited(workers, share, handed).map_err(LoadError::Bind)?
        }
        None => Sockets::new(workers, share),
    };
    let tickets = new_tickets()?;
    let (first, (per_worker, _)) = prepare(config.clone(), 1, &mut sockets, &tickets)?;
    let process = Arc::new(Process::default());
    let log_writer =
        LogWriter::start(&config.access_log).map_err(|e| ServerError::AccessLog(e.to_string()))?;
    let log_writer = Arc::new(log_writer);
    let workers_log = log_writer.clone();
    let mesh = Mesh::<Message>::new(workers).map_err(ServerError::Mesh)?;
    let outside = mesh.outside();
    let (tcp, payloads): (Vec<_>, Vec<_>) = per_worker
        .into_iter()
        .zip(mesh.into_postboxes())
        .map(|(WorkerSockets { tcp, udp }, postbox)| (tcp, (postbox, udp)))
        .unzip();
    let options = EngineOptions {
        workers,
        pin: config.engine.pin,
        driver: driver_choice(config.engine.io_driver),
        ring_entries: config.engine.ring_entries,
        drain_timeout: config.timeouts.drain,
        max_connections,
    };
    let tick = config.engine.gossip_interval;
    let control = {
        let (shutdown, process, first) = (shutdown.clone(), process.clone(), first.clone());
        std::thread::Builder::new()
            .name("ringwall-control".into())
            .spawn(move || {
                let state = Control {
                    current: first,
                    sockets,
                    tickets,
                };
                control_loop(&shutdown, &reloads, &outside, &process, state);
            })
            .map_err(|e| ServerError::Engine(EngineError::Spawn(e)))?
    };
    let workers_process = process.clone();
    let addrs = first.addrs.clone();
    let admin = first.admin_addr;
    let result = Engine::run(
        &options,
        tcp,
        payloads,
        shutdown,
        |driver| {
            let _ = process.driver.set(driver.to_string());
            on_ready(&Ready {
                addrs: &addrs,
                admin,
                driver,
            });
            if let Some(mut inherited) = inherited {
                inherited.notify_ready();
                tracing::info!("binary upgrade: serving on the sockets of the old process");
                shutdown.share_sockets(false);
            }
        },
        move |ctx, (postbox, udp)| {
            let state = WorkerState::start(
                ctx,
                Start {
                    postbox,
                    udp,
                    first: first.clone(),
                    client_limit: client_limit.clone(),
                    log: workers_log.as_ref().as_ref(),
                    process: workers_process.clone(),
                    tick,
                },
            );
            move |stream, peer, key: usize| state.accept(stream, peer, key)
        },
    );
    // The workers are gone, and their logs with them: let the writer write what they left.
    if let Some(writer) = Arc::into_inner(log_writer).flatten() {
        writer.finish();
    }
    shutdown.trigger();
    let _ = control.join();
    result?;
    Ok(())
}

/// How often the files the configuration reads (API keys, htpasswd, JWT keys) are looked at.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// The files a configuration read that are reloaded when they change, with their
/// modification time and length when it was loaded.
struct Watched(Vec<(PathBuf, Option<(std::time::SystemTime, u64)>)>);

impl Watched {
    fn stamp(path: &Path) -> Option<(std::time::SystemTime, u64)> {
        let meta = std::fs::metadata(path).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    }

    fn of(config: &crate::config::Config) -> Self {
        let auth = &config.auth;
        let mut files: Vec<PathBuf> = Vec::new();
        files.extend(auth.api_keys_file.clone());
        files.extend(auth.htpasswd.clone());
        if let Some(crate::config::JwtKeys::File { path, .. }) = auth.jwt.as_ref().map(|j| &j.keys)
        {
            files.push(path.clone());
        }
        Self(
            files
                .into_iter()
                .map(|f| {
                    let stamp = Self::stamp(&f);
                    (f, stamp)
                })
                .collect(),
        )
    }

    /// The first file whose stamp is not what it was (and the stamp taken anew).
    fn changed(&mut self) -> Option<PathBuf> {
        for (file, stamp) in &mut self.0 {
            let now = Self::stamp(file);
            if now != *stamp {
                *stamp = now;
                return Some(file.clone());
            }
        }
        None
    }
}

/// What the control thread keeps between reloads.
struct Control {
    current: Arc<Generation>,
    sockets: Sockets,
    tickets: Tickets,
}

/// The control thread: reloads on SIGHUP until the shutdown, which it then posts to every
/// worker (so that each begins to drain at once, not at its next control tick).
fn control_loop(
    shutdown: &Shutdown,
    reloads: &Reloads,
    outside: &Outside<Message>,
    process: &Process,
    state: Control,
) {
    let Control {
        mut current,
        mut sockets,
        tickets,
    } = state;
    let mut resolve_at = current
        .config
        .resolve_interval()
        .map(|every| Instant::now() + every);
    let mut watched = Watched::of(&current.config);
    let mut look_at = Instant::now() + WATCH_EVERY;
    let mut jwks = crate::auth::fetch::Jwks::of(&current.config);
    while !shutdown.is_triggered() {
        jwks.refresh_if_due(&current.config, outside);
        let mut signal = reloads.signals.recv_timeout(Duration::from_millis(50));
        if Instant::now() >= look_at {
            look_at = Instant::now() + WATCH_EVERY;
            if let Some(changed) = watched.changed() {
                tracing::info!("{} changed: reloading", changed.display());
                signal = Ok(Signal::Reload);
            }
        }
        if resolve_at.is_some_and(|at| Instant::now() >= at) {
            if let Some(next) =
                resolve_again(&current, &reloads.load, &mut sockets, &tickets, outside)
            {
                process.generation.store(next.number, Ordering::Relaxed);
                jwks.installed(&next.config, outside);
                current = next;
            }
            resolve_at = current
                .config
                .resolve_interval()
                .map(|every| Instant::now() + every);
        }
        match signal {
            Ok(Signal::Reload) => {
                match reload(&current, &reloads.load, &mut sockets, &tickets, outside) {
                    Ok(next) => {
                        watched = Watched::of(&next.config);
                        jwks.installed(&next.config, outside);
                        if next.config.log_level != current.config.log_level {
                            (reloads.log_level)(&next.config.log_level);
                        }
                        process.reloads.fetch_add(1, Ordering::Relaxed);
                        process.generation.store(next.number, Ordering::Relaxed);
                        tracing::info!(
                            generation = next.number,
                            "configuration reloaded: {}",
                            next.config.summary()
                        );
                        current = next;
                        resolve_at = current
                            .config
                            .resolve_interval()
                            .map(|every| Instant::now() + every);
                    }
                    Err(e) => {
                        process.reload_failures.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(
                            generation = current.number,
                            "reload refused, still serving the running configuration: {e}"
                        );
                    }
                }
            }
            Ok(Signal::Upgrade) => {
                tracing::info!("SIGUSR2: starting the new binary on the listening sockets");
                // From now on the new process may hold the sockets: a drain here (a SIGTERM
                // while it starts) must leave them listening.
                shutdown.share_sockets(true);
                match upgrade::start_new_process(&sockets) {
                    Ok(pid) => {
                        tracing::info!(
                            pid,
                            "binary upgrade: the new process serves; this one drains"
                        );
                        shutdown.hand_over();
                    }
                    Err(e) => {
                        shutdown.share_sockets(false);
                        tracing::error!("binary upgrade failed, still serving: {e}");
                    }
                }
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    for to in 0..outside.workers() {
        outside.send(to, Message::Shutdown);
    }
}

/// Reads, validates and loads the configuration again, binds its new addresses, and posts the
/// new generation to every worker. Nothing changes when it fails.
pub fn reload(
    current: &Generation,
    load: &Loader,
    sockets: &mut Sockets,
    tickets: &Tickets,
    outside: &Outside<Message>,
) -> Result<Arc<Generation>, LoadError> {
    tracing::info!("SIGHUP: reading the configuration again");
    let config = load()?;
    if let Some(field) = fixed_setting_changed(&current.config, &config) {
        return Err(LoadError::Fixed(field));
    }
    install(current, config, sockets, tickets, outside)
}

/// Resolves the upstream host names again (by loading the configuration again) and, when only
/// their addresses changed, makes that the new generation. A file changed on disk meanwhile
/// waits for a reload; a failure (a name that no longer resolves) keeps the running
/// addresses. Either way it is logged.
fn resolve_again(
    current: &Generation,
    load: &Loader,
    sockets: &mut Sockets,
    tickets: &Tickets,
    outside: &Outside<Message>,
) -> Option<Arc<Generation>> {
    let config = match load() {
        Ok(config) => config,
        Err(e) => {
            tracing::warn!(
                "resolving the upstream names again failed, keeping their addresses: {e}"
            );
            return None;
        }
    };
    if config.effective != current.config.effective {
        tracing::debug!(
            "the configuration file changed on disk: not applied until a reload (SIGHUP)"
        );
        return None;
    }
    if !current.config.only_addresses_differ(&config) {
        return None;
    }
    for (was, now) in current.config.upstreams.iter().zip(&config.upstreams) {
        if was.servers != now.servers {
            let list: Vec<String> = now.servers.iter().map(ToString::to_string).collect();
            tracing::info!(
                upstream = %now.name,
                "upstream names resolve to other addresses now: {}",
                list.join(", ")
            );
        }
    }
    match install(current, config, sockets, tickets, outside) {
        Ok(next) => Some(next),
        Err(e) => {
            tracing::warn!("the new upstream addresses cannot be used, keeping the old: {e}");
            None
        }
    }
}

/// Makes `config` the next generation: binds its new addresses and posts it to every worker.
fn install(
    current: &Generation,
    config: Config,
    sockets: &mut Sockets,
    tickets: &Tickets,
    outside: &Outside<Message>,
) -> Result<Arc<Generation>, LoadError> {
    let (next, (per_worker, removed)) =
        prepare(Arc::new(config), current.number + 1, sockets, tickets)?;
    for (to, WorkerSockets { tcp, udp }) in per_worker.into_iter().enumerate() {
        outside.send(
            to,
            Message::Generation(Box::new(WorkerGeneration {
                generation: next.clone(),
                tcp,
                udp,
                removed: removed.clone(),
            })),
        );
    }
    Ok(next)
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
