//! The request path, one named phase at a time.
//!
//! A client connection is served by [`serve`], which loops over requests:
//!
//! ```text
//! accept ─► read_head ─► route ─► pick_upstream ─► forward_request ─► read_response ─► respond ─► log
//!  (engine)     │           │            │                │                 │              │
//!               └── 400/408/414/431/505  └── 404          └── 502/504       └── 502/504    └── keep-alive: next request
//! ```
//!
//! Every failure becomes a [`ProxyError`]; [`serve`] alone turns it into a response (when the
//! client can still get one) and decides whether the connection survives. Bodies stream in both
//! directions through fixed-size buffers: a body of any size costs a few buffers of memory.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use monoio::io::AsyncWriteRent;
use monoio::net::TcpStream;

use super::error::{ProxyError, Side};
use super::forward::{write_request_head, write_response_head, OutFraming, RequestRewrite};
use super::router::{RouteEntry, RouteQuery};
use super::transport::{read_some, IoFailure, ReadSize, WriteQueue};
use super::upstream::UpstreamConn;
use super::Worker;
use crate::http1::{
    parse_request, parse_response, write_chunk_end, write_chunk_header, write_last_chunk,
    BodyDecoder, BodyKind, Decoded, RequestHead, ResponseHead, Version,
};

/// The read buffer a client connection starts with, and goes back to when it is idle: enough
/// for most request heads, small enough that idle keep-alive connections cost little.
const CLIENT_BUF: usize = 1024;
/// A connection's buffers that grew past this during a request are replaced when it goes idle.
const IDLE_BUF_LIMIT: usize = 4 * 1024;
/// How long a refused client may keep sending before its connection is closed for good.
const LINGER_TIME: Duration = Duration::from_secs(2);
/// A request body is not held to the minimum rate during its first seconds.
const BODY_RATE_GRACE: Duration = Duration::from_secs(5);
/// At most this much is read and thrown away while closing a connection whose request was
/// refused, so that the refusal reaches the client instead of being lost to a reset.
const LINGER_BYTES: usize = 256 * 1024;

/// One client connection.
struct Client {
    stream: TcpStream,
    buf: BytesMut,
    out: WriteQueue,
    peer: SocketAddr,
}

impl Client {
    /// Gives back memory a large request or response made the buffers grow by, so that an
    /// idle connection holds only its small starting buffer.
    fn release_grown_buffers(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > IDLE_BUF_LIMIT {
            self.buf = BytesMut::with_capacity(CLIENT_BUF);
        }
        self.out.release_if_larger(IDLE_BUF_LIMIT);
    }
}

/// How far an exchange got; decides what an error can still do.
#[derive(Default)]
struct Progress {
    /// The whole request, body included, was read from the client.
    request_done: bool,
    /// Some of the response was sent to the client: an error can no longer be answered.
    response_started: bool,
}

/// How a successful exchange leaves the client connection.
enum Outcome {
    KeepAlive,
    Close,
}

/// Serves one client connection until it closes, fails, or the worker drains.
pub async fn serve(worker: Rc<Worker>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let mut client = Client {
        stream,
        buf: BytesMut::with_capacity(CLIENT_BUF),
        out: WriteQueue::default(),
        peer,
    };
    // Phase accept, continued: the per-address connection limit, answered at once.
    let slot = worker
        .client_limit
        .as_ref()
        .map(|table| table.try_acquire(peer.ip()));
    if let Some(None) = slot {
        refuse(&worker, &mut client, &ProxyError::TooManyConnections).await;
        return;
    }
    let mut first = true;
    loop {
        let mut progress = Progress::default();
        let result = match read_head(&worker, &mut client, first).await {
            // Boxed: the exchange's state is allocated while a request is in flight, and not
            // carried by every idle keep-alive connection.
            Ok(Some(head)) => Box::pin(exchange(&worker, &mut client, &head, &mut progress)).await,
            Ok(None) => return,
            Err(e) => Err(e),
        };
        first = false;
        client.release_grown_buffers();
        match result {
            Ok(Outcome::KeepAlive) => {}
            Ok(Outcome::Close) => {
                let _ = client.stream.shutdown().await;
                return;
            }
            Err(error) => {
                log_error(&error, client.peer);
                if progress.response_started {
                    return;
                }
                // A response head that was queued but never written is replaced by the error.
                client.out.buf().clear();
                let keep = progress.request_done
                    && matches!(error.side(), Side::Upstream | Side::Internal)
                    && !worker.drain.is_draining();
                if !keep {
                    refuse(&worker, &mut client, &error).await;
                    return;
                }
                if !answer(&worker, &mut client, &error, false).await {
                    return;
                }
            }
        }
    }
}

