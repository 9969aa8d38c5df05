//! The response cache, end to end, against a real origin that counts what reaches it: hits
//! and misses, revalidation answered by 304 and by 200, `Vary`, `private`, `no-store`,
//! `s-maxage` over `max-age`, `Set-Cookie` kept from other clients, HEAD from a cached GET,
//! invalidation after POST, `only-if-cached`, bypass conditions, purge on the admin endpoint,
//! and the counters in `/metrics`.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{count, scrape, Origin, Proxy};

/// Paths the origin knows, and how often each reached it.
const PATHS: [&str; 10] = [
    "/fresh", "/etag", "/changed", "/vary", "/private", "/nostore", "/smaxage", "/cookie",
    "/plain", "/bypass",
];

struct Counted {
    origin: Origin,
    hits: Arc<[AtomicUsize; PATHS.len()]>,
}

impl Counted {
    fn reached(&self, path: &str) -> usize {
        let i = PATHS.iter().position(|p| *p == path).unwrap();
        self.hits[i].load(Ordering::SeqCst)
    }
}

fn origin() -> Counted {
    let hits: Arc<[AtomicUsize; PATHS.len()]> = Arc::new(Default::default());
    let seen = hits.clone();
    let origin = Origin::start(move |req, conn| {
        conn.discard_body()?;
        let path = req.target.split('?').next().unwrap_or_default().to_owned();
        let Some(i) = PATHS.iter().position(|p| *p == path) else {
            conn.respond(404, &[], b"no such path\n")?;
            return Ok(common::Next::KeepAlive);
        };
        let n = seen[i].fetch_add(1, Ordering::SeqCst) + 1;
        if req.method == "POST" {
            conn.respond(200, &[], b"posted\n")?;
            return Ok(common::Next::KeepAlive);
        }
        let body = format!("{path} #{n}\n");
        let inm = req.head.get("if-none-match").map(str::to_owned);
        match path.as_str() {
            "/fresh" | "/plain" | "/bypass" => {
                conn.respond(
                    200,
                    &[("Cache-Control", "max-age=60"), ("ETag", "\"f1\"")],
                    body.as_bytes(),
                )?;
            }
            "/etag" => {
                let fields = [
                    ("Cache-Control", "max-age=0"),
                    ("ETag", "\"v1\""),
                    ("X-Seen", "first"),
                ];
                if inm.as_deref() == Some("\"v1\"") {
                    conn.respond(
                        304,
                        &[
                            ("Cache-Control", "max-age=0"),
                            ("ETag", "\"v1\""),
                            ("X-Seen", "again"),
                        ],
                        b"",
                    )?;
                } else {
                    conn.respond(200, &fields, body.as_bytes())?;
                }
            }
            "/changed" => {
                let etag = format!("\"v{n}\"");
                conn.respond(
                    200,
                    &[("Cache-Control", "no-cache"), ("ETag", &etag)],
                    body.as_bytes(),
                )?;
            }
            "/vary" => {
                let language = req.head.get("accept-language").unwrap_or("none").to_owned();
                conn.respond(
                    200,
                    &[("Cache-Control", "max-age=60"), ("Vary", "Accept-Language")],
                    format!("{language} {body}").as_bytes(),
                )?;
            }
            "/private" => {
                conn.respond(
                    200,
                    &[("Cache-Control", "private, max-age=60")],
                    body.as_bytes(),
                )?;
            }
            "/nostore" => {
                conn.respond(200, &[("Cache-Control", "no-store")], body.as_bytes())?;
            }
            "/smaxage" => {
                conn.respond(
                    200,
                    &[("Cache-Control", "max-age=0, s-maxage=60")],
                    body.as_bytes(),
                )?;
            }
            _ => {
                conn.respond(
                    200,
                    &[
                        ("Cache-Control", "public, max-age=60"),
                        ("Set-Cookie", "session=first"),
                    ],
                    body.as_bytes(),
                )?;
            }
        }
        Ok(common::Next::KeepAlive)
    });
    Counted { origin, hits }
}

fn get(proxy: &Proxy, path: &str, extra: &str) -> common::Response {
    proxy.client().request(format!(
        "GET {path} HTTP/1.1\r\nHost: cache.test\r\n{extra}Connection: close\r\n\r\n"
    ))
}

