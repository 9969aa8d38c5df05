//! The request path, one named phase at a time.
//!
//! A client connection is served by [`serve`], which loops over requests. Each request goes
//! through these phases (docs/architecture.md draws the same chart); the route's filters plug
//! into the hooks marked `[hook]`:
//!
//! ```text
//! read_head ─► route ─► [request_filter] ─► upstream_peer ─► [upstream_request_filter]
//!    │           │            │                   │                    │
//!    │           │            └─ a filter answers ─┼────────────┐       ▼
//!    │           │                                 │            │   forward: head, then
//!    │           └─ 404 / 400 (path)               └─ 502/504   │   [request_body_filter] in the pump
//!    └─ 400/408/414/431/501/505                                 │       │
//!                                                               │       ▼
//!                         logging ◄─ [response_body_filter] ◄─ [response_filter] ◄─ read_response
//!                        [logging]     in the pump, framing      │   (1xx relayed; 101 → tunnel)
//!                                      chosen after the filters ◄┘
//! ```
//!
//! Every failure is a [`ProxyError`]; [`exchange`] alone turns it into a response (through the
//! response filters, when the request was routed) and decides whether the connection survives.
//! Bodies stream in both directions through the one pump (`pump.rs`), in bounded memory.

use std::borrow::Cow;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use monoio::net::TcpStream;
use ringwall_runtime::{rustls, HandshakeError, Stream, TlsInfo, TlsStream};

use super::context::RequestContext;
use super::error::{ProxyError, Side};
use super::pump::{pump, BodyEnd, Direction, Leg};
use super::router::{RouteEntry, RouteQuery};
use super::transport::{Conn, IoFailure, ReadSize};
use super::tunnel::relay;
use super::upstream::{Dialer, UpstreamConn};
use super::Worker;
use crate::config::{HashKey, RouteAction, RouteTimeouts};
use crate::filters::{Flow, Request, RequestInfo, Response, ResponseSource};
use crate::http1::{
    normalize_path, parse_request, parse_response, write_local_response, write_request_head,
    write_response_head, BodyDecoder, BodyKind, HeadOverlay, LocalResponse, Method, OutFraming,
    RequestFraming, RequestHead, ResponseHead, Version,
};
use crate::l4::read_proxy_header;

/// The read buffer a client connection starts with, and goes back to when it is idle: enough
/// for most request heads, small enough that idle keep-alive connections cost little.
const CLIENT_BUF: usize = 1024;
/// A connection's buffers that grew past this during a request are replaced when it goes idle.
const IDLE_BUF_LIMIT: usize = 4 * 1024;

/// How far an exchange got; decides what an error can still do.
#[derive(Default)]
pub struct Progress {
    /// The whole request, body included, was read from the client.
    pub request_done: bool,
    /// Some of the response was sent to the client: an error can no longer be answered.
    pub response_started: bool,
}

/// How an exchange leaves the client connection.
enum Outcome<U> {
    KeepAlive,
    /// Close after the response (our side first).
    Close,
    /// Close after a refusal, reading what the client still sends for a while, so that the
    /// refusal is not lost to a reset.
    Linger,
    /// The connection is unusable (the client went away, or a response broke off).
    Abort,
    /// The origin switched protocols: relay bytes both ways.
    Upgrade(UpstreamConn<U>),
}

impl<C: Stream> Conn<C> {
    /// Gives back the buffers of a connection that goes idle, so that while it waits for its
    /// next request it holds none: they are taken again when bytes arrive. Bytes of a next
    /// request already read (pipelining) keep the read buffer.
    fn release_buffers(&mut self) {
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
        } else if self.buf.capacity() > IDLE_BUF_LIMIT && self.buf.len() <= CLIENT_BUF {
            self.buf = BytesMut::from(&self.buf[..]);
        }
        self.out.release();
    }
}

/// What the connection does after one request.
enum Next<U> {
    /// Wait for the next request.
    KeepAlive,
    /// The connection is done (closed, refused or broken).
    Done,
    /// The origin switched protocols: relay bytes both ways. Boxed: `serve`'s future, which
    /// every idle connection carries, holds this value's room.
    Upgrade(Box<UpstreamConn<U>>),
}

/// Serves one client connection until it closes, fails, or the worker drains. `listener` is
/// the index of the listener that accepted it.
///
/// Between requests the connection holds no buffer and no timer: it waits for readability
/// under its timer (a slot in the worker's [`ringwall_runtime::Deadlines`]), and everything a
/// request needs lives in [`request`]'s future, allocated while the request is in flight.
/// What an idle connection costs is this function's future, its socket and its timer's slot.
pub fn serve<C: Stream, D: Dialer>(
    worker: Rc<Worker<D>>,
    stream: C,
    remote: SocketAddr,
    listener: usize,
) -> impl Future<Output = ()> {
    // No set_nodelay: accepted sockets inherit TCP_NODELAY from the listener.
    // Made here rather than in the future: a moved argument keeps its room in an async fn's
    // state, and this one would be kept twice.
    let client = Conn::new(stream, 0, worker.deadlines.timer());
    serve_connection(worker, client, remote, listener)
}

/// Serves one connection accepted on a TLS listener: the handshake (within
/// `timeouts.tls_handshake`), then the same request path as plain connections. A failed
/// handshake closes this connection only; a client that speaks plain HTTP to the port gets a
/// plain-text 400 saying so.
pub async fn serve_tls<D: Dialer>(
    worker: Rc<Worker<D>>,
    stream: TcpStream,
    remote: SocketAddr,
    listener: usize,
    config: Arc<rustls::ServerConfig>,
) {
    serve_tls_after(worker, stream, BytesMut::new(), remote, listener, config).await;
}

/// Serves a connection of an HTTP or HTTPS listener from a trusted load balancer: its PROXY
/// protocol header first (the client's address is taken from it; a connection without a valid
/// one is closed), then the same path as any other.
pub async fn serve_proxied<D: Dialer>(
    worker: Rc<Worker<D>>,
    stream: TcpStream,
    peer: SocketAddr,
    listener: usize,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    let mut conn = Conn::new(stream, 0, worker.deadlines.timer());
    let Some(remote) = read_proxy_header(&mut conn, peer, worker.timeouts.client_header).await
    else {
        return;
    };
    match tls {
        None => serve_connection(worker, conn, remote, listener).await,
        Some(config) => {
            let Conn { stream, buf, .. } = conn;
            serve_tls_after(worker, stream, buf, remote, listener, config).await;
        }
    }
}

/// [`serve_tls`] for a connection whose first bytes, `buffered`, were already read.
async fn serve_tls_after<D: Dialer>(
    worker: Rc<Worker<D>>,
    stream: TcpStream,
    buffered: BytesMut,
    remote: SocketAddr,
    listener: usize,
    config: Arc<rustls::ServerConfig>,
) {
    match accept_tls(&worker, stream, buffered, remote, listener, config).await {
        Ok(tls) => serve(worker, tls, remote, listener).await,
        Err(Some(plain)) => {
            let mut client = Conn::new(plain, 0, worker.deadlines.timer());
            refuse(&worker, &mut client, &ProxyError::PlainHttpToTls, remote).await;
        }
        Err(None) => {}
    }
}

/// The server side of a TLS handshake on an accepted connection whose first bytes,
/// `buffered`, may already have been read, within `timeouts.tls_handshake`. A failure is
/// logged; `Err(Some(socket))` when the client spoke plain text (it may be told so).
pub async fn accept_tls<D: Dialer>(
    worker: &Worker<D>,
    stream: TcpStream,
    buffered: BytesMut,
    remote: SocketAddr,
    listener: usize,
    config: Arc<rustls::ServerConfig>,
) -> Result<TlsStream<TcpStream, rustls::ServerConnection>, Option<TcpStream>> {
    let handshake = accept_tls_session(worker, stream, buffered, remote, config).await;
    if let Some(info) = worker.listeners.get(listener) {
        info.stats.tls_handshake(handshake.is_ok());
    }
    handshake
}

async fn accept_tls_session<D: Dialer>(
    worker: &Worker<D>,
    stream: TcpStream,
    buffered: BytesMut,
    remote: SocketAddr,
    config: Arc<rustls::ServerConfig>,
) -> Result<TlsStream<TcpStream, rustls::ServerConnection>, Option<TcpStream>> {
    let conn = match rustls::ServerConnection::new(config) {
        Ok(conn) => conn,
        Err(e) => {
            tracing::error!(%remote, "cannot start a TLS session: {e}");
            return Err(None);
        }
    };
    let mut tls = TlsStream::with_buffered(stream, conn, buffered);
    let timer = worker.deadlines.timer();
    match timer
        .within(worker.timeouts.tls_handshake, tls.handshake())
        .await
    {
        Some(Ok(())) => Ok(tls),
        None => {
            tracing::debug!(%remote, "TLS handshake timed out");
            Err(None)
        }
        Some(Err(HandshakeError::PlainText)) => Err(Some(tls.into_inner())),
        Some(Err(e)) => {
            tracing::debug!(%remote, "TLS handshake failed: {e}");
            Err(None)
        }
    }
}

