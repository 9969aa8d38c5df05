//! The process side of a running ringwall: configuration generations, the listening sockets
//! they need, and the messages workers exchange.
//!
//! A [`Generation`] is a validated configuration with everything its files gave (certificates,
//! CA roots) and the keys of the sockets its listeners accept on. The control thread makes
//! one at start and one per reload ([`Control::reload`]): it reads the configuration again with
//! the same command line, validates it completely, loads its files, binds the addresses that
//! are new (the [`Sockets`] registry keeps the ones that stay, so a kept listener never stops
//! accepting), and posts each worker its [`Message::Generation`]. A worker builds its own view
//! from it and moves its connections to it between requests; what fails before the post
//! changes nothing, and the old generation keeps serving.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use ringwall_runtime::{bind_listeners, bind_udp, rustls};

use crate::config::{Config, ConfigError, ListenerProtocol};
use crate::l7::HealthEvent;
use crate::metrics::Snapshot;
use crate::tls::{upstream_client_config, ListenerTls, TlsFileError};

/// What workers post to each other (and the control thread to workers) on the message path.
/// `docs/architecture.md` ("Cores that talk") lists the kinds and what each costs.
pub enum Message {
    /// A new configuration generation for this worker, with its sockets for new listeners.
    Generation(Box<WorkerGeneration>),
    /// Send this worker's counters to worker `from`, for its scrape `id`.
    Scrape { from: usize, id: u64 },
    /// A worker's counters, for scrape `id`.
    Counters { id: u64, snapshot: Box<Snapshot> },
    /// A server's health changed (active checks on the worker that checks its group, or an
    /// ejection by the passive checks of the worker that saw the failures).
    Health(HealthEvent),
    /// What a worker's rate limits admitted per key since its last tick.
    RateUsage(crate::filters::Usage),
    /// Keys fetched from `[auth.jwt] jwks_url`.
    JwtKeys(std::sync::Arc<crate::auth::JwtVerifier>),
    /// A new set of credentials (an API key added or revoked on the admin endpoint).
    Credentials(std::sync::Arc<crate::auth::Credentials>),
    /// What a worker admitted under plans' quotas since its last tick.
    QuotaUsage(crate::auth::quota::QuotaUsage),
    /// What a worker's cache stored and invalidated since its last tick.
    CacheShare(std::sync::Arc<crate::cache::CacheShare>),
    /// Stored responses to forget: the URL `key` (all its variants), or every URL under it.
    CachePurge { key: Vec<u8>, prefix: bool },
    /// Begin draining now.
    Shutdown,
}

/// What one worker is posted for a new generation.
pub struct WorkerGeneration {
    pub generation: Arc<Generation>,
    /// This worker's sockets of the TCP listeners (and the admin listener) that are new.
    pub tcp: Vec<(TcpListener, usize)>,
    /// This worker's sockets of the UDP listeners that are new.
    pub udp: Vec<(UdpSocket, usize)>,
    /// Keys of the sockets no listener uses any more.
    pub removed: Vec<usize>,
}

/// A validated configuration and what its files gave.
pub struct Generation {
    pub number: u64,
    pub config: Arc<Config>,
    /// Per listener: its TLS (`None`: plain).
    pub tls: Vec<Option<ListenerTls>>,
    /// Per upstream group: its TLS client configuration (`None`: plain).
    pub upstream_tls: Vec<Option<rustls::ClientConfig>>,
    /// Per listener: the key of its socket.
    pub keys: Vec<usize>,
    /// The admin listener's socket key.
    pub admin_key: Option<usize>,
    /// Per listener: the bound address (port 0 resolved).
    pub addrs: Vec<SocketAddr>,
    pub admin_addr: Option<SocketAddr>,
}

impl Generation {
    /// What socket `key` accepts for; `None` for a socket this generation does not use.
    pub fn listener_of(&self, key: usize) -> Option<SocketUse> {
        if self.admin_key == Some(key) {
            return Some(SocketUse::Admin);
        }
        self.keys
            .iter()
            .position(|&k| k == key)
            .map(SocketUse::Listener)
    }
}

/// What a listening socket accepts for in a generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketUse {
    /// The listener of this index.
    Listener(usize),
    Admin,
}

