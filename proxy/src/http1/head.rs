//! Parsing of HTTP/1.x message heads: the request head a client sends and the response head an
//! upstream sends back.
//!
//! [`parse_request`] and [`parse_response`] run `httparse` over the front of a `BytesMut`. Once a
//! head is complete and valid they split exactly the head bytes off the buffer and freeze them,
//! so what stays in the buffer is body or pipelined data. A parsed head ([`RequestHead`],
//! [`ResponseHead`]) keeps those frozen bytes plus `u32` spans into them: one `Vec` of field
//! spans per head and no copy of any name or value. Both roles go through one field pass
//! (`index_fields`) that checks the line endings, decides the body framing ([`BodyKind`]), reads
//! `Connection` and marks which fields may be forwarded; the start lines and the few
//! role-specific rules (request `Host` and `Expect`, the response body rules of RFC 9112 §6.3)
//! sit around that pass.
//!
//! The parser is strict on purpose: a proxy that reads a head differently from the server
//! behind it lets a client smuggle a second request past it. So every line must end in CRLF,
//! `Content-Length` and `Transfer-Encoding` must be unambiguous, and anything `httparse`
//! tolerates that RFC 9112 does not (non-ASCII request-targets, bare LF, unbounded empty lines
//! before the request line) is refused here.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use httparse::{Header, ParserConfig, Status};

use super::error::CodecError;

/// Header slots kept on the stack for `httparse`; a larger `max_headers` costs one allocation
/// per parse attempt.
const STACK_HEADER_SLOTS: usize = 128;
/// RFC 9112 §2.2 asks servers to skip "at least one" empty line before a request line (old
/// clients sent a stray CRLF after a POST body); a few more are tolerated, a stream of them is
/// garbage.
const MAX_LEADING_EMPTY_LINES: usize = 4;
/// Room for the method, the two spaces and the version around the target while the request
/// line is still incomplete.
const REQUEST_LINE_SLACK: usize = 32;
/// `" HTTP/1.1"`: what follows the target on a request line that `httparse` accepted.
const SP_VERSION_LEN: usize = 9;
/// `"HTTP/1.1 200"`: the start of a status line that `httparse` accepted.
const VERSION_SP_STATUS_LEN: usize = 12;

/// Size limits applied while a head is read; each one names the error it produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadLimits {
    /// Largest head in bytes (start line, field lines and the final empty line, plus any empty
    /// lines before the start line). Beyond it: [`CodecError::HeadTooLarge`].
    pub max_head: usize,
    /// Most field lines in one head. Beyond it: [`CodecError::TooManyHeaders`].
    pub max_headers: usize,
    /// Longest request-target in bytes. Beyond it: [`CodecError::UriTooLong`].
    pub max_uri: usize,
}

impl Default for HeadLimits {
    /// 16 KiB heads, 100 fields, 8 KiB targets: what mainstream servers accept by default.
    fn default() -> Self {
        Self {
            max_head: 16 * 1024,
            max_headers: 100,
            max_uri: 8 * 1024,
        }
    }
}

/// The HTTP versions this codec speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

impl Version {
    fn from_minor(minor: u8) -> Self {
        if minor == 0 {
            Self::Http10
        } else {
            Self::Http11
        }
    }
}

/// A request method. Methods are case-sensitive (RFC 9110 §9.1): `get` is [`Method::Other`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Connect,
    Options,
    Trace,
    Patch,
    /// Any other token; [`RequestHead::method_bytes`] has its spelling.
    Other,
}

impl Method {
    fn from_token(token: &[u8]) -> Self {
        match token {
            b"GET" => Self::Get,
            b"HEAD" => Self::Head,
            b"POST" => Self::Post,
            b"PUT" => Self::Put,
            b"DELETE" => Self::Delete,
            b"CONNECT" => Self::Connect,
            b"OPTIONS" => Self::Options,
            b"TRACE" => Self::Trace,
            b"PATCH" => Self::Patch,
            _ => Self::Other,
        }
    }
}

/// How the body after a head is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// No body at all.
    Empty,
    /// Exactly this many bytes (`Content-Length`; zero is kept so it can be re-sent).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Everything until the peer closes (responses only).
    UntilClose,
}

/// Is `name` a hop-by-hop field that a proxy never forwards, whatever `Connection` says?
/// Case-insensitive.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    match name.len() {
        2 => name.eq_ignore_ascii_case(b"te"),
        7 => name.eq_ignore_ascii_case(b"upgrade") || name.eq_ignore_ascii_case(b"trailer"),
        10 => name.eq_ignore_ascii_case(b"connection") || name.eq_ignore_ascii_case(b"keep-alive"),
        16 => name.eq_ignore_ascii_case(b"proxy-connection"),
        17 => name.eq_ignore_ascii_case(b"transfer-encoding"),
        _ => false,
    }
}

/// `tchar` of RFC 9110 §5.6.2.
static TOKEN_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        table[byte] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        byte += 1;
    }
    table
};

/// Is `byte` a `tchar` (a byte allowed in a token such as a field name)?
pub(super) fn is_token_byte(byte: u8) -> bool {
    TOKEN_BYTES[usize::from(byte)]
}

/// Bytes of a `reg-name` (RFC 3986 §3.2.2: unreserved, sub-delims and `%`).
static REG_NAME_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        table[byte] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b'%'
            );
        byte += 1;
    }
    table
};

/// A byte range of the frozen head. `u32` keeps a field entry small; heads are bounded by
/// `HeadLimits::max_head`, which is checked against `u32::MAX`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    fn new(start: usize, end: usize) -> Self {
        Self {
            start: start as u32,
            end: end as u32,
        }
    }

    /// The span of `part` inside `base`; `part` must be a subslice of `base` (as everything
    /// `httparse` returns is a subslice of the buffer it was given).
    fn of(base: &[u8], part: &[u8]) -> Self {
        let start = (part.as_ptr() as usize).wrapping_sub(base.as_ptr() as usize);
        debug_assert!(start <= base.len() && part.len() <= base.len() - start);
        Self::new(start, start + part.len())
    }

    fn get(self, bytes: &[u8]) -> &[u8] {
        &bytes[self.start as usize..self.end as usize]
    }

    fn len(self) -> usize {
        (self.end - self.start) as usize
    }
}

/// One field line: where its name and value are, and whether a proxy may forward it.
#[derive(Clone, Copy, Debug)]
struct FieldLine {
    name: Span,
    value: Span,
    forwardable: bool,
}

/// The frozen head bytes and the index of its field lines; shared by both roles.
#[derive(Clone, Debug)]
struct IndexedHead {
    bytes: Bytes,
    fields: Vec<FieldLine>,
}

impl IndexedHead {
    fn slice(&self, span: Span) -> &[u8] {
        span.get(&self.bytes)
    }

    fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.fields
            .iter()
            .map(|line| (self.slice(line.name), self.slice(line.value)))
    }

    fn field(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|line| {
                line.name.len() == name.len()
                    && self.slice(line.name).eq_ignore_ascii_case(name.as_bytes())
            })
            .map(|line| self.slice(line.value))
    }

    fn forwardable_fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.fields
            .iter()
            .filter(|line| line.forwardable)
            .map(|line| (self.slice(line.name), self.slice(line.value)))
    }
}

/// Which side sent the head; selects the role-specific field rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Request,
    Response,
}

/// What the field lines say about framing, the connection and (for requests) `Host`/`Expect`.
#[derive(Debug, Default)]
struct FieldSummary {
    content_length: Option<u64>,
    chunked: bool,
    close: bool,
    keep_alive: bool,
    host: Option<Span>,
    expect_continue: bool,
    /// A `Transfer-Encoding` field was present.
    transfer_encoding: bool,
    /// The last transfer-coding seen so far is `chunked`.
    chunked_last: bool,
    /// A transfer-coding other than `chunked` was named.
    unknown_coding: bool,
    /// `Connection` carries the `upgrade` option.
    connection_upgrade: bool,
    /// The `Upgrade` field's value (RFC 9110 §7.8).
    upgrade: Option<Span>,
}

impl FieldSummary {
    /// HTTP/1.1 connections persist unless closed; HTTP/1.0 ones only when asked to.
    fn persistent(&self, version: Version) -> bool {
        !self.close && (version == Version::Http11 || self.keep_alive)
    }

    /// The protocols named by `Upgrade` when `Connection` also says `upgrade`; HTTP/1.0
    /// upgrades are ignored (RFC 9110 §7.8).
    fn upgrade(&self, version: Version) -> Option<Span> {
        self.upgrade
            .filter(|span| self.connection_upgrade && version == Version::Http11 && span.len() > 0)
    }
}

/// The request-target forms of RFC 9112 §3.2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TargetForm {
    Origin,
    Absolute,
    Authority,
    Asterisk,
}

/// A parsed request head. Accessors return slices of the head bytes; nothing was copied.
#[derive(Clone, Debug)]
pub struct RequestHead {
    head: IndexedHead,
    method: Method,
    method_span: Span,
    target: Span,
    target_form: TargetForm,
    path: Span,
    host: Option<Span>,
    version: Version,
    body: BodyKind,
    keep_alive: bool,
    expect_continue: bool,
    upgrade: Option<Span>,
}

impl RequestHead {
    pub fn method(&self) -> Method {
        self.method
    }

    /// The method token as sent (useful for [`Method::Other`]).
    pub fn method_bytes(&self) -> &[u8] {
        self.head.slice(self.method_span)
    }

    /// The raw request-target.
    pub fn target(&self) -> &[u8] {
        self.head.slice(self.target)
    }

