//! Writing heads: the request ringwall sends upstream, the response it sends back, and the
//! responses it makes itself.
//!
//! A parsed head stays as it was read (zero-copy spans into the frozen bytes). What filters
//! change is kept beside it in a [`HeadOverlay`]: names of fields to leave out, fields to add,
//! and a replacement request-target. The encoder walks the parsed fields, skips the removed
//! ones, writes the added ones after them, then the framing it was told to use. Framing is
//! always ringwall's own: hop-by-hop fields (RFC 9110 §7.6.1) and the peer's framing fields
//! never pass (the codec marks them unforwardable), and `Content-Length` or
//! `Transfer-Encoding` is written for the body that will actually be sent. The encoder holds
//! no header policy of its own: `X-Forwarded-*`, `Via` and the like are filters.

use std::time::SystemTime;

use bytes::{BufMut, Bytes, BytesMut};

use super::{RequestHead, ResponseHead};

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

/// A field name in an overlay: a static one (what filters mostly write, free to copy and to
/// drop) or one shared from the configuration.
#[derive(Clone, Debug)]
pub enum FieldName {
    Static(&'static [u8]),
    Shared(Bytes),
}

impl std::ops::Deref for FieldName {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            FieldName::Static(name) => name,
            FieldName::Shared(name) => name,
        }
    }
}

impl<const N: usize> From<&'static [u8; N]> for FieldName {
    fn from(name: &'static [u8; N]) -> Self {
        FieldName::Static(name)
    }
}

impl From<Bytes> for FieldName {
    fn from(name: Bytes) -> Self {
        FieldName::Shared(name)
    }
}

/// Edits to a parsed head, applied when it is written. Names compare case-insensitively.
///
/// Added fields are kept as the wire lines the encoder writes (`Name: value\r\n`), one after
/// another in one buffer: while none of them was removed again, the encoder copies all of them
/// in one piece.
#[derive(Clone, Debug, Default)]
pub struct HeadOverlay {
    /// Names of the parsed head's fields that are not written.
    removed: Vec<FieldName>,
    /// Fields written after the parsed head's, in order: where the line starts in `lines`,
    /// where its value starts, where the value ends (before its CRLF).
    added: Vec<(u32, u32, u32)>,
    /// The added fields' lines.
    lines: Vec<u8>,
    /// Every line of `lines` is still in `added`, in order.
    contiguous: bool,
    /// A request-target written instead of the parsed one.
    target: Option<Bytes>,
}

impl HeadOverlay {
    /// Leaves out every field called `name`, the parsed ones and those added so far.
    pub fn remove(&mut self, name: impl Into<FieldName>) {
        let name = name.into();
        let before = self.added.len();
        let lines = &self.lines;
        self.added.retain(|&(start, value, _)| {
            !lines[start as usize..value as usize - 2].eq_ignore_ascii_case(&name)
        });
        if self.added.len() != before {
            self.contiguous = false;
        }
        if !self.is_removed(&name) {
            self.removed.push(name);
        }
    }

    /// Replaces every field called `name` with one holding `value`.
    pub fn set(&mut self, name: impl Into<FieldName>, value: &[u8]) {
        self.set_with(name, |out| out.extend_from_slice(value));
    }

    /// Like [`Self::set`], with the value written by `write` straight into the overlay (no
    /// buffer of its own).
    pub fn set_with(&mut self, name: impl Into<FieldName>, write: impl FnOnce(&mut Vec<u8>)) {
        let name = name.into();
        self.remove(name.clone());
        self.add_with(name, write);
    }

    /// Adds a field called `name` after the others, keeping those of the same name.
    pub fn add(&mut self, name: impl Into<FieldName>, value: &[u8]) {
        self.add_with(name, |out| out.extend_from_slice(value));
    }

