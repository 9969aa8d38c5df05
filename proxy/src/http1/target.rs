//! The request-target: its four forms (RFC 9112 §3.2), and the authority checks (RFC 9110 §7.2)
//! that validate `Host` too.
//!
//! [`parse_target`] gets the head bytes, the [`Span`] of the target `httparse` found and the
//! method. It refuses a target with bytes or a form the method does not allow, and returns a
//! [`Target`]: its [`TargetForm`], the span of its path without the query, and the span of its
//! authority when it has one (absolute form, `CONNECT`), which module `request` then matches
//! against `Host`. [`is_valid_authority`] (a host, IP literals included, and an optional port)
//! serves both the target and the field pass's `Host` check.

use super::chars::{Span, REG_NAME_BYTES};
use super::error::CodecError;
use super::request::Method;

/// The request-target forms of RFC 9112 §3.2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TargetForm {
    Origin,
    Absolute,
    Authority,
    Asterisk,
}

/// The parts of a request-target that routing needs.
pub(super) struct Target {
    pub(super) form: TargetForm,
    pub(super) path: Span,
    pub(super) authority: Option<Span>,
}

/// Checks the target's bytes and form (RFC 9112 §3.2) and finds its path and authority.
pub(super) fn parse_target(head: &[u8], span: Span, method: Method) -> Result<Target, CodecError> {
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
pub(super) fn is_valid_authority(authority: &[u8], port_required: bool) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::test_shortcuts::{complete_request, request_error};

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
}