    /// The path of the target without the query: `/p` for `/p?q` and for `http://h/p?q`, `/`
    /// for `http://h` or `http://h?q`, `*` for `OPTIONS *`, empty for a `CONNECT` target.
    pub fn path(&self) -> &[u8] {
        if self.target_form == TargetForm::Absolute && self.path.len() == 0 {
            b"/"
        } else {
            self.head.slice(self.path)
        }
    }

    pub fn version(&self) -> Version {
        self.version
    }

    /// The authority of an absolute-form or `CONNECT` target if there is one (a `Host` field
    /// then matched it), else the `Host` field value; `None` only on HTTP/1.0 without `Host`.
    pub fn host(&self) -> Option<&[u8]> {
        self.host.map(|span| self.head.slice(span))
    }

    /// All field lines in order, duplicates kept.
    pub fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.head.fields()
    }

    /// The value of the first field called `name` (case-insensitive).
    pub fn field(&self, name: &str) -> Option<&[u8]> {
        self.head.field(name)
    }

    /// The fields a proxy may pass on: all but the hop-by-hop ones ([`is_hop_by_hop`] and those
    /// named by `Connection`), `Content-Length`, `Transfer-Encoding` and `Expect`. Framing is
    /// re-derived from [`Self::body`] when the request is written upstream.
    pub fn forwardable_fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.head.forwardable_fields()
    }

    /// `Empty`, `Length(n)` or `Chunked`; never `UntilClose`.
    pub fn body(&self) -> BodyKind {
        self.body
    }

    /// HTTP/1.1: unless `Connection: close`; HTTP/1.0: only with `Connection: keep-alive`.
    pub fn keep_alive(&self) -> bool {
        self.keep_alive
    }

    /// `Expect: 100-continue` on an HTTP/1.1 request.
    pub fn expect_continue(&self) -> bool {
        self.expect_continue
    }

    /// The `Upgrade` value (`websocket`) of an HTTP/1.1 request that asks to switch protocols
    /// (`Connection: upgrade` and `Upgrade` both present).
    pub fn upgrade(&self) -> Option<&[u8]> {
        self.upgrade.map(|span| self.head.slice(span))
    }

    /// Bytes the head took off the buffer, including empty lines skipped before it.
    pub fn head_len(&self) -> usize {
        self.head.bytes.len()
    }
}

/// A parsed response head. Accessors return slices of the head bytes; nothing was copied.
#[derive(Clone, Debug)]
pub struct ResponseHead {
    head: IndexedHead,
    status: u16,
    reason: Span,
    version: Version,
    body: BodyKind,
    keep_alive: bool,
    upgrade: Option<Span>,
}

impl ResponseHead {
    /// The status code, 100 to 599.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The reason phrase as sent (may be empty).
    pub fn reason(&self) -> &[u8] {
        self.head.slice(self.reason)
    }

    pub fn version(&self) -> Version {
        self.version
    }

    /// All field lines in order, duplicates kept.
    pub fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.head.fields()
    }

    /// The value of the first field called `name` (case-insensitive).
    pub fn field(&self, name: &str) -> Option<&[u8]> {
        self.head.field(name)
    }

    /// All fields but the hop-by-hop ones ([`is_hop_by_hop`] and those named by `Connection`),
    /// `Content-Length` and `Transfer-Encoding`.
    pub fn forwardable_fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.head.forwardable_fields()
    }

    /// RFC 9112 §6.3: `Empty` after a `HEAD` request, for 1xx, 204 and 304, and for a 2xx to
    /// `CONNECT` (the connection would become a tunnel); then `Chunked`, `Length(n)`, or else
    /// `UntilClose`.
    pub fn body(&self) -> BodyKind {
        self.body
    }

    /// The same rule as for requests, and false for `UntilClose` bodies, 101 and a 2xx to
    /// `CONNECT` (the connection is no longer HTTP after those).
    pub fn keep_alive(&self) -> bool {
        self.keep_alive
    }

    /// The protocol a `101 Switching Protocols` response switches to (its `Upgrade` value,
    /// with `Connection: upgrade`).
    pub fn upgrade(&self) -> Option<&[u8]> {
        self.upgrade.map(|span| self.head.slice(span))
    }

    /// An interim 1xx response after which the final response follows. 101 is not interim: it
    /// is the final response of an upgrade.
    pub fn is_informational(&self) -> bool {
        (100..200).contains(&self.status) && self.status != 101
    }

    /// Bytes the head took off the buffer, including empty lines skipped before it.
    pub fn head_len(&self) -> usize {
        self.head.bytes.len()
    }
}

/// Parse a request head from the front of `buf`. `Ok(None)`: incomplete, read more.
///
/// On success the head bytes are split off the front of `buf` (`split_to(n).freeze()`),
/// leaving body or pipelined bytes in `buf`. On error `buf` is left as it was.
pub fn parse_request(
    buf: &mut BytesMut,
    limits: &HeadLimits,
) -> Result<Option<RequestHead>, CodecError> {
    let Some(start) = skip_leading_empty_lines(buf)? else {
        return Ok(None);
    };
    let buffered: &[u8] = buf;
    let parsed = with_header_slots(
        limits.max_headers,
        |slots| -> Result<Option<(usize, RequestHead)>, CodecError> {
            let mut request = httparse::Request::new(&mut []);
            let status = ParserConfig::default()
                .parse_request_with_uninit_headers(&mut request, &buffered[start..], slots)
                .map_err(|error| head_error(error, &buffered[start..], Role::Request))?;
            let Status::Complete(parsed_len) = status else {
                check_incomplete_request(buffered.len(), start, request.path, limits)?;
                return Ok(None);
            };
            let (Some(method), Some(target), Some(minor)) =
                (request.method, request.path, request.version)
            else {
                return Err(CodecError::Malformed("incomplete request line"));
            };
            // The request line first, so that a huge target is a 414 rather than a 431.
            if target.len() > limits.max_uri {
                return Err(CodecError::UriTooLong);
            }
            let len = start + parsed_len;
            check_complete_len(len, limits)?;
            let head = &buffered[..len];
            let version = Version::from_minor(minor);
            let method_span = Span::of(head, method.as_bytes());
            let target_span = Span::of(head, target.as_bytes());
            expect_crlf(head, target_span.end as usize + SP_VERSION_LEN)?;
            let method = Method::from_token(method.as_bytes());
            let target = parse_target(head, target_span, method)?;
            let (fields, summary) = index_fields(head, request.headers, Role::Request, version)?;

            if version == Version::Http11 && summary.host.is_none() {
                return Err(CodecError::Malformed("missing Host"));
            }
            if let (Some(authority), Some(host)) = (target.authority, summary.host) {
                // RFC 9112 §3.2.2: clients send a Host identical to the target's authority.
                // Routing on one while the origin sees the other is how proxies get bypassed.
                if !authority.get(head).eq_ignore_ascii_case(host.get(head)) {
                    return Err(CodecError::Malformed("Host does not match target"));
                }
            }
            let body = if summary.chunked {
                BodyKind::Chunked
            } else if let Some(length) = summary.content_length {
                BodyKind::Length(length)
            } else {
                BodyKind::Empty
            };
            Ok(Some((
                len,
                RequestHead {
                    head: IndexedHead {
                        bytes: Bytes::new(),
                        fields,
                    },
                    method,
                    method_span,
                    target: target_span,
                    target_form: target.form,
                    path: target.path,
                    host: target.authority.or(summary.host),
                    version,
                    body,
                    keep_alive: summary.persistent(version),
                    expect_continue: summary.expect_continue,
                    upgrade: summary.upgrade(version),
                },
            )))
        },
    )?;
    Ok(parsed.map(|(len, mut request)| {
        request.head.bytes = buf.split_to(len).freeze();
        request
    }))
}

/// Parse the head of the response to a request with method `request_method` (`HEAD` and
/// `CONNECT` change the body rule). `Ok(None)`: incomplete, read more.
///
/// On success the head bytes are split off the front of `buf`, leaving body bytes in `buf`.
/// On error `buf` is left as it was.
pub fn parse_response(
    buf: &mut BytesMut,
    limits: &HeadLimits,
    request_method: Method,
) -> Result<Option<ResponseHead>, CodecError> {
    let Some(start) = skip_leading_empty_lines(buf)? else {
        return Ok(None);
    };
    let buffered: &[u8] = buf;
    let parsed = with_header_slots(
        limits.max_headers,
        |slots| -> Result<Option<(usize, ResponseHead)>, CodecError> {
            let mut response = httparse::Response::new(&mut []);
            let status = ParserConfig::default()
                .parse_response_with_uninit_headers(&mut response, &buffered[start..], slots)
                .map_err(|error| head_error(error, &buffered[start..], Role::Response))?;
            let Status::Complete(parsed_len) = status else {
                if buffered.len() >= limits.max_head {
                    return Err(CodecError::HeadTooLarge);
                }
                return Ok(None);
            };
            let len = start + parsed_len;
            check_complete_len(len, limits)?;
            let (Some(minor), Some(status)) = (response.version, response.code) else {
                return Err(CodecError::Malformed("incomplete status line"));
            };
            if !(100..=599).contains(&status) {
                return Err(CodecError::Malformed("invalid status code"));
            }
            let head = &buffered[..len];
            let version = Version::from_minor(minor);
            let reason = reason_span(head, start)?;
            let (fields, summary) = index_fields(head, response.headers, Role::Response, version)?;

            let no_content = request_method == Method::Head
                || (100..200).contains(&status)
                || status == 204
                || status == 304;
            let leaves_http = status == 101
                || (request_method == Method::Connect && (200..300).contains(&status));
            let body = if no_content || leaves_http {
                BodyKind::Empty
            } else if summary.chunked {
                BodyKind::Chunked
            } else if let Some(length) = summary.content_length {
                BodyKind::Length(length)
            } else {
                BodyKind::UntilClose
            };
            let keep_alive =
                summary.persistent(version) && !leaves_http && body != BodyKind::UntilClose;
            Ok(Some((
                len,
                ResponseHead {
                    head: IndexedHead {
                        bytes: Bytes::new(),
                        fields,
                    },
                    status,
                    reason,
                    version,
                    body,
                    keep_alive,
                    upgrade: summary.upgrade(version),
                },
            )))
        },
    )?;
    Ok(parsed.map(|(len, mut response)| {
        response.head.bytes = buf.split_to(len).freeze();
        response
    }))
}

