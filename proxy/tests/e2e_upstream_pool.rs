//! End to end: upstream connection reuse. Sequential requests share pooled origin connections,
//! pooling can be turned off, idle pooled connections are closed after their timeout, and a
//! pooled connection the origin closed while it sat idle costs the client nothing.

mod common;

use std::thread;
use std::time::Duration;

use common::{echo, get, wait_until, Next, Origin, Proxy};

#[test]
fn sequential_requests_on_one_client_connection_reuse_upstream_connections() {
    let origin = Origin::echo("pooled");
    let proxy = Proxy::start(&[origin.addr], &[]);
    let mut client = proxy.client();
    for i in 0..20 {
        let response = client.request(get(&format!("/n/{i}"), "pool.test"));
        assert_eq!(response.status, 200);
    }
    assert_eq!(origin.requests(), 20);
    assert!(
        origin.connections() <= 2,
        "20 sequential requests opened {} origin connections (2 workers)",
        origin.connections()
    );
}

#[test]
fn sequential_client_connections_reuse_upstream_connections() {
    let origin = Origin::echo("pooled");
    let proxy = Proxy::start(&[origin.addr], &[]);
    for i in 0..10 {
        let mut client = proxy.client();
        let response = client.request(format!(
            "GET /c/{i} HTTP/1.1\r\nHost: pool.test\r\nConnection: close\r\n\r\n"
        ));
        assert_eq!(response.status, 200);
        client
            .expect_closed(Duration::from_secs(2))
            .expect("closed after Connection: close");
        thread::sleep(Duration::from_millis(20));
    }
    assert!(
        origin.connections() <= 2,
        "10 sequential client connections opened {} origin connections (2 workers)",
        origin.connections()
    );
}

#[test]
fn upstream_max_idle_zero_disables_pooling() {
    let origin = Origin::echo("unpooled");
    let proxy = Proxy::start(&[origin.addr], &["--upstream-max-idle", "0"]);
    let mut client = proxy.client();
    for i in 0..4 {
        assert_eq!(
            client.request(get(&format!("/u/{i}"), "pool.test")).status,
            200
        );
    }
    assert_eq!(origin.connections(), 4);
}

#[test]
fn idle_upstream_connections_are_closed_after_the_idle_timeout() {
    let origin = Origin::echo("idle");
    let proxy = Proxy::start(&[origin.addr], &["--upstream-idle-timeout", "1s"]);
    let mut client = proxy.client();
    assert_eq!(client.request(get("/", "idle.test")).status, 200);
    assert_eq!(origin.connections(), 1);
    assert!(
        wait_until(Duration::from_secs(5), || origin.closed() == 1),
        "the idle pooled connection was not closed within 5 s of a 1 s idle timeout"
    );
    assert_eq!(client.request(get("/", "idle.test")).status, 200);
    assert_eq!(origin.connections(), 2);
}

#[test]
fn a_pooled_connection_closed_by_the_origin_is_retried_for_a_bodyless_request() {
    // The origin closes every connection right after its response, without saying so: to
    // ringwall each pooled connection looks reusable and turns out to be dead.
    let origin = Origin::start(|req, conn| {
        echo("closer", req, conn)?;
        Ok(Next::Close)
    });
    let proxy = Proxy::start(&[origin.addr], &[]);
    let mut client = proxy.client();
    for (i, pause) in [0u64, 200, 0, 300, 50].into_iter().enumerate() {
        thread::sleep(Duration::from_millis(pause));
        let response = client.request(get(&format!("/stale/{i}"), "stale.test"));
        assert_eq!(
            response.status,
            200,
            "request {i} after a {pause} ms pause: {}",
            response.text()
        );
        assert_eq!(
            response.echoed().0.start,
            format!("GET /stale/{i} HTTP/1.1")
        );
    }
    assert_eq!(origin.requests(), 5, "each request reached the origin once");
}
