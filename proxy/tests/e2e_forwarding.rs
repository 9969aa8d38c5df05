//! End to end: how ringwall forwards HTTP/1.1 exchanges: connection management, message
//! framing in both directions, interim responses, and the fields it removes and adds.
//!
//! One scripted origin (dispatching on the request path) sits behind a proxy started per test;
//! the client is a raw socket, or `ureq` for ordinary requests.

mod common;

use std::io;
use std::thread;
use std::time::Duration;

use common::{echo, get, Framing, Next, Origin, OriginConn, OriginRequest, Proxy};

/// The origin behind these tests; see [`script`].
fn scripted() -> Origin {
    Origin::start(script)
}

/// Paths with a behaviour of their own; anything else is echoed.
fn script(req: &OriginRequest, conn: &mut OriginConn) -> io::Result<Next> {
    let path = req.target.split('?').next().unwrap_or_default();
    match path {
        "/slow" => {
            thread::sleep(Duration::from_millis(300));
            echo("scripted", req, conn)
        }
        "/sized" => {
            conn.respond(200, &[("Content-Type", "text/plain")], &[b'x'; 1234])?;
            Ok(Next::KeepAlive)
        }
        "/204" => {
            conn.respond(204, &[("X-Status", "204")], b"")?;
            Ok(Next::KeepAlive)
        }
        "/304" => {
            conn.respond(304, &[("ETag", "\"v1\"")], &[b'x'; 50])?;
            Ok(Next::KeepAlive)
        }
        "/early-hints" => {
            conn.write(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")?;
            thread::sleep(Duration::from_millis(50));
            echo("scripted", req, conn)
        }
        "/chunked" => {
            conn.body()?;
            conn.write(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Digest\r\n\
                  Content-Type: text/plain\r\n\r\n\
                  5\r\nhello\r\n6\r\n world\r\n0\r\nX-Digest: abc123\r\n\r\n",
            )?;
            Ok(Next::KeepAlive)
        }
        "/close-delimited" => {
            conn.body()?;
            conn.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n",
            )?;
            for part in ["until ", "the ", "origin ", "closes"] {
                conn.write(part.as_bytes())?;
                thread::sleep(Duration::from_millis(10));
            }
            Ok(Next::Close)
        }
        "/origin-closes" => {
            conn.body()?;
            conn.respond(200, &[("Connection", "close")], b"bye")?;
            Ok(Next::Close)
        }
        "/hop" => {
            conn.body()?;
            conn.write(
                b"HTTP/1.1 200 OK\r\nConnection: X-Origin-Hop\r\nX-Origin-Hop: 1\r\n\
                  Keep-Alive: timeout=5, max=100\r\nProxy-Connection: keep-alive\r\n\
                  Upgrade: example/2\r\nX-Kept: 1\r\nVia: 1.1 origin-cache\r\n\
                  Content-Length: 2\r\n\r\nok",
            )?;
            Ok(Next::KeepAlive)
        }
        _ => echo("scripted", req, conn),
    }
}

fn proxy_for(origin: &Origin) -> Proxy {
    Proxy::start(&[origin.addr], &[])
}

#[test]
fn ureq_get_and_post_pass_through() {
    let origin = scripted();
    let proxy = proxy_for(&origin);
    let agent = common::ureq_agent();

    let mut response = agent
        .get(proxy.url("/hello?x=1"))
        .header("X-Custom", "kept")
        .call()
        .expect("GET through ringwall");
    assert_eq!(response.status(), 200);
    let body = response.body_mut().read_to_string().expect("body");
    assert!(body.starts_with("GET /hello?x=1 HTTP/1.1\r\n"), "{body}");
    // ureq writes field names in lower case.
    assert!(
        body.to_ascii_lowercase().contains("\r\nx-custom: kept\r\n"),
        "{body}"
    );

    let mut response = agent
        .post(proxy.url("/submit"))
        .send("name=ringwall")
        .expect("POST through ringwall");
    assert_eq!(response.status(), 200);
    let body = response.body_mut().read_to_string().expect("body");
    assert!(body.starts_with("POST /submit HTTP/1.1\r\n"), "{body}");
    assert!(body.ends_with("\r\n\r\nname=ringwall"), "{body}");
}