/// What every worker may read of the process: counters of reloads, the generation, the
/// driver. Read by the admin endpoint, never on the request path.
#[derive(Debug)]
pub struct Process {
    pub started: Instant,
    pub generation: AtomicU64,
    pub reloads: AtomicU64,
    pub reload_failures: AtomicU64,
    pub driver: OnceLock<String>,
}

impl Default for Process {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            generation: AtomicU64::new(1),
            reloads: AtomicU64::new(0),
            reload_failures: AtomicU64::new(0),
            driver: OnceLock::new(),
        }
    }
}

impl Process {
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }
}

/// The process's session-ticket key (rotated by rustls), the same for every TLS listener and
/// generation.
pub type Tickets = Arc<dyn rustls::server::ProducesTickets>;

/// A new ticket key for the process.
pub fn new_tickets() -> Result<Tickets, LoadError> {
    rustls::crypto::aws_lc_rs::Ticketer::new().map_err(|e| LoadError::Tickets(e.to_string()))
}

/// Why a start or a reload could not go on.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Tls(#[from] TlsFileError),
    #[error("{0}")]
    Bind(std::io::Error),
    #[error("cannot make a session ticket key: {0}")]
    Tickets(String),
    #[error(
        "{0} cannot change on a reload: restart ringwall, or start the new configuration with \
         a binary upgrade (docs/operations.md)"
    )]
    Fixed(&'static str),
}

/// Whether a listening socket is TCP (listeners of every kind but `udp`, and the admin one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Tcp,
    Udp,
}

/// One listening address: every worker's socket on it.
struct Entry {
    key: usize,
    kind: Kind,
    /// As the configuration gives it (port 0 stays 0).
    configured: SocketAddr,
    bound: SocketAddr,
    tcp: Vec<TcpListener>,
    udp: Vec<UdpSocket>,
    /// Whether the workers have their handles on it.
    sent: bool,
}

impl Entry {
    /// Binds `n` more sockets of this entry's kind on `at` (one `SO_REUSEPORT` group; port 0
    /// resolved by the first); returns the bound address.
    fn bind_more(&mut self, at: SocketAddr, n: usize, share: bool) -> std::io::Result<SocketAddr> {
        let bound = match self.kind {
            Kind::Tcp => {
                let (sockets, bound) = bind_listeners(&[at], n, share)?;
                self.tcp.extend(sockets.into_iter().flatten());
                bound
            }
            Kind::Udp => {
                let (sockets, bound) = bind_udp(&[at], n, share)?;
                self.udp.extend(sockets.into_iter().flatten());
                bound
            }
        };
        Ok(bound[0])
    }
}

/// A listening address as a binary upgrade hands it to the new process.
#[derive(Debug)]
pub struct Handed {
    pub kind: Kind,
    pub configured: SocketAddr,
    pub bound: SocketAddr,
    pub fds: Vec<std::os::fd::RawFd>,
}

/// Every listening socket of the process, by key; kept by the control thread, whose handles
/// keep a socket open while a generation uses it (and can be handed to a new process).
pub struct Sockets {
    workers: usize,
    share: bool,
    next_key: usize,
    entries: Vec<Entry>,
}

/// New sockets per worker, and the keys of the removed ones.
type Changes = (Vec<WorkerSockets>, Vec<usize>);

/// Per listener its socket key, the admin key, per listener its bound address, the changes.
type Applied = (Vec<usize>, Option<usize>, Vec<SocketAddr>, Changes);

/// One worker's new sockets.
#[derive(Default)]
pub struct WorkerSockets {
    pub tcp: Vec<(TcpListener, usize)>,
    pub udp: Vec<(UdpSocket, usize)>,
}

impl Sockets {
    pub fn new(workers: usize, share: bool) -> Self {
        Self {
            workers,
            share,
            next_key: 0,
            entries: Vec::new(),
        }
    }

