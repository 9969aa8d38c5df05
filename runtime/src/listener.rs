//! `SO_REUSEPORT` listening sockets, one per worker and address.
//!
//! Every worker gets its own socket on each address, so the kernel spreads new connections
//! across workers and no accept queue is shared. Sockets are bound on the main thread before
//! any worker starts, so a bad address fails the start with a clear error; port 0 is resolved
//! by the first socket and reused by the others, so all workers share one ephemeral port.
//!
//! `SO_REUSEPORT` would also let a second ringwall (or anything else run by the same user)
//! join the group of a running one and silently take part of its connections. Unless sharing
//! is asked for, each address is first probed with a plain socket, which the kernel refuses
//! while anything listens there.

use std::io;
use std::net::{SocketAddr, TcpListener, UdpSocket};

use socket2::{Domain, Protocol, Socket, Type};

/// The accept backlog of each worker's socket (capped by `net.core.somaxconn`).
const BACKLOG: i32 = 4096;

/// Binds `workers` sockets on each address. Returns, per worker, one listener per address (in
/// the order of `addrs`), and the addresses actually bound (port 0 resolved). Unless `share`
/// is set, an address that something already listens on is an error rather than a
/// `SO_REUSEPORT` group shared with it.
pub fn bind_listeners(
    addrs: &[SocketAddr],
    workers: usize,
    share: bool,
) -> io::Result<(Vec<Vec<TcpListener>>, Vec<SocketAddr>)> {
    let mut per_worker: Vec<Vec<TcpListener>> = (0..workers).map(|_| Vec::new()).collect();
    let mut bound = Vec::with_capacity(addrs.len());
    for &addr in addrs {
        if !share && addr.port() != 0 {
            probe_unused(addr)?;
        }
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

/// Binds `workers` UDP sockets on each address, as [`bind_listeners`] does for TCP: per worker
/// one socket per address (in the order of `addrs`), all of an address in one `SO_REUSEPORT`
/// group (the kernel sends a client's datagrams, by its address and port, to the same worker),
/// port 0 resolved by the first. Unless `share` is set, an address something already uses is an
/// error.
pub fn bind_udp(
    addrs: &[SocketAddr],
    workers: usize,
    share: bool,
) -> io::Result<(Vec<Vec<UdpSocket>>, Vec<SocketAddr>)> {
    let mut per_worker: Vec<Vec<UdpSocket>> = (0..workers).map(|_| Vec::new()).collect();
    let mut bound = Vec::with_capacity(addrs.len());
    for &addr in addrs {
        let cannot = |e: io::Error, at: SocketAddr| {
            let reason = if e.kind() == io::ErrorKind::AddrInUse && !share {
                "another process already uses it; stop it, or pass --share-listen to share the \
                 address on purpose"
                    .to_owned()
            } else {
                e.to_string()
            };
            io::Error::new(e.kind(), format!("cannot listen on udp {at}: {reason}"))
        };
        // Without sharing, the first socket binds without SO_REUSEPORT first: the kernel then
        // refuses an address already in use, instead of joining another process's group.
        if !share && addr.port() != 0 {
            drop(UdpSocket::bind(addr).map_err(|e| cannot(e, addr))?);
        }
        let first = bind_one_udp(addr).map_err(|e| cannot(e, addr))?;
        let actual = first.local_addr()?;
        bound.push(actual);
        let mut sockets = vec![first];
        for _ in 1..workers {
            sockets.push(bind_one_udp(actual).map_err(|e| cannot(e, actual))?);
        }
        for (worker, socket) in per_worker.iter_mut().zip(sockets) {
            worker.push(socket);
        }
    }
    Ok((per_worker, bound))
}

fn bind_one_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Fails when something listens on `addr`. `SO_REUSEADDR` (without `SO_REUSEPORT`) lets the
/// probe bind past connections in `TIME_WAIT` but not next to a listening socket.
fn probe_unused(addr: SocketAddr) -> io::Result<()> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    match socket.bind(&addr.into()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(io::Error::new(
            e.kind(),
            format!(
                "cannot listen on {addr}: another process already listens there (another \
                 ringwall?); stop it, or pass --share-listen to share the address on purpose"
            ),
        )),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("cannot listen on {addr}: {e}"),
        )),
    }
}