#[test]
fn keep_alive_serves_sequential_requests_on_one_connection() {
    let origin = scripted();
    let proxy = proxy_for(&origin);
    let mut client = proxy.client();
    for i in 0..5 {
        let response = client.request(get(&format!("/seq/{i}"), "ka.test"));
        assert_eq!(response.status, 200);
        assert_eq!(response.framing, Framing::Length);
        assert!(!response.head.has_token("connection", "close"));
        let (seen, _) = response.echoed();
        assert_eq!(seen.start, format!("GET /seq/{i} HTTP/1.1"));
    }
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let origin = scripted();
    let proxy = proxy_for(&origin);
    let mut client = proxy.client();
    client.send(
        "GET /slow HTTP/1.1\r\nHost: pipe.test\r\n\r\n\
         POST /second HTTP/1.1\r\nHost: pipe.test\r\nContent-Length: 4\r\n\r\nbody\
         GET /third HTTP/1.1\r\nHost: pipe.test\r\n\r\n",
    );
    let first = client.read_response(false);
    let second = client.read_response(false);
    let third = client.read_response(false);
    assert_eq!(first.echoed().0.start, "GET /slow HTTP/1.1");
    assert_eq!(second.echoed().0.start, "POST /second HTTP/1.1");
    assert_eq!(second.echoed().1, b"body");
    assert_eq!(third.echoed().0.start, "GET /third HTTP/1.1");
}

#[test]
fn connection_close_from_the_client_closes_after_the_response() {
    let origin = scripted();
    let proxy = proxy_for(&origin);
    let mut client = proxy.client();
    let response =
        client.request("GET /bye HTTP/1.1\r\nHost: close.test\r\nConnection: close\r\n\r\n");
    assert_eq!(response.status, 200);
    // RFC 9112 §9.6: the server closes after the response, and should say so.
    assert!(
        response.head.has_token("connection", "close"),
        "{}",
        response.head.raw
    );
    client
        .expect_closed(Duration::from_secs(2))
        .expect("ringwall closes the connection after `Connection: close`");
}

#[test]
fn an_origin_closing_its_connection_does_not_close_the_client_connection() {
    let origin = scripted();
    let proxy = proxy_for(&origin);
    let mut client = proxy.client();
    for _ in 0..3 {
        let response = client.request(get("/origin-closes", "oc.test"));
        assert_eq!(response.status, 200);
        assert_eq!(response.body, b"bye");
        assert!(
            !response.head.has_token("connection", "close"),
            "the origin's `Connection: close` is hop-by-hop: {}",
            response.head.raw
        );
    }
    assert_eq!(origin.connections(), 3, "one origin connection per request");
}

#[test]
fn http10_client_without_keep_alive_gets_its_response_and_a_close() {
    let origin = scripted();
    let proxy = proxy_for(&origin);
    let mut client = proxy.client();
    let response = client.request("GET /old HTTP/1.0\r\n\r\n");
    assert_eq!(response.status, 200);
    let (seen, _) = response.echoed();
    // RFC 9110 §6.2: an intermediary sends its own version upstream.
    assert_eq!(seen.start, "GET /old HTTP/1.1");
    assert!(
        seen.has("host"),
        "HTTP/1.1 needs a Host upstream: {}",
        seen.raw
    );
    client
        .expect_closed(Duration::from_secs(2))
        .expect("an HTTP/1.0 connection without keep-alive closes after one response");
}

