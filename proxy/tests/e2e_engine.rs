//! End to end: the engine's I/O drivers. Each driver ringwall can run on serves the same
//! keep-alive traffic, and the log names the driver in use. `epoll` is the driver ringwall
//! falls back to where io_uring is missing or disabled.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::{get, Origin, Proxy};

/// Starts ringwall on `driver`, sends a few requests over one keep-alive connection, and
/// waits for the log line naming the driver.
fn serves_on(driver: &str, logged: &str) {
    let origin = Origin::echo("engine");
    let proxy = Proxy::start(&[origin.addr], &["--io-driver", driver]);
    let mut client = proxy.client();
    for i in 0..5 {
        let response = client.request(get(&format!("/n/{i}"), "engine.test"));
        assert_eq!(response.status, 200, "{driver}: {}", proxy.logs());
        let request_line = format!("GET /n/{i} HTTP/1.1\r\n");
        assert!(
            response.body.starts_with(request_line.as_bytes()),
            "{driver}: the origin saw {:?}",
            response.text()
        );
    }
    assert_eq!(origin.requests(), 5);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !proxy.logs().contains(logged) {
        assert!(
            Instant::now() < deadline,
            "{driver}: no log line containing {logged:?}:\n{}",
            proxy.logs()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_epoll_fallback_driver_serves() {
    serves_on("epoll", "I/O driver: epoll");
}

#[test]
fn the_sqpoll_ring_serves() {
    serves_on("uring-sqpoll", "I/O driver: io_uring (SQPOLL)");
}

#[test]
fn the_automatic_choice_serves_and_is_logged() {
    serves_on("auto", "I/O driver: ");
}

#[test]
fn a_second_ringwall_on_a_held_address_is_refused_unless_sharing_is_asked_for() {
    let origin = Origin::echo("engine");
    let first = Proxy::start(&[origin.addr], &[]);
    let held = first.addr.to_string();
    let upstream = origin.addr.to_string();
    let run = common::run_ringwall(&[
        "--upstream",
        &upstream,
        "--listen",
        &held,
        "--workers",
        "1",
        "--no-pin",
    ]);
    assert!(!run.status.success(), "the second ringwall started");
    assert!(
        run.stderr.contains(&format!("cannot listen on {held}"))
            && run.stderr.contains("already listens there")
            && run.stderr.contains("--share-listen"),
        "{}",
        run.stderr
    );
    // On purpose, the address is shared.
    let shared = Proxy::start(&[origin.addr], &["--listen", &held, "--share-listen"]);
    let line = format!("listening on http://{held}");
    assert!(
        common::wait_until(Duration::from_secs(3), || shared.logs().contains(&line)),
        "{}",
        shared.logs()
    );
    assert_eq!(first.client().request(get("/", "a.test")).status, 200);
}