async fn serve_connection<C: Stream, D: Dialer>(
    mut worker: Rc<Worker<D>>,
    mut client: Conn<C>,
    remote: SocketAddr,
    mut listener: usize,
) {
    // Phase accept, continued: the per-address connection limit, answered at once.
    let Ok(_slot) = worker.admit(remote.ip()) else {
        return refuse_connection(&worker, &mut client, remote).await;
    };
    // Known once the handshake is done, the same for every request of the connection.
    let tls = client.stream.tls_info();
    let mut first = true;
    loop {
        // A new connection comes with its first bytes (the listener defers accepts until
        // they arrive), so its first read goes straight ahead; between requests the
        // connection waits holding no buffer.
        if client.buf.is_empty() && !first {
            if worker.drain.is_draining() {
                return;
            }
            let timeout = worker.timeouts.client_keepalive;
            let readable = client.timer.idle(timeout, client.stream.readable()).await;
            // Timed out, draining, or the socket failed: close quietly.
            if !matches!(readable, Some(Ok(()))) {
                return;
            }
        }
        // A reload since the last request: this one runs on the new configuration.
        if let Some((newest, index)) = worker.latest(listener) {
            (worker, listener) = (newest, index);
        }
        let next = Box::pin(request(
            &worker,
            &mut client,
            first,
            listener,
            remote,
            tls.as_ref(),
        ))
        .await;
        first = false;
        let upstream = match next {
            Next::KeepAlive => {
                client.release_buffers();
                continue;
            }
            Next::Done => return,
            Next::Upgrade(upstream) => upstream,
        };
        return tunnel(client, upstream, worker.timeouts.tunnel_idle, remote).await;
    }
}

// The two ways off the common path are boxed by plain functions that take their values by
// move: what they hold is then in the box, not in `serve`'s future, which every idle
// connection carries.

/// Refuses a connection over the per-address limit.
fn refuse_connection<'a, C: Stream, D: Dialer>(
    worker: &'a Worker<D>,
    client: &'a mut Conn<C>,
    remote: SocketAddr,
) -> Pin<Box<impl Future<Output = ()> + 'a>> {
    Box::pin(async move { refuse(worker, client, &ProxyError::TooManyConnections, remote).await })
}

/// Relays an upgraded connection until the tunnel closes.
fn tunnel<C: Stream, U: Stream>(
    client: Conn<C>,
    upstream: Box<UpstreamConn<U>>,
    idle: Duration,
    remote: SocketAddr,
) -> Pin<Box<impl Future<Output = ()>>> {
    Box::pin(async move {
        let (up, down) = relay(client, upstream.conn, idle).await;
        tracing::debug!(%remote, up, down, "tunnel closed");
    })
}

/// One request on a connection whose bytes are arriving: reads its head, runs the exchange,
/// and carries out how it leaves the connection.
async fn request<C: Stream, D: Dialer>(
    worker: &Worker<D>,
    client: &mut Conn<C>,
    first: bool,
    listener: usize,
    remote: SocketAddr,
    tls: Option<&TlsInfo>,
) -> Next<D::Stream> {
    let head = match read_head(worker, client, first).await {
        Ok(Some(head)) => head,
        Ok(None) => return Next::Done,
        Err(error) => {
            refuse(worker, client, &error, remote).await;
            return Next::Done;
        }
    };
    match exchange(worker, client, head, listener, remote, tls).await {
        Outcome::KeepAlive => Next::KeepAlive,
        Outcome::Linger => {
            linger_close(worker, client).await;
            Next::Done
        }
        // `Close`: dropping the socket sends the FIN (a shutdown first would only add an
        // operation: unread bytes make the close a reset either way; `Linger` is for those).
        Outcome::Close | Outcome::Abort => Next::Done,
        Outcome::Upgrade(upstream) => Next::Upgrade(Box::new(upstream)),
    }
}

/// Answers an error that came before any request could be routed, and closes.
async fn refuse<C: Stream, D: Dialer>(
    worker: &Worker<D>,
    client: &mut Conn<C>,
    error: &ProxyError,
    remote: SocketAddr,
) {
    log_error(error, remote);
    if let Some(response) = error.response() {
        worker.metrics.unrouted.refused(response.status);
        write_local_response(
            client.out.buf(),
            &response,
            &HeadOverlay::default(),
            b"close",
            false,
        );
        if client.flush(worker.timeouts.client_send).await.is_err() {
            return;
        }
    }
    linger_close(worker, client).await;
}

fn log_error(error: &ProxyError, peer: SocketAddr) {
    match error.side() {
        Side::Upstream => tracing::warn!(%peer, "{error}"),
        Side::Internal if error.status() == Some(500) => tracing::error!(%peer, "{error}"),
        Side::Downstream | Side::Internal => tracing::debug!(%peer, "{error}"),
    }
}

/// Closes our side and reads what the client was still sending, so that the kernel does not
/// answer its unread bytes with a reset that would destroy our response. Bounded as nginx
/// bounds it: `lingering_time` in all, `lingering_timeout` for any one read.
async fn linger_close<C: Stream, D: Dialer>(worker: &Worker<D>, client: &mut Conn<C>) {
    let _ = client.stream.shutdown().await;
    let deadline = Instant::now() + worker.timeouts.lingering_time;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        client.buf.clear();
        let wait = left.min(worker.timeouts.lingering_timeout);
        if client.read(wait, ReadSize::Body).await.is_err() {
            break;
        }
    }
}

/// Phase `read_head`: waits for the next request and parses its head.
///
/// `Ok(None)` means the connection should close quietly: the client closed it, stayed idle
/// past the keep-alive timeout, or the worker is draining while the connection is idle.
async fn read_head<C: Stream, D: Dialer>(
    worker: &Worker<D>,
    client: &mut Conn<C>,
    first: bool,
) -> Result<Option<RequestHead>, ProxyError> {
    let timeouts = &worker.timeouts;
    if client.buf.is_empty() {
        // The connection was readable: the first bytes are there (or its end is).
        if client.buf.capacity() == 0 {
            client.buf = BytesMut::with_capacity(CLIENT_BUF);
        }
        let idle = if first {
            timeouts.client_header
        } else {
            timeouts.client_keepalive
        };
        let waited = monoio::select! {
            read = client.read(idle, ReadSize::Head) => read,
            () = worker.drain.wait() => return Ok(None),
        };
        if waited.is_err() {
            return Ok(None);
        }
    }
    let deadline = Instant::now() + timeouts.client_header;
    loop {
        if let Some(head) = parse_request(&mut client.buf, &worker.request_limits)
            .map_err(ProxyError::BadRequest)?
        {
            return Ok(Some(head));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        client
            .read(left, ReadSize::Head)
            .await
            .map_err(|f| client_failure(f, ProxyError::HeaderTimeout))?;
    }
}

/// The path a request is routed and forwarded by: normalized, and the query beside it.
struct RequestPath<'h> {
    path: Cow<'h, [u8]>,
    query: &'h [u8],
}

impl RequestPath<'_> {
    fn info<'a>(&'a self, head: &'a RequestHead) -> RequestInfo<'a> {
        RequestInfo {
            head,
            path: &self.path,
            query: self.query,
        }
    }
}