    /// Makes the registry hold the sockets `config` needs: keeps the addresses that stay,
    /// binds the new ones (all of them, or none: a failure leaves the registry as it was),
    /// and closes the removed ones. Returns the keys per listener, the admin key, the bound
    /// addresses, and what each worker must add and remove.
    fn apply(&mut self, config: &Config) -> std::io::Result<Applied> {
        let wanted: Vec<(Kind, SocketAddr)> = config
            .listeners
            .iter()
            .map(|l| {
                let kind = if l.protocol == ListenerProtocol::Udp {
                    Kind::Udp
                } else {
                    Kind::Tcp
                };
                (kind, l.addr)
            })
            .chain(config.admin.map(|a| (Kind::Tcp, a)))
            .collect();
        // Per wanted address: the entry that stays (`Ok`), or a socket bound now (`Err`, an
        // index into `fresh`). An address given as port 0 keeps the port the kernel chose for
        // it (several such listeners keep theirs in order). Binding comes first: a failure
        // returns before anything changed.
        let mut fresh = Vec::new();
        let mut slots = Vec::with_capacity(wanted.len());
        let mut taken = vec![false; self.entries.len()];
        for &(kind, addr) in &wanted {
            let kept = self
                .entries
                .iter()
                .enumerate()
                .position(|(i, e)| !taken[i] && e.kind == kind && e.configured == addr);
            if let Some(at) = kept {
                taken[at] = true;
                slots.push(Ok(at));
                continue;
            }
            let entry = self.bind(kind, addr)?;
            slots.push(Err(fresh.len()));
            fresh.push(entry);
        }
        for entry in &mut fresh {
            entry.key = self.next_key;
            self.next_key += 1;
        }
        // Each worker's handles on the sockets it does not have yet: socket `j` of an address
        // goes to worker `j % workers` (an address inherited with more sockets than workers
        // has some workers accept on two).
        let mut per_worker: Vec<WorkerSockets> = (0..self.workers)
            .map(|_| WorkerSockets::default())
            .collect();
        for slot in &slots {
            let entry = match *slot {
                Ok(at) => &mut self.entries[at],
                Err(at) => &mut fresh[at],
            };
            if entry.sent {
                continue;
            }
            for (j, socket) in entry.tcp.iter().enumerate() {
                per_worker[j % self.workers]
                    .tcp
                    .push((socket.try_clone()?, entry.key));
            }
            for (j, socket) in entry.udp.iter().enumerate() {
                per_worker[j % self.workers]
                    .udp
                    .push((socket.try_clone()?, entry.key));
            }
            entry.sent = true;
        }
        let (mut keys, mut addrs) = (Vec::new(), Vec::new());
        for slot in &slots {
            let entry = match *slot {
                Ok(at) => &self.entries[at],
                Err(at) => &fresh[at],
            };
            keys.push(entry.key);
            addrs.push(entry.bound);
        }
        let mut kept = vec![false; self.entries.len()];
        for slot in &slots {
            if let Ok(at) = *slot {
                kept[at] = true;
            }
        }
        let mut removed = Vec::new();
        let old = std::mem::take(&mut self.entries);
        for (entry, kept) in old.into_iter().zip(kept) {
            if kept {
                self.entries.push(entry);
            } else {
                removed.push(entry.key);
            }
        }
        self.entries.extend(fresh);
        let admin_key = config.admin.map(|_| keys.pop().expect("the admin key"));
        if config.admin.is_some() {
            addrs.pop();
        }
        Ok((keys, admin_key, addrs, (per_worker, removed)))
    }

    /// Every worker's socket on `addr`, bound now.
    fn bind(&self, kind: Kind, addr: SocketAddr) -> std::io::Result<Entry> {
        let mut entry = Entry {
            key: 0,
            kind,
            configured: addr,
            bound: addr,
            tcp: Vec::new(),
            udp: Vec::new(),
            sent: false,
        };
        entry.bound = entry.bind_more(addr, self.workers, self.share)?;
        Ok(entry)
    }

    /// A registry of the sockets a binary upgrade handed to this process (`handed`: from
    /// the environment, see `upgrade.rs`). An address inherited with fewer sockets than there
    /// are workers gets more, bound into the same `SO_REUSEPORT` group.
    pub fn inherited(workers: usize, share: bool, handed: Vec<Handed>) -> std::io::Result<Self> {
        use ringwall_runtime::socket2::Type;
        let mut sockets = Self::new(workers, share);
        for handed in handed {
            let mut entry = Entry {
                key: sockets.next_key,
                kind: handed.kind,
                configured: handed.configured,
                bound: handed.bound,
                tcp: Vec::new(),
                udp: Vec::new(),
                sent: false,
            };
            sockets.next_key += 1;
            let kind = match handed.kind {
                Kind::Tcp => Type::STREAM,
                Kind::Udp => Type::DGRAM,
            };
            for fd in handed.fds {
                let socket = ringwall_runtime::adopt_socket(fd, kind, handed.bound)?;
                match handed.kind {
                    Kind::Tcp => entry.tcp.push(socket.into()),
                    Kind::Udp => entry.udp.push(socket.into()),
                }
            }
            let have = entry.tcp.len() + entry.udp.len();
            if have < workers {
                entry.bind_more(handed.bound, workers - have, true)?;
            }
            sockets.entries.push(entry);
        }
        Ok(sockets)
    }

