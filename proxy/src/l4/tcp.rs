//! One connection of a `tcp` or `tls` listener: the PROXY header of a trusted balancer, the
//! connection limit per client address, the TLS handshake or the SNI peek, the upstream server
//! (the next one of the group when one refuses), the PROXY header toward it, and the relay.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;
use ringwall_runtime::{rustls, Stream};

use super::client_hello::{peek_sni, Hello, MAX_RECORD};
use super::proxy_protocol::{self, Decoded, ProxyVersion};
use crate::config::TcpForward;
use crate::l7::{accept_tls, relay_streams, splice_both, Conn, Dialer, ReadSize, Worker};

/// The longest PROXY protocol header read (v1 is at most 107 bytes; v2 with its TLVs is
/// rarely more than a few hundred).
const MAX_PROXY_HEADER: usize = 4096;

/// Serves one connection accepted on a `tcp` listener (`tls: None`) or a `tls` one.
pub async fn serve_tcp<D: Dialer>(
    worker: Rc<Worker<D>>,
    stream: TcpStream,
    peer: SocketAddr,
    listener: usize,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    let info = &worker.listeners[listener];
    let Some(forward) = info.forward.as_ref() else {
        return;
    };
    let local = stream.local_addr().ok();
    let mut client = Conn::new(stream, 0, worker.deadlines.timer());
    let mut source = peer;
    if info.expects_proxy_header(peer) {
        match read_proxy_header(&mut client, peer, worker.timeouts.client_header).await {
            Some(addr) => source = addr,
            None => return,
        }
    }
    let Ok(_slot) = worker.admit(source.ip()) else {
        return tracing::debug!(client = %source, "too many connections from this address");
    };
    let leg = Leg {
        source,
        local,
        send_proxy: forward.send_proxy_protocol,
    };
    match tls {
        None => {
            let Some(group) = choose_group(&worker, forward, &mut client).await else {
                return;
            };
            let Conn {
                stream, buf, timer, ..
            } = client;
            forward_to(&worker, stream, buf, group, leg, &timer).await;
        }
        Some(config) => {
            let Some(group) = forward.upstream else {
                return;
            };
            let Conn {
                stream, buf, timer, ..
            } = client;
            let tls = match accept_tls(&worker, stream, buf, peer, listener, config).await {
                Ok(tls) => tls,
                // Plain text to a TLS port: closed, there is no protocol to tell it in.
                Err(Some(_)) => return tracing::debug!(%peer, "TLS handshake failed: plain text"),
                Err(None) => return,
            };
            forward_to(&worker, tls, BytesMut::new(), group, leg, &timer).await;
        }
    }
}

/// Reads the PROXY protocol header a trusted balancer at `peer` sends first, and returns the
/// client's address: the header's, or `peer` for a header without one (a `LOCAL` health check,
/// `UNKNOWN`). `None`, logged, when no valid header came in time. What follows the header
/// stays in `client.buf`.
pub async fn read_proxy_header<S: Stream>(
    client: &mut Conn<S>,
    peer: SocketAddr,
    limit: Duration,
) -> Option<SocketAddr> {
    loop {
        let incomplete = match proxy_protocol::decode(&client.buf) {
            Decoded::Header { len, source } => {
                let _ = client.buf.split_to(len);
                return Some(source.unwrap_or(peer));
            }
            Decoded::Incomplete => client.buf.len() < MAX_PROXY_HEADER,
            Decoded::Invalid => false,
        };
        if !incomplete || client.read(limit, ReadSize::Head).await.is_err() {
            tracing::debug!(%peer, "no valid PROXY protocol header: closed");
            return None;
        }
    }
}

/// The group a `tcp` connection goes to: the listener's, or for TLS passed through by SNI,
/// that of the first route whose hosts match the `ClientHello`'s name (the listener's for names
/// no route covers, and for connections that are not TLS).
async fn choose_group<D: Dialer>(
    worker: &Worker<D>,
    forward: &TcpForward,
    client: &mut Conn<TcpStream>,
) -> Option<usize> {
    if forward.sni_routes.is_empty() {
        return forward.upstream;
    }
    loop {
        match peek_sni(&client.buf) {
            Hello::Incomplete if client.buf.len() < MAX_RECORD => {
                if let Err(e) = client
                    .read(worker.timeouts.client_header, ReadSize::Head)
                    .await
                {
                    tracing::debug!("no ClientHello: {e:?}");
                    return None;
                }
            }
            Hello::Incomplete | Hello::NotTls => return forward.upstream,
            Hello::Parsed(name) => {
                let route = name.and_then(|name| {
                    forward
                        .sni_routes
                        .iter()
                        .find(|r| r.hosts.iter().any(|h| h.matches(name.as_bytes())))
                });
                return route.map(|r| r.upstream).or(forward.upstream);
            }
        }
    }
}

