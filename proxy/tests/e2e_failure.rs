//! Failure handling end to end, with real origins on loopback: the circuit breaker answers
//! 503 at once over its limits (and lets a bounded number wait); retries go to another server
//! only where that is safe (idempotent requests, bodies buffered, after the configured
//! statuses, within the per-try timeout and the retry budget); an origin killed mid-run costs
//! the clients nothing with retries on.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{count, echo, scrape, Client, Origin, Proxy};

fn origin_of(response: &common::Response) -> String {
    response.header("x-origin").unwrap_or_default().to_owned()
}

/// An origin that answers every request with `status` (and counts them).
fn answering(status: u16, name: &'static str) -> (Origin, Arc<AtomicUsize>) {
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    let origin = Origin::start(move |_, conn| {
        counter.fetch_add(1, Ordering::SeqCst);
        conn.discard_body()?;
        conn.respond(status, &[("X-Origin", name)], b"from the origin\n")?;
        Ok(common::Next::KeepAlive)
    });
    (origin, seen)
}

/// `n` requests at once, each on its own connection: their statuses and how long each took.
fn at_once(proxy: &Proxy, n: usize) -> Vec<(u16, Duration, String)> {
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let addr = proxy.addr;
            std::thread::spawn(move || {
                let started = Instant::now();
                let response = Client::connect(addr).request(format!(
                    "GET /slow/{i} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
                ));
                (response.status, started.elapsed(), response.text())
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn the_circuit_breaker_answers_503_at_once_and_lets_some_wait() {
    let slow = Origin::start(|req, conn| {
        std::thread::sleep(Duration::from_millis(600));
        echo("slow", req, conn)
    });
    // One worker, so that its share of each limit is the whole limit.
    let base = [
        "--workers",
        "1",
        "--admin",
        "127.0.0.1:0",
        "--max-upstream-requests",
        "2",
    ];
    let proxy = Proxy::start(&[slow.addr], &base);
    let results = at_once(&proxy, 6);
    let ok = results.iter().filter(|r| r.0 == 200).count();
    let refused: Vec<_> = results.iter().filter(|r| r.0 == 503).collect();
    assert_eq!((ok, refused.len()), (2, 4), "{results:?}");
    for (_, took, body) in &refused {
        assert!(
            *took < Duration::from_millis(500),
            "a refusal waited {took:?}"
        );
        assert!(body.contains("is at its limits"), "{body}");
    }
    let samples = scrape(proxy.admin_addr());
    assert_eq!(
        count(
            &samples,
            "ringwall_upstream_overflows_total",
            &[("group", "default")]
        ),
        4
    );
    drop(proxy);

    // Two may wait: they are served after the first two, the last two are refused.
    let mut waiting = base.to_vec();
    waiting.extend(["--max-upstream-pending", "2"]);
    let proxy = Proxy::start(&[slow.addr], &waiting);
    let results = at_once(&proxy, 6);
    let ok = results.iter().filter(|r| r.0 == 200).count();
    assert_eq!(ok, 4, "{results:?}");
    assert!(
        results
            .iter()
            .filter(|r| r.0 == 200)
            .any(|r| r.1 >= Duration::from_millis(1100)),
        "two waited for room: {results:?}"
    );
    drop(proxy);

    // Per server: at most one request each on two servers.
    let other = Origin::start(|req, conn| {
        std::thread::sleep(Duration::from_millis(600));
        echo("other", req, conn)
    });
    let proxy = Proxy::start(
        &[slow.addr, other.addr],
        &["--workers", "1", "--max-server-requests", "1"],
    );
    let results = at_once(&proxy, 4);
    let ok = results.iter().filter(|r| r.0 == 200).count();
    assert_eq!(ok, 2, "{results:?}");
}

#[test]
fn a_5xx_retry_goes_to_another_server_for_idempotent_requests_only() {
    let (broken, broken_seen) = answering(503, "broken");
    let good = Origin::echo("good");
    let proxy = Proxy::start(
        &[broken.addr, good.addr],
        &[
            "--lb",
            "round-robin",
            "--retry-on",
            "503",
            "--eject-after",
            "0",
            "--admin",
            "127.0.0.1:0",
        ],
    );
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    for i in 0..20 {
        let response = proxy.client().request(format!(
            "GET /r/{i} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        ));
        *statuses.entry(response.status).or_insert(0) += 1;
        assert_eq!(origin_of(&response), "good");
    }
    assert_eq!(statuses.get(&200), Some(&20), "{statuses:?}");
    assert!(broken_seen.load(Ordering::SeqCst) >= 5);

    // A PUT's body is buffered and sent again, whole.
    for i in 0..6 {
        let body = format!("payload number {i}");
        let response = proxy.client().request(format!(
            "PUT /put HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ));
        assert_eq!(response.status, 200);
        let (_, echoed) = response.echoed();
        assert_eq!(echoed, body.as_bytes());
    }

    // A POST is not idempotent: the broken server's 503 reaches the client.
    let mut posts: HashMap<u16, usize> = HashMap::new();
    for _ in 0..10 {
        let response = proxy.client().request(
            "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
        );
        *posts.entry(response.status).or_insert(0) += 1;
    }
    assert!(posts.get(&503).copied().unwrap_or(0) >= 3, "{posts:?}");
    let samples = scrape(proxy.admin_addr());
    assert!(
        count(
            &samples,
            "ringwall_upstream_retries_total",
            &[("group", "default")]
        ) >= 10
    );
}

#[test]
fn the_retry_budget_stops_retries_and_the_per_try_timeout_moves_on() {
    let (a, _) = answering(502, "a");
    let (b, _) = answering(502, "b");
    // No budget at all: the 502 comes back as it is, and the refusal is counted.
    let proxy = Proxy::start(
        &[a.addr, b.addr],
        &[
            "--retry-on",
            "502",
            "--retry-budget",
            "0",
            "--retry-budget-min",
            "0",
            "--eject-after",
            "0",
            "--admin",
            "127.0.0.1:0",
        ],
    );
    for _ in 0..5 {
        let response = proxy
            .client()
            .request("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        assert_eq!(response.status, 502);
        assert_eq!(response.text(), "from the origin\n");
    }
    let samples = scrape(proxy.admin_addr());
    assert!(count(&samples, "ringwall_upstream_retries_refused_total", &[]) >= 5);
    assert_eq!(count(&samples, "ringwall_upstream_retries_total", &[]), 0);
    drop(proxy);

    // A try that has no answer within the per-try timeout goes on to the next server.
    let stuck = Origin::start(|req, conn| {
        std::thread::sleep(Duration::from_secs(3));
        echo("stuck", req, conn)
    });
    let quick = Origin::echo("quick");
    let proxy = Proxy::start(
        &[stuck.addr, quick.addr],
        &[
            "--lb",
            "round-robin",
            "--workers",
            "1",
            "--per-try-timeout",
            "200ms",
            "--eject-after",
            "0",
        ],
    );
    for _ in 0..4 {
        let started = Instant::now();
        let response = proxy
            .client()
            .request("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        assert_eq!(response.status, 200);
        assert_eq!(origin_of(&response), "quick");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}

/// Clients sending GETs on new connections for 3 s while one origin of three dies after 1 s:
/// how many requests, and how many failed.
fn kill_one_mid_run(extra: &[&str]) -> (usize, usize) {
    let a = Origin::echo("a");
    let b = Origin::echo("b");
    let dead = Arc::new(AtomicBool::new(false));
    let victim = {
        let dead = dead.clone();
        Origin::start(move |req, conn| {
            if dead.load(Ordering::SeqCst) {
                return Err(std::io::Error::other("killed"));
            }
            echo("victim", req, conn)
        })
    };
    let mut args = vec!["--workers", "2"];
    args.extend_from_slice(extra);
    let proxy = Proxy::start(&[a.addr, b.addr, victim.addr], &args);
    let stop_at = Instant::now() + Duration::from_secs(3);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let addr = proxy.addr;
            std::thread::spawn(move || {
                let (mut total, mut failed) = (0, 0);
                while Instant::now() < stop_at {
                    let response = Client::connect(addr)
                        .request("GET /run HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
                    total += 1;
                    failed += usize::from(response.status != 200);
                }
                (total, failed)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    dead.store(true, Ordering::SeqCst);
    drop(victim);
    threads
        .into_iter()
        .map(|t| t.join().unwrap())
        .fold((0, 0), |(t, f), (tt, ff)| (t + tt, f + ff))
}

#[test]
fn a_killed_origin_costs_nothing_with_retries_and_its_in_flight_requests_without() {
    let (total, failed) = kill_one_mid_run(&[]);
    assert!(total > 100, "{total}");
    assert_eq!(failed, 0, "{failed} of {total} failed with retries on");
    // Without retries after a broken connection (refused ones still go on): no more than the
    // requests in flight on it (one per client).
    let (total, failed) = kill_one_mid_run(&["--retry-on", "timeout"]);
    assert!(total > 100, "{total}");
    assert!(failed <= 4, "{failed} of {total} failed");
}

#[test]
fn a_hedged_request_is_answered_by_the_second_server_when_the_first_is_slow() {
    let slow_posts = Arc::new(AtomicUsize::new(0));
    let slow = {
        let posts = slow_posts.clone();
        Origin::start(move |req, conn| {
            if req.method == "POST" {
                posts.fetch_add(1, Ordering::SeqCst);
            }
            std::thread::sleep(Duration::from_millis(400));
            echo("slow", req, conn)
        })
    };
    let (fast, fast_seen) = answering(200, "fast");
    let toml = format!(
        "[[upstream]]\nname = \"app\"\nservers = [\"{}\", \"{}\"]\nlb = \"round-robin\"\n\
         [upstream.ejection]\nconsecutive_failures = 0\n\n\
         [[route]]\nupstream = \"app\"\nhedge = {{ percentile = 50, min_delay = \"30ms\" }}\n",
        slow.addr, fast.addr
    );
    let proxy = Proxy::with_config(&toml, &["--workers", "1", "--admin", "127.0.0.1:0"]);
    // Until 20 responses were seen there is no percentile: no hedging yet.
    let mut client = proxy.client();
    for _ in 0..24 {
        assert_eq!(
            client
                .request("GET /warm HTTP/1.1\r\nHost: a\r\n\r\n")
                .status,
            200
        );
    }
    // Now a try on the slow server is joined after about 30 ms by one on the fast server,
    // which answers first.
    for _ in 0..6 {
        let started = Instant::now();
        let response = client.request("GET /hedged HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(response.status, 200);
        assert_eq!(origin_of(&response), "fast");
        assert!(
            started.elapsed() < Duration::from_millis(300),
            "{:?}",
            started.elapsed()
        );
    }
    let samples = scrape(proxy.admin_addr());
    let hedges = count(
        &samples,
        "ringwall_upstream_hedges_total",
        &[("group", "app")],
    );
    assert!(hedges >= 3, "{hedges} hedges");
    // A POST is never sent twice.
    let before = fast_seen.load(Ordering::SeqCst);
    for _ in 0..4 {
        let response =
            client.request("POST /once HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi");
        assert_eq!(response.status, 200);
    }
    let posts = slow_posts.load(Ordering::SeqCst) + fast_seen.load(Ordering::SeqCst) - before;
    assert_eq!(posts, 4, "each POST reached one server");
}
