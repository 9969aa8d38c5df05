//! Parsing of HTTP/1.x message heads: the request head a client sends and the response head an
//! upstream sends back. This module holds what both roles share; each role and each part of a head
//! has its own sibling module.
//!
//! [`parse_request`](super::parse_request) (module `request`) and
//! [`parse_response`](super::parse_response) (module `response`) run `httparse` over the front of a
//! `BytesMut`: after the empty lines [`skip_leading_empty_lines`] allows, in the header slots
//! [`with_header_slots`] lends, with its errors translated by [`head_error`] and the size checked
//! against [`HeadLimits`]. Once a head is complete and valid they split exactly the head bytes off
//! the buffer and freeze them, so what stays in the buffer is body or pipelined data. A parsed head
//! keeps those frozen bytes plus `u32` spans into them (module `chars`): one `Vec` of field spans
//! per head and no copy of any name or value. Both roles go through one field pass (module
//! `fields`) that checks the line endings, decides the body framing ([`BodyKind`]), reads
//! `Connection` and marks which fields may be forwarded; the start lines (the request-target in
//! module `target`) and the few role-specific rules (request `Host` and `Expect`, the response body
//! rules of RFC 9112 §6.3) sit around that pass.
//!
//! The parser is strict on purpose: a proxy that reads a head differently from the server behind it
//! lets a client smuggle a second request past it. So every line must end in CRLF, `Content-Length`
//! and `Transfer-Encoding` must be unambiguous, and anything `httparse` tolerates that RFC 9112
//! does not (non-ASCII request-targets, bare LF, unbounded empty lines before the request line) is
//! refused here.

use std::mem::MaybeUninit;

use httparse::Header;

use super::error::CodecError;

/// Header slots kept on the stack for `httparse`; a larger `max_headers` costs one allocation
/// per parse attempt.
const STACK_HEADER_SLOTS: usize = 128;
/// RFC 9112 §2.2 asks servers to skip "at least one" empty line before a request line (old
/// clients sent a stray CRLF after a POST body); a few more are tolerated, a stream of them is
/// garbage.
const MAX_LEADING_EMPTY_LINES: usize = 4;

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
    pub(super) fn from_minor(minor: u8) -> Self {
        if minor == 0 {
            Self::Http10
        } else {
            Self::Http11
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

/// Which side sent the head; selects the role-specific field rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Role {
    Request,
    Response,
}

/// Lends `httparse` a slice of `max_headers` uninitialised header slots: on the stack when it
/// fits, so the common case allocates nothing.
pub(super) fn with_header_slots<'b, T>(
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
pub(super) fn skip_leading_empty_lines(buf: &[u8]) -> Result<Option<usize>, CodecError> {
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

pub(super) fn check_complete_len(len: usize, limits: &HeadLimits) -> Result<(), CodecError> {
    if len > limits.max_head || u32::try_from(len).is_err() {
        Err(CodecError::HeadTooLarge)
    } else {
        Ok(())
    }
}

/// Translates an `httparse` error; a well-formed `HTTP/x` version that is not 1.0 or 1.1 is
/// a 505 rather than a 400.
pub(super) fn head_error(error: httparse::Error, from_start_line: &[u8], role: Role) -> CodecError {
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

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::*;
    use crate::http1::request::{parse_request, Method};
    use crate::http1::response::parse_response;
    use crate::http1::test_shortcuts::{complete_request, request, request_error, response_error};

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
