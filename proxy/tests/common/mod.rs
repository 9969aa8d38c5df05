//! The end-to-end harness: the real `ringwall` binary on loopback, scripted origin servers and
//! a raw-socket client that reports exactly what came back.
//!
//! [`Proxy`] starts the binary (from flags or a TOML file), waits for its `listening on` log
//! line and kills it when dropped. [`Origin`] is an HTTP/1.1 server on `std::net`, one thread
//! per connection, that counts the connections and requests it accepts and answers through a
//! handler the test supplies ([`echo`] sends back the request head it received); a
//! [`RawOrigin`] hands its connections, unread, to the test for failures below HTTP (resets,
//! garbage, stalls). [`Client`] writes raw bytes and parses what comes back into a
//! [`Response`]. Both sides read through [`Wire`]. Every socket has read and write timeouts and
//! every wait has a deadline, so a proxy that hangs fails a test instead of stalling the suite.
//! [`Proxy::open_fds`] counts the proxy's open descriptors, for the tests that look for leaks.

// Each test binary includes this module and uses a different part of it.
#![allow(dead_code)]

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Read and write timeout of every socket the harness opens.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long ringwall may take to start serving.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Size of one socket read.
const READ_CHUNK: usize = 64 * 1024;

// ---------------------------------------------------------------------------------------------
// Wire: buffered reading of HTTP/1.1 messages from a socket.
// ---------------------------------------------------------------------------------------------

/// A socket plus the bytes read from it and not consumed yet.
pub struct Wire {
    pub stream: TcpStream,
    buf: Vec<u8>,
    scratch: Box<[u8]>,
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn early_eof(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("connection closed {what}"),
    )
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl Wire {
    pub fn new(stream: TcpStream) -> Wire {
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .expect("read timeout");
        stream
            .set_write_timeout(Some(IO_TIMEOUT))
            .expect("write timeout");
        let _ = stream.set_nodelay(true);
        Wire {
            stream,
            buf: Vec::new(),
            scratch: vec![0u8; READ_CHUNK].into_boxed_slice(),
        }
    }

    /// Bytes received but not consumed yet.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Reads once from the socket into the buffer; `Ok(0)` at the end of the stream.
    fn fill(&mut self) -> io::Result<usize> {
        let n = self.stream.read(&mut self.scratch)?;
        self.buf.extend_from_slice(&self.scratch[..n]);
        Ok(n)
    }

    /// The next message head, through its empty line; `None` if the peer closed the
    /// connection cleanly before sending a byte of it.
    pub fn read_head(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut searched = 0;
        loop {
            if let Some(end) = find(&self.buf[searched..], b"\r\n\r\n") {
                let end = searched + end + 4;
                return Ok(Some(self.buf.drain(..end).collect()));
            }
            searched = self.buf.len().saturating_sub(3);
            if self.buf.len() > 1 << 20 {
                return Err(invalid("message head over 1 MiB"));
            }
            if self.fill()? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(early_eof("in the middle of a message head"))
                };
            }
        }
    }

    /// One line, without its CRLF.
    pub fn read_line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n") {
                let line = self.buf[..end].to_vec();
                self.buf.drain(..end + 2);
                return Ok(line);
            }
            if self.buf.len() > 64 * 1024 {
                return Err(invalid("line over 64 KiB"));
            }
            if self.fill()? == 0 {
                return Err(early_eof("in the middle of a line"));
            }
        }
    }

    /// Consumes exactly `n` bytes, handing them to `sink` as they arrive.
    pub fn take(&mut self, mut n: u64, sink: &mut dyn FnMut(&[u8])) -> io::Result<()> {
        while n > 0 {
            if self.buf.is_empty() {
                let want = usize::try_from(n).unwrap_or(usize::MAX).min(READ_CHUNK);
                let got = self.stream.read(&mut self.scratch[..want])?;
                if got == 0 {
                    return Err(early_eof(&format!("with {n} body bytes missing")));
                }
                sink(&self.scratch[..got]);
                n -= got as u64;
            } else {
                let k = usize::try_from(n).unwrap_or(usize::MAX).min(self.buf.len());
                sink(&self.buf[..k]);
                self.buf.drain(..k);
                n -= k as u64;
            }
        }
        Ok(())
    }

    /// Consumes everything until the peer closes the connection; returns the byte count.
    pub fn take_to_end(&mut self, sink: &mut dyn FnMut(&[u8])) -> io::Result<u64> {
        let mut total = self.buf.len() as u64;
        sink(&self.buf);
        self.buf.clear();
        loop {
            let got = self.stream.read(&mut self.scratch)?;
            if got == 0 {
                return Ok(total);
            }
            sink(&self.scratch[..got]);
            total += got as u64;
        }
    }

    /// Decodes a chunked body, handing the data to `sink`; returns the trailer fields.
    pub fn take_chunked(&mut self, sink: &mut dyn FnMut(&[u8])) -> io::Result<Vec<Field>> {
        loop {
            let line = self.read_line()?;
            let line = String::from_utf8_lossy(&line).into_owned();
            let size = line.split(';').next().unwrap_or("").trim();
            let size = u64::from_str_radix(size, 16)
                .map_err(|_| invalid(format!("bad chunk size line {line:?}")))?;
            if size == 0 {
                let mut trailers = Vec::new();
                loop {
                    let line = self.read_line()?;
                    if line.is_empty() {
                        return Ok(trailers);
                    }
                    trailers.push(parse_field(&line)?);
                }
            }
            self.take(size, sink)?;
            if !self.read_line()?.is_empty() {
                return Err(invalid("chunk data not followed by CRLF"));
            }
        }
    }

    /// Writes all of `bytes`.
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }
}

