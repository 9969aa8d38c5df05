//! End to end: clients that attack or abuse the proxy (`docs/security.md`).
//!
//! Request smuggling attempts, each of which hides a second request (`GET /smuggled`) behind
//! framing that two HTTP parsers could read differently, must be refused with `400` and a
//! closed connection, and the hidden request must never reach the origin. Clients that leave
//! in the middle of an upload or a download must cost nothing: no descriptor stays open and the
//! half-used origin connection is closed, not pooled. Slow clients (slowloris heads, trickled
//! bodies) are cut off by their timeouts while other clients are served, and a request that
//! arrives in small pieces within the timeout is served like any other. The per-address and
//! per-worker connection limits behave as documented, and idle keep-alive connections close.

mod common;

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{echo, get, wait_until, Client, Head, Next, Origin, Proxy};

/// The request every smuggling attempt hides behind its framing.
const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: a.test\r\n\r\n";

/// An origin that counts the smuggled requests it receives and the requests whose body it
/// could read to the end, then answers `200` with the body's length.
struct WatchedOrigin {
    origin: Origin,
    smuggled: Arc<AtomicUsize>,
    complete: Arc<AtomicUsize>,
}

fn watched_origin() -> WatchedOrigin {
    let smuggled = Arc::new(AtomicUsize::new(0));
    let complete = Arc::new(AtomicUsize::new(0));
    let origin = {
        let (smuggled, complete) = (smuggled.clone(), complete.clone());
        Origin::start(move |req, conn| {
            if req.target.contains("smuggled") {
                smuggled.fetch_add(1, Ordering::SeqCst);
            }
            let body = conn.body()?;
            complete.fetch_add(1, Ordering::SeqCst);
            conn.respond(200, &[], body.len().to_string().as_bytes())?;
            Ok(Next::KeepAlive)
        })
    };
    WatchedOrigin {
        origin,
        smuggled,
        complete,
    }
}

/// Sends `raw` on a new connection: the answer must be `400` with `Connection: close`, and
/// then the connection must close.
fn refused_with_400(proxy: &Proxy, name: &str, raw: &[u8]) -> Result<(), String> {
    let mut client = proxy.client();
    // The connection may close while the tail is still being written.
    let _ = client.wire.write(raw);
    let response = client
        .try_read_response_within(false, Duration::from_secs(3))
        .map_err(|e| format!("{name}: no response: {e}"))?;
    if response.status != 400 {
        return Err(format!("{name}: got {:?}", response.head.start));
    }
    if !response.head.has_token("connection", "close") {
        return Err(format!(
            "{name}: the 400 does not announce the close: {:?}",
            response.head.raw
        ));
    }
    client
        .expect_closed(Duration::from_secs(3))
        .map_err(|e| format!("{name}: after the 400: {e}"))
}

fn with_smuggled(first: &str) -> Vec<u8> {
    format!("{first}{SMUGGLED}").into_bytes()
}

