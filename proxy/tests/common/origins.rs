//! The servers behind the proxy in the tests, and socket helpers for tests that play one by hand.
//!
//! [`Origin`] is an HTTP/1.1 server on loopback with a thread per connection. Each request ringwall
//! sends it is parsed strictly into an [`OriginRequest`] and handed, with the [`OriginConn`] that
//! reads its body and writes the answer, to a handler the test supplies; the handler's [`Next`]
//! says whether the connection stays open, and [`echo`] is the handler that sends the request back.
//! The origin counts connections and requests for the test to assert on. A [`RawOrigin`] hands each
//! connection to the test unread, for failures below HTTP. [`read_through`] and [`wait_peer_close`]
//! read a raw socket up to a marker or until the peer closes, and [`closed_port`] gives an address
//! nothing listens on.

use std::fmt::Write as _;
use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::process::wait_until;
use super::wire::{early_eof, invalid, Field, Head, Wire, IO_TIMEOUT};

/// How a request announces its body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    None,
    Length(u64),
    Chunked,
}

/// A request as an origin received it from ringwall.
#[derive(Clone, Debug)]
pub struct OriginRequest {
    pub head: Head,
    pub method: String,
    pub target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    pub body: BodyKind,
}

impl OriginRequest {
    /// Parses what ringwall sent, strictly (`httparse`): ringwall must send valid HTTP/1.1.
    fn parse(raw: &[u8]) -> io::Result<OriginRequest> {
        let mut fields = [httparse::EMPTY_HEADER; 256];
        let mut request = httparse::Request::new(&mut fields);
        match request.parse(raw) {
            Ok(httparse::Status::Complete(_)) => {}
            other => {
                return Err(invalid(format!(
                    "origin got an invalid request head ({other:?}): {:?}",
                    String::from_utf8_lossy(raw)
                )))
            }
        }
        let method = request.method.unwrap_or_default().to_string();
        let target = request.path.unwrap_or_default().to_string();
        let minor = request.version.unwrap_or(1);
        let head = Head::parse(raw)?;
        let body = if head.has_token("transfer-encoding", "chunked") {
            BodyKind::Chunked
        } else if let Some(len) = head.get("content-length") {
            BodyKind::Length(len.parse().map_err(|_| invalid("bad content-length"))?)
        } else {
            BodyKind::None
        };
        Ok(OriginRequest {
            head,
            method,
            target,
            minor,
            body,
        })
    }
}

/// One origin connection, handed to the handler with each request.
pub struct OriginConn {
    pub wire: Wire,
    unread_body: BodyKind,
    head_request: bool,
    /// Trailer fields of the last chunked request body read.
    pub trailers: Vec<Field>,
    /// Which connection of the origin this is (0 for the first accepted).
    pub index: usize,
}

impl OriginConn {
    /// Reads the request body (decoded).
    pub fn body(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        self.body_with(&mut |d| body.extend_from_slice(d))?;
        Ok(body)
    }

    /// Reads the request body, throwing it away; returns its length.
    pub fn discard_body(&mut self) -> io::Result<u64> {
        let mut n = 0u64;
        self.body_with(&mut |d| n += d.len() as u64)?;
        Ok(n)
    }

    fn body_with(&mut self, sink: &mut dyn FnMut(&[u8])) -> io::Result<()> {
        match std::mem::replace(&mut self.unread_body, BodyKind::None) {
            BodyKind::None => {}
            BodyKind::Length(n) => self.wire.take(n, sink)?,
            BodyKind::Chunked => self.trailers = self.wire.take_chunked(sink)?,
        }
        Ok(())
    }

    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.wire.write(bytes)
    }

    /// A complete response with `Content-Length`; no body is sent for HEAD, 204 or 304.
    pub fn respond(&mut self, status: u16, fields: &[(&str, &str)], body: &[u8]) -> io::Result<()> {
        let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status));
        for (name, value) in fields {
            let _ = write!(out, "{name}: {value}\r\n");
        }
        let bodiless = self.head_request || status == 204 || status == 304;
        if status != 204 {
            let _ = write!(out, "Content-Length: {}\r\n", body.len());
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        if !bodiless {
            bytes.extend_from_slice(body);
        }
        self.write(&bytes)
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        304 => "Not Modified",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Whatever",
    }
}

/// What the origin does with its connection after the handler returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    KeepAlive,
    Close,
}

type Handler = dyn Fn(&OriginRequest, &mut OriginConn) -> io::Result<Next> + Send + Sync;

/// An HTTP/1.1 origin server on loopback; stops accepting when dropped.
pub struct Origin {
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Origin {
    /// Starts an origin whose requests are answered by `handler`.
    pub fn start(
        handler: impl Fn(&OriginRequest, &mut OriginConn) -> io::Result<Next> + Send + Sync + 'static,
    ) -> Origin {
        Origin::start_on("127.0.0.1:0", handler)
    }

    /// Like [`Origin::start`], listening on `addr` (another loopback address, a given port).
    pub fn start_on(
        addr: &str,
        handler: impl Fn(&OriginRequest, &mut OriginConn) -> io::Result<Next> + Send + Sync + 'static,
    ) -> Origin {
        let listener = TcpListener::bind(addr).expect("bind origin");
        let addr = listener.local_addr().expect("origin address");
        let connections = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        {
            let counters = (connections.clone(), closed.clone(), requests.clone());
            let stop = stop.clone();
            thread::spawn(move || {
                let (connections, closed, requests) = counters;
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let index = connections.fetch_add(1, Ordering::SeqCst);
                    let (handler, closed, requests) =
                        (handler.clone(), closed.clone(), requests.clone());
                    thread::spawn(move || {
                        serve_origin_conn(stream, index, &*handler, &requests);
                        closed.fetch_add(1, Ordering::SeqCst);
                    });
                }
            });
        }
        Origin {
            addr,
            connections,
            closed,
            requests,
            stop,
        }
    }

