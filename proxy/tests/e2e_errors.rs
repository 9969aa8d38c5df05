//! End to end: every way a request can fail, as the client sees it. Each failure has one status
//! (RFC 9110 §15), malformed or refused requests close the connection, and no failure leaves
//! the client waiting: every test has a deadline.

mod common;

use std::fmt::Write as _;
use std::thread;
use std::time::{Duration, Instant};

use common::{closed_port, get, Client, Next, Origin, Proxy, Response};

/// The limits the tests below run into.
const LIMITS: [&str; 12] = [
    "--client-header-timeout",
    "1s",
    "--client-body-timeout",
    "1s",
    "--max-body",
    "1KiB",
    "--max-uri",
    "1KiB",
    "--max-request-head",
    "4KiB",
    "--max-headers",
    "20",
];

fn limited() -> (Origin, Proxy) {
    let origin = Origin::echo("limited");
    let proxy = Proxy::start(&[origin.addr], &LIMITS);
    (origin, proxy)
}

/// Sends `raw` on a new connection; the answer must be `status`, followed by a close.
fn refused(proxy: &Proxy, raw: &[u8], status: u16) -> Response {
    let mut client = proxy.client();
    client.send(raw);
    let response = client.read_response(false);
    assert_eq!(
        response.status,
        status,
        "request {:?} got {}",
        String::from_utf8_lossy(raw),
        response.head.raw
    );
    assert!(
        response.head.has_token("connection", "close"),
        "a refused request's response should announce the close: {}",
        response.head.raw
    );
    client
        .expect_closed(Duration::from_secs(3))
        .unwrap_or_else(|e| panic!("after {status} to {:?}: {e}", String::from_utf8_lossy(raw)));
    response
}

#[test]
fn malformed_request_heads_are_400_and_close() {
    let (origin, proxy) = limited();
    let cases: [&[u8]; 4] = [
        b"GARBAGE\r\n\r\n",
        b"G\x01T / HTTP/1.1\r\nHost: a.test\r\n\r\n",
        // RFC 9112 §3: a request-line is exactly method SP target SP version; an invalid one
        // is a 400 (a well-formed but unsupported version would be 505).
        b"GET /a b HTTP/1.1\r\nHost: a.test\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a.test\r\nNo colon in this line\r\n\r\n",
    ];
    let mut wrong = Vec::new();
    for raw in cases {
        let mut client = proxy.client();
        client.send(raw);
        let response = client.read_response(false);
        let closed = client.expect_closed(Duration::from_secs(3));
        if response.status != 400 || closed.is_err() {
            wrong.push(format!(
                "{:?} -> {:?} ({closed:?})",
                String::from_utf8_lossy(raw),
                response.head.start
            ));
        }
    }
    assert!(wrong.is_empty(), "expected 400 and a close: {wrong:#?}");
    assert_eq!(
        origin.requests(),
        0,
        "a malformed request reached the origin"
    );
}

#[test]
fn an_unsupported_http_version_is_505() {
    let (origin, proxy) = limited();
    // RFC 9110 §15.6.6.
    refused(&proxy, b"GET / HTTP/2.0\r\nHost: a.test\r\n\r\n", 505);
    assert_eq!(origin.requests(), 0);
}

#[test]
fn content_length_with_transfer_encoding_is_400() {
    let (origin, proxy) = limited();
    // RFC 9112 §6.1: a request smuggling attempt; reject, and close either way.
    refused(
        &proxy,
        b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n\
          Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    );
    assert_eq!(origin.requests(), 0);
}

#[test]
fn bad_content_length_is_400() {
    let (origin, proxy) = limited();
    let cases: [&[u8]; 4] = [
        b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: abc\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: -1\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5, 6\r\n\r\nhello",
        b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
    ];
    for raw in cases {
        refused(&proxy, raw, 400);
    }
    assert_eq!(origin.requests(), 0);
}

