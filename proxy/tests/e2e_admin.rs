//! The admin listener end to end: `/healthz` as a load balancer sees it (through a drain
//! too), `/status` parsed as JSON, and what it refuses.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{Client, Origin, Proxy, RawOrigin, IO_TIMEOUT};

/// ringwall with an admin listener; returns it and the admin address from its log.
fn with_admin(origin: std::net::SocketAddr, extra: &[&str]) -> (Proxy, std::net::SocketAddr) {
    let mut args = vec!["--admin", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let proxy = Proxy::start(&[origin], &args);
    let logs = proxy.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("admin listener on http://"))
        .expect("the admin address is logged");
    let addr = line
        .rsplit("http://")
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (proxy, addr)
}

#[test]
fn healthz_and_status_answer_and_other_things_are_refused() {
    let origin = Origin::echo("app");
    let (proxy, admin) = with_admin(origin.addr, &[]);
    let mut client = Client::connect(admin);
    let ok = client.request("GET /healthz HTTP/1.1\r\nHost: admin\r\n\r\n");
    assert_eq!(ok.status, 200);
    assert_eq!(ok.body, b"ok\n");
    // Keep-alive: the same connection answers again.
    let status = client.request("GET /status HTTP/1.1\r\nHost: admin\r\n\r\n");
    assert_eq!(status.status, 200);
    assert_eq!(status.header("content-type"), Some("application/json"));
    let value: serde_json::Value = serde_json::from_slice(&status.body).unwrap();
    assert_eq!(value["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(value["workers"], 2);
    assert_eq!(value["generation"], 1);
    assert_eq!(value["listeners"][0]["address"], proxy.addr.to_string());
    assert_eq!(value["listeners"][0]["protocol"], "http");
    assert_eq!(
        value["upstreams"][0]["servers"][0]["address"],
        origin.addr.to_string()
    );
    assert!(value["io_driver"].as_str().unwrap().len() > 2);

    let refused =
        client.request("POST /healthz HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(refused.status, 405);
    assert_eq!(refused.header("allow"), Some("GET, HEAD"));
    let mut client = Client::connect(admin);
    assert_eq!(
        client
            .request("GET /nope HTTP/1.1\r\nHost: admin\r\n\r\n")
            .status,
        404
    );
    // The proxy's own listener knows nothing of these paths: they go to the origin.
    assert_eq!(
        proxy
            .client()
            .request("GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
            .status,
        200
    );
    assert_eq!(origin.requests(), 1);
}

#[test]
fn healthz_says_draining_once_the_drain_begins() {
    // An origin that takes its time, so that the drain has a request to wait for.
    let slow = RawOrigin::start(|mut stream, _| {
        let _ = common::read_through(&mut stream, b"\r\n\r\n", 4096);
        std::thread::sleep(Duration::from_millis(1500));
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    });
    let (proxy, admin) = with_admin(slow.addr, &["--workers", "1"]);
    let mut probe = Client::connect(admin);
    assert_eq!(
        probe
            .request("GET /healthz HTTP/1.1\r\nHost: admin\r\n\r\n")
            .status,
        200
    );
    let mut waiting = TcpStream::connect(proxy.addr).unwrap();
    waiting.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    waiting
        .write_all(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    proxy.sigterm();
    std::thread::sleep(Duration::from_millis(300));
    let draining = probe.request("GET /healthz HTTP/1.1\r\nHost: admin\r\n\r\n");
    assert_eq!(draining.status, 503);
    assert_eq!(draining.body, b"draining\n");
    let mut reply = Vec::new();
    let _ = waiting.read_to_end(&mut reply);
    assert!(
        reply.starts_with(b"HTTP/1.1 200"),
        "the request in flight still finished"
    );
}
