//! UDP listeners: datagrams forwarded to an upstream group, a session per client address and
//! port (nginx's `stream` with `udp`, Envoy's UDP proxy).
//!
//! Each worker has its own socket on the listening address (one `SO_REUSEPORT` group, so the
//! kernel sends a client's datagrams, by its address and port, always to the same worker). The
//! first datagram of a client opens a session: a server of the group (round robin) and a UDP
//! socket of its own connected to that server, so the server's replies come back on it and
//! nowhere else. Replies go to the client from the listening socket, so the client sees them
//! come from the address it sent to. A session ends after `timeouts.udp_idle` without a
//! datagram either way; at most `limits.max_connections_per_worker` sessions per worker, the
//! datagrams of further clients are dropped (and counted in the log).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::net::udp::UdpSocket;

use crate::l7::{Dialer, Worker};

/// The largest datagram: a UDP payload's maximum.
const MAX_DATAGRAM: usize = 65_535;

/// One client's session.
struct Session {
    upstream: UdpSocket,
    last: Cell<Instant>,
}

type Sessions = Rc<RefCell<HashMap<SocketAddr, Rc<Session>>>>;

/// Runs a worker's socket of UDP listener `listener` until the worker drains or `stop` begins
/// (a reload removed the listener). New sessions follow reloads; a session keeps its server.
pub async fn serve_udp<D: Dialer>(
    mut worker: Rc<Worker<D>>,
    socket: std::net::UdpSocket,
    mut listener: usize,
    stop: ringwall_runtime::Drain,
) {
    let Some(mut group) = worker.listeners[listener]
        .forward
        .as_ref()
        .and_then(|f| f.upstream)
    else {
        return;
    };
    let socket = match UdpSocket::from_std(socket) {
        Ok(socket) => Rc::new(socket),
        Err(e) => return tracing::error!("cannot use the UDP socket: {e}"),
    };
    let sessions: Sessions = Rc::default();
    let mut dropped = 0u64;
    let mut buf = Vec::with_capacity(MAX_DATAGRAM);
    loop {
        buf.clear();
        let (received, returned) = monoio::select! {
            r = socket.recv_from(buf) => r,
            () = worker.drain.wait() => break,
            () = stop.wait() => break,
        };
        buf = returned;
        let (n, client) = match received {
            Ok(got) => got,
            Err(e) => {
                tracing::debug!("UDP receive failed: {e}");
                continue;
            }
        };
        let existing = sessions.borrow().get(&client).cloned();
        let session = match existing {
            Some(session) => session,
            None if sessions.borrow().len() >= worker.limits.max_connections_per_worker => {
                dropped += 1;
                if dropped.is_power_of_two() {
                    tracing::warn!(dropped, "UDP sessions at the limit: datagrams dropped");
                }
                continue;
            }
            None => match open_session_latest(&mut worker, &mut listener, &mut group, client) {
                Ok(session) => {
                    sessions.borrow_mut().insert(client, session.clone());
                    monoio::spawn(relay_replies(
                        socket.clone(),
                        session.clone(),
                        client,
                        worker.timeouts.udp_idle,
                        sessions.clone(),
                    ));
                    session
                }
                Err(e) => {
                    tracing::warn!(%client, "cannot open a UDP session: {e}");
                    continue;
                }
            },
        };
        session.last.set(Instant::now());
        let (sent, _) = session.upstream.send(buf[..n].to_vec()).await;
        if let Err(e) = sent {
            tracing::debug!(%client, "UDP send to the origin failed: {e}");
        }
    }
    // Draining or removed: the sessions end with the listener.
    sessions.borrow_mut().clear();
}

/// A new session for `client` on the newest generation (`worker`, `listener` and `group` move
/// to it when a reload kept the listener).
fn open_session_latest<D: Dialer>(
    worker: &mut Rc<Worker<D>>,
    listener: &mut usize,
    group: &mut usize,
    client: SocketAddr,
) -> std::io::Result<Rc<Session>> {
    if let Some((newest, index)) = worker.latest(*listener) {
        let newest_group = newest.listeners[index]
            .forward
            .as_ref()
            .and_then(|f| f.upstream);
        if let Some(g) = newest_group {
            (*worker, *listener, *group) = (newest, index, g);
        }
    }
    open_session(worker, *group, client)
}

/// A new session for `client`: the next server of `group`, a socket connected to it.
fn open_session<D: Dialer>(
    worker: &Worker<D>,
    group: usize,
    client: SocketAddr,
) -> std::io::Result<Rc<Session>> {
    let key = super::tcp::client_key(&worker.upstreams, group, client);
    let upstreams = &worker.upstreams;
    let Some((_, server)) = upstreams
        .pick(group, key.as_deref(), std::time::Instant::now())
        .and_then(|start| upstreams.next_server(group, start, None))
    else {
        return Err(std::io::Error::other(format!(
            "no server of upstream group {:?} takes datagrams (all down)",
            upstreams.group_name(group)
        )));
    };
    let server = upstreams.addr(server);
    let any: IpAddr = if server.is_ipv4() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        Ipv6Addr::UNSPECIFIED.into()
    };
    let socket = std::net::UdpSocket::bind(SocketAddr::new(any, 0))?;
    socket.connect(server)?;
    socket.set_nonblocking(true)?;
    tracing::debug!(%client, %server, "UDP session opened");
    Ok(Rc::new(Session {
        upstream: UdpSocket::from_std(socket)?,
        last: Cell::new(Instant::now()),
    }))
}

/// Sends the server's replies to `client` from the listening socket until the session has
/// been idle for `idle`, then ends it.
async fn relay_replies(
    listening: Rc<UdpSocket>,
    session: Rc<Session>,
    client: SocketAddr,
    idle: Duration,
    sessions: Sessions,
) {
    let mut buf = Vec::with_capacity(MAX_DATAGRAM);
    loop {
        let left = idle.saturating_sub(session.last.get().elapsed());
        if left.is_zero() {
            break;
        }
        buf.clear();
        let reply = monoio::time::timeout(left, session.upstream.recv(buf)).await;
        // The wait is over: the next turn looks whether the session was used meanwhile.
        let Ok((received, returned)) = reply else {
            buf = Vec::with_capacity(MAX_DATAGRAM);
            continue;
        };
        buf = returned;
        match received {
            Ok(_) => {
                session.last.set(Instant::now());
                let (sent, returned) = listening.send_to(buf, client).await;
                buf = returned;
                if let Err(e) = sent {
                    tracing::debug!(%client, "UDP reply to the client failed: {e}");
                }
            }
            // An ICMP error for an earlier datagram (nothing listens on the server): the
            // session waits on; its idle timeout ends it.
            Err(e) => tracing::debug!(%client, "UDP from the origin: {e}"),
        }
    }
    // The session may have been replaced meanwhile only by this same entry.
    let mut sessions = sessions.borrow_mut();
    if sessions
        .get(&client)
        .is_some_and(|s| Rc::ptr_eq(s, &session))
    {
        sessions.remove(&client);
    }
    tracing::debug!(%client, "UDP session ended");
}