#[test]
fn http10_client_with_keep_alive_keeps_its_connection() {
    let origin = scripted();
    let proxy = proxy_for(&origin);
    let mut client = proxy.client();
    for i in 0..2 {
        let response = client.request(format!(
            "GET /old/{i} HTTP/1.0\r\nHost: old.test\r\nConnection: keep-alive\r\n\r\n"
        ));
        assert_eq!(response.status, 200);
        assert_eq!(response.framing, Framing::Length);
        // RFC 9112 §C.2.2: a 1.0 client keeps the connection only if the response says so.
        assert!(
            response.head.has_token("connection", "keep-alive"),
            "{}",
            response.head.raw
        );
        let (seen, _) = response.echoed();
        assert!(
            !seen.has_token("connection", "keep-alive"),
            "the client's Connection is hop-by-hop: {}",
            seen.raw
        );
    }
}

#[test]
fn chunked_origin_response_reaches_an_http10_client_dechunked_and_close_delimited() {
    let origin = scripted();
    let proxy = proxy_for(&origin);
    let mut client = proxy.client();
    let response = client.request("GET /chunked HTTP/1.0\r\nHost: old.test\r\n\r\n");
    assert_eq!(response.status, 200);
    assert!(
        !response.head.has("transfer-encoding"),
        "an HTTP/1.0 client cannot take chunked: {}",
        response.head.raw
    );
    assert_eq!(response.framing, Framing::Close);
    assert_eq!(response.text(), "hello world");
}

#[test]
fn head_response_keeps_the_content_length_and_has_no_body() {
    let origin = scripted();
    let proxy = proxy_for(&origin);
    let mut client = proxy.client();
    let response = client.request("HEAD /sized HTTP/1.1\r\nHost: head.test\r\n\r\n");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-length"), Some("1234"));
    assert!(
        !response.head.has("transfer-encoding"),
        "{}",
        response.head.raw
    );
    // Had ringwall sent body bytes after the head, they would show up as the next response.
    let next = client.request(get("/sized", "head.test"));
    assert_eq!(next.status, 200);
    assert_eq!(next.body.len(), 1234);
}

#[test]
fn responses_204_and_304_have_no_body() {
    let origin = scripted();
    let proxy = proxy_for(&origin);
    let mut client = proxy.client();

    let response = client.request(get("/204", "nobody.test"));
    assert_eq!(response.status, 204);
    assert_eq!(response.header("x-status"), Some("204"));
    // RFC 9110 §8.6 and RFC 9112 §6.1: no Content-Length, no Transfer-Encoding in a 204.
    assert!(
        !response.head.has("content-length"),
        "{}",
        response.head.raw
    );
    assert!(
        !response.head.has("transfer-encoding"),
        "{}",
        response.head.raw
    );

    let response = client.request(get("/304", "nobody.test"));
    assert_eq!(response.status, 304);
    assert_eq!(response.header("etag"), Some("\"v1\""));
    assert!(
        !response.head.has("transfer-encoding"),
        "{}",
        response.head.raw
    );

    // No stray body bytes: the next exchange on the connection is clean.
    let response = client.request(get("/after", "nobody.test"));
    assert_eq!(response.status, 200);
    assert_eq!(response.echoed().0.start, "GET /after HTTP/1.1");
}

#[test]
fn early_hints_reach_http11_clients_only() {
    let origin = scripted();
    let proxy = proxy_for(&origin);

    let mut client = proxy.client();
    let response = client.request(get("/early-hints", "hints.test"));
    assert_eq!(response.status, 200);
    assert_eq!(response.interim.len(), 1, "one 103 relayed");
    let hint = &response.interim[0];
    assert!(hint.start.starts_with("HTTP/1.1 103"), "{}", hint.raw);
    assert_eq!(hint.get("link"), Some("</style.css>; rel=preload"));

    // RFC 9110 §15.2: no 1xx to an HTTP/1.0 client.
    let mut client = proxy.client();
    let response = client.request("GET /early-hints HTTP/1.0\r\nHost: hints.test\r\n\r\n");
    assert_eq!(response.status, 200);
    assert!(response.interim.is_empty(), "{:?}", response.interim);
}

