//! Rate limits end to end: a limit of N holds for the whole process (two workers exchange what
//! they admitted; without the exchange it is about double), also when the load sits on one
//! worker; 429 with `Retry-After` and the `RateLimit` fields; the delay queue; concurrency
//! limits; keys by header; memory bounded under a flood of distinct client addresses; bad
//! settings refused with their line.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{run_ringwall, scrape, sum, Client, Origin, Proxy};

/// `connections` clients, each sending a request every `gap` for `duration` (a load far above
/// the limits here). The 200s, the 429s, and how long the load lasted.
fn offer(
    addr: std::net::SocketAddr,
    connections: usize,
    gap: Duration,
    duration: Duration,
) -> (u32, u32, f64) {
    let started = Instant::now();
    let threads: Vec<_> = (0..connections)
        .map(|_| {
            std::thread::spawn(move || {
                let mut client = Client::connect(addr);
                let (mut ok, mut refused) = (0u32, 0u32);
                let mut next = Instant::now();
                while started.elapsed() < duration {
                    let response = client.request("GET /n HTTP/1.1\r\nHost: a\r\n\r\n");
                    match response.status {
                        200 => ok += 1,
                        429 => refused += 1,
                        other => panic!("status {other}"),
                    }
                    next += gap;
                    if let Some(left) = next.checked_duration_since(Instant::now()) {
                        std::thread::sleep(left);
                    }
                }
                (ok, refused)
            })
        })
        .collect();
    let (mut ok, mut refused) = (0, 0);
    for thread in threads {
        let (o, r) = thread.join().unwrap();
        ok += o;
        refused += r;
    }
    (ok, refused, started.elapsed().as_secs_f64())
}

fn limited(origin: &Origin, limit: &str, extra: &[&str]) -> Proxy {
    let toml = format!(
        "[[upstream]]\nname = \"app\"\nservers = [\"{}\"]\n\n\
         [[rate_limit]]\n{limit}\n\n\
         [http]\nrate_limits = [\"l\"]\n\n\
         [[route]]\nupstream = \"app\"\n",
        origin.addr
    );
    Proxy::with_config(&toml, extra)
}

/// The connections each worker accepted.
fn accepted_per_worker(proxy: &Proxy) -> Vec<f64> {
    let samples = scrape(proxy.admin_addr());
    (0..2)
        .map(|w| {
            sum(
                &samples,
                "ringwall_connections_accepted_total",
                &[("worker", &w.to_string())],
            )
        })
        .collect()
}

#[test]
fn a_limit_holds_for_the_process_across_workers() {
    let origin = Origin::echo("o");
    let limit = "name = \"l\"\nrate = \"100/s\"\nburst = 20";
    let shared = limited(&origin, limit, &["--admin", "127.0.0.1:0"]);
    let apart = limited(
        &origin,
        &format!("{limit}\nper_worker = true"),
        &["--admin", "127.0.0.1:0"],
    );
    let one = limited(&origin, limit, &[]);
    // Ten seconds of about 1600 requests/s on 16 connections (both workers), and of about
    // 1000/s on one connection (one worker), all three at once.
    let ten = Duration::from_secs(10);
    let gap = Duration::from_millis(10);
    let (a, b, c) = std::thread::scope(|s| {
        let a = s.spawn(|| offer(shared.addr, 16, gap, ten));
        let b = s.spawn(|| offer(apart.addr, 16, gap, ten));
        let c = s.spawn(|| offer(one.addr, 1, Duration::from_millis(1), ten));
        (a.join().unwrap(), b.join().unwrap(), c.join().unwrap())
    });
    for proxy in [&shared, &apart] {
        let per_worker = accepted_per_worker(proxy);
        assert!(
            per_worker.iter().all(|&n| n > 0.0),
            "both workers took connections: {per_worker:?}"
        );
    }
    eprintln!("admitted, refused, seconds: shared {a:?}, per worker {b:?}, one worker {c:?}");
    let expected = |secs: f64| 20.0 + 100.0 * secs;
    let (ok, refused, secs) = a;
    let want = expected(secs);
    assert!(
        (f64::from(ok) - want).abs() <= want * 0.05,
        "shared between 2 workers: {ok} admitted ({refused} refused) in {secs:.2} s, {want:.0} ±5 % expected"
    );
    let (ok, refused, secs) = b;
    let want = 2.0 * expected(secs);
    assert!(
        (f64::from(ok) - want).abs() <= want * 0.1,
        "without the exchange: {ok} admitted ({refused} refused) in {secs:.2} s, about double ({want:.0}) expected"
    );
    let (ok, refused, secs) = c;
    let want = expected(secs);
    assert!(
        (f64::from(ok) - want).abs() <= want * 0.05,
        "load on one worker: {ok} admitted ({refused} refused) in {secs:.2} s, {want:.0} ±5 % expected"
    );
}