/// One request, from its head to its end; every error is answered here.
#[allow(clippy::too_many_lines)] // the phases in order, inline on purpose (see below)
async fn exchange<C: Stream, D: Dialer>(
    worker: &Worker<D>,
    client: &mut Conn<C>,
    head: RequestHead,
    listener: usize,
    remote: SocketAddr,
    tls: Option<&TlsInfo>,
) -> Outcome<D::Stream> {
    let scheme = worker.listeners.get(listener).map_or("http", |l| l.scheme);
    let mut ctx = RequestContext::new(listener, scheme, remote);
    ctx.tls = tls.cloned();
    let mut progress = Progress {
        request_done: matches!(head.body(), BodyKind::Empty | BodyKind::Length(0)),
        response_started: false,
    };
    // Phase route: on the normalized path.
    let routed = route(worker, &head);
    let (route, path) = match routed {
        Ok(routed) => routed,
        Err(error) => {
            let outcome = Box::pin(answer_error(
                worker, client, &head, None, &mut ctx, &progress, error,
            ))
            .await;
            let took = ctx.finish();
            worker
                .metrics
                .unrouted
                .request(ctx.status, took, ctx.bytes_received, ctx.bytes_sent);
            log_request(worker, &head, &ctx);
            return outcome;
        }
    };
    ctx.route = Some(route.name.clone());
    // The phases after routing: `request_filter` → `upstream_peer` → `upstream_request_filter`
    // → forward → `response_filter` → the response body. Inline here rather than an `async fn`
    // of their own: each such call moves that function's future into this one's, once per
    // request. An error leaves the block with `break 'phases Err(..)`.
    let (head, ctx, progress) = (&head, &mut ctx, &mut progress);
    // What the cache noted (a stale entry may still answer an origin's failure).
    let mut cache_note: Option<Box<crate::cache::CacheNote>> = None;
    let result: Result<Outcome<D::Stream>, ProxyError> = 'phases: {
        let policy = &route.policy;
        if let (BodyKind::Length(n), Some(max)) = (head.body(), policy.max_body) {
            if n > max {
                break 'phases Err(ProxyError::BodyTooLarge);
            }
        }
        let mut overlay = worker.overlay();
        if let Cow::Owned(normal) = &path.path {
            // The origin gets the path the route matched, not the raw one.
            let mut target = BytesMut::with_capacity(normal.len() + path.query.len());
            target.extend_from_slice(normal);
            target.extend_from_slice(path.query);
            overlay.set_target(target.freeze());
        }
        let mut request = Request {
            head,
            path: &path.path,
            query: path.query,
            overlay: &mut overlay,
        };

        // Phase request_filter: a filter may answer here, or make the request wait its turn
        // (boxed: the timer's state would otherwise make every request's future larger).
        let flow = match route.filters.request_filter(&mut request, ctx) {
            Flow::Wait(wait) => {
                Box::pin(monoio::time::sleep(wait)).await;
                Flow::Continue
            }
            flow => flow,
        };
        if let Flow::Respond(response) = flow {
            // A body not read yet would be taken for the next request: close after answering.
            let keep = progress.request_done && head.keep_alive() && !worker.drain.is_draining();
            let info = path.info(head);
            let sent = Box::pin(respond_locally(
                worker,
                client,
                head,
                Some((route, info)),
                ctx,
                &response,
                keep,
            ))
            .await;
            if let Err(e) = sent {
                break 'phases Err(e);
            }
            break 'phases Ok(if keep {
                Outcome::KeepAlive
            } else {
                Outcome::Linger
            });
        }
        let RouteAction::Forward {
            upstream: group,
            host_rewrite,
        } = &route.action
        else {
            break 'phases Err(ProxyError::Internal(
                "a route without upstream did not answer",
            ));
        };

        // Phase cache_lookup: a fresh stored response answers here; a stale one is
        // revalidated with its validators; a miss may be stored on its way back.
        let mut invalidates = None;
        if let Some(route_cache) = &policy.cache {
            // A request for a URL another request is fetching waits for it (coalescing),
            // within the lock timeout, then looks again.
            let deadline = Instant::now() + crate::cache::LOCK_TIMEOUT;
            let mut waited = false;
            let mut from_disk = false;
            let step = loop {
                match cache_lookup(worker, head, &path, route_cache, request.overlay, !waited) {
                    CacheStep::Wait(event) => {
                        let left = deadline.saturating_duration_since(Instant::now());
                        let _ = Box::pin(monoio::time::timeout(left, event.wait())).await;
                        waited = true;
                    }
                    CacheStep::WaitRemote(key) => {
                        Box::pin(wait_for_remote_fetch(worker, &key, deadline)).await;
                        waited = true;
                    }
                    // Nothing in memory: the disk tier may have it (then it is in memory,
                    // and the lookup is made again).
                    CacheStep::Forward(Some(note)) if !from_disk && note.stale.is_none() => {
                        from_disk = true;
                        let disk = worker.cache.borrow().as_ref().and_then(|s| s.disk.clone());
                        let loaded = match &disk {
                            Some(disk) => {
                                Box::pin(disk.load(
                                    &note.key,
                                    &note.request,
                                    &worker.response_limits,
                                ))
                                .await
                            }
                            None => None,
                        };
                        match loaded {
                            Some(entry) => {
                                let key = note.key.clone();
                                // Let those waiting for this request look again too.
                                drop(note);
                                if let Some(store) = worker.cache.borrow_mut().as_mut() {
                                    store.put_loaded(key, entry);
                                }
                            }
                            None => break CacheStep::Forward(Some(note)),
                        }
                    }
                    step => break step,
                }
            };
            let served = match step {
                CacheStep::Wait(_) | CacheStep::WaitRemote(_) => unreachable!("waited above"),
                CacheStep::ServeStale(entry, leader) => {
                    if let (Some(leader), Some(newest)) = (leader, worker.newest()) {
                        let refresh = Refresh {
                            head: head.clone(),
                            entry: entry.clone(),
                            leader,
                            listener: ctx.listener,
                            scheme: ctx.scheme,
                            remote: ctx.remote_addr,
                        };
                        monoio::spawn(refresh_in_background(newest, refresh));
                    }
                    Some((entry, "hit; detail=stale-while-revalidate"))
                }
                CacheStep::Serve(entry) => {
                    Some((entry, if waited { "hit; collapsed" } else { "hit" }))
                }
                CacheStep::Forward(note) => {
                    cache_note = note;
                    None
                }
                CacheStep::Invalidate(key) => {
                    invalidates = Some(key);
                    None
                }
                CacheStep::Refuse => break 'phases Err(ProxyError::NotCached),
            };
            if let Some((entry, status)) = served {
                let info = path.info(head);
                break 'phases Box::pin(respond_cached(
                    worker,
                    client,
                    (head, route, info),
                    ctx,
                    progress,
                    &entry,
                    status,
                ))
                .await;
            }
        }

        // Phase upstream_request_filter.
        route.filters.upstream_request_filter(&mut request, ctx);
        let info = path.info(head);

        // Phase upstream_peer: a server that refuses the connection (or does not accept it in
        // time) has seen nothing of the request, so the next server of the group in service is
        // tried, until each was tried once; an idempotent request whose body can be sent again
        // also goes on after the failures and statuses of its route's `retry.on`, within the
        // group's retry budget. Every outcome feeds the passive checks. The circuit breaker
        // decides whether there is room, or the request waits or is refused.
        let upstreams = &worker.upstreams;
        let retry = &policy.retry;
        let idempotent = head.method().is_idempotent();
        let start = {
            let key = upstreams
                .hash_key(*group)
                .and_then(|on| hash_key(on, head, ctx));
            upstreams.pick(*group, key.as_deref(), ctx.started)
        };
        let Some(start) = start else {
            break 'phases Err(ProxyError::NoHealthyServer(
                upstreams.group_name(*group).clone(),
            ));
        };
        let first = if upstreams.group_has_room(*group) {
            upstreams.next_server(*group, start, None)
        } else {
            None
        };
        let (mut offset, mut server) = match first {
            Some(found) => found,
            None => match Box::pin(upstreams.wait_for_room(*group, start)).await {
                Ok(found) => found,
                Err(e) => break 'phases Err(e),
            },
        };
        // A body of known length within the limit is read whole first, so that a retry can
        // send it again (only idempotent requests are retried once the origin may have seen
        // them).
        let body = match head.body() {
            BodyKind::Length(n)
                if n > 0
                    && n <= retry.buffer_body
                    && idempotent
                    && !route.filters.filters_request_body() =>
            {
                match Box::pin(buffer_body(
                    client,
                    head,
                    n,
                    &policy.timeouts,
                    ctx,
                    progress,
                ))
                .await
                {
                    Ok(body) => Some(body),
                    Err(e) => break 'phases Err(e),
                }
            }
            _ => None,
        };
        let resendable = idempotent && (body.is_some() || head.body() == BodyKind::Empty);
        upstreams.budget_request(*group, ctx.started);
        let response_timeout = retry
            .per_try_timeout
            .unwrap_or(policy.timeouts.upstream_response);
        // The request counts as outstanding on the server it is on (the balancers' load),
        // until its response has been relayed.
        let mut _in_flight = None;
        let mut try_began = Duration::ZERO;
        let (mut upstream, response) = loop {
            _in_flight = Some(upstreams.begin(server));
            ctx.attempts += 1;
            ctx.upstream_addr = Some(upstreams.addr(server));
            ctx.server = Some(server);
            let forwarded = Forwarded {
                head,
                overlay: &overlay,
                host_rewrite: host_rewrite.as_deref(),
                route,
                server,
                body: body.as_ref(),
                response_timeout,
            };
            let hedge = hedge_delay(
                route,
                resendable && body.is_none() && head.upgrade().is_none(),
                ctx,
            );
            let outcome = match hedge.filter(|_| ctx.attempts == 1) {
                Some(delay) => {
                    let hedging = Hedging {
                        group: *group,
                        start,
                        offset,
                        delay,
                    };
                    let (outcome, second) = Box::pin(hedged(worker, &forwarded, &hedging)).await;
                    if let Some((hedged_server, guard)) = second {
                        // The second try answered first: the request is on its server now.
                        server = hedged_server;
                        _in_flight = Some(guard);
                        ctx.attempts += 1;
                        ctx.upstream_addr = Some(upstreams.addr(server));
                        ctx.server = Some(server);
                    }
                    if outcome.is_ok() {
                        ctx.upstream_time = Some(ctx.started.elapsed());
                    }
                    outcome
                }
                None => forward(worker, client, &forwarded, ctx, progress).await,
            };
            let tries_left = retry.tries == 0 || ctx.attempts < retry.tries;
            match outcome {
                Err(e) => {
                    if e.side() == Side::Upstream {
                        upstreams.record(server, true, Instant::now());
                    }
                    let condition = match &e {
                        ProxyError::UpstreamTimeout => retry.on_timeout,
                        ProxyError::UpstreamClosed
                        | ProxyError::UpstreamIo(_)
                        | ProxyError::UpstreamInvalid(_) => retry.on_error,
                        _ => false,
                    };
                    let next = if !tries_left {
                        None
                    } else if e.retry_safe() {
                        // Nothing reached the origin: not the budget's business.
                        let next = upstreams.next_server(*group, start, Some(offset));
                        if next.is_some() {
                            upstreams.count_retry(*group);
                        }
                        next
                    } else if resendable && condition && !progress.response_started {
                        upstreams.retry_server(*group, start, offset)
                    } else {
                        None
                    };
                    let Some(next) = next else {
                        break 'phases Err(e);
                    };
                    log_error(&e, ctx.remote_addr);
                    (offset, server) = next;
                    try_began = ctx.started.elapsed();
                }
                Ok((upstream, response)) => {
                    let status = response.status();
                    if let Some(took) = ctx.upstream_time {
                        let at = ctx.started + took;
                        let took = took.saturating_sub(try_began);
                        upstreams.observe(server, took, at);
                        upstreams.record(server, status >= 500, at);
                        if let Some(latencies) = &route.latencies {
                            latencies.borrow_mut().record(took, at);
                        }
                    }
                    let next = if resendable && tries_left && retry.retries_status(status) {
                        upstreams.retry_server(*group, start, offset)
                    } else {
                        None
                    };
                    let Some(next) = next else {
                        break (upstream, response);
                    };
                    tracing::debug!(
                        client = %ctx.remote_addr,
                        status,
                        upstream = ?ctx.upstream_addr,
                        "trying the next server after the status"
                    );
                    // Its body is not wanted: the connection closes.
                    drop(upstream);
                    (offset, server) = next;
                    try_began = ctx.started.elapsed();
                }
            }
        };

        // The cache: a 304 to its revalidation updates the stored response, which answers;
        // a response that may be stored is gathered on its way to the client; an unsafe
        // method that succeeded invalidates what is stored for its URL.
        if let Some(key) = invalidates {
            if (200..400).contains(&response.status()) {
                invalidate(worker, &key, head, &response);
            }
        }
        let mut cache_status = None;
        if let Some(note) = cache_note.take() {
            if let Some((entry, status)) = answer_from_cache(worker, &note, &response) {
                if response.status() == 304 && response.keep_alive() {
                    worker.upstreams.checkin(upstream);
                }
                break 'phases Box::pin(respond_cached(
                    worker,
                    client,
                    (head, route, info),
                    ctx,
                    progress,
                    &entry,
                    status,
                ))
                .await;
            }
            cache_status = Some(begin_fill(worker, note, head, &response, ctx));
        }

        // Phase response_filter.
        let mut response_overlay = worker.overlay();
        route.filters.response_filter(
            &mut Response {
                request: info,
                source: ResponseSource::Upstream(&response),
                overlay: &mut response_overlay,
            },
            ctx,
        );
        if let Some(status) = cache_status {
            response_overlay.add_with(b"Cache-Status", |out| {
                out.extend_from_slice(b"ringwall; ");
                out.extend_from_slice(status.as_bytes());
            });
        }
        ctx.status = response.status();
        if response.status() == 101 {
            write_response_head(
                client.out.buf(),
                &response,
                &response_overlay,
                OutFraming::None,
                None,
            );
            progress.response_started = true;
            let flushed = client
                .flush(policy.timeouts.client_send)
                .await
                .map_err(client_send_failure);
            if let Err(e) = flushed {
                break 'phases Err(e);
            }
            break 'phases Ok(Outcome::Upgrade(upstream));
        }

        // The framing is chosen now, after the response filters: a body filter may change the
        // length, and then the body goes out chunked (or close-delimited to HTTP/1.0).
        let http11 = head.version() == Version::Http11;
        let framing = match response.body() {
            BodyKind::Empty => OutFraming::None,
            BodyKind::Length(n) if !route.filters.filters_response_body(ctx) => {
                OutFraming::Length(n)
            }
            _ if http11 => OutFraming::Chunked,
            _ => OutFraming::Close,
        };
        let keep_alive =
            head.keep_alive() && framing != OutFraming::Close && !worker.drain.is_draining();
        let connection: Option<&[u8]> = match (keep_alive, http11) {
            (false, _) => Some(b"close"),
            (true, false) => Some(b"keep-alive"),
            (true, true) => None,
        };
        // The head waits in the write queue until the first write: until then an error can still
        // be answered with its own status (`answer_error` discards the queued head).
        write_response_head(
            client.out.buf(),
            &response,
            &response_overlay,
            framing,
            connection,
        );

        // Phase response_body_filter, inside the pump.
        let leg = Leg {
            direction: Direction::Response,
            decoder: BodyDecoder::new(response.body()),
            framing,
            read_timeout: policy.timeouts.upstream_response,
            write_timeout: policy.timeouts.client_send,
            max_body: None,
            min_rate: 0,
        };
        let end = pump(
            &mut upstream.conn,
            client,
            leg,
            &route.filters,
            &worker.pipes,
            ctx,
            progress,
        )
        .await;
        let end = match end {
            Ok(end) => end,
            Err(e) => break 'phases Err(e),
        };
        if let Some(fill) = ctx.fill.take() {
            let (stored, mut leader) = fill.finish(&worker.response_limits);
            if let Some((key, entry)) = stored {
                if let Some(store) = worker.cache.borrow_mut().as_mut() {
                    store.insert(key, entry);
                    if let Some(leader) = &mut leader {
                        leader.stored();
                    }
                }
            }
            // Those waiting for it look again (and find it).
            drop(leader);
        }
        if response.keep_alive() && end == BodyEnd::Complete {
            worker.upstreams.checkin(upstream);
        }
        Ok(if keep_alive {
            Outcome::KeepAlive
        } else {
            Outcome::Close
        })
    };
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(error) => {
            let routed = Some((route, path.info(head)));
            // A stale stored response that allows it answers for an origin that failed
            // (RFC 5861 stale-if-error).
            let stale = cache_note
                .as_deref()
                .filter(|_| error.side() == Side::Upstream && !progress.response_started)
                .and_then(crate::cache::CacheNote::stale_if_error);
            // Boxed, like the other paths off the common one: their state would otherwise
            // make every request's future larger.
            let answered = match stale {
                Some(entry) => {
                    log_error(&error, ctx.remote_addr);
                    let info = path.info(head);
                    Box::pin(respond_cached(
                        worker,
                        client,
                        (head, route, info),
                        ctx,
                        progress,
                        &entry,
                        STALE_IF_ERROR,
                    ))
                    .await
                }
                None => Err(error),
            };
            match answered {
                Ok(outcome) => outcome,
                Err(error) => {
                    Box::pin(answer_error(
                        worker, client, head, routed, ctx, progress, error,
                    ))
                    .await
                }
            }
        }
    };
    // Phase logging.
    route.filters.logging(ctx);
    let took = ctx.finish();
    route
        .stats
        .request(ctx.status, took, ctx.bytes_received, ctx.bytes_sent);
    let rejected = ctx.notes.as_ref().and_then(|n| n.rejected);
    if let Some(reason) = rejected {
        route.stats.rejected(reason);
    }
    if let Some(consumer) = &ctx.consumer {
        let stats = worker.metrics.consumer(&consumer.name, &route.name);
        stats.request(ctx.status, took, ctx.bytes_received, ctx.bytes_sent);
        if let Some(reason) = rejected {
            stats.rejected(reason);
        }
    }

    if let (Some(server), Some(took)) = (ctx.server, ctx.upstream_time) {
        worker
            .upstreams
            .stats(server)
            .response(ctx.status, Some(took));
    }
    log_request(worker, head, ctx);
    tracing::trace!(
        listener = worker.listeners.get(ctx.listener).map_or("", |l| l.name.as_str()),
        route = %route.name,
        status = ctx.status,
        upstream = ?ctx.upstream_addr,
        attempts = ctx.attempts,
        micros = took.as_micros() as u64,
        "request"
    );
    outcome
}