#[test]
fn expect_100_continue_is_answered_by_ringwall_before_the_body() {
    let origin = scripted();
    let proxy = proxy_for(&origin);
    let mut client = proxy.client();
    client.send(
        "POST /upload HTTP/1.1\r\nHost: expect.test\r\nContent-Length: 5\r\n\
         Expect: 100-continue\r\n\r\n",
    );
    let interim = client
        .read_head_within(Duration::from_secs(3))
        .expect("a 100 Continue before the body is sent");
    assert!(interim.start.starts_with("HTTP/1.1 100"), "{}", interim.raw);
    client.send("hello");
    let response = client.read_response(false);
    assert_eq!(response.status, 200);
    let (seen, body) = response.echoed();
    assert_eq!(body, b"hello");
    assert!(!seen.has("expect"), "Expect is not forwarded: {}", seen.raw);
}

#[test]
fn content_length_request_body_is_forwarded_with_its_length() {
    let origin = scripted();
    let proxy = proxy_for(&origin);
    let mut client = proxy.client();
    let response = client
        .request("PUT /doc HTTP/1.1\r\nHost: body.test\r\nContent-Length: 11\r\n\r\nhello world");
    assert_eq!(response.status, 200);
    let (seen, body) = response.echoed();
    assert_eq!(seen.get("content-length"), Some("11"));
    assert!(!seen.has("transfer-encoding"), "{}", seen.raw);
    assert_eq!(body, b"hello world");
}

#[test]
fn chunked_request_body_goes_upstream_chunked_with_its_trailers() {
    let origin = scripted();
    let proxy = proxy_for(&origin);
    let mut client = proxy.client();
    client.send(
        "POST /chunks HTTP/1.1\r\nHost: body.test\r\nTransfer-Encoding: chunked\r\n\
         Trailer: X-Checksum\r\n\r\n5\r\nhello\r\n",
    );
    thread::sleep(Duration::from_millis(50));
    client.send("1;ext=1\r\n \r\n5\r\nworld\r\n0\r\nX-Checksum: 42\r\n\r\n");
    let response = client.read_response(false);
    assert_eq!(response.status, 200);
    let (seen, body) = response.echoed();
    assert!(
        seen.has_token("transfer-encoding", "chunked"),
        "{}",
        seen.raw
    );
    assert!(!seen.has("content-length"), "{}", seen.raw);
    assert_eq!(body, b"hello world");
    assert_eq!(response.header("x-seen-trailers"), Some("X-Checksum=42;"));
}

#[test]
fn multi_megabyte_bodies_stream_intact_both_ways() {
    let origin = scripted();
    let proxy = proxy_for(&origin);
    let mut client = proxy.client();
    let payload: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();

    let mut request = format!(
        "POST /big HTTP/1.1\r\nHost: big.test\r\nContent-Length: {}\r\n\r\n",
        payload.len()
    )
    .into_bytes();
    request.extend_from_slice(&payload);
    let response = client.request(&request);
    assert_eq!(response.status, 200);
    assert!(
        response.echoed().1 == payload,
        "Content-Length body altered"
    );

    let mut request =
        b"POST /big HTTP/1.1\r\nHost: big.test\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for piece in payload.chunks(100_000) {
        request.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        request.extend_from_slice(piece);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let response = client.request(&request);
    assert_eq!(response.status, 200);
    assert!(response.echoed().1 == payload, "chunked body altered");
}

#[test]
fn close_delimited_origin_response_is_chunked_to_an_http11_client() {
    let origin = scripted();
    let proxy = proxy_for(&origin);
    let mut client = proxy.client();
    let response = client.request(get("/close-delimited", "eof.test"));
    assert_eq!(response.status, 200);
    assert_eq!(response.framing, Framing::Chunked, "{}", response.head.raw);
    assert_eq!(response.text(), "until the origin closes");
    // The client's connection outlives the origin's.
    let response = client.request(get("/after", "eof.test"));
    assert_eq!(response.status, 200);
}