    /// Every listening address with its descriptors, for a binary upgrade; `inheritable`:
    /// whether the descriptors survive an `exec` (true only around the new process's spawn).
    pub fn handover(&self, inheritable: bool) -> std::io::Result<Vec<Handed>> {
        use ringwall_runtime::socket2::SockRef;
        use std::os::fd::AsRawFd;
        let mut handed = Vec::with_capacity(self.entries.len());
        for entry in &self.entries {
            let mut fds = Vec::new();
            for socket in &entry.tcp {
                SockRef::from(socket).set_cloexec(!inheritable)?;
                fds.push(socket.as_raw_fd());
            }
            for socket in &entry.udp {
                SockRef::from(socket).set_cloexec(!inheritable)?;
                fds.push(socket.as_raw_fd());
            }
            handed.push(Handed {
                kind: entry.kind,
                configured: entry.configured,
                bound: entry.bound,
                fds,
            });
        }
        Ok(handed)
    }

    /// The bound address of socket `key`.
    fn bound(&self, key: usize) -> Option<SocketAddr> {
        self.entries.iter().find(|e| e.key == key).map(|e| e.bound)
    }
}

/// Loads what `config`'s files give, then binds its sockets: the generation and each worker's
/// part of it.
pub fn prepare(
    config: Arc<Config>,
    number: u64,
    sockets: &mut Sockets,
    tickets: &Tickets,
) -> Result<(Arc<Generation>, Changes), LoadError> {
    let tls = config
        .listeners
        .iter()
        .map(|l| {
            l.tls
                .as_ref()
                .map(|t| ListenerTls::load(t).map(|t| t.with_ticketer(tickets)))
                .transpose()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let upstream_tls = config
        .upstreams
        .iter()
        .map(|g| g.tls.as_ref().map(upstream_client_config).transpose())
        .collect::<Result<Vec<_>, _>>()?;
    let (keys, admin_key, addrs, changes) = sockets.apply(&config).map_err(LoadError::Bind)?;
    let admin_addr = admin_key.and_then(|k| sockets.bound(k));
    let generation = Generation {
        number,
        config,
        tls,
        upstream_tls,
        keys,
        admin_key,
        addrs,
        admin_addr,
    };
    Ok((Arc::new(generation), changes))
}

/// The settings a reload cannot change (the engine and the process-wide tables are built from
/// them at start): the first that differs.
pub fn fixed_setting_changed(old: &Config, new: &Config) -> Option<&'static str> {
    let checks: [(&'static str, bool); 13] = [
        ("engine.workers", old.engine.workers != new.engine.workers),
        ("engine.pin", old.engine.pin != new.engine.pin),
        (
            "engine.io_driver",
            old.engine.io_driver != new.engine.io_driver,
        ),
        (
            "engine.ring_entries",
            old.engine.ring_entries != new.engine.ring_entries,
        ),
        (
            "engine.share_listen",
            old.engine.share_listen != new.engine.share_listen,
        ),
        (
            "limits.max_connections_per_worker",
            old.limits.max_connections_per_worker != new.limits.max_connections_per_worker,
        ),
        (
            "limits.max_connections_per_ip",
            old.limits.max_connections_per_ip != new.limits.max_connections_per_ip,
        ),
        ("timeouts.drain", old.timeouts.drain != new.timeouts.drain),
        (
            "access_log.target",
            old.access_log.target != new.access_log.target,
        ),
        ("pid_file", old.pid_file != new.pid_file),
        (
            "cache.disk_dir",
            old.cache
                .as_ref()
                .and_then(|c| c.disk.as_ref())
                .map(|d| &d.0)
                != new
                    .cache
                    .as_ref()
                    .and_then(|c| c.disk.as_ref())
                    .map(|d| &d.0),
        ),
        (
            "cache.disk_size",
            old.cache
                .as_ref()
                .and_then(|c| c.disk.as_ref())
                .map(|d| d.1)
                != new
                    .cache
                    .as_ref()
                    .and_then(|c| c.disk.as_ref())
                    .map(|d| d.1),
        ),
        (
            "engine.gossip_interval",
            old.engine.gossip_interval != new.engine.gossip_interval,
        ),
    ];
    checks
        .into_iter()
        .find_map(|(name, changed)| changed.then_some(name))
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use super::*;

    fn config(listeners: &[&str], admin: Option<&str>) -> Config {
        let mut text = String::new();
        if let Some(admin) = admin {
            let _ = write!(text, "[admin]\naddress = \"{admin}\"\n\n");
        }
        for (i, addr) in listeners.iter().enumerate() {
            let protocol = if i == 0 { "http" } else { "udp" };
            let upstream = if i == 0 { "" } else { "upstream = \"app\"\n" };
            let _ = write!(
                text,
                "[[listener]]\nname = \"l{i}\"\naddress = \"{addr}\"\nprotocol = \"{protocol}\"\n{upstream}\n"
            );
        }
        text += "[[upstream]]\nname = \"app\"\nservers = [\"127.0.0.1:9\"]\n\n[[route]]\nupstream = \"app\"\n";
        Config::from_toml_str(&text, None).expect("a valid configuration")
    }

    #[test]
    fn kept_addresses_keep_their_sockets_new_ones_are_bound_removed_ones_closed() {
        let mut sockets = Sockets::new(2, false);
        let first = config(&["127.0.0.1:0", "127.0.0.1:0"], Some("127.0.0.1:0"));
        let (keys, admin, addrs, (per_worker, removed)) = sockets.apply(&first).unwrap();
        assert_eq!(keys.len(), 2);
        assert!(removed.is_empty());
        assert_eq!(per_worker.len(), 2);
        for worker in &per_worker {
            assert_eq!(worker.tcp.len(), 2, "the HTTP and the admin listener");
            assert_eq!(worker.udp.len(), 1);
        }
        // Again, with the same addresses: the same keys and ports, nothing new to hand out.
        let (again, admin_again, addrs_again, (per_worker, removed)) =
            sockets.apply(&first).unwrap();
        assert_eq!((again.clone(), admin_again), (keys.clone(), admin));
        assert_eq!(addrs_again, addrs);
        assert!(per_worker
            .iter()
            .all(|w| w.tcp.is_empty() && w.udp.is_empty()));
        assert!(removed.is_empty());
        // Without the admin listener and the UDP one: their keys are removed.
        let fewer = config(&["127.0.0.1:0"], None);
        let (kept, no_admin, _, (_, removed)) = sockets.apply(&fewer).unwrap();
        assert_eq!(kept, vec![keys[0]]);
        assert_eq!(no_admin, None);
        assert_eq!(removed.len(), 2);
        assert!(removed.contains(&keys[1]) && removed.contains(&admin.unwrap()));
        assert_eq!(sockets.handover(false).unwrap().len(), 1);
    }

    #[test]
    fn a_failed_bind_changes_nothing() {
        let mut sockets = Sockets::new(1, false);
        let (keys, ..) = sockets.apply(&config(&["127.0.0.1:0"], None)).unwrap();
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let busy = taken.local_addr().unwrap().to_string();
        let refused = config(&["127.0.0.1:0"], Some(&busy));
        assert!(sockets.apply(&refused).is_err());
        let (after, ..) = sockets.apply(&config(&["127.0.0.1:0"], None)).unwrap();
        assert_eq!(after, keys, "the kept listener is still there");
        assert_eq!(sockets.entries.len(), 1);
    }

    #[test]
    fn fixed_settings_are_named() {
        let a = config(&["127.0.0.1:0"], None);
        let mut b = a.clone();
        assert_eq!(fixed_setting_changed(&a, &b), None);
        b.engine.workers += 1;
        assert_eq!(fixed_setting_changed(&a, &b), Some("engine.workers"));
    }
}