/// Writes the response for `error`, saying whether the connection stays open. False when
/// there is no response to give or the client could not be written to.
async fn answer(worker: &Worker, client: &mut Client, error: &ProxyError, close: bool) -> bool {
    let Some(response) = error.response(close) else {
        return false;
    };
    client.out.buf().extend_from_slice(&response);
    client
        .out
        .flush(&mut client.stream, worker.timeouts.client_send)
        .await
        .is_ok()
}

/// Answers `error` (if the client can still be answered) and closes the connection.
async fn refuse(worker: &Worker, client: &mut Client, error: &ProxyError) {
    if error.status().is_some() && !answer(worker, client, error, true).await {
        return;
    }
    linger_close(client).await;
}

fn log_error(error: &ProxyError, peer: SocketAddr) {
    match error.side() {
        Side::Upstream => tracing::warn!(%peer, "{error}"),
        Side::Downstream | Side::Internal => tracing::debug!(%peer, "{error}"),
    }
}

/// Closes our side and reads (up to a bound) what the client was still sending, so that the
/// kernel does not answer its unread bytes with a reset that would destroy our response.
async fn linger_close(client: &mut Client) {
    let _ = client.stream.shutdown().await;
    let deadline = Instant::now() + LINGER_TIME;
    let mut discarded = 0;
    while discarded < LINGER_BYTES {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        client.buf.clear();
        match read_some(&mut client.stream, &mut client.buf, left, ReadSize::Head).await {
            Ok(n) => discarded += n,
            Err(_) => break,
        }
    }
}

/// Phase `read_head`: waits for the next request and parses its head.
///
/// `Ok(None)` means the connection should close quietly: the client closed it, stayed idle
/// past the keep-alive timeout, or the worker is draining while the connection is idle.
async fn read_head(
    worker: &Worker,
    client: &mut Client,
    first: bool,
) -> Result<Option<RequestHead>, ProxyError> {
    let timeouts = &worker.timeouts;
    if client.buf.is_empty() {
        if worker.drain.is_draining() && !first {
            return Ok(None);
        }
        let idle = if first {
            timeouts.client_header
        } else {
            timeouts.client_keepalive
        };
        let waited = monoio::select! {
            read = read_some(&mut client.stream, &mut client.buf, idle, ReadSize::Head) => read,
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
        read_some(&mut client.stream, &mut client.buf, left, ReadSize::Head)
            .await
            .map_err(|f| client_failure(f, ProxyError::HeaderTimeout))?;
    }
}

/// Phases `route` → `pick_upstream` → `forward_request` → `read_response` → `respond`, for
/// one request.
async fn exchange(
    worker: &Worker,
    client: &mut Client,
    head: &RequestHead,
    progress: &mut Progress,
) -> Result<Outcome, ProxyError> {
    progress.request_done = matches!(head.body(), BodyKind::Empty | BodyKind::Length(0));
    let route = route(worker, head)?;
    if let (BodyKind::Length(n), Some(max)) = (head.body(), worker.limits.max_body) {
        if n > max {
            return Err(ProxyError::BodyTooLarge);
        }
    }
    // Phase pick_upstream. A server that refuses the connection (or does not accept it in
    // time) has seen nothing of the request, so the next server of the group is tried, until
    // each was tried once.
    let mut attempts_left = worker.upstreams.group_len(route.upstream);
    let (mut upstream, response) = loop {
        let server = worker.upstreams.pick(route.upstream);
        attempts_left -= 1;
        match forward_request(worker, client, head, route, server, progress).await {
            Err(e) if e.retry_safe() && attempts_left > 0 => log_error(&e, client.peer),
            result => break result?,
        }
    };
    let (outcome, reusable) =
        respond(worker, client, head, &mut upstream, &response, progress).await?;
    if reusable {
        worker.upstreams.checkin(upstream);
    }
    Ok(outcome)
}

/// Phase `route`: the first route that matches the request.
fn route<'w>(worker: &'w Worker, head: &RequestHead) -> Result<&'w RouteEntry, ProxyError> {
    let query = RouteQuery {
        host: head.host(),
        path: head.path(),
        method: head.method_bytes(),
        header: |name: &str| head.field(name),
    };
    worker.routes.find(&query).ok_or(ProxyError::NoRoute)
}

