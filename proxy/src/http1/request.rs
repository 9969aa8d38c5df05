//! The request side: the head a client sends, from the request line to the empty line after the
//! last field.
//!
//! [`parse_request`] takes the connection's `BytesMut` and the [`HeadLimits`]. While the head is
//! incomplete it returns `Ok(None)` and leaves the buffer alone, failing early only once the limits
//! can no longer be met ([`check_incomplete_request`]: a target too long is a 414 even before its
//! line ends). A complete head goes through the request line checks (CRLF, [`Method`], the target
//! of module `target`), the shared field pass of module `fields` and the request rules (`Host`
//! required on HTTP/1.1 and equal to an absolute target's authority, the body kind); then its bytes
//! are split off the buffer into a [`RequestHead`], and what stays in the buffer is body or the
//! next request. The head's accessors return slices of those frozen bytes; nothing is copied.

use bytes::{Bytes, BytesMut};
use httparse::{ParserConfig, Status};

use super::chars::Span;
use super::error::CodecError;
use super::fields::{expect_crlf, index_fields, IndexedHead};
use super::head::{
    check_complete_len, head_error, skip_leading_empty_lines, with_header_slots, BodyKind,
    HeadLimits, Role, Version,
};
use super::target::{parse_target, TargetForm};

/// Room for the method, the two spaces and the version around the target while the request
/// line is still incomplete.
const REQUEST_LINE_SLACK: usize = 32;
/// `" HTTP/1.1"`: what follows the target on a request line that `httparse` accepted.
const SP_VERSION_LEN: usize = 9;

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
    /// Idempotent (RFC 9110 §9.2.2): the same request sent twice has the effect of one.
    /// `Other` methods are not taken to be.
    pub fn is_idempotent(self) -> bool {
        matches!(
            self,
            Method::Get
                | Method::Head
                | Method::Put
                | Method::Delete
                | Method::Options
                | Method::Trace
        )
    }

    pub(crate) fn from_token(token: &[u8]) -> Self {
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

    /// The fields a proxy may pass on: all but the hop-by-hop ones ([`is_hop_by_hop`](super::is_hop_by_hop) and those
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::test_shortcuts::{complete_request, forwardable_names};

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
}