/// Lends `httparse` a slice of `max_headers` uninitialised header slots: on the stack when it
/// fits, so the common case allocates nothing.
fn with_header_slots<'b, T>(
    max_headers: usize,
    parse: impl FnOnce(&mut [MaybeUninit<Header<'b>>]) -> T,
) -> T {
    let mut stack: [MaybeUninit<Header<'b>>; STACK_HEADER_SLOTS] =
        [const { MaybeUninit::uninit() }; STACK_HEADER_SLOTS];
    if max_headers <= STACK_HEADER_SLOTS {
        parse(&mut stack[..max_headers])
    } else {
        let mut heap = vec![MaybeUninit::uninit(); max_headers];
        parse(&mut heap)
    }
}

/// Skips the empty lines allowed before a start line and returns where the start line begins;
/// `None` while the buffer holds nothing else.
fn skip_leading_empty_lines(buf: &[u8]) -> Result<Option<usize>, CodecError> {
    let mut start = 0;
    let mut empty_lines = 0;
    loop {
        match buf.get(start) {
            None => return Ok(None),
            Some(b'\r') => match buf.get(start + 1) {
                None => return Ok(None),
                Some(b'\n') => {
                    empty_lines += 1;
                    if empty_lines > MAX_LEADING_EMPTY_LINES {
                        return Err(CodecError::Malformed("too many empty lines"));
                    }
                    start += 2;
                }
                Some(_) => return Err(CodecError::Malformed("bare CR")),
            },
            Some(b'\n') => return Err(CodecError::Malformed("bare LF")),
            Some(_) => return Ok(Some(start)),
        }
    }
}

/// An incomplete request head may still become acceptable only within the limits. While the
/// request line has no end yet, running out of room means the target is what is too long.
fn check_incomplete_request(
    buffered: usize,
    start: usize,
    target: Option<&str>,
    limits: &HeadLimits,
) -> Result<(), CodecError> {
    match target {
        Some(target) if target.len() > limits.max_uri => Err(CodecError::UriTooLong),
        None if buffered - start > limits.max_uri.saturating_add(REQUEST_LINE_SLACK)
            || buffered >= limits.max_head =>
        {
            Err(CodecError::UriTooLong)
        }
        _ if buffered >= limits.max_head => Err(CodecError::HeadTooLarge),
        _ => Ok(()),
    }
}

fn check_complete_len(len: usize, limits: &HeadLimits) -> Result<(), CodecError> {
    if len > limits.max_head || u32::try_from(len).is_err() {
        Err(CodecError::HeadTooLarge)
    } else {
        Ok(())
    }
}

/// `httparse` accepts a bare LF as a line ending; RFC 9112 only allows that as leniency, and a
/// proxy must not be lenient where the server behind it may not be.
fn expect_crlf(head: &[u8], at: usize) -> Result<(), CodecError> {
    if head.get(at..at + 2) == Some(b"\r\n".as_slice()) {
        Ok(())
    } else {
        Err(CodecError::Malformed("bare LF"))
    }
}

/// Translates an `httparse` error; a well-formed `HTTP/x` version that is not 1.0 or 1.1 is
/// a 505 rather than a 400.
fn head_error(error: httparse::Error, from_start_line: &[u8], role: Role) -> CodecError {
    match error {
        httparse::Error::TooManyHeaders => CodecError::TooManyHeaders,
        httparse::Error::HeaderName => CodecError::Malformed("invalid field name"),
        httparse::Error::HeaderValue => CodecError::Malformed("invalid field value"),
        httparse::Error::NewLine => CodecError::Malformed("invalid line ending"),
        httparse::Error::Status => CodecError::Malformed("invalid status line"),
        httparse::Error::Token => CodecError::Malformed("invalid request line"),
        httparse::Error::Version => {
            let line_len = from_start_line
                .iter()
                .position(|&b| b == b'\r' || b == b'\n')
                .unwrap_or(from_start_line.len());
            let line = &from_start_line[..line_len];
            // Only a well-formed line (method SP target SP version) with another version is
            // 505; a line with extra spaces (`GET /a b HTTP/1.1`) is malformed, 400.
            let version = match role {
                Role::Request => {
                    let mut parts = line.split(|&b| b == b' ');
                    match (parts.next(), parts.next(), parts.next(), parts.next()) {
                        (Some(m), Some(t), Some(v), None) if !m.is_empty() && !t.is_empty() => v,
                        _ => &[][..],
                    }
                }
                Role::Response => line,
            };
            if version.starts_with(b"HTTP/") && version.get(5).is_some_and(u8::is_ascii_digit) {
                CodecError::UnsupportedVersion
            } else {
                CodecError::Malformed("invalid HTTP version")
            }
        }
    }
}

/// The reason phrase of a status line `httparse` accepted (it replaces a reason containing
/// obs-text with a static `""`, so the span is found here), and the CRLF check of that line.
fn reason_span(head: &[u8], start: usize) -> Result<Span, CodecError> {
    let after_status = start + VERSION_SP_STATUS_LEN;
    let (reason_start, line_end) = if head.get(after_status) == Some(&b' ') {
        let reason_start = after_status + 1;
        let rest = head.get(reason_start..).unwrap_or_default();
        let reason_len = rest
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
            .unwrap_or(rest.len());
        (reason_start, reason_start + reason_len)
    } else {
        (after_status, after_status)
    };
    expect_crlf(head, line_end)?;
    Ok(Span::new(reason_start, line_end))
}

/// The parts of a request-target that routing needs.
struct Target {
    form: TargetForm,
    path: Span,
    authority: Option<Span>,
}

/// Checks the target's bytes and form (RFC 9112 §3.2) and finds its path and authority.
fn parse_target(head: &[u8], span: Span, method: Method) -> Result<Target, CodecError> {
    const INVALID: CodecError = CodecError::Malformed("invalid request-target");
    let target = span.get(head);
    let offset = span.start as usize;
    // httparse lets obs-text through; a target is ASCII, and a fragment is never sent.
    if !target.iter().all(|&b| b.is_ascii_graphic() && b != b'#') {
        return Err(INVALID);
    }
    let query_at = |from: usize| {
        target[from..]
            .iter()
            .position(|&b| b == b'?')
            .map_or(target.len(), |at| from + at)
    };
    if method == Method::Connect {
        if !is_valid_authority(target, true) {
            return Err(CodecError::Malformed("CONNECT needs a host:port target"));
        }
        return Ok(Target {
            form: TargetForm::Authority,
            path: Span::new(offset, offset),
            authority: Some(span),
        });
    }
    match target.first() {
        Some(b'/') => Ok(Target {
            form: TargetForm::Origin,
            path: Span::new(offset, offset + query_at(0)),
            authority: None,
        }),
        Some(b'*') if target.len() == 1 => {
            if method != Method::Options {
                return Err(CodecError::Malformed("'*' target outside OPTIONS"));
            }
            Ok(Target {
                form: TargetForm::Asterisk,
                path: span,
                authority: None,
            })
        }
        _ => {
            let scheme_len = target.iter().position(|&b| b == b':').ok_or(INVALID)?;
            let scheme = &target[..scheme_len];
            if !(scheme.eq_ignore_ascii_case(b"http") || scheme.eq_ignore_ascii_case(b"https")) {
                return Err(INVALID);
            }
            if !target[scheme_len..].starts_with(b"://") {
                return Err(INVALID);
            }
            let authority_start = scheme_len + 3;
            let authority_len = target[authority_start..]
                .iter()
                .position(|&b| b == b'/' || b == b'?')
                .unwrap_or(target.len() - authority_start);
            let path_start = authority_start + authority_len;
            if !is_valid_authority(&target[authority_start..path_start], false) {
                return Err(CodecError::Malformed("invalid target authority"));
            }
            Ok(Target {
                form: TargetForm::Absolute,
                path: Span::new(offset + path_start, offset + query_at(path_start)),
                authority: Some(Span::new(offset + authority_start, offset + path_start)),
            })
        }
    }
}

/// `uri-host [ ":" port ]` (RFC 9110 §7.2), without userinfo. The host must not be empty; the
/// port, when present, is at most 65535, and is required for `CONNECT`.
fn is_valid_authority(authority: &[u8], port_required: bool) -> bool {
    let (host_valid, port) = if let Some(literal) = authority.strip_prefix(b"[") {
        // IP-literal: IPv6 (hex, ':' and '.'), a zone or IPvFuture; never empty.
        let Some(close) = literal.iter().position(|&b| b == b']') else {
            return false;
        };
        let inside = &literal[..close];
        let valid = !inside.is_empty()
            && inside
                .iter()
                .all(|&b| b == b':' || REG_NAME_BYTES[usize::from(b)]);
        let port = match &literal[close + 1..] {
            [] => None,
            [b':', port @ ..] => Some(port),
            _ => return false,
        };
        (valid, port)
    } else {
        let (host, port) = match authority.iter().rposition(|&b| b == b':') {
            Some(colon) => (&authority[..colon], Some(&authority[colon + 1..])),
            None => (authority, None),
        };
        (!host.is_empty() && is_valid_reg_name(host), port)
    };
    let port_valid = match port {
        None | Some([]) => !port_required,
        Some(digits) => {
            digits.len() <= 5
                && digits.iter().all(u8::is_ascii_digit)
                && digits
                    .iter()
                    .fold(0_u32, |value, &digit| value * 10 + u32::from(digit - b'0'))
                    <= 65535
        }
    };
    host_valid && port_valid
}

/// A `reg-name` or IPv4 address: unreserved, sub-delims and well-formed `%XX` escapes.
fn is_valid_reg_name(host: &[u8]) -> bool {
    let mut at = 0;
    while let Some(&byte) = host.get(at) {
        if !REG_NAME_BYTES[usize::from(byte)] {
            return false;
        }
        if byte == b'%' {
            let escaped = host.get(at + 1..at + 3);
            if !escaped.is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)) {
                return false;
            }
            at += 3;
        } else {
            at += 1;
        }
    }
    true
}