    /// Like [`Self::add`], with the value written by `write` straight into the overlay.
    pub fn add_with(&mut self, name: impl Into<FieldName>, write: impl FnOnce(&mut Vec<u8>)) {
        if self.added.is_empty() && self.lines.is_empty() {
            self.contiguous = true;
        }
        let start = self.lines.len() as u32;
        self.lines.extend_from_slice(&name.into());
        self.lines.extend_from_slice(b": ");
        let value = self.lines.len() as u32;
        write(&mut self.lines);
        let end = self.lines.len() as u32;
        self.lines.extend_from_slice(b"\r\n");
        self.added.push((start, value, end));
    }

    /// Whether the parsed head's fields called `name` are left out.
    pub fn is_removed(&self, name: &[u8]) -> bool {
        self.removed.iter().any(|r| r.eq_ignore_ascii_case(name))
    }

    /// The fields added, in order.
    pub fn added(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.added.iter().map(|&(start, value, end)| {
            (
                &self.lines[start as usize..value as usize - 2],
                &self.lines[value as usize..end as usize],
            )
        })
    }

    /// Writes the added fields as wire lines: in one piece while none was removed again.
    fn put_added(&self, out: &mut BytesMut) {
        if self.contiguous {
            out.put_slice(&self.lines);
            return;
        }
        for &(start, _, end) in &self.added {
            out.put_slice(&self.lines[start as usize..end as usize + 2]);
        }
    }

    /// The value a reader of the written head would see first for `name`: the parsed head's
    /// first such field unless removed, else the first added.
    pub fn get<'a>(
        &'a self,
        mut parsed: impl Iterator<Item = (&'a [u8], &'a [u8])>,
        name: &[u8],
    ) -> Option<&'a [u8]> {
        if !self.is_removed(name) {
            if let Some((_, value)) = parsed.find(|(n, _)| n.eq_ignore_ascii_case(name)) {
                return Some(value);
            }
        }
        self.added()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    }

    /// Writes `target` instead of the parsed request-target.
    pub fn set_target(&mut self, target: Bytes) {
        self.target = Some(target);
    }

    /// The replacement request-target, if a filter or the path normalization set one.
    pub fn target(&self) -> Option<&[u8]> {
        self.target.as_deref()
    }

    /// Forgets every edit and keeps the allocations, for the next request.
    pub fn clear(&mut self) {
        self.removed.clear();
        self.added.clear();
        self.lines.clear();
        self.contiguous = false;
        self.target = None;
    }
}

/// What the upstream request head needs beyond the parsed head and its overlay.
pub struct RequestFraming<'a> {
    /// The `Host` to send (written first, as RFC 9112 §3.2 recommends).
    pub host: &'a [u8],
    pub framing: OutFraming,
    /// The protocol of an upgrade to pass on (`Connection: upgrade` and `Upgrade` are then
    /// written); `None` for an ordinary request.
    pub upgrade: Option<&'a [u8]>,
}

/// Writes the request head for the origin into `out`: always HTTP/1.1, origin-form target.
pub fn write_request_head(
    out: &mut BytesMut,
    head: &RequestHead,
    overlay: &HeadOverlay,
    request: &RequestFraming<'_>,
) {
    out.put_slice(head.method_bytes());
    out.put_u8(b' ');
    match overlay.target() {
        Some(target) => out.put_slice(target),
        None => put_origin_form(out, head.target()),
    }
    out.put_slice(b" HTTP/1.1\r\n");
    put_field(out, b"Host", request.host);
    for (name, value) in head.forwardable_fields() {
        if !name.eq_ignore_ascii_case(b"host") && !overlay.is_removed(name) {
            put_field(out, name, value);
        }
    }
    // Host is written first, from `request.host`: no filter adds one (the configuration
    // refuses edits of Host).
    overlay.put_added(out);
    if let Some(protocol) = request.upgrade {
        put_field(out, b"Connection", b"upgrade");
        put_field(out, b"Upgrade", protocol);
    }
    put_framing(out, request.framing);
    out.put_slice(b"\r\n");
}

