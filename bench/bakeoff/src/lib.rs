//! What the bake-off's forwarders share: the command line and the listening socket.
//!
//! Every engine gets the same listener (socket2, `SO_REUSEADDR`, backlog 1024, bound before the
//! runtime exists) and the same limits, so that only the engine's I/O path differs.
#![forbid(unsafe_code)]

use std::net::{SocketAddr, TcpListener};
use std::process::exit;

use socket2::{Domain, Protocol, Socket, Type};

/// Bytes per read buffer, in every variant (ringwall's relay and upstream buffers are 16 KiB).
pub const DEFAULT_BUF: usize = 16 * 1024;
/// At most this many client connections (pairs) at once; more are closed at accept.
pub const DEFAULT_MAX_CONNS: usize = 10_000;

/// The command line: `--listen ADDR --upstream ADDR [--mode M] [--buf BYTES] [--pool N]
/// [--max-conns N]`.
#[derive(Debug, Clone)]
pub struct Args {
    pub listen: SocketAddr,
    pub upstream: SocketAddr,
    pub mode: String,
    pub buf: usize,
    pub pool: u16,
    pub max_conns: usize,
}

impl Args {
    /// Parses `std::env::args`, exiting with a usage line on a bad one.
    pub fn parse(default_mode: &str, modes: &[&str]) -> Args {
        let usage = format!(
            "usage: --listen ADDR --upstream ADDR [--mode {}] [--buf BYTES] [--pool BUFFERS] [--max-conns N]",
            modes.join("|")
        );
        let mut listen = None;
        let mut upstream = None;
        let mut mode = default_mode.to_owned();
        let mut buf = DEFAULT_BUF;
        let mut pool = 1024u16;
        let mut max_conns = DEFAULT_MAX_CONNS;
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let Some(value) = it.next() else {
                eprintln!("{usage}");
                exit(2);
            };
            let ok = match flag.as_str() {
                "--listen" => value.parse().map(|v| listen = Some(v)).is_ok(),
                "--upstream" => value.parse().map(|v| upstream = Some(v)).is_ok(),
                "--mode" => {
                    mode = value;
                    modes.contains(&mode.as_str())
                }
                "--buf" => value.parse().map(|v| buf = v).is_ok() && (512..=1 << 20).contains(&buf),
                "--pool" => value.parse().map(|v| pool = v).is_ok() && pool > 0,
                "--max-conns" => value.parse().map(|v| max_conns = v).is_ok(),
                _ => false,
            };
            if !ok {
                eprintln!("bad {flag} {}\n{usage}", mode);
                exit(2);
            }
        }
        let (Some(listen), Some(upstream)) = (listen, upstream) else {
            eprintln!("{usage}");
            exit(2);
        };
        Args {
            listen,
            upstream,
            mode,
            buf,
            pool,
            max_conns,
        }
    }
}

/// The listening socket every variant uses.
///
/// A ring that exits with a request still on the previous forwarder's listener keeps that
/// socket alive for a moment after the process is gone, so `EADDRINUSE` is retried for up to
/// 5 s.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let mut tries = 0;
    loop {
        match bind_once(addr) {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries < 100 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

fn bind_once(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// A count of live pairs, bounded by `max`.
#[derive(Debug)]
pub struct Limit {
    live: std::cell::Cell<usize>,
    max: usize,
}

impl Limit {
    pub fn new(max: usize) -> std::rc::Rc<Limit> {
        std::rc::Rc::new(Limit {
            live: std::cell::Cell::new(0),
            max,
        })
    }

    /// Takes a slot, or `None` at the limit; the slot is given back when the guard drops.
    pub fn take(self: &std::rc::Rc<Self>) -> Option<Slot> {
        if self.live.get() >= self.max {
            return None;
        }
        self.live.set(self.live.get() + 1);
        Some(Slot(self.clone()))
    }
}

/// One live pair's place under the [`Limit`].
#[derive(Debug)]
pub struct Slot(std::rc::Rc<Limit>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.live.set(self.0.live.get() - 1);
    }
}
