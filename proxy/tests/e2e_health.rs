//! Health end to end, with real origins on loopback: passive checks eject an origin that
//! answers 500s on every worker and take it back when its ejection ends; active checks take a
//! server down and up on every worker; a group with nothing in service answers 503 at once,
//! or its backups answer. (An origin killed mid-run: `e2e_failure.rs`.)

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    closed_port, count, echo, scrape, server_state as state_of, wait_until, Origin, Proxy,
};

fn origin_of(response: &common::Response) -> String {
    response.header("x-origin").unwrap_or_default().to_owned()
}

/// An origin named `name` that answers `/healthz` with 200 (503 while `sick`), and every
/// other request as [`echo`] does (a 500 while `failing`). Counts the requests that are not
/// checks.
struct Switchable {
    origin: Origin,
    sick: Arc<AtomicBool>,
    failing: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
}

impl Switchable {
    fn start(name: &'static str) -> Switchable {
        let sick = Arc::new(AtomicBool::new(false));
        let failing = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        let origin = {
            let (sick, failing, served) = (sick.clone(), failing.clone(), served.clone());
            Origin::start(move |req, conn| {
                if req.target == "/healthz" {
                    let status = if sick.load(Ordering::SeqCst) {
                        503
                    } else {
                        200
                    };
                    conn.respond(status, &[("X-Origin", name)], b"ok\n")?;
                    return Ok(common::Next::KeepAlive);
                }
                served.fetch_add(1, Ordering::SeqCst);
                if failing.load(Ordering::SeqCst) {
                    conn.discard_body()?;
                    conn.respond(500, &[("X-Origin", name)], b"broken\n")?;
                    return Ok(common::Next::KeepAlive);
                }
                echo(name, req, conn)
            })
        };
        Switchable {
            origin,
            sick,
            failing,
            served,
        }
    }
}