// ---------------------------------------------------------------------------------------------
// Heads.
// ---------------------------------------------------------------------------------------------

/// A header field as received: name and value, value trimmed.
pub type Field = (String, String);

fn parse_field(line: &[u8]) -> io::Result<Field> {
    let line = String::from_utf8_lossy(line);
    let (name, value) = line
        .split_once(':')
        .ok_or_else(|| invalid(format!("field line without a colon: {line:?}")))?;
    Ok((name.to_string(), value.trim().to_string()))
}

/// A message head as it arrived: the raw text, the start line and the fields in order.
#[derive(Clone, Debug)]
pub struct Head {
    pub raw: String,
    pub start: String,
    pub fields: Vec<Field>,
}

impl Head {
    /// Splits a head (start line, field lines, empty line) without judging it.
    pub fn parse(raw: &[u8]) -> io::Result<Head> {
        let text = String::from_utf8_lossy(raw).into_owned();
        let mut lines = text.split("\r\n");
        let start = lines.next().unwrap_or_default().to_string();
        let mut fields = Vec::new();
        for line in lines {
            if line.is_empty() {
                break;
            }
            fields.push(parse_field(line.as_bytes())?);
        }
        Ok(Head {
            raw: text,
            start,
            fields,
        })
    }

    /// The first value of the field `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of the field `name`, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Whether any `name` field lists `token` (comma-separated, case-insensitive).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.all(name)
            .iter()
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

// ---------------------------------------------------------------------------------------------
// Responses and the client.
// ---------------------------------------------------------------------------------------------

/// How a response body was delimited on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body by the rules of RFC 9112 §6.3 (HEAD, 1xx, 204, 304).
    NoBody,
    Length,
    Chunked,
    /// Read until the connection closed.
    Close,
}