/// Writes the response head for the client into `out`. `connection` is the `Connection` value
/// to send, if any; a `101` passes its `Upgrade` on with `Connection: upgrade`.
pub fn write_response_head(
    out: &mut BytesMut,
    head: &ResponseHead,
    overlay: &HeadOverlay,
    framing: OutFraming,
    connection: Option<&[u8]>,
) {
    out.put_slice(b"HTTP/1.1 ");
    put_number(out, u64::from(head.status()));
    out.put_u8(b' ');
    out.put_slice(head.reason());
    out.put_slice(b"\r\n");
    for (name, value) in head.forwardable_fields() {
        if !overlay.is_removed(name) {
            put_field(out, name, value);
        }
    }
    overlay.put_added(out);
    if framing == OutFraming::None && !head.is_informational() && head.status() != 204 {
        // A response to HEAD, or a 304, keeps the origin's Content-Length: it describes the
        // representation, not this message's (RFC 9110 §8.6); unless a filter took it out
        // (the representation sent is another, compressed one).
        if let Some(length) = head
            .field("content-length")
            .filter(|_| !overlay.is_removed(b"content-length"))
        {
            put_field(out, b"Content-Length", length);
        }
    }
    put_framing(out, framing);
    if let Some(protocol) = head.upgrade().filter(|_| head.status() == 101) {
        put_field(out, b"Connection", b"upgrade");
        put_field(out, b"Upgrade", protocol);
    } else if let Some(connection) = connection {
        put_field(out, b"Connection", connection);
    }
    out.put_slice(b"\r\n");
}

/// A response ringwall makes itself: an error, a static `return`, a redirect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalResponse {
    pub status: u16,
    /// Fields beyond the ones every local response carries (`Date`, `Server`,
    /// `Content-Length`, `Connection`).
    pub fields: Vec<(Bytes, Bytes)>,
    pub body: Bytes,
}

impl LocalResponse {
    /// A `text/plain` response with `body`.
    pub fn text(status: u16, body: impl Into<Bytes>) -> Self {
        Self {
            status,
            fields: vec![(
                Bytes::from_static(b"Content-Type"),
                Bytes::from_static(b"text/plain; charset=utf-8"),
            )],
            body: body.into(),
        }
    }

    /// The reason phrase's text as a body: what ringwall answers its errors with.
    pub fn status_page(status: u16) -> Self {
        let reason = reason_phrase(status);
        let mut body = String::with_capacity(reason.len() + 1);
        body.push_str(reason);
        body.push('\n');
        Self::text(status, body)
    }
}

/// Writes a [`LocalResponse`] with its overlay. `head_only` leaves the body out (a response to
/// `HEAD`); `connection` is the `Connection` value to send.
pub fn write_local_response(
    out: &mut BytesMut,
    response: &LocalResponse,
    overlay: &HeadOverlay,
    connection: &[u8],
    head_only: bool,
) {
    out.put_slice(b"HTTP/1.1 ");
    put_number(out, u64::from(response.status));
    out.put_u8(b' ');
    out.put_slice(reason_phrase(response.status).as_bytes());
    out.put_slice(b"\r\n");
    let date = http_date(SystemTime::now());
    put_field(out, b"Date", date.as_bytes());
    put_field(out, b"Server", b"ringwall");
    for (name, value) in &response.fields {
        if !overlay.is_removed(name) {
            put_field(out, name, value);
        }
    }
    overlay.put_added(out);
    let no_body = response.status == 204 || response.status == 304 || response.status < 200;
    if !no_body {
        put_framing(out, OutFraming::Length(response.body.len() as u64));
    }
    put_field(out, b"Connection", connection);
    out.put_slice(b"\r\n");
    if !head_only && !no_body {
        out.put_slice(&response.body);
    }
}

/// The reason phrase ringwall writes for the statuses it makes itself (RFC 9110 §15).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Content Too Large",
        414 => "URI Too Long",
        417 => "Expectation Failed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Status",
    }
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
    out.put_u16(u16::from_be_bytes(*b": "));
    out.put_slice(value);
    out.put_u16(u16::from_be_bytes(*b"\r\n"));
}