/// `n` requests, each on its own connection (so every worker takes part): which origin
/// answered each, and the statuses.
fn spread(proxy: &Proxy, n: usize) -> (HashMap<String, usize>, HashMap<u16, usize>) {
    let mut origins = HashMap::new();
    let mut statuses = HashMap::new();
    for i in 0..n {
        let response = proxy.client().request(format!(
            "GET /spread/{i} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        ));
        *statuses.entry(response.status).or_insert(0) += 1;
        *origins.entry(origin_of(&response)).or_insert(0) += 1;
    }
    (origins, statuses)
}

/// A group `app` of `servers` (and `backup`), with `settings` in its table, one route to it.
fn config(
    servers: &[std::net::SocketAddr],
    backup: &[std::net::SocketAddr],
    settings: &str,
) -> String {
    let list = |addrs: &[std::net::SocketAddr]| {
        addrs
            .iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "[[upstream]]\nname = \"app\"\nservers = [{}]\nbackup = [{}]\n{settings}\n\n\
         [[route]]\nupstream = \"app\"\n",
        list(servers),
        list(backup)
    )
}

#[test]
fn an_origin_answering_500s_is_ejected_on_every_worker_and_readmitted() {
    let good = Switchable::start("good");
    let bad = Switchable::start("bad");
    bad.failing.store(true, Ordering::SeqCst);
    let toml = config(
        &[good.origin.addr, bad.origin.addr],
        &[],
        "lb = \"round-robin\"\nslow_start = \"0s\"\n\
         [upstream.ejection]\nconsecutive_failures = 3\ntime = \"2s\"",
    );
    let proxy = Proxy::with_config(&toml, &["--workers", "2", "--admin", "127.0.0.1:0"]);
    let admin = proxy.admin_addr();

    // Each worker sees at most 3 failures before it ejects the origin (or learns that the
    // other one did): at most 6 of the 500s reach clients.
    let (origins, statuses) = spread(&proxy, 40);
    let errors = statuses.get(&500).copied().unwrap_or(0);
    assert!((3..=6).contains(&errors), "{statuses:?} {origins:?}");
    assert_eq!(state_of(admin, bad.origin.addr), "ejected");
    let samples = scrape(admin);
    let ejections = count(
        &samples,
        "ringwall_upstream_ejections_total",
        &[("server", &bad.origin.addr.to_string())],
    );
    assert!((1..=2).contains(&ejections), "{ejections} ejections");
    assert_eq!(
        count(
            &samples,
            "ringwall_upstream_server_state",
            &[
                ("server", &bad.origin.addr.to_string()),
                ("state", "ejected")
            ],
        ),
        1
    );

    // While it is out, on both workers, nothing goes to it.
    let before = bad.served.load(Ordering::SeqCst);
    let (_, statuses) = spread(&proxy, 20);
    assert_eq!(statuses.get(&200), Some(&20), "{statuses:?}");
    assert_eq!(bad.served.load(Ordering::SeqCst), before);

    // It recovers; once its ejection ends it takes requests again.
    bad.failing.store(false, Ordering::SeqCst);
    assert!(
        wait_until(Duration::from_secs(5), || state_of(admin, bad.origin.addr)
            == "up"),
        "{}",
        state_of(admin, bad.origin.addr)
    );
    let (origins, statuses) = spread(&proxy, 20);
    assert_eq!(statuses.get(&200), Some(&20), "{statuses:?}");
    assert!(origins.get("bad").copied().unwrap_or(0) >= 5, "{origins:?}");
    assert!(
        proxy.logs().contains("upstream server ejected"),
        "{}",
        proxy.logs()
    );
}

#[test]
fn active_checks_take_a_server_down_and_up_on_every_worker() {
    let a = Switchable::start("a");
    let b = Switchable::start("b");
    let proxy = Proxy::start(
        &[a.origin.addr, b.origin.addr],
        &[
            "--workers",
            "2",
            "--admin",
            "127.0.0.1:0",
            "--lb",
            "round-robin",
            "--slow-start",
            "0s",
            "--health-check",
            "/healthz",
            "--health-interval",
            "100ms",
            "--health-timeout",
            "500ms",
            "--health-rise",
            "2",
            "--health-fall",
            "2",
        ],
    );
    let admin = proxy.admin_addr();
    let (origins, _) = spread(&proxy, 20);
    assert!(origins.get("b").copied().unwrap_or(0) >= 8, "{origins:?}");

    b.sick.store(true, Ordering::SeqCst);
    assert!(
        wait_until(Duration::from_secs(5), || state_of(admin, b.origin.addr)
            == "down"),
        "{}",
        state_of(admin, b.origin.addr)
    );
    // Every worker learned it within a tick: no request reaches b.
    std::thread::sleep(Duration::from_millis(100));
    let before = b.served.load(Ordering::SeqCst);
    let (origins, statuses) = spread(&proxy, 30);
    assert_eq!(statuses.get(&200), Some(&30), "{statuses:?}");
    assert_eq!(origins.get("a"), Some(&30), "{origins:?}");
    assert_eq!(b.served.load(Ordering::SeqCst), before);

    b.sick.store(false, Ordering::SeqCst);
    assert!(
        wait_until(Duration::from_secs(5), || state_of(admin, b.origin.addr)
            == "up"),
        "{}",
        state_of(admin, b.origin.addr)
    );
    std::thread::sleep(Duration::from_millis(100));
    let (origins, _) = spread(&proxy, 20);
    assert!(origins.get("b").copied().unwrap_or(0) >= 8, "{origins:?}");

    let samples = scrape(admin);
    let server = b.origin.addr.to_string();
    let changes = |to: &str| {
        count(
            &samples,
            "ringwall_upstream_health_changes_total",
            &[("server", &server), ("to", to)],
        )
    };
    assert_eq!((changes("down"), changes("up")), (1, 1));
    assert!(
        count(
            &samples,
            "ringwall_upstream_health_checks_total",
            &[("server", &server)]
        ) >= 4
    );
    assert!(
        count(
            &samples,
            "ringwall_upstream_health_check_failures_total",
            &[("server", &server)]
        ) >= 2
    );
    let logs = proxy.logs();
    assert!(logs.contains("upstream server is down"), "{logs}");
    assert!(logs.contains("upstream server is up again"), "{logs}");
}

#[test]
fn nothing_in_service_answers_503_at_once_and_backups_take_over() {
    let primary = Switchable::start("primary");
    let backup = Switchable::start("backup");
    primary.sick.store(true, Ordering::SeqCst);
    let checks = "slow_start = \"0s\"\n[upstream.health_check]\npath = \"/healthz\"\n\
                  interval = \"100ms\"\nrise = 1\nfall = 1";

    // Only the primary: once its check fails, 503 at once with a clear body.
    let alone = Proxy::with_config(
        &config(&[primary.origin.addr], &[], checks),
        &["--workers", "2", "--admin", "127.0.0.1:0"],
    );
    let admin = alone.admin_addr();
    assert!(wait_until(Duration::from_secs(5), || {
        state_of(admin, primary.origin.addr) == "down"
    }));
    std::thread::sleep(Duration::from_millis(100));
    for _ in 0..4 {
        let started = Instant::now();
        let response = alone
            .client()
            .request("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        assert_eq!(response.status, 503);
        assert!(
            response
                .text()
                .contains("No server of upstream group \"app\""),
            "{}",
            response.text()
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }
    drop(alone);

    // With a backup: the backup answers while the primary is down, and stands by after.
    let both = Proxy::with_config(
        &config(&[primary.origin.addr], &[backup.origin.addr], checks),
        &["--workers", "2", "--admin", "127.0.0.1:0"],
    );
    let admin = both.admin_addr();
    assert!(wait_until(Duration::from_secs(5), || {
        state_of(admin, primary.origin.addr) == "down"
    }));
    std::thread::sleep(Duration::from_millis(100));
    let (origins, _) = spread(&both, 10);
    assert_eq!(origins.get("backup"), Some(&10), "{origins:?}");
    primary.sick.store(false, Ordering::SeqCst);
    assert!(wait_until(Duration::from_secs(5), || {
        state_of(admin, primary.origin.addr) == "up"
    }));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(state_of(admin, backup.origin.addr), "backup");
    let (origins, _) = spread(&both, 10);
    assert_eq!(origins.get("primary"), Some(&10), "{origins:?}");
}

#[test]
fn a_group_follows_its_names_when_they_resolve_to_other_addresses() {
    // Two origins on one port of two loopback addresses, named by a hosts file that the test
    // rewrites; ringwall resolves the name again every 200 ms.
    let first = Origin::start_on("127.0.0.1:0", |req, conn| echo("first", req, conn));
    let port = first.addr.port();
    let _second = Origin::start_on(&format!("127.0.0.2:{port}"), |req, conn| {
        echo("second", req, conn)
    });
    let hosts = common::TempFile::new("hosts", "127.0.0.1 app.ringwall.test\n");
    let toml = format!(
        "[resolver]\nhosts_file = \"{}\"\n\n\
         [[upstream]]\nname = \"app\"\nservers = [\"app.ringwall.test:{port}\"]\n\
         resolve = \"200ms\"\nslow_start = \"0s\"\n\n[[route]]\nupstream = \"app\"\n",
        hosts.display()
    );
    let proxy = Proxy::with_config(&toml, &["--workers", "2"]);
    let (origins, _) = spread(&proxy, 10);
    assert_eq!(origins.get("first"), Some(&10), "{origins:?}");

    // The name moves: within a few intervals, every request goes to the new address.
    std::fs::write(&hosts.path, "127.0.0.2 app.ringwall.test\n").unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || {
            spread(&proxy, 4).0.get("second") == Some(&4)
        }),
        "{}",
        proxy.logs()
    );
    let (origins, _) = spread(&proxy, 10);
    assert_eq!(origins.get("second"), Some(&10), "{origins:?}");
    assert!(
        proxy.logs().contains("resolve to other addresses"),
        "{}",
        proxy.logs()
    );

    // Both addresses: both servers take requests.
    std::fs::write(
        &hosts.path,
        "127.0.0.1 app.ringwall.test\n127.0.0.2 app.ringwall.test\n",
    )
    .unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || {
            let (origins, _) = spread(&proxy, 20);
            origins.contains_key("first") && origins.contains_key("second")
        }),
        "{}",
        proxy.logs()
    );
    // A name that no longer resolves keeps the addresses it had.
    std::fs::write(&hosts.path, "# nothing\n").unwrap();
    std::thread::sleep(Duration::from_millis(600));
    let (_, statuses) = spread(&proxy, 10);
    assert_eq!(statuses.get(&200), Some(&10), "{statuses:?}");
}

#[test]
fn a_tcp_check_takes_down_a_server_that_refuses_connections() {
    let live = Origin::echo("live");
    let dead = closed_port();
    let toml = format!(
        "[[upstream]]\nname = \"app\"\nservers = [\"{}\", \"{dead}\"]\n\
         [upstream.health_check]\nkind = \"tcp\"\ninterval = \"100ms\"\nrise = 1\nfall = 1\n\n\
         [[route]]\nupstream = \"app\"\n",
        live.addr
    );
    let proxy = Proxy::with_config(&toml, &["--workers", "2", "--admin", "127.0.0.1:0"]);
    let admin = proxy.admin_addr();
    assert!(
        wait_until(Duration::from_secs(5), || state_of(admin, dead) == "down"),
        "{}",
        state_of(admin, dead)
    );
    assert_eq!(state_of(admin, live.addr), "up");
    assert!(
        proxy.logs().contains("upstream server is down"),
        "{}",
        proxy.logs()
    );
}