#[test]
fn smuggling_in_the_request_head_is_400_and_nothing_reaches_the_origin() {
    let watched = watched_origin();
    let proxy = Proxy::start(&[watched.origin.addr], &["--client-header-timeout", "2s"]);
    let post = "POST /first HTTP/1.1\r\nHost: a.test\r\n";
    let cases: Vec<(&str, Vec<u8>)> = vec![
        // RFC 9112 §6.1, §6.3: CL.TE and TE.CL.
        (
            "Content-Length then Transfer-Encoding",
            with_smuggled(&format!(
                "{post}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            )),
        ),
        (
            "Transfer-Encoding then Content-Length",
            with_smuggled(&format!(
                "{post}Transfer-Encoding: chunked\r\nContent-Length: 45\r\n\r\n0\r\n\r\n"
            )),
        ),
        // TE.TE obfuscation: anything but exactly `chunked`.
        (
            "Transfer-Encoding: chunked, identity",
            with_smuggled(&format!(
                "{post}Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"
            )),
        ),
        (
            "Transfer-Encoding: xchunked",
            with_smuggled(&format!(
                "{post}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"
            )),
        ),
        // RFC 9112 §5.1: whitespace between field name and colon MUST be rejected with 400.
        (
            "Transfer-Encoding : chunked",
            with_smuggled(&format!(
                "{post}Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n"
            )),
        ),
        // RFC 9110 §8.6: differing Content-Length values.
        (
            "two different Content-Length fields",
            with_smuggled(&format!(
                "{post}Content-Length: 0\r\nContent-Length: 40\r\n\r\n"
            )),
        ),
        (
            "Content-Length list with different values",
            with_smuggled(&format!("{post}Content-Length: 0, 40\r\n\r\n")),
        ),
        (
            "Content-Length: +5",
            with_smuggled(&format!("{post}Content-Length: +5\r\n\r\nhello")),
        ),
        // RFC 9112 §5.2: obsolete line folding.
        (
            "obs-fold with a space",
            with_smuggled(&format!("{post}X-Fold: a\r\n Content-Length: 40\r\n\r\n")),
        ),
        (
            "obs-fold with a tab",
            with_smuggled(&format!("{post}X-Fold: a\r\n\tContent-Length: 40\r\n\r\n")),
        ),
        // RFC 9112 §2.2: ringwall does not take a bare LF or CR as a line ending.
        (
            "bare LF line endings throughout",
            with_smuggled("GET /first HTTP/1.1\nHost: a.test\n\n"),
        ),
        (
            "one bare LF between fields",
            with_smuggled(&format!("{post}X-A: 1\nContent-Length: 40\r\n\r\n")),
        ),
        (
            "one bare CR between fields",
            with_smuggled(&format!("{post}X-A: 1\rContent-Length: 40\r\n\r\n")),
        ),
        // RFC 9110 §5.5: no control bytes in a field value.
        (
            "NUL in a field value",
            with_smuggled(&format!("{post}X-Nul: a\0b\r\nContent-Length: 0\r\n\r\n")),
        ),
    ];
    let wrong: Vec<String> = cases
        .iter()
        .filter_map(|(name, raw)| refused_with_400(&proxy, name, raw).err())
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}");
    // Refused while parsing the head: not a byte goes upstream.
    thread::sleep(Duration::from_millis(100));
    assert_eq!(
        watched.origin.requests(),
        0,
        "refused requests reached the origin ({} of them smuggled)",
        watched.smuggled.load(Ordering::SeqCst)
    );
}

#[test]
fn smuggling_in_the_chunked_framing_is_400_and_the_hidden_request_never_reaches_the_origin() {
    let watched = watched_origin();
    let proxy = Proxy::start(&[watched.origin.addr], &[]);
    let chunked = |body: &str| {
        with_smuggled(&format!(
            "POST /first HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
        ))
    };
    // RFC 9112 §7.1, §7.1.1; docs/security.md "chunk size", "chunk extensions", "chunk data".
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("chunk size 0x5", chunked("0x5\r\nhello\r\n0\r\n\r\n")),
        ("chunk size -1", chunked("-1\r\nhello\r\n0\r\n\r\n")),
        (
            "chunk size of 18 hex digits",
            chunked("ffffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
        ),
        (
            "chunk size that wraps a u64 to 5",
            chunked("10000000000000005\r\nhello\r\n0\r\n\r\n"),
        ),
        (
            "chunk data followed by other bytes",
            chunked("5\r\nhelloXX\r\n0\r\n\r\n"),
        ),
        (
            "chunk data followed by a bare LF",
            chunked("5\r\nhello\n0\r\n\r\n"),
        ),
        (
            "chunk size line ended by a bare LF",
            chunked("5\nhello\r\n0\r\n\r\n"),
        ),
        (
            "chunk extension without a name",
            chunked("5;=x\r\nhello\r\n0\r\n\r\n"),
        ),
        (
            "chunk extension with an unterminated quoted string",
            chunked("5;a=\"x\r\nhello\r\n0\r\n\r\n"),
        ),
        (
            "chunk extension with a space inside its value",
            chunked("5;a=b c\r\nhello\r\n0\r\n\r\n"),
        ),
    ];
    let wrong: Vec<String> = cases
        .iter()
        .filter_map(|(name, raw)| refused_with_400(&proxy, name, raw).err())
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}");
    // The head was valid, so ringwall may have begun forwarding before the body went wrong;
    // but the origin must never see a complete request, let alone the hidden one.
    assert!(
        wait_until(Duration::from_secs(3), || watched.origin.open() == 0),
        "{} origin connections still open after the refused requests",
        watched.origin.open()
    );
    assert_eq!(
        watched.smuggled.load(Ordering::SeqCst),
        0,
        "a smuggled request reached the origin"
    );
    assert_eq!(
        watched.complete.load(Ordering::SeqCst),
        0,
        "a refused request reached the origin complete"
    );
}