#[test]
fn missing_or_repeated_host_on_http11_is_400() {
    let (origin, proxy) = limited();
    // RFC 9112 §3.2: 400 to an HTTP/1.1 request with no Host or more than one.
    refused(&proxy, b"GET / HTTP/1.1\r\n\r\n", 400);
    refused(
        &proxy,
        b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n",
        400,
    );
    assert_eq!(origin.requests(), 0);
}

#[test]
fn a_partial_head_then_silence_is_408() {
    let (origin, proxy) = limited();
    let mut client = proxy.client();
    let started = Instant::now();
    client.send("GET /slowloris HTTP/1.1\r\nHost: a.test\r\nX-Partial: ");
    let response = client.read_response(false);
    let waited = started.elapsed();
    assert_eq!(response.status, 408);
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "408 after {waited:?} with a 1 s client-header-timeout"
    );
    client
        .expect_closed(Duration::from_secs(3))
        .expect("closed after 408");
    assert_eq!(origin.requests(), 0);
}

#[test]
fn a_stalled_request_body_is_408() {
    let (_origin, proxy) = limited();
    let mut client = proxy.client();
    let started = Instant::now();
    client.send("POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 10\r\n\r\nabc");
    let response = client.read_response(false);
    let waited = started.elapsed();
    assert_eq!(response.status, 408, "{}", response.head.raw);
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "408 after {waited:?} with a 1 s client-body-timeout"
    );
    client
        .expect_closed(Duration::from_secs(3))
        .expect("closed after 408");
}

#[test]
fn a_content_length_over_max_body_is_413() {
    let (origin, proxy) = limited();
    let mut request =
        b"POST /upload HTTP/1.1\r\nHost: a.test\r\nContent-Length: 2048\r\n\r\n".to_vec();
    request.extend_from_slice(&[b'x'; 2048]);
    refused(&proxy, &request, 413);
    assert_eq!(
        origin.requests(),
        0,
        "the oversized request reached the origin"
    );

    // With Expect: 100-continue the refusal comes instead of the 100 (RFC 9110 §10.1.1).
    let mut client = proxy.client();
    client.send(
        "POST /upload HTTP/1.1\r\nHost: a.test\r\nContent-Length: 2048\r\n\
         Expect: 100-continue\r\n\r\n",
    );
    let response = client.read_response(false);
    assert_eq!(response.status, 413);
    assert!(
        response.interim.is_empty(),
        "100 Continue sent for a body that will be refused"
    );
}