/// Phase `forward_request`: sends the head and body upstream and waits for the response head.
///
/// A pooled connection that the origin closed while it sat idle fails on first use; when no
/// byte of the request body has been taken from the client yet, the request is sent again once
/// on a new connection.
async fn forward_request(
    worker: &Worker,
    client: &mut Client,
    head: &RequestHead,
    route: &RouteEntry,
    server: usize,
    progress: &mut Progress,
) -> Result<(UpstreamConn, ResponseHead), ProxyError> {
    let framing = match head.body() {
        BodyKind::Empty => OutFraming::None,
        BodyKind::Length(n) => OutFraming::Length(n),
        BodyKind::Chunked | BodyKind::UntilClose => OutFraming::Chunked,
    };
    let mut fresh = false;
    loop {
        let mut upstream = if fresh {
            worker.upstreams.connect(server).await?
        } else {
            worker.upstreams.checkout(server).await?
        };
        // An HTTP/1.0 request may come without a host: the origin then sees its own address.
        let host_fallback;
        let host = if let Some(host) = route
            .host_rewrite
            .as_deref()
            .map(str::as_bytes)
            .or(head.host())
        {
            host
        } else {
            host_fallback = worker.upstreams.addr(server).to_string();
            host_fallback.as_bytes()
        };
        write_request_head(
            upstream.out.buf(),
            head,
            &RequestRewrite {
                client_ip: client.peer.ip(),
                host,
                framing,
            },
        );
        let sent = if head.body() == BodyKind::Empty {
            upstream
                .out
                .flush(&mut upstream.stream, worker.timeouts.upstream_response)
                .await
                .map_err(upstream_failure)
        } else {
            if head.expect_continue() {
                client
                    .out
                    .buf()
                    .extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                client
                    .out
                    .flush(&mut client.stream, worker.timeouts.client_send)
                    .await
                    .map_err(client_send_failure)?;
            }
            send_body(worker, client, &mut upstream, head.body(), progress).await
        };
        let result = match sent {
            Ok(()) => read_response_head(worker, client, head, &mut upstream).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(response) => return Ok((upstream, response)),
            Err(ProxyError::UpstreamClosed | ProxyError::UpstreamIo(_))
                if upstream.reused && !fresh && head.body() == BodyKind::Empty =>
            {
                fresh = true;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Streams the request body from the client to the origin, re-framed by ringwall.
async fn send_body(
    worker: &Worker,
    client: &mut Client,
    upstream: &mut UpstreamConn,
    kind: BodyKind,
    progress: &mut Progress,
) -> Result<(), ProxyError> {
    let timeouts = &worker.timeouts;
    let chunked = matches!(kind, BodyKind::Chunked);
    let out = &mut upstream.out;
    let mut decoder = BodyDecoder::new(kind);
    let mut received: u64 = 0;
    let mut trailers: Option<Bytes> = None;
    let started = Instant::now();
    loop {
        match decoder
            .decode(&mut client.buf)
            .map_err(ProxyError::BadRequestBody)?
        {
            Decoded::Data(data) => {
                received += data.len() as u64;
                if worker.limits.max_body.is_some_and(|max| received > max) {
                    return Err(ProxyError::BodyTooLarge);
                }
                if chunked {
                    write_chunk_header(data.len(), out.buf());
                }
                out.push(&mut upstream.stream, data, timeouts.upstream_response)
                    .await
                    .map_err(upstream_failure)?;
                if chunked {
                    write_chunk_end(out.buf());
                }
            }
            Decoded::Trailers(fields) => trailers = Some(fields),
            Decoded::End => {
                progress.request_done = true;
                if chunked {
                    write_last_chunk(trailers.as_deref(), out.buf());
                }
                return out
                    .flush(&mut upstream.stream, timeouts.upstream_response)
                    .await
                    .map_err(upstream_failure);
            }
            Decoded::NeedMore => {
                out.flush(&mut upstream.stream, timeouts.upstream_response)
                    .await
                    .map_err(upstream_failure)?;
                too_slow(worker.limits.min_body_rate, received, started)?;
                read_some(
                    &mut client.stream,
                    &mut client.buf,
                    timeouts.client_body,
                    ReadSize::Body,
                )
                .await
                .map_err(|f| client_failure(f, ProxyError::BodyTimeout))?;
            }
        }
    }
}

/// Phase `read_response`: the final response head, relaying informational (1xx) responses.
async fn read_response_head(
    worker: &Worker,
    client: &mut Client,
    head: &RequestHead,
    upstream: &mut UpstreamConn,
) -> Result<ResponseHead, ProxyError> {
    loop {
        let parsed = parse_response(&mut upstream.buf, &worker.response_limits, head.method())
            .map_err(ProxyError::UpstreamInvalid)?;
        match parsed {
            Some(response) if response.status() == 101 => {
                return Err(ProxyError::UpstreamUnsupported("protocol upgrade (101)"));
            }
            Some(response) if response.is_informational() => {
                // ringwall answers Expect: 100-continue itself; other 1xx (103 Early Hints)
                // go to HTTP/1.1 clients as they are.
                if response.status() != 100 && head.version() == Version::Http11 {
                    write_response_head(client.out.buf(), &response, OutFraming::None, None);
                    client
                        .out
                        .flush(&mut client.stream, worker.timeouts.client_send)
                        .await
                        .map_err(client_send_failure)?;
                }
            }
            Some(response) => return Ok(response),
            None => {
                read_some(
                    &mut upstream.stream,
                    &mut upstream.buf,
                    worker.timeouts.upstream_response,
                    ReadSize::Body,
                )
                .await
                .map_err(upstream_failure)?;
            }
        }
    }
}

/// Phase `respond`: the response head and body to the client. Also says whether the upstream
/// connection ended the exchange cleanly and may go back to its pool.
async fn respond(
    worker: &Worker,
    client: &mut Client,
    request: &RequestHead,
    upstream: &mut UpstreamConn,
    response: &ResponseHead,
    progress: &mut Progress,
) -> Result<(Outcome, bool), ProxyError> {
    let http11 = request.version() == Version::Http11;
    let framing = match response.body() {
        BodyKind::Empty => OutFraming::None,
        BodyKind::Length(n) => OutFraming::Length(n),
        BodyKind::Chunked | BodyKind::UntilClose if http11 => OutFraming::Chunked,
        BodyKind::Chunked | BodyKind::UntilClose => OutFraming::Close,
    };
    let keep_alive =
        request.keep_alive() && framing != OutFraming::Close && !worker.drain.is_draining();
    let connection: Option<&[u8]> = match (keep_alive, http11) {
        (false, _) => Some(b"close"),
        (true, false) => Some(b"keep-alive"),
        (true, true) => None,
    };
    // The head waits in the write queue until the first write: until then an error can still
    // be answered with its own status (`serve` discards the queued head).
    write_response_head(client.out.buf(), response, framing, connection);

    let timeouts = &worker.timeouts;
    let mut decoder = BodyDecoder::new(response.body());
    let mut trailers: Option<Bytes> = None;
    let mut reusable = response.keep_alive();
    loop {
        match decoder
            .decode(&mut upstream.buf)
            .map_err(ProxyError::UpstreamInvalid)?
        {
            Decoded::Data(data) => {
                if framing == OutFraming::Chunked {
                    write_chunk_header(data.len(), client.out.buf());
                }
                progress.response_started = true;
                client
                    .out
                    .push(&mut client.stream, data, timeouts.client_send)
                    .await
                    .map_err(client_send_failure)?;
                if framing == OutFraming::Chunked {
                    write_chunk_end(client.out.buf());
                }
            }
            Decoded::Trailers(fields) => trailers = Some(fields),
            Decoded::End => break,
            Decoded::NeedMore => {
                progress.response_started = true;
                client
                    .out
                    .flush(&mut client.stream, timeouts.client_send)
                    .await
                    .map_err(client_send_failure)?;
                match read_some(
                    &mut upstream.stream,
                    &mut upstream.buf,
                    timeouts.upstream_response,
                    ReadSize::Body,
                )
                .await
                {
                    Ok(_) => {}
                    Err(IoFailure::Closed) => match decoder.eof() {
                        Ok(_) => {
                            reusable = false;
                            break;
                        }
                        Err(_) => return Err(ProxyError::UpstreamClosed),
                    },
                    Err(other) => return Err(upstream_failure(other)),
                }
            }
        }
    }
    if framing == OutFraming::Chunked {
        // Trailers pass to a client that gets the body chunked; for an HTTP/1.0 client the
        // chunked coding is removed and its trailers dropped (RFC 9112 §7.1.2).
        write_last_chunk(trailers.as_deref(), client.out.buf());
    }
    progress.response_started = true;
    client
        .out
        .flush(&mut client.stream, timeouts.client_send)
        .await
        .map_err(client_send_failure)?;
    let outcome = if keep_alive {
        Outcome::KeepAlive
    } else {
        Outcome::Close
    };
    Ok((outcome, reusable))
}

/// The slow-body check: after the grace period, a body must have averaged `min_rate` bytes
/// per second since it began (0 turns the check off).
fn too_slow(min_rate: u64, received: u64, started: Instant) -> Result<(), ProxyError> {
    let elapsed = started.elapsed();
    if min_rate == 0 || elapsed < BODY_RATE_GRACE {
        return Ok(());
    }
    let expected = u128::from(min_rate) * elapsed.as_millis() / 1000;
    if u128::from(received) < expected {
        return Err(ProxyError::BodyTooSlow);
    }
    Ok(())
}

fn upstream_failure(failure: IoFailure) -> ProxyError {
    match failure {
        IoFailure::Timeout => ProxyError::UpstreamTimeout,
        IoFailure::Closed => ProxyError::UpstreamClosed,
        IoFailure::Io(e) => ProxyError::UpstreamIo(e),
    }
}

/// A failed write to the client.
fn client_send_failure(failure: IoFailure) -> ProxyError {
    client_failure(failure, ProxyError::ClientSendTimeout)
}

/// A failed read or write on the client connection; `on_timeout` says which wait ran out.
fn client_failure(failure: IoFailure, on_timeout: ProxyError) -> ProxyError {
    match failure {
        IoFailure::Timeout => on_timeout,
        IoFailure::Closed => ProxyError::ClientClosed,
        IoFailure::Io(e) => ProxyError::ClientIo(e),
    }
}