/// Who the connection is from and to, for the PROXY header toward the origin.
#[derive(Clone, Copy)]
struct Leg {
    source: SocketAddr,
    local: Option<SocketAddr>,
    send_proxy: Option<ProxyVersion>,
}

/// Connects to `group` (the next server when one refuses or times out: nothing was sent yet),
/// sends the PROXY header and what the client already sent, then relays until both sides
/// are done.
async fn forward_to<C: Stream, D: Dialer>(
    worker: &Worker<D>,
    client: C,
    early: BytesMut,
    group: usize,
    leg: Leg,
    timer: &ringwall_runtime::Timer,
) {
    let upstreams = &worker.upstreams;
    let key = client_key(upstreams, group, leg.source);
    let start = upstreams.pick(group, key.as_deref(), std::time::Instant::now());
    let mut upstream = None;
    // At L4 nothing waits for room: a connection over the circuit breaker's limits closes.
    let mut next = start
        .filter(|_| upstreams.group_has_room(group))
        .and_then(|start| upstreams.next_server(group, start, None));
    if next.is_none() && start.is_some() {
        upstreams.count_overflow(group);
    }
    while let Some((offset, server)) = next {
        match upstreams
            .dial(server, worker.timeouts.upstream_connect)
            .await
        {
            Ok(stream) => {
                upstreams.record(server, false, std::time::Instant::now());
                upstream = Some((stream, upstreams.begin(server)));
                break;
            }
            Err(e) => {
                tracing::warn!(client = %leg.source, "{e}");
                upstreams.record(server, true, std::time::Instant::now());
                next = upstreams.next_server(group, start.unwrap_or(0), Some(offset));
            }
        }
    }
    // The connection counts as outstanding on its server while it is relayed.
    let Some((mut upstream, _in_flight)) = upstream else {
        return tracing::warn!(
            client = %leg.source,
            upstream = %upstreams.group_name(group),
            "no server of the group took the connection"
        );
    };
    let mut first = BytesMut::new();
    if let (Some(version), Some(local)) = (leg.send_proxy, leg.local) {
        first.extend_from_slice(&proxy_protocol::encode(version, leg.source, local));
    }
    first.extend_from_slice(&early);
    let idle = worker.timeouts.tcp_idle;
    if !first.is_empty() {
        let sent = timer.within(idle, upstream.write_all(first)).await;
        if !matches!(sent, Some((Ok(_), _))) {
            return;
        }
    }
    let (up, down) = relay(worker, client, upstream, idle).await;
    tracing::debug!(client = %leg.source, up, down, "TCP connection closed");
}

/// The client address as the hash key of a `hash:ip` group (the only `hash:` an L4 connection
/// has; other keys balance by power of two choices).
pub(crate) fn client_key<D: Dialer>(
    upstreams: &crate::l7::Upstreams<D>,
    group: usize,
    client: std::net::SocketAddr,
) -> Option<Vec<u8>> {
    matches!(
        upstreams.hash_key(group),
        Some(crate::config::HashKey::ClientIp)
    )
    .then(|| crate::l7::ip_bytes(client.ip()))
}

/// Spliced both ways when both sides are TCP sockets; copied otherwise (TLS on either side).
async fn relay<C: Stream, U: Stream, D: Dialer>(
    worker: &Worker<D>,
    mut client: C,
    mut upstream: U,
    idle: Duration,
) -> (u64, u64) {
    if client.tcp().is_none() || upstream.tcp().is_none() {
        return relay_streams(client, upstream, idle).await;
    }
    let (Ok(a), Ok(b)) = (client.into_tcp(), upstream.into_tcp()) else {
        return (0, 0);
    };
    match splice_both(&worker.pipes, a, b, idle).await {
        Ok(moved) => moved,
        Err((a, b)) => relay_streams(a, b, idle).await,
    }
}