fn put_number(out: &mut BytesMut, n: u64) {
    put_decimal(out, n);
}

/// Writes `n` in decimal, without the formatting machinery (this runs for every response).
pub fn put_decimal<B: BufMut>(out: &mut B, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&digits[at..]);
}

/// Writes an address the way `Display` does (`192.0.2.7`, `2001:db8::1`); IPv4, the common
/// case on every request with forwarding fields, without the formatting machinery.
pub fn put_ip<B: BufMut>(out: &mut B, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let mut text = [0u8; 15];
            let mut len = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text[len] = b'.';
                    len += 1;
                }
                if octet >= 100 {
                    text[len] = b'0' + octet / 100;
                    len += 1;
                }
                if octet >= 10 {
                    text[len] = b'0' + octet / 10 % 10;
                    len += 1;
                }
                text[len] = b'0' + octet % 10;
                len += 1;
            }
            out.put_slice(&text[..len]);
        }
        std::net::IpAddr::V6(v6) => out.put_slice(v6.to_string().as_bytes()),
    }
}

fn put_framing(out: &mut BytesMut, framing: OutFraming) {
    match framing {
        OutFraming::Length(n) => {
            out.put_slice(b"Content-Length: ");
            put_number(out, n);
            out.put_slice(b"\r\n");
        }
        OutFraming::Chunked => out.put_slice(b"Transfer-Encoding: chunked\r\n"),
        OutFraming::None | OutFraming::Close => {}
    }
}

/// An IMF-fixdate (RFC 9110 §5.6.7), `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(now: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    let t = Civil::of(now);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[t.days_since_epoch % 7],
        t.day,
        MONTHS[t.month - 1],
        t.year,
        t.hour,
        t.minute,
        t.second
    )
}

/// Month names as HTTP dates and nginx's logs write them.
pub const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A UTC calendar date and time of day, to the second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    /// 1 to 12.
    pub month: usize,
    pub day: i64,
    pub hour: u64,
    pub minute: u64,
    pub second: u64,
    pub days_since_epoch: usize,
}