/// A complete response as the client saw it.
#[derive(Debug)]
pub struct Response {
    pub version: String,
    pub status: u16,
    pub head: Head,
    /// Interim (1xx) responses received before this one.
    pub interim: Vec<Head>,
    pub body: Vec<u8>,
    pub trailers: Vec<Field>,
    pub framing: Framing,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.get(name)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The request an [`echo`] origin received: its head and its decoded body.
    pub fn echoed(&self) -> (Head, Vec<u8>) {
        let end = find(&self.body, b"\r\n\r\n")
            .unwrap_or_else(|| panic!("not an echo response: {:?}", self.text()));
        let head = Head::parse(&self.body[..end + 4]).expect("echoed head");
        (head, self.body[end + 4..].to_vec())
    }
}

/// Validates a status line and fields with `httparse` and returns (version, status).
fn parse_status(raw: &[u8]) -> io::Result<(String, u16)> {
    let mut fields = [httparse::EMPTY_HEADER; 256];
    let mut response = httparse::Response::new(&mut fields);
    match response.parse(raw) {
        Ok(httparse::Status::Complete(_)) => {}
        other => {
            return Err(invalid(format!(
                "invalid response head ({other:?}): {:?}",
                String::from_utf8_lossy(raw)
            )))
        }
    }
    let version = format!("HTTP/1.{}", response.version.unwrap_or(1));
    Ok((version, response.code.unwrap_or(0)))
}

/// A client connection that writes raw bytes and reads responses.
pub struct Client {
    pub wire: Wire,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        Client {
            wire: Wire::new(stream),
        }
    }

    pub fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.wire.write(bytes.as_ref()).expect("send to ringwall");
    }

    /// Sends a request and reads its response (a `HEAD` request is read as one).
    pub fn request(&mut self, raw: impl AsRef<[u8]>) -> Response {
        let raw = raw.as_ref();
        self.send(raw);
        self.read_response(raw.starts_with(b"HEAD "))
    }

    /// Reads the next response; panics when there is none or it is malformed.
    pub fn read_response(&mut self, to_head: bool) -> Response {
        self.try_read_response(to_head)
            .unwrap_or_else(|e| panic!("reading a response from ringwall: {e}"))
    }

    /// Reads interim responses and then one final response.
    pub fn try_read_response(&mut self, to_head: bool) -> io::Result<Response> {
        let mut interim = Vec::new();
        loop {
            let raw = self
                .wire
                .read_head()?
                .ok_or_else(|| early_eof("before a response"))?;
            let (version, status) = parse_status(&raw)?;
            let head = Head::parse(&raw)?;
            if (100..200).contains(&status) {
                interim.push(head);
                continue;
            }
            let mut body = Vec::new();
            let mut trailers = Vec::new();
            let framing = if to_head || status == 204 || status == 304 {
                Framing::NoBody
            } else if head.has("transfer-encoding") {
                if !head.has_token("transfer-encoding", "chunked") {
                    return Err(invalid("transfer-encoding without chunked"));
                }
                trailers = self.wire.take_chunked(&mut |d| body.extend_from_slice(d))?;
                Framing::Chunked
            } else if let Some(len) = head.get("content-length") {
                let len: u64 = len
                    .parse()
                    .map_err(|_| invalid(format!("bad content-length {len:?}")))?;
                self.wire.take(len, &mut |d| body.extend_from_slice(d))?;
                Framing::Length
            } else {
                self.wire.take_to_end(&mut |d| body.extend_from_slice(d))?;
                Framing::Close
            };
            return Ok(Response {
                version,
                status,
                head,
                interim,
                body,
                trailers,
                framing,
            });
        }
    }

    /// Like [`Client::try_read_response`], but every read waits at most `timeout`, so that a
    /// proxy that stops sending shows up as a `TimedOut`/`WouldBlock` error soon.
    pub fn try_read_response_within(
        &mut self,
        to_head: bool,
        timeout: Duration,
    ) -> io::Result<Response> {
        self.wire.stream.set_read_timeout(Some(timeout))?;
        let response = self.try_read_response(to_head);
        self.wire.stream.set_read_timeout(Some(IO_TIMEOUT))?;
        response
    }

    /// Reads one head only (an interim response, say) within `timeout`.
    pub fn read_head_within(&mut self, timeout: Duration) -> io::Result<Head> {
        self.wire.stream.set_read_timeout(Some(timeout))?;
        let raw = self.wire.read_head();
        self.wire.stream.set_read_timeout(Some(IO_TIMEOUT))?;
        let raw = raw?.ok_or_else(|| early_eof("before a response head"))?;
        parse_status(&raw)?;
        Head::parse(&raw)
    }

    /// Ok when ringwall closes the connection (end of stream or reset) within `within` without
    /// sending anything more; otherwise says what happened instead.
    pub fn expect_closed(&mut self, within: Duration) -> Result<(), String> {
        if !self.wire.buffered().is_empty() {
            return Err(format!(
                "unexpected bytes: {:?}",
                String::from_utf8_lossy(self.wire.buffered())
            ));
        }
        self.wire
            .stream
            .set_read_timeout(Some(within))
            .map_err(|e| e.to_string())?;
        let mut byte = [0u8; 1024];
        let result = match self.wire.stream.read(&mut byte) {
            Ok(0) => Ok(()),
            Ok(n) => Err(format!(
                "connection still open; received {:?}",
                String::from_utf8_lossy(&byte[..n])
            )),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                ) =>
            {
                Ok(())
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(format!("connection still open after {within:?}"))
            }
            Err(e) => Err(format!("read error: {e}")),
        };
        let _ = self.wire.stream.set_read_timeout(Some(IO_TIMEOUT));
        result
    }
}