// ---------------------------------------------------------------------------------------------
// Clients that leave in the middle.
// ---------------------------------------------------------------------------------------------

/// 64 MiB: far more than the socket buffers between origin and client can hold.
const DOWNLOAD: u64 = 64 << 20;

/// An echo origin that also serves `/download` (64 MiB of `Z`), stopping when writes fail.
fn download_origin() -> Origin {
    Origin::start(|req, conn| {
        if req.target != "/download" {
            return echo("origin", req, conn);
        }
        conn.write(format!("HTTP/1.1 200 OK\r\nContent-Length: {DOWNLOAD}\r\n\r\n").as_bytes())?;
        let block = vec![b'Z'; 256 * 1024];
        let mut left = DOWNLOAD;
        while left > 0 {
            conn.write(&block)?;
            left = left.saturating_sub(block.len() as u64);
        }
        Ok(Next::KeepAlive)
    })
}

/// One worker, so that the origin connection pool is one list: a warm-up request leaves
/// exactly one pooled connection (origin connection 0). Returns the settled descriptor count.
fn warm_up(proxy: &Proxy, origin: &Origin) -> usize {
    let response = proxy.client().request(get("/warm-up", "a.test"));
    assert_eq!(response.status, 200);
    assert_eq!(response.header("x-connection-index"), Some("0"));
    assert_eq!(origin.open(), 1);
    proxy.settled_fds()
}

/// After a client left mid-exchange on origin connection 0: that connection is closed (not
/// pooled half-used), the next request gets its own answer on a new origin connection, and
/// ringwall's descriptors and the origin's open connections are back to the warm-up state.
fn assert_recovered(proxy: &Proxy, origin: &Origin, baseline_fds: usize) {
    assert!(
        wait_until(Duration::from_secs(3), || origin.closed() >= 1),
        "the origin connection of the abandoned exchange is still open: was it pooled?"
    );
    let mut client = proxy.client();
    let response = client.request(get("/after", "a.test"));
    assert_eq!(response.status, 200, "{}", response.head.raw);
    assert_eq!(
        response.echoed().0.start,
        "GET /after HTTP/1.1",
        "the next request got someone else's response"
    );
    assert_eq!(
        response.header("x-connection-index"),
        Some("1"),
        "the next request went over the half-used origin connection"
    );
    drop(client);
    assert!(
        wait_until(Duration::from_secs(3), || origin.open() == 1),
        "the origin has {} open connections, expected the 1 pooled",
        origin.open()
    );
    let mut fds = 0;
    assert!(
        wait_until(Duration::from_secs(3), || {
            fds = proxy.open_fds();
            fds == baseline_fds
        }),
        "ringwall has {fds} open descriptors, {baseline_fds} after warm-up"
    );
}

#[test]
fn a_client_leaving_mid_upload_costs_nothing() {
    let origin = download_origin();
    let proxy = Proxy::start(&[origin.addr], &["--workers", "1"]);
    let baseline = warm_up(&proxy, &origin);

    let mut client = proxy.client();
    client.send("POST /upload HTTP/1.1\r\nHost: a.test\r\nContent-Length: 100000\r\n\r\n");
    client.send(vec![b'u'; 50_000]);
    assert!(
        origin.wait_requests(2, Duration::from_secs(3)),
        "the upload never reached the origin"
    );
    drop(client);
    assert_recovered(&proxy, &origin, baseline);
}

#[test]
fn a_client_leaving_mid_download_costs_nothing() {
    let origin = download_origin();
    let proxy = Proxy::start(&[origin.addr], &["--workers", "1"]);
    let baseline = warm_up(&proxy, &origin);

    let mut client = proxy.client();
    client.send(get("/download", "a.test"));
    let head = client.wire.read_head().expect("head").expect("a response");
    let head = Head::parse(&head).expect("head");
    assert!(head.start.starts_with("HTTP/1.1 200"), "{}", head.raw);
    let mut received = 0u64;
    client
        .wire
        .take(1 << 20, &mut |d| received += d.len() as u64)
        .expect("the first MiB");
    // Leaves with most of the body unread (the unread bytes make this a reset).
    drop(client);
    assert_recovered(&proxy, &origin, baseline);
}

