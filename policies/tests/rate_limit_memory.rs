//! A million distinct client addresses through one rate limit's map: the process's resident
//! memory stays within the documented bound (about 100 bytes per key of `max_keys`, plus the
//! list of keys to report). Its own test binary, so that nothing else allocates meanwhile.

use std::time::{Duration, Instant};

use ringwall_policies::ratelimit::{Decision, Kind, Limiter};

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[test]
fn a_million_client_addresses_stay_within_the_bound() {
    const MAX_KEYS: usize = 10_000;
    let t0 = Instant::now();
    let kind = Kind::Bucket {
        amount: 10,
        per: Duration::from_secs(1),
        burst: 10,
        queue: 0,
    };
    let mut limiter = Limiter::new(kind, true, t0, MAX_KEYS);
    let mut report = Vec::with_capacity(MAX_KEYS * 2);
    // Fill to the bound first, so that the baseline includes the table at its full size.
    let mut address = u32::from(std::net::Ipv4Addr::new(10, 0, 0, 0));
    for _ in 0..MAX_KEYS {
        limiter.check(u64::from(address), t0);
        address += 1;
    }
    let before = rss_kib();
    for i in 0..1_000_000u64 {
        let now = t0 + Duration::from_micros(i);
        let decision = limiter.check(u64::from(address), now);
        assert!(matches!(decision, Decision::Allow { .. }));
        address += 1;
        if i % 20_000 == 0 {
            report.clear();
            limiter.report(&mut report);
        }
    }
    let grown = rss_kib().saturating_sub(before);
    assert!(limiter.len() <= MAX_KEYS);
    // 100 bytes a key is 1 MB for the whole map; allow twice that for the allocator.
    assert!(
        grown <= 2 * 1024,
        "RSS grew by {grown} KiB past the full table"
    );
}
