//! End-to-end runs against failing origins: every failure is counted under its own kind, and
//! status classes are counted exactly.

mod common;

use std::time::Duration;

use common::{closed_port, Behaviour, Origin};
use ringwall_load::{run, LoadOptions};

fn options(url: String) -> LoadOptions {
    LoadOptions {
        url,
        connections: 4,
        duration: Duration::from_millis(500),
        timeout: Duration::from_millis(300),
        ..LoadOptions::default()
    }
}

#[test]
fn server_errors_are_counted_by_class() {
    let origin = Origin::start(Behaviour::Status(503));
    let report = run(&options(origin.url("/"))).unwrap();
    assert!(report.requests > 0);
    assert_eq!(report.status.s5xx, report.requests);
    assert_eq!(report.status.s2xx, 0);
    assert_eq!(report.requests, origin.requests());
    assert_eq!(report.errors.total(), 0);
    assert!(report.to_text(false).contains("Non-2xx or 3xx responses"));

    let origin = Origin::start(Behaviour::Status(404));
    let report = run(&options(origin.url("/"))).unwrap();
    assert_eq!(report.status.s4xx, report.requests);
    assert_eq!(report.requests, origin.requests());
}

#[test]
fn closed_port_gives_connect_errors() {
    let url = format!("http://{}/", closed_port());
    let report = run(&options(url)).unwrap();
    assert_eq!(report.requests, 0);
    assert!(report.errors.connect >= 4, "{:?}", report.errors);
    assert_eq!(
        report.errors.read + report.errors.write + report.errors.timeout + report.errors.protocol,
        0
    );
}

#[test]
fn silent_origin_gives_timeouts() {
    let origin = Origin::start(Behaviour::Silent);
    let report = run(&options(origin.url("/"))).unwrap();
    assert_eq!(report.requests, 0);
    // Every request the origin read timed out in the generator.
    assert_eq!(report.errors.timeout, origin.requests());
    assert!(report.errors.timeout >= 4);
}

#[test]
fn hang_up_gives_read_errors_and_garbage_protocol_errors() {
    let origin = Origin::start(Behaviour::HangUp);
    let report = run(&options(origin.url("/"))).unwrap();
    assert_eq!(report.requests, 0);
    assert!(report.errors.read > 0, "{:?}", report.errors);
    assert_eq!(report.errors.timeout + report.errors.protocol, 0);

    let origin = Origin::start(Behaviour::Garbage);
    let report = run(&options(origin.url("/"))).unwrap();
    assert_eq!(report.requests, 0);
    assert!(report.errors.protocol > 0, "{:?}", report.errors);
    assert_eq!(report.errors.protocol, origin.requests());
}