// ---------------------------------------------------------------------------------------------
// Slow clients.
// ---------------------------------------------------------------------------------------------

/// How a slow connection ended, read after its sender stopped.
fn ending_of(stream: &mut TcpStream) -> Result<(), String> {
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    let mut got = Vec::new();
    let mut scratch = [0u8; 1024];
    loop {
        match stream.read(&mut scratch) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&scratch[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                ) =>
            {
                break
            }
            Err(e) => {
                return Err(format!(
                    "still open ({e}) after receiving {:?}",
                    String::from_utf8_lossy(&got)
                ))
            }
        }
    }
    if got.is_empty() || got.starts_with(b"HTTP/1.1 408 ") {
        Ok(())
    } else {
        Err(format!("closed after {:?}", String::from_utf8_lossy(&got)))
    }
}

#[test]
fn a_request_sent_in_small_pieces_within_the_timeout_is_served() {
    // The other side of the slowloris defence: a head (and body) that arrives slowly but in
    // time is an ordinary request. Each piece is a separate read for ringwall.
    let origin = Origin::echo("origin");
    let proxy = Proxy::start(&[origin.addr], &["--client-header-timeout", "2s"]);
    let request = b"POST /pieces HTTP/1.1\r\nHost: a.test\r\nContent-Length: 11\r\n\r\nhello world";
    let mut wrong = Vec::new();
    for piece in [1, 3, 7, 16] {
        let mut client = proxy.client();
        for part in request.chunks(piece) {
            client.send(part);
            thread::sleep(Duration::from_millis(15));
        }
        match client.try_read_response_within(false, Duration::from_secs(3)) {
            Ok(response) if response.status == 200 => {
                let (head, body) = response.echoed();
                if head.start != "POST /pieces HTTP/1.1" || body != b"hello world" {
                    wrong.push(format!(
                        "{piece}-byte pieces: the origin got {:?} with body {:?}",
                        head.start,
                        String::from_utf8_lossy(&body)
                    ));
                }
            }
            Ok(response) => wrong.push(format!(
                "{piece}-byte pieces: {:?} {:?}",
                response.head.start,
                response.text()
            )),
            Err(e) => wrong.push(format!("{piece}-byte pieces: {e}")),
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn slowloris_heads_time_out_while_other_clients_are_served() {
    const SLOW: usize = 50;
    let origin = Origin::echo("origin");
    let proxy = Proxy::start(&[origin.addr], &["--client-header-timeout", "2s"]);
    let head: Vec<u8> = b"GET /slow HTTP/1.1\r\nHost: a.test\r\nX-Slow: "
        .iter()
        .copied()
        .chain(std::iter::repeat_n(b'a', 1000))
        .collect();
    let mut slow: Vec<TcpStream> = (0..SLOW)
        .map(|_| TcpStream::connect(proxy.addr).expect("slow connect"))
        .collect();
    let started = Instant::now();

    // One thread feeds every slow connection a byte each 100 ms for 3.5 s (the header timeout
    // is 2 s); at 1.5 s it checks that ringwall still holds them all open.
    let feeder = thread::spawn(move || {
        let mut early = Vec::new();
        let mut checked = false;
        let mut sent = 0;
        while started.elapsed() < Duration::from_millis(3500) {
            for stream in &mut slow {
                let _ = stream.write_all(&head[sent..=sent]);
            }
            sent += 1;
            if !checked && started.elapsed() >= Duration::from_millis(1500) {
                checked = true;
                for (i, stream) in slow.iter().enumerate() {
                    let _ = stream.set_read_timeout(Some(Duration::from_millis(1)));
                    let mut peeked = [0u8; 128];
                    match stream.peek(&mut peeked) {
                        Err(e)
                            if matches!(
                                e.kind(),
                                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                            ) => {}
                        Ok(0) => early.push(format!("slow {i}: closed at 1.5 s")),
                        Ok(n) => early.push(format!(
                            "slow {i}: answered by 1.5 s (sent so far: {:?}) with {:?}",
                            String::from_utf8_lossy(&head[..=sent]),
                            String::from_utf8_lossy(&peeked[..n])
                        )),
                        Err(e) => early.push(format!("slow {i}: {e} at 1.5 s")),
                    }
                }
            }
            thread::sleep(Duration::from_millis(100));
        }
        (slow, early)
    });

    // Meanwhile a normal client gets answers, each on a new connection, each quickly.
    let mut served = 0;
    while started.elapsed() < Duration::from_millis(3500) {
        let begun = Instant::now();
        let mut client = proxy.client();
        let response = client.request(get(&format!("/normal/{served}"), "a.test"));
        let took = begun.elapsed();
        assert_eq!(response.status, 200, "{}", response.head.raw);
        assert!(
            took < Duration::from_secs(2),
            "a normal request took {took:?} with {SLOW} slowloris connections open"
        );
        served += 1;
        thread::sleep(Duration::from_millis(50));
    }
    assert!(served >= 10, "only {served} normal requests in 3.5 s");

    let (mut slow, early) = feeder.join().expect("feeder");
    assert!(
        early.is_empty(),
        "{} of {SLOW} slow connections were answered or closed before the 2 s header \
         timeout; the first: {:#?}",
        early.len(),
        &early[..early.len().min(3)]
    );
    let wrong: Vec<String> = slow
        .iter_mut()
        .enumerate()
        .filter_map(|(i, stream)| ending_of(stream).err().map(|e| format!("slow {i}: {e}")))
        .collect();
    assert!(
        wrong.is_empty(),
        "slowloris connections not answered 408 or closed 1.5 s after a 2 s header \
         timeout: {wrong:#?}"
    );
    assert_eq!(
        origin.requests(),
        served,
        "a slow request reached the origin"
    );
}

#[test]
fn a_body_trickled_below_the_minimum_rate_is_408_after_the_grace_period() {
    let origin = Origin::echo("origin");
    let proxy = Proxy::start(&[origin.addr], &["--min-body-rate", "1KiB"]);
    let mut client = proxy.client();
    let started = Instant::now();
    client.send("POST /trickle HTTP/1.1\r\nHost: a.test\r\nContent-Length: 100000\r\n\r\n");
    // About 100 B/s: 10 bytes every 100 ms, for at most 8 s.
    let stop = Arc::new(AtomicBool::new(false));
    let trickler = {
        let mut stream = client.wire.stream.try_clone().expect("clone");
        let stop = stop.clone();
        thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(8) {
                if stream.write_all(b"0123456789").is_err() {
                    break;
                }
                thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let response = client.try_read_response_within(false, Duration::from_secs(9));
    let waited = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    trickler.join().expect("trickler");
    let response = response.expect("a response to the trickled body");
    assert_eq!(response.status, 408, "{}", response.head.raw);
    // The 5 s grace, then the first check that finds ~500 bytes where 5 KiB were due.
    assert!(
        waited >= Duration::from_millis(4900) && waited < Duration::from_millis(7500),
        "408 after {waited:?}"
    );
    assert!(response.head.has_token("connection", "close"));
    client
        .wire
        .stream
        .shutdown(Shutdown::Write)
        .expect("shutdown");
    client
        .expect_closed(Duration::from_secs(3))
        .expect("closed after the 408");
}

// ---------------------------------------------------------------------------------------------
// Connection limits and idle connections.
// ---------------------------------------------------------------------------------------------

#[test]
fn connections_beyond_the_per_address_limit_get_429_and_close() {
    let origin = Origin::echo("origin");
    let proxy = Proxy::start(&[origin.addr], &["--max-connections-per-ip", "3"]);
    let mut held: Vec<Client> = (0..3)
        .map(|i| {
            let mut client = proxy.client();
            let response = client.request(get(&format!("/held/{i}"), "a.test"));
            assert_eq!(response.status, 200, "held connection {i}");
            client
        })
        .collect();

    let mut fourth = proxy.client();
    let _ = fourth.wire.write(get("/fourth", "a.test").as_bytes());
    let response = fourth.read_response(false);
    assert_eq!(response.status, 429, "{}", response.head.raw);
    assert!(
        response.head.has_token("connection", "close"),
        "{}",
        response.head.raw
    );
    fourth
        .expect_closed(Duration::from_secs(3))
        .expect("the 4th connection is closed after its 429");
    assert_eq!(
        origin.requests(),
        3,
        "the refused request reached the origin"
    );

    // One of the three leaves: its place is free once ringwall has seen it go.
    drop(held.remove(0));
    let mut answered = None;
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        let mut client = proxy.client();
        let response = client.request(get("/replacement", "a.test"));
        if response.status == 200 {
            answered = Some(client);
            break;
        }
        assert_eq!(response.status, 429, "{}", response.head.raw);
        thread::sleep(Duration::from_millis(50));
    }
    let replacement = answered.expect("no new connection was served within 2 s of one closing");
    for (i, client) in held.iter_mut().enumerate() {
        let response = client.request(get(&format!("/still/{i}"), "a.test"));
        assert_eq!(
            response.status, 200,
            "a held connection after the replacement"
        );
    }
    drop(replacement);
}

#[test]
fn a_worker_at_its_connection_limit_queues_new_clients_instead_of_failing_them() {
    let origin = Origin::echo("origin");
    let proxy = Proxy::start(
        &[origin.addr],
        &["--workers", "1", "--max-connections-per-worker", "2"],
    );
    let mut held: Vec<Client> = (0..2)
        .map(|i| {
            let mut client = proxy.client();
            assert_eq!(
                client.request(get(&format!("/held/{i}"), "a.test")).status,
                200
            );
            client
        })
        .collect();

    // The kernel completes the handshake; ringwall must not take the connection yet.
    let mut third = proxy.client();
    third.send(get("/third", "a.test"));
    match third.read_head_within(Duration::from_millis(500)) {
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) => {}
        other => panic!("the 3rd connection was not left waiting: {other:?}"),
    }
    assert_eq!(origin.requests(), 2);

    drop(held.remove(0));
    let started = Instant::now();
    let response = third
        .try_read_response_within(false, Duration::from_secs(3))
        .expect("the 3rd connection is served once one of the two closes");
    assert_eq!(response.status, 200, "{}", response.head.raw);
    assert_eq!(response.echoed().0.start, "GET /third HTTP/1.1");
    assert!(started.elapsed() < Duration::from_secs(2));
    // The one still held was never disturbed.
    assert_eq!(held[0].request(get("/held/again", "a.test")).status, 200);
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_timeout() {
    let origin = Origin::echo("origin");
    let proxy = Proxy::start(&[origin.addr], &["--client-keepalive-timeout", "1s"]);
    let mut client = proxy.client();
    assert_eq!(client.request(get("/one", "a.test")).status, 200);
    // Idle for less than the timeout: still open.
    thread::sleep(Duration::from_millis(600));
    assert_eq!(client.request(get("/two", "a.test")).status, 200);

    // Then idle: closed about 1 s after the last response, quietly or after a 408.
    let idle = Instant::now();
    client
        .wire
        .stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("read timeout");
    let mut got = Vec::new();
    let mut scratch = [0u8; 1024];
    let ended = loop {
        match client.wire.stream.read(&mut scratch) {
            Ok(0) => break Ok(()),
            Ok(n) => got.extend_from_slice(&scratch[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                ) =>
            {
                break Ok(())
            }
            Err(e) => break Err(e),
        }
    };
    let waited = idle.elapsed();
    assert!(
        ended.is_ok(),
        "an idle connection still open after {waited:?} with a 1 s keep-alive timeout: {ended:?}"
    );
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_millis(2500),
        "closed {waited:?} after the last response with a 1 s keep-alive timeout"
    );
    assert!(
        got.is_empty() || got.starts_with(b"HTTP/1.1 408 "),
        "sent {:?} before closing an idle connection",
        String::from_utf8_lossy(&got)
    );
}

#[test]
fn an_oversized_upload_from_a_fast_sender_gets_its_413_not_a_reset() {
    let origin = Origin::echo("origin");
    let proxy = Proxy::start(&[origin.addr], &["--max-body", "1KiB", "--workers", "1"]);
    let mut stream = TcpStream::connect(proxy.addr).expect("connect");
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"POST /up HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    // 8 MiB as fast as the socket takes it, reading nothing: ringwall refuses after 1 KiB and
    // must keep reading what follows (lingering) instead of closing into a reset, which
    // would destroy the 413 waiting in this socket's receive queue.
    let chunk = format!("4000\r\n{}\r\n", "z".repeat(0x4000));
    let chunks = 512;
    let mut sent = 0;
    while sent < chunks && stream.write_all(chunk.as_bytes()).is_ok() {
        sent += 1;
    }
    assert_eq!(sent, chunks, "ringwall stopped reading after {sent} chunks");
    stream.write_all(b"0\r\n\r\n").unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = Vec::new();
    let read = stream.read_to_end(&mut answer);
    assert!(read.is_ok(), "reading the answer: {read:?}");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 413 "), "{text}");
}
