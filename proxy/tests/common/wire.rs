//! The client side of the harness, and the HTTP/1.1 reading both sides of it share.
//!
//! [`Wire`] wraps a `TcpStream` with read and write timeouts and a buffer: message heads come out
//! of it as raw bytes through their empty line, bodies by length, chunked (the trailers returned)
//! or up to the end of the stream. [`Head`] splits a raw head into its start line and fields
//! without judging it. [`Client`] writes raw request bytes to the proxy and reads back a
//! [`Response`]: the status line checked by `httparse`, interim 1xx heads kept, the body decoded
//! and [`Framing`] saying how it was delimited. [`get`] writes the simplest request. The origins of
//! module `origins` read what ringwall sends them through the same [`Wire`].

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Read and write timeout of every socket the harness opens.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
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

pub(super) fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

pub(super) fn early_eof(what: &str) -> io::Error {
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
