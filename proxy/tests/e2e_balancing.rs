//! Choosing a server, end to end: the default (power of two choices by peak-EWMA) keeps traffic
//! off a slow origin, further than power of two choices by outstanding requests alone; weights share it out; consistent hashing keeps a client, a header, a cookie or a
//! path on one server, the same on every worker; and the `--lb` flag reaches every group.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{echo, Origin, Proxy};

fn origin_of(response: &common::Response) -> String {
    response.header("x-origin").unwrap_or_default().to_owned()
}

/// `n` requests, each on its own connection (so both workers take part); which origin
/// answered each.
fn spread(proxy: &Proxy, n: usize, extra: &str) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for i in 0..n {
        let response = proxy.client().request(format!(
            "GET /spread/{i} HTTP/1.1\r\nHost: a\r\n{extra}Connection: close\r\n\r\n"
        ));
        assert_eq!(response.status, 200);
        *seen.entry(origin_of(&response)).or_insert(0) += 1;
    }
    seen
}

#[test]
fn power_of_two_choices_moves_traffic_off_a_slow_origin() {
    let fast_a = Origin::echo("fast-a");
    let fast_b = Origin::echo("fast-b");
    let slow = Origin::start(|req, conn| {
        std::thread::sleep(Duration::from_millis(150));
        echo("slow", req, conn)
    });
    let mut slow_counts = Vec::new();
    // The last one is the default, with no `--lb`.
    for lb in ["p2c", "peak-ewma", ""] {
        let mut flags = vec!["--workers", "1"];
        if !lb.is_empty() {
            flags.extend(["--lb", lb]);
        }
        let proxy = Proxy::start(&[fast_a.addr, fast_b.addr, slow.addr], &flags);
        // First one request at a time, so that every server has answered (peak-EWMA has
        // measured them; p2c learns nothing from it). Counting only starts after: on a loaded
        // machine the fast origins may not have answered before a cold burst is spread, and
        // then both algorithms can only share that first burst out evenly.
        let mut warm = common::Client::connect(proxy.addr);
        for _ in 0..12 {
            warm.request("GET /warm HTTP/1.1\r\nHost: a\r\n\r\n");
        }
        // 24 clients at once, each sending 8 requests: the slow origin holds its requests
        // longer, so it has more outstanding whenever it is drawn.
        let threads: Vec<_> = (0..24)
            .map(|_| {
                let addr = proxy.addr;
                std::thread::spawn(move || {
                    let mut client = common::Client::connect(addr);
                    (0..8)
                        .map(|_| {
                            origin_of(&client.request("GET /load HTTP/1.1\r\nHost: a\r\n\r\n"))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut counts: HashMap<String, usize> = HashMap::new();
        for thread in threads {
            for origin in thread.join().unwrap() {
                *counts.entry(origin).or_insert(0) += 1;
            }
        }
        let total: usize = counts.values().sum();
        let slow = counts.get("slow").copied().unwrap_or(0);
        // Under a fifth of the requests (a third would be an even share).
        assert!(
            slow * 5 < total,
            "{}: the slow origin took {slow} of {total} requests: {counts:?}",
            if lb.is_empty() { "the default" } else { lb }
        );
        slow_counts.push(slow);
    }
    // Peak-EWMA, which weighs latency, keeps it further away still, and so does the default.
    assert!(
        slow_counts[1] < slow_counts[0] && slow_counts[2] < slow_counts[0],
        "the slow origin took {} requests under p2c, {} under peak-ewma and {} by default",
        slow_counts[0],
        slow_counts[1],
        slow_counts[2]
    );
}

#[test]
fn weights_share_the_requests_out() {
    let a = Origin::echo("a");
    let b = Origin::echo("b");
    let toml = format!(
        "[[upstream]]\nname = \"app\"\nservers = [\"{}\", \"{}\"]\nweights = [3, 1]\nlb = \"weighted\"\n\n\
         [[route]]\nupstream = \"app\"\n",
        a.addr, b.addr
    );
    let proxy = Proxy::with_config(&toml, &["--workers", "1"]);
    let seen = spread(&proxy, 40, "");
    assert_eq!(seen.get("a"), Some(&30), "{seen:?}");
    assert_eq!(seen.get("b"), Some(&10), "{seen:?}");
}

#[test]
fn hashing_keeps_a_key_on_one_server_on_every_worker() {
    let origins: Vec<Origin> = ["s0", "s1", "s2", "s3"]
        .into_iter()
        .map(|name| Origin::start(move |req, conn| echo(name, req, conn)))
        .collect();
    let addrs: Vec<_> = origins.iter().map(|o| o.addr).collect();
    for (lb, key_field) in [
        ("hash:header:X-User", "X-User"),
        ("hash:cookie:sid", "Cookie"),
    ] {
        let proxy = Proxy::start(&addrs, &["--lb", lb]);
        let mut owners = HashMap::new();
        for user in 0..20 {
            let value = if key_field == "Cookie" {
                format!("theme=dark; sid=user-{user}")
            } else {
                format!("user-{user}")
            };
            let extra = format!("{key_field}: {value}\r\n");
            // Ten connections each (both workers answer some): always the same server.
            let seen = spread(&proxy, 10, &extra);
            assert_eq!(seen.len(), 1, "{lb}: user {user} went to {seen:?}");
            owners.insert(user, seen.into_keys().next().unwrap());
        }
        let distinct: std::collections::HashSet<_> = owners.values().collect();
        assert!(distinct.len() >= 3, "{lb}: 20 users on {distinct:?}");
    }
    // By path: the same path, the same server.
    let proxy = Proxy::start(&addrs, &["--lb", "hash:path"]);
    let first = origin_of(
        &proxy
            .client()
            .request("GET /catalog/42 HTTP/1.1\r\nHost: a\r\n\r\n"),
    );
    for _ in 0..10 {
        let again = origin_of(
            &proxy
                .client()
                .request("GET /catalog/42?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"),
        );
        assert_eq!(again, first, "the query is not part of the path");
    }
}

#[test]
fn an_unknown_balancing_is_refused_naming_the_flag() {
    let run = common::run_ringwall(&["check", "--upstream", "127.0.0.1:9", "--lb", "fastest"]);
    assert!(!run.status.success());
    assert!(run.stderr.contains("--lb"), "{}", run.stderr);
    assert!(
        run.stderr.contains("unknown balancing \"fastest\""),
        "{}",
        run.stderr
    );
}
