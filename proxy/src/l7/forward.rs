//! The heads ringwall writes: the request it sends upstream and the response it sends back.
//!
//! Both are rebuilt field by field from the parsed head, never forwarded as raw bytes, so that
//! framing is always ringwall's own: hop-by-hop fields (RFC 9110 §7.6.1) and the origin's or
//! client's framing fields are dropped, and ringwall writes `Content-Length` or
//! `Transfer-Encoding` for the body it will actually send. Requests gain `X-Forwarded-For`,
//! `X-Forwarded-Proto`, `X-Forwarded-Host` and `Via`; responses gain `Via`.

use std::fmt::Write as _;
use std::net::IpAddr;

use bytes::{BufMut, BytesMut};

use crate::http1::{RequestHead, ResponseHead, Version};

/// How a body is framed on the wire ringwall writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutFraming {
    /// No body and no framing field (204, 304, 1xx, responses to HEAD).
    None,
    Length(u64),
    Chunked,
    /// The body ends when ringwall closes the connection (HTTP/1.0 clients).
    Close,
}

/// What the upstream request head needs beyond the client's head.
pub struct RequestRewrite<'a> {
    pub client_ip: IpAddr,
    /// The Host to send: the route's rewrite, else the client's host.
    pub host: &'a [u8],
    pub framing: OutFraming,
}

/// Writes the request head for the origin into `out`.
pub fn write_request_head(out: &mut BytesMut, head: &RequestHead, rewrite: &RequestRewrite<'_>) {
    out.put_slice(head.method_bytes());
    out.put_u8(b' ');
    put_origin_form(out, head.target());
    out.put_slice(b" HTTP/1.1\r\n");
    put_field(out, b"Host", rewrite.host);
    let mut forwarded_for: Option<&[u8]> = None;
    let mut via: Option<&[u8]> = None;
    for (name, value) in head.forwardable_fields() {
        if name.eq_ignore_ascii_case(b"host")
            || name.eq_ignore_ascii_case(b"x-forwarded-proto")
            || name.eq_ignore_ascii_case(b"x-forwarded-host")
        {
            continue;
        }
        if name.eq_ignore_ascii_case(b"x-forwarded-for") {
            forwarded_for = Some(value);
            continue;
        }
        if name.eq_ignore_ascii_case(b"via") {
            via = Some(value);
            continue;
        }
        put_field(out, name, value);
    }
    out.put_slice(b"X-Forwarded-For: ");
    if let Some(previous) = forwarded_for {
        out.put_slice(previous);
        out.put_slice(b", ");
    }
    let _ = write!(ByteWriter(out), "{}", rewrite.client_ip);
    out.put_slice(b"\r\nX-Forwarded-Proto: http\r\n");
    if let Some(host) = head.host() {
        put_field(out, b"X-Forwarded-Host", host);
    }
    put_via(out, via, head.version());
    put_framing(out, rewrite.framing);
    out.put_slice(b"\r\n");
}

/// Writes the response head for the client into `out`.
pub fn write_response_head(
    out: &mut BytesMut,
    head: &ResponseHead,
    framing: OutFraming,
    connection: Option<&[u8]>,
) {
    out.put_slice(b"HTTP/1.1 ");
    let _ = write!(ByteWriter(out), "{}", head.status());
    out.put_u8(b' ');
    out.put_slice(head.reason());
    out.put_slice(b"\r\n");
    let mut via: Option<&[u8]> = None;
    for (name, value) in head.forwardable_fields() {
        if name.eq_ignore_ascii_case(b"via") {
            via = Some(value);
            continue;
        }
        put_field(out, name, value);
    }
    put_via(out, via, head.version());
    if framing == OutFraming::None && !head.is_informational() && head.status() != 204 {
        // A response to HEAD, or a 304, keeps the origin's Content-Length: it describes the
        // representation, not this message's (RFC 9110 §8.6).
        if let Some(length) = head.field("content-length") {
            put_field(out, b"Content-Length", length);
        }
    }
    put_framing(out, framing);
    if let Some(connection) = connection {
        put_field(out, b"Connection", connection);
    }
    out.put_slice(b"\r\n");
}

/// Writes the request-target to send upstream: origin-form, also for an absolute-form target
/// (`http://h/p?q` → `/p?q`, `http://h?q` → `/?q`, `http://h` → `/`).
pub fn put_origin_form(out: &mut BytesMut, target: &[u8]) {
    let scheme_len = if starts_with_ignore_case(target, b"http://") {
        7
    } else if starts_with_ignore_case(target, b"https://") {
        8
    } else {
        out.put_slice(target);
        return;
    };
    let rest = &target[scheme_len..];
    match rest.iter().position(|&b| b == b'/' || b == b'?') {
        Some(i) if rest[i] == b'/' => out.put_slice(&rest[i..]),
        Some(i) => {
            out.put_u8(b'/');
            out.put_slice(&rest[i..]);
        }
        None => out.put_u8(b'/'),
    }
}

fn starts_with_ignore_case(haystack: &[u8], prefix: &[u8]) -> bool {
    haystack.len() >= prefix.len() && haystack[..prefix.len()].eq_ignore_ascii_case(prefix)
}

fn put_field(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    out.put_slice(name);
    out.put_slice(b": ");
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

fn put_via(out: &mut BytesMut, previous: Option<&[u8]>, received: Version) {
    out.put_slice(b"Via: ");
    if let Some(previous) = previous {
        out.put_slice(previous);
        out.put_slice(b", ");
    }
    out.put_slice(match received {
        Version::Http10 => b"1.0 ringwall\r\n",
        Version::Http11 => b"1.1 ringwall\r\n",
    });
}

fn put_framing(out: &mut BytesMut, framing: OutFraming) {
    match framing {
        OutFraming::Length(n) => {
            out.put_slice(b"Content-Length: ");
            let _ = write!(ByteWriter(out), "{n}");
            out.put_slice(b"\r\n");
        }
        OutFraming::Chunked => out.put_slice(b"Transfer-Encoding: chunked\r\n"),
        OutFraming::None | OutFraming::Close => {}
    }
}

/// `fmt::Write` into a `BytesMut`, for numbers and addresses.
struct ByteWriter<'a>(&'a mut BytesMut);

impl std::fmt::Write for ByteWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.put_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin_form(target: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        put_origin_form(&mut out, target);
        out.to_vec()
    }

    #[test]
    fn absolute_form_becomes_origin_form() {
        assert_eq!(origin_form(b"/a?b"), b"/a?b");
        assert_eq!(origin_form(b"http://h/a?b"), b"/a?b");
        assert_eq!(origin_form(b"HTTPS://h:1/x"), b"/x");
        assert_eq!(origin_form(b"http://h"), b"/");
        assert_eq!(origin_form(b"http://h?q"), b"/?q");
        assert_eq!(origin_form(b"*"), b"*");
    }
}