#[test]
fn chunked_response_trailers_pass_through_to_an_http11_client() {
    let origin = scripted();
    let proxy = proxy_for(&origin);
    let mut client = proxy.client();
    let response = client.request(get("/chunked", "trailers.test"));
    assert_eq!(response.status, 200);
    assert_eq!(response.framing, Framing::Chunked);
    assert_eq!(response.text(), "hello world");
    assert!(
        response
            .trailers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("x-digest") && v == "abc123"),
        "trailers: {:?}",
        response.trailers
    );
}

#[test]
fn hop_by_hop_request_fields_are_not_forwarded() {
    let origin = scripted();
    let proxy = proxy_for(&origin);
    let mut client = proxy.client();
    let response = client.request(
        "GET /hop-in HTTP/1.1\r\nHost: hop.test\r\nConnection: keep-alive, X-Secret-Hop\r\n\
         X-Secret-Hop: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n\
         Proxy-Connection: keep-alive\r\nX-End-To-End: yes\r\n\r\n",
    );
    assert_eq!(response.status, 200);
    let (seen, _) = response.echoed();
    for field in ["x-secret-hop", "keep-alive", "te", "proxy-connection"] {
        assert!(!seen.has(field), "{field} was forwarded: {}", seen.raw);
    }
    assert!(
        !seen.has_token("connection", "x-secret-hop"),
        "{}",
        seen.raw
    );
    assert_eq!(seen.get("x-end-to-end"), Some("yes"));

    // An upgrade request is passed on as one (RFC 9110 §7.8): ringwall writes its own
    // `Connection: upgrade` and `Upgrade`. An origin that answers 200 instead of 101 is
    // answered as usual, and the connection stays HTTP.
    let response = client.request(
        "GET /hop-upgrade HTTP/1.1\r\nHost: hop.test\r\nConnection: Upgrade, X-Secret-Hop\r\n\
         X-Secret-Hop: 1\r\nUpgrade: example/1\r\n\r\n",
    );
    assert_eq!(response.status, 200);
    let (seen, _) = response.echoed();
    assert_eq!(seen.all("upgrade"), ["example/1"], "{}", seen.raw);
    assert_eq!(seen.all("connection"), ["upgrade"], "{}", seen.raw);
    assert!(!seen.has("x-secret-hop"), "{}", seen.raw);
    let response = client.request(get("/after-upgrade", "hop.test"));
    assert_eq!(response.status, 200);
}

#[test]
fn hop_by_hop_response_fields_are_not_relayed() {
    let origin = scripted();
    let proxy = proxy_for(&origin);
    let mut client = proxy.client();
    let response = client.request(get("/hop", "hop.test"));
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"ok");
    for field in ["x-origin-hop", "keep-alive", "proxy-connection", "upgrade"] {
        assert!(
            !response.head.has(field),
            "{field} relayed: {}",
            response.head.raw
        );
    }
    assert!(!response.head.has_token("connection", "x-origin-hop"));
    assert_eq!(response.header("x-kept"), Some("1"));
    // Via: the origin's entry, then ringwall's (RFC 9110 §7.6.3).
    let via = response.head.all("via").join(", ");
    assert!(via.starts_with("1.1 origin-cache"), "Via: {via}");
    assert!(via.ends_with("ringwall"), "Via: {via}");
}

#[test]
fn forwarding_fields_are_added_and_host_is_kept() {
    let origin = scripted();
    let proxy = proxy_for(&origin);
    let mut client = proxy.client();
    // From a client that is not a trusted proxy, the forwarding fields it sent are replaced.
    let response = client.request(
        "GET /fwd HTTP/1.1\r\nHost: app.example:8080\r\nX-Forwarded-For: 10.1.2.3\r\n\
         X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\n\r\n",
    );
    assert_eq!(response.status, 200);
    let (seen, _) = response.echoed();
    assert_eq!(seen.all("host"), ["app.example:8080"]);
    assert_eq!(seen.all("x-forwarded-for"), ["127.0.0.1"], "{}", seen.raw);
    assert_eq!(seen.all("x-forwarded-proto"), ["http"], "{}", seen.raw);
    assert_eq!(seen.all("x-forwarded-host"), ["app.example:8080"]);
    assert_eq!(seen.all("via"), ["1.1 ringwall"], "{}", seen.raw);
    let via = response.head.all("via").join(", ");
    assert!(
        via.contains("ringwall"),
        "no Via on the response: {}",
        response.head.raw
    );
}