/// `GET path` with a Host field.
pub fn get(path: &str, host: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n")
}

// ---------------------------------------------------------------------------------------------
// Origins.
// ---------------------------------------------------------------------------------------------

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
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind origin");
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

/// Polls `done` every 10 ms for at most `timeout`.
pub fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------------------------
// The proxy process.
// ---------------------------------------------------------------------------------------------

/// A TOML file under Cargo's per-test temporary directory, removed when dropped.
pub struct TempFile {
    pub path: PathBuf,
}

impl TempFile {
    pub fn new(name: &str, contents: &str) -> TempFile {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("ringwall-e2e-{}-{n}-{name}", std::process::id()));
        std::fs::write(&path, contents).expect("write temporary file");
        TempFile { path }
    }

    pub fn display(&self) -> String {
        self.path.display().to_string()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A running `ringwall`; killed and reaped when dropped.
pub struct Proxy {
    child: Child,
    pub addr: SocketAddr,
    logs: Receiver<String>,
    log_lines: RefCell<Vec<String>>,
    exited: Option<ExitStatus>,
    _config: Option<TempFile>,
}

fn ringwall_command(args: &[String]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ringwall"));
    command
        .args(args)
        .env_remove("RINGWALL_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    command
}

impl Proxy {
    /// Starts ringwall on `127.0.0.1:0` in front of `upstreams` (the `default` group), with
    /// 2 unpinned workers unless `extra` says otherwise.
    pub fn start(upstreams: &[SocketAddr], extra: &[&str]) -> Proxy {
        let mut args: Vec<String> = Vec::new();
        for upstream in upstreams {
            args.push("--upstream".into());
            args.push(upstream.to_string());
        }
        Proxy::spawn(args, extra, None)
    }

    /// Starts ringwall from a TOML configuration (listen address and workers still come from
    /// the flags, so that the port is chosen by the kernel).
    pub fn with_config(toml: &str, extra: &[&str]) -> Proxy {
        let file = TempFile::new("ringwall.toml", toml);
        let args = vec!["--config".to_string(), file.display()];
        Proxy::spawn(args, extra, Some(file))
    }

    fn spawn(mut args: Vec<String>, extra: &[&str], config: Option<TempFile>) -> Proxy {
        args.extend(["--listen", "127.0.0.1:0"].map(String::from));
        if !extra.contains(&"--workers") {
            args.extend(["--workers", "2"].map(String::from));
        }
        args.push("--no-pin".into());
        args.extend(extra.iter().map(ToString::to_string));
        let mut child = ringwall_command(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ringwall");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, logs) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut proxy = Proxy {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            logs,
            log_lines: RefCell::new(Vec::new()),
            exited: None,
            _config: config,
        };
        proxy.addr = proxy.wait_listening(&args);
        proxy
    }

    fn wait_listening(&mut self, args: &[String]) -> SocketAddr {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.logs.recv_timeout(left) {
                Ok(line) => {
                    let addr = listening_addr(&line);
                    self.log_lines.borrow_mut().push(line);
                    if let Some(addr) = addr {
                        return addr;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "ringwall {args:?} did not log `listening on` within {START_TIMEOUT:?}; stderr:\n{}",
                    self.logs()
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.wait_exit(Duration::from_secs(2));
                    panic!(
                        "ringwall {args:?} exited ({status:?}) before listening; stderr:\n{}",
                        self.logs()
                    );
                }
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything ringwall logged so far.
    pub fn logs(&self) -> String {
        let mut lines = self.log_lines.borrow_mut();
        while let Ok(line) = self.logs.try_recv() {
            lines.push(line);
        }
        lines.join("\n")
    }

    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends SIGTERM (through `kill(1)`: the tests hold no `unsafe`).
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed: {status}");
    }

    /// Waits at most `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited {
                return Some(status);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exited = Some(status);
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// The number of file descriptors the process has open (entries of `/proc/PID/fd`).
    pub fn open_fds(&self) -> usize {
        open_fds(self.pid()).expect("/proc/PID/fd of ringwall")
    }

    /// The open descriptor count once it has held still for 300 ms (sampled every 25 ms, for
    /// at most 5 s; the last sample if it never settles).
    pub fn settled_fds(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut last = self.open_fds();
        let mut since = Instant::now();
        while Instant::now() < deadline {
            thread::sleep(Duration::from_millis(25));
            let now = self.open_fds();
            if now != last {
                last = now;
                since = Instant::now();
            } else if since.elapsed() >= Duration::from_millis(300) {
                break;
            }
        }
        last
    }

    /// The resident set size of the process in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.pid()).expect("VmRSS of ringwall")
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            eprintln!("--- ringwall stderr ---\n{}\n---", self.logs());
        }
    }
}

fn listening_addr(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("listening on http://")? + "listening on http://".len()..];
    let addr: String = rest
        .chars()
        .take_while(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']'))
        .collect();
    addr.parse().ok()
}

/// Open file descriptors of a process: the entries of `/proc/PID/fd`.
pub fn open_fds(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// `VmRSS` of a process, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Samples a process's RSS every 20 ms on a thread until stopped; reports the peak.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl RssSampler {
    pub fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, peak) = (stop.clone(), peak.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    if let Some(rss) = rss_kib(pid) {
                        peak.fetch_max(rss, Ordering::SeqCst);
                    }
                    thread::sleep(Duration::from_millis(20));
                }
            })
        };
        RssSampler {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    /// The highest RSS seen so far, in KiB.
    pub fn peak_kib(&self) -> u64 {
        self.peak.load(Ordering::SeqCst)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The outcome of a `ringwall` run that is expected to exit by itself.
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `ringwall args…` to completion (killed after 10 s).
pub fn run_ringwall(args: &[&str]) -> Run {
    let args: Vec<String> = args.iter().map(ToString::to_string).collect();
    let mut child = ringwall_command(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ringwall");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ringwall {args:?} did not exit within 10 s");
        }
        thread::sleep(Duration::from_millis(10));
    };
    Run {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// A ureq agent with timeouts, no proxy from the environment, and 4xx/5xx as plain responses.
pub fn ureq_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(IO_TIMEOUT))
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into()
}
