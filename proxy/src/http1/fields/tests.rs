//! Tests of the field pass: line endings, `Content-Length`, `Transfer-Encoding`, `Connection`,
//! `Upgrade`, `Expect`, and which fields are forwarded. The pass only runs inside a parse, so
//! these tests feed whole heads through `parse_request` or `parse_response` (by way of the
//! shortcuts in module `test_shortcuts`); only the hop-by-hop list is asked directly.

use super::*;
use crate::http1::head::BodyKind;
use crate::http1::request::Method;
use crate::http1::test_shortcuts::{
    complete_request, complete_response, forwardable_names, request_error, response_error,
    with_field,
};

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
    let no_upgrade = complete_request(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\n\r\n");
    assert_eq!(no_upgrade.upgrade(), None);
    let http10 =
        complete_request(b"GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n");
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

#[test]
fn expect_100_continue_only_on_http_1_1() {
    let head = complete_request(&with_field("Content-Length: 10\r\nExpect: 100-continue"));
    assert!(head.expect_continue());
    assert_eq!(forwardable_names(&head), ["Host"]);
    assert!(complete_request(&with_field("Expect: 100-Continue")).expect_continue());
    let head =
        complete_request(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n");
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