/// The field pass shared by both roles: records the spans, checks each line ends in CRLF,
/// reads the framing, `Connection` and (requests) `Host`/`Expect` fields, and decides which
/// fields may be forwarded. `head` is exactly the head (its last bytes are the final CRLF).
fn index_fields(
    head: &[u8],
    headers: &[Header<'_>],
    role: Role,
    version: Version,
) -> Result<(Vec<FieldLine>, FieldSummary), CodecError> {
    let mut fields = Vec::with_capacity(headers.len());
    let mut summary = FieldSummary::default();
    let mut connection_names_fields = false;
    for header in headers {
        let name = header.name.as_bytes();
        let value = header.value;
        let value_span = Span::of(head, value);
        // httparse trimmed trailing whitespace from the value; the line must go on with CRLF.
        let mut line_end = value_span.end as usize;
        while matches!(head.get(line_end), Some(b' ' | b'\t')) {
            line_end += 1;
        }
        expect_crlf(head, line_end)?;

        let mut forwardable = !is_hop_by_hop(name);
        match name.len() {
            4 if role == Role::Request && name.eq_ignore_ascii_case(b"host") => {
                if summary.host.is_some() {
                    return Err(CodecError::Malformed("duplicate Host"));
                }
                if !is_valid_authority(value, false) {
                    return Err(CodecError::Malformed("invalid Host"));
                }
                summary.host = Some(value_span);
            }
            6 if role == Role::Request && name.eq_ignore_ascii_case(b"expect") => {
                forwardable = false;
                if !value.eq_ignore_ascii_case(b"100-continue") {
                    return Err(CodecError::ExpectationFailed);
                }
                // RFC 9110 §10.1.1: a 100-continue expectation on HTTP/1.0 is ignored.
                summary.expect_continue = version == Version::Http11;
            }
            7 if name.eq_ignore_ascii_case(b"upgrade") => {
                if summary.upgrade.is_none() {
                    summary.upgrade = Some(value_span);
                }
            }
            10 if name.eq_ignore_ascii_case(b"connection") => {
                connection_names_fields |= read_connection(value, &mut summary)?;
            }
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                forwardable = false;
                let length = parse_content_length(value)?;
                if summary.content_length.is_some_and(|seen| seen != length) {
                    return Err(CodecError::BadFraming("conflicting Content-Length"));
                }
                summary.content_length = Some(length);
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                if version == Version::Http10 {
                    return Err(CodecError::BadFraming("Transfer-Encoding on HTTP/1.0"));
                }
                read_transfer_codings(value, &mut summary)?;
            }
            _ => {}
        }
        fields.push(FieldLine {
            name: Span::of(head, name),
            value: value_span,
            forwardable,
        });
    }
    if summary.transfer_encoding {
        // RFC 9112 §6.3: unless chunked is the final coding the length is unknown (400);
        // §6.1: a coding we do not implement before it is 501 Not Implemented.
        if !summary.chunked_last {
            return Err(CodecError::BadFraming(
                "chunked is not the final transfer-coding",
            ));
        }
        if summary.unknown_coding {
            return Err(CodecError::UnsupportedCoding);
        }
    }
    if summary.chunked && summary.content_length.is_some() {
        return Err(CodecError::BadFraming(
            "Content-Length with Transfer-Encoding",
        ));
    }
    // The start line and every field line ended in CRLF; so must the final empty line.
    expect_crlf(head, head.len().saturating_sub(2))?;
    if connection_names_fields {
        drop_connection_options(head, headers, &mut fields);
    }
    Ok((fields, summary))
}

/// Reads one `Transfer-Encoding` value into `summary`: which codings, in which order. The
/// verdict on the whole list waits until every field line has been read.
fn read_transfer_codings(value: &[u8], summary: &mut FieldSummary) -> Result<(), CodecError> {
    summary.transfer_encoding = true;
    for coding in value.split(|&b| b == b',') {
        let coding = coding.trim_ascii();
        if coding.is_empty() {
            return Err(CodecError::BadFraming("empty transfer-coding"));
        }
        if coding.eq_ignore_ascii_case(b"chunked") {
            if summary.chunked {
                return Err(CodecError::BadFraming("chunked applied twice"));
            }
            summary.chunked = true;
            summary.chunked_last = true;
        } else {
            summary.unknown_coding = true;
            summary.chunked_last = false;
        }
    }
    Ok(())
}

/// Reads one `Connection` value into `summary`; true when it names fields beyond the static
/// hop-by-hop list (RFC 9110 §7.6.1), which then must not be forwarded.
fn read_connection(value: &[u8], summary: &mut FieldSummary) -> Result<bool, CodecError> {
    let mut names_fields = false;
    for option in value.split(|&b| b == b',') {
        let option = option.trim_ascii();
        if option.is_empty() {
            // RFC 9110 §5.6.1: empty list elements are ignored.
            continue;
        }
        if !option.iter().all(|&b| is_token_byte(b)) {
            return Err(CodecError::Malformed("invalid Connection"));
        }
        if option.eq_ignore_ascii_case(b"close") {
            summary.close = true;
        } else if option.eq_ignore_ascii_case(b"keep-alive") {
            summary.keep_alive = true;
        } else if option.eq_ignore_ascii_case(b"upgrade") {
            summary.connection_upgrade = true;
        } else if !is_hop_by_hop(option) {
            names_fields = true;
        }
    }
    Ok(names_fields)
}

