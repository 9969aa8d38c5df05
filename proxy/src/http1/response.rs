//! The response side: the head an upstream sends back, from the status line to the empty line after
//! the last field.
//!
//! [`parse_response`] takes the upstream connection's `BytesMut`, the [`HeadLimits`] and the method
//! of the request being answered, since a `HEAD` or `CONNECT` request changes how the response body
//! is delimited. A complete head goes through the status line checks (a status of 100 to 599, the
//! raw reason phrase [`reason_span`] finds), the shared field pass of module `fields` and the body
//! rules of RFC 9112 §6.3; then its bytes are split off the buffer into a [`ResponseHead`], and
//! what stays in the buffer is body. `Ok(None)` means read more; on error the buffer is left as it
//! was. The accessors return slices of the frozen head bytes, and [`ResponseHead::body`] and
//! [`ResponseHead::keep_alive`] tell the caller what follows the head and whether the connection
//! can carry another request.

use bytes::{Bytes, BytesMut};
use httparse::{ParserConfig, Status};

use super::chars::Span;
use super::error::CodecError;
use super::fields::{expect_crlf, index_fields, IndexedHead};
use super::head::{
    check_complete_len, head_error, skip_leading_empty_lines, with_header_slots, BodyKind,
    HeadLimits, Role, Version,
};
use super::request::Method;

/// `"HTTP/1.1 200"`: the start of a status line that `httparse` accepted.
const VERSION_SP_STATUS_LEN: usize = 12;

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

    /// The field line at `index` (in order, duplicates kept), if there is one.
    pub fn field_at(&self, index: usize) -> Option<(&[u8], &[u8])> {
        self.head.field_at(index)
    }

    /// The value of the first field called `name` (case-insensitive).
    pub fn field(&self, name: &str) -> Option<&[u8]> {
        self.head.field(name)
    }

    /// All fields but the hop-by-hop ones ([`is_hop_by_hop`](super::is_hop_by_hop) and those named by `Connection`),
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

    /// The head's bytes as parsed, from the status line to the empty line.
    pub fn raw(&self) -> &Bytes {
        &self.head.bytes
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::test_shortcuts::{complete_response, response_error};

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
}