/// Takes over descriptor `fd`, inherited from the process that started this one (a binary
/// upgrade), as a socket of `kind` bound to `addr`. A descriptor that is not such a socket is
/// left alone (not closed) and refused. The socket is made close-on-exec again.
pub fn adopt_socket(fd: i32, kind: Type, addr: SocketAddr) -> io::Result<Socket> {
    let socket = adopt_if(fd, &format!("the socket bound to {addr}"), |socket| {
        socket.r#type().is_ok_and(|t| t == kind)
            && socket
                .local_addr()
                .ok()
                .and_then(|a| a.as_socket())
                .is_some_and(|a| a == addr)
    })?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// Takes over descriptor `fd`, inherited from the process that started this one, as a Unix
/// stream socket (the end of a socket pair). Anything else is left alone and refused.
pub fn adopt_unix_stream(fd: i32) -> io::Result<std::os::unix::net::UnixStream> {
    let socket = adopt_if(fd, "a Unix stream socket", |socket| {
        socket.r#type().is_ok_and(|t| t == Type::STREAM)
            && socket.domain().is_ok_and(|d| d == Domain::UNIX)
    })?;
    Ok(socket.into())
}

/// Takes over open descriptor `fd` when `is_it` says it is `what`, close-on-exec from now on;
/// otherwise leaves it as it was.
#[allow(unsafe_code)]
fn adopt_if(fd: i32, what: &str, is_it: impl Fn(&Socket) -> bool) -> io::Result<Socket> {
    use std::os::fd::{FromRawFd, IntoRawFd};
    // SAFETY: fcntl(F_GETFD) only reads the descriptor's flags; it fails for a closed one.
    if fd < 0 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("inherited descriptor {fd} is not open"),
        ));
    }
    // SAFETY: the descriptor is open, and the environment that named it hands it to this
    // process alone; if it is not what it should be, ownership is given back below.
    let socket = unsafe { Socket::from_raw_fd(fd) };
    if !is_it(&socket) {
        let _ = socket.into_raw_fd();
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("inherited descriptor {fd} is not {what}"),
        ));
    }
    socket.set_cloexec(true)?;
    Ok(socket)
}

fn bind_one(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    // Accepted sockets inherit TCP_NODELAY from the listener: no setsockopt per connection.
    socket.set_nodelay(true)?;
    defer_accept(&socket, DEFER_ACCEPT_SECONDS)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// How long the kernel holds a connection whose client has sent nothing yet before handing
/// it to accept anyway (`TCP_DEFER_ACCEPT`, nginx's `listen ... deferred`): a connection comes
/// to a worker with its first bytes, and a client that connects and sends nothing costs no
/// worker anything for that long. The listeners serve protocols where the client speaks first.
const DEFER_ACCEPT_SECONDS: libc::c_int = 1;

fn defer_accept(socket: &Socket, seconds: libc::c_int) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: `socket` is an open socket for the whole call; the option value is a c_int that
    // lives on this stack frame, and its exact size is passed.
    #[allow(unsafe_code)]
    let done = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            std::ptr::from_ref(&seconds).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if done == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inherited_socket_is_taken_only_when_it_is_the_one_named() {
        use std::os::fd::IntoRawFd;
        let (mut sockets, bound) =
            bind_listeners(&["127.0.0.1:0".parse().unwrap()], 1, false).expect("bind");
        let fd = sockets.remove(0).remove(0).into_raw_fd();
        let elsewhere: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert!(adopt_socket(fd, Type::STREAM, elsewhere).is_err());
        assert!(adopt_socket(fd, Type::DGRAM, bound[0]).is_err());
        assert!(adopt_unix_stream(fd).is_err());
        // Refused, and still open: taken now.
        let socket = adopt_socket(fd, Type::STREAM, bound[0]).expect("the right socket");
        let listener: TcpListener = socket.into();
        assert_eq!(listener.local_addr().unwrap(), bound[0]);
        assert!(adopt_socket(-1, Type::STREAM, bound[0]).is_err());
    }

    #[test]
    fn port_zero_is_shared_by_every_worker() {
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let (per_worker, bound) = bind_listeners(&[addr], 3, false).unwrap();
        assert_eq!(per_worker.len(), 3);
        assert_ne!(bound[0].port(), 0);
        for worker in &per_worker {
            assert_eq!(worker[0].local_addr().unwrap(), bound[0]);
        }
    }

    #[test]
    fn accepted_sockets_come_with_nodelay_and_their_first_bytes() {
        use std::io::Write;
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let (per_worker, bound) = bind_listeners(&[addr], 1, false).unwrap();
        let listener = &per_worker[0][0];
        let mut client = std::net::TcpStream::connect(bound[0]).unwrap();
        // Deferred: nothing to accept until the client speaks.
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert_eq!(
            listener.accept().map(|_| ()).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let accepted = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(std::time::Instant::now() < deadline, "never accepted");
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        assert!(accepted.nodelay().unwrap(), "TCP_NODELAY not inherited");
    }

    #[test]
    fn a_port_in_use_without_reuseport_is_an_error() {
        let plain = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = plain.local_addr().unwrap();
        let err = bind_listeners(&[addr], 1, false).unwrap_err();
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }

    #[test]
    fn a_second_group_on_a_held_address_is_refused_unless_shared() {
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let (_first, bound) = bind_listeners(&[addr], 1, false).unwrap();
        let err = bind_listeners(&bound, 1, false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert!(err.to_string().contains("--share-listen"), "{err}");
        let (second, _) = bind_listeners(&bound, 2, true).unwrap();
        assert_eq!(second.len(), 2);
    }

    #[test]
    fn a_freed_address_binds_again() {
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let (first, bound) = bind_listeners(&[addr], 1, false).unwrap();
        drop(first);
        assert!(bind_listeners(&bound, 1, false).is_ok());
    }
}