#[test]
fn a_chunked_body_growing_past_max_body_is_413() {
    let (_origin, proxy) = limited();
    let mut client = proxy.client();
    client.send("POST /upload HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n");
    let chunk = format!("200\r\n{}\r\n", "y".repeat(0x200));
    for _ in 0..3 {
        // The connection may already be closing once the limit is passed.
        if client.wire.write(chunk.as_bytes()).is_err() {
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let response = client.read_response(false);
    assert_eq!(response.status, 413, "{}", response.head.raw);
    client
        .expect_closed(Duration::from_secs(3))
        .expect("closed after 413");
}

#[test]
fn a_uri_over_max_uri_is_414() {
    let (origin, proxy) = limited();
    let path = format!("/{}", "a".repeat(2000));
    refused(&proxy, get(&path, "a.test").as_bytes(), 414);
    assert_eq!(origin.requests(), 0);
}

#[test]
fn a_head_over_max_request_head_or_too_many_fields_is_431() {
    let (origin, proxy) = limited();
    let mut big = String::from("GET / HTTP/1.1\r\nHost: a.test\r\n");
    for i in 0..6 {
        let _ = write!(big, "X-Big-{i}: {}\r\n", "v".repeat(1000));
    }
    big.push_str("\r\n");
    refused(&proxy, big.as_bytes(), 431);

    let mut many = String::from("GET / HTTP/1.1\r\nHost: a.test\r\n");
    for i in 0..30 {
        let _ = write!(many, "X-Field-{i}: {i}\r\n");
    }
    many.push_str("\r\n");
    refused(&proxy, many.as_bytes(), 431);
    assert_eq!(origin.requests(), 0);

    // Just under both limits is fine.
    let mut client = proxy.client();
    let mut ok = String::from("GET / HTTP/1.1\r\nHost: a.test\r\n");
    for i in 0..15 {
        let _ = write!(ok, "X-Field-{i}: {}\r\n", "v".repeat(100));
    }
    ok.push_str("\r\n");
    assert_eq!(client.request(ok).status, 200);
}

#[test]
fn an_origin_refusing_connections_is_502() {
    let proxy = Proxy::start(&[closed_port()], &["--upstream-connect-timeout", "1s"]);
    let mut client = proxy.client();
    let started = Instant::now();
    let response = client.request(get("/", "a.test"));
    assert_eq!(response.status, 502, "{}", response.head.raw);
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn an_origin_sending_garbage_is_502() {
    let origin = Origin::start(|_, conn| {
        conn.write(b"SSH-2.0-OpenSSH_9.6 this is not HTTP\r\n\r\n")?;
        Ok(Next::Close)
    });
    let proxy = Proxy::start(&[origin.addr], &[]);
    let response = Client::connect(proxy.addr).request(get("/", "a.test"));
    assert_eq!(response.status, 502, "{}", response.head.raw);
}

#[test]
fn an_origin_closing_without_a_response_is_502() {
    let origin = Origin::start(|_, _| Ok(Next::Close));
    let proxy = Proxy::start(&[origin.addr], &[]);
    let response = Client::connect(proxy.addr).request(get("/", "a.test"));
    assert_eq!(response.status, 502, "{}", response.head.raw);
}

#[test]
fn an_origin_closing_mid_body_cuts_the_client_connection() {
    let origin = Origin::start(|_, conn| {
        conn.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")?;
        thread::sleep(Duration::from_millis(50));
        Ok(Next::Close)
    });
    let proxy = Proxy::start(&[origin.addr], &[]);
    let mut client = proxy.client();
    client.send(get("/", "a.test"));
    // The head went out before the origin failed: all ringwall can do is close, so the client
    // sees a short body, never a complete-looking response.
    let result = client.try_read_response(false);
    assert!(
        result.is_err(),
        "a truncated body was delivered as complete: {:?}",
        result.map(|r| r.head.raw)
    );
}

#[test]
fn an_origin_that_never_answers_is_504() {
    let origin = Origin::start(|_, _| {
        thread::sleep(Duration::from_secs(4));
        Ok(Next::Close)
    });
    let proxy = Proxy::start(&[origin.addr], &["--upstream-response-timeout", "1s"]);
    let mut client = proxy.client();
    let started = Instant::now();
    let response = client.request(get("/", "a.test"));
    let waited = started.elapsed();
    assert_eq!(response.status, 504, "{}", response.head.raw);
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_millis(3500),
        "504 after {waited:?} with a 1 s upstream-response-timeout"
    );
}

#[test]
fn an_error_answer_closes_the_connection_when_the_client_asked_for_that() {
    let proxy = Proxy::start(&[closed_port()], &["--upstream-connect-timeout", "1s"]);
    for request in [
        "GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        "GET / HTTP/1.0\r\n\r\n",
        "GET / HTTP/1.0\r\nConnection: close, keep-alive\r\n\r\n",
    ] {
        let mut client = proxy.client();
        let response = client.request(request);
        assert_eq!(response.status, 502, "{request:?}");
        assert_eq!(response.header("connection"), Some("close"), "{request:?}");
        client
            .expect_closed(Duration::from_secs(3))
            .unwrap_or_else(|e| panic!("{request:?}: {e}"));
    }
    // A keep-alive client keeps its connection after an origin's failure.
    let mut client = proxy.client();
    let response = client.request("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(response.header("connection"), Some("keep-alive"));
    assert_eq!(client.request(get("/", "a.test")).status, 502);
}