/// Marks every field named by a `Connection` option as not forwardable. Rare (most
/// `Connection` values are `close` or `keep-alive`), so it re-reads the values instead of
/// collecting the options into an allocation.
fn drop_connection_options(head: &[u8], headers: &[Header<'_>], fields: &mut [FieldLine]) {
    for field in fields.iter_mut().filter(|field| field.forwardable) {
        let name = field.name.get(head);
        let named = headers
            .iter()
            .filter(|header| header.name.eq_ignore_ascii_case("connection"))
            .flat_map(|header| header.value.split(|&b| b == b','))
            .any(|option| option.trim_ascii().eq_ignore_ascii_case(name));
        if named {
            field.forwardable = false;
        }
    }
}

/// `Content-Length` (RFC 9110 §8.6): digits only, overflow-checked; a comma list is accepted
/// only when every element is the same number.
fn parse_content_length(value: &[u8]) -> Result<u64, CodecError> {
    let mut agreed = None;
    for element in value.split(|&b| b == b',') {
        let digits = element.trim_ascii();
        if digits.is_empty() {
            return Err(CodecError::BadFraming("empty Content-Length"));
        }
        let mut length: u64 = 0;
        for &digit in digits {
            if !digit.is_ascii_digit() {
                return Err(CodecError::BadFraming("invalid Content-Length"));
            }
            length = length
                .checked_mul(10)
                .and_then(|length| length.checked_add(u64::from(digit - b'0')))
                .ok_or(CodecError::BadFraming("Content-Length overflow"))?;
        }
        if agreed.is_some_and(|seen| seen != length) {
            return Err(CodecError::BadFraming("conflicting Content-Length"));
        }
        agreed = Some(length);
    }
    agreed.ok_or(CodecError::BadFraming("empty Content-Length"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(input: &[u8]) -> Result<Option<RequestHead>, CodecError> {
        parse_request(&mut BytesMut::from(input), &HeadLimits::default())
    }

    fn complete_request(input: &[u8]) -> RequestHead {
        match request(input) {
            Ok(Some(head)) => head,
            other => panic!("expected a request head, got {other:?}"),
        }
    }

    fn request_error(input: &[u8]) -> CodecError {
        match request(input) {
            Err(error) => error,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    fn response_to(method: Method, input: &[u8]) -> Result<Option<ResponseHead>, CodecError> {
        parse_response(&mut BytesMut::from(input), &HeadLimits::default(), method)
    }

    fn complete_response(method: Method, input: &[u8]) -> ResponseHead {
        match response_to(method, input) {
            Ok(Some(head)) => head,
            other => panic!("expected a response head, got {other:?}"),
        }
    }

    fn response_error(input: &[u8]) -> CodecError {
        match response_to(Method::Get, input) {
            Err(error) => error,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    fn with_field(field: &str) -> Vec<u8> {
        format!("POST /upload HTTP/1.1\r\nHost: example.com\r\n{field}\r\n\r\n").into_bytes()
    }

    fn forwardable_names(head: &RequestHead) -> Vec<String> {
        head.forwardable_fields()
            .map(|(name, _)| String::from_utf8_lossy(name).into_owned())
            .collect()
    }

    /// A deterministic xorshift generator; the crate has no dev-dependencies.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, bound: usize) -> usize {
            (self.next() % bound as u64) as usize
        }
    }

    // ---- request line and accessors ----

    #[test]
    fn parses_a_simple_get() {
        let input = b"GET /index.html?lang=en HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n";
        let mut buf = BytesMut::from(&input[..]);
        let head = parse_request(&mut buf, &HeadLimits::default())
            .unwrap()
            .unwrap();
        assert!(buf.is_empty());
        assert_eq!(head.head_len(), input.len());
        assert_eq!(head.method(), Method::Get);
        assert_eq!(head.method_bytes(), b"GET");
        assert_eq!(head.target(), b"/index.html?lang=en");
        assert_eq!(head.path(), b"/index.html");
        assert_eq!(head.version(), Version::Http11);
        assert_eq!(head.host(), Some(&b"example.com"[..]));
        assert_eq!(head.field("accept"), Some(&b"*/*"[..]));
        assert_eq!(head.field("ACCEPT"), Some(&b"*/*"[..]));
        assert_eq!(head.field("missing"), None);
        assert_eq!(head.body(), BodyKind::Empty);
        assert!(head.keep_alive());
        assert!(!head.expect_continue());
        let fields: Vec<_> = head.fields().collect();
        assert_eq!(
            fields,
            vec![
                (&b"Host"[..], &b"example.com"[..]),
                (&b"Accept"[..], &b"*/*"[..])
            ]
        );
    }

    #[test]
    fn maps_methods_case_sensitively() {
        let cases: [(&str, Method); 11] = [
            ("GET", Method::Get),
            ("HEAD", Method::Head),
            ("POST", Method::Post),
            ("PUT", Method::Put),
            ("DELETE", Method::Delete),
            ("OPTIONS", Method::Options),
            ("TRACE", Method::Trace),
            ("PATCH", Method::Patch),
            ("PROPFIND", Method::Other),
            ("get", Method::Other),
            ("M-SEARCH", Method::Other),
        ];
        for (token, method) in cases {
            let input = format!("{token} / HTTP/1.1\r\nHost: h\r\n\r\n");
            let head = complete_request(input.as_bytes());
            assert_eq!(head.method(), method, "{token}");
            assert_eq!(head.method_bytes(), token.as_bytes());
        }
    }

    #[test]
    fn field_values_are_trimmed_and_may_be_empty() {
        let head = complete_request(
            b"GET / HTTP/1.1\r\nHost:h\r\nX-A: \t a b \t\r\nX-Empty:\r\nX-Spaces:   \r\n\r\n",
        );
        assert_eq!(head.host(), Some(&b"h"[..]));
        assert_eq!(head.field("x-a"), Some(&b"a b"[..]));
        assert_eq!(head.field("x-empty"), Some(&b""[..]));
        assert_eq!(head.field("x-spaces"), Some(&b""[..]));
    }

    #[test]
    fn keeps_duplicate_fields_in_order() {
        let head = complete_request(
            b"GET / HTTP/1.1\r\nHost: h\r\nCookie: a=1\r\nX: y\r\nCookie: b=2\r\n\r\n",
        );
        let cookies: Vec<_> = head
            .fields()
            .filter(|(name, _)| name.eq_ignore_ascii_case(b"cookie"))
            .map(|(_, value)| value)
            .collect();
        assert_eq!(cookies, vec![&b"a=1"[..], &b"b=2"[..]]);
        assert_eq!(head.field("cookie"), Some(&b"a=1"[..]));
        assert_eq!(forwardable_names(&head), ["Host", "Cookie", "X", "Cookie"]);
    }

    #[test]
    fn splits_pipelined_requests_and_leaves_the_body() {
        let mut buf = BytesMut::from(
            &b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\nHost: h\r\n\r\nGET /c HTTP/1.1\r\n"[..],
        );
        let limits = HeadLimits::default();
        let first = parse_request(&mut buf, &limits).unwrap().unwrap();
        assert_eq!(first.path(), b"/a");
        assert_eq!(first.body(), BodyKind::Length(5));
        assert!(buf.starts_with(b"helloGET /b"));
        let _ = buf.split_to(5);
        let second = parse_request(&mut buf, &limits).unwrap().unwrap();
        assert_eq!(second.path(), b"/b");
        assert_eq!(&buf[..], b"GET /c HTTP/1.1\r\n");
        assert!(parse_request(&mut buf, &limits).unwrap().is_none());
        assert_eq!(&buf[..], b"GET /c HTTP/1.1\r\n");
    }

    #[test]
    fn every_prefix_is_incomplete_and_every_split_gives_the_same_head() {
        let input: &[u8] = b"\r\nPUT http://Example.com:8080/x/y?z=1 HTTP/1.1\r\nHost: example.com:8080\r\nConnection: keep-alive, X-Trace\r\nX-Trace: 1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
        let head_len = input.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let limits = HeadLimits::default();
        let expected = complete_request(input);
        for split in 0..input.len() {
            let mut buf = BytesMut::from(&input[..split]);
            let first = parse_request(&mut buf, &limits).unwrap();
            if split < head_len {
                assert!(first.is_none(), "prefix of {split} bytes");
                assert_eq!(buf.len(), split, "incomplete parse must not consume");
                buf.extend_from_slice(&input[split..]);
                let head = parse_request(&mut buf, &limits).unwrap().unwrap();
                assert_eq!(head.target(), expected.target());
                assert_eq!(head.host(), Some(&b"Example.com:8080"[..]));
                assert_eq!(head.path(), b"/x/y");
                assert_eq!(head.body(), BodyKind::Chunked);
                assert!(head.expect_continue());
                assert_eq!(forwardable_names(&head), ["Host"]);
                assert_eq!(head.head_len(), head_len);
                assert_eq!(&buf[..], &input[head_len..]);
            } else {
                assert!(first.is_some(), "prefix of {split} bytes");
                assert_eq!(&buf[..], &input[head_len..split]);
            }
        }
    }

    #[test]
    fn byte_by_byte_feeding_finds_the_head_exactly_once() {
        let input: &[u8] = b"GET /a HTTP/1.1\r\nHost: h\r\nUser-Agent: t\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n";
        let limits = HeadLimits::default();
        let mut buf = BytesMut::new();
        let mut paths = Vec::new();
        for &byte in input {
            buf.extend_from_slice(&[byte]);
            if let Some(head) = parse_request(&mut buf, &limits).unwrap() {
                paths.push(head.path().to_vec());
            }
        }
        assert_eq!(paths, vec![b"/a".to_vec(), b"/b".to_vec()]);
        assert!(buf.is_empty());
    }

    // ---- leading empty lines and line endings ----

    #[test]
    fn skips_a_bounded_number_of_empty_lines_before_the_request_line() {
        let head = complete_request(b"\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(head.path(), b"/");
        assert_eq!(head.head_len(), 4 + 27);
        let mut four = b"\r\n".repeat(4);
        four.extend_from_slice(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        assert!(request(&four).unwrap().is_some());
        let mut five = b"\r\n".repeat(5);
        five.extend_from_slice(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(
            request_error(&five),
            CodecError::Malformed("too many empty lines")
        );
        assert!(request(b"\r\n\r").unwrap().is_none());
        assert!(request(b"").unwrap().is_none());
        assert_eq!(
            request_error(b"\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"),
            CodecError::Malformed("bare LF")
        );
        assert_eq!(
            request_error(b"\r\rGET / HTTP/1.1\r\n"),
            CodecError::Malformed("bare CR")
        );
    }

    #[test]
    fn rejects_bare_lf_anywhere_in_the_head() {
        for input in [
            &b"GET / HTTP/1.1\nHost: h\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: h\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\n\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nX: a  \n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nX:\n\r\n",
            b"GET / HTTP/1.1\n\n",
        ] {
            assert_eq!(
                request_error(input),
                CodecError::Malformed("bare LF"),
                "{input:?}"
            );
        }
        assert_eq!(
            response_error(b"HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n"),
            CodecError::Malformed("bare LF")
        );
        assert_eq!(
            response_error(b"HTTP/1.1 200\n\r\n"),
            CodecError::Malformed("bare LF")
        );
        assert_eq!(
            response_error(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\n"),
            CodecError::Malformed("bare LF")
        );
    }

    #[test]
    fn rejects_what_httparse_rejects_with_a_400() {
        let cases: [(&[u8], &str); 10] = [
            (b"GET / HTTP/1.1\r\nHost : h\r\n\r\n", "invalid field name"),
            (
                b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n folded\r\n\r\n",
                "invalid field name",
            ),
            (b"GET / HTTP/1.1\r\n Host: h\r\n\r\n", "invalid field name"),
            (b"GET / HTTP/1.1\r\nHo\0st: h\r\n\r\n", "invalid field name"),
            (
                b"GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n",
                "invalid field value",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n",
                "invalid field value",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x7fb\r\n\r\n",
                "invalid field value",
            ),
            (
                b"GET /a\x01b HTTP/1.1\r\nHost: h\r\n\r\n",
                "invalid request line",
            ),
            (
                b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n",
                "invalid request line",
            ),
            (
                b"GET / HTTP/1.1\r\r\nHost: h\r\n\r\n",
                "invalid line ending",
            ),
        ];
        for (input, reason) in cases {
            assert_eq!(
                request_error(input),
                CodecError::Malformed(reason),
                "{input:?}"
            );
        }
    }

    #[test]
    fn rejects_targets_httparse_lets_through() {
        for input in [
            &b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n"[..],
            b"GET /a#frag HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET a/b HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET ftp://h/ HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET http:/h/ HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET example.com:80 HTTP/1.1\r\nHost: example.com:80\r\n\r\n",
        ] {
            assert_eq!(
                request_error(input),
                CodecError::Malformed("invalid request-target"),
                "{input:?}"
            );
        }
    }

    #[test]
    fn only_http_1_0_and_1_1_are_spoken() {
        assert_eq!(
            request_error(b"GET / HTTP/2.0\r\nHost: h\r\n\r\n"),
            CodecError::UnsupportedVersion
        );
        assert_eq!(
            request_error(b"GET / HTTP/1.2\r\nHost: h\r\n\r\n"),
            CodecError::UnsupportedVersion
        );
        assert_eq!(
            request_error(b"GET / HTTP/3"),
            CodecError::UnsupportedVersion
        );
        assert_eq!(
            request_error(b"GET / http/1.1\r\nHost: h\r\n\r\n"),
            CodecError::Malformed("invalid HTTP version")
        );
        assert_eq!(
            request_error(b"GET /a b HTTP/1.1\r\nHost: h\r\n\r\n"),
            CodecError::Malformed("invalid HTTP version")
        );
        assert_eq!(
            request_error(b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n"),
            CodecError::Malformed("invalid request line")
        );
        assert_eq!(
            request_error(b"GET / HTTP/1.1x\r\nHost: h\r\n\r\n"),
            CodecError::Malformed("invalid line ending")
        );
        assert_eq!(
            request_error(b"GET /\r\n\r\n"),
            CodecError::Malformed("invalid request line")
        );
        assert_eq!(
            response_error(b"HTTP/2 200 OK\r\n\r\n"),
            CodecError::UnsupportedVersion
        );
        assert_eq!(
            response_error(b"ICY 200 OK\r\n\r\n"),
            CodecError::Malformed("invalid HTTP version")
        );
        let head = complete_request(b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(head.version(), Version::Http10);
        assert_eq!(head.host(), None);
    }

    // ---- limits ----

    #[test]
    fn enforces_the_head_size_limit() {
        let limits = HeadLimits {
            max_head: 64,
            ..HeadLimits::default()
        };
        let mut incomplete = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: h\r\nX-Long: "[..]);
        incomplete.extend_from_slice(&[b'a'; 40]);
        assert_eq!(
            parse_request(&mut incomplete, &limits).unwrap_err(),
            CodecError::HeadTooLarge
        );
        let mut complete = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: h\r\nX-Long: "[..]);
        complete.extend_from_slice(&[b'a'; 40]);
        complete.extend_from_slice(b"\r\n\r\n");
        assert_eq!(
            parse_request(&mut complete, &limits).unwrap_err(),
            CodecError::HeadTooLarge
        );
        let exact = b"GET / HTTP/1.1\r\nHost: h\r\nX: 01234567890123456789012345678901\r\n\r\n";
        assert_eq!(exact.len(), 64);
        assert!(parse_request(&mut BytesMut::from(&exact[..]), &limits)
            .unwrap()
            .is_some());
        assert!(parse_request(&mut BytesMut::from(&exact[..63]), &limits)
            .unwrap()
            .is_none());
        let mut response = BytesMut::from(&b"HTTP/1.1 200 OK\r\nX: "[..]);
        response.extend_from_slice(&[b'a'; 64]);
        assert_eq!(
            parse_response(&mut response, &limits, Method::Get).unwrap_err(),
            CodecError::HeadTooLarge
        );
    }

    #[test]
    fn a_long_target_is_414_not_431() {
        let limits = HeadLimits {
            max_head: 256,
            max_headers: 8,
            max_uri: 100,
        };
        let long_target = format!("/{}", "a".repeat(150));
        // Complete head: target over max_uri.
        let complete = format!("GET {long_target} HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(
            parse_request(&mut BytesMut::from(complete.as_bytes()), &limits).unwrap_err(),
            CodecError::UriTooLong
        );
        // Target complete, rest of the head still missing.
        let partial = format!("GET {long_target} HTTP/1.1\r\nHo");
        assert_eq!(
            parse_request(&mut BytesMut::from(partial.as_bytes()), &limits).unwrap_err(),
            CodecError::UriTooLong
        );
        // Request line without its end, longer than max_uri + slack.
        let endless = format!("GET {long_target}");
        assert_eq!(
            parse_request(&mut BytesMut::from(endless.as_bytes()), &limits).unwrap_err(),
            CodecError::UriTooLong
        );
        // Shorter than max_uri + slack: still waiting.
        let waiting = format!("GET /{}", "a".repeat(110));
        assert!(
            parse_request(&mut BytesMut::from(waiting.as_bytes()), &limits)
                .unwrap()
                .is_none()
        );
        // A target larger than the whole head limit is still a 414.
        let huge = format!("GET /{}", "a".repeat(1000));
        let tight = HeadLimits {
            max_uri: 2000,
            ..limits
        };
        assert_eq!(
            parse_request(&mut BytesMut::from(huge.as_bytes()), &tight).unwrap_err(),
            CodecError::UriTooLong
        );
        // Exactly max_uri is fine.
        let exact = format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(99));
        assert!(
            parse_request(&mut BytesMut::from(exact.as_bytes()), &limits)
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn enforces_the_field_count_limit() {
        let limits = HeadLimits {
            max_headers: 3,
            ..HeadLimits::default()
        };
        let three = b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n";
        assert!(parse_request(&mut BytesMut::from(&three[..]), &limits)
            .unwrap()
            .is_some());
        let four = b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        assert_eq!(
            parse_request(&mut BytesMut::from(&four[..]), &limits).unwrap_err(),
            CodecError::TooManyHeaders
        );
        let four_incomplete = b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n";
        assert_eq!(
            parse_request(&mut BytesMut::from(&four_incomplete[..]), &limits).unwrap_err(),
            CodecError::TooManyHeaders
        );
        let response = b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
        assert_eq!(
            parse_response(&mut BytesMut::from(&response[..]), &limits, Method::Get).unwrap_err(),
            CodecError::TooManyHeaders
        );
    }

    #[test]
    fn more_header_slots_than_the_stack_holds() {
        let limits = HeadLimits {
            max_head: 64 * 1024,
            max_headers: 300,
            max_uri: 1024,
        };
        let mut input = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
        for index in 0..299 {
            input.extend_from_slice(format!("X-{index}: {index}\r\n").as_bytes());
        }
        input.extend_from_slice(b"\r\n");
        let head = parse_request(&mut BytesMut::from(&input[..]), &limits)
            .unwrap()
            .unwrap();
        assert_eq!(head.fields().count(), 300);
        assert_eq!(head.field("x-298"), Some(&b"298"[..]));
        input.truncate(input.len() - 2);
        input.extend_from_slice(b"X-last: 1\r\n\r\n");
        assert_eq!(
            parse_request(&mut BytesMut::from(&input[..]), &limits).unwrap_err(),
            CodecError::TooManyHeaders
        );
    }

    // ---- Content-Length and Transfer-Encoding ----

    #[test]
    fn content_length_accepts_digits_and_identical_repeats() {
        for (field, length) in [
            ("Content-Length: 0", 0),
            ("Content-Length: 42", 42),
            ("Content-Length:   42  ", 42),
            ("Content-Length: 007", 7),
            ("Content-Length: 18446744073709551615", u64::MAX),
            ("Content-Length: 5, 5", 5),
            ("Content-Length: 5,5\r\ncontent-length: 5", 5),
        ] {
            let head = complete_request(&with_field(field));
            assert_eq!(head.body(), BodyKind::Length(length), "{field}");
            assert!(head.keep_alive());
        }
    }

    #[test]
    fn content_length_rejects_anything_ambiguous() {
        for (field, reason) in [
            ("Content-Length: +5", "invalid Content-Length"),
            ("Content-Length: -5", "invalid Content-Length"),
            ("Content-Length: 5 5", "invalid Content-Length"),
            ("Content-Length: 0x5", "invalid Content-Length"),
            ("Content-Length: 5;", "invalid Content-Length"),
            ("Content-Length:", "empty Content-Length"),
            ("Content-Length: 5,,5", "empty Content-Length"),
            ("Content-Length: 5,", "empty Content-Length"),
            (
                "Content-Length: 18446744073709551616",
                "Content-Length overflow",
            ),
            (
                "Content-Length: 99999999999999999999999",
                "Content-Length overflow",
            ),
            ("Content-Length: 5, 6", "conflicting Content-Length"),
            (
                "Content-Length: 5\r\nContent-Length: 6",
                "conflicting Content-Length",
            ),
        ] {
            assert_eq!(
                request_error(&with_field(field)),
                CodecError::BadFraming(reason),
                "{field}"
            );
        }
    }

    #[test]
    fn transfer_encoding_must_be_exactly_chunked() {
        for field in [
            "Transfer-Encoding: chunked",
            "Transfer-Encoding: Chunked",
            "transfer-encoding:  CHUNKED  ",
        ] {
            assert_eq!(
                complete_request(&with_field(field)).body(),
                BodyKind::Chunked,
                "{field}"
            );
        }
        for (field, reason) in [
            (
                "Transfer-Encoding: chunked, gzip",
                "chunked is not the final transfer-coding",
            ),
            (
                "Transfer-Encoding: identity",
                "chunked is not the final transfer-coding",
            ),
            (
                "Transfer-Encoding: chunked;q=1",
                "chunked is not the final transfer-coding",
            ),
            (
                "Transfer-Encoding: xchunked",
                "chunked is not the final transfer-coding",
            ),
            ("Transfer-Encoding:", "empty transfer-coding"),
            ("Transfer-Encoding: chunked,", "empty transfer-coding"),
            ("Transfer-Encoding: ,chunked", "empty transfer-coding"),
            (
                "Transfer-Encoding: chunked, chunked",
                "chunked applied twice",
            ),
            (
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
                "chunked applied twice",
            ),
            (
                "Transfer-Encoding: chunked\r\nContent-Length: 5",
                "Content-Length with Transfer-Encoding",
            ),
            (
                "Content-Length: 5\r\nTransfer-Encoding: chunked",
                "Content-Length with Transfer-Encoding",
            ),
        ] {
            assert_eq!(
                request_error(&with_field(field)),
                CodecError::BadFraming(reason),
                "{field}"
            );
        }
        assert_eq!(
            request_error(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            CodecError::BadFraming("Transfer-Encoding on HTTP/1.0")
        );
        // A coding we do not implement before the final chunked: 501, not 400 (RFC 9112 §6.1).
        for field in [
            "Transfer-Encoding: gzip, chunked",
            "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked",
            "Transfer-Encoding: identity , Chunked",
        ] {
            assert_eq!(
                request_error(&with_field(field)),
                CodecError::UnsupportedCoding,
                "{field}"
            );
        }
    }

    #[test]
    fn upgrade_needs_both_fields_and_http11() {
        let asks = complete_request(b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n");
        assert_eq!(asks.upgrade(), Some(&b"websocket"[..]));
        // Neither field is forwardable as such: the request path writes them back itself.
        assert!(asks
            .forwardable_fields()
            .all(|(n, _)| !n.eq_ignore_ascii_case(b"upgrade")));
        let no_connection =
            complete_request(b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n");
        assert_eq!(no_connection.upgrade(), None);
        let no_upgrade =
            complete_request(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\n\r\n");
        assert_eq!(no_upgrade.upgrade(), None);
        let http10 = complete_request(
            b"GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
        );
        assert_eq!(http10.upgrade(), None);
        let switching = complete_response(
            Method::Get,
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        );
        assert_eq!(switching.upgrade(), Some(&b"websocket"[..]));
    }

    #[test]
    fn framing_fields_are_not_forwarded() {
        let head = complete_request(&with_field("Content-Length: 3\r\nX-Keep: 1"));
        assert_eq!(forwardable_names(&head), ["Host", "X-Keep"]);
        let head = complete_request(&with_field("Transfer-Encoding: chunked\r\nTE: trailers\r\nTrailer: X\r\nUpgrade: h2c\r\nProxy-Connection: x\r\nKeep-Alive: 5"));
        assert_eq!(forwardable_names(&head), ["Host"]);
    }

    // ---- Host and request-target forms ----

    #[test]
    fn host_is_required_once_and_valid_on_http_1_1() {
        assert_eq!(
            request_error(b"GET / HTTP/1.1\r\n\r\n"),
            CodecError::Malformed("missing Host")
        );
        assert_eq!(
            request_error(b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"),
            CodecError::Malformed("duplicate Host")
        );
        assert_eq!(
            request_error(b"GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n"),
            CodecError::Malformed("duplicate Host")
        );
        for host in [
            "", "a b", "a/b", "user@a", "a:99999", "a:8o", ":80", "[::1", "[]", "a%zz", "a?b",
            "a\tb", "[::1]x",
        ] {
            let input = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
            assert_eq!(
                request_error(input.as_bytes()),
                CodecError::Malformed("invalid Host"),
                "{host:?}"
            );
        }
        for host in [
            "example.com",
            "example.com:8080",
            "EXAMPLE.com",
            "127.0.0.1:80",
            "[::1]",
            "[::1]:443",
            "[fe80::1%25eth0]",
            "a-b_c~d",
            "xn--bcher-kva.example",
            "h:",
            "h:65535",
            "%41b",
        ] {
            let input = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
            assert_eq!(
                complete_request(input.as_bytes()).host(),
                Some(host.as_bytes()),
                "{host:?}"
            );
        }
    }

    #[test]
    fn absolute_form_gives_host_and_path() {
        let head = complete_request(
            b"GET http://example.com/a/b?c=d HTTP/1.1\r\nHost: example.com\r\n\r\n",
        );
        assert_eq!(head.host(), Some(&b"example.com"[..]));
        assert_eq!(head.path(), b"/a/b");
        assert_eq!(head.target(), b"http://example.com/a/b?c=d");
        let head = complete_request(
            b"GET HTTPS://example.com:8443 HTTP/1.1\r\nHost: Example.COM:8443\r\n\r\n",
        );
        assert_eq!(head.host(), Some(&b"example.com:8443"[..]));
        assert_eq!(head.path(), b"/");
        let head =
            complete_request(b"GET http://example.com?q HTTP/1.1\r\nHost: example.com\r\n\r\n");
        assert_eq!(head.path(), b"/");
        let head = complete_request(b"GET http://example.com/x HTTP/1.0\r\n\r\n");
        assert_eq!(head.host(), Some(&b"example.com"[..]));
        assert_eq!(head.path(), b"/x");
    }

    #[test]
    fn absolute_form_rejects_bad_authorities_and_a_different_host() {
        for target in [
            "http:///x",
            "http://user@h/x",
            "http://h:port/",
            "http://[::1/",
        ] {
            let input = format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n");
            assert_eq!(
                request_error(input.as_bytes()),
                CodecError::Malformed("invalid target authority"),
                "{target}"
            );
        }
        assert_eq!(
            request_error(b"GET http://a.example/ HTTP/1.1\r\nHost: b.example\r\n\r\n"),
            CodecError::Malformed("Host does not match target")
        );
        assert_eq!(
            request_error(b"GET http://a.example/ HTTP/1.1\r\n\r\n"),
            CodecError::Malformed("missing Host")
        );
    }

    #[test]
    fn connect_needs_authority_form_and_options_may_use_asterisk() {
        let head =
            complete_request(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
        assert_eq!(head.method(), Method::Connect);
        assert_eq!(head.host(), Some(&b"example.com:443"[..]));
        assert_eq!(head.path(), b"");
        for target in [
            "example.com",
            "/",
            "http://example.com:443/",
            "example.com:",
        ] {
            let input = format!("CONNECT {target} HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
            assert_eq!(
                request_error(input.as_bytes()),
                CodecError::Malformed("CONNECT needs a host:port target"),
                "{target}"
            );
        }
        let head = complete_request(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(head.path(), b"*");
        assert_eq!(head.target(), b"*");
        assert_eq!(
            request_error(b"GET * HTTP/1.1\r\nHost: h\r\n\r\n"),
            CodecError::Malformed("'*' target outside OPTIONS")
        );
    }

    // ---- Expect ----

    #[test]
    fn expect_100_continue_only_on_http_1_1() {
        let head = complete_request(&with_field("Content-Length: 10\r\nExpect: 100-continue"));
        assert!(head.expect_continue());
        assert_eq!(forwardable_names(&head), ["Host"]);
        assert!(complete_request(&with_field("Expect: 100-Continue")).expect_continue());
        let head = complete_request(
            b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
        );
        assert!(!head.expect_continue());
        assert_eq!(forwardable_names(&head), Vec::<String>::new());
        for expectation in [
            "Expect: 200-ok",
            "Expect:",
            "Expect: 100-continue, foo",
            "Expect: 100-continue;x=1",
        ] {
            assert_eq!(
                request_error(&with_field(expectation)),
                CodecError::ExpectationFailed,
                "{expectation}"
            );
        }
        let response = complete_response(
            Method::Get,
            b"HTTP/1.1 200 OK\r\nExpect: whatever\r\nContent-Length: 0\r\n\r\n",
        );
        assert_eq!(response.field("expect"), Some(&b"whatever"[..]));
    }

    // ---- Connection ----

    #[test]
    fn connection_decides_keep_alive() {
        let cases: [(&[u8], bool); 8] = [
            (b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", true),
            (
                b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
                false,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: h\r\nConnection: Keep-Alive, CLOSE\r\n\r\n",
                false,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nConnection: close\r\n\r\n",
                false,
            ),
            (b"GET / HTTP/1.0\r\n\r\n", false),
            (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true),
            (
                b"GET / HTTP/1.0\r\nConnection: , Keep-Alive ,\r\n\r\n",
                true,
            ),
            (
                b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
                false,
            ),
        ];
        for (input, keep_alive) in cases {
            assert_eq!(
                complete_request(input).keep_alive(),
                keep_alive,
                "{input:?}"
            );
        }
        assert_eq!(
            request_error(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: a b\r\n\r\n"),
            CodecError::Malformed("invalid Connection")
        );
        assert_eq!(
            request_error(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: \"close\"\r\n\r\n"),
            CodecError::Malformed("invalid Connection")
        );
    }

    #[test]
    fn fields_named_by_connection_are_not_forwarded() {
        let head = complete_request(b"GET / HTTP/1.1\r\nHost: h\r\nX-Trace: 1\r\nConnection: x-trace, close\r\nX-Keep: 2\r\nx-TRACE: 3\r\nConnection: X-Other\r\nX-Other: 4\r\nKeep-Alive: timeout=5\r\n\r\n");
        assert_eq!(forwardable_names(&head), ["Host", "X-Keep"]);
        assert_eq!(head.fields().count(), 8);
        assert!(!head.keep_alive());
    }

    // ---- responses ----

    #[test]
    fn parses_a_simple_response() {
        let mut buf =
            BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: s\r\n\r\nhello"[..]);
        let head = parse_response(&mut buf, &HeadLimits::default(), Method::Get)
            .unwrap()
            .unwrap();
        assert_eq!(head.status(), 200);
        assert_eq!(head.reason(), b"OK");
        assert_eq!(head.version(), Version::Http11);
        assert_eq!(head.body(), BodyKind::Length(5));
        assert!(head.keep_alive());
        assert!(!head.is_informational());
        assert_eq!(head.field("server"), Some(&b"s"[..]));
        let forwarded: Vec<_> = head.forwardable_fields().collect();
        assert_eq!(forwarded, vec![(&b"Server"[..], &b"s"[..])]);
        assert_eq!(&buf[..], b"hello");
    }

    #[test]
    fn reason_phrases_are_kept_raw() {
        assert_eq!(
            complete_response(Method::Get, b"HTTP/1.1 404 Not  Found \r\n\r\n").reason(),
            b"Not  Found "
        );
        assert_eq!(
            complete_response(Method::Get, b"HTTP/1.1 200\r\n\r\n").reason(),
            b""
        );
        assert_eq!(
            complete_response(Method::Get, b"HTTP/1.1 200 \r\n\r\n").reason(),
            b""
        );
        assert_eq!(
            complete_response(Method::Get, b"HTTP/1.1 200 caf\xe9\r\n\r\n").reason(),
            b"caf\xe9"
        );
        assert_eq!(
            complete_response(Method::Get, b"\r\nHTTP/1.1 200 OK\r\n\r\n").reason(),
            b"OK"
        );
    }

    #[test]
    fn response_status_must_be_100_to_599() {
        assert_eq!(
            response_error(b"HTTP/1.1 099 Low\r\n\r\n"),
            CodecError::Malformed("invalid status code")
        );
        assert_eq!(
            response_error(b"HTTP/1.1 600 High\r\n\r\n"),
            CodecError::Malformed("invalid status code")
        );
        assert_eq!(
            response_error(b"HTTP/1.1 20 OK\r\n\r\n"),
            CodecError::Malformed("invalid status line")
        );
        assert_eq!(
            response_error(b"HTTP/1.1 2000 OK\r\n\r\n"),
            CodecError::Malformed("invalid status line")
        );
        assert_eq!(
            response_error(b"HTTP/1.1 200 O\0K\r\n\r\n"),
            CodecError::Malformed("invalid status line")
        );
        assert_eq!(
            complete_response(Method::Get, b"HTTP/1.1 599 X\r\n\r\n").status(),
            599
        );
    }

    #[test]
    fn response_body_rules_of_rfc_9112_section_6_3() {
        let framed = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
        assert_eq!(
            complete_response(Method::Head, framed).body(),
            BodyKind::Empty
        );
        assert!(complete_response(Method::Head, framed).keep_alive());
        assert_eq!(
            complete_response(Method::Get, framed).body(),
            BodyKind::Length(10)
        );
        for status in [
            "100 Continue",
            "103 Early Hints",
            "204 No Content",
            "304 Not Modified",
        ] {
            let input = format!("HTTP/1.1 {status}\r\nContent-Length: 10\r\n\r\n");
            let head = complete_response(Method::Get, input.as_bytes());
            assert_eq!(head.body(), BodyKind::Empty, "{status}");
            assert!(head.keep_alive(), "{status}");
        }
        let chunked = complete_response(
            Method::Get,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        assert_eq!(chunked.body(), BodyKind::Chunked);
        assert!(chunked.keep_alive());
        assert_eq!(
            complete_response(
                Method::Head,
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            .body(),
            BodyKind::Empty
        );
        let until_close = complete_response(Method::Get, b"HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(until_close.body(), BodyKind::UntilClose);
        assert!(!until_close.keep_alive());
        assert_eq!(
            complete_response(Method::Get, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").body(),
            BodyKind::Length(0)
        );
    }

    #[test]
    fn interim_switching_and_tunnel_responses() {
        let interim = complete_response(Method::Post, b"HTTP/1.1 100 Continue\r\n\r\n");
        assert!(interim.is_informational());
        assert_eq!(interim.body(), BodyKind::Empty);
        let switching = complete_response(Method::Get, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n");
        assert!(!switching.is_informational());
        assert_eq!(switching.body(), BodyKind::Empty);
        assert!(!switching.keep_alive());
        let tunnel = complete_response(
            Method::Connect,
            b"HTTP/1.1 200 Connection Established\r\n\r\n",
        );
        assert_eq!(tunnel.body(), BodyKind::Empty);
        assert!(!tunnel.keep_alive());
        let refused = complete_response(
            Method::Connect,
            b"HTTP/1.1 407 Auth\r\nContent-Length: 0\r\n\r\n",
        );
        assert_eq!(refused.body(), BodyKind::Length(0));
        assert!(refused.keep_alive());
    }

    #[test]
    fn http_1_0_responses_keep_alive_only_when_asked() {
        let plain = complete_response(Method::Get, b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n");
        assert_eq!(plain.version(), Version::Http10);
        assert!(!plain.keep_alive());
        let asked = complete_response(
            Method::Get,
            b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n",
        );
        assert!(asked.keep_alive());
        let until_close = complete_response(
            Method::Get,
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n",
        );
        assert!(!until_close.keep_alive());
        let closing = complete_response(
            Method::Get,
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n",
        );
        assert!(!closing.keep_alive());
    }

    #[test]
    fn response_framing_is_as_strict_as_request_framing() {
        assert_eq!(
            response_error(
                b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
            ),
            CodecError::BadFraming("Content-Length with Transfer-Encoding")
        );
        assert_eq!(
            response_error(b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
            CodecError::BadFraming("Transfer-Encoding on HTTP/1.0")
        );
        assert_eq!(
            response_error(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"),
            CodecError::BadFraming("conflicting Content-Length")
        );
        assert_eq!(
            response_error(b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: gzip\r\n\r\n"),
            CodecError::BadFraming("chunked is not the final transfer-coding")
        );
        assert_eq!(
            response_error(b"HTTP/1.1 200 OK\r\nX : y\r\n\r\n"),
            CodecError::Malformed("invalid field name")
        );
        assert_eq!(
            response_error(b"HTTP/1.1 200 OK\r\nX: y\r\n z\r\n\r\n"),
            CodecError::Malformed("invalid field name")
        );
        // A response needs no Host.
        assert!(complete_response(
            Method::Get,
            b"HTTP/1.1 200 OK\r\nHost: a b\r\nContent-Length: 0\r\n\r\n"
        )
        .keep_alive());
    }

    #[test]
    fn response_split_at_every_position() {
        let input: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: x-hop\r\nX-Hop: 1\r\nVary: a\r\n\r\n0\r\n\r\n";
        let head_len = input.len() - 5;
        let limits = HeadLimits::default();
        for split in 0..input.len() {
            let mut buf = BytesMut::from(&input[..split]);
            let first = parse_response(&mut buf, &limits, Method::Get).unwrap();
            if split < head_len {
                assert!(first.is_none(), "prefix of {split} bytes");
                buf.extend_from_slice(&input[split..]);
            } else {
                assert!(first.is_some());
                continue;
            }
            let head = parse_response(&mut buf, &limits, Method::Get)
                .unwrap()
                .unwrap();
            assert_eq!(head.body(), BodyKind::Chunked);
            let forwarded: Vec<_> = head.forwardable_fields().map(|(name, _)| name).collect();
            assert_eq!(forwarded, vec![&b"Vary"[..]]);
            assert_eq!(&buf[..], b"0\r\n\r\n");
        }
    }

    #[test]
    fn hop_by_hop_list_is_case_insensitive() {
        for name in [
            "Connection",
            "proxy-connection",
            "KEEP-ALIVE",
            "te",
            "Transfer-Encoding",
            "upgrade",
            "Trailer",
        ] {
            assert!(is_hop_by_hop(name.as_bytes()), "{name}");
        }
        for name in ["Content-Length", "Host", "tea", "trailers", "Expect", ""] {
            assert!(!is_hop_by_hop(name.as_bytes()), "{name}");
        }
    }

    // ---- robustness ----

    #[test]
    fn garbage_never_panics() {
        const ALPHABET: &[u8] = b"GET POST HTTP/1.1 HTTP/1.0 HEAD \r\n:;,=\"\\ \t\0\x7f\xff/?#@[]*0123456789abcdefxX-Host Content-Length Transfer-Encoding chunked Connection close Expect 100-continue";
        let valid: &[u8] = b"POST http://h/x?y HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nConnection: keep-alive, x\r\nExpect: 100-continue\r\n\r\nhello";
        let limits = HeadLimits {
            max_head: 512,
            max_headers: 16,
            max_uri: 128,
        };
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        for round in 0..20_000 {
            let input: Vec<u8> = if round % 2 == 0 {
                let len = rng.below(200);
                (0..len)
                    .map(|_| ALPHABET[rng.below(ALPHABET.len())])
                    .collect()
            } else {
                let mut mutated = valid.to_vec();
                for _ in 0..=rng.below(4) {
                    let at = rng.below(mutated.len());
                    match rng.below(3) {
                        0 => mutated[at] = rng.next() as u8,
                        1 => mutated.insert(at, ALPHABET[rng.below(ALPHABET.len())]),
                        _ => {
                            mutated.remove(at);
                        }
                    }
                }
                mutated
            };
            let mut buf = BytesMut::from(&input[..]);
            if let Ok(Some(head)) = parse_request(&mut buf, &limits) {
                assert_eq!(head.head_len() + buf.len(), input.len());
                let _ = (
                    head.path(),
                    head.host(),
                    head.fields().count(),
                    head.forwardable_fields().count(),
                );
            } else {
                assert_eq!(buf.len(), input.len());
            }
            let mut buf = BytesMut::from(&input[..]);
            if let Ok(Some(head)) = parse_response(&mut buf, &limits, Method::Get) {
                assert_eq!(head.head_len() + buf.len(), input.len());
                let _ = (head.reason(), head.fields().count());
            }
        }
    }
}
