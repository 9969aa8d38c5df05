//! The admin listener end to end: `/healthz` as a load balancer sees it (through a drain
//! too), `/status` parsed as JSON, `/metrics` read by a real Prometheus parser and adding up
//! across workers, `/config` read by a real TOML parser with its secrets hidden, and what it
//! refuses.

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
    let addr = proxy.admin_addr();
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

/// Every request counted once, whichever worker served it: N requests on N connections across
/// 2 workers sum to N in `/metrics`, read by a real Prometheus parser.
#[test]
fn metrics_add_up_across_workers_and_parse() {
    const N: usize = 200;
    let origin = Origin::echo("app");
    let (proxy, admin) = with_admin(origin.addr, &[]);
    for i in 0..N {
        let response = proxy.client().request(format!(
            "GET /n/{i} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        ));
        assert_eq!(response.status, 200);
    }
    // And some that reuse one connection (to the origin too).
    let mut client = proxy.client();
    for _ in 0..10 {
        assert_eq!(
            client
                .request("GET /again HTTP/1.1\r\nHost: a\r\n\r\n")
                .status,
            200
        );
    }
    let response = Client::connect(admin).request("GET /metrics HTTP/1.1\r\nHost: admin\r\n\r\n");
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = String::from_utf8(response.body).unwrap();
    let samples = common::parse_prometheus(&text);
    let total = (N + 10) as u64;
    let sum = |name: &str, labels: &[(&str, &str)]| common::count(&samples, name, labels);
    assert_eq!(
        sum("ringwall_requests_total", &[("code", "2xx")]),
        total,
        "{text}"
    );
    assert_eq!(sum("ringwall_requests_total", &[("code", "5xx")]), 0);
    assert_eq!(sum("ringwall_request_duration_seconds_count", &[]), total);
    assert_eq!(
        sum(
            "ringwall_request_duration_seconds_bucket",
            &[("le", "+Inf")]
        ),
        total
    );
    let server = origin.addr.to_string();
    assert_eq!(
        sum(
            "ringwall_upstream_responses_total",
            &[("group", "default"), ("server", &server), ("code", "2xx")]
        ),
        total
    );
    assert_eq!(sum("ringwall_upstream_response_seconds_count", &[]), total);
    // Every request went on a new or a pooled connection.
    let connects = sum("ringwall_upstream_connects_total", &[]);
    let reused = sum("ringwall_upstream_pool_reuse_total", &[]);
    assert_eq!(connects + reused, total);
    assert_eq!(connects, origin.connections() as u64);
    assert!(
        reused >= 9,
        "the keep-alive client's requests reused a connection"
    );
    assert_eq!(sum("ringwall_upstream_connect_failures_total", &[]), 0);
    assert!(sum("ringwall_response_bytes_total", &[]) > 0);
    // Connections per worker: both workers served some, and they add up.
    let w0 = sum("ringwall_connections_accepted_total", &[("worker", "0")]);
    let w1 = sum("ringwall_connections_accepted_total", &[("worker", "1")]);
    assert!(w0 > 0 && w1 > 0, "{w0} and {w1}: both workers accept");
    // The client connections, and the scrape's own (admin connections are not counted).
    assert_eq!(w0 + w1, (N + 1) as u64);
    assert_eq!(sum("ringwall_config_generation", &[]), 1);
    assert_eq!(sum("ringwall_workers", &[]), 2);
    assert_eq!(sum("ringwall_scrape_missing_workers", &[]), 0);
    assert_eq!(sum("ringwall_access_log_dropped_lines_total", &[]), 0);
    let info = samples
        .iter()
        .find(|s| s.name == "ringwall_info")
        .expect("ringwall_info");
    assert_eq!(info.labels["version"], env!("CARGO_PKG_VERSION"));
    assert!(!info.labels["io_driver"].is_empty());
    assert_eq!(sum("ringwall_reloads_total", &[("result", "ok")]), 0);
}

/// `/config`: the running configuration as TOML (flags applied, defaults filled in), with the
/// values of credentials hidden.
#[test]
fn config_shows_the_running_settings_with_secrets_hidden() {
    let origin = Origin::echo("app");
    let toml = format!(
        "[[upstream]]\nname = \"app\"\nservers = [\"{}\"]\n\n\
         [[route]]\nname = \"all\"\nupstream = \"app\"\n\n\
         [route.request_headers.set]\nAuthorization = \"Bearer very-secret-token\"\nX-Env = \"prod\"\n",
        origin.addr
    );
    let proxy = common::Proxy::with_config(&toml, &["--admin", "127.0.0.1:0"]);
    let admin = proxy.admin_addr();
    let response = Client::connect(admin).request("GET /config HTTP/1.1\r\nHost: admin\r\n\r\n");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/toml"));
    let text = String::from_utf8(response.body).unwrap();
    assert!(!text.contains("very-secret-token"), "{text}");
    // A real TOML parser reads it back.
    let parsed = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, json\ntry:\n    import tomllib\nexcept ImportError:\n    import tomli as tomllib\n\
             print(json.dumps(tomllib.loads(sys.stdin.read())))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().unwrap().write_all(text.as_bytes())?;
            child.wait_with_output()
        })
        .expect("this test needs python3 (with tomli before 3.11: pip install tomli)");
    assert!(
        parsed.status.success(),
        "python's TOML parser failed:\n{}\n--- text ---\n{text}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    let value: serde_json::Value = serde_json::from_slice(&parsed.stdout).unwrap();
    assert_eq!(value["engine"]["workers"], 2, "the --workers flag applied");
    assert_eq!(value["upstream"][0]["servers"][0], origin.addr.to_string());
    assert_eq!(
        value["timeouts"]["client_header"], "10s",
        "defaults filled in"
    );
    let set = &value["route"][0]["request_headers"]["set"];
    assert_eq!(set["Authorization"], "<hidden>");
    assert_eq!(set["X-Env"], "prod");
    assert_eq!(value["admin"]["address"], "127.0.0.1:0");
}