#[test]
fn flags_alone_limit_every_route_and_say_when_to_come_back() {
    let origin = Origin::echo("o");
    let proxy = Proxy::start(
        &[origin.addr],
        &[
            "--rate-limit",
            "1/m",
            "--rate-limit-burst",
            "3",
            "--rate-limit-key",
            "header:X-Api-Key",
            "--workers",
            "1",
        ],
    );
    let mut client = proxy.client();
    let send = |client: &mut Client, key: &str| {
        client.request(format!(
            "GET /x HTTP/1.1\r\nHost: a\r\nX-Api-Key: {key}\r\n\r\n"
        ))
    };
    for _ in 0..3 {
        assert_eq!(send(&mut client, "alice").status, 200);
    }
    let refused = send(&mut client, "alice");
    assert_eq!(refused.status, 429);
    let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((55..=60).contains(&retry), "Retry-After {retry}");
    assert_eq!(
        refused.header("ratelimit-policy"),
        Some("\"default\";q=1;w=60")
    );
    let remaining = refused.header("ratelimit").unwrap();
    assert!(
        remaining.starts_with("\"default\";r=0;t="),
        "RateLimit: {remaining}"
    );
    // The connection stays usable, another key has its own budget, and a request without
    // the header is not counted by this limit.
    assert_eq!(send(&mut client, "bob").status, 200);
    for _ in 0..5 {
        let response = client.request("GET /x HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(response.status, 200);
    }
}

#[test]
fn a_queue_delays_the_requests_past_the_burst() {
    let origin = Origin::echo("o");
    let proxy = limited(
        &origin,
        "name = \"l\"\nrate = \"10/s\"\nburst = 1\ndelay = 3\nheaders = true",
        &["--workers", "1"],
    );
    let started = Instant::now();
    let threads: Vec<_> = (0..5)
        .map(|_| {
            let addr = proxy.addr;
            std::thread::spawn(move || {
                let response = Client::connect(addr).request("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
                (response.status, started.elapsed())
            })
        })
        .collect();
    let mut results: Vec<(u16, Duration)> =
        threads.into_iter().map(|t| t.join().unwrap()).collect();
    results.sort_by_key(|r| r.1);
    // One at once, three in the queue (one every 100 ms: the last waited about 300 ms), and
    // the fifth refused at once.
    let statuses: Vec<u16> = results.iter().map(|r| r.0).collect();
    assert_eq!(
        statuses.iter().filter(|&&s| s == 200).count(),
        4,
        "{results:?}"
    );
    let refusal = results.iter().find(|r| r.0 == 429).unwrap();
    assert!(
        refusal.1 < Duration::from_millis(100),
        "refused at once: {results:?}"
    );
    assert!(results[4].1 >= Duration::from_millis(250), "{results:?}");
    // An admitted response carries the fields too (`headers = true`).
    std::thread::sleep(Duration::from_millis(500));
    let ok = proxy.client().request("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("ratelimit-policy"), Some("\"l\";q=10;w=1"));
    assert!(ok
        .header("ratelimit")
        .is_some_and(|v| v.starts_with("\"l\";r=")));
}

#[test]
fn a_concurrency_limit_counts_what_is_in_flight_on_both_workers() {
    let slow = Origin::start(|req, conn| {
        std::thread::sleep(Duration::from_millis(400));
        common::echo("slow", req, conn)
    });
    let proxy = limited(
        &slow,
        "name = \"l\"\nconcurrent = 2",
        &["--admin", "127.0.0.1:0"],
    );
    // Eight at once on their own connections (both workers): two go on, six are refused.
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let addr = proxy.addr;
            std::thread::spawn(move || {
                Client::connect(addr)
                    .request("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                    .status
            })
        })
        .collect();
    let statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let ok = statuses.iter().filter(|&&s| s == 200).count();
    // A worker learns of the other's requests on the next tick (20 ms): at most one more
    // per worker can slip in before it does.
    assert!((2..=4).contains(&ok), "{statuses:?}");
    assert_eq!(ok + statuses.iter().filter(|&&s| s == 429).count(), 8);
    // Once they are done, places are free again (on the other worker, once the tick has
    // told it).
    std::thread::sleep(Duration::from_millis(200));
    for _ in 0..4 {
        let response = proxy.client().request("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(response.status, 200);
    }
    let samples = scrape(proxy.admin_addr());
    let refused = sum(
        &samples,
        "ringwall_rate_limit_decisions_total",
        &[("limit", "l"), ("outcome", "refused")],
    );
    assert!(refused >= 4.0, "{refused}");
    let rejected = sum(
        &samples,
        "ringwall_requests_rejected_total",
        &[("reason", "rate")],
    );
    assert!((rejected - refused).abs() < 0.5, "{rejected} {refused}");
}

#[test]
fn a_flood_of_distinct_clients_stays_within_the_key_bound() {
    let origin = Origin::echo("o");
    let toml = format!(
        "[http]\ntrusted_proxies = [\"127.0.0.1\"]\nrate_limits = [\"l\"]\n\n\
         [[upstream]]\nname = \"app\"\nservers = [\"{}\"]\n\n\
         [[rate_limit]]\nname = \"l\"\nrate = \"5/s\"\nmax_keys = 500\n\n\
         [[route]]\nupstream = \"app\"\n",
        origin.addr
    );
    let proxy = Proxy::with_config(&toml, &["--admin", "127.0.0.1:0"]);
    // Warm up, then 20 000 requests from 20 000 addresses (X-Forwarded-For from a trusted
    // proxy), on 4 connections.
    let before = proxy.rss_kib();
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..4u32)
        .map(|t| {
            let addr = proxy.addr;
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut client = Client::connect(addr);
                for i in 0..5000u32 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let n = t * 5000 + i;
                    let ip = format!("10.{}.{}.{}", n >> 16, (n >> 8) & 255, n & 255);
                    let response = client.request(format!(
                        "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: {ip}\r\n\r\n"
                    ));
                    assert_eq!(response.status, 200, "a new address has its burst");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    std::thread::sleep(Duration::from_millis(100));
    let samples = scrape(proxy.admin_addr());
    let keys = sum(&samples, "ringwall_rate_limit_keys", &[("limit", "l")]);
    assert!(keys <= 1000.0, "{keys} keys held by 2 workers of 500 each");
    let grown = proxy.rss_kib().saturating_sub(before);
    assert!(grown < 16 * 1024, "RSS grew by {grown} KiB");
}

#[test]
fn bad_limits_are_refused_with_their_line() {
    let origin = Origin::echo("o");
    let cases = [
        (
            "[[rate_limit]]\nname = \"l\"\nrate = \"100 per second\"\n",
            "rate_limit[0].rate",
        ),
        (
            "[[rate_limit]]\nname = \"l\"\nrate = \"10/s\"\nconcurrent = 3\n",
            "rate_limit[0]",
        ),
        (
            "[[rate_limit]]\nname = \"l\"\nrate = \"10/s\"\nkey = \"cookie\"\n",
            "rate_limit[0].key",
        ),
        (
            "[[rate_limit]]\nname = \"l\"\nrate = \"10/s\"\nalgorithm = \"sliding-window\"\nburst = 5\n",
            "rate_limit[0].burst",
        ),
        ("[http]\nrate_limits = [\"nope\"]\n", "http.rate_limits[0]"),
    ];
    for (text, field) in cases {
        let file = common::TempFile::new(
            "limits.toml",
            &format!(
                "{text}\n[[upstream]]\nname = \"app\"\nservers = [\"{}\"]\n\n[[route]]\nupstream = \"app\"\n",
                origin.addr
            ),
        );
        let run = run_ringwall(&["check", "--config", &file.display()]);
        assert!(!run.status.success(), "{text}");
        assert!(
            run.stderr.contains(field) && run.stderr.contains("limits.toml:"),
            "{text}: {}",
            run.stderr
        );
    }
    let run = run_ringwall(&[
        "check",
        "--upstream",
        "127.0.0.1:1",
        "--rate-limit-burst",
        "5",
    ]);
    assert!(!run.status.success());
    assert!(run.stderr.contains("--rate-limit-burst"), "{}", run.stderr);
    let run = run_ringwall(&[
        "check",
        "--upstream",
        "127.0.0.1:1",
        "--rate-limit",
        "5/fortnight",
    ]);
    assert!(!run.status.success());
    assert!(run.stderr.contains("--rate-limit"), "{}", run.stderr);
}