    /// An origin that echoes every request (see [`echo`]) and names itself in `X-Origin`.
    pub fn echo(name: &'static str) -> Origin {
        Origin::start(move |req, conn| echo(name, req, conn))
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Connections that have ended (closed by either side) so far.
    pub fn closed(&self) -> usize {
        self.closed.load(Ordering::SeqCst)
    }

    /// Connections open now (accepted and not yet ended).
    pub fn open(&self) -> usize {
        self.connections().saturating_sub(self.closed())
    }

    /// Request heads received so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Waits (at most `timeout`) until the origin has received `n` request heads.
    pub fn wait_requests(&self, n: usize, timeout: Duration) -> bool {
        wait_until(timeout, || self.requests() >= n)
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

fn serve_origin_conn(stream: TcpStream, index: usize, handler: &Handler, requests: &AtomicUsize) {
    let mut conn = OriginConn {
        wire: Wire::new(stream),
        unread_body: BodyKind::None,
        head_request: false,
        trailers: Vec::new(),
        index,
    };
    loop {
        let Ok(Some(raw)) = conn.wire.read_head() else {
            return;
        };
        let request = match OriginRequest::parse(&raw) {
            Ok(request) => request,
            Err(e) => {
                eprintln!("origin: {e}");
                let _ = conn.write(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                return;
            }
        };
        requests.fetch_add(1, Ordering::SeqCst);
        conn.unread_body = request.body;
        conn.head_request = request.method == "HEAD";
        conn.trailers.clear();
        let next = handler(&request, &mut conn);
        // Reading what is left of the body keeps the connection in step, and closing with
        // unread bytes would reset the connection under ringwall's feet.
        let drained = next.is_ok() && conn.discard_body().is_ok();
        if !drained || !matches!(next, Ok(Next::KeepAlive)) {
            let _ = conn.wire.stream.shutdown(Shutdown::Both);
            return;
        }
    }
}

/// The echo handler: answers 200 with the request head exactly as received followed by the
/// decoded request body; `X-Origin` names the origin, `X-Connection-Index` the origin
/// connection, and trailers of a chunked body come back in `X-Seen-Trailers` (`name=value;`).
pub fn echo(name: &str, req: &OriginRequest, conn: &mut OriginConn) -> io::Result<Next> {
    let body = conn.body()?;
    let mut out = req.head.raw.clone().into_bytes();
    out.extend_from_slice(&body);
    let mut trailers = String::new();
    for (n, v) in &conn.trailers {
        let _ = write!(trailers, "{n}={v};");
    }
    let index = conn.index.to_string();
    let mut fields = vec![
        ("X-Origin", name),
        ("X-Connection-Index", index.as_str()),
        ("Content-Type", "text/plain"),
    ];
    if !trailers.is_empty() {
        fields.push(("X-Seen-Trailers", trailers.as_str()));
    }
    conn.respond(200, &fields, &out)?;
    Ok(Next::KeepAlive)
}

/// A TCP server on loopback that hands every accepted connection, with nothing read from it, to
/// a handler: for origins that fail below HTTP (resets, garbage, stalls, cut bodies). Each
/// connection runs on its own thread and ends when the handler returns and drops the stream
/// (with unread bytes still queued, Linux then answers with a reset instead of a FIN).
pub struct RawOrigin {
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl RawOrigin {
    /// Starts a server whose connections go to `handler` with their accept index.
    pub fn start(handler: impl Fn(TcpStream, usize) + Send + Sync + 'static) -> RawOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind raw origin");
        let addr = listener.local_addr().expect("raw origin address");
        let connections = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let handler = Arc::new(handler);
        {
            let (connections, closed, stop) = (connections.clone(), closed.clone(), stop.clone());
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
                    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
                    let _ = stream.set_nodelay(true);
                    let index = connections.fetch_add(1, Ordering::SeqCst);
                    let (handler, closed) = (handler.clone(), closed.clone());
                    thread::spawn(move || {
                        handler(stream, index);
                        closed.fetch_add(1, Ordering::SeqCst);
                    });
                }
            });
        }
        RawOrigin {
            addr,
            connections,
            closed,
            stop,
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Connections whose handler has returned (and whose socket is closed) so far.
    pub fn closed(&self) -> usize {
        self.closed.load(Ordering::SeqCst)
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.connections().saturating_sub(self.closed())
    }
}

impl Drop for RawOrigin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// Reads one byte at a time through the first `needle` (at most `max` bytes), so that nothing
/// after it is taken from the socket; returns what was read, `needle` included.
pub fn read_through(stream: &mut TcpStream, needle: &[u8], max: usize) -> io::Result<Vec<u8>> {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(needle) {
        if got.len() >= max {
            return Err(invalid(format!("no {needle:?} within {max} bytes")));
        }
        if stream.read(&mut byte)? == 0 {
            return Err(early_eof("before the expected bytes"));
        }
        got.push(byte[0]);
    }
    Ok(got)
}

/// Blocks until the peer closes `stream` (or resets it), reading and dropping whatever comes,
/// for at most `limit`; true if the peer closed.
pub fn wait_peer_close(stream: &mut TcpStream, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut scratch = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return false;
        }
        match stream.read(&mut scratch) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                ) =>
            {
                return true
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

/// An address on which nothing listens (a port that was just bound and released).
pub fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address")
}
