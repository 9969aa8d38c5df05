//! Access logs end to end: the real binary writing a real file while real clients send; the
//! lines and their fields, the count across two workers, rotation on SIGUSR1, JSON, stdout,
//! and no credential in any line.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{wait_until, Origin, Proxy};

fn log_path(name: &str) -> PathBuf {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("ringwall-access-{}-{name}.log", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

fn lines(path: &PathBuf) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn get(proxy: &Proxy, target: &str, extra: &str) -> u16 {
    proxy
        .client()
        .request(format!(
            "GET {target} HTTP/1.1\r\nHost: shop.test\r\nUser-Agent: e2e\r\n{extra}Connection: close\r\n\r\n"
        ))
        .status
}

#[test]
fn every_request_is_a_line_across_workers_and_rotation_reopens_the_file() {
    let origin = Origin::echo("app");
    let path = log_path("combined");
    let proxy = Proxy::start(
        &[origin.addr],
        &["--access-log", path.to_str().unwrap(), "--workers", "2"],
    );
    for i in 0..40 {
        assert_eq!(
            get(
                &proxy,
                &format!("/item/{i}?token=abc&page=2"),
                "Authorization: Bearer xyz\r\n"
            ),
            200
        );
    }
    assert!(
        wait_until(Duration::from_secs(5), || lines(&path).len() == 40),
        "{} lines",
        lines(&path).len()
    );
    let all = lines(&path);
    for (i, line) in all.iter().enumerate() {
        assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
        assert!(line.contains("\" 200 "), "{line}");
        assert!(line.ends_with("\"-\" \"e2e\""), "{line}");
        assert!(line.contains("token=[redacted]&page=2"), "{line}");
        assert!(
            !line.contains("abc") && !line.contains("xyz"),
            "line {i}: {line}"
        );
    }

    // logrotate: move the file away, signal, and the next lines go to a new file.
    let rotated = path.with_extension("log.1");
    std::fs::rename(&path, &rotated).unwrap();
    let status = Command::new("kill")
        .args(["-USR1", &proxy.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    std::thread::sleep(Duration::from_millis(100));
    for _ in 0..5 {
        assert_eq!(get(&proxy, "/after", ""), 200);
    }
    assert!(wait_until(Duration::from_secs(5), || lines(&path).len() == 5));
    assert_eq!(lines(&rotated).len(), 40);
    let _ = std::fs::remove_file(&rotated);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn json_lines_carry_the_route_the_upstream_and_the_timings() {
    let origin = Origin::echo("app");
    let path = log_path("json");
    let proxy = Proxy::start(
        &[origin.addr],
        &[
            "--access-log",
            path.to_str().unwrap(),
            "--access-log-format",
            "json",
        ],
    );
    assert_eq!(get(&proxy, "/json", ""), 200);
    assert!(wait_until(Duration::from_secs(5), || lines(&path).len() == 1));
    let value: serde_json::Value = serde_json::from_str(&lines(&path)[0]).unwrap();
    assert_eq!(value["status"], 200);
    assert_eq!(value["uri"], "/json");
    assert_eq!(value["route"], "default");
    assert_eq!(value["upstream"], origin.addr.to_string());
    assert!(value["duration"].as_f64().unwrap() >= 0.0);
    assert!(value["upstream_time"].as_f64().is_some());
    assert_eq!(value["host"], "shop.test");
    let _ = std::fs::remove_file(&path);
}

/// SIGTERM with the log on: the process exits once drained, and the lines of the requests
/// that ended in the last moments (not yet handed to the writer) are in the file.
#[test]
fn a_sigterm_with_the_log_on_exits_and_loses_no_line() {
    let origin = Origin::echo("app");
    let path = log_path("sigterm");
    let mut proxy = Proxy::start(
        &[origin.addr],
        &["--access-log", path.to_str().unwrap(), "--workers", "2"],
    );
    for i in 0..30 {
        assert_eq!(get(&proxy, &format!("/last/{i}"), ""), 200);
    }
    proxy.sigterm();
    let status = proxy
        .wait_exit(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("still running 5 s after SIGTERM:\n{}", proxy.logs()));
    assert!(status.success(), "{status}");
    assert_eq!(lines(&path).len(), 30, "every line written before the exit");
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_log_that_cannot_be_opened_stops_the_start() {
    let run = common::run_ringwall(&[
        "--upstream",
        "127.0.0.1:9",
        "--listen",
        "127.0.0.1:0",
        "--access-log",
        "/nonexistent-dir/access.log",
    ]);
    assert!(!run.status.success());
    assert!(
        run.stderr
            .contains("cannot open the access log /nonexistent-dir/access.log"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_bad_template_is_refused_with_its_line() {
    let file = common::TempFile::new(
        "log.toml",
        "[[upstream]]\nname = \"app\"\nservers = [\"127.0.0.1:9\"]\n[[route]]\nupstream = \"app\"\n\
         [access_log]\ntarget = \"stdout\"\nformat = \"template\"\ntemplate = \"${client} ${nope}\"\n",
    );
    let run = common::run_ringwall(&["check", "--config", &file.display()]);
    assert!(!run.status.success());
    assert!(
        run.stderr
            .contains(":9:12: access_log.template: unknown field `nope`"),
        "{}",
        run.stderr
    );
}

#[test]
fn tls_lines_carry_the_version_and_the_name_asked_for() {
    use std::io::{Read, Write};
    let pki = common::Pki::new("log-tls");
    let cert = pki.server("a", &["a.test"]);
    let origin = Origin::echo("app");
    let path = log_path("tls");
    let proxy = Proxy::start(
        &[origin.addr],
        &[
            "--tls-cert",
            common::path(&cert.cert),
            "--tls-key",
            common::path(&cert.key),
            "--access-log",
            path.to_str().unwrap(),
            "--access-log-format",
            "json",
        ],
    );
    let mut tls =
        common::connect(proxy.addr, &common::Offer::new(&pki).config(), "a.test").unwrap();
    tls.write_all(b"GET /tls HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut reply = Vec::new();
    let _ = tls.read_to_end(&mut reply);
    assert!(reply.starts_with(b"HTTP/1.1 200"));
    assert!(wait_until(Duration::from_secs(5), || lines(&path).len() == 1));
    let value: serde_json::Value = serde_json::from_str(&lines(&path)[0]).unwrap();
    assert_eq!(value["tls_version"], "TLSv1.3");
    assert_eq!(value["sni"], "a.test");
    let _ = std::fs::remove_file(&path);
}