impl Civil {
    pub fn of(now: SystemTime) -> Self {
        let secs = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let days = secs / 86_400;
        // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
        let z = i64::try_from(days).unwrap_or(0) + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        Civil {
            year: yoe + era * 400 + i64::from(month <= 2),
            month: usize::try_from(month).unwrap_or(1),
            day,
            hour: secs % 86_400 / 3600,
            minute: secs % 3600 / 60,
            second: secs % 60,
            days_since_epoch: usize::try_from(days).unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::http1::{parse_request, parse_response, HeadLimits, Method};

    fn origin_form(target: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        put_origin_form(&mut out, target);
        out.to_vec()
    }

    fn request(raw: &[u8]) -> RequestHead {
        parse_request(&mut BytesMut::from(raw), &HeadLimits::default())
            .unwrap()
            .unwrap()
    }

    fn written_request(raw: &[u8], overlay: &HeadOverlay, upgrade: Option<&[u8]>) -> String {
        let head = request(raw);
        let mut out = BytesMut::new();
        write_request_head(
            &mut out,
            &head,
            overlay,
            &RequestFraming {
                host: b"origin.test",
                framing: OutFraming::None,
                upgrade,
            },
        );
        String::from_utf8(out.to_vec()).unwrap()
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

    #[test]
    fn without_an_overlay_the_head_passes_with_only_its_framing_changed() {
        let written = written_request(
            b"GET /p?q HTTP/1.1\r\nHost: a\r\nX-One: 1\r\nConnection: close\r\nX-Two: 2\r\n\r\n",
            &HeadOverlay::default(),
            None,
        );
        assert_eq!(
            written,
            "GET /p?q HTTP/1.1\r\nHost: origin.test\r\nX-One: 1\r\nX-Two: 2\r\n\r\n"
        );
    }

    #[test]
    fn the_overlay_removes_sets_adds_and_retargets() {
        let mut overlay = HeadOverlay::default();
        overlay.remove(b"x-one");
        overlay.set(b"X-Two", b"two");
        overlay.add(b"X-Three", b"3");
        overlay.add(b"X-Three", b"33");
        overlay.set_target(Bytes::from_static(b"/new?q"));
        let written = written_request(
            b"GET /p?q HTTP/1.1\r\nHost: a\r\nX-One: 1\r\nX-Two: 2\r\nX-Two: 22\r\nX-Keep: k\r\n\r\n",
            &overlay,
            None,
        );
        assert_eq!(
            written,
            "GET /new?q HTTP/1.1\r\nHost: origin.test\r\nX-Keep: k\r\nX-Two: two\r\nX-Three: 3\r\nX-Three: 33\r\n\r\n"
        );
        let head = request(b"GET / HTTP/1.1\r\nHost: a\r\nX-One: 1\r\nX-Keep: k\r\n\r\n");
        // Names may be static or shared.
        assert_eq!(overlay.get(head.fields(), b"X-KEEP"), Some(&b"k"[..]));
        assert_eq!(overlay.get(head.fields(), b"x-one"), None);
        assert_eq!(overlay.get(head.fields(), b"x-three"), Some(&b"3"[..]));
        // Removing after adding drops the added ones too.
        overlay.remove(b"X-THREE");
        assert_eq!(overlay.get(head.fields(), b"x-three"), None);
    }

    #[test]
    fn an_upgrade_is_passed_on_explicitly() {
        let written = written_request(
            b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\n\r\n",
            &HeadOverlay::default(),
            Some(b"websocket"),
        );
        assert_eq!(
            written,
            "GET /ws HTTP/1.1\r\nHost: origin.test\r\nSec-WebSocket-Key: k\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
        );
    }

    #[test]
    fn a_101_keeps_its_upgrade_fields() {
        let head = parse_response(
            &mut BytesMut::from(&b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n"[..]),
            &HeadLimits::default(),
            Method::Get,
        )
        .unwrap()
        .unwrap();
        let mut out = BytesMut::new();
        write_response_head(
            &mut out,
            &head,
            &HeadOverlay::default(),
            OutFraming::None,
            None,
        );
        assert_eq!(
            &out[..],
            &b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"[..]
        );
    }

    #[test]
    fn local_responses_carry_date_length_and_connection() {
        let mut out = BytesMut::new();
        write_local_response(
            &mut out,
            &LocalResponse::status_page(404),
            &HeadOverlay::default(),
            b"keep-alive",
            false,
        );
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 404 Not Found\r\nDate: "),
            "{text}"
        );
        assert!(text.contains(" GMT\r\nServer: ringwall\r\n"), "{text}");
        assert!(text.contains("Content-Length: 10\r\n"), "{text}");
        assert!(
            text.ends_with("Connection: keep-alive\r\n\r\nNot Found\n"),
            "{text}"
        );
        let mut head_only = BytesMut::new();
        write_local_response(
            &mut head_only,
            &LocalResponse::status_page(404),
            &HeadOverlay::default(),
            b"close",
            true,
        );
        assert!(head_only.ends_with(b"Connection: close\r\n\r\n"));
    }

    #[test]
    fn numbers_and_addresses_are_written_as_display_writes_them() {
        for n in [0, 7, 10, 99, 100, 12_345, u64::MAX] {
            let mut out = Vec::new();
            put_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
        for ip in [
            "0.0.0.0",
            "192.0.2.7",
            "255.255.255.255",
            "10.20.0.3",
            "2001:db8::1",
            "::1",
            "::ffff:1.2.3.4",
        ] {
            let mut out = Vec::new();
            put_ip(&mut out, ip.parse().unwrap());
            assert_eq!(out, ip.as_bytes());
        }
    }

    #[test]
    fn dates_are_imf_fixdate() {
        let at = |secs| http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(at(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(at(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(at(1_796_083_200), "Tue, 01 Dec 2026 00:00:00 GMT");
    }
}