#[test]
fn a_trusted_proxys_chain_is_kept_whole_and_names_the_real_client() {
    let origin = scripted();
    let proxy = Proxy::start(
        &[origin.addr],
        &[
            "--trusted-proxy",
            "127.0.0.0/8",
            "--request-header",
            "X-Real-IP: ${client_addr}",
        ],
    );
    let mut client = proxy.client();
    // Several field lines of one list are one list (RFC 9110 §5.3): none may be lost.
    let response = client.request(
        "GET /fwd HTTP/1.1\r\nHost: app.example\r\nX-Forwarded-For: 203.0.113.7, 10.0.0.1\r\n\
         X-Forwarded-For: 10.0.0.2\r\nX-Forwarded-Proto: https\r\nVia: 1.1 edge-a\r\n\
         Via: 1.0 edge-b\r\n\r\n",
    );
    assert_eq!(response.status, 200);
    let (seen, _) = response.echoed();
    assert_eq!(
        seen.all("x-forwarded-for"),
        ["203.0.113.7, 10.0.0.1, 10.0.0.2, 127.0.0.1"],
        "{}",
        seen.raw
    );
    assert_eq!(seen.all("x-forwarded-proto"), ["https"], "{}", seen.raw);
    assert_eq!(
        seen.all("via"),
        ["1.1 edge-a, 1.0 edge-b, 1.1 ringwall"],
        "{}",
        seen.raw
    );
    // 10.0.0.x are not trusted here: the nearest untrusted hop is the client.
    assert_eq!(seen.all("x-real-ip"), ["10.0.0.2"], "{}", seen.raw);
}

#[test]
fn via_and_x_forwarded_can_be_turned_off_and_forwarded_on() {
    let origin = scripted();
    let proxy = Proxy::start(
        &[origin.addr],
        &["--no-via", "--no-x-forwarded", "--forwarded"],
    );
    let mut client = proxy.client();
    let response = client.request(get("/fwd", "app.example"));
    assert_eq!(response.status, 200);
    let (seen, _) = response.echoed();
    assert!(!seen.has("via"), "{}", seen.raw);
    assert!(!seen.has("x-forwarded-for"), "{}", seen.raw);
    assert_eq!(
        seen.all("forwarded"),
        ["for=127.0.0.1;host=\"app.example\";proto=http"],
        "{}",
        seen.raw
    );
    assert!(!response.head.has("via"), "{}", response.head.raw);
}

#[test]
fn absolute_form_target_is_forwarded_in_origin_form() {
    let origin = scripted();
    let proxy = proxy_for(&origin);
    let mut client = proxy.client();
    let response =
        client.request("GET http://abs.example/p/q?x=1 HTTP/1.1\r\nHost: abs.example\r\n\r\n");
    assert_eq!(response.status, 200);
    let (seen, _) = response.echoed();
    assert_eq!(seen.start, "GET /p/q?x=1 HTTP/1.1");
    assert_eq!(seen.all("host"), ["abs.example"]);

    // RFC 9112 §3.2.2: with an absolute-form target the Host sent upstream comes from the
    // target. Refusing a conflicting Host (400) is also safe; forwarding it is not.
    let mut client = proxy.client();
    let response =
        client.request("GET http://abs.example/r HTTP/1.1\r\nHost: other.example\r\n\r\n");
    if response.status != 400 {
        assert_eq!(response.status, 200);
        let (seen, _) = response.echoed();
        assert_eq!(seen.start, "GET /r HTTP/1.1");
        assert_eq!(seen.all("host"), ["abs.example"], "{}", seen.raw);
    }
}
