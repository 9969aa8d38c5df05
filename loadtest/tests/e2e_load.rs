//! End-to-end runs of the generator against the in-test origin: closed loop, fixed rate,
//! pipelining, no keep-alive, chunked and close-delimited bodies and TLS, checking that the
//! generator's counts equal the origin's exactly; and failing origins, checking that every
//! failure is counted under the right kind.

mod common;

use std::time::Duration;

use common::{closed_port, Behaviour, Origin};
use ringwall_load::{run, LoadOptions, LoadReport};

fn options(url: String) -> LoadOptions {
    LoadOptions {
        url,
        connections: 8,
        duration: Duration::from_secs(1),
        timeout: Duration::from_secs(2),
        ..LoadOptions::default()
    }
}

/// Every request sent was answered, all 2xx, and the origin saw exactly as many.
fn assert_all_answered(report: &LoadReport, origin: &Origin) {
    assert_eq!(report.errors.total(), 0, "{:?}", report.errors);
    assert!(report.requests > 0);
    assert_eq!(
        report.requests,
        origin.requests(),
        "generator vs origin count"
    );
    assert_eq!(report.status.s2xx, report.requests);
    assert_eq!(report.latency.count, report.requests);
}

#[test]
fn closed_loop_counts_match_the_origin() {
    let origin = Origin::start(Behaviour::Ok);
    let opts = LoadOptions {
        threads: 2,
        pids: vec![std::process::id()],
        ..options(origin.url("/"))
    };
    let report = run(&opts).unwrap();
    assert_all_answered(&report, &origin);
    assert_eq!(report.connections_opened, 8);
    assert_eq!(report.bytes_read, report.requests * 51);
    assert!(report.elapsed_seconds >= 0.99 && report.elapsed_seconds < 5.0);
    // The watched process is this one: its CPU includes the generator's.
    assert_eq!(report.processes.len(), 1);
    assert!(report.processes[0].cpu_us_per_request.is_some());
    let text = report.to_text(true);
    assert!(
        text.contains("Requests/sec:") && text.contains("99.900%"),
        "{text}"
    );
    let json: LoadReport = serde_json::from_str(&serde_json::to_string(&report).unwrap()).unwrap();
    assert_eq!(json.requests, report.requests);
}

#[test]
fn fixed_rate_sends_on_schedule() {
    let origin = Origin::start(Behaviour::Ok);
    let opts = LoadOptions {
        rate: Some(500.0),
        ..options(origin.url("/"))
    };
    let report = run(&opts).unwrap();
    assert_all_answered(&report, &origin);
    // 500 sends are intended in the second; the last few may fall past the deadline (more on a busy machine).
    assert!(
        (400..=500).contains(&report.requests),
        "{}",
        report.requests
    );
    assert_eq!(report.rate, Some(500.0));
}

#[test]
fn pipelining_paths_and_post_bodies() {
    let origin = Origin::start(Behaviour::Ok);
    let opts = LoadOptions {
        pipeline: 4,
        method: "POST".into(),
        body: Some(vec![b'x'; 10_000]),
        paths: vec!["/a".into(), "/b".into(), "/c".into()],
        headers: vec![("X-Test".into(), "yes".into())],
        ..options(origin.url("/"))
    };
    let report = run(&opts).unwrap();
    assert_all_answered(&report, &origin);
    assert_eq!(report.requests % 4, 0, "whole batches of four");
    assert!(report.bytes_written > report.requests * 10_000);
}

#[test]
fn new_connection_per_request_at_a_rate() {
    let origin = Origin::start(Behaviour::Ok);
    let opts = LoadOptions {
        keepalive: false,
        rate: Some(200.0),
        connections: 4,
        ..options(origin.url("/"))
    };
    let report = run(&opts).unwrap();
    assert_all_answered(&report, &origin);
    assert!((report.requests..=report.requests + 4).contains(&report.connections_opened));
    assert!(
        (150..=200).contains(&report.requests),
        "{}",
        report.requests
    );
}

#[test]
fn chunked_and_close_delimited_bodies() {
    let chunked = Origin::start(Behaviour::Chunked);
    let report = run(&options(chunked.url("/"))).unwrap();
    assert_all_answered(&report, &chunked);

    let closing = Origin::start(Behaviour::CloseDelimited);
    let report = run(&LoadOptions {
        connections: 2,
        ..options(closing.url("/"))
    })
    .unwrap();
    assert_all_answered(&report, &closing);
    // One connection per response, plus at most one per client opened as the run ended.
    assert!((report.requests..=report.requests + 2).contains(&report.connections_opened));
}

#[test]
fn https_with_insecure_and_with_a_trusted_ca() {
    let cert = ringwall_load::tls::SelfSigned::generate().unwrap();
    let origin = Origin::start_tls(Behaviour::Ok, &cert.cert_pem, &cert.key_pem);
    let url = format!("https://127.0.0.1:{}/", origin.addr.port());
    let report = run(&LoadOptions {
        insecure: true,
        connections: 4,
        ..options(url.clone())
    })
    .unwrap();
    assert_all_answered(&report, &origin);

    let ca = std::env::temp_dir().join(format!("ringwall-load-e2e-ca-{}.pem", std::process::id()));
    std::fs::write(&ca, &cert.cert_pem).unwrap();
    let before = origin.requests();
    let report = run(&LoadOptions {
        ca_file: Some(ca.clone()),
        connections: 2,
        duration: Duration::from_millis(300),
        ..options(url.clone())
    })
    .unwrap();
    assert_eq!(report.errors.total(), 0);
    assert_eq!(report.requests, origin.requests() - before);

    // Without trusting the certificate, every handshake fails.
    let report = run(&LoadOptions {
        ca_file: Some(ca.clone()),
        connections: 1,
        duration: Duration::from_millis(300),
        ..options(format!("https://localhost:{}/", closed_port().port()))
    });
    std::fs::remove_file(&ca).unwrap();
    assert_eq!(report.unwrap().requests, 0);
    let untrusted = run(&LoadOptions {
        connections: 1,
        duration: Duration::from_millis(300),
        ca_file: Some("/etc/ssl/certs/ca-certificates.crt".into()),
        ..options(url)
    });
    if let Ok(r) = untrusted {
        assert_eq!(r.requests, 0);
        assert!(r.errors.connect > 0);
    }
}
