//! End to end: graceful shutdown. On SIGTERM ringwall stops accepting, lets in-flight requests
//! finish within the drain timeout, closes idle keep-alive connections at once, and exits 0.

mod common;

use std::io;
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use common::{echo, get, Next, Origin, Proxy};

/// An origin that answers `/slow` after `delay` and everything else at once.
fn slow_origin(delay: Duration) -> Origin {
    Origin::start(move |req, conn| {
        if req.target == "/slow" {
            thread::sleep(delay);
        }
        echo("drain", req, conn)?;
        Ok(Next::KeepAlive)
    })
}

/// Whether a connection to `proxy` is refused within `within`.
fn refuses_connections_within(proxy: &Proxy, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        match TcpStream::connect_timeout(&proxy.addr, Duration::from_millis(200)) {
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return true,
            _ => thread::sleep(Duration::from_millis(20)),
        }
    }
    false
}

#[test]
fn sigterm_lets_an_in_flight_request_finish_then_exits_0() {
    let origin = slow_origin(Duration::from_secs(1));
    let mut proxy = Proxy::start(&[origin.addr], &["--drain-timeout", "3s"]);
    let mut client = proxy.client();
    client.send(get("/slow", "drain.test"));
    assert!(
        origin.wait_requests(1, Duration::from_secs(5)),
        "the slow request did not reach the origin"
    );

    let signalled = Instant::now();
    proxy.sigterm();
    // Checked last, so that the rest of the drain is verified either way.
    let refused = refuses_connections_within(&proxy, Duration::from_millis(800));

    let response = client.read_response(false);
    assert_eq!(
        response.status, 200,
        "the in-flight request was not completed"
    );
    assert_eq!(response.echoed().0.start, "GET /slow HTTP/1.1");
    client
        .expect_closed(Duration::from_secs(2))
        .expect("the connection closes after its last response during a drain");

    let status = proxy
        .wait_exit(Duration::from_millis(4500).saturating_sub(signalled.elapsed()))
        .expect("ringwall still running 4.5 s after SIGTERM with a 3 s drain timeout");
    assert!(status.success(), "exit status {status}");
    assert!(
        refused,
        "new connections were still accepted (and left unanswered) 800 ms into the drain"
    );
}

#[test]
fn sigterm_closes_idle_keep_alive_connections_promptly() {
    let origin = slow_origin(Duration::ZERO);
    let mut proxy = Proxy::start(&[origin.addr], &["--drain-timeout", "3s"]);
    let mut client = proxy.client();
    assert_eq!(client.request(get("/", "drain.test")).status, 200);

    let signalled = Instant::now();
    proxy.sigterm();
    client
        .expect_closed(Duration::from_secs(1))
        .expect("an idle keep-alive connection closes within 1 s of SIGTERM");
    let status = proxy
        .wait_exit(Duration::from_secs(4))
        .expect("ringwall still running 4 s after SIGTERM with nothing in flight");
    assert!(status.success(), "exit status {status}");
    assert!(
        signalled.elapsed() < Duration::from_millis(3500),
        "exit took {:?}",
        signalled.elapsed()
    );
}

#[test]
fn a_request_outliving_the_drain_timeout_does_not_keep_ringwall_alive() {
    let origin = slow_origin(Duration::from_secs(5));
    let mut proxy = Proxy::start(&[origin.addr], &["--drain-timeout", "1s"]);
    let mut client = proxy.client();
    client.send(get("/slow", "drain.test"));
    assert!(origin.wait_requests(1, Duration::from_secs(5)));

    let signalled = Instant::now();
    proxy.sigterm();
    let status = proxy
        .wait_exit(Duration::from_millis(2500))
        .expect("ringwall still running 2.5 s after SIGTERM with a 1 s drain timeout");
    assert!(status.success(), "exit status {status}");
    // The cut-off client is told by a closed connection (or an error status), not left hanging.
    match client.try_read_response(false) {
        Ok(response) => assert!(response.status >= 500, "{}", response.head.raw),
        Err(e) => assert!(
            e.kind() != io::ErrorKind::WouldBlock && e.kind() != io::ErrorKind::TimedOut,
            "client left hanging: {e}"
        ),
    }
    assert!(signalled.elapsed() < Duration::from_secs(4));
}

#[test]
fn sighup_reloads_and_ringwall_keeps_serving() {
    let origin = Origin::start(|req, conn| echo("origin", req, conn));
    let mut proxy = Proxy::start(&[origin.addr], &[]);
    let status = std::process::Command::new("kill")
        .args(["-HUP", &proxy.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    assert!(
        common::wait_until(Duration::from_secs(3), || proxy
            .logs()
            .contains("configuration reloaded")),
        "no log line for the reload SIGHUP asked for:\n{}",
        proxy.logs()
    );
    assert_eq!(
        proxy.wait_exit(Duration::from_millis(300)),
        None,
        "SIGHUP ended ringwall"
    );
    let response = proxy.client().request(get("/after-hup", "a.test"));
    assert_eq!(response.status, 200);
}