fn cache_status(response: &common::Response) -> String {
    response
        .header("cache-status")
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn fresh_responses_are_answered_from_the_cache() {
    let origin = origin();
    let proxy = Proxy::start(
        &[origin.origin.addr],
        &["--cache", "16MiB", "--workers", "1"],
    );
    let first = get(&proxy, "/fresh", "");
    assert_eq!(first.text(), "/fresh #1\n");
    assert_eq!(cache_status(&first), "ringwall; fwd=uri-miss; stored");
    for _ in 0..3 {
        let again = get(&proxy, "/fresh", "");
        assert_eq!(again.status, 200);
        assert_eq!(again.text(), "/fresh #1\n");
        assert!(
            cache_status(&again).starts_with("ringwall; hit; ttl="),
            "{}",
            cache_status(&again)
        );
        assert!(again.header("age").is_some());
        assert_eq!(again.header("content-length"), Some("10"));
    }
    assert_eq!(origin.reached("/fresh"), 1);
    // A query is another URL.
    assert_eq!(get(&proxy, "/fresh?x=1", "").text(), "/fresh #2\n");
    // HEAD is answered from the stored GET: its head, no body.
    let head = proxy
        .client()
        .request("HEAD /fresh HTTP/1.1\r\nHost: cache.test\r\nConnection: close\r\n\r\n");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(head.header("content-length"), Some("10"));
    assert!(cache_status(&head).contains("hit"));
    assert_eq!(origin.reached("/fresh"), 2);
    // A client's If-None-Match is answered from the fresh stored response: 304 when it
    // names the stored ETag (weakly compared), else the stored 200.
    for tag in ["\"f1\"", "W/\"f1\"", "\"x\", \"f1\"", "*"] {
        let not_modified = get(&proxy, "/fresh", &format!("If-None-Match: {tag}\r\n"));
        assert_eq!(not_modified.status, 304, "{tag}");
        assert!(not_modified.body.is_empty());
        assert_eq!(not_modified.header("etag"), Some("\"f1\""));
        assert!(cache_status(&not_modified).contains("hit"));
    }
    let other = get(&proxy, "/fresh", "If-None-Match: \"x\"\r\n");
    assert_eq!((other.status, other.text().as_str()), (200, "/fresh #1\n"));
    assert_eq!(origin.reached("/fresh"), 2);
    // The client may ask for a fresh copy.
    assert_eq!(
        get(&proxy, "/fresh", "Cache-Control: no-cache\r\n").text(),
        "/fresh #3\n"
    );
    // s-maxage counts in a shared cache, over max-age=0.
    assert_eq!(get(&proxy, "/smaxage", "").text(), "/smaxage #1\n");
    assert_eq!(get(&proxy, "/smaxage", "").text(), "/smaxage #1\n");
}

#[test]
fn stale_responses_are_revalidated_with_304_and_with_200() {
    let origin = origin();
    let proxy = Proxy::start(
        &[origin.origin.addr],
        &["--cache", "16MiB", "--workers", "1"],
    );
    assert_eq!(get(&proxy, "/etag", "").text(), "/etag #1\n");
    // Stale at once: revalidated; the 304 updates the stored fields, the body is the stored one.
    let again = get(&proxy, "/etag", "");
    assert_eq!(again.status, 200);
    assert_eq!(again.text(), "/etag #1\n");
    assert_eq!(cache_status(&again), "ringwall; fwd=stale; fwd-status=304");
    assert_eq!(again.header("x-seen"), Some("again"));
    assert_eq!(origin.reached("/etag"), 2);
    // A 200 to the revalidation replaces what was stored.
    assert_eq!(get(&proxy, "/changed", "").text(), "/changed #1\n");
    let changed = get(&proxy, "/changed", "");
    assert_eq!(changed.text(), "/changed #2\n");
    assert_eq!(cache_status(&changed), "ringwall; fwd=stale; stored");
    assert_eq!(changed.header("etag"), Some("\"v2\""));
    // A client's own conditional request is the origin's to answer.
    let conditional = get(&proxy, "/etag", "If-None-Match: \"v1\"\r\n");
    assert_eq!(conditional.status, 304);
}

#[test]
fn variants_private_no_store_and_cookies() {
    let origin = origin();
    let proxy = Proxy::start(
        &[origin.origin.addr],
        &["--cache", "16MiB", "--workers", "1"],
    );
    // Vary: one stored response per language.
    for _ in 0..2 {
        assert_eq!(
            get(&proxy, "/vary", "Accept-Language: fr\r\n").text(),
            "fr /vary #1\n"
        );
        assert_eq!(
            get(&proxy, "/vary", "Accept-Language: de\r\n").text(),
            "de /vary #2\n"
        );
    }
    assert_eq!(origin.reached("/vary"), 2);
    // private and no-store are not stored by a shared cache.
    for n in 1..=2 {
        assert_eq!(
            get(&proxy, "/private", "").text(),
            format!("/private #{n}\n")
        );
        assert_eq!(
            get(&proxy, "/nostore", "").text(),
            format!("/nostore #{n}\n")
        );
    }
    // A stored response never hands the first client's cookie to the next.
    let first = get(&proxy, "/cookie", "");
    assert_eq!(first.header("set-cookie"), Some("session=first"));
    let second = get(&proxy, "/cookie", "");
    assert_eq!(second.text(), "/cookie #1\n");
    assert_eq!(second.header("set-cookie"), None);
}

#[test]
fn unsafe_methods_purges_and_only_if_cached() {
    let origin = origin();
    let proxy = Proxy::start(
        &[origin.origin.addr],
        &[
            "--cache",
            "16MiB",
            "--workers",
            "1",
            "--admin",
            "127.0.0.1:0",
        ],
    );
    assert_eq!(get(&proxy, "/fresh", "").text(), "/fresh #1\n");
    assert_eq!(get(&proxy, "/fresh", "").text(), "/fresh #1\n");
    // A successful POST to the URL invalidates it.
    let posted = proxy.client().request(
        "POST /fresh HTTP/1.1\r\nHost: cache.test\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx",
    );
    assert_eq!(posted.status, 200);
    assert_eq!(get(&proxy, "/fresh", "").text(), "/fresh #3\n");
    // only-if-cached: what is stored, else 504.
    assert_eq!(
        get(&proxy, "/fresh", "Cache-Control: only-if-cached\r\n").text(),
        "/fresh #3\n"
    );
    assert_eq!(
        get(&proxy, "/plain", "Cache-Control: only-if-cached\r\n").status,
        504
    );
    assert_eq!(origin.reached("/plain"), 0);

    // Purge one URL on the admin endpoint, then a prefix.
    assert_eq!(get(&proxy, "/plain", "").text(), "/plain #1\n");
    let admin = proxy.admin_addr();
    let purge = |body: &str| {
        common::Client::connect(admin).request(format!(
            "POST /cache/purge HTTP/1.1\r\nHost: admin\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ))
    };
    let purged = purge(r#"{"url": "http://cache.test/plain"}"#);
    assert_eq!(purged.status, 200, "{}", purged.text());
    assert_eq!(purged.text(), "{\"purged\":1}\n");
    assert_eq!(get(&proxy, "/plain", "").text(), "/plain #2\n");
    let purged = purge(r#"{"prefix": "http://cache.test/"}"#);
    assert_eq!(purged.text(), "{\"purged\":2}\n");
    assert_eq!(get(&proxy, "/plain", "").text(), "/plain #3\n");
    assert_eq!(purge(r#"{"url": "cache.test/plain"}"#).status, 400);

    // The counters add up.
    let samples = scrape(admin);
    let lookups = |result: &str| {
        count(
            &samples,
            "ringwall_cache_lookups_total",
            &[("result", result)],
        )
    };
    assert!(lookups("hit") >= 2, "{samples:?}");
    assert!(lookups("miss") >= 4);
    assert!(count(&samples, "ringwall_cache_stores_total", &[]) >= 3);
    assert!(count(&samples, "ringwall_cache_invalidations_total", &[]) >= 3);
    assert!(count(&samples, "ringwall_cache_entries", &[]) >= 1);
    assert!(count(&samples, "ringwall_cache_bytes", &[]) > 0);
}

#[test]
fn routes_choose_their_key_ttl_and_bypass() {
    let origin = origin();
    let toml = format!(
        "[cache]\nmemory = \"1MiB\"\n\n\
         [[upstream]]\nname = \"app\"\nservers = [\"{}\"]\n\n\
         [[route]]\npath_prefix = \"/nostore\"\nupstream = \"app\"\ncache = false\n\n\
         [[route]]\nupstream = \"app\"\n\
         [route.cache]\nkey_headers = [\"X-Tenant\"]\nbypass_cookies = [\"admin\"]\nbypass_headers = [\"X-Debug\"]\n",
        origin.origin.addr
    );
    let proxy = Proxy::with_config(&toml, &["--workers", "1"]);
    // The key has the tenant in it.
    assert_eq!(
        get(&proxy, "/plain", "X-Tenant: a\r\n").text(),
        "/plain #1\n"
    );
    assert_eq!(
        get(&proxy, "/plain", "X-Tenant: b\r\n").text(),
        "/plain #2\n"
    );
    assert_eq!(
        get(&proxy, "/plain", "X-Tenant: a\r\n").text(),
        "/plain #1\n"
    );
    // A bypass cookie or field goes to the origin and stores nothing.
    assert_eq!(
        get(&proxy, "/bypass", "Cookie: x=1; admin=yes\r\n").text(),
        "/bypass #1\n"
    );
    assert_eq!(
        get(&proxy, "/bypass", "X-Debug: 1\r\n").text(),
        "/bypass #2\n"
    );
    assert_eq!(get(&proxy, "/bypass", "").text(), "/bypass #3\n");
    assert_eq!(
        get(&proxy, "/bypass", "Cookie: admin=yes\r\n").text(),
        "/bypass #4\n"
    );
    assert_eq!(get(&proxy, "/bypass", "").text(), "/bypass #3\n");
    // A route with cache = false: no Cache-Status at all.
    assert_eq!(get(&proxy, "/nostore", "").header("cache-status"), None);
}

#[test]
fn bad_cache_settings_are_refused_with_their_field() {
    let cases = [
        ("[cache]\nmemory = \"0\"\n", "", "cache.memory"),
        ("", "cache = { default_ttl = \"1m\" }\n", "route[0].cache"),
        ("[cache]\ndisk_size = \"1GiB\"\n", "", "cache.disk_size"),
        (
            "[cache]\nmemory = \"1MiB\"\n",
            "cache = { statuses = [206] }\n",
            "route[0].cache.statuses[0]",
        ),
        (
            "[cache]\nmemory = \"1MiB\"\n",
            "cache = { key_headers = [\"a b\"] }\n",
            "route[0].cache.key_headers[0]",
        ),
    ];
    for (global, route, field) in cases {
        let toml = format!(
            "{global}[[upstream]]\nname = \"app\"\nservers = [\"127.0.0.1:1\"]\n\n\
             [[route]]\nupstream = \"app\"\n{route}"
        );
        let file = common::TempFile::new("cache.toml", &toml);
        let run = common::run_ringwall(&["check", "--config", &file.display()]);
        assert!(!run.status.success(), "{toml}");
        assert!(run.stderr.contains(field), "{field}: {}", run.stderr);
        assert!(run.stderr.contains("cache.toml:"), "{}", run.stderr);
    }
}

#[test]
fn what_one_worker_stores_or_invalidates_serves_them_all() {
    let origin = origin();
    let proxy = Proxy::start(
        &[origin.origin.addr],
        &["--cache", "16MiB", "--workers", "2"],
    );
    assert_eq!(get(&proxy, "/fresh", "").text(), "/fresh #1\n");
    // After a tick or so, every worker has it: new connections land on both workers, and
    // none of them reaches the origin.
    std::thread::sleep(std::time::Duration::from_millis(500));
    for _ in 0..12 {
        let response = get(&proxy, "/fresh", "");
        assert_eq!(response.text(), "/fresh #1\n");
        assert!(
            cache_status(&response).contains("hit"),
            "{}",
            cache_status(&response)
        );
    }
    assert_eq!(origin.reached("/fresh"), 1);
    // A POST on one worker invalidates it on both.
    let posted = proxy.client().request(
        "POST /fresh HTTP/1.1\r\nHost: cache.test\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx",
    );
    assert_eq!(posted.status, 200);
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(get(&proxy, "/fresh", "").text(), "/fresh #3\n");
    std::thread::sleep(std::time::Duration::from_millis(500));
    for _ in 0..12 {
        assert_eq!(get(&proxy, "/fresh", "").text(), "/fresh #3\n");
    }
    assert_eq!(origin.reached("/fresh"), 3);
}

#[test]
fn stale_if_error_answers_for_an_origin_that_fails_or_is_gone() {
    use std::sync::atomic::AtomicBool;
    let failing = Arc::new(AtomicBool::new(false));
    let fails = failing.clone();
    let reached = Arc::new(AtomicUsize::new(0));
    let seen = reached.clone();
    let origin = Origin::start(move |_req, conn| {
        let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
        if fails.load(Ordering::SeqCst) {
            conn.respond(500, &[], b"broken\n")?;
        } else {
            conn.respond(
                200,
                &[("Cache-Control", "max-age=1, stale-if-error=60")],
                format!("good #{n}\n").as_bytes(),
            )?;
        }
        Ok(common::Next::KeepAlive)
    });
    let proxy = Proxy::start(&[origin.addr], &["--cache", "16MiB", "--workers", "1"]);
    assert_eq!(get(&proxy, "/sie", "").text(), "good #1\n");
    // Stale after a second; the origin now answers 500: the stale response answers instead.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    failing.store(true, Ordering::SeqCst);
    let stale = get(&proxy, "/sie", "");
    assert_eq!(stale.status, 200);
    assert_eq!(stale.text(), "good #1\n");
    assert_eq!(
        cache_status(&stale),
        "ringwall; fwd=stale; detail=stale-if-error"
    );
    assert_eq!(reached.load(Ordering::SeqCst), 2);
    // The origin gone altogether: the same.
    drop(origin);
    let stale = get(&proxy, "/sie", "");
    assert_eq!(stale.status, 200, "{}", stale.text());
    assert_eq!(stale.text(), "good #1\n");
    // A URL with nothing stored gets the error.
    assert_eq!(get(&proxy, "/other", "").status, 502);
}

#[test]
fn concurrent_requests_for_a_slow_url_reach_the_origin_once() {
    let reached = Arc::new(AtomicUsize::new(0));
    let seen = reached.clone();
    let origin = Origin::start(move |_req, conn| {
        let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
        std::thread::sleep(std::time::Duration::from_millis(500));
        conn.respond(
            200,
            &[("Cache-Control", "max-age=60")],
            format!("slow #{n}\n").as_bytes(),
        )?;
        Ok(common::Next::KeepAlive)
    });
    // Two workers: the clients' connections land on both, and still one request goes out.
    let proxy = Proxy::start(
        &[origin.addr],
        &[
            "--cache",
            "16MiB",
            "--workers",
            "2",
            "--admin",
            "127.0.0.1:0",
        ],
    );
    let addr = proxy.addr;
    let clients: Vec<_> = (0..100)
        .map(|_| {
            std::thread::spawn(move || {
                common::Client::connect(addr)
                    .request("GET /slow HTTP/1.1\r\nHost: cache.test\r\nConnection: close\r\n\r\n")
            })
        })
        .collect();
    let mut collapsed = 0;
    for client in clients {
        let response = client.join().unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.text(), "slow #1\n");
        if cache_status(&response).contains("collapsed") {
            collapsed += 1;
        }
    }
    assert_eq!(
        reached.load(Ordering::SeqCst),
        1,
        "the origin was asked more than once"
    );
    // Most waited for the first (some may have come after it was stored: plain hits).
    assert!(collapsed > 0);
    let samples = scrape(proxy.admin_addr());
    assert_eq!(
        count(&samples, "ringwall_cache_coalesced_total", &[]),
        collapsed
    );
}

#[test]
fn stale_while_revalidate_answers_at_once_and_refreshes_in_the_background() {
    use std::sync::atomic::AtomicBool;
    let released = Arc::new(AtomicBool::new(false));
    let release = released.clone();
    let reached = Arc::new(AtomicUsize::new(0));
    let seen = reached.clone();
    let origin = Origin::start(move |_req, conn| {
        let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
        if n > 1 {
            // The refresh waits until the test has its stale answer.
            common::wait_until(std::time::Duration::from_secs(10), || {
                released.load(Ordering::SeqCst)
            });
        }
        conn.respond(
            200,
            &[("Cache-Control", "max-age=1, stale-while-revalidate=60")],
            format!("version {n}\n").as_bytes(),
        )?;
        Ok(common::Next::KeepAlive)
    });
    let proxy = Proxy::start(&[origin.addr], &["--cache", "16MiB", "--workers", "1"]);
    assert_eq!(get(&proxy, "/swr", "").text(), "version 1\n");
    std::thread::sleep(std::time::Duration::from_millis(2100));
    // Stale: answered from the cache while the origin still holds the refresh.
    let stale = get(&proxy, "/swr", "");
    assert_eq!(stale.text(), "version 1\n");
    let status = cache_status(&stale);
    assert!(status.starts_with("ringwall; hit; ttl=-"), "{status}");
    assert!(
        status.ends_with("detail=stale-while-revalidate"),
        "{status}"
    );
    assert!(
        common::wait_until(std::time::Duration::from_secs(5), || reached
            .load(Ordering::SeqCst)
            == 2),
        "the refresh reached the origin"
    );
    // A second stale request meanwhile starts no second refresh.
    assert_eq!(get(&proxy, "/swr", "").text(), "version 1\n");
    release.store(true, Ordering::SeqCst);
    // Once the refresh is stored, the new version answers, fresh.
    assert!(common::wait_until(
        std::time::Duration::from_secs(5),
        || { get(&proxy, "/swr", "").text() == "version 2\n" }
    ));
    assert_eq!(reached.load(Ordering::SeqCst), 2);
}

#[test]
fn range_requests_are_answered_from_a_stored_full_response() {
    let origin = origin();
    let proxy = Proxy::start(
        &[origin.origin.addr],
        &["--cache", "16MiB", "--workers", "1"],
    );
    // A first Range request fetches (and stores) the whole response.
    let first = get(&proxy, "/fresh", "Range: bytes=0-3\r\n");
    assert_eq!(first.status, 200);
    assert_eq!(first.text(), "/fresh #1\n");
    let part = get(&proxy, "/fresh", "Range: bytes=0-3\r\n");
    assert_eq!(part.status, 206);
    assert_eq!(part.text(), "/fre");
    assert_eq!(part.header("content-range"), Some("bytes 0-3/10"));
    assert_eq!(part.header("content-length"), Some("4"));
    let tail = get(&proxy, "/fresh", "Range: bytes=-3\r\n");
    assert_eq!((tail.status, tail.text().as_str()), (206, "#1\n"));
    let open = get(&proxy, "/fresh", "Range: bytes=7-\r\n");
    assert_eq!((open.status, open.text().as_str()), (206, "#1\n"));
    let beyond = get(&proxy, "/fresh", "Range: bytes=100-200\r\n");
    assert_eq!(beyond.status, 416);
    assert_eq!(beyond.header("content-range"), Some("bytes */10"));
    // Several ranges, or an If-Range that does not match: the whole response.
    assert_eq!(
        get(&proxy, "/fresh", "Range: bytes=0-1,4-5\r\n").status,
        200
    );
    let mismatch = get(
        &proxy,
        "/fresh",
        "Range: bytes=0-3\r\nIf-Range: \"other\"\r\n",
    );
    assert_eq!(
        (mismatch.status, mismatch.text().as_str()),
        (200, "/fresh #1\n")
    );
    assert_eq!(origin.reached("/fresh"), 1);
}

#[test]
fn the_disk_tier_serves_after_a_restart_and_is_purged_with_the_rest() {
    let origin = origin();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("ringwall-cache-disk-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let dir_text = dir.display().to_string();
    let flags = [
        "--cache",
        "16MiB",
        "--cache-dir",
        dir_text.as_str(),
        "--cache-disk",
        "1MiB",
        "--workers",
        "1",
        "--admin",
        "127.0.0.1:0",
    ];
    let files = || {
        std::fs::read_dir(&dir).map_or(0, |d| {
            d.flatten()
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .count()
        })
    };
    {
        let proxy = Proxy::start(&[origin.origin.addr], &flags);
        assert_eq!(get(&proxy, "/fresh", "").text(), "/fresh #1\n");
        assert_eq!(get(&proxy, "/plain", "").text(), "/plain #1\n");
        assert!(
            common::wait_until(std::time::Duration::from_secs(5), || files() == 2),
            "two files written, found {}",
            files()
        );
    }
    // A new process on the same directory answers from it.
    let proxy = Proxy::start(&[origin.origin.addr], &flags);
    let again = get(&proxy, "/fresh", "");
    assert_eq!(again.text(), "/fresh #1\n");
    assert!(
        cache_status(&again).contains("hit"),
        "{}",
        cache_status(&again)
    );
    assert_eq!(get(&proxy, "/plain", "").text(), "/plain #1\n");
    assert_eq!(origin.reached("/fresh"), 1);
    assert_eq!(origin.reached("/plain"), 1);
    // A purge removes the file too: the next process does not find it.
    let body = r#"{"url": "http://cache.test/plain"}"#;
    let purged = common::Client::connect(proxy.admin_addr()).request(format!(
        "POST /cache/purge HTTP/1.1\r\nHost: admin\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    assert_eq!(purged.status, 200);
    assert!(common::wait_until(
        std::time::Duration::from_secs(5),
        || files() == 1
    ));
    drop(proxy);
    let proxy = Proxy::start(&[origin.origin.addr], &flags);
    assert_eq!(get(&proxy, "/plain", "").text(), "/plain #2\n");
    assert_eq!(get(&proxy, "/fresh", "").text(), "/fresh #1\n");
    drop(proxy);
    let _ = std::fs::remove_dir_all(&dir);
}
