//! `SO_REUSEPORT` listening sockets, one per worker and address.
//!
//! Every worker gets its own socket on each address, so the kernel spreads new connections
//! across workers and no accept queue is shared. Sockets are bound on the main thread before
//! any worker starts, so a bad address fails the start with a clear error; port 0 is resolved
//! by the first socket and reused by the others, so all workers share one ephemeral port.

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

/// The accept backlog of each worker's socket (capped by `net.core.somaxconn`).
const BACKLOG: i32 = 4096;

/// Binds `workers` sockets on each address. Returns, per worker, one listener per address (in
/// the order of `addrs`), and the addresses actually bound (port 0 resolved).
pub fn bind_listeners(
    addrs: &[SocketAddr],
    workers: usize,
) -> io::Result<(Vec<Vec<TcpListener>>, Vec<SocketAddr>)> {
    let mut per_worker: Vec<Vec<TcpListener>> = (0..workers).map(|_| Vec::new()).collect();
    let mut bound = Vec::with_capacity(addrs.len());
    for &addr in addrs {
        let first = bind_one(addr)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
        let actual = first.local_addr()?;
        bound.push(actual);
        let mut sockets = vec![first];
        for _ in 1..workers {
            sockets.push(bind_one(actual).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot listen on {actual}: {e}"))
            })?);
        }
        for (worker, socket) in per_worker.iter_mut().zip(sockets) {
            worker.push(socket);
        }
    }
    Ok((per_worker, bound))
}

fn bind_one(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_is_shared_by_every_worker() {
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let (per_worker, bound) = bind_listeners(&[addr], 3).unwrap();
        assert_eq!(per_worker.len(), 3);
        assert_ne!(bound[0].port(), 0);
        for worker in &per_worker {
            assert_eq!(worker[0].local_addr().unwrap(), bound[0]);
        }
    }

    #[test]
    fn a_port_in_use_without_reuseport_is_an_error() {
        let plain = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = plain.local_addr().unwrap();
        let err = bind_listeners(&[addr], 1).unwrap_err();
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }
}