/// The bytes a `hash:` group hashes for this request; `None` when the request has no such key
/// (then the group balances by power of two choices).
fn hash_key<'h>(
    on: &HashKey,
    head: &'h RequestHead,
    ctx: &RequestContext,
) -> Option<Cow<'h, [u8]>> {
    match on {
        HashKey::ClientIp => Some(Cow::Owned(ip_bytes(ctx.client_ip))),
        HashKey::Header(name) => head.field(name).map(Cow::Borrowed),
        HashKey::Cookie(name) => head.field("cookie").and_then(|cookies| {
            cookies.split(|&b| b == b';').find_map(|pair| {
                let pair = pair.trim_ascii();
                let value = pair.strip_prefix(name.as_bytes())?.strip_prefix(b"=")?;
                Some(Cow::Borrowed(value))
            })
        }),
        HashKey::Path => Some(Cow::Borrowed(head.path())),
    }
}

/// An address as the bytes a hash takes (IPv4 as 4, IPv6 as 16).
pub fn ip_bytes(ip: std::net::IpAddr) -> Vec<u8> {
    match ip {
        std::net::IpAddr::V4(v4) => v4.octets().to_vec(),
        std::net::IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// The access log's line for a finished request.
fn log_request<D: Dialer>(worker: &Worker<D>, head: &RequestHead, ctx: &RequestContext) {
    if let Some(log) = &worker.access_log {
        let listener = worker
            .listeners
            .get(ctx.listener)
            .map_or("", |l| l.name.as_str());
        log.log(head, ctx, listener);
    }
}

/// Phase `route`: normalizes the path and finds the first route that matches.
fn route<'w, 'h, D: Dialer>(
    worker: &'w Worker<D>,
    head: &'h RequestHead,
) -> Result<(&'w RouteEntry, RequestPath<'h>), ProxyError> {
    let target = head.target();
    let query = target
        .iter()
        .position(|&b| b == b'?')
        .map_or(&target[target.len()..], |at| &target[at..]);
    let raw = head.path();
    let path = match normalize_path(raw, worker.http.path).map_err(ProxyError::BadRequest)? {
        Some(normal) => Cow::Owned(normal),
        None => Cow::Borrowed(raw),
    };
    let query_fields = RouteQuery {
        host: head.host(),
        path: &path,
        method: head.method_bytes(),
        header: |name: &str| head.field(name),
    };
    let route = worker
        .routes
        .find(&query_fields)
        .ok_or(ProxyError::NoRoute)?;
    Ok((route, RequestPath { path, query }))
}

/// Turns `error` into the response the client gets, through the route's response filters
/// when there is a route, and says what happens to the connection.
async fn answer_error<C: Stream, D: Dialer>(
    worker: &Worker<D>,
    client: &mut Conn<C>,
    head: &RequestHead,
    routed: Option<(&RouteEntry, RequestInfo<'_>)>,
    ctx: &mut RequestContext,
    progress: &Progress,
    error: ProxyError,
) -> Outcome<D::Stream> {
    log_error(&error, ctx.remote_addr);
    if progress.response_started {
        return Outcome::Abort;
    }
    // A response head that was queued but never written is replaced by the error.
    client.out.buf().clear();
    let Some(response) = error.response() else {
        return Outcome::Abort;
    };
    // The connection survives an error only when the request was read to its end, the client
    // wants to keep it, and the fault was not the client's.
    let keep = progress.request_done
        && head.keep_alive()
        && matches!(error.side(), Side::Upstream | Side::Internal)
        && !worker.drain.is_draining();
    if respond_locally(worker, client, head, routed, ctx, &response, keep)
        .await
        .is_err()
    {
        return Outcome::Abort;
    }
    if keep {
        Outcome::KeepAlive
    } else {
        Outcome::Linger
    }
}

/// Sends a response ringwall made itself, after the route's response filters.
async fn respond_locally<C: Stream, D: Dialer>(
    worker: &Worker<D>,
    client: &mut Conn<C>,
    head: &RequestHead,
    routed: Option<(&RouteEntry, RequestInfo<'_>)>,
    ctx: &mut RequestContext,
    response: &LocalResponse,
    keep: bool,
) -> Result<(), ProxyError> {
    let mut overlay = worker.overlay();
    let send_timeout = match routed {
        Some((route, info)) => {
            route.filters.response_filter(
                &mut Response {
                    request: info,
                    source: ResponseSource::Local(response),
                    overlay: &mut overlay,
                },
                ctx,
            );
            route.policy.timeouts.client_send
        }
        None => worker.timeouts.client_send,
    };
    let connection: &[u8] = if keep { b"keep-alive" } else { b"close" };
    let head_only = head.method() == Method::Head;
    write_local_response(client.out.buf(), response, &overlay, connection, head_only);
    ctx.status = response.status;
    if !head_only {
        ctx.bytes_sent += response.body.len() as u64;
    }
    client
        .flush(send_timeout)
        .await
        .map_err(client_send_failure)
}

/// What is sent upstream for one attempt.
#[derive(Clone, Copy)]
struct Forwarded<'a> {
    head: &'a RequestHead,
    overlay: &'a HeadOverlay,
    host_rewrite: Option<&'a str>,
    route: &'a RouteEntry,
    server: usize,
    /// The request body, read whole beforehand (so that a retry sends it again).
    body: Option<&'a Bytes>,
    /// How long this try waits for the response head.
    response_timeout: Duration,
}

/// The wait before a hedged request's second try: the route's percentile of its recent
/// response times, within its bounds; `None` when the route does not hedge, the request may
/// not be sent twice (`eligible`), or too few responses were seen yet (20).
fn hedge_delay(route: &RouteEntry, eligible: bool, ctx: &RequestContext) -> Option<Duration> {
    let (Some(policy), Some(latencies), true) = (&route.policy.hedge, &route.latencies, eligible)
    else {
        return None;
    };
    let delay = latencies
        .borrow_mut()
        .percentile(policy.percentile, 20, ctx.started)?;
    Some(delay.clamp(policy.min_delay, policy.max_delay))
}

/// Where a hedged request's second try may go, and when.
struct Hedging {
    group: usize,
    start: usize,
    offset: usize,
    delay: Duration,
}

/// A hedged request's first try, on `first.server`: when no response head has come within the
/// delay, the same request goes to the next server with room too (within the retry budget),
/// and the first response head of the two is used; the other try is dropped, its connection
/// closed. An error of one waits for the other. Returns the outcome, and the second try's
/// server with its outstanding count when that one's answer is used. Only for idempotent
/// requests without a body: neither try touches the client connection.
async fn hedged<'w, D: Dialer>(
    worker: &'w Worker<D>,
    first: &Forwarded<'_>,
    hedging: &Hedging,
) -> (
    Result<(UpstreamConn<D::Stream>, ResponseHead), ProxyError>,
    Option<(usize, super::upstream::InFlight<'w>)>,
) {
    let upstreams = &worker.upstreams;
    let mut one = std::pin::pin!(bodiless_try(worker, first));
    if let Ok(outcome) = monoio::time::timeout(hedging.delay, &mut one).await {
        return (outcome, None);
    }
    let Some(server) = upstreams.hedge_server(hedging.group, hedging.start, hedging.offset) else {
        return (one.await, None);
    };
    let guard = upstreams.begin(server);
    let second = Forwarded { server, ..*first };
    let mut two = std::pin::pin!(bodiless_try(worker, &second));
    monoio::select! {
        outcome = &mut one => match outcome {
            Ok(answer) => (Ok(answer), None),
            Err(_) => (two.await, Some((server, guard))),
        },
        outcome = &mut two => match outcome {
            Ok(answer) => (Ok(answer), Some((server, guard))),
            Err(_) => (one.await, None),
        },
    }
}

/// One try of a request without a body that does not touch the client: the head sent, the
/// final response head read (informational responses are not relayed).
async fn bodiless_try<D: Dialer>(
    worker: &Worker<D>,
    sent: &Forwarded<'_>,
) -> Result<(UpstreamConn<D::Stream>, ResponseHead), ProxyError> {
    let timeouts = &sent.route.policy.timeouts;
    let mut upstream = worker
        .upstreams
        .checkout(sent.server, timeouts.upstream_connect)
        .await?;
    queue_request_head(worker, &mut upstream, sent, OutFraming::None);
    upstream
        .conn
        .flush(timeouts.upstream_response)
        .await
        .map_err(upstream_failure)?;
    loop {
        let parsed = parse_response(
            &mut upstream.conn.buf,
            &worker.response_limits,
            sent.head.method(),
        )
        .map_err(ProxyError::UpstreamInvalid)?;
        match parsed {
            Some(response) if response.status() == 101 => {
                return Err(ProxyError::UpstreamUnsupported(
                    "101 to a request that asked for no upgrade",
                ))
            }
            Some(response) if response.is_informational() => {}
            Some(response) => return Ok((upstream, response)),
            // As in `read_response_head`, written out: a shared `async fn` for these lines
            // cost the common path about 100 instructions a request (callgrind).
            None => {
                upstream
                    .conn
                    .read(sent.response_timeout, ReadSize::Body)
                    .await
                    .map_err(upstream_failure)?;
            }
        }
    }
}

/// Queues the request head for `sent.server` on `upstream` (the Host the route asks for, else
/// the client's, else the server's address for an HTTP/1.0 request without one).
fn queue_request_head<D: Dialer>(
    worker: &Worker<D>,
    upstream: &mut UpstreamConn<D::Stream>,
    sent: &Forwarded<'_>,
    framing: OutFraming,
) {
    let head = sent.head;
    let host_fallback;
    let host = if let Some(host) = sent.host_rewrite.map(str::as_bytes).or(head.host()) {
        host
    } else {
        host_fallback = worker.upstreams.addr(sent.server).to_string();
        host_fallback.as_bytes()
    };
    write_request_head(
        upstream.conn.out.buf(),
        head,
        sent.overlay,
        &RequestFraming {
            host,
            framing,
            upgrade: head.upgrade(),
        },
    );
}

/// Reads a request body of `length` bytes whole, within the route's client body timeout (all
/// of it), answering `Expect: 100-continue` first.
async fn buffer_body<C: Stream>(
    client: &mut Conn<C>,
    head: &RequestHead,
    length: u64,
    timeouts: &RouteTimeouts,
    ctx: &mut RequestContext,
    progress: &mut Progress,
) -> Result<Bytes, ProxyError> {
    if head.expect_continue() {
        answer_continue(client, timeouts).await?;
    }
    let length = usize::try_from(length).map_err(|_| ProxyError::BodyTooLarge)?;
    let deadline = Instant::now() + timeouts.client_body;
    while client.buf.len() < length {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ProxyError::BodyTimeout);
        }
        client
            .read(left, ReadSize::Body)
            .await
            .map_err(|f| client_failure(f, ProxyError::BodyTimeout))?;
    }
    progress.request_done = true;
    ctx.bytes_received += length as u64;
    Ok(client.buf.split_to(length).freeze())
}

/// Sends the head and body upstream and waits for the response head.
///
/// A pooled connection that the origin closed while it sat idle fails on first use; when no
/// byte of the request body has been taken from the client yet, the request is sent again once
/// on a new connection.
async fn forward<C: Stream, D: Dialer>(
    worker: &Worker<D>,
    client: &mut Conn<C>,
    sent: &Forwarded<'_>,
    ctx: &mut RequestContext,
    progress: &mut Progress,
) -> Result<(UpstreamConn<D::Stream>, ResponseHead), ProxyError> {
    let head = sent.head;
    let timeouts = &sent.route.policy.timeouts;
    let framing = match (head.body(), sent.body) {
        (_, Some(body)) => OutFraming::Length(body.len() as u64),
        (BodyKind::Empty, None) => OutFraming::None,
        (BodyKind::Length(n), None) if !sent.route.filters.filters_request_body() => {
            OutFraming::Length(n)
        }
        _ => OutFraming::Chunked,
    };
    let mut fresh = false;
    loop {
        let mut upstream = if fresh {
            worker
                .upstreams
                .connect(sent.server, timeouts.upstream_connect)
                .await?
        } else {
            worker
                .upstreams
                .checkout(sent.server, timeouts.upstream_connect)
                .await?
        };
        queue_request_head(worker, &mut upstream, sent, framing);
        let sent_all = if let Some(body) = sent.body {
            // Boxed: only requests with a buffered body take this path.
            Box::pin(send_buffered(&mut upstream.conn, body, timeouts)).await
        } else if head.body() == BodyKind::Empty {
            upstream
                .conn
                .flush(timeouts.upstream_response)
                .await
                .map_err(upstream_failure)
        } else {
            // Boxed: only requests with a streamed body take this path.
            Box::pin(stream_body(
                worker,
                client,
                &mut upstream.conn,
                sent,
                framing,
                ctx,
                progress,
            ))
            .await
        };
        let result = match sent_all {
            Ok(()) => read_response_head(worker, client, head, &mut upstream, sent).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(response) => {
                ctx.upstream_time = Some(ctx.started.elapsed());
                return Ok((upstream, response));
            }
            Err(ProxyError::UpstreamClosed | ProxyError::UpstreamIo(_))
                if upstream.reused
                    && !fresh
                    && (head.body() == BodyKind::Empty || sent.body.is_some()) =>
            {
                fresh = true;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Streams the request body from the client to the origin (phase `request_body_filter`
/// inside the pump), answering `Expect: 100-continue` first.
async fn stream_body<C: Stream, D: Dialer>(
    worker: &Worker<D>,
    client: &mut Conn<C>,
    upstream: &mut Conn<D::Stream>,
    sent: &Forwarded<'_>,
    framing: OutFraming,
    ctx: &mut RequestContext,
    progress: &mut Progress,
) -> Result<(), ProxyError> {
    let (head, policy) = (sent.head, &sent.route.policy);
    if head.expect_continue() {
        answer_continue(client, &policy.timeouts).await?;
    }
    let leg = Leg {
        direction: Direction::Request,
        decoder: BodyDecoder::new(head.body()),
        framing,
        read_timeout: policy.timeouts.client_body,
        write_timeout: policy.timeouts.upstream_response,
        max_body: policy.max_body,
        min_rate: policy.min_body_rate,
    };
    pump(
        client,
        upstream,
        leg,
        &sent.route.filters,
        &worker.pipes,
        ctx,
        progress,
    )
    .await
    .map(|_| ())
}

/// Sends the request head queued on `upstream` and the buffered `body` after it.
async fn send_buffered<S: Stream>(
    upstream: &mut Conn<S>,
    body: &Bytes,
    timeouts: &RouteTimeouts,
) -> Result<(), ProxyError> {
    upstream
        .push(body.clone(), timeouts.upstream_response)
        .await
        .map_err(upstream_failure)?;
    upstream
        .flush(timeouts.upstream_response)
        .await
        .map_err(upstream_failure)
}

/// Tells a client that waits (`Expect: 100-continue`) to send its body.
async fn answer_continue<C: Stream>(
    client: &mut Conn<C>,
    timeouts: &RouteTimeouts,
) -> Result<(), ProxyError> {
    client
        .out
        .buf()
        .extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
    client
        .flush(timeouts.client_send)
        .await
        .map_err(client_send_failure)
}

/// Phase `read_response`: the final response head, relaying informational (1xx) responses.
/// A `101` is final only when the request asked for that upgrade.
async fn read_response_head<C: Stream, D: Dialer>(
    worker: &Worker<D>,
    client: &mut Conn<C>,
    head: &RequestHead,
    upstream: &mut UpstreamConn<D::Stream>,
    sent: &Forwarded<'_>,
) -> Result<ResponseHead, ProxyError> {
    let timeouts = &sent.route.policy.timeouts;
    loop {
        let parsed = parse_response(
            &mut upstream.conn.buf,
            &worker.response_limits,
            head.method(),
        )
        .map_err(ProxyError::UpstreamInvalid)?;
        match parsed {
            Some(response) if response.status() == 101 => {
                return match (head.upgrade(), response.upgrade()) {
                    (Some(_), Some(_)) => Ok(response),
                    (None, _) => Err(ProxyError::UpstreamUnsupported(
                        "101 to a request that asked for no upgrade",
                    )),
                    (Some(_), None) => Err(ProxyError::UpstreamUnsupported(
                        "101 without an Upgrade field",
                    )),
                };
            }
            Some(response) if response.is_informational() => {
                // ringwall answers Expect: 100-continue itself; other 1xx (103 Early Hints)
                // go to HTTP/1.1 clients as they are.
                if response.status() != 100 && head.version() == Version::Http11 {
                    write_response_head(
                        client.out.buf(),
                        &response,
                        &HeadOverlay::default(),
                        OutFraming::None,
                        None,
                    );
                    client
                        .flush(timeouts.client_send)
                        .await
                        .map_err(client_send_failure)?;
                }
            }
            Some(response) => return Ok(response),
            None => {
                upstream
                    .conn
                    .read(sent.response_timeout, ReadSize::Body)
                    .await
                    .map_err(upstream_failure)?;
            }
        }
    }
}

pub(super) fn upstream_failure(failure: IoFailure) -> ProxyError {
    match failure {
        IoFailure::Timeout => ProxyError::UpstreamTimeout,
        IoFailure::Closed => ProxyError::UpstreamClosed,
        IoFailure::Io(e) => ProxyError::UpstreamIo(e),
    }
}

/// A failed write to the client.
pub(super) fn client_send_failure(failure: IoFailure) -> ProxyError {
    client_failure(failure, ProxyError::ClientSendTimeout)
}

/// A failed read or write on the client connection; `on_timeout` says which wait ran out.
pub(super) fn client_failure(failure: IoFailure, on_timeout: ProxyError) -> ProxyError {
    match failure {
        IoFailure::Timeout => on_timeout,
        IoFailure::Closed => ProxyError::ClientClosed,
        IoFailure::Io(e) => ProxyError::ClientIo(e),
    }
}

/// What the cache made of a request.
enum CacheStep {
    /// Answer with this fresh entry.
    Serve(Arc<crate::cache::Entry>),
    /// Go to the origin; what the cache noted, when the response may be stored or the stored
    /// one revalidated.
    Forward(Option<Box<crate::cache::CacheNote>>),
    /// An unsafe method: what is stored under this key goes when it succeeds.
    Invalidate(Vec<u8>),
    /// `only-if-cached` and nothing fresh: 504.
    Refuse,
    /// Another request is fetching the URL: wait for it, then look again.
    Wait(std::rc::Rc<crate::cache::Event>),
    /// A request on another worker is fetching the URL (this key).
    WaitRemote(Vec<u8>),
    /// Answer with this stale entry (stale-while-revalidate), and refresh it in the
    /// background when this request is the one to (no refresh of it is running yet).
    ServeStale(Arc<crate::cache::Entry>, Option<crate::cache::Leader>),
}

/// Phase `cache_lookup`: the route caches; looks the request up in the worker's store and,
/// for a stale entry, adds its validators to the request sent upstream (unless the client
/// made the request conditional itself).
fn cache_lookup<D: Dialer>(
    worker: &Worker<D>,
    head: &RequestHead,
    path: &RequestPath<'_>,
    route: &Arc<crate::config::RouteCache>,
    overlay: &mut HeadOverlay,
    may_wait: bool,
) -> CacheStep {
    use crate::cache::{self, CacheNote, CacheRequest, Lookup};
    let mut cache = worker.cache.borrow_mut();
    let Some(store) = cache.as_mut() else {
        return CacheStep::Forward(None);
    };
    let key = cache::key(head, &path.path, path.query, route);
    match head.method() {
        // An upgrade (WebSocket) is no cacheable exchange.
        Method::Get | Method::Head if head.upgrade().is_none() => {}
        Method::Get | Method::Head | Method::Options | Method::Trace => {
            return CacheStep::Forward(None)
        }
        _ => return CacheStep::Invalidate(key),
    }
    let Some(request) = CacheRequest::new(head, &path.path, path.query) else {
        return CacheStep::Forward(None);
    };
    let note = |request, stale: Option<(Arc<cache::Entry>, bool)>, status, leader| {
        let revalidating = stale.as_ref().is_some_and(|(_, v)| *v);
        CacheStep::Forward(Some(Box::new(CacheNote {
            key: key.clone(),
            route_cache: Some(route.clone()),
            request,
            stale: stale.map(|(entry, _)| entry),
            revalidating,
            status,
            leader,
        })))
    };
    if cache::bypassed(head, route) {
        store.stats.bypasses += 1;
        return CacheStep::Forward(None);
    }
    if request.is_conditional() {
        // The client's validators are for its own copy: a fresh stored response answers an
        // If-None-Match (200 or 304); anything else the origin answers.
        if request.only_none_match() {
            if let Lookup::Fresh(entry) = store.lookup(&key, &request, std::time::SystemTime::now())
            {
                store.stats.hits += 1;
                return CacheStep::Serve(entry);
            }
        }
        store.stats.misses += 1;
        return note(request, None, "fwd=request", None);
    }
    let only_if_cached = request.only_if_cached();
    match store.lookup(&key, &request, std::time::SystemTime::now()) {
        Lookup::Fresh(entry) => {
            store.stats.hits += 1;
            if !may_wait {
                store.stats.coalesced += 1;
            }
            CacheStep::Serve(entry)
        }
        _ if only_if_cached => CacheStep::Refuse,
        Lookup::Stale(entry)
            if request.allows_stale()
                && entry.may_serve_while_revalidating(std::time::SystemTime::now()) =>
        {
            store.stats.hits += 1;
            // One refresh at a time (and none for a HEAD: it is refreshed by a GET).
            let leader = match head.method() {
                Method::Get => match cache::claim(&worker.pending, &key) {
                    cache::Claim::Leader(leader) => Some(leader),
                    _ => None,
                },
                _ => None,
            };
            CacheStep::ServeStale(entry, leader)
        }
        lookup => {
            // The first request for a URL with nothing stored fetches it; the others wait
            // for it (a stale one is revalidated by each: its answer is usually a 304 at once).
            let leader = match &lookup {
                Lookup::Miss => match cache::claim(&worker.pending, &key) {
                    cache::Claim::Leader(leader) => Some(leader),
                    cache::Claim::Local(event) if may_wait => return CacheStep::Wait(event),
                    cache::Claim::Remote if may_wait => return CacheStep::WaitRemote(key),
                    _ => None,
                },
                _ => None,
            };
            store.stats.misses += 1;
            cache_forward(lookup, request, leader, overlay, note)
        }
    }
}

/// A lookup that goes to the origin: a stale entry's validators sent along.
fn cache_forward(
    lookup: crate::cache::Lookup,
    request: crate::cache::CacheRequest,
    leader: Option<crate::cache::Leader>,
    overlay: &mut HeadOverlay,
    note: impl FnOnce(
        crate::cache::CacheRequest,
        Option<(Arc<crate::cache::Entry>, bool)>,
        &'static str,
        Option<crate::cache::Leader>,
    ) -> CacheStep,
) -> CacheStep {
    if let crate::cache::Lookup::Stale(entry) = lookup {
        let validators = entry.validators();
        let revalidating = validators.is_some();
        if let Some((name, value)) = validators {
            overlay.set(crate::http1::FieldName::Static(name), value);
        }
        return note(request, Some((entry, revalidating)), "fwd=stale", leader);
    }
    // The whole response is fetched, to be stored (a Range is answered from it once stored;
    // this first one gets all of it, as nginx's cache does).
    overlay.remove(b"range");
    overlay.remove(b"if-range");
    note(request, None, "fwd=uri-miss", leader)
}

/// Waits while another worker fetches `key`: looks in this worker's store every millisecond
/// until that fetch's share brings the entry, or the fetch ended with nothing stored (or, once
/// stored, the share has had [`REMOTE_SHARE_GRACE`] to come), or `deadline`.
async fn wait_for_remote_fetch<D: Dialer>(worker: &Worker<D>, key: &[u8], deadline: Instant) {
    let mut grace = None;
    loop {
        monoio::time::sleep(Duration::from_millis(1)).await;
        let found = worker
            .cache
            .borrow()
            .as_ref()
            .is_some_and(|store| store.contains(key));
        let now = Instant::now();
        let state = crate::cache::remote_fetch(key);
        if state == crate::cache::RemoteFetch::Stored && grace.is_none() {
            grace = Some(now + REMOTE_SHARE_GRACE);
        }
        if found
            || now >= deadline
            || state == crate::cache::RemoteFetch::Over
            || grace.is_some_and(|g| now >= g)
        {
            return;
        }
    }
}

/// How long a request waiting for another worker's fetch, once that one stored its response,
/// waits for the share to bring it (it comes within a tick; this is room for a loaded machine).
const REMOTE_SHARE_GRACE: Duration = Duration::from_secs(1);

/// `Cache-Status` of a stale response answering for an origin that failed.
const STALE_IF_ERROR: &str = "fwd=stale; detail=stale-if-error";

/// A stored entry that answers instead of the origin's `response`: the one a `304` to its
/// revalidation updated (and stored again), or a stale one that may answer for a `5xx`
/// (stale-if-error); with its `Cache-Status`.
fn answer_from_cache<D: Dialer>(
    worker: &Worker<D>,
    note: &crate::cache::CacheNote,
    response: &ResponseHead,
) -> Option<(Arc<crate::cache::Entry>, &'static str)> {
    if matches!(response.status(), 500 | 502 | 503 | 504) {
        return note.stale_if_error().map(|entry| (entry, STALE_IF_ERROR));
    }
    revalidate(worker, note, response).map(|entry| (entry, "fwd=stale; fwd-status=304"))
}

/// The stored entry updated by the origin's `304` to its revalidation (and stored again);
/// `None` when this was no revalidation, or the `304` selects no stored response.
fn revalidate<D: Dialer>(
    worker: &Worker<D>,
    note: &crate::cache::CacheNote,
    response: &ResponseHead,
) -> Option<Arc<crate::cache::Entry>> {
    let stale = note
        .stale
        .as_ref()
        .filter(|_| response.status() == 304 && note.revalidating)?;
    let now = std::time::SystemTime::now();
    let updated =
        crate::cache::revalidated(stale, &note.request, response, &worker.response_limits, now)?;
    if let Some(store) = worker.cache.borrow_mut().as_mut() {
        store.stats.revalidated += 1;
        store.insert(note.key.clone(), updated.clone());
    }
    Some(updated)
}

/// Starts gathering `response` for the cache when it may be stored; returns its
/// `Cache-Status` parameters.
fn begin_fill<D: Dialer>(
    worker: &Worker<D>,
    note: Box<crate::cache::CacheNote>,
    head: &RequestHead,
    response: &ResponseHead,
    ctx: &mut RequestContext,
) -> &'static str {
    let Some(route) = &note.route_cache else {
        return note.status;
    };
    let now = std::time::SystemTime::now();
    let max_entry = match worker.cache.borrow().as_ref() {
        Some(store) => store.max_entry,
        None => return note.status,
    };
    // A HEAD's response has no body to store; a response the client's validators made
    // (304, 412) describes the client's copy.
    if head.method() != Method::Get || response.status() == 304 {
        return note.status;
    }
    let Some(policy) = crate::cache::storable(&note.request, response, route, now) else {
        return note.status;
    };
    if let BodyKind::Length(n) = response.body() {
        if n > max_entry as u64 {
            return note.status;
        }
    }
    let status = match note.status {
        "fwd=stale" => "fwd=stale; stored",
        "fwd=request" => "fwd=request; stored",
        _ => "fwd=uri-miss; stored",
    };
    let note = *note;
    ctx.fill = Some(Box::new(crate::cache::Fill::new(
        note.key,
        note.request,
        policy,
        response.clone(),
        max_entry,
        note.leader,
    )));
    status
}

/// An unsafe method succeeded: what is stored for its URL goes, and for the URLs of its
/// `Location` and `Content-Location` on the same host (RFC 9111 §4.4).
fn invalidate<D: Dialer>(
    worker: &Worker<D>,
    key: &[u8],
    head: &RequestHead,
    response: &ResponseHead,
) {
    let mut cache = worker.cache.borrow_mut();
    let Some(store) = cache.as_mut() else {
        return;
    };
    store.invalidate(key);
    let Some(host) = head.host() else {
        return;
    };
    for name in ["location", "content-location"] {
        let Some(value) = response.field(name) else {
            continue;
        };
        let target = if value.starts_with(b"/") {
            Some(value)
        } else {
            // Absolute: only on the same host.
            value
                .strip_prefix(b"http://")
                .or_else(|| value.strip_prefix(b"https://"))
                .and_then(|rest| {
                    let at = rest.iter().position(|&b| b == b'/').unwrap_or(rest.len());
                    let (authority, path) = rest.split_at(at);
                    crate::config::strip_port(authority)
                        .eq_ignore_ascii_case(crate::config::strip_port(host))
                        .then_some(if path.is_empty() { &b"/"[..] } else { path })
                })
        };
        if let Some(target) = target {
            store.invalidate(&crate::cache::url_key(host, target));
        }
    }
}

/// Answers from a stored `entry`: through the route's response filters (which see it as the
/// origin's response), with its `Age` and `Cache-Status`; its body as stored, or through the
/// body filters when one changes it (compression).
async fn respond_cached<C: Stream, D: Dialer>(
    worker: &Worker<D>,
    client: &mut Conn<C>,
    (head, route, info): (&RequestHead, &RouteEntry, RequestInfo<'_>),
    ctx: &mut RequestContext,
    progress: &mut Progress,
    entry: &crate::cache::Entry,
    status: &'static str,
) -> Result<Outcome<D::Stream>, ProxyError> {
    let now = std::time::SystemTime::now();
    // A matching If-None-Match gets a 304 (only a fresh entry is served to one); a Range
    // request its part of the stored body.
    let limits = &worker.response_limits;
    let ranged = crate::cache::not_modified(entry, head, limits)
        .map(|not_modified| (not_modified, Bytes::new()))
        .or_else(|| crate::cache::ranged(entry, head, limits));
    let (shown, body) = match &ranged {
        Some((partial, body)) => (partial, body.clone()),
        None => (&entry.head, entry.body.clone()),
    };
    let mut overlay = worker.overlay();
    route.filters.response_filter(
        &mut Response {
            request: info,
            source: ResponseSource::Upstream(shown),
            overlay: &mut overlay,
        },
        ctx,
    );
    overlay.set_with(b"Age", |out| {
        out.extend_from_slice(entry.age(now).to_string().as_bytes());
    });
    overlay.add_with(b"Cache-Status", |out| {
        out.extend_from_slice(b"ringwall; ");
        out.extend_from_slice(status.as_bytes());
        if let Some(rest) = status.strip_prefix("hit") {
            out.truncate(out.len() - rest.len());
            out.extend_from_slice(format!("; ttl={}", entry.ttl(now)).as_bytes());
            out.extend_from_slice(rest.as_bytes());
        }
    });
    ctx.status = shown.status();
    let http11 = head.version() == Version::Http11;
    let head_only = head.method() == Method::Head || shown.status() == 304;
    // A compressed full response: the entry's variant in that encoding, made once.
    let body = match (&ranged, route.filters.has_response_body_filters()) {
        (None, false) if !head_only => match ctx.encoder.take() {
            Some(encoder) => entry.encoded(*encoder),
            None => body,
        },
        _ => body,
    };
    let filtered = !head_only && route.filters.filters_response_body(ctx);
    let framing = match (head_only, filtered, http11) {
        (true, _, _) => OutFraming::None,
        (false, false, _) => OutFraming::Length(body.len() as u64),
        (false, true, true) => OutFraming::Chunked,
        (false, true, false) => OutFraming::Close,
    };
    let keep_alive = progress.request_done
        && head.keep_alive()
        && framing != OutFraming::Close
        && !worker.drain.is_draining();
    let connection: Option<&[u8]> = match (keep_alive, http11) {
        (false, _) => Some(b"close"),
        (true, false) => Some(b"keep-alive"),
        (true, true) => None,
    };
    write_response_head(client.out.buf(), shown, &overlay, framing, connection);
    let send = route.policy.timeouts.client_send;
    if !head_only {
        let mut pieces = vec![Some(body)];
        if filtered {
            route
                .filters
                .response_body_filter(&mut pieces[0], false, ctx);
            let mut last = None;
            route.filters.response_body_filter(&mut last, true, ctx);
            pieces.push(last);
        }
        for piece in pieces.into_iter().flatten().filter(|p| !p.is_empty()) {
            ctx.bytes_sent += piece.len() as u64;
            if framing == OutFraming::Chunked {
                crate::http1::write_chunk_header(piece.len(), client.out.buf());
            }
            progress.response_started = true;
            client
                .push(piece, send)
                .await
                .map_err(client_send_failure)?;
            if framing == OutFraming::Chunked {
                crate::http1::write_chunk_end(client.out.buf());
            }
        }
        if framing == OutFraming::Chunked {
            crate::http1::write_last_chunk(None, client.out.buf());
        }
    }
    progress.response_started = true;
    client.flush(send).await.map_err(client_send_failure)?;
    Ok(if keep_alive {
        Outcome::KeepAlive
    } else {
        Outcome::Close
    })
}

/// What a refresh in the background needs of the request that found the entry stale.
struct Refresh {
    head: RequestHead,
    entry: Arc<crate::cache::Entry>,
    /// Held until the refresh is over: no second one starts meanwhile.
    leader: crate::cache::Leader,
    listener: usize,
    scheme: &'static str,
    remote: SocketAddr,
}

/// Revalidates (or fetches again) a stale entry that answered a request at once
/// (stale-while-revalidate), on the worker's newest generation: the request routed again,
/// its validators sent, a `304` merged into the entry or a new storable response stored.
/// Any failure leaves the stale entry as it is.
async fn refresh_in_background<D: Dialer>(worker: Rc<Worker<D>>, refresh: Refresh) {
    let Refresh {
        head,
        entry,
        leader: _leader,
        listener,
        scheme,
        remote,
    } = refresh;
    let Ok((route, path)) = self::route(&worker, &head) else {
        return;
    };
    let (
        RouteAction::Forward {
            upstream: group,
            host_rewrite,
        },
        Some(route_cache),
    ) = (&route.action, &route.policy.cache)
    else {
        return;
    };
    let Some(request) = crate::cache::CacheRequest::new(&head, &path.path, path.query) else {
        return;
    };
    let upstreams = &worker.upstreams;
    let now = Instant::now();
    let Some((_, server)) = upstreams
        .pick(*group, None, now)
        .and_then(|start| upstreams.next_server(*group, start, None))
    else {
        return;
    };
    let _in_flight = upstreams.begin(server);
    let mut overlay = worker.overlay();
    if let Cow::Owned(normal) = &path.path {
        let mut target = BytesMut::with_capacity(normal.len() + path.query.len());
        target.extend_from_slice(normal);
        target.extend_from_slice(path.query);
        overlay.set_target(target.freeze());
    }
    let mut ctx = RequestContext::new(listener, scheme, remote);
    route.filters.upstream_request_filter(
        &mut Request {
            head: &head,
            path: &path.path,
            query: path.query,
            overlay: &mut overlay,
        },
        &mut ctx,
    );
    if let Some((name, value)) = entry.validators() {
        overlay.set(crate::http1::FieldName::Static(name), value);
    }
    let sent = Forwarded {
        head: &head,
        overlay: &overlay,
        host_rewrite: host_rewrite.as_deref(),
        route,
        server,
        body: None,
        response_timeout: route.policy.timeouts.upstream_response,
    };
    let Ok((mut upstream, response)) = bodiless_try(&worker, &sent).await else {
        tracing::debug!(%remote, "a cache refresh in the background failed");
        return;
    };
    let key = crate::cache::key(&head, &path.path, path.query, route_cache);
    let limits = &worker.response_limits;
    let stamp = std::time::SystemTime::now();
    let fresh = if response.status() == 304 {
        crate::cache::revalidated(&entry, &request, &response, limits, stamp)
    } else {
        let max_entry = worker.cache.borrow().as_ref().map_or(0, |s| s.max_entry);
        match crate::cache::storable(&request, &response, route_cache, stamp) {
            Some(policy) => read_whole_body(&mut upstream, &response, max_entry, route)
                .await
                .and_then(|body| crate::cache::entry(&request, &response, policy, body, limits)),
            None => None,
        }
    };
    if let Some(fresh) = fresh {
        if let Some(store) = worker.cache.borrow_mut().as_mut() {
            store.insert(key, fresh);
        }
        if response.keep_alive() && upstream.conn.buf.is_empty() {
            worker.upstreams.checkin(upstream);
        }
    }
}

/// The whole body of `response` read off `upstream`, when it is at most `max` bytes.
async fn read_whole_body<S: Stream>(
    upstream: &mut UpstreamConn<S>,
    response: &ResponseHead,
    max: usize,
    route: &RouteEntry,
) -> Option<Bytes> {
    let mut decoder = BodyDecoder::new(response.body());
    let mut body = BytesMut::new();
    loop {
        match decoder.decode(&mut upstream.conn.buf).ok()? {
            crate::http1::Decoded::Data(data) => {
                if body.len() + data.len() > max {
                    return None;
                }
                body.extend_from_slice(&data);
            }
            crate::http1::Decoded::Trailers(_) => {}
            crate::http1::Decoded::End => return Some(body.freeze()),
            crate::http1::Decoded::NeedMore => {
                match upstream
                    .conn
                    .read(route.policy.timeouts.upstream_response, ReadSize::Body)
                    .await
                {
                    Ok(_) => {}
                    Err(IoFailure::Closed) => {
                        decoder.eof().ok()?;
                        return Some(body.freeze());
                    }
                    Err(_) => return None,
                }
            }
        }
    }
}
